"""Matchers: operators, anchoring, numbers, RE2 (linear time, clear errors)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opsradar.alerting.rules import RuleEngine, load_texts, parse_matcher
from opsradar.errors import RuleError
from opsradar.models import Alert


@pytest.mark.parametrize(("text", "labels", "expected"), [
    ('service="shop"', {"service": "shop"}, True),
    ('service="shop"', {"service": "shopping"}, False),
    ('service!="shop"', {}, True),
    ('service=~"shop|pay"', {"service": "pay"}, True),
    ('service=~"shop"', {"service": "shopping"}, False),  # fully anchored
    ('service!~"shop.*"', {"service": "payments"}, True),
    ('team=""', {}, True),  # a missing label is the empty string
    ("values.duration_s>600", {"values.duration_s": "601"}, True),
    ("values.duration_s>600", {"values.duration_s": "600"}, False),
    ("values.duration_s<=600", {"values.duration_s": "600"}, True),
    ("values.duration_s>=1", {}, False),  # a comparison on a missing value is false
    ("values.duration_s<1", {"values.duration_s": "n/a"}, False),
    ('labels.level =~ "(?i)error"', {"labels.level": "ERROR"}, True),
])
def test_matcher_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize(("text", "message"), [
    ('service=~"(a)\\1"', "invalid regex '(a)\\\\1': invalid escape sequence: \\1"),
    ('service=~"(?=x)"', "invalid regex '(?=x)': invalid perl operator: (?="),
    ("values.x>ten", "'>' needs a number, got 'ten'"),
    ("service shop", "cannot parse matcher 'service shop': expected NAME OP VALUE"),
])
def test_bad_matchers_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r".*") as exc:
        parse_matcher(text)
    assert str(exc.value).startswith(message)


@pytest.mark.timeout(20)
def test_catastrophic_regex_runs_in_linear_time() -> None:
    """``(a+)+$`` backtracks exponentially in Python's re; RE2 answers at once."""
    evil = "a" * 200_000 + "!"
    m = parse_matcher('entity=~"(a+)+$"')
    assert m.matches({"entity": evil}) is False
    assert m.matches({"entity": "a" * 200_000}) is True
    rules = load_texts({"r.yaml": "filters:\n  - {name: evil, action: drop, matchers: ['entity=~\"(a+)+$\"']}\n"})
    engine = RuleEngine(rules)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(50):
        d = engine.on_alert(Alert.from_labels(title="x", labels={"entity": evil}, starts_at=t), t)
        assert not d.dropped


def test_a_pattern_re2_cannot_compile_is_a_rule_error_with_its_place() -> None:
    with pytest.raises(RuleError) as exc:
        load_texts({"r.yaml": "filters:\n  - name: x\n    action: drop\n    matchers: ['a=~\"(?<=b)c\"']\n"})
    assert [str(p) for p in exc.value.problems] == [
        "r.yaml:4: filters[0].matchers[0]: invalid regex '(?<=b)c': invalid perl operator: (?<="
        " (got 'a=~\"(?<=b)c\"')"
    ]


PATTERNS = ["a", "a|b", "ab*", "(a|b)+c?", ".*x", "[a-c]{2,3}", "(?i)ab", "a.b|c", "", "x*"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_regex_matchers_are_fully_anchored_like_fullmatch(pattern: str) -> None:
    """RE2 with our anchoring agrees with Python's ``re.fullmatch`` (newlines included)."""
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    m = parse_matcher(f'x=~"{pattern}"')
    n = parse_matcher(f'x!~"{pattern}"')

    @settings(max_examples=100, deadline=None)
    @given(st.text(alphabet="abcxAB\n", max_size=6))
    def check(s: str) -> None:
        expected = re.fullmatch(pattern, s) is not None
        assert m.matches({"x": s}) is expected
        assert n.matches({"x": s}) is (not expected)

    check()

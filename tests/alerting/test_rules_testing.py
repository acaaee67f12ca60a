"""``opsradar rules test``: failures print a readable diff; bad test files are rule errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsradar.cli import app

RULES = """
receivers: [{name: sre}, {name: web}]
route:
  receiver: sre
  group_by: [service]
  routes:
    - {matchers: ['team="web"'], receiver: web}
filters:
  - {name: web-team, action: set, matchers: ['service="shop"'], team: web}
  - {name: drop-noise, action: drop, matchers: ['alertname="noise"']}
"""

TESTS = """
tests:
  - name: shop alerts go to the web team
    input:
      - alert: {id: a, at: "2026-03-02T10:00:00Z", labels: {alertname: slow, service: shop}}
      - alert: {id: b, at: "2026-03-02T10:00:05Z", labels: {alertname: errors, service: shop}}
      - alert: {id: n, at: "2026-03-02T10:00:05Z", labels: {alertname: noise, service: shop}}
    expect:
      a: {receivers: [web], grouped_with: [b], labels: {team: web}}
      n: {dropped: true, dropped_by: drop-noise}
  - name: a wrong expectation
    input:
      - alert: {id: a, at: "2026-03-02T10:00:00Z", labels: {alertname: noise, service: pay}}
      - event: {at: "2026-03-02T10:00:00Z", source: jenkins, kind: deploy, entity: "job:x"}
    raised: {web-team: 1}
    expect:
      a: {dropped: false, receivers: [sre], severity: critical}
"""


@pytest.fixture
def rules_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "rules" / "tests").mkdir(parents=True)
    (tmp_path / "rules" / "r.yaml").write_text(RULES)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "rules"


def test_failures_print_a_readable_diff(rules_dir: Path) -> None:
    (rules_dir / "tests" / "r_test.yaml").write_text(TESTS)
    result = CliRunner().invoke(app, ["rules", "test"])  # default: rules/tests/*.yaml
    assert result.output == (
        "PASS rules/tests/r_test.yaml: shop alerts go to the web team\n"
        "FAIL rules/tests/r_test.yaml: a wrong expectation\n"
        "    raised[web-team]: -expected 1 +got 0\n"
        "    a.dropped: -expected False +got True (by drop-noise)\n"
        "    a.severity: -expected 'critical' +got 'warning'\n"
        "    a.receivers: -expected ['sre'] +got []\n"
        "1 passed, 1 failed\n"
    )
    assert result.exit_code == 1


def test_bad_test_files_report_every_problem(rules_dir: Path) -> None:
    (rules_dir / "tests" / "bad_test.yaml").write_text(
        "tests:\n"
        "  - name: x\n"
        "    input:\n"
        "      - alert: {id: a, at: 'yesterday', labels: {}}\n"
        "    expect:\n"
        "      a: {droped: true}\n"
    )
    (rules_dir / "tests" / "refs_test.yaml").write_text(
        "tests:\n"
        "  - name: x\n"
        "    input:\n"
        "      - alert: {id: a, at: '2026-03-02T10:00:00Z', labels: {}}\n"
        "    raised: {no-such-rule: 1}\n"
        "    expect:\n"
        "      b: {dropped: true}\n"
        "      a: {dropped_by: nope}\n"
    )
    result = CliRunner().invoke(app, ["rules", "test"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "rules/tests/bad_test.yaml:4: tests[0].input[0].alert.at: Input should be a valid datetime or date,"
        " input is too short (got 'yesterday')",
        "rules/tests/bad_test.yaml:6: tests[0].expect.a.droped: unknown key",
        "rules/tests/refs_test.yaml:5: tests[0].raised.no-such-rule: undefined rule 'no-such-rule'",
        "rules/tests/refs_test.yaml:7: tests[0].expect.b: no input alert with id 'b'",
        "rules/tests/refs_test.yaml:8: tests[0].expect.a.dropped_by: undefined rule 'nope'",
    ]


def test_rules_that_no_test_exercises_are_named(rules_dir: Path) -> None:
    (rules_dir / "more.yaml").write_text("filters:\n  - {name: never, action: drop, matchers: ['alertname=\"zzz\"']}\n")
    (rules_dir / "tests" / "r_test.yaml").write_text(TESTS.split("  - name: a wrong expectation")[0])
    result = CliRunner().invoke(app, ["rules", "test"])
    assert result.output.splitlines()[-2:] == ["warning: no test makes these rules match: never", "1 passed, 0 failed"]
    assert result.exit_code == 0


def test_every_shipped_rule_is_exercised_by_a_shipped_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).parents[2])
    result = CliRunner().invoke(app, ["rules", "test"])
    assert result.exit_code == 0, result.output
    assert "warning: no test makes" not in result.output

"""Rule unit tests: input events and alerts with times, and the expected outcome, through the
whole pipeline (event rules, filters, routing, silences, inhibition, grouping).

A test file (``rules/tests/*.yaml``)::

    rule_files: [..]            # relative to this file; default: the rules folder above tests/
    tests:
      - name: a deploy at night raises an alert routed to the release channel
        silences: []            # API silences to add first (matchers, starts_at, ends_at, ...)
        input:                  # in time order (sorted by `at`)
          - event: {at: "2026-03-07T23:10:00Z", source: jenkins, kind: deploy, entity: "job:shop-deploy"}
          - alert: {id: a1, at: "2026-03-07T23:11:00Z", labels: {alertname: x, service: shop}}
          - tick: "2026-03-08T01:00:00Z"
        raised: {deploy-outside-change-window: 1}    # every other rule must raise nothing
        expect:
          a1: {dropped: false, severity: error, receivers: [releases], silenced: false,
               inhibited: false, grouped_with: [deploy-outside-change-window#1], labels: {team: sre},
               batch: 1, batched_with: []}   # batch: the notification of its group it goes out in

An alert raised by an event rule is named ``<rule>#<n>`` (its n-th alert in the test).
``run_test_files(files)`` returns the results; each failure carries readable diff lines.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from opsradar.alerting.rules.engine import Decision, RuleEngine
from opsradar.alerting.rules.loader import RuleSet, _clean_loc, _message, load_rules
from opsradar.alerting.rules.metrics import RuleStats
from opsradar.alerting.rules.model import MatcherText, SilenceSpec
from opsradar.alerting.rules.silences import SilenceStore
from opsradar.errors import Problem, RuleError
from opsradar.models import Alert, Event, Severity, UtcDatetime, fingerprint
from opsradar.yamlutil import YamlPath, format_path, line_of, load_with_lines

__all__ = ["TestResult", "TestRun", "run_test_files"]


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InEvent(_S):
    at: UtcDatetime
    id: str | None = None
    source: str
    kind: str
    entity: str
    labels: dict[str, str] = Field(default_factory=dict)
    values: dict[str, float] = Field(default_factory=dict)
    attrs: dict[str, Any] = Field(default_factory=dict)


class InAlert(_S):
    id: str
    at: UtcDatetime
    labels: dict[str, str]
    severity: Severity = Severity.warning
    title: str = ""
    ends_at: UtcDatetime | None = None


class InItem(_S):
    event: InEvent | None = None
    alert: InAlert | None = None
    tick: UtcDatetime | None = None

    @model_validator(mode="after")
    def _one(self) -> InItem:
        if sum(x is not None for x in (self.event, self.alert, self.tick)) != 1:
            raise ValueError("each input item is exactly one of event, alert, tick")
        return self

    @property
    def at(self) -> datetime:
        at = self.event.at if self.event else self.alert.at if self.alert else self.tick
        assert at is not None
        return at


class Expect(_S):
    dropped: bool | None = None
    dropped_by: str | None = None
    severity: Severity | None = None
    receivers: list[str] | None = None
    silenced: bool | None = None
    inhibited: bool | None = None
    notify: bool | None = None
    grouped_with: list[str] | None = None
    batch: int | None = Field(default=None, ge=1, description="the notification of its group it goes out in")
    batched_with: list[str] | None = None
    labels: dict[str, str] | None = None


class ApiSilence(_S):
    matchers: list[MatcherText] = Field(min_length=1)
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    created_by: str = "rule-test"
    comment: str = "rule test"


class RuleTest(_S):
    name: str
    silences: list[ApiSilence] = Field(default_factory=list)
    input: list[InItem] = Field(min_length=1)
    raised: dict[str, int] = Field(default_factory=dict)
    expect: dict[str, Expect] = Field(default_factory=dict)


class TestFile(_S):
    rule_files: list[str] | None = None
    tests: list[RuleTest] = Field(min_length=1)


class TestRun(list["TestResult"]):
    """The results, plus the rules no test made match (``untested``), so dead rules show up."""

    untested: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.untested = []


@dataclass
class TestResult:
    file: str
    name: str
    failures: list[str] = field(default_factory=list)
    status: Literal["pass", "fail"] = "pass"

    def __str__(self) -> str:
        head = f"{'PASS' if self.status == 'pass' else 'FAIL'} {self.file}: {self.name}"
        return "\n".join([head, *(f"    {f}" for f in self.failures)])


def _parse(file: str, text: str) -> tuple[TestFile, dict[Any, int]]:
    try:
        data, lines = load_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RuleError([Problem("", f"invalid YAML: {getattr(exc, 'problem', exc)}", file=file,
                                 line=mark.line + 1 if mark else None)]) from exc
    try:
        return TestFile.model_validate(data or {}), lines
    except ValidationError as exc:
        problems = [Problem(format_path(_clean_loc(tuple(e["loc"]))), _message(e), file=file,
                            line=line_of(lines, _clean_loc(tuple(e["loc"])))) for e in exc.errors()]
        raise RuleError(problems) from None


def _check_refs(file: str, tf: TestFile, lines: dict[Any, int], rule_names: list[str]) -> None:
    problems = []
    path: YamlPath
    for ti, t in enumerate(tf.tests):
        ids = {i.alert.id for i in t.input if i.alert}
        for name in t.raised:
            if name not in rule_names:
                path = ("tests", ti, "raised", name)
                problems.append(Problem(format_path(path), f"undefined rule {name!r}", file=file, line=line_of(lines, path)))
        for aid, exp in t.expect.items():
            rule, sep, _n = aid.partition("#")
            if (sep and rule not in rule_names) or (not sep and aid not in ids):
                path = ("tests", ti, "expect", aid)
                what = f"undefined rule {rule!r}" if sep else f"no input alert with id {aid!r}"
                problems.append(Problem(format_path(path), what, file=file, line=line_of(lines, path)))
            if exp.dropped_by and exp.dropped_by not in rule_names:
                path = ("tests", ti, "expect", aid, "dropped_by")
                problems.append(Problem(format_path(path), f"undefined rule {exp.dropped_by!r}", file=file,
                                        line=line_of(lines, path)))
    if problems:
        raise RuleError(problems)


def _run_one(file: str, t: RuleTest, rules: RuleSet, stats: RuleStats) -> TestResult:
    silences = SilenceStore()
    engine = RuleEngine(rules, silences=silences, stats=stats)
    for s in t.silences:
        SilenceSpec(matchers=s.matchers, starts_at=s.starts_at, ends_at=s.ends_at, created_by=s.created_by,
                    comment=s.comment)
        silences.add(list(s.matchers), starts_at=s.starts_at, ends_at=s.ends_at, created_by=s.created_by,
                     comment=s.comment, now=s.starts_at)
    decisions: dict[str, Decision] = {}
    raised: dict[str, int] = {}

    arrived: dict[str, datetime] = {}

    def feed(alert: Alert, aid: str, now: datetime) -> None:
        decisions[aid] = engine.on_alert(alert, now)
        arrived[aid] = now

    def raised_alerts(alerts: list[Alert]) -> None:
        for a in alerts:
            rule = a.rule or "?"
            raised[rule] = raised.get(rule, 0) + 1
            feed(a, f"{rule}#{raised[rule]}", a.starts_at)

    for n, item in enumerate(sorted(t.input, key=lambda i: i.at)):
        if item.event:
            e = item.event
            ev = Event(id=e.id or f"{file}#{n}", source=e.source, kind=e.kind, ts=e.at, entity=e.entity,
                       labels=e.labels, values=e.values, attrs=e.attrs)
            raised_alerts(engine.on_event(ev))
        elif item.alert:
            a = item.alert
            labels = {**a.labels}
            alert = Alert(fingerprint=fingerprint(labels), title=a.title or a.id, labels=labels,
                          severity=a.severity, starts_at=a.at, ends_at=a.ends_at)
            feed(alert, a.id, a.at)
        elif item.tick:
            raised_alerts(engine.tick(item.tick))

    result = TestResult(file, t.name)
    fails = result.failures
    for rule in sorted(set(raised) | set(t.raised)):
        n_want, n_got = t.raised.get(rule, 0), raised.get(rule, 0)
        if n_want != n_got:
            fails.append(f"raised[{rule}]: -expected {n_want} +got {n_got}")
    groups: dict[str, set[str]] = {}
    for aid, d in decisions.items():
        if not d.dropped:
            for k in d.group_keys:
                groups.setdefault(k, set()).add(aid)
    batches = _batches(decisions, arrived)
    for aid, exp in t.expect.items():
        d = decisions.get(aid)
        if d is None:
            fails.append(f"{aid}: -expected an alert +got none (raised: {dict(sorted(raised.items())) or 'nothing'})")
            continue
        got: dict[str, Any] = {
            "dropped": d.dropped, "dropped_by": d.dropped_by, "severity": d.alert.severity,
            "receivers": sorted(d.receivers), "silenced": d.silenced, "inhibited": d.inhibited,
            "notify": d.notify,
            "grouped_with": sorted({x for k in d.group_keys for x in groups.get(k, set())} - {aid}),
            "batch": batches[aid][0] if aid in batches else None,
            "batched_with": sorted(batches[aid][1] - {aid}) if aid in batches else [],
        }
        for key, want in exp.model_dump(exclude_unset=True).items():
            if key == "labels":
                for lk, lv in want.items():
                    if d.alert.labels.get(lk) != lv:
                        fails.append(f"{aid}.labels.{lk}: -expected {lv!r} +got {d.alert.labels.get(lk)!r}")
                continue
            if key in ("receivers", "grouped_with", "batched_with"):
                want = sorted(want)
            g = got[key]
            if g != want:
                shown_w = want.value if isinstance(want, Severity) else want
                shown_g = g.value if isinstance(g, Severity) else g
                extra = ""
                if key == "dropped" and d.dropped_by:
                    extra = f" (by {d.dropped_by})"
                elif key in ("silenced", "inhibited"):
                    extra = f" (by {d.silenced_by or d.inhibited_by})" if g else ""
                fails.append(f"{aid}.{key}: -expected {shown_w!r} +got {shown_g!r}{extra}")
    result.status = "fail" if fails else "pass"
    return result


def _batches(decisions: dict[str, Decision], arrived: dict[str, datetime]) -> dict[str, tuple[int, set[str]]]:
    """The notification each notified alert goes out in, on its first route: (1-based number, alerts in it).

    As Alertmanager's aggregation groups: a group's first notification leaves ``group_wait`` after
    its first alert, the next ones every ``group_interval`` after that, each with what arrived since.
    """
    first: dict[str, datetime] = {}
    where: dict[str, tuple[str, int]] = {}
    for aid in sorted(decisions, key=lambda a: arrived[a]):
        d = decisions[aid]
        if not d.notify:
            continue
        r = next(r for r in d.routes if r.receiver)
        key = f"{r.receiver}|{r.group_key}"
        t0 = first.setdefault(key, arrived[aid])
        due = t0 + r.group_wait
        late = arrived[aid] - due
        n = 1 if late <= timedelta(0) else 2 + int((late - timedelta(microseconds=1)) / r.group_interval)
        where[aid] = (key, n)
    members: dict[tuple[str, int], set[str]] = {}
    for aid, kn in where.items():
        members.setdefault(kn, set()).add(aid)
    return {aid: (kn[1], members[kn]) for aid, kn in where.items()}


def default_test_files(rules_dir: str | os.PathLike[str] = "rules") -> list[Path]:
    return sorted(Path(rules_dir, "tests").glob("*.yaml"))


def run_test_files(files: Sequence[str | os.PathLike[str]]) -> TestRun:
    """Run the rule tests in ``files``. Invalid test or rule files raise :class:`RuleError`."""
    results = TestRun()
    tested: dict[str, bool] = {}
    problems: list[Problem] = []
    for f in map(Path, files):
        try:
            tf, lines = _parse(str(f), f.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append(Problem("", f"cannot read the file: {exc}", file=str(f)))
            continue
        except RuleError as exc:
            problems += exc.problems
            continue
        base = f.parent
        rule_paths = [base / p for p in tf.rule_files] if tf.rule_files is not None else (
            [base.parent] if base.name == "tests" else [base])
        try:
            rules = load_rules(rule_paths)
            _check_refs(str(f), tf, lines, rules.rule_names)
        except RuleError as exc:
            problems += exc.problems
            continue
        stats = RuleStats(export=False)
        results += [_run_one(str(f), t, rules, stats) for t in tf.tests]
        for name, row in stats.snapshot(rules.rule_names).items():
            tested.setdefault(name, False)
            tested[name] = tested[name] or row["matches"] > 0
    if problems:
        raise RuleError(problems)
    results.untested = sorted(name for name, hit in tested.items() if not hit)
    return results

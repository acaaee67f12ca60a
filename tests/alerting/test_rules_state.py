"""Checkpoints: an engine restored from a snapshot continues exactly like one that never stopped."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opsradar.alerting.rules import RuleEngine, RuleManager, RuleStats, load_texts
from opsradar.models import Alert, Event
from opsradar.store import Store

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def stream(n: int) -> list[Event]:
    rng = random.Random(3)
    out = []
    for i in range(n):
        svc = rng.choice(["shop", "pay"])
        kind = rng.choice(["log", "log", "log", "deploy", "access", "audit", "build", "test_run"])
        labels = {"service": svc, "level": rng.choice(["error", "info"]), "result": rng.choice(["FAILURE", "SUCCESS"]),
                  "user": f"u{i // 40}", "outcome": rng.choice(["failure", "success"]),
                  "test": f"t{rng.randrange(8)}", "environment": "production"}
        entity = f"service:{svc}" if kind in ("log", "access") else f"job:{svc}-{kind}"
        ts = T0 + timedelta(minutes=7 * i + rng.randrange(7))
        out.append(Event.new(source="es", native_id=str(i), kind=kind, ts=ts, entity=entity, labels=labels,
                             values={"failed": float(rng.randrange(25))}))
    return out


RULES = """
event_rules:
  - {name: deploys, trigger: {type: pattern, match: ['kind="deploy"']}}
  - name: errors
    trigger: {type: frequency, match: ['labels.level="error"'], count: 3, window: 30m, group_by: [service]}
  - {name: new-user, trigger: {type: new_term, match: ['kind="access"'], fields: [labels.user], learn_for: 1d}}
  - {name: no-builds, trigger: {type: flatline, match: ['kind="build"'], threshold: 1, window: 1h, group_by: [service]}}
  - name: deploy-then-errors
    trigger:
      type: sequence
      window: 1h
      by: [service]
      steps: [{match: ['kind="deploy"']}, {match: ['labels.level="error"'], count: 2}]
inhibit_rules:
  - {source_rules: [deploy-then-errors], target_matchers: ['alertname="errors"'], equal: [service]}
"""


def run(engine: RuleEngine, events: list[Event]) -> list[tuple[str | None, datetime, str, bool]]:
    out = []
    for e in events:
        for a in engine.on_event(e) + engine.tick(e.ts):
            out.append((a.rule, a.starts_at, a.fingerprint, engine.on_alert(a, a.starts_at).inhibited))
    return out


def test_a_restored_engine_continues_like_one_that_never_stopped() -> None:
    rules = load_texts({"r.yaml": RULES})
    events = stream(3000)
    first, second = events[:1500], events[1500:]
    straight = RuleEngine(rules, stats=RuleStats(export=False))
    run(straight, first)
    expected = run(straight, second)
    before = RuleEngine(rules, stats=RuleStats(export=False))
    run(before, first)
    after = RuleEngine(rules, stats=RuleStats(export=False))
    assert sorted(after.restore(before.snapshot())) == sorted(r.name for r in rules.event_rules)
    got = run(after, second)
    assert {rule for rule, *_ in expected} == {r.name for r in rules.event_rules}  # every rule type fires
    assert any(inhibited for *_, inhibited in expected)
    assert got == expected
    fresh = run(RuleEngine(rules, stats=RuleStats(export=False)), second)
    assert fresh != expected  # without the state, the second half differs


def test_a_changed_rule_starts_afresh() -> None:
    text = "event_rules:\n  - name: burst\n    trigger: {type: frequency, match: ['kind=\"log\"'], count: %d, window: 1h}\n"
    e1 = RuleEngine(load_texts({"r.yaml": text % 3}), stats=RuleStats(export=False))
    log = [Event.new(source="es", native_id=str(i), kind="log", ts=T0, entity="service:shop") for i in range(3)]
    e1.on_event(log[0])
    e1.on_event(log[1])
    same = RuleEngine(load_texts({"r.yaml": text % 3}), stats=RuleStats(export=False))
    changed = RuleEngine(load_texts({"r.yaml": text % 4}), stats=RuleStats(export=False))
    assert same.restore(e1.snapshot()) == ["burst"]
    assert changed.restore(e1.snapshot()) == []
    assert [a.rule for a in same.on_event(log[2])] == ["burst"]
    assert changed.on_event(log[2]) == []


def test_the_manager_checkpoints_and_restores_on_start(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "event_rules:\n  - name: burst\n    trigger: {type: frequency, match: ['kind=\"log\"'], count: 2, window: 1h}\n"
        "inhibit_rules:\n  - {source_rules: [burst], target_matchers: ['alertname=\"x\"']}\n")
    store = Store(f"sqlite:///{tmp_path}/s.db")
    mgr = RuleManager([tmp_path / "r.yaml"], store=store, stats=RuleStats(export=False))
    logs = [Event.new(source="es", native_id=str(i), kind="log", ts=T0, entity="service:shop") for i in range(3)]
    mgr.engine.on_event(logs[0])
    mgr.checkpoint()
    again = RuleManager([tmp_path / "r.yaml"], store=store, stats=RuleStats(export=False))
    [raised] = again.engine.on_event(logs[1])
    again.engine.on_alert(raised, T0)
    again.checkpoint()
    third = RuleManager([tmp_path / "r.yaml"], store=store, stats=RuleStats(export=False))
    x = Alert.from_labels(title="x", labels={"alertname": "x"}, starts_at=T0 + timedelta(minutes=1))
    assert third.engine.on_alert(x).inhibited  # the inhibition source survived the restart

"""The rule engine skips event rules whose ``match`` rejects an event's source or kind: the alerts and
the rules' state are those of calling every rule on every event."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from opsradar.alerting.rules.engine import RuleEngine
from opsradar.alerting.rules.fields import event_fields
from opsradar.alerting.rules.loader import load_texts
from opsradar.config import parse_config
from opsradar.models import Alert, Event

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)

RULES = """
event_rules:
  - {name: deploy-prod, trigger: {type: pattern, match: ['kind="deploy"', 'labels.env="prod"']}, severity: warning}
  - {name: any-git, trigger: {type: pattern, match: ['source="git"']}, severity: info}
  - {name: not-jenkins, trigger: {type: pattern, match: ['source!="jenkins"', 'values.n>=8']}, severity: info}
  - {name: errors, severity: error,
     trigger: {type: frequency, match: ['kind=~"log|access"', 'labels.level="error"'], count: 3, window: 10m,
               group_by: [service]}}
  - {name: new-user, trigger: {type: new_term, match: ['kind!~"log|build"'], fields: [labels.user], learn_for: 30m},
     severity: warning}
  - {name: unmatched-kind, trigger: {type: pattern, match: ['kind="nothing-has-this-kind"']}, severity: info}
  - {name: quiet, severity: warning,
     trigger: {type: flatline, match: ['kind="log"'], threshold: 1, window: 20m, group_by: [service]}}
  - {name: deploy-then-errors, severity: critical,
     trigger: {type: sequence, steps: [{match: ['kind="deploy"']}, {match: ['kind="log"', 'labels.level="error"'],
               count: 2}], window: 30m, by: [service]}}
"""


def _events(n: int) -> list[Event]:
    rng = random.Random(5)
    kinds = [("git", "commit"), ("jenkins", "build"), ("argo", "deploy"), ("es", "log"), ("es", "access"),
             ("es", "audit")]
    out = []
    for i in range(n):
        source, kind = rng.choice(kinds)
        out.append(Event.new(
            source=source, native_id=str(i), kind=kind,
            entity=rng.choice(["service:shop", "service:pay", "job:build-shop", "job:other", "repo:pay"]),
            ts=T0 + timedelta(minutes=i * rng.choice([0.5, 1, 7])),
            labels={"level": rng.choice(["info", "error"]), "env": rng.choice(["prod", "dev"]),
                    "user": rng.choice(["ann", "bob", f"u{i % 13}"])},
            values={"n": float(i % 10)}))
    return out


def _every_rule(engine: RuleEngine, event: Event) -> list[Alert]:
    """What the engine did before the index: every event rule on every event."""
    f = event_fields(event, engine.graph)
    out = []
    for er in engine.event_rules:
        for firing in er.trigger.on_event(f, event.ts):
            if er.when.applies(firing.ts):
                out.append(engine._raise(er.rule, firing))
    return out


def test_skipping_rules_that_cannot_match_changes_no_alert_and_no_state() -> None:
    rules = load_texts({"r.yaml": RULES})
    graph = parse_config("entities: {services: {shop: {jobs: [build-shop]}, pay: {repos: [pay]}}}\n").entities
    indexed, reference = RuleEngine(rules, graph=graph), RuleEngine(rules, graph=graph)
    events = _events(600)
    got = [indexed.on_event(e) for e in events]
    want = [_every_rule(reference, e) for e in events]
    assert sum(map(len, want)) > 20  # the stream fires most rules, not a vacuous comparison
    assert {a.rule for alerts in want for a in alerts} >= {"deploy-prod", "any-git", "errors", "new-user", "quiet",
                                                            "deploy-then-errors"}
    assert [[(a.fingerprint, a.title, a.starts_at, a.event_ids) for a in alerts] for alerts in got] == \
        [[(a.fingerprint, a.title, a.starts_at, a.event_ids) for a in alerts] for alerts in want]
    assert indexed.snapshot() == reference.snapshot()


def test_the_rules_an_event_reaches() -> None:
    engine = RuleEngine(load_texts({"r.yaml": RULES}))
    names = {k: [er.rule.name for er in engine._rules_for(*k)] for k in [("jenkins", "build"), ("git", "commit"),
                                                                        ("es", "log"), ("argo", "deploy")]}
    # flatline (silence is judged on every event) sees every event; sequence, the kinds of its steps
    assert names[("jenkins", "build")] == ["quiet"]
    assert names[("git", "commit")] == ["any-git", "not-jenkins", "new-user", "quiet"]
    assert names[("es", "log")] == ["not-jenkins", "errors", "quiet", "deploy-then-errors"]
    assert names[("argo", "deploy")] == ["deploy-prod", "not-jenkins", "new-user", "quiet", "deploy-then-errors"]


def test_the_lazy_field_view_equals_the_flat_map_name_by_name() -> None:
    from opsradar.alerting.rules.fields import EventFields

    graph = parse_config("entities: {services: {shop: {jobs: [build-shop]}, pay: {repos: [pay]}}}\n").entities
    odd = Event.new(source="es", native_id="x", kind="log", entity="service:shop", ts=T0,
                    labels={"service": "billing", "a.b": "dotted", "": "empty"}, values={"n": 3.0, "r": 0.25},
                    attrs={"http": {"method": "GET", "deep": {"er": {"x": {"y": 1}}}}, "ok": True, "k": 7})
    for event in [odd, *_events(200)]:
        flat = event_fields(event, graph)
        lazy = EventFields(event, graph)
        names = [*flat, "labels.missing", "values.missing", "attrs.missing", "nope", "service"]
        assert [lazy.get(n) for n in names] == [flat.get(n) for n in names]
        assert [n in lazy for n in names] == [n in flat for n in names]
        assert dict(lazy) == flat
        assert len(lazy) == len(flat)

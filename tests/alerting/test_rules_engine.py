"""The rule engine: filters, routing tree, inhibition, silences, event rule types, metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from opsradar.alerting.alerts import alert_from_anomaly
from opsradar.alerting.rules import RuleEngine, RuleStats, SilenceStore, load_texts
from opsradar.config import EntityGraph
from opsradar.models import Alert, Anomaly, Event, Severity
from opsradar.store import Store

T = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday

RULES = """
receivers:
  - {name: sre, slack: {channel: "#sre"}}
  - {name: db, slack: {channel: "#db", mentions: ["@dba"]}}
  - {name: pager, slack: {channel: "#page"}}
  - {name: audit}
time_intervals:
  - {name: office, weekdays: [monday, tuesday, wednesday, thursday, friday], times: [{start: "09:00", end: "17:00"}]}
route:
  receiver: sre
  group_by: [service]
  group_wait: 1m
  routes:
    - matchers: ['team="db"']
      receiver: db
      group_wait: 10s
      routes:
        - matchers: ['severity="critical"']
          receiver: pager
    - matchers: ['severity=~"error|critical"']
      receiver: audit
      continue: true
      group_by: ['...']
    - matchers: ['service="shop"']
filters:
  - {name: drop-noise, action: drop, matchers: ['alertname="noise"']}
  - {name: set-db-team, action: set, matchers: ['service=~"postgres|mysql"'], team: db, labels: {tier: data}}
  - {name: bump, action: escalate, matchers: ['alertname="slow"']}
  - {name: office-only, action: set, matchers: ['alertname="office"'], severity: info,
     active_time_intervals: [office]}
  - {name: cc-db, action: route, matchers: ['alertname="backup-failed"'], receivers: [db], group_by: [alertname],
     repeat_interval: 1h}
inhibit_rules:
  - {source_matchers: ['alertname="ServiceDown"'], target_matchers: ['severity!="critical"'], equal: [service],
     source_ttl: 30m}
"""


def alert(at: datetime = T, severity: Severity = Severity.warning, **labels: str) -> Alert:
    return Alert.from_labels(title="t", labels=labels, starts_at=at, severity=severity)


@pytest.fixture
def engine() -> RuleEngine:
    return RuleEngine(load_texts({"r.yaml": RULES}), stats=RuleStats(export=False))


def test_drop_set_escalate_route(engine: RuleEngine) -> None:
    assert engine.on_alert(alert(alertname="noise")).dropped_by == "drop-noise"
    d = engine.on_alert(alert(alertname="x", service="postgres"))
    assert (d.alert.labels["team"], d.alert.labels["tier"], d.receivers) == ("db", "data", ["db"])
    assert d.routes[0].group_wait == timedelta(seconds=10)
    d = engine.on_alert(alert(alertname="slow", service="web"))
    assert (d.alert.severity, d.escalated_by) == (Severity.error, ["bump"])
    assert d.receivers == ["audit"]  # a continue route matched, no sibling did: not the root (Alertmanager)
    d = engine.on_alert(alert(alertname="backup-failed", service="web"))
    assert d.receivers == ["sre", "db"]
    assert [(r.route, r.group_key, r.group_wait, r.repeat_interval) for r in d.routes] == [
        ("route", 'route{service="web"}', timedelta(minutes=1), timedelta(hours=4)),
        ("filter:cc-db", 'filter:cc-db{alertname="backup-failed"}', timedelta(minutes=1), timedelta(hours=1)),
    ]
    doc = d.to_dict()
    assert (doc["notify"], doc["matched"], doc["routes"][0]["group_wait"]) == (True, ["cc-db"], 60.0)
    assert doc["alert"]["receivers"] == ["sre", "db"]


def test_routing_inherits_and_continue_matches_siblings(engine: RuleEngine) -> None:
    d = engine.on_alert(alert(alertname="x", service="postgres", severity=Severity.critical))
    # team db → the db route, whose child takes critical; it inherits group_wait 10s from db and
    # group_by [service] from the root
    assert d.receivers == ["pager"]
    assert d.routes[0].group_wait == timedelta(seconds=10)
    assert d.routes[0].group_key == 'route/0/0{service="postgres"}'
    d = engine.on_alert(alert(alertname="x", service="shop", severity=Severity.error))
    assert [r.route for r in d.routes] == ["route/1", "route/2"]
    assert d.receivers == ["audit", "sre"]
    assert d.routes[0].group_key.startswith('route/1{alertname="x"')  # '...': every label
    assert d.routes[1].group_wait == timedelta(minutes=1)


def test_time_scoped_filter(engine: RuleEngine) -> None:
    assert engine.on_alert(alert(alertname="office")).alert.severity == Severity.info
    night = T.replace(hour=22)
    assert engine.on_alert(alert(night, alertname="office"), night).alert.severity == Severity.warning


def test_inhibition_follows_alertmanager(engine: RuleEngine) -> None:
    down = alert(alertname="ServiceDown", service="shop", severity=Severity.critical)
    assert not engine.on_alert(down).inhibited
    d = engine.on_alert(alert(T + timedelta(minutes=1), alertname="slow", service="shop"))
    assert d.inhibited_by == ["inhibit_rules[0]"]
    assert not d.notify
    assert d.receivers  # kept and routed, only marked
    assert not engine.on_alert(alert(T + timedelta(minutes=1), alertname="slow", service="pay")).inhibited
    # the source fires for source_ttl only
    assert not engine.on_alert(alert(T + timedelta(minutes=31), alertname="slow", service="shop")).inhibited
    # a resolved source stops inhibiting at once
    engine.on_alert(down.model_copy(update={"status": "resolved"}), T + timedelta(minutes=2))
    assert not engine.on_alert(alert(T + timedelta(minutes=3), alertname="slow", service="shop")).inhibited
    # an alert does not inhibit itself
    self_source = alert(T + timedelta(hours=2), alertname="ServiceDown", service="web")
    assert not engine.on_alert(self_source).inhibited
    assert not engine.on_alert(self_source, T + timedelta(hours=2, minutes=1)).inhibited


def test_silences_persist_audit_and_expire(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path}/s.db")
    silences = SilenceStore(store)
    s = silences.add(['service="shop"'], starts_at=T, ends_at=T + timedelta(hours=1), created_by="ana",
                     comment="migration", now=T)
    with pytest.raises(ValueError, match="invalid regex"):
        silences.add(['service=~"("'], ends_at=T + timedelta(hours=1), created_by="ana", comment="x", now=T)
    engine = RuleEngine(load_texts({"r.yaml": RULES}), silences=SilenceStore(store), stats=RuleStats(export=False))
    d = engine.on_alert(alert(alertname="x", service="shop"))
    assert d.silenced_by == [s.id]
    assert not d.notify
    assert not engine.on_alert(alert(T + timedelta(hours=1), alertname="x", service="shop")).silenced
    again = SilenceStore(store)
    assert [x.id for x in again.list(now=T)] == [s.id]
    again.expire(s.id, actor="bo", now=T + timedelta(minutes=10))
    assert SilenceStore(store).list(now=T + timedelta(minutes=11)) == []
    assert [r["action"] for r in store.audit_log()] == ["silence.add", "silence.expire"]


def test_replicas_sharing_a_store_see_each_others_silences(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path}/s.db")
    a, b = SilenceStore(store, refresh_interval=0), SilenceStore(store, refresh_interval=0)
    s1 = a.add(['service="shop"'], starts_at=T, ends_at=T + timedelta(hours=1), created_by="ana", comment="x", now=T)
    s2 = b.add(['service="pay"'], starts_at=T, ends_at=T + timedelta(hours=1), created_by="bo", comment="y", now=T)
    assert b.silenced_by({"service": "shop"}, T) == [s1.id]
    assert sorted(x.id for x in a.list(now=T)) == sorted([s1.id, s2.id])
    b.expire(s1.id, actor="bo", now=T)
    assert a.silenced_by({"service": "shop"}, T + timedelta(minutes=1)) == []


def test_yaml_silences(engine: RuleEngine) -> None:
    rules = RULES + f"""
silences:
  - matchers: ['alertname="x"']
    starts_at: "{T.isoformat()}"
    ends_at: "{(T + timedelta(hours=1)).isoformat()}"
    created_by: ana
    comment: planned maintenance
"""
    e = RuleEngine(load_texts({"r.yaml": rules}), stats=RuleStats(export=False))
    assert e.on_alert(alert(alertname="x")).silenced_by == ["yaml:r.yaml#0"]
    assert [s.origin for s in e.silences.list(now=T)] == ["yaml"]


def ev(i: int, at: datetime, kind: str = "log", entity: str = "service:shop", **labels: str) -> Event:
    return Event.new(source="es", native_id=str(i), kind=kind, ts=at, entity=entity, labels=labels)


EVENT_RULES = """
event_rules:
  - name: bad-access
    trigger: {type: pattern, match: ['kind="access"', 'labels.user=~"ex-.*"']}
    title: "access by {labels.user}"
    severity: critical
    team: security
  - name: burst
    trigger: {type: frequency, match: ['labels.level="error"'], count: 3, window: 1m, group_by: [service]}
  - name: new-user
    trigger: {type: new_term, match: ['kind="access"'], fields: [labels.user], learn_for: 1h}
  - name: quiet
    trigger: {type: flatline, match: ['kind="log"'], threshold: 2, window: 10m, group_by: [service]}
  - name: deploy-then-errors
    trigger:
      type: sequence
      window: 10m
      by: [service]
      steps:
        - match: ['kind="deploy"']
        - match: ['labels.level="error"']
          count: 2
"""


def test_event_rule_types() -> None:
    graph = EntityGraph.model_validate({"services": {"shop": {"jobs": ["shop-deploy"]}}})
    e = RuleEngine(load_texts({"e.yaml": EVENT_RULES}), graph=graph, stats=RuleStats(export=False))
    raised: list[Alert] = []
    raised += e.on_event(ev(1, T, kind="access", user="ana"))
    raised += e.on_event(ev(2, T + timedelta(hours=2), kind="access", user="ex-bob"))
    assert [(a.rule, a.title, a.severity.value, a.labels.get("team")) for a in raised] == [
        ("bad-access", "access by ex-bob", "critical", "security"), ("new-user", "new-user: service:shop", "warning", None)
    ]
    raised.clear()
    t = T + timedelta(hours=3)
    raised += e.on_event(ev(3, t, kind="deploy", entity="job:shop-deploy"))  # service via the graph
    for i in range(3):
        raised += e.on_event(ev(10 + i, t + timedelta(seconds=10 * i), level="error"))
    assert sorted(a.rule or "" for a in raised) == ["burst", "deploy-then-errors"]
    seq = next(a for a in raised if a.rule == "deploy-then-errors")
    assert len(seq.event_ids) == 3
    assert seq.labels["service"] == "shop"
    assert seq.annotations["detail"] == "sequence completed within 10s"  # a span to the second, in words
    assert next(a for a in raised if a.rule == "burst").annotations["detail"] == "3 events within 1m"
    raised.clear()
    # the shop logs go quiet: the flatline fires once per further window
    raised += e.tick(t + timedelta(minutes=9))
    assert raised == []
    raised += e.tick(t + timedelta(minutes=25))
    assert [(a.rule, a.labels["service"]) for a in raised] == [("quiet", "shop")]
    assert raised[0].annotations["detail"] == "0 events in the last 10m (fewer than 2)"
    assert e.tick(t + timedelta(minutes=26)) == []
    assert [a.starts_at for a in e.tick(t + timedelta(minutes=31))] == [t + timedelta(minutes=30, seconds=20)]


def test_an_event_that_matches_no_step_leaves_a_sequence_as_it_was() -> None:
    """A sequence's instances expire by the time of the events that could move them: an unrelated
    event of the same service, even a later one, neither moves nor expires them (so the engine may
    skip it), and an error that arrives late but within the window still completes the sequence."""
    e = RuleEngine(load_texts({"e.yaml": EVENT_RULES}), stats=RuleStats(export=False))
    seq = next(er.trigger for er in e.event_rules if er.rule.name == "deploy-then-errors")
    t = T + timedelta(hours=3)
    assert e.on_event(ev(1, t, kind="deploy")) == []
    before = seq.state()
    assert seq.may_act("es", "access")  # its second step matches by level alone: an access line may be an error
    # an access line 20 minutes on (past the window) that is no error moves no step: nothing changes
    assert e.on_event(ev(2, t + timedelta(minutes=20), kind="access", user="ana")) == []
    assert seq.state() == before
    assert seq.on_event({"kind": "access", "service": "shop", "id": "x"}, t + timedelta(minutes=20)) == []
    assert seq.state() == before
    raised = [a for i in range(2) for a in e.on_event(ev(10 + i, t + timedelta(minutes=5), level="error"))]
    assert [a.rule for a in raised] == ["deploy-then-errors"]
    assert seq.state() == []  # completed: the key is gone


def test_metrics_accessor_lists_dead_rules() -> None:
    stats = RuleStats(export=False)
    e = RuleEngine(load_texts({"r.yaml": RULES}), stats=stats)
    e.on_alert(alert(alertname="noise"))
    e.on_alert(alert(alertname="slow"))
    snap = stats.snapshot(e.rule_names)
    assert snap["drop-noise"]["drops"] == 1
    assert snap["bump"]["escalations"] == 1
    assert snap["bump"]["last_match"] == T.timestamp()
    assert snap["cc-db"] == {"matches": 0, "drops": 0, "escalations": 0, "raised": 0, "last_match": None}


def test_prometheus_counters_carry_the_rule_label() -> None:
    from prometheus_client import REGISTRY

    e = RuleEngine(load_texts({"r.yaml": RULES}))
    before = REGISTRY.get_sample_value("opsradar_rule_drops_total", {"rule": "drop-noise"}) or 0.0
    e.on_alert(alert(alertname="noise"))
    assert REGISTRY.get_sample_value("opsradar_rule_drops_total", {"rule": "drop-noise"}) == before + 1


def test_alert_from_anomaly_labels_and_dedup() -> None:
    graph = EntityGraph.model_validate({"services": {"shop": {"jobs": ["shop-build"], "team": "web"}}})
    a = Anomaly(id="an1", stream="jenkins|build|job:shop-build", detector="hst", detector_version="1", ts=T,
                source="jenkins", kind="build", entity="job:shop-build", score=0.9995, threshold=0.99, raw_score=3.0,
                event_id="e1")
    alert1 = alert_from_anomaly(a, graph)
    assert alert1.labels == {"alertname": "build-anomaly", "source": "jenkins", "kind": "build",
                             "entity": "job:shop-build", "stream": "jenkins|build|job:shop-build", "detector": "hst",
                             "service": "shop", "team": "web", "severity": "error"}
    assert (alert1.anomaly_id, alert1.event_ids, alert1.severity) == ("an1", ["e1"], Severity.error)
    weaker = alert_from_anomaly(a.model_copy(update={"id": "an2", "score": 0.991}), graph)
    assert weaker.severity == Severity.warning
    assert weaker.fingerprint == alert1.fingerprint  # same stream: one alert
    assert "service" not in alert_from_anomaly(a.model_copy(update={"entity": "job:unknown"}), graph).labels
    tagged = alert_from_anomaly(a.model_copy(update={"labels": {"stream_type": "build", "kind": "x"}}), graph)
    assert (tagged.labels["stream_type"], tagged.labels["kind"]) == ("build", "build")


def test_a_loaded_rule_that_never_matched_is_exported_at_zero() -> None:
    from prometheus_client import REGISTRY

    text = RULES.replace("cc-db", "cc-db-never-matches")
    RuleEngine(load_texts({"r.yaml": text}))
    for family in ("opsradar_rule_matches_total", "opsradar_rule_drops_total", "opsradar_rule_escalations_total",
                   "opsradar_rule_alerts_raised_total"):
        assert REGISTRY.get_sample_value(family, {"rule": "cc-db-never-matches"}) == 0.0, family

"""The pipeline as a plain class (no Ray)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from opsradar.config import parse_config
from opsradar.models import Alert, Severity
from opsradar.serving.pipeline import Pipeline
from opsradar.store import Store

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _pipeline(tmp_path: Path, extra: str = "") -> Pipeline:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text('receivers: [{name: sre, slack: {channel: "#sre"}}]\nroute: {receiver: sre}\n')
    cfg = parse_config("slack: {enabled: false}\n" + extra)
    return Pipeline(cfg, Store(f"sqlite:///{tmp_path}/s.db"), rules_paths=[str(rules)])


def test_alerts_below_the_minimum_severity_are_kept_but_open_no_incident(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    info = Alert.from_labels(title="a test failed for the first time", labels={"service": "shop", "alertname": "x"},
                             starts_at=T0, severity=Severity.info)
    p._on_alert(info, T0)
    assert p.store.list_incidents() == []
    assert p.store.get_alert(info.fingerprint) is not None
    warn = Alert.from_labels(title="build slow", labels={"service": "shop", "alertname": "y"}, starts_at=T0)
    p._on_alert(warn, T0)
    (inc,) = p.store.list_incidents()
    assert inc["alert_fingerprints"] == [warn.fingerprint]
    assert (p.stats.below_severity, p.stats.alerts) == (1, 1)


def test_the_minimum_severity_is_configurable(tmp_path: Path) -> None:
    p = _pipeline(tmp_path, "correlation: {min_severity: info}\n")
    p._on_alert(Alert.from_labels(title="t", labels={"service": "shop"}, starts_at=T0, severity=Severity.info), T0)
    assert len(p.store.list_incidents()) == 1


def test_checkpoint_saves_detector_and_rule_state(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    p.checkpoint()
    assert p.store.load_checkpoints("detectors/shard-")
    assert p.store.load_checkpoint("rules/state") is not None


def test_local_detectors_restore_a_ray_shard_checkpoint(tmp_path: Path) -> None:
    from datetime import timedelta

    from opsradar.config import DetectorsConfig
    from opsradar.models import Event
    from opsradar.serving.pipeline import LocalDetectors
    from opsradar.serving.shardstate import ShardState

    store = Store(f"sqlite:///{tmp_path}/s.db")
    events = [Event.new(source="jenkins", native_id=f"b{i}", kind="build", ts=T0 + timedelta(hours=i),
                        entity="job:shop", values={"duration_s": 300.0}) for i in range(8)]
    store.add_events(events)
    shard = ShardState(0, 1, store, DetectorsConfig(warmup=5))
    shard.detect([e.model_dump(mode="json") for e in events])
    shard.checkpoint()
    cfg = parse_config("detectors: {shards: 1, warmup: 5}\n")
    local = LocalDetectors(cfg, store)
    assert local.engines[0].stream("jenkins|build|job:shop").n == 8


def _sre_and_page(tmp_path: Path, setting: str, sre: str, page: str) -> Pipeline:
    """A pipeline whose routes lead to #sre and, for critical alerts (and on through ``continue``),
    to #page, each with its own value of a route ``setting``."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(
        'receivers: [{name: sre, slack: {channel: "#sre"}}, {name: page, slack: {channel: "#page"}}]\n'
        f"route:\n  receiver: sre\n  {setting}: {sre}\n  routes:\n"
        f"    - {{matchers: ['severity=\"critical\"'], receiver: page, {setting}: {page}, continue: true}}\n"
        "    - {receiver: sre}\n")
    return Pipeline(parse_config("slack: {enabled: false}\n"), Store(f"sqlite:///{tmp_path}/s.db"),
                    rules_paths=[str(rules)])


def test_an_incident_s_first_message_in_each_channel_waits_for_that_route_s_group_wait(tmp_path: Path) -> None:
    from datetime import timedelta

    p = _sre_and_page(tmp_path, "group_wait", "2m", "10s")

    def waits() -> list[tuple[str, float]]:  # (channel, seconds the first message waits), per incident
        return sorted((r["channel"], round((r["next_attempt_at"] - r["created_at"]).total_seconds()))
                      for r in p.store.outbox_rows() if r["action"] == "post")

    p._on_alert(Alert.from_labels(title="build slow", labels={"service": "shop", "alertname": "y"}, starts_at=T0), T0)
    assert waits() == [("#sre", 120)]
    # a critical alert takes the page route (10 s) and, on through continue, the sre one (2 min)
    p._on_alert(Alert.from_labels(title="crm down", labels={"service": "crm", "alertname": "z"}, starts_at=T0,
                                  severity=Severity.critical), T0 + timedelta(hours=3))
    assert waits() == [("#page", 10), ("#sre", 120), ("#sre", 120)]


def test_an_open_incident_is_reminded_every_repeat_interval_of_the_route_to_each_channel(tmp_path: Path) -> None:
    from datetime import timedelta

    p = _sre_and_page(tmp_path, "repeat_interval", "1h", "10m")
    p._on_alert(Alert.from_labels(title="crm down", labels={"service": "crm", "alertname": "z"}, starts_at=T0,
                                  severity=Severity.critical), T0)
    posts = [r for r in p.store.outbox_rows() if r["action"] == "post"]
    assert {r["channel"]: r["payload"]["repeat_interval_s"] for r in posts} == {"#page": 600.0, "#sre": 3600.0}
    assert p.remind(force=True) == 0, "no reminder for a message that has not gone out"
    for r in posts:  # as the outbox worker records a sent message
        p.store.mark_delivered(r["id"], {"channel": r["channel"], "ts": "1.0"})
    sent = max(r["delivered_at"] for r in p.store.outbox_rows() if r["action"] == "post")
    p.notifier.clock = lambda: sent + timedelta(minutes=11)
    assert p.remind() == 1  # #page, after its route's 10 minutes
    assert p.remind() == 0  # looked again within REMIND_CHECK_EVERY: not at all
    p.notifier.clock = lambda: sent + timedelta(hours=1, minutes=1)
    assert p.remind(force=True) == 2  # #page's sixth, #sre's first
    (inc,) = p.store.list_incidents()
    p.incident_action(inc["id"], "ack", "ana")
    p.notifier.clock = lambda: sent + timedelta(hours=9)
    assert p.remind(force=True) == 0
    reminders = sorted(r["dedup_key"].split(":remind:")[1] for r in p.store.outbox_rows() if ":remind:" in r["dedup_key"])
    assert reminders == ["#page:1", "#page:6", "#sre:1"]


def test_an_event_from_a_clock_gone_wrong_does_not_move_event_time(tmp_path: Path) -> None:
    from datetime import timedelta

    from opsradar.models import Event

    p = Pipeline(parse_config("slack: {enabled: false}\n"), Store(f"sqlite:///{tmp_path}/s.db"))
    now = datetime.now(UTC)
    ok = Event.new(source="ci", native_id="a", kind="build", ts=now - timedelta(minutes=5), entity="job:shop")
    p.handle([ok], [])
    assert p.watermark == ok.ts
    wrong = Event.new(source="ci", native_id="b", kind="build", ts=now + timedelta(days=400), entity="job:shop")
    from opsradar.serving.metrics import EVENTS_AHEAD

    before = EVENTS_AHEAD._value.get()
    p.handle([wrong], [])
    assert EVENTS_AHEAD._value.get() == before + 1  # opsradar_events_ahead_of_clock_total
    assert p.watermark == ok.ts, "timers and auto-resolve would have run 400 days ahead"
    assert p.stats.future_events == 1
    assert p.stats.events == 2, "the event itself is still handled"
    skewed = Event.new(source="ci", native_id="c", kind="build", ts=now + timedelta(minutes=20), entity="job:shop")
    p.handle([skewed], [])
    assert p.watermark == skewed.ts, "a clock a little ahead is allowed"


def test_events_past_the_retention_behind_event_time_are_deleted(tmp_path: Path) -> None:
    from datetime import timedelta

    from opsradar.models import Event

    store = Store(f"sqlite:///{tmp_path}/s.db")
    p = Pipeline(parse_config("slack: {enabled: false}\nstore: {event_retention: 30d}\n"), store)
    events = [Event.new(source="ci", native_id=f"b{d}", kind="build", ts=T0 + timedelta(days=d), entity="job:shop")
              for d in range(0, 41, 5)]  # 45 days of history, replayed long after it happened
    store.add_events(events)
    p.handle(events, [])
    from opsradar.serving.metrics import EVENTS_PRUNED

    before = EVENTS_PRUNED._value.get()
    assert p.prune() == 2, "the two events more than 30 days behind the newest (T0 + 40 d)"
    assert EVENTS_PRUNED._value.get() == before + 2  # opsradar_events_pruned_total
    assert store.count_events() == 7
    assert min(e.ts for e in store.iter_events()) == T0 + timedelta(days=10)
    later = Event.new(source="ci", native_id="b45", kind="build", ts=T0 + timedelta(days=45), entity="job:shop")
    store.add_events([later])
    p.handle([later], [])
    assert p.prune() == 0, "looked again within PRUNE_EVERY: not at all"
    assert p.prune(force=True) == 1
    assert p.stats.pruned == 3


def test_pruning_deletes_in_short_transactions(tmp_path: Path) -> None:
    from datetime import timedelta

    from opsradar.models import Event

    store = Store(f"sqlite:///{tmp_path}/s.db")
    store.add_events([Event.new(source="ci", native_id=f"b{i}", kind="build", ts=T0 + timedelta(minutes=i),
                                entity="job:shop") for i in range(10)])
    assert store.prune_events_before(T0 + timedelta(minutes=7), batch=3) == 7
    assert store.count_events() == 3

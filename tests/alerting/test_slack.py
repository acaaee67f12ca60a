"""Slack delivery against the Slack fake: one message per incident updated in place, threads, retries,
429 + Retry-After, storm digests, escaping, template overrides, and signed interactions."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from prometheus_client import CollectorRegistry
from slack_sdk import WebClient

from opsradar.alerting.correlation import Correlator
from opsradar.alerting.noise import NoiseMetrics
from opsradar.alerting.notifiers.outbox import Destination, Notifier, OutboxWorker
from opsradar.alerting.notifiers.render import Renderer
from opsradar.alerting.notifiers.slack import InteractionHandler, InvalidSignature, SlackTransport, record_message_ts
from opsradar.config import CorrelationConfig, SlackConfig
from opsradar.demo.fakes.slack import SlackFake
from opsradar.models import IncidentStatus, Severity
from opsradar.store import Store
from tests.alerting.test_correlation import GRAPH, T0, alert, storm

TOKEN = "xoxb-test-token"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


class Pipeline:
    """Correlator → Notifier → outbox → worker → the Slack fake, on a fake clock."""

    def __init__(self, store: Store, fake: SlackFake, *, cfg: SlackConfig | None = None,
                 targets: dict[str, Destination | None] | None = None, templates_dir: Path | None = None) -> None:
        self.store, self.fake = store, fake
        self.cfg = cfg or SlackConfig(default_channel="#opsradar", storm_threshold=5)
        self.metrics = NoiseMetrics(registry=CollectorRegistry())
        self.corr = Correlator(store, GRAPH, CorrelationConfig(), metrics=self.metrics)
        self.clock = FakeClock(datetime.now(UTC))
        self.notifier = Notifier(store, self.cfg, targets=targets, metrics=self.metrics, clock=self.clock)
        client = WebClient(token=TOKEN, base_url=fake.url + "/api/")
        self.transport = SlackTransport(client, store, Renderer(templates_dir, public_url="https://ops.example"))
        self.worker = OutboxWorker(store, self.transport, clock=self.clock, sleep=self.clock.sleep,
                                   metrics=self.metrics, on_delivered=record_message_ts(store))

    def add(self, a: Any, at: datetime, **kw: Any) -> Any:
        u = self.corr.add(a, at, **kw)
        self.notifier.notify(u, at)
        return u


@pytest.fixture
def fake() -> Iterator[SlackFake]:
    with SlackFake(token=TOKEN, channels=["opsradar", "shop-oncall", "payments"]) as f:
        yield f  # type: ignore[misc]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/state.db")
    yield s
    s.close()


def test_an_alert_storm_is_one_message_updated_in_place_as_it_grows(store: Store, fake: SlackFake) -> None:
    p = Pipeline(store, fake)
    alerts = storm()
    p.add(alerts[0], T0)
    p.worker.drain()
    msgs = fake.channel_messages("opsradar")
    assert len(msgs) == 1
    assert "Alerts:* 1" in msgs[0]["text"]
    for i, a in enumerate(alerts[1:], 1):
        p.add(a, T0 + timedelta(minutes=i))
    p.worker.drain()
    msgs = fake.channel_messages("opsradar")
    assert len(msgs) == 1, "a storm is one parent message"
    top = msgs[0]
    assert "Alerts:* 6" in top["text"]
    assert "checkout, shop" in top["text"]
    assert top["edits"], "the message was updated in place with chat.update"
    assert top["blocks"][0]["type"] == "header"
    assert {e["action_id"] for e in top["blocks"][-1]["elements"]} == {
        "opsradar_ack", "opsradar_resolve", "opsradar_silence_1h", "opsradar_false_positive"}
    assert "https://ops.example/v1/incidents/" in top["text"]
    assert "/report?format=html" in top["text"]
    replies = [r["text"] for r in top["replies"]]
    assert any("New service affected: checkout" in r for r in replies)
    assert any("Escalated to critical" in r for r in replies)
    inc = store.list_incidents()[0]
    assert inc["slack_ts"] == top["ts"]
    assert inc["slack_channel"] == fake.channel_id("opsradar")
    snap = p.metrics.snapshot()["totals"]
    assert snap["alerts"] == 6
    assert snap["incidents"] == 1
    assert snap["slack_messages"] == 1 + len(replies)


def test_root_cause_candidate_shows_when_set(store: Store, fake: SlackFake) -> None:
    p = Pipeline(store, fake)
    u = p.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    p.worker.drain()
    assert "root-cause candidate:* —" in fake.channel_messages("opsradar")[0]["text"]

    def ranked(candidate: dict[str, object], minute: int, title: str) -> str:
        doc = store.get_incident(u.incident_id)
        assert doc is not None
        doc["root_cause"] = [candidate]
        store.save_incident(doc)
        p.add(alert(title, service="shop", source="elasticsearch"), T0 + timedelta(minutes=minute))
        p.worker.drain()
        return str(fake.channel_messages("opsradar")[0]["text"])

    text = ranked({"summary": "deploy shop-deploy#41 (commit abc123)", "score": 0.91}, 1, "Errors up")
    assert "deploy shop-deploy#41 (commit abc123) (score 0.91)" in text
    # a candidate that the evidence barely supports is not called a likely cause
    text = ranked({"summary": "issue SHOP-7 → Done", "score": 0.009}, 2, "Latency up")
    assert "no change clearly linked (closest: issue SHOP-7 → Done, score 0.01)" in text


def test_the_message_says_what_was_seen_in_words(store: Store, fake: SlackFake) -> None:
    from opsradar.alerting.alerts import alert_from_anomaly
    from opsradar.models import Anomaly, Contribution

    anomaly = Anomaly(id="an-1", stream="jenkins|build|job:shop-deploy", detector="quantile_band", detector_version="1",
                      ts=T0, source="jenkins", kind="build", entity="job:shop-deploy", score=0.99, threshold=0.5,
                      raw_score=9.0, explanation=[
                          Contribution(feature="duration_s", value=2460, expected=330, low=290, high=410, contribution=0.8),
                          Contribution(feature="queue_s", value=20, expected=18, low=5, high=40, contribution=0.2)])
    p = Pipeline(store, fake)
    p.add(alert_from_anomaly(anomaly, GRAPH), T0)
    p.worker.drain()
    text = fake.channel_messages("opsradar")[0]["text"]
    assert "*What was seen:*\n• Anomalous build on job:shop-deploy: duration 41 min (usual 4.8–6.8 min)" in text
    assert "queue time" not in text, "a feature inside its normal range is not news"
    for i, a in enumerate(storm()[1:], 1):  # rule-like alerts join: the update shows the most severe first
        a.annotations["description"] = f"described {i}"
        p.add(a, T0 + timedelta(minutes=i))
    p.worker.drain()
    text = fake.channel_messages("opsradar")[0]["text"]
    assert "• Checkout deploy failed: described 5\n• Timeouts calling shop: described 2\n" in text
    assert "…and 3 more alerts (see the report)" in text  # 6 alerts, 3 shown


def test_ack_and_resolve_update_the_message_and_reply_in_thread(store: Store, fake: SlackFake) -> None:
    p = Pipeline(store, fake)
    u = p.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    p.worker.drain()
    p.notifier.notify(p.corr.ack(u.incident_id, "ana", T0 + timedelta(minutes=1)))
    p.worker.drain()
    top = fake.channel_messages("opsradar")[0]
    assert "acknowledged by ana" in top["text"]
    assert top["replies"][-1]["text"].endswith("Acknowledged by ana")
    p.notifier.notify(p.corr.resolve(u.incident_id, "bo", T0 + timedelta(minutes=2)))
    p.worker.drain()
    top = fake.channel_messages("opsradar")[0]
    assert "resolved" in top["text"]
    assert "Resolved by bo" in top["replies"][-1]["text"]
    assert len(fake.channel_messages("opsradar")) == 1


def test_routing_to_receivers_with_mentions_for_high_severity(store: Store, fake: SlackFake) -> None:
    targets = {"shop-team": Destination("#shop-oncall", ("<!subteam^S123>",)), "sink": None}
    p = Pipeline(store, fake, targets=targets)
    p.add(alert("Checkout down", entity="job:shop-deploy", source="jenkins", severity=Severity.critical), T0,
          receivers=["shop-team", "sink"])
    p.add(alert("Payments slow", entity="job:payments-deploy", source="jenkins"), T0, receivers=["#payments"])
    p.worker.drain()
    shop = fake.channel_messages("shop-oncall")
    assert len(shop) == 1
    assert shop[0]["text"].startswith("<!subteam^S123>")
    pay = fake.channel_messages("payments")
    assert len(pay) == 1
    assert "<!subteam" not in pay[0]["text"]
    assert fake.channel_messages("opsradar") == []


def test_429_with_retry_after_is_honoured_and_nothing_is_lost(sqlite_store: Store, fake: SlackFake) -> None:
    p = Pipeline(sqlite_store, fake)
    fake.rate_limit_next(retry_after=7, times=2, method="chat.postMessage")
    p.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    p.add(alert("Payments slow", entity="job:payments-deploy", source="jenkins"), T0)
    p.worker.drain()
    assert len(fake.channel_messages("opsradar")) == 2
    assert sum(s for s in p.clock.slept if s >= 7) >= 14, "the worker waited Retry-After each time"
    assert sqlite_store.outbox_rows(status="pending") == []
    assert sqlite_store.outbox_rows(status="dead") == []


def test_5xx_and_network_errors_are_retried_with_backoff(sqlite_store: Store, fake: SlackFake) -> None:
    p = Pipeline(sqlite_store, fake)
    fake.fail_next(503, times=3, path="/api/chat.postMessage")
    u = p.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    p.worker.drain()
    assert len(fake.channel_messages("opsradar")) == 1
    waits = [s for s in p.clock.slept if s >= 1]
    assert waits[:3] == sorted(waits[:3]), "exponential backoff"
    assert waits[2] > waits[0], "exponential backoff"
    # 503 after the message was accepted is not tested here (see test_outbox_crash); updates retry too.
    fake.fail_next(500, times=1, path="/api/chat.update")
    p.notifier.notify(p.corr.ack(u.incident_id, "ana", T0))
    p.worker.drain()
    assert "acknowledged by ana" in fake.channel_messages("opsradar")[0]["text"]


def test_a_lost_response_does_not_post_twice(sqlite_store: Store, fake: SlackFake) -> None:
    """Slack accepted the post but the client saw a 5xx: the retry finds the message by its metadata."""
    p = Pipeline(sqlite_store, fake)
    u = p.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    row = sqlite_store.outbox_rows()[0]
    # simulate: the post went through, then the process died before mark_delivered
    p.worker._mark_in_flight(row)
    WebClient(token=TOKEN, base_url=fake.url + "/api/").chat_postMessage(
        channel="#opsradar", text="old", metadata=SlackTransport._metadata(row))
    p.add(alert("Errors up", service="shop", source="elasticsearch"), T0 + timedelta(minutes=1))
    p.worker.drain()
    msgs = fake.channel_messages("opsradar")
    assert len(msgs) == 1
    assert "Alerts:* 2" in msgs[0]["text"], "the recovered message was brought up to date"
    assert store_incident(sqlite_store, u.incident_id)["slack_ts"] == msgs[0]["ts"]


def store_incident(store: Store, iid: str) -> dict[str, Any]:
    doc = store.get_incident(iid)
    assert doc is not None
    return doc


def test_permanent_errors_make_the_row_dead_and_keep_others_flowing(sqlite_store: Store, fake: SlackFake) -> None:
    p = Pipeline(sqlite_store, fake)
    p.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0, receivers=["#nowhere"])
    p.add(alert("Payments slow", entity="job:payments-deploy", source="jenkins"), T0, receivers=["#payments"])
    p.worker.drain()
    dead = sqlite_store.outbox_rows(status="dead")
    assert len(dead) == 1
    assert "channel_not_found" in (dead[0]["last_error"] or "")
    assert len(fake.channel_messages("payments")) == 1


def test_bad_token_is_a_permanent_error(sqlite_store: Store, fake: SlackFake) -> None:
    p = Pipeline(sqlite_store, fake)
    p.transport.client.token = "xoxb-wrong"
    p.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    p.worker.drain()
    assert "invalid_auth" in (sqlite_store.outbox_rows(status="dead")[0]["last_error"] or "")


def test_per_channel_pace_is_kept(sqlite_store: Store, fake: SlackFake) -> None:
    p = Pipeline(sqlite_store, fake, cfg=SlackConfig(default_channel="#opsradar", storm_threshold=50))
    for i, svc in enumerate(["shop", "payments", "search"]):
        p.add(alert(f"{svc} broken", entity=f"job:{svc}-build" if svc == "search" else f"job:{svc}-deploy",
                    source="jenkins"), T0 + timedelta(seconds=i))
    start = p.clock.now
    p.worker.drain()
    assert len(fake.channel_messages("opsradar")) == 3
    assert (p.clock.now - start) >= timedelta(seconds=2), "one message per second per channel"


def test_storm_mode_sends_one_digest_instead_of_many_messages(sqlite_store: Store, fake: SlackFake) -> None:
    p = Pipeline(sqlite_store, fake, cfg=SlackConfig(default_channel="#opsradar", storm_threshold=2,
                                                     storm_window=timedelta(minutes=10)))
    ids = []
    for i in range(6):  # six unrelated incidents in two minutes
        u = p.add(alert(f"Host {i} disk full", entity=f"host:h{i}", source="elasticsearch", team=f"t{i}"),
                  T0 + timedelta(seconds=20 * i), group_by=["team"])
        ids.append(u.incident_id)
    p.worker.drain()
    msgs = fake.channel_messages("opsradar")
    assert len(msgs) == 3, "two own messages, then one digest"
    digest = msgs[-1]["text"]
    assert "Alert storm:* 4 incidents" in digest
    assert all(i in digest for i in ids[2:])
    # a digested incident's change updates the digest, not a new message
    p.notifier.notify(p.corr.ack(ids[3], "ana", T0 + timedelta(minutes=3)))
    p.worker.drain()
    msgs = fake.channel_messages("opsradar")
    assert len(msgs) == 3
    assert "acknowledged" in msgs[-1]["text"]


def test_user_text_is_escaped_and_templates_are_overridable(store: Store, fake: SlackFake, tmp_path: Path) -> None:
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "slack_incident.j2").write_text("CUSTOM {{ incident.title }} sev={{ incident.severity }} {{ report_link }}")
    p = Pipeline(store, fake, templates_dir=tpl)
    p.add(alert("<!channel> & <http://evil.example|click me>", entity="job:shop-deploy", source="jenkins"), T0)
    p.worker.drain()
    text = fake.channel_messages("opsradar")[0]["text"]
    assert text.startswith("CUSTOM &lt;!channel&gt; &amp; &lt;http://evil.example|click me&gt; sev=warning <https://")
    assert "<!channel>" not in text


# ------------------------------------------------------------------------------------ interactions


def signed(payload: dict[str, Any], *, secret: str = SECRET, ts: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(ts if ts is not None else int(time.time()))
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return body, {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"}


def click(action_id: str, incident_id: str, user: str = "ana") -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": "U0ANA", "username": user, "team_id": "T0FAKE"},
            "team": {"id": "T0FAKE"}, "container": {"type": "message", "message_ts": "1.2", "channel_id": "C1"},
            "actions": [{"type": "button", "action_id": action_id, "block_id": f"opsradar:{incident_id}",
                         "value": incident_id, "action_ts": "1.3"}]}


class Silencer:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], datetime, str, str]] = []

    def __call__(self, matchers: list[str], ends_at: datetime, created_by: str, comment: str) -> str:
        self.calls.append((matchers, ends_at, created_by, comment))
        return f"s{len(self.calls)}"


def test_signed_interactions_act_and_are_audited(store: Store, fake: SlackFake) -> None:
    p = Pipeline(store, fake)
    u = p.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins", stream="jenkins|deploy"), T0)
    p.worker.drain()
    silencer = Silencer()
    h = InteractionHandler(signing_secret=SECRET, correlator=p.corr, notifier=p.notifier, silencer=silencer)
    res = h.handle_interaction(*signed(click("opsradar_ack", u.incident_id)))
    assert res.action == "ack"
    assert res.actor == "slack:ana"
    assert p.corr.get(u.incident_id).status == IncidentStatus.acknowledged
    res = h.handle_interaction(*signed(click("opsradar_silence_1h", u.incident_id, "bo")))
    assert silencer.calls[0][0] == ['service="shop"']
    assert silencer.calls[0][2] == "slack:bo"
    res = h.handle_interaction(*signed(click("opsradar_false_positive", u.incident_id)))
    assert res.proposed_rule
    assert "action: drop" in res.proposed_rule
    res = h.handle_interaction(*signed(click("opsradar_resolve", u.incident_id)))
    assert p.corr.get(u.incident_id).status == IncidentStatus.resolved
    audit = [(r["actor"], r["action"]) for r in store.audit_log()]
    for action in ("slack.ack", "slack.silence_1h", "slack.false_positive", "slack.resolve"):
        assert any(a == action and actor.startswith("slack:") for actor, a in audit), action
    p.worker.drain()
    top = fake.channel_messages("opsradar")[0]
    assert "resolved" in top["text"]
    assert [r["text"] for r in top["replies"]][-2:] == [":eyes: Acknowledged by slack:ana",
                                                         ":white_check_mark: Resolved by slack:ana"]


def test_forged_stale_or_unsigned_interactions_are_rejected(store: Store) -> None:
    corr = Correlator(store, GRAPH, CorrelationConfig())
    u = corr.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    h = InteractionHandler(signing_secret=SECRET, correlator=corr)
    with pytest.raises(InvalidSignature):
        h.handle_interaction(*signed(click("opsradar_ack", u.incident_id), secret="not-the-secret"))
    with pytest.raises(InvalidSignature):
        h.handle_interaction(*signed(click("opsradar_ack", u.incident_id), ts=int(time.time()) - 6 * 60))
    body, headers = signed(click("opsradar_ack", u.incident_id))
    with pytest.raises(InvalidSignature):
        h.handle_interaction(body.replace(b"ana", b"eve"), headers)
    with pytest.raises(InvalidSignature):
        h.handle_interaction(body, {})
    assert corr.get(u.incident_id).status == IncidentStatus.open
    assert not any(r["action"].startswith("slack.") for r in store.audit_log())


def test_rule_engine_decisions_route_correlate_and_silence_end_to_end(store: Store, fake: SlackFake) -> None:
    from opsradar.alerting.notifiers.outbox import handle_decision
    from opsradar.alerting.notifiers.slack import destinations_from_receivers
    from opsradar.alerting.rules.engine import RuleEngine
    from opsradar.alerting.rules.loader import load_texts
    from opsradar.alerting.rules.silences import SilenceStore

    rules = load_texts({"r.yaml": """
receivers:
  - {name: shop, slack: {channel: "#shop-oncall", mentions: ["<!here>"]}}
  - {name: quiet}
route:
  receiver: shop
  group_by: [service]
  routes:
    - {matchers: ['team="none"'], receiver: quiet}
filters:
  - {name: drop-nightly, action: drop, matchers: ['entity=~"job:nightly-.*"']}
"""})
    silences = SilenceStore(store)
    engine = RuleEngine(rules, graph=GRAPH, silences=silences)
    p = Pipeline(store, fake, targets=destinations_from_receivers(engine.receivers.values()))
    now = datetime.now(UTC)
    for i, a in enumerate(storm()):
        handle_decision(engine.on_alert(a, now), p.corr, p.notifier, now + timedelta(seconds=i))
    assert handle_decision(engine.on_alert(alert("nightly slow", entity="job:nightly-etl"), now),
                           p.corr, p.notifier, now) is None
    p.worker.drain()
    msgs = fake.channel_messages("shop-oncall")
    assert len(msgs) == 1
    assert "Alerts:* 6" in msgs[0]["text"]
    assert msgs[0]["text"].startswith("<!here>"), "critical: the receiver's mentions"
    iid = store.list_incidents()[0]["id"]
    h = InteractionHandler(signing_secret=SECRET, correlator=p.corr, notifier=p.notifier, silencer=engine.silences)
    res = h.handle_interaction(*signed(click("opsradar_silence_1h", iid)))
    assert len(res.silences) == 2
    later = engine.on_alert(alert("Errors up again", service="shop", source="elasticsearch"), now + timedelta(minutes=5))
    assert later.silenced
    assert not later.notify


def test_only_one_worker_drains_an_outbox_at_a_time(store: Store, fake: SlackFake) -> None:
    p = Pipeline(store, fake)
    standby = OutboxWorker(store, p.transport, clock=p.clock, sleep=p.clock.sleep)
    for i, entity in enumerate(["job:shop-deploy", "job:payments-deploy", "job:search-build"]):
        p.add(alert(f"Broken {i}", entity=entity, source="jenkins"), T0)
    p.clock.now = datetime.now(UTC) + timedelta(seconds=1)
    assert p.worker.drain_once().delivered >= 1
    assert standby.drain().delivered == 0, "the standby does not send while another worker owns the outbox"
    p.worker.drain()
    assert len(fake.channel_messages("opsradar")) == 3
    p.worker.close()
    p.add(alert("Broken again", entity="job:shop-build", source="git"), T0 + timedelta(hours=3))
    assert standby.drain().delivered >= 1, "after the owner closes, the standby takes over"
    standby.close()
    assert len(fake.channel_messages("opsradar")) == 4


def test_an_action_that_fails_is_not_audited_as_done(store: Store) -> None:
    corr = Correlator(store, GRAPH, CorrelationConfig())
    u = corr.add(alert("Deploy failed", entity="job:shop-deploy", source="jenkins"), T0)
    corr.resolve(u.incident_id, "bo", T0)
    h = InteractionHandler(signing_secret=SECRET, correlator=corr)
    with pytest.raises(ValueError, match="cannot be acknowledged"):
        h.handle_interaction(*signed(click("opsradar_ack", u.incident_id)))
    with pytest.raises(KeyError, match="no incident 'inc-nope'"):
        h.handle_interaction(*signed(click("opsradar_ack", "inc-nope")))
    assert not any(r["action"].startswith("slack.") for r in store.audit_log())


def test_a_log_template_anomaly_names_its_lines_and_keeps_one_alert_per_stream(store: Store, fake: SlackFake) -> None:
    from opsradar.alerting.alerts import alert_from_anomaly
    from opsradar.models import Anomaly, Contribution

    def gc(template: str | None, minute: int) -> Anomaly:
        return Anomaly(id=f"an-{minute}", stream="app-logs|log|service:shop", detector="robust_z", detector_version="1",
                       ts=T0 + timedelta(minutes=minute), source="app-logs", kind="log", entity="service:shop",
                       score=1.0, threshold=0.5, raw_score=9.0, labels={"template": template} if template else {},
                       explanation=[Contribution(feature="duration_trend", value=0.02, expected=0.0, low=0.0, high=0.0,
                                                 contribution=1.0)])

    first, second = alert_from_anomaly(gc("GC pause <*> ms", 0), GRAPH), alert_from_anomaly(gc(None, 5), GRAPH)
    assert first.labels["template"] == "GC pause <*> ms"  # rules can match on it…
    assert first.fingerprint == second.fingerprint  # …but the stream keeps one alert
    p = Pipeline(store, fake)
    p.add(first, T0)
    p.worker.drain()
    text = fake.channel_messages("opsradar")[0]["text"]
    # mrkdwn-escaped: Slack shows it as "GC pause <*> ms"
    assert ('duration of these log lines rising 5 %/h (at least doubling in a day: a slow leak?); '
            'lines like "GC pause &lt;*&gt; ms"') in text


def test_the_first_message_waits_for_group_wait_and_holds_the_alerts_that_joined_meanwhile(
        store: Store, fake: SlackFake) -> None:
    p = Pipeline(store, fake)
    wait = timedelta(seconds=30)
    alerts = storm()
    u = p.corr.add(alerts[0], T0)
    assert p.notifier.notify(u, T0, group_wait=wait) == [f"inc:{u.incident_id}:post:#opsradar"]
    for i, a in enumerate(alerts[1:3], 1):  # they join before the first message goes out
        assert p.notifier.notify(p.corr.add(a, T0 + timedelta(seconds=i)), T0 + timedelta(seconds=i),
                                 group_wait=wait) == [], "nothing to add to a message that is not sent yet"
    p.clock.now += wait - timedelta(seconds=1)
    assert p.worker.drain_once().delivered == 0
    assert fake.channel_messages("opsradar") == []
    p.clock.now += timedelta(seconds=1)
    assert p.worker.drain_once().delivered == 1
    (msg,) = fake.channel_messages("opsradar")
    assert "Alerts:* 3" in msg["text"], "the one message shows every alert that arrived within group_wait"
    assert not msg["edits"]
    # once it is out, the message is edited in place as the incident grows: no wait again
    p.notifier.notify(p.corr.add(alerts[3], T0 + timedelta(minutes=1)), T0 + timedelta(minutes=1), group_wait=wait)
    p.clock.now += timedelta(seconds=1)  # the channel's pace
    assert p.worker.drain_once().delivered == 1
    (msg,) = fake.channel_messages("opsradar")
    assert "Alerts:* 4" in msg["text"]
    assert len(msg["edits"]) == 1


def test_a_clean_shutdown_releases_the_messages_held_for_group_wait(store: Store, fake: SlackFake) -> None:
    p = Pipeline(store, fake)
    u = p.corr.add(alert("Timeouts", service="shop"), T0)
    p.notifier.notify(u, T0, group_wait=timedelta(minutes=5))
    assert p.worker.drain_once().delivered == 0
    assert p.worker.release_held() == 1
    assert p.worker.drain_once().delivered == 1
    assert len(fake.channel_messages("opsradar")) == 1
    assert p.worker.release_held() == 0, "a message that went out is not held"


def test_group_wait_can_be_turned_off(store: Store, fake: SlackFake) -> None:
    p = Pipeline(store, fake, cfg=SlackConfig(default_channel="#opsradar", apply_group_wait=False))
    alerts = storm()
    p.notifier.notify(p.corr.add(alerts[0], T0), T0, group_wait=timedelta(seconds=30))
    p.clock.now += timedelta(seconds=1)  # (the fake clock started before the row was written)
    assert p.worker.drain_once().delivered == 1
    keys = p.notifier.notify(p.corr.add(alerts[1], T0 + timedelta(seconds=1)), T0, group_wait=timedelta(seconds=30))
    assert keys
    assert all(":update:" in k or ":reply:" in k for k in keys)


def test_each_channel_waits_for_the_group_wait_of_the_receivers_that_lead_there(store: Store, fake: SlackFake) -> None:
    p = Pipeline(store, fake, targets={"sre": Destination("#opsradar"), "page": Destination("#payments")})
    u = p.corr.add(alert("Timeouts", service="shop"), T0, receivers=["sre", "page"])
    p.notifier.notify(u, T0, group_wait={"sre": timedelta(seconds=30), "page": timedelta(seconds=5)})
    p.clock.now += timedelta(seconds=5)
    assert p.worker.drain_once().delivered == 1
    assert len(fake.channel_messages("payments")) == 1
    assert fake.channel_messages("opsradar") == []
    p.clock.now += timedelta(seconds=25)
    assert p.worker.drain_once().delivered == 1
    assert len(fake.channel_messages("opsradar")) == 1


def test_the_default_channel_waits_for_the_shortest_group_wait(store: Store, fake: SlackFake) -> None:
    p = Pipeline(store, fake)  # no receiver leads to a channel: the incident goes to #opsradar
    u = p.corr.add(alert("Timeouts", service="shop"), T0, receivers=["sre", "db"])
    p.notifier.notify(u, T0, group_wait={"sre": timedelta(seconds=30), "db": timedelta(seconds=10)})
    (row,) = p.store.outbox_rows()
    assert (row["channel"], round((row["next_attempt_at"] - p.clock.now).total_seconds())) == ("#opsradar", 10)


def test_the_api_can_tell_what_became_of_each_first_message(store: Store, fake: SlackFake) -> None:
    from opsradar.alerting.notifiers.outbox import message_state

    p = Pipeline(store, fake)
    u = p.corr.add(alert("Timeouts", service="shop"), T0)
    p.notifier.notify(u, T0, group_wait=timedelta(seconds=30))

    def states() -> list[str]:
        return [message_state(r, p.clock.now)["state"] for r in store.first_messages(u.incident_id or "")]

    assert states() == ["held"]
    (held,) = [message_state(r, p.clock.now) for r in store.first_messages(u.incident_id or "")]
    assert held["channel"] == "#opsradar"
    assert datetime.fromisoformat(held["due_at"]) - p.clock.now == timedelta(seconds=30)
    p.clock.now += timedelta(seconds=30)
    assert states() == ["queued"]
    assert p.worker.drain_once().delivered == 1
    assert states() == ["sent"]
    (sent,) = [message_state(r, p.clock.now) for r in store.first_messages(u.incident_id or "")]
    assert "sent_at" in sent
    assert "repeat_interval_s" not in sent, "notified with no repeat_interval"
    assert store.first_messages("inc-unknown") == []
    # an attempt that failed, then one given up
    row = {"channel": "#x", "status": "pending", "attempts": 2, "next_attempt_at": T0, "delivered_at": None,
           "last_error": "slack: ratelimited"}
    assert message_state(row, T0) == {"channel": "#x", "state": "retrying", "attempts": 2,
                                      "due_at": T0.isoformat(), "last_error": "slack: ratelimited"}
    assert message_state({**row, "status": "dead"}, T0)["state"] == "failed"


def _thread(fake: SlackFake, channel: str = "opsradar") -> list[str]:
    (msg,) = fake.channel_messages(channel)
    return [r["text"] for r in msg["replies"]]


def test_an_open_incident_is_reminded_in_its_thread_every_repeat_interval_until_acknowledged(
        store: Store, fake: SlackFake) -> None:
    p = Pipeline(store, fake)
    every = timedelta(hours=4)
    u = p.corr.add(alert("Timeouts", service="shop"), T0)
    p.notifier.notify(u, T0, repeat_interval=every)
    p.clock.now += timedelta(seconds=1)  # (the fake clock started before the row was written)
    assert p.worker.drain_once().delivered == 1
    inc = p.corr.get(u.incident_id or "")
    p.clock.now += timedelta(hours=1)
    assert p.notifier.remind(inc) == [], "not before repeat_interval has passed since the message went out"
    p.clock.now += timedelta(hours=3, seconds=1)
    assert p.notifier.remind(inc) == [f"inc:{inc.id}:remind:#opsradar:1"]
    assert p.notifier.remind(inc) == [], "asking again enqueues nothing twice"
    p.worker.drain()
    assert _thread(fake) == [":bell: Still open and not acknowledged, 4h after its first message. "
                             "Acknowledge or resolve it to stop these reminders."]
    from opsradar.alerting.notifiers.outbox import message_state

    (post,) = store.first_messages(inc.id)
    state = message_state(post, p.clock.now, reminders=True)  # what GET /v1/incidents/{id} shows
    assert state["repeat_interval_s"] == every.total_seconds()
    assert datetime.fromisoformat(state["next_reminder_at"]) == post["delivered_at"] + 2 * every
    assert "next_reminder_at" not in message_state(post, p.clock.now), "not when the incident is not open"
    (msg,) = fake.channel_messages("opsradar")
    (buttons,) = [b for b in msg["replies"][0]["blocks"] if b["type"] == "actions"]  # stop it from the thread
    assert [(e["action_id"], e["value"]) for e in buttons["elements"]] == [("opsradar_ack", inc.id),
                                                                          ("opsradar_resolve", inc.id)]
    p.clock.now += every  # after a restart too: the dedup key names the reminder's number
    assert Notifier(store, p.cfg, clock=p.clock).remind(inc) == [f"inc:{inc.id}:remind:#opsradar:2"]
    p.worker.drain()
    assert "8h after its first message" in _thread(fake)[-1]
    p.notifier.notify(p.corr.ack(inc.id, "ana", T0 + timedelta(hours=8)))
    p.worker.drain()
    p.clock.now += every * 3
    assert p.notifier.remind(p.corr.get(inc.id)) == [], "acknowledged: no more reminders"
    assert [t.split(",")[0] for t in _thread(fake)] == [":bell: Still open and not acknowledged"] * 2 + [
        ":eyes: Acknowledged by ana"]


def test_a_reminder_still_queued_when_the_incident_is_acknowledged_is_not_sent(store: Store, fake: SlackFake) -> None:
    p = Pipeline(store, fake)
    u = p.corr.add(alert("Timeouts", service="shop"), T0)
    p.notifier.notify(u, T0, repeat_interval=timedelta(minutes=30))
    p.clock.now += timedelta(seconds=1)
    p.worker.drain()
    p.clock.now += timedelta(minutes=31)
    assert p.notifier.remind(p.corr.get(u.incident_id or ""))
    p.corr.ack(u.incident_id or "", "ana", T0 + timedelta(minutes=31))  # acked in the API before the worker ran
    delivered = p.worker.drain().delivered
    assert delivered == 1
    assert _thread(fake) == [], "the reminder was dropped, not sent"
    (row,) = [r for r in store.outbox_rows() if ":remind:" in r["dedup_key"]]
    assert row["status"] == "done"
    assert row["result"] == {"skipped": "the incident is acknowledged: no reminder"}


def test_reminders_follow_each_channel_s_route_mention_its_people_and_can_be_turned_off(
        store: Store, fake: SlackFake) -> None:
    targets = {"sre": Destination("#opsradar"), "page": Destination("#payments", ("<!subteam^S1>",))}
    p = Pipeline(store, fake, targets=targets)
    u = p.corr.add(alert("Down", service="shop", severity=Severity.critical), T0, receivers=["sre", "page"])
    p.notifier.notify(u, T0, repeat_interval={"sre": timedelta(hours=4), "page": timedelta(minutes=15)})
    p.clock.now += timedelta(seconds=1)
    p.worker.drain()
    inc = p.corr.get(u.incident_id or "")
    p.clock.now += timedelta(minutes=16)
    assert p.notifier.remind(inc) == [f"inc:{inc.id}:remind:#payments:1"]
    p.clock.now += timedelta(seconds=1)
    p.worker.drain()
    assert _thread(fake, "payments")[-1].startswith("<!subteam^S1> :bell: Still open")
    off = Notifier(store, SlackConfig(default_channel="#opsradar", apply_repeat_interval=False), targets=targets,
                   clock=p.clock)
    p.clock.now += timedelta(hours=5)
    assert off.remind(inc) == []
    v = p.corr.add(alert("Slow", service="payments"), T0)  # a route with no repeat_interval: never reminded
    p.notifier.notify(v, T0)
    p.clock.now += timedelta(seconds=1)
    p.worker.drain()
    p.clock.now += timedelta(days=3)
    assert p.notifier.remind(p.corr.get(v.incident_id or "")) == []


def test_a_storm_digest_s_open_incidents_are_reminded_in_its_thread(sqlite_store: Store, fake: SlackFake) -> None:
    p = Pipeline(sqlite_store, fake, cfg=SlackConfig(default_channel="#opsradar", storm_threshold=2,
                                                     storm_window=timedelta(minutes=10)))
    every = timedelta(hours=1)
    ids = []
    for i in range(5):  # two own messages, then three incidents in one digest
        u = p.corr.add(alert(f"Host {i} disk full", entity=f"host:h{i}", source="elasticsearch", team=f"t{i}"),
                       T0 + timedelta(seconds=20 * i), group_by=["team"])
        p.notifier.notify(u, T0 + timedelta(seconds=20 * i), repeat_interval=every)
        ids.append(u.incident_id or "")
    p.clock.now += timedelta(seconds=1)
    p.worker.drain()
    msgs = fake.channel_messages("opsradar")
    assert len(msgs) == 3
    digested = ids[2:]

    def remind_all() -> list[str]:
        return [k for i in ids for k in p.notifier.remind(p.corr.get(i))]

    assert remind_all() == [], "not before repeat_interval has passed since the digest went out"
    p.clock.now += every + timedelta(seconds=1)
    keys = remind_all()
    digest_keys = [k for k in keys if k.startswith("digest:")]
    assert len(digest_keys) == 1, "one reminder for the whole digest, whichever incident asks"
    assert digest_keys[0].endswith(":remind:1")
    assert len(keys) == 3, "and one in each of the two own messages' threads"
    p.notifier.notify(p.corr.ack(digested[0], "ana", T0 + timedelta(hours=1)))  # before the worker runs
    p.worker.drain()
    digest = fake.channel_messages("opsradar")[-1]
    (reminder,) = [r["text"] for r in digest["replies"]]
    assert reminder.startswith(":bell: 2 incidents of this storm are still open and not acknowledged, 1h after")
    assert digested[0] not in reminder, "acknowledged meanwhile: not listed"
    assert all(i in reminder for i in digested[1:])
    assert all(i not in reminder for i in ids[:2]), "incidents with their own message are reminded there"
    for i in digested[1:]:
        p.notifier.notify(p.corr.resolve(i, "bo", T0 + timedelta(hours=2)))
    p.clock.now += every
    assert [k for k in remind_all() if k.startswith("digest:")] == [], "no open incident asks any more"
    p.notifier.notify(p.corr.ack(ids[0], "ana", T0 + timedelta(hours=2)))
    p.notifier.notify(p.corr.ack(ids[1], "ana", T0 + timedelta(hours=2)))
    p.worker.drain()
    assert [r["text"].split(",")[0] for r in fake.channel_messages("opsradar")[-1]["replies"]] == [
        ":bell: 2 incidents of this storm are still open and not acknowledged"]


def test_a_digest_reminder_with_every_incident_acknowledged_meanwhile_is_not_sent(sqlite_store: Store,
                                                                                   fake: SlackFake) -> None:
    p = Pipeline(sqlite_store, fake, cfg=SlackConfig(default_channel="#opsradar", storm_threshold=2,
                                                     storm_window=timedelta(minutes=10)))
    ids = []
    for i in range(5):  # the last three in a digest
        u = p.corr.add(alert(f"Host {i} disk full", entity=f"host:h{i}", source="elasticsearch", team=f"t{i}"),
                       T0 + timedelta(seconds=20 * i), group_by=["team"])
        p.notifier.notify(u, T0 + timedelta(seconds=20 * i), repeat_interval=timedelta(minutes=30))
        ids.append(u.incident_id or "")
    p.clock.now += timedelta(seconds=1)
    p.worker.drain()
    p.clock.now += timedelta(minutes=31)
    assert [k for i in ids for k in p.notifier.remind(p.corr.get(i)) if k.startswith("digest:")]
    for i in ids[2:]:
        p.corr.ack(i, "ana", T0 + timedelta(minutes=31))  # in the API, before the worker ran
    p.worker.drain()
    (row,) = [r for r in sqlite_store.outbox_rows() if ":remind:" in r["dedup_key"] and r["dedup_key"].startswith("digest:")]
    assert row["status"] == "done"
    assert row["result"] == {"skipped": "every incident of the digest is acknowledged or resolved: no reminder"}
    assert all(not m.get("replies") for m in fake.channel_messages("opsradar") if "Alert storm" in m["text"])


def test_a_digest_reminder_mentions_the_channel_s_people_when_an_open_incident_is_severe_enough(
        sqlite_store: Store, fake: SlackFake) -> None:
    targets = {"page": Destination("#payments", ("<!subteam^S1>",))}
    p = Pipeline(sqlite_store, fake, targets=targets, cfg=SlackConfig(default_channel="#opsradar", storm_threshold=2,
                                                                      storm_window=timedelta(minutes=10)))
    ids = []
    for i in range(4):  # the last two in a digest; the last one critical
        sev = Severity.critical if i == 3 else Severity.warning
        u = p.corr.add(alert(f"Host {i} disk full", entity=f"host:h{i}", source="elasticsearch", team=f"t{i}",
                             severity=sev), T0 + timedelta(seconds=20 * i), group_by=["team"], receivers=["page"])
        p.notifier.notify(u, T0 + timedelta(seconds=20 * i), repeat_interval=timedelta(hours=1))
        ids.append(u.incident_id or "")
    p.clock.now += timedelta(seconds=1)
    p.worker.drain()
    p.clock.now += timedelta(hours=1, seconds=1)
    assert [k for k in p.notifier.remind(p.corr.get(ids[2])) if k.startswith("digest:")], "asked by the warning one"
    p.worker.drain()
    (reminder,) = [r["text"] for r in fake.channel_messages("payments")[-1]["replies"]]
    assert reminder.startswith("<!subteam^S1> :bell: 2 incidents of this storm")

"""A small hand-built incident in a store, shared by the root-cause report and browser tests.

shop's latency jumps at 10:00; a small deploy of shop (shipping one commit) happened at 09:52; a
much bigger, failing deploy of the unrelated crm service at 09:55 is the decoy. A new error log
template appears on shop at 10:00, and a similar incident on shop was resolved a week earlier.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from opsradar.config import EntityGraph
from opsradar.models import Alert, Anomaly, Contribution, Event, Incident, TimelineEntry
from opsradar.store import Store

ONSET = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SHA = "9f1c2d3e4b5a69788796a5b4c3d2e1f001122334"
INCIDENT_ID = "inc-latency"
HOSTILE_TITLE = 'Checkout latency <script>alert("x")</script> & <b>bold</b>'

GRAPH_DOC = {"services": {
    "shop": {"repos": ["shop-svc"], "jobs": ["shop-build", "shop-deploy"], "jira_projects": ["SHOP"],
             "depends_on": ["pay"], "team": "checkout"},
    "pay": {"repos": ["pay-svc"], "jobs": ["pay-deploy"]},
    "crm": {"repos": ["crm-svc"], "jobs": ["crm-deploy"]},
}}
GRAPH = EntityGraph.model_validate(GRAPH_DOC)


def _t(minutes: float) -> datetime:
    return ONSET + timedelta(minutes=minutes)


def populate(store: Store) -> dict[str, str]:
    """Fill ``store``; returns the ids of the interesting events."""
    events: list[Event] = []
    # shop's access latency, one point a minute for 90 minutes; it jumps at the onset.
    for i in range(-60, 30):
        latency = 120.0 + (i % 5) if i < 0 else 900.0 + 10 * (i % 3)
        events.append(Event.new(source="elasticsearch", native_id=f"acc{i}", kind="access", entity="service:shop",
                                ts=_t(i), values={"latency_ms": latency, "status_5xx": 0.0 if i < 0 else 4.0}))
    # shop's logs: a steady info template for 6 hours, then a new error template after the onset.
    for i in range(-360, 30, 5):
        events.append(Event.new(source="elasticsearch", native_id=f"log-ok{i}", kind="log", entity="service:shop",
                                ts=_t(i), labels={"template_id": "t-ok"}, attrs={"template": "request served in <*> ms"}))
    for i in range(0, 20, 2):
        events.append(Event.new(source="elasticsearch", native_id=f"log-err{i}", kind="log", entity="service:shop",
                                ts=_t(i), labels={"template_id": "t-timeout"},
                                attrs={"template": "ERROR <pay> timeout after <*> ms & retry"}))
    commit = Event.new(source="git", native_id=SHA, kind="commit", entity="repo:shop-svc", ts=_t(-95),
                       labels={"sha": SHA, "author": "ana"}, values={"lines_added": 12, "lines_deleted": 3, "files": 2},
                       attrs={"message": "Lower the pay client timeout\n\ndetails"})
    build = Event.new(source="jenkins", native_id="shop-build#41", kind="build", entity="job:shop-build", ts=_t(-20),
                      labels={"result": "SUCCESS", "number": "41"}, values={"duration_s": 300, "failed_tests": 0},
                      attrs={"commits": [SHA]})
    deploy = Event.new(source="jenkins", native_id="shop-deploy#17", kind="deploy", entity="job:shop-deploy",
                       ts=_t(-8), labels={"result": "SUCCESS", "number": "17"}, values={"duration_s": 60},
                       attrs={"commits": [SHA[:10]], "url": "http://jenkins.local/job/shop-deploy/17/"})
    decoy = Event.new(source="jenkins", native_id="crm-deploy#90", kind="deploy", entity="job:crm-deploy", ts=_t(-5),
                      labels={"result": "FAILURE", "number": "90"}, values={"failed_tests": 25},
                      attrs={"url": "javascript:alert(1)"})
    decoy_commit = Event.new(source="git", native_id="crm1", kind="commit", entity="repo:crm-svc", ts=_t(-7),
                             labels={"sha": "c" * 40, "author": "newbie", "first_time_author": "true"},
                             values={"lines_added": 5000, "lines_deleted": 2000, "files": 120})
    issue = Event.new(source="jira", native_id="SHOP-7@1", kind="issue", entity="project:SHOP", ts=_t(-240),
                      labels={"key": "SHOP-7", "status": "Done", "priority": "Low"}, attrs={"summary": "Tune <timeouts>"})
    events += [commit, build, deploy, decoy, decoy_commit, issue]
    store.add_events(events)

    anomalies = []
    for i in range(0, 3):
        a = Anomaly(id=f"an{i}", stream="elasticsearch|access|service:shop", detector="hst", detector_version="1",
                    ts=_t(i), event_id=Event.make_id("elasticsearch", f"acc{i}", _t(i)), source="elasticsearch", kind="access",
                    entity="service:shop", score=0.999, threshold=0.99, raw_score=0.9,
                    features={"latency_ms": 900.0}, explanation=[
                        Contribution(feature="latency_ms", value=900.0 + 10 * i, expected=122.0, low=110.0, high=140.0,
                                     contribution=0.8),
                        Contribution(feature="status_5xx", value=4.0, expected=0.0, low=0.0, high=0.5, contribution=0.2)])
        anomalies.append(a)
        store.add_anomaly(a.model_dump(mode="json"))
    alert = Alert.from_labels(title="High latency on shop", labels={"service": "shop", "entity": "service:shop",
                                                                     "source": "elasticsearch", "alertname": "latency"},
                              starts_at=_t(1), anomaly_id="an0")
    store.save_alert(alert.model_dump(mode="json"), incident_id=INCIDENT_ID)
    inc = Incident(id=INCIDENT_ID, title=HOSTILE_TITLE, services=["shop"], sources=["elasticsearch"],
                   entities=["service:shop"], alert_fingerprints=[alert.fingerprint], alert_count=1, anomaly_count=3,
                   first_seen=_t(1), last_seen=_t(20),
                   timeline=[TimelineEntry(ts=_t(1), what="opened", detail="1 alert")])
    store.save_incident(inc.model_dump(mode="json"))
    past = Incident(id="inc-old", title="Checkout latency high", status="resolved", services=["shop"],
                    sources=["elasticsearch"], first_seen=_t(-7 * 24 * 60), last_seen=_t(-7 * 24 * 60 + 40),
                    resolved_at=_t(-7 * 24 * 60 + 45),
                    root_cause=[{"event_id": "x", "summary": "deploy job:shop-deploy #12"}],
                    timeline=[TimelineEntry(ts=_t(-7 * 24 * 60), what="opened"),
                              TimelineEntry(ts=_t(-7 * 24 * 60 + 45), what="resolved",
                                            detail="rolled back shop-deploy #12", actor="bo")])
    store.save_incident(past.model_dump(mode="json"))
    store.add_feedback(target_type="incident", target_id="inc-old", verdict="true_positive", actor="bo",
                       reason="real outage, rollback fixed it")
    unrelated = Incident(id="inc-crm", title="CRM disk full", status="resolved", services=["crm"], sources=["jenkins"],
                         first_seen=_t(-3 * 24 * 60), last_seen=_t(-3 * 24 * 60 + 10))
    store.save_incident(unrelated.model_dump(mode="json"))
    return {"commit": commit.id, "build": build.id, "deploy": deploy.id, "decoy": decoy.id,
            "decoy_commit": decoy_commit.id, "issue": issue.id}

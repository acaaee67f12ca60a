"""How the report tells symptoms from causes: anomalous builds, rule alerts on a change."""

from __future__ import annotations

from datetime import datetime, timedelta

from opsradar.alerting.rootcause import ScoringParams, build_report
from opsradar.models import Alert, Anomaly, Contribution, Event, Incident
from opsradar.store import Store
from tests.alerting.rootcause_world import GRAPH, ONSET


def _incident(store: Store, alert: Alert, *, first_seen: datetime = ONSET,
              entities: tuple[str, ...] = ("job:shop-build",)) -> str:
    store.save_alert(alert.model_dump(mode="json"), incident_id="inc")
    inc = Incident(id="inc", title=alert.title, services=["shop"], entities=list(entities),
                   alert_fingerprints=[alert.fingerprint], first_seen=first_seen, last_seen=first_seen + timedelta(minutes=30))
    store.save_incident(inc.model_dump(mode="json"))
    return inc.id


def test_an_anomalous_build_is_a_symptom_and_blames_the_commit_it_built(store: Store) -> None:
    sha = "d" * 40
    merge = Event.new(source="git", native_id=sha, kind="commit", entity="repo:shop-svc", ts=ONSET - timedelta(minutes=30),
                      labels={"sha": sha, "author": "ana"}, attrs={"message": "Merge feature/cart"})
    older = Event.new(source="git", native_id="e" * 40, kind="commit", entity="repo:shop-svc",
                      ts=ONSET - timedelta(hours=3), labels={"sha": "e" * 40})
    build = Event.new(source="jenkins", native_id="shop-build#8", kind="build", entity="job:shop-build", ts=ONSET,
                      labels={"result": "UNSTABLE", "number": "8"}, values={"failed_tests": 35, "duration_s": 300},
                      attrs={"commits": [sha]})
    store.add_events([merge, older, build])
    anomaly = Anomaly(id="a1", stream="jenkins|build|job:shop-build", detector="hst", detector_version="1", ts=ONSET,
                      event_id=build.id, source="jenkins", kind="build", entity="job:shop-build", score=0.999,
                      threshold=0.99, raw_score=1.0, explanation=[Contribution(
                          feature="failed_tests", value=35, expected=0.2, low=0, high=1, contribution=1.0)])
    store.add_anomaly(anomaly.model_dump(mode="json"))
    alert = Alert.from_labels(title="Tests failing on shop-build", labels={"service": "shop", "entity": "job:shop-build"},
                              starts_at=ONSET, anomaly_id="a1")
    report = build_report(_incident(store, alert), store, GRAPH)
    assert report.onset == ONSET
    assert build.id not in [c.event_id for c in report.candidates]  # the symptom is not its own cause
    top = report.candidates[0]
    assert top.event_id == merge.id
    assert "35 failed tests in its build" in " ".join(top.evidence)
    assert top.factors["reach"] == 1.0
    (series,) = report.series
    assert series.feature == "failed_tests"


def test_a_rule_alert_on_a_change_flags_it_and_sets_the_onset(store: Store) -> None:
    big = Event.new(source="git", native_id="f" * 40, kind="commit", entity="repo:shop-svc", ts=ONSET,
                    labels={"sha": "f" * 40, "late": "true", "off_hours": "true"},
                    values={"lines_added": 24000, "files": 60})
    earlier = Event.new(source="git", native_id="1" * 40, kind="commit", entity="repo:shop-svc",
                        ts=ONSET - timedelta(minutes=20), labels={"sha": "1" * 40}, values={"lines_added": 5})
    store.add_events([big, earlier])
    alert = Alert.from_labels(title="Late large commit", labels={"service": "shop", "entity": "repo:shop-svc"},
                              starts_at=ONSET + timedelta(minutes=1), event_ids=[big.id], rule="late-large-commit")
    report = build_report(_incident(store, alert, first_seen=ONSET + timedelta(minutes=1), entities=("repo:shop-svc",)),
                          store, GRAPH)
    assert report.onset == ONSET
    top = report.candidates[0]
    assert top.event_id == big.id
    assert "flagged by a detector or rule" in " ".join(top.evidence)
    assert top.factors["time"] == 1.0


def _creeping_builds(store: Store) -> tuple[Event, Event, Anomaly]:
    """Build durations creep up from 48 h on; the detector fires at 60 h. Returns the commit that
    started it, the build that fired and its anomaly (stored)."""
    import numpy as np

    rng = np.random.default_rng(3)
    start = ONSET - timedelta(hours=60)
    creep_at = start + timedelta(hours=48)
    events = []
    for i, h in enumerate(np.cumsum(rng.exponential(1.0, 75))):
        ts = start + timedelta(hours=float(h))
        grow = 1 + 1.5 * min(1.0, max(0.0, (ts - creep_at) / timedelta(hours=30)))
        events.append(Event.new(source="jenkins", native_id=f"b{i}", kind="build", entity="job:shop-build", ts=ts,
                                labels={"result": "SUCCESS", "number": str(i)},
                                values={"duration_s": 360 * grow * float(rng.lognormal(0, 0.1))}))
    events = [e for e in events if e.ts <= ONSET + timedelta(hours=6)]
    root = Event.new(source="git", native_id="root", kind="commit", entity="repo:shop-svc", ts=creep_at,
                     labels={"sha": "a1" * 20}, attrs={"message": "Disable workspace cleanup"})
    later = [Event.new(source="git", native_id=f"later{k}", kind="commit", entity="repo:shop-svc",
                       ts=creep_at + timedelta(hours=k), labels={"sha": f"{k}" * 40}) for k in (3, 6, 9)]
    store.add_events([*events, root, *later])
    fired = min((e for e in events if e.ts >= ONSET), key=lambda e: e.ts)
    anomaly = Anomaly(id="drift", stream="jenkins|build|job:shop-build", detector="hst", detector_version="1",
                      ts=fired.ts, event_id=fired.id, source="jenkins", kind="build", entity="job:shop-build",
                      score=0.995, threshold=0.99, raw_score=1.0, explanation=[Contribution(
                          feature="duration_s", value=fired.values["duration_s"], expected=420, low=300, high=520,
                          contribution=1.0)])
    store.add_anomaly(anomaly.model_dump(mode="json"))
    return root, fired, anomaly


def test_a_slow_drift_moves_the_onset_back_to_where_it_started(store: Store) -> None:
    """The commit that started the creep must win over the commits made while it was still below the
    threshold."""
    root, fired, _ = _creeping_builds(store)
    alert = Alert.from_labels(title="shop-build slower", labels={"service": "shop", "entity": "job:shop-build"},
                              starts_at=fired.ts, anomaly_id="drift")
    report = build_report(_incident(store, alert, first_seen=fired.ts), store, GRAPH)
    assert report.first_anomaly == fired.ts
    assert report.onset < report.first_anomaly - timedelta(hours=4)
    assert "drift" in report.onset_basis
    assert report.candidates[0].event_id == root.id
    assert "drift start (est.)" in report.to_html()


def test_a_drift_in_a_stream_that_joined_hours_later_does_not_move_the_onset(store: Store) -> None:
    """The incident began with shop's latency three hours before the slow builds joined it: when the
    builds started to creep says nothing about when this incident began."""
    _, fired, _ = _creeping_builds(store)
    first = fired.ts - timedelta(hours=3)
    latency = Anomaly(id="latency", stream="elasticsearch|access|service:shop", detector="robust_z", detector_version="1",
                      ts=first, source="elasticsearch", kind="access", entity="service:shop", score=0.999,
                      threshold=0.99, raw_score=9.0, explanation=[Contribution(
                          feature="log_latency_ms", value=7.0, expected=4.8, low=4.5, high=5.1, contribution=1.0)])
    store.add_anomaly(latency.model_dump(mode="json"))
    slow = Alert.from_labels(title="shop slow", labels={"service": "shop", "entity": "service:shop"},
                             starts_at=first, anomaly_id="latency")
    builds = Alert.from_labels(title="shop-build slower", labels={"service": "shop", "entity": "job:shop-build"},
                               starts_at=fired.ts, anomaly_id="drift")
    store.save_alert(slow.model_dump(mode="json"), incident_id="inc")
    inc = _incident(store, builds, first_seen=first, entities=("service:shop", "job:shop-build"))
    doc = store.get_incident(inc)
    assert doc is not None
    doc["alert_fingerprints"] = [slow.fingerprint, builds.fingerprint]
    doc["last_seen"] = (fired.ts + timedelta(minutes=30)).isoformat()
    store.save_incident(doc)
    report = build_report(inc, store, GRAPH)
    assert report.first_anomaly == first
    assert report.onset == first
    assert report.onset_basis == "first anomaly"


def test_failing_test_runs_blame_the_commit_their_build_built(store: Store) -> None:
    """The Jenkins collector's shape: builds carry ``build_number`` and ``attrs.commits``; the
    failures are on a separate ``test_run`` event of the same job and number."""
    sha = "7" * 40
    merge = Event.new(source="git", native_id=f"shop-svc:{sha}", kind="commit", entity="repo:shop-svc",
                      ts=ONSET - timedelta(minutes=12), labels={"merge": "true", "late": "unknown"},
                      attrs={"sha": sha, "subject": "Merge branch 'feature/refund-rework' into main"})
    noise = Event.new(source="git", native_id="shop-svc:" + "8" * 40, kind="commit", entity="repo:shop-svc",
                      ts=ONSET - timedelta(minutes=5), attrs={"sha": "8" * 40, "subject": "Fix typo in README"})
    build = Event.new(source="jenkins", native_id="shop-build#31", kind="build", entity="job:shop-build",
                      ts=ONSET - timedelta(minutes=10), labels={"job": "shop-build", "result": "UNSTABLE"},
                      values={"duration_s": 300, "build_number": 31}, attrs={"commits": [sha]})
    tests = Event.new(source="jenkins", native_id="shop-build#31/tests", kind="test_run", entity="job:shop-build",
                      ts=build.ts, labels={"job": "shop-build", "result": "UNSTABLE"},
                      values={"passed": 265, "failed": 35, "fail_ratio": 35 / 300, "build_number": 31})
    store.add_events([merge, noise, build, tests])
    anomaly = Anomaly(id="t1", stream="jenkins|test_run|job:shop-build", detector="hst", detector_version="1",
                      ts=tests.ts, event_id=tests.id, source="jenkins", kind="test_run", entity="job:shop-build",
                      score=0.999, threshold=0.99, raw_score=1.0, explanation=[Contribution(
                          feature="failure_ratio", value=35 / 300, expected=0.001, low=0, high=0.01, contribution=1.0)])
    store.add_anomaly(anomaly.model_dump(mode="json"))
    alert = Alert.from_labels(title="Tests failing", labels={"service": "shop", "entity": "job:shop-build"},
                              starts_at=tests.ts, anomaly_id="t1")
    report = build_report(_incident(store, alert, first_seen=tests.ts), store, GRAPH)
    c = {x.event_id: x for x in report.candidates}
    top = report.candidates[0]
    assert top.event_id == merge.id
    assert "35 failed tests in its build" in " ".join(top.evidence)
    assert c[noise.id].factors["time"] == ScoringParams().after_onset  # committed after the failing build
    assert c[build.id].summary == "build job:shop-build #31 (UNSTABLE)"
    assert c[build.id].factors["reach"] == ScoringParams().reach_not


def test_a_rule_alert_on_log_events_charts_their_stream(store: Store) -> None:
    logs = [Event.new(source="app-logs", native_id=f"l{i}", kind="log", entity="service:shop",
                      ts=ONSET + timedelta(minutes=i), labels={"level": "error", "template_id": "t9"},
                      attrs={"template": "HTTP 500 for POST <*>"}) for i in range(6)]
    deploy = Event.new(source="jenkins", native_id="shop-deploy#5", kind="deploy", entity="job:shop-deploy",
                       ts=ONSET - timedelta(minutes=4), labels={"result": "SUCCESS"}, values={"build_number": 5})
    store.add_events([*logs, deploy])
    alert = Alert.from_labels(title="Errors right after a deploy", labels={"service": "shop", "entity": "service:shop"},
                              starts_at=ONSET + timedelta(minutes=6), event_ids=[deploy.id, logs[0].id, logs[1].id],
                              rule="deploy-followed-by-error-burst")
    report = build_report(_incident(store, alert, first_seen=ONSET + timedelta(minutes=6), entities=("service:shop",)),
                          store, GRAPH)
    assert report.onset == ONSET  # the first matched log line, not the deploy
    assert report.candidates[0].event_id == deploy.id
    assert "flagged by a detector or rule" in " ".join(report.candidates[0].evidence)
    (series,) = report.series
    assert series.stream == "app-logs|log|service:shop"
    assert sum(p.value for p in series.points) == 6
    assert any(p.anomalous for p in series.points)

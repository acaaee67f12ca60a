"""The detection engine: routing, anomalies with explanations, checkpoints, sharding, drift hooks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from opsradar.config import DetectorsConfig, EntityGraph, ServiceEntities
from opsradar.detectors.engine import STREAM_SPECS, DetectionEngine, shard_of
from opsradar.detectors.synthetic import labelled_events, stream_events
from opsradar.models import Event

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def build(i: int, secs: float, job: str = "shop-build") -> Event:
    return Event.new(source="jenkins", native_id=f"{job}#{i}", kind="build", ts=T0 + timedelta(hours=i),
                     entity=f"job:{job}", values={"duration_s": secs, "queue_s": 10.0}, labels={"result": "SUCCESS"})


def test_stream_keys_route_by_source_kind_and_entity() -> None:
    e = build(1, 300.0)
    assert DetectionEngine.stream_key(e) == "jenkins|build|job:shop-build"
    rel = Event.new(source="git", native_id="v1", kind="release", ts=T0, entity="repo:shop-svc")
    assert DetectionEngine.stream_key(rel) == "git|commit|repo:shop-svc"


def audit(i: int, user: str, minutes: float, resource: str = "/scm/app.git") -> Event:
    return Event.new(source="audit", native_id=f"a{i}", kind="audit", ts=T0 + timedelta(minutes=minutes),
                     entity=f"user:{user}", labels={"user": user, "resource": resource})


def test_a_never_seen_user_reading_in_bulk_is_judged_against_everyone() -> None:
    engine = DetectionEngine(DetectorsConfig(warmup=20))
    users = ["ana", "bo", "chen", "dara"]
    found = [a for i in range(300) for a in engine.process(audit(i, users[i % 4], minutes=10.0 * i))]
    assert found == []
    assert engine.keys() == ["audit|audit|*"]
    burst = [a for k in range(40)
             for a in engine.process(audit(1000 + k, "tmp-user", minutes=3000.0 + k * 0.5, resource="/scm/secrets.git"))]
    assert burst
    assert {a.entity for a in burst} == {"user:tmp-user"}
    assert engine.keys() == ["audit|audit|*"]


def test_unknown_kinds_are_ignored_without_creating_streams() -> None:
    engine = DetectionEngine(DetectorsConfig())
    e = Event.new(source="x", native_id="1", kind="config", ts=T0, entity="service:shop", values={"v": 1.0})
    assert engine.process(e) == []
    assert engine.streams == 0


def test_shard_of_is_stable_and_in_range() -> None:
    # a fixed value: the hash must not depend on the process (PYTHONHASHSEED)
    assert shard_of("jenkins|build|job:shop-build", 1000) == shard_of("jenkins|build|job:shop-build", 1000)
    assert {shard_of(f"k{i}", 4) for i in range(100)} == {0, 1, 2, 3}
    assert shard_of("jenkins|build|job:shop-build", 4) == 1
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("k", 0)


def test_a_slow_build_is_an_anomaly_that_explains_itself() -> None:
    graph = EntityGraph(services={"shop": ServiceEntities(jobs=["shop-build"], team="web")})
    engine = DetectionEngine(DetectorsConfig(warmup=30), graph=graph)
    assert [a for i in range(200) for a in engine.process(build(i, 300.0 + (i % 7)))] == []
    [a] = engine.process(build(200, 2400.0))
    assert a.stream == "jenkins|build|job:shop-build"
    assert a.labels["service"] == "shop"
    assert a.score >= a.threshold
    top = a.explanation[0]
    assert top.feature == "duration_s"
    assert top.value == 2400.0
    assert top.low <= top.expected <= top.high < 2400.0
    assert top.contribution > 0.5
    assert a.summary().startswith("duration 40 min (usual ")  # in words, not feature names
    # the id is stable per (stream, event id)
    again = DetectionEngine(DetectorsConfig(warmup=30), graph=graph)
    for i in range(200):
        again.process(build(i, 300.0 + (i % 7)))
    assert again.process(build(200, 2400.0))[0].id == a.id


def test_a_build_much_faster_than_usual_is_no_anomaly_but_a_slow_one_is() -> None:
    engine = DetectionEngine(DetectorsConfig(warmup=30))
    assert [a for i in range(200) for a in engine.process(build(i, 300.0 + (i % 7)))] == []
    assert engine.process(build(200, 30.0)) == []  # ten times faster: good news, not a page
    [slow] = engine.process(build(201, 2400.0))
    assert slow.explanation[0].feature == "duration_s"


def test_a_checkpoint_from_before_one_sided_features_follows_them_once_restored() -> None:
    engine = DetectionEngine(DetectorsConfig(warmup=30))
    for i in range(200):
        engine.process(build(i, 300.0 + (i % 7)))
    [stream] = engine._streams.values()
    stream.detector.upper = set()  # type: ignore[attr-defined]  # as a checkpoint of the earlier version holds it
    del stream.detector.__dict__["upper"]
    restored = DetectionEngine(DetectorsConfig(warmup=30))
    restored.restore(engine.snapshot())
    assert restored.process(build(200, 30.0)) == []


def test_a_checkpoint_follows_features_that_stopped_being_counts_or_one_sided() -> None:
    engine = DetectionEngine(DetectorsConfig())
    for event, _ in labelled_events("audit", n=300, seed=1):
        engine.process(event)
    [stream] = engine._streams.values()
    # as a checkpoint of the earlier version holds it: rarity floored as a count, rates one-sided
    stream.detector.counts["new_pair"] = 1.0  # type: ignore[attr-defined]
    stream.detector.upper |= {"user_rate", "pair_rate"}  # type: ignore[attr-defined]
    restored = DetectionEngine(DetectorsConfig())
    restored.restore(engine.snapshot())
    [back] = restored._streams.values()
    assert "new_pair" not in back.detector.counts  # type: ignore[attr-defined]
    assert back.detector.upper == {"pair_rarity", "new_pair"}  # type: ignore[attr-defined]


def test_an_audit_stream_pages_on_strangers_and_names_the_rare_pair() -> None:
    """Eight users on their own resources; injected strangers open random resources. Rarity and
    newness are not counts (no Poisson floor), and a low rate (an unknown or dormant user) is
    evidence in an audit log, not only a burst: with either mistake no stranger pages at all."""
    caught = injected = false_alerts = 0
    for seed in range(4):
        engine = DetectionEngine(DetectorsConfig())
        for event, stranger in labelled_events("audit", n=1500, seed=seed):
            alerts = engine.process(event)
            injected += stranger
            caught += stranger and bool(alerts)
            false_alerts += bool(alerts) and not stranger
            for alert in alerts:
                assert {c.feature for c in alert.explanation[:3]} & {"new_pair", "pair_rarity", "user_rate", "pair_rate"}
    assert false_alerts == 0
    assert caught >= injected / 2


def test_no_alert_during_warmup() -> None:
    engine = DetectionEngine(DetectorsConfig(warmup=50))
    # builds have their own warm-up (15 runs: a CI job must be judged within a day or two)
    assert STREAM_SPECS["build"].warmup == 15
    out = [a for i in range(15) for a in engine.process(build(i, 300.0 if i < 14 else 5000.0))]
    assert out == []
    # stream types without their own warm-up follow the configuration's
    issues = [Event.new(source="jira", native_id=f"I-{i}", kind="issue", ts=T0 + timedelta(hours=i), entity="project:P",
                        values={"cycle_time_h": 10.0 if i < 39 else 900.0}) for i in range(40)]
    assert [a for e in issues for a in engine.process(e)] == []


@pytest.mark.parametrize("st", ["build", "test_run", "commit", "issue", "access", "log", "audit", "metric"])
def test_restored_engine_scores_exactly_as_the_uninterrupted_one(st: str) -> None:
    events = [e for e, _ in labelled_events(st, n=400, seed=5)]
    a = DetectionEngine(DetectorsConfig())
    for e in events[:300]:
        a.process(e)
    b = DetectionEngine(DetectorsConfig())
    b.restore(a.snapshot())
    assert b.streams == a.streams
    for e in events[300:]:
        ra, rb = a.score_event(e), b.score_event(e)
        assert ra is not None
        assert rb is not None
        assert ra[1] == rb[1]


def test_per_stream_snapshot_moves_one_stream() -> None:
    a = DetectionEngine(DetectorsConfig())
    for i in range(50):
        a.process(build(i, 300.0, job="one"))
        a.process(build(i, 300.0, job="two"))
    assert a.streams == 2
    b = DetectionEngine(DetectorsConfig())
    key = b.restore_stream(a.snapshot_stream("jenkins|build|job:one"))
    assert key == "jenkins|build|job:one"
    assert b.streams == 1
    nxt = build(50, 320.0, job="one")
    ra, rb = a.score_event(nxt), b.score_event(nxt)
    assert ra is not None
    assert rb is not None
    assert ra[1] == rb[1]
    with pytest.raises(ValueError, match="not a detector snapshot"):
        b.restore(b"garbage")


def test_drift_hook_is_called_when_the_score_stream_shifts() -> None:
    engine = DetectionEngine(DetectorsConfig())
    seen: list[str] = []
    engine.on_drift(seen.append)
    for i in range(300):
        engine.process(build(i, 300.0 + (i % 5)))
    for i in range(300, 600):
        engine.process(build(i, 900.0 + 50 * (i % 5)))
    assert seen
    assert set(seen) == {"jenkins|build|job:shop-build"}


def test_access_stream_flags_latency_spikes() -> None:
    engine = DetectionEngine(DetectorsConfig())
    labelled = labelled_events("access", n=3000, seed=2)
    flagged = {a.event_id for e, _ in labelled for a in engine.process(e)}
    bad = {e.id for e, y in labelled if y}
    assert flagged
    assert len(flagged & bad) / len(flagged) > 0.8
    assert len(flagged & bad) / len(bad) > 0.5


def test_metric_stream_uses_the_contextual_detector() -> None:
    engine = DetectionEngine(DetectorsConfig())
    for e in stream_events("metric", n=50):
        engine.process(e)
    [key] = engine.keys()
    stream = engine.stream(key)
    assert stream is not None
    assert stream.detector.name == "contextual"


def test_a_slow_leak_in_gc_pauses_pages_hours_before_the_crash_and_steady_pauses_do_not() -> None:
    """GC pauses every ~30 min, noisy but steady for three days, then climbing towards an out-of-memory
    crash 14 h later (the heap filling): the log stream pages on ``duration_trend`` well before the end."""
    import random

    rng = random.Random(7)
    engine = DetectionEngine(DetectorsConfig())
    leak_at = T0 + timedelta(days=3)
    fired: list[tuple[datetime, str]] = []
    t = T0
    for i in range(400):
        t += timedelta(minutes=30 * rng.uniform(0.6, 1.4))
        frac = max(0.0, (t - leak_at) / timedelta(hours=14))
        if frac >= 1.0:
            break
        pause = (20.0 + 400.0 * frac**2) * rng.uniform(0.8, 1.2)
        event = Event.new(source="app", native_id=f"gc{i}", kind="log", ts=t, entity="service:inventory",
                          labels={"template_id": "gc", "level": "info"}, values={"duration_ms": pause})
        fired += [(a.ts, a.explanation[0].feature) for a in engine.process(event)]
    assert fired
    assert all(ts > leak_at for ts, _ in fired)  # nothing while the pauses were steady
    first, feature = fired[0]
    assert feature == "duration_trend"
    assert first < leak_at + timedelta(hours=10)  # hours before the crash at 14 h


# ---------------------------------------------------------------- cold streams and the group models

def group_engine() -> tuple[DetectionEngine, object]:
    """An engine whose build group (three 5-minute jobs, one 40-minute job, all warm) has a champion."""
    import random

    from opsradar.detectors.pyod_groups import GroupModels
    from opsradar.detectors.registry import ModelRegistry
    from opsradar.store import Store

    groups = GroupModels(ModelRegistry(Store("sqlite://")), min_rows=64, refit_every=10_000)
    engine = DetectionEngine(DetectorsConfig(), groups=groups)
    rng = random.Random(4)
    for i in range(30):
        for j, minutes in enumerate((5, 5, 5, 40)):
            found = engine.process(build(i, rng.gauss(60 * minutes, 3 * minutes), job=f"j{j}"))
            assert all(a.detector != "pyod_group" for a in found)
    assert groups.due() == ["jenkins|build|*"]
    assert groups.refit("jenkins|build|*").promoted
    return engine, groups


def test_a_cold_stream_far_beyond_its_group_raises_an_explained_group_anomaly() -> None:
    from opsradar.alerting.alerts import alert_from_anomaly

    engine, _ = group_engine()
    [a] = engine.process(build(0, 8 * 3600.0, job="new-job"))  # its first build: 8 h, 3x the group's longest
    assert (a.stream, a.detector, a.detector_version) == ("jenkins|build|job:new-job", "pyod_group",
                                                          "jenkins|build|*@v1")
    assert a.labels == {"stream_type": "build", "model": "group", "model_group": "jenkins|build|*"}
    assert a.score >= a.threshold > 0.98
    assert a.summary().startswith("duration 8 h (usual 0.075–0.74 h)")  # the group's range: 4.5 to 44 min
    assert a.explanation[0].feature == "duration_s"
    assert a.explanation[0].high < 3600
    alert = alert_from_anomaly(a)
    assert alert.labels["detector"] == "pyod_group"
    assert alert.labels["model"] == "group"
    # one identity per stream and detector: a second extreme build deduplicates into the same alert
    [b] = engine.process(build(1, 9 * 3600.0, job="new-job"))
    assert alert_from_anomaly(b).fingerprint == alert.fingerprint
    assert b.id != a.id


@pytest.mark.parametrize("secs", [2600.0, 300.0, 20.0])  # a big-but-normal job, a small one, a very fast one
def test_an_ordinary_first_build_of_a_cold_stream_is_no_anomaly(secs: float) -> None:
    engine, _ = group_engine()
    assert engine.process(build(0, secs, job="new-job")) == []
    assert engine.process(build(1, secs, job="new-job")) == []


def test_a_warm_stream_is_not_judged_by_the_group_model() -> None:
    engine, groups = group_engine()
    judged: list[str] = []
    judge = groups.judge  # type: ignore[attr-defined]

    def spy(key: str, x: dict[str, float], **kw: object) -> object:
        judged.append(key)
        return judge(key, x, **kw)

    groups.judge = spy  # type: ignore[attr-defined]
    found = engine.process(build(30, 8 * 3600.0, job="j0"))  # warm (30 runs): its own detector judges it
    assert [a.detector for a in found] == ["quantile_band"]
    assert judged == []
    engine.process(build(0, 300.0, job="new-job"))
    assert judged == ["jenkins|build|job:new-job"]


def test_group_models_learn_every_scored_event_and_judging_changes_nothing() -> None:
    engine, groups = group_engine()
    det = groups.detector("jenkins|build|*")  # type: ignore[attr-defined]
    before = len(det.buffer)
    snap = engine.snapshot()
    x = {"duration_s": 8 * 3600.0, "failed": 0.0, "fail_rate": 0.0, "queue_s": 10.0}
    first = groups.judge("jenkins|build|job:new-job", x, upper={"duration_s"})  # type: ignore[attr-defined]
    assert first is not None
    assert groups.judge("jenkins|build|job:new-job", x, upper={"duration_s"}) == first  # type: ignore[attr-defined]
    assert engine.snapshot() == snap
    assert len(det.buffer) == before
    engine.process(build(0, 300.0, job="new-job"))
    assert len(det.buffer) == before + 1

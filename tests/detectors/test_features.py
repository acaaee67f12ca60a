"""Feature extractors: the names collectors send become the features detectors see."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from opsradar.detectors.features import (
    AuditFeatures,
    CommitFeatures,
    LogFeatures,
    extractor_for,
    stream_type,
)
from opsradar.models import Event

T0 = datetime(2026, 1, 7, 10, 0, tzinfo=UTC)  # a Wednesday


def ev(kind: str, i: int = 0, entity: str = "service:shop", **fields: object) -> Event:
    return Event.new(source="t", native_id=f"{kind}{i}", kind=kind, ts=T0 + timedelta(seconds=i), entity=entity, **fields)  # type: ignore[arg-type]


def test_build_features_and_failure_rate() -> None:
    ex = extractor_for("build")
    e = ev("build", entity="job:b", values={"duration_s": 300.0, "queue_s": 12.0}, labels={"result": "FAILURE"})
    x = ex.extract(e)
    assert "duration_s" not in x  # a failed run stops early: its duration is context only
    assert x["_duration_s"] == 300.0
    assert x["queue_s"] == 12.0
    assert x["failed"] == 1.0
    assert x["fail_rate"] == 1.0
    assert ex.extract(e) == x  # extract is pure
    ex.learn(e)
    ok = ev("build", 1, entity="job:b", values={"duration_s": 1.0}, labels={"result": "SUCCESS"})
    assert 0 < ex.extract(ok)["fail_rate"] < 1
    assert ex.extract(ok)["duration_s"] == 1.0


def test_test_run_failure_ratio_from_total_or_parts() -> None:
    ex = extractor_for("test_run")
    assert ex.extract(ev("test_run", values={"failed": 5.0, "total": 100.0}))["_failure_ratio"] == 0.05
    assert ex.extract(ev("test_run", values={"failed": 5.0, "passed": 15.0}))["_failure_ratio"] == 0.25


def test_commit_size_lateness_and_off_hours() -> None:
    ex = CommitFeatures()
    ex.learn(ev("release", entity="repo:r"))
    c = ev("commit", 7200, entity="repo:r", values={"lines_added": 10.0, "lines_deleted": 5.0, "files_changed": 2.0})
    x = ex.extract(c)
    assert x["commit_size"] == 15.0
    assert x["_hours_since_release"] == 2.0
    assert x["off_hours"] == 0.0
    night = Event.new(source="t", native_id="n", kind="commit", ts=T0.replace(hour=2), entity="repo:r")
    assert ex.extract(night)["off_hours"] == 1.0


def test_access_rates_per_service_and_endpoint_errors_and_latency() -> None:
    ex = extractor_for("access")
    for i in range(600):
        path = "/search" if i % 2 else "/cart"
        e = ev("access", i, values={"status": 500.0 if i % 10 == 0 else 200.0, "duration_ms": 100.0},
               labels={"path": path})
        ex.learn(e)
    x = ex.extract(ev("access", 600, values={"status": 200.0, "duration_ms": 700.0}, labels={"path": "/search"}))
    assert 50 < x["request_rate"] < 70  # one per second, decayed over 5 minutes
    assert 25 < x["path_rate"] < 35  # half of them on this endpoint
    assert 5 < x["error_rate"] < 7  # one in ten is a 5xx
    assert x["log_latency_ms"] == pytest.approx(math.log1p(700.0))
    assert set(ex.counts()) == {"request_rate", "path_rate", "error_rate"}


def test_one_error_on_a_quiet_stream_is_not_an_anomaly_but_a_burst_is() -> None:
    from opsradar.detectors.engine import new_stream

    stream = new_stream("es|access|service:shop", "access")
    for i in range(300):  # a request every 5 minutes, no errors
        e = ev("access", i * 300, values={"status": 200.0, "duration_ms": 50.0}, labels={"path": "/a"})
        x = stream.extractor.extract(e)
        stream.learn(e, x, stream.detector.score_one(x))
    one = stream.extractor.extract(ev("access", 300 * 300, values={"status": 500.0, "duration_ms": 50.0},
                                      labels={"path": "/a"}))
    assert stream.detector.score_one(one) <= 1.5
    for k in range(20):  # twenty 5xx within a minute
        stream.extractor.learn(ev("access", 300 * 300 + 1 + k, values={"status": 500.0}, labels={"path": "/a"}))
    burst = stream.extractor.extract(ev("access", 300 * 300 + 30, values={"status": 500.0, "duration_ms": 50.0},
                                        labels={"path": "/a"}))
    assert stream.detector.score_one(burst) > 5


def test_log_template_volume_and_never_seen_templates() -> None:
    ex = LogFeatures(max_templates=3)
    for i in range(100):
        ex.learn(ev("log", i, labels={"template_id": "a", "level": "INFO"}))
    seen = ex.extract(ev("log", 100, labels={"template_id": "a"}))
    new = ex.extract(ev("log", 100, labels={"template_id": "zzz", "level": "ERROR"}))
    assert seen["new_template"] == 0.0
    assert new["new_template"] == 1.0
    assert new["template_rate"] < seen["template_rate"]
    assert new["error_rate"] > seen["error_rate"]
    for t in "bcde":
        ex.learn(ev("log", 101, labels={"template_id": t}))
    assert len(ex.templates) == 3  # bounded


def test_audit_rare_user_resource_pairs() -> None:
    ex = AuditFeatures(max_keys=4)
    for i in range(20):
        ex.learn(ev("audit", i, labels={"user": "ana", "resource": "db"}))
    usual = ex.extract(ev("audit", 21, labels={"user": "ana", "resource": "db"}))
    rare = ex.extract(ev("audit", 21, labels={"user": "ana", "resource": "secrets"}))
    assert usual["new_pair"] == 0.0
    assert rare["new_pair"] == 1.0
    assert rare["pair_rarity"] > usual["pair_rarity"]
    assert usual["user_rate"] > 10
    assert usual["pair_rate"] > 10
    assert rare["pair_rate"] == 1.0
    for i in range(10):
        ex.learn(ev("audit", 30 + i, labels={"user": f"u{i}", "resource": f"r{i}"}))
    assert len(ex.users) <= 4
    assert len(ex.pairs) <= 4


def test_unknown_kinds_have_no_stream_type() -> None:
    assert stream_type("build") == "build"
    assert stream_type("deploy") == "build"
    assert stream_type("wiki_edit") is None
    with pytest.raises(KeyError, match="no feature extractor for 'wiki_edit'"):
        extractor_for("wiki_edit")


def _gc(i: int, minutes: float, pause_ms: float) -> Event:
    return Event.new(source="t", native_id=f"gc{i}", kind="log", ts=T0 + timedelta(minutes=minutes), entity="service:shop",
                     labels={"template_id": "gc", "level": "info"}, values={"duration_ms": pause_ms})


def test_a_duration_that_climbs_towards_a_leak_has_a_trend_and_a_steady_one_none() -> None:
    """GC pauses every ~7 minutes: steady (noisy) for a day, then doubling every 4 hours. Only a
    climb faster than a doubling a day counts; ``duration_trend`` is the excess, in ln(1 + ms)/h."""
    import random

    rng = random.Random(4)
    ex = LogFeatures()
    steady, climbing = [], []
    for i in range(400):
        minutes = i * 7.0
        pause = 20.0 * rng.uniform(0.8, 1.2) * (2.0 ** max(0.0, (minutes - 24 * 60) / 240))
        x = ex.extract(_gc(i, minutes, pause))
        ex.learn(_gc(i, minutes, pause))
        (steady if minutes < 24 * 60 else climbing).append(x.get("duration_trend", 0.0))
    assert max(steady) == 0.0
    assert climbing[-1] > 0.1  # ln 2 / 4 h = 0.17 per hour, less the allowance of a doubling a day
    assert "duration_trend" in LogFeatures.upper
    # a line without a duration, or a template seen once, has no trend
    assert "duration_trend" not in ex.extract(ev("log", 999, labels={"template_id": "gc"}))


def test_the_leak_allowance_reads_the_same_in_slack_as_in_the_detector() -> None:
    from opsradar.detectors.features import LEAK_SLOPE
    from opsradar.explain import DOUBLING_A_DAY, format_value

    assert DOUBLING_A_DAY == LEAK_SLOPE
    assert format_value("duration_trend", 0.0) == "2.9 %/h"  # the allowance itself: a doubling a day

"""The drift-start estimate: a ramp moves the onset back, a step or noise does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from opsradar.alerting.rootcause.builder import ReportSettings, _drift_points
from opsradar.alerting.rootcause.evidence import feature_points
from opsradar.alerting.rootcause.onset import drift_start
from opsradar.models import Anomaly, Event
from opsradar.store import Store

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _series(values: list[float], step: timedelta = timedelta(hours=1)) -> list[tuple[datetime, float]]:
    return [(T0 + i * step, v) for i, v in enumerate(values)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_noisy_ramp_is_dated_near_its_start(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = [360.0 * (1 + 1.5 * max(0.0, (h - 48) / 30)) * float(rng.lognormal(0, 0.05)) for h in range(72)]
    start = drift_start(_series(values), T0 + timedelta(hours=62), direction=1.0)
    assert start is not None
    assert abs((start - (T0 + timedelta(hours=48))).total_seconds()) <= 3 * 3600


def test_a_falling_drift_needs_the_falling_direction() -> None:
    values = [100.0 + (i % 2) for i in range(30)] + [100.0 - 4 * i + (i % 2) for i in range(20)]
    series = _series(values)
    assert drift_start(series, T0 + timedelta(hours=45), direction=-1.0) == T0 + timedelta(hours=30)
    assert drift_start(series, T0 + timedelta(hours=45), direction=1.0) is None


def test_a_step_at_the_first_anomaly_noise_and_short_series_are_not_drifts() -> None:
    rng = np.random.default_rng(5)
    step = [float(rng.normal(120, 5)) for _ in range(300)] + [float(rng.normal(700, 20)) for _ in range(40)]
    assert drift_start(_series(step, timedelta(minutes=1)), T0 + timedelta(minutes=300), direction=1.0) is None
    noise = [float(rng.normal(50, 5)) for _ in range(100)]
    assert drift_start(_series(noise), T0 + timedelta(hours=90), direction=1.0) is None
    assert drift_start(_series([1.0, 2.0, 3.0]), T0 + timedelta(hours=2), direction=1.0) is None
    assert drift_start(_series([5.0] * 20), T0 + timedelta(hours=10), direction=1.0) is None


def _build(i: int, ts: datetime, duration: float, result: str = "SUCCESS") -> Event:
    return Event.new(
        source="jenkins",
        native_id=f"b{i}",
        kind="build",
        entity="job:search-build",
        ts=ts,
        labels={"job": "search-build", "result": result},
        values={"duration_s": duration},
    )


def _anomaly(ts: datetime) -> Anomaly:
    return Anomaly(
        id="a1",
        stream="jenkins|build|job:search-build",
        detector="quantile_band",
        detector_version="1",
        ts=ts,
        source="jenkins",
        kind="build",
        entity="job:search-build",
        score=0.99,
        threshold=0.9,
        raw_score=1.0,
    )


def test_a_failed_builds_duration_is_not_a_duration_point() -> None:
    evs = [
        _build(0, T0, 300.0),
        _build(1, T0 + timedelta(hours=1), 40.0, "FAILURE"),
        _build(2, T0 + timedelta(hours=2), 310.0),
    ]
    assert [v for _, v in feature_points(evs, "duration_s")] == [300.0, 310.0]
    # a value that no extractor gives is still read from the events
    assert [v for _, v in feature_points(evs[:1], "no_such_feature")] == []
    assert feature_points(
        [Event.new(source="x", native_id="m", kind="metric", entity="service:s", ts=T0, values={"latency": 2.0})],
        "latency",
    ) == [(T0, 2.0)]


def test_a_sparse_streams_drift_baseline_reaches_back_for_enough_values() -> None:
    """A job that builds twice a day has 4 values in 48 h: the window reaches back (up to 7 days) for
    24 values before the anomaly; a dense stream keeps its 48 h."""
    store = Store("sqlite://")
    first = T0 + timedelta(days=7)
    sparse = [_build(i, first - timedelta(hours=12 * (i + 1)), 300.0 + i % 3) for i in range(14)]
    sparse += [_build(100 + i, first - timedelta(hours=12 * i + 6), 30.0, "FAILURE") for i in range(14)]
    sparse += [_build(200, first, 600.0)]
    store.add_events(sparse)
    st = ReportSettings(drift_min_baseline=10)
    pts = _drift_points(store, _anomaly(first), "duration_s", first + timedelta(seconds=1), st)
    before = [p for p in pts if p[0] < first]
    assert len(before) == 10
    assert all(v >= 300.0 for _, v in pts)
    assert before[0][0] == first - timedelta(hours=120)
    assert pts[-1] == (first, 600.0)

    dense = Store("sqlite://")
    dense.add_events(
        [_build(i, first - timedelta(hours=i + 1), 300.0) for i in range(100)] + [_build(999, first, 600.0)]
    )
    pts = _drift_points(dense, _anomaly(first), "duration_s", first + timedelta(seconds=1), st)
    assert len(pts) == 48 + 1
    assert pts[0][0] == first - timedelta(hours=48)


def test_an_earlier_episode_that_ended_is_not_a_drift_into_the_anomaly() -> None:
    """Tests failed for a while and were fixed; hours later they fail again: the onset is the second
    failure, not the first episode (which a step fit alone dates as the start of a drift)."""
    rng = np.random.default_rng(3)
    for burst, gap, after in [(6, 20, 2), (15, 10, 15), (20, 4, 20)]:
        values = [float(rng.poisson(0.2)) for _ in range(30)] + [float(rng.integers(60, 200)) for _ in range(burst)]
        values += [float(rng.poisson(0.2)) for _ in range(gap)]
        first = T0 + timedelta(hours=len(values))
        values += [float(rng.integers(60, 200)) for _ in range(after)]
        assert drift_start(_series(values), first, direction=1.0) is None
    # failures still climbing into the anomaly are a drift
    ramp = [float(rng.poisson(0.2)) for _ in range(30)] + [5.0 * i for i in range(1, 27)] + [150.0, 140.0]
    assert drift_start(_series(ramp), T0 + timedelta(hours=56), direction=1.0) is not None

"""The drift-start estimate: a ramp moves the onset back, a step or noise does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from opsradar.alerting.rootcause.onset import drift_start

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

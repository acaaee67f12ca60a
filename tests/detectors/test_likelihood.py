"""Anomaly likelihood: neutral while warming up, high when recent raw scores jump."""

from __future__ import annotations

import pickle
import random

import pytest

from opsradar.detectors.likelihood import AnomalyLikelihood, log_score


def test_neutral_until_warm_then_flags_a_jump() -> None:
    cal = AnomalyLikelihood(learning_period=50, estimation_samples=50, historic_window=500, averaging_window=5)
    rng = random.Random(0)
    scores = [cal.update(rng.uniform(0.0, 0.2)) for _ in range(99)]
    assert set(scores) == {log_score(0.5)}
    assert not cal.warm
    for _ in range(300):
        cal.update(rng.uniform(0.0, 0.2))
    assert cal.warm
    assert cal.score(0.1) < 0.2
    jumped = [cal.update(1.0) for _ in range(5)]
    assert max(jumped) > 0.5


def test_score_is_pure_and_pickling_is_exact() -> None:
    cal = AnomalyLikelihood(learning_period=10, estimation_samples=10, historic_window=50)
    for i in range(100):
        cal.update((i % 7) / 10)
    before = pickle.dumps(cal)
    s = cal.score(0.9)
    assert pickle.dumps(cal) == before
    copy = pickle.loads(before)
    assert copy.score(0.9) == s


def test_one_sided_ignores_low_scores() -> None:
    two = AnomalyLikelihood(learning_period=10, estimation_samples=10, historic_window=100, averaging_window=1)
    one = AnomalyLikelihood(
        learning_period=10, estimation_samples=10, historic_window=100, averaging_window=1, one_sided=True
    )
    for i in range(200):
        two.update(0.5 + (i % 3) / 100)
        one.update(0.5 + (i % 3) / 100)
    assert two.score(0.0) > 0.5
    assert one.score(0.0) < 0.01


def test_the_fit_over_a_full_history_is_the_plain_two_pass_mean_and_variance() -> None:
    import math

    rng = random.Random(3)
    cal = AnomalyLikelihood(learning_period=10, estimation_samples=10, historic_window=500, reestimation_period=50)
    for _ in range(1_000):  # the ring buffer wraps
        cal.update(rng.uniform(0.0, 0.3))
    h = list(cal.history)
    assert len(h) == 500
    cal._fit()
    m = sum(h) / len(h)
    std = math.sqrt(sum((v - m) ** 2 for v in h) / len(h))
    assert cal.mean == pytest.approx(m, rel=1e-12)
    assert cal.std == pytest.approx(std, rel=1e-12)

"""The quantile band's inlined hot path scores exactly as its band arithmetic (``_band``, ``_out``)."""

from __future__ import annotations

import random

from opsradar.detectors.robust import QuantileBand


def _by_band(det: QuantileBand, x: dict[str, float]) -> float:
    """``score_one`` as it read before it was inlined: the largest ``_out`` of the known features."""
    best = 0.0
    for k, v in x.items():
        s = det.stats.get(k)
        if k.startswith("_") or s is None or s[0] < 2:
            continue
        best = max(best, det._out(k, v, s))
    return best


def test_score_one_equals_the_band_arithmetic_for_counts_one_sided_and_plain_features() -> None:
    rng = random.Random(7)
    det = QuantileBand(counts={"failed": 1.0, "rate": 20.0}, upper={"duration_s", "failed"})
    checked = 0
    for i in range(3000):
        x = {"duration_s": rng.lognormvariate(5, 0.3), "queue_s": rng.expovariate(0.5),
             "failed": float(rng.random() < 0.1), "rate": rng.random() / 5, "_hour": float(i % 24)}
        probe = {k: v * rng.choice((0.1, 1.0, 3.0, 40.0)) for k, v in x.items()}
        assert det.score_one(probe) == _by_band(det, probe)
        checked += det.score_one(probe) > 0
        det.learn_one(x)
    assert checked > 500  # the probes land outside the bands often, not only inside

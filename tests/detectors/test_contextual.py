"""The contextual detector for metric streams."""

from __future__ import annotations

import math

from opsradar.detectors.contextual import ContextualDetector


def sine(i: int) -> dict[str, float]:
    return {"value": 50 + 40 * math.sin(2 * math.pi * i / 24)}


def test_learns_a_periodic_pattern_and_flags_a_break() -> None:
    det = ContextualDetector(rest_period=10)
    for i in range(24 * 40):
        det.learn_one(sine(i))
    assert det.score_one(sine(24 * 40)) == 0.0
    assert det.score_one({"value": 90.0}) > 0.4  # the peak, where the trough should come


def test_memory_is_capped() -> None:
    det = ContextualDetector(max_contexts=200)
    for i in range(3000):
        det.learn_one({"value": float((i * 7919) % 101)})
    assert len(det.memory.contexts) <= 200
    assert det.score_one({"value": 3.0}) >= 0.0


def test_known_range_and_explanation() -> None:
    det = ContextualDetector(low=0.0, high=100.0)
    for i in range(200):
        det.learn_one({"value": 10.0 + (i % 2)})
    [c] = det.explain_one({"value": 95.0})
    assert c.feature == "value"
    assert c.low <= c.expected <= c.high
    assert c.high < 95.0


def test_range_growth_relearns() -> None:
    det = ContextualDetector(relearn_on_growth=0.25)
    for i in range(100):
        det.learn_one({"value": float(i % 4)})
    n_before = len(det.memory.contexts)
    det.learn_one({"value": 40.0})
    assert len(det.memory.contexts) < n_before
    assert det.hi > 40.0

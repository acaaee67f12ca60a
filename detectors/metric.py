"""Detectors for univariate metric streams: a contextual sequence predictor and a residual model.

:class:`ContextMetric` is opsradar's own take on the idea behind NAB's "Contextual Anomaly
Detector" and HTM: a metric is predictable when the recent *shape* of the series says what comes
next. Values are quantised into ``bins`` levels over the range seen so far; a variable-order
Markov model (contexts of the last 1..``max_order`` levels) counts which level followed each
context. The raw score of a value is how unexpected its level is after the current context
(``1 - P(level | longest known context)``), and a value beyond the range seen so far by more
than ``spatial_tolerance`` of that range scores 1. Raw scores are meant to be calibrated by
:class:`~opsradar.detectors.likelihood.AnomalyLikelihood`, which turns "more surprises than
usual lately" into an alert.

The state is small and bounded: counts live in two ``dict[int, int]`` keyed by packed integer
codes, capped at ``max_entries``.

>>> det = ContextMetric()
>>> for i in range(300):
...     det.learn_one({"value": float(i % 10)})
>>> det.score_one({"value": 0.0}) < det.score_one({"value": 7.0})
True
>>> det.score_one({"value": 50.0})
1.0
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from opsradar.models import Contribution

from .base import Detector, register, share_contributions

__all__ = ["ContextMetric", "ResidualMetric"]


def _value(x: dict[str, float], feature: str) -> float | None:
    v = x.get(feature)
    if v is None:
        if not x:
            return None
        v = next(iter(x.values()))
    return float(v)


@register
class ContextMetric(Detector):
    """Contextual sequence predictor for one metric (see the module docstring)."""

    name: ClassVar[str] = "context_metric"
    version: ClassVar[str] = "1"

    def __init__(
        self,
        feature: str = "value",
        bins: int = 16,
        max_order: int = 3,
        spatial_tolerance: float = 0.05,
        max_entries: int = 4096,
    ) -> None:
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins!r}")
        if max_order < 1:
            raise ValueError(f"max_order must be at least 1, got {max_order!r}")
        self.feature = feature
        self.bins = bins
        self.max_order = max_order
        self.spatial_tolerance = spatial_tolerance
        self.max_entries = max_entries
        self.n = 0
        self.lo = math.inf
        self.hi = -math.inf
        self.context: list[int] = []  # the last levels, most recent last
        self.follow: dict[int, int] = {}  # (order, context, level) -> count
        self.seen: dict[int, int] = {}  # (order, context) -> count

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"bins": 8, "max_order": 2}

    def _level(self, v: float) -> int:
        span = self.hi - self.lo
        if span <= 0:
            return 0
        return min(self.bins - 1, max(0, int((v - self.lo) / span * self.bins)))

    def _context_code(self, order: int) -> int:
        code = order
        for level in self.context[-order:]:
            code = code * (self.bins + 1) + level + 1
        return code

    def _outside(self, v: float) -> bool:
        if self.n < 2:
            return False
        tol = self.spatial_tolerance * (self.hi - self.lo)
        return v > self.hi + tol or v < self.lo - tol

    def score_one(self, x: dict[str, float]) -> float:
        v = _value(x, self.feature)
        if v is None or self.n == 0:
            return 0.0
        if self._outside(v):
            return 1.0
        level = self._level(v)
        for order in range(min(self.max_order, len(self.context)), 0, -1):
            ctx = self._context_code(order)
            total = self.seen.get(ctx, 0)
            if total:
                return 1.0 - self.follow.get(ctx * self.bins + level, 0) / total
        return 0.0

    def learn_one(self, x: dict[str, float]) -> None:
        v = _value(x, self.feature)
        if v is None:
            return
        self.lo = min(self.lo, v)
        self.hi = max(self.hi, v)
        level = self._level(v)
        for order in range(1, min(self.max_order, len(self.context)) + 1):
            ctx = self._context_code(order)
            key = ctx * self.bins + level
            if key in self.follow or len(self.follow) < self.max_entries:
                self.follow[key] = self.follow.get(key, 0) + 1
                self.seen[ctx] = self.seen.get(ctx, 0) + 1
        self.context.append(level)
        if len(self.context) > self.max_order:
            del self.context[0]
        self.n += 1

    def expected(self) -> tuple[float, float, float]:
        """The expected value and its low..high range (centre and edges of the likely levels)."""
        if self.n == 0:
            return 0.0, 0.0, 0.0
        span = (self.hi - self.lo) / self.bins if self.hi > self.lo else 0.0
        for order in range(min(self.max_order, len(self.context)), 0, -1):
            ctx = self._context_code(order)
            if self.seen.get(ctx, 0):
                counts = [(self.follow.get(ctx * self.bins + lv, 0), lv) for lv in range(self.bins)]
                likely = [lv for c, lv in counts if c > 0]
                best = max(counts)[1]
                return (
                    self.lo + (best + 0.5) * span,
                    self.lo + min(likely) * span,
                    self.lo + (max(likely) + 1) * span,
                )
        return (self.lo + self.hi) / 2, self.lo, self.hi

    def explain_one(self, x: dict[str, float]) -> list[Contribution]:
        v = _value(x, self.feature)
        if v is None:
            return []
        exp, lo, hi = self.expected()
        return share_contributions([(self.feature, v, exp, lo, hi, 1.0)])


@register
class ResidualMetric(Detector):
    """Forecast-residual detector: an exponentially weighted level and mean absolute deviation.

    The raw score is ``1 - exp(-|x - level| / (k · deviation))``, in [0, 1).

    >>> det = ResidualMetric()
    >>> for i in range(100):
    ...     det.learn_one({"value": 10.0 + (i % 3)})
    >>> det.score_one({"value": 11.0}) < det.score_one({"value": 40.0})
    True
    """

    name: ClassVar[str] = "residual_metric"
    version: ClassVar[str] = "1"

    def __init__(self, feature: str = "value", alpha: float = 0.1, k: float = 3.0) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self.feature = feature
        self.alpha = alpha
        self.k = k
        self.n = 0
        self.level = 0.0
        self.dev = 0.0

    def score_one(self, x: dict[str, float]) -> float:
        v = _value(x, self.feature)
        if v is None or self.n < 2:
            return 0.0
        r = abs(v - self.level)
        scale = self.k * self.dev
        if scale <= 0:
            return 0.0 if r == 0 else 1.0
        return 1.0 - math.exp(-r / scale)

    def learn_one(self, x: dict[str, float]) -> None:
        v = _value(x, self.feature)
        if v is None:
            return
        if self.n == 0:
            self.level = v
        else:
            self.dev += self.alpha * (abs(v - self.level) - self.dev)
            self.level += self.alpha * (v - self.level)
        self.n += 1

    def explain_one(self, x: dict[str, float]) -> list[Contribution]:
        v = _value(x, self.feature)
        if v is None:
            return []
        w = self.k * self.dev
        return share_contributions([(self.feature, v, self.level, self.level - w, self.level + w, 1.0)])

"""A forecast-residual detector for univariate metrics (a candidate measured against the others).

:class:`ResidualMetric` forecasts the next value with an exponentially weighted level and scores
the residual against the exponentially weighted mean absolute deviation. It is cheap and O(1) in
memory; on NAB (dev half, with the anomaly likelihood) it scored 21 standard, far behind the
contextual detector (:mod:`opsradar.detectors.contextual`), which metric streams use.
"""

from __future__ import annotations

import math
from typing import ClassVar

from opsradar.models import Contribution

from .base import Detector, register, share_contributions

__all__ = ["ResidualMetric"]


def _value(x: dict[str, float], feature: str) -> float | None:
    v = x.get(feature)
    if v is None:
        if not x:
            return None
        v = next(iter(x.values()))
    return float(v)


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

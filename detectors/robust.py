"""Per-feature baselines: a robust z-score (optionally seasonal) and streaming quantile bands.

Both keep a few floats per feature, so thousands of streams fit in little memory, and both say
for each feature what was expected and what range was normal.

:class:`RobustZScore` keeps an exponentially weighted centre and mean absolute deviation per
feature, updated with Huber-clipped residuals so that outliers barely move the baseline. With
``seasonal=True`` it also keeps one baseline per (hour of day, weekend) bucket, read from the
``_hour`` / ``_weekend`` context features, and uses it once the bucket has ``min_bucket`` samples.

Features that are **event counts** (or rates made of them) are at least Poisson-noisy: ``counts``
maps such a feature to how many events one unit of it stands for (5 for a per-minute rate over a
5-minute window), and its scale is never below the Poisson deviation of the expected count,
``sqrt(max(1, centre·k)) / k``. Without that floor a rare event (one 5xx, one never-seen pair) on a
quiet stream, whose deviation is ~0, scores as an infinite anomaly.

>>> quiet = RobustZScore(counts={"errors": 1.0})
>>> for i in range(200):
...     quiet.learn_one({"errors": 0.0})
>>> quiet.score_one({"errors": 1.0}) <= 1.0 < 5.0 < quiet.score_one({"errors": 10.0})
True

Features where only a **high** value is a problem (a build's duration, a 5xx rate: a fast build or
no errors is good news) are listed in ``upper``; a value below the usual is then no evidence.

>>> builds = RobustZScore(upper=["duration_s"])
>>> for i in range(200):
...     builds.learn_one({"duration_s": 300.0 + (i % 7)})
>>> builds.score_one({"duration_s": 60.0}), builds.score_one({"duration_s": 900.0}) > 5
(0.0, True)

>>> det = RobustZScore()
>>> for i in range(200):
...     det.learn_one({"latency_ms": 100.0 + (i % 7)})
>>> det.score_one({"latency_ms": 103.0}) < 1.5 < det.score_one({"latency_ms": 400.0})
True
>>> det.explain_one({"latency_ms": 400.0})[0].feature
'latency_ms'
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

from opsradar.models import Contribution

from .base import Detector, register, share_contributions

__all__ = ["QuantileBand", "RobustZScore"]

_MAD_TO_SIGMA = 1.4826


def _features(x: dict[str, float]) -> list[tuple[str, float]]:
    return [(k, v) for k, v in x.items() if not k.startswith("_")]


@register
class RobustZScore(Detector):
    """Robust z-score per feature; the raw score is the largest |z| (see the module docstring)."""

    name: ClassVar[str] = "robust_z"
    version: ClassVar[str] = "1"
    bounded: ClassVar[bool] = False

    def __init__(
        self,
        alpha: float = 0.02,
        seasonal: bool = False,
        min_bucket: int = 20,
        clip: float = 3.0,
        rel_floor: float = 0.01,
        counts: dict[str, float] | None = None,
        upper: Iterable[str] = (),
    ) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        self.alpha = alpha
        self.seasonal = seasonal
        self.min_bucket = min_bucket
        self.clip = clip
        self.rel_floor = rel_floor
        self.upper = set(upper)
        self.counts = dict(counts or {})
        if any(k <= 0 for k in self.counts.values()):
            raise ValueError(f"events per unit must be positive, got {self.counts!r}")
        # feature (or feature@bucket) -> [n, centre, mean absolute deviation]
        self.stats: dict[str, list[float]] = {}

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"alpha": 0.05, "seasonal": True, "min_bucket": 5, "counts": {"a": 1.0}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("counts", {})  # a checkpoint from before count floors
        self.__dict__.setdefault("upper", set())  # … or from before one-sided features

    def _bucket(self, x: dict[str, float]) -> str | None:
        if not self.seasonal or "_hour" not in x:
            return None
        return f"{int(x['_hour'])}{'w' if x.get('_weekend') else 'd'}"

    def _baseline(self, feature: str, bucket: str | None) -> list[float] | None:
        if bucket is not None:
            s = self.stats.get(f"{feature}@{bucket}")
            if s is not None and s[0] >= self.min_bucket:
                return s
        return self.stats.get(feature)

    def _scale(self, s: list[float], feature: str = "") -> float:
        scale = _MAD_TO_SIGMA * s[2] + self.rel_floor * abs(s[1]) + 1e-9
        k = self.counts.get(feature)
        if k is not None:  # a count is at least Poisson-noisy around its expected value
            scale = max(scale, math.sqrt(max(1.0, abs(s[1]) * k)) / k)
        return scale

    def _z(self, feature: str, value: float, bucket: str | None) -> tuple[float, list[float] | None]:
        s = self._baseline(feature, bucket)
        if s is None or s[0] < 2:
            return 0.0, s
        return abs(value - s[1]) / self._scale(s, feature), s

    def _score(self, feature: str, value: float, z: float, s: list[float] | None) -> float:
        """``z`` as evidence: none when an ``upper`` feature is below its centre."""
        return 0.0 if s is None or (feature in self.upper and value <= s[1]) else z

    def score_one(self, x: dict[str, float]) -> float:
        bucket = self._bucket(x)
        best = 0.0
        for k, v in _features(x):
            z, s = self._z(k, v, bucket)
            best = max(best, self._score(k, v, z, s))
        return best

    def _update(self, key: str, value: float, weight: float = 1.0, outlier: bool = False) -> None:
        s = self.stats.get(key)
        if s is None:
            self.stats[key] = [1.0, value, 0.0]
            return
        n, centre, mad = s
        a = max(self.alpha, 1.0 / (n + 1)) * weight
        r = value - centre
        if n >= 10 and mad > 0:
            limit = self.clip * _MAD_TO_SIGMA * mad
            r = max(-limit, min(limit, r))
        s[0] = n + 1
        s[1] = centre + a * r
        if not outlier:  # the spread is learned from inliers only: a burst must not widen it
            s[2] = mad + a * (abs(r) - mad)

    def learn_one(self, x: dict[str, float]) -> None:
        # A value far outside the baseline it is judged by moves the centre with weight clip / z
        # and leaves the spread alone: a sustained burst (a flood of thousands of events in
        # minutes) does not become the new normal within the burst, yet a lasting shift is adopted.
        bucket = self._bucket(x)
        for k, v in _features(x):
            z, s = self._z(k, v, bucket)
            outlier = s is not None and s[0] >= 10 and z > self.clip
            weight = self.clip / z if outlier else 1.0
            self._update(k, v, weight, outlier)
            if bucket is not None:
                self._update(f"{k}@{bucket}", v, weight, outlier)

    def explain_one(self, x: dict[str, float]) -> list[Contribution]:
        bucket = self._bucket(x)
        items = []
        for k, v in _features(x):
            z, s = self._z(k, v, bucket)
            if s is None:
                items.append((k, v, v, v, v, 0.0))
                continue
            w = 3.0 * self._scale(s, k)
            items.append((k, v, s[1], s[1] - w, s[1] + w, self._score(k, v, z, s)))
        return share_contributions(items)


@register
class QuantileBand(Detector):
    """Streaming quantile band per feature; the raw score is how far outside the band a value is.

    Each feature keeps estimates of its ``q`` and ``1 - q`` quantiles and its median, updated by
    stochastic approximation (steps scaled to the band's width). The score of a value outside
    ``[low, high]`` is its distance to the band divided by the band's width (0 inside).

    >>> det = QuantileBand()
    >>> for i in range(500):
    ...     det.learn_one({"queue_s": float(i % 20)})
    >>> det.score_one({"queue_s": 10.0}), det.score_one({"queue_s": 60.0}) > 1
    (0.0, True)

    ``counts`` (feature → events per unit, as for :class:`RobustZScore`) widens the band of count
    features by two Poisson deviations of the median count: one failed test in a suite that never
    fails is inside the band, twenty are far outside it. ``upper`` features score only above the band.

    >>> tests = QuantileBand(counts={"failed": 1.0})
    >>> for i in range(100):
    ...     tests.learn_one({"failed": 0.0})
    >>> tests.score_one({"failed": 1.0}), tests.score_one({"failed": 20.0}) > 5
    (0.0, True)
    """

    name: ClassVar[str] = "quantile_band"
    version: ClassVar[str] = "1"
    bounded: ClassVar[bool] = False

    def __init__(
        self, q: float = 0.02, rate: float = 0.05, counts: dict[str, float] | None = None, upper: Iterable[str] = ()
    ) -> None:
        if not 0 < q < 0.5:
            raise ValueError(f"q must be in (0, 0.5), got {q!r}")
        self.q = q
        self.rate = rate
        self.upper = set(upper)
        self.counts = dict(counts or {})
        if any(k <= 0 for k in self.counts.values()):
            raise ValueError(f"events per unit must be positive, got {self.counts!r}")
        # feature -> [n, low, median, high]
        self.stats: dict[str, list[float]] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("counts", {})  # a checkpoint from before count margins
        self.__dict__.setdefault("upper", set())  # … or from before one-sided features

    def _band(self, feature: str, s: list[float]) -> tuple[float, float, float]:
        """(low, high, width) of a feature's band, widened for count features."""
        low, high = s[1], s[3]
        width = high - low + 1e-9 + 0.01 * abs(s[2])
        k = self.counts.get(feature)
        if k is not None:
            margin = 2.0 * math.sqrt(max(1.0, abs(s[2]) * k)) / k
            low, high, width = low - margin, high + margin, max(width, margin)
        return low, high, width

    def _out(self, feature: str, v: float, s: list[float]) -> float:
        """How far outside its band ``v`` is, in band widths (only above it for ``upper`` features)."""
        low, high, width = self._band(feature, s)
        below = 0.0 if feature in self.upper else low - v
        return max(0.0, v - high, below) / width

    def score_one(self, x: dict[str, float]) -> float:
        # the hot path of every build, test-run and commit stream: _features, _band and _out inlined
        # (the same arithmetic, so the same scores)
        best = 0.0
        stats, counts, upper = self.stats, self.counts, self.upper
        sqrt = math.sqrt
        for k, v in x.items():
            if k[:1] == "_":
                continue
            s = stats.get(k)
            if s is None or s[0] < 2:
                continue
            low, med, high = s[1], s[2], s[3]
            width = high - low + 1e-9 + 0.01 * abs(med)
            per = counts.get(k)
            if per is not None:  # a count feature: its band widened by two Poisson deviations
                margin = 2.0 * sqrt(max(1.0, abs(med) * per)) / per
                low, high = low - margin, high + margin
                if margin > width:
                    width = margin
            out = max(0.0, v - high, 0.0 if k in upper else low - v) / width
            if out > best:
                best = out
        return best

    def learn_one(self, x: dict[str, float]) -> None:
        for k, v in x.items():
            if k[:1] == "_":
                continue
            s = self.stats.get(k)
            if s is None:
                self.stats[k] = [1.0, v, v, v]
                continue
            n = s[0]
            width = s[3] - s[1]
            step = self.rate * (width if width > 0 else (abs(v - s[2]) or abs(s[2]) * 0.01 or 1.0))
            if n < 20:  # start from the observed range, then track quantiles
                s[1] = min(s[1], v)
                s[3] = max(s[3], v)
                s[2] += (v - s[2]) / (n + 1)
            else:
                s[1] += step * (self.q if v >= s[1] else self.q - 1.0)
                s[3] += step * (-self.q if v <= s[3] else 1.0 - self.q)
                s[2] += step * (0.5 if v > s[2] else -0.5 if v < s[2] else 0.0)
                if s[1] > s[2]:
                    s[1] = s[2]
                if s[3] < s[2]:
                    s[3] = s[2]
            s[0] = n + 1

    def explain_one(self, x: dict[str, float]) -> list[Contribution]:
        items = []
        for k, v in _features(x):
            s = self.stats.get(k)
            if s is None:
                items.append((k, v, v, v, v, 0.0))
                continue
            low, high, _ = self._band(k, s)
            items.append((k, v, s[2], low, high, self._out(k, v, s)))
        return share_contributions(items)


def squash(raw: float) -> float:
    """Map an unbounded non-negative raw score into [0, 1): ``r / (r + 3)``.

    >>> squash(0.0), squash(3.0)
    (0.0, 0.5)
    """
    if raw <= 0 or math.isnan(raw):
        return 0.0
    if math.isinf(raw):
        return 1.0
    return raw / (raw + 3.0)

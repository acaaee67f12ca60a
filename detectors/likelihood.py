"""Calibration: raw detector scores → a probability-like score (Numenta's anomaly likelihood).

A raw score says little on its own: each detector and each stream has its own scale. The
anomaly likelihood (Ahmad et al., "Unsupervised real-time anomaly detection for streaming data",
2017; the algorithm of ``htm.core``'s ``anomaly_likelihood``, re-implemented here) compares the mean
of the *recent* raw scores (a short window) with the long-run distribution of such means (a
Gaussian fitted over a long history, refitted every ``reestimation_period`` scores). The tail
probability of the recent mean under that Gaussian is the likelihood that the stream is behaving
normally; we report ``1 - tail`` on a log scale, so that 0.5 means "one in 10^5" and 1.0 means
"one in 10^10":

    score = log(1 + 1e-10 - likelihood) / log(1e-10)

Until ``learning_period + estimation_samples`` raw scores have been seen the calibrated score is
the neutral 0.5-likelihood value (≈ 0.03): a stream does not alert while it warms up.

The fitted Gaussian is never narrower than ``min_std``. A stream whose raw scores so far hardly
varied (a CI job whose every run fell inside its band scores 0, 0, 0…) has not shown its spread:
with Numenta's tiny floor, the first run a little outside the band would be a one-in-10^8 event.
The default keeps Numenta's floor; the detection engine sets ``min_std`` per stream type
(``StreamSpec.min_std``), in the units the raw scores are fitted in.

>>> flat = AnomalyLikelihood(learning_period=5, estimation_samples=5, one_sided=True, averaging_window=1)
>>> wary = AnomalyLikelihood(learning_period=5, estimation_samples=5, one_sided=True, averaging_window=1,
...                          min_std=0.1)
>>> for _ in range(15):
...     flat.learn(0.0)
...     wary.learn(0.0)
>>> flat.score(0.13) > 0.5 > wary.score(0.13), wary.score(1.0) > 0.5
(True, True)

The state is compact: the history of recent means is an ``array('f')`` ring buffer.

>>> cal = AnomalyLikelihood(learning_period=10, estimation_samples=10, historic_window=100)
>>> for i in range(60):
...     s = cal.update(0.1 if i % 2 else 0.05)
>>> cal.score(0.1) < 0.2 and cal.score(1.0) > 0.5
True
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field

import numpy as np

__all__ = ["AnomalyLikelihood", "log_score"]

_LOG_1E10 = math.log(1e-10)
_MIN_MEAN = 0.03
_MIN_VARIANCE = 0.0003
_RED = 1e-5  # tail probability that is "red"
_YELLOW = 1e-3


def log_score(likelihood: float) -> float:
    """``likelihood`` (0..1, high = anomalous) on the log scale of the calibrated score.

    >>> round(log_score(0.99999), 3)
    0.5
    """
    return math.log(1.0000000001 - likelihood) / _LOG_1E10


def _tail(x: float, mean: float, std: float, one_sided: bool = False) -> float:
    """Probability of a value ≥ ``x`` under N(mean, std²); below the mean it is mirrored (as
    Numenta's is) unless ``one_sided``, where a low raw score is simply normal."""
    if x < mean:
        if one_sided:
            return 1.0
        x = 2 * mean - x
    z = (x - mean) / std
    return 0.5 * math.erfc(z / math.sqrt(2))


@dataclass
class AnomalyLikelihood:
    """Online anomaly likelihood of one stream's raw scores (see the module docstring)."""

    learning_period: int = 288
    estimation_samples: int = 100
    historic_window: int = 8640
    reestimation_period: int = 100
    averaging_window: int = 10
    one_sided: bool = False
    #: The narrowest spread the fitted Gaussian may have (see the module docstring).
    min_std: float = math.sqrt(_MIN_VARIANCE)
    n: int = 0
    recent: list[float] = field(default_factory=list)
    history: array[float] = field(default_factory=lambda: array("f"))
    head: int = 0
    mean: float = 0.0
    std: float = 1.0
    fitted: bool = False
    last_tail: float = 0.5

    def _recent_mean(self, raw: float) -> float:
        window = self.recent[-(self.averaging_window - 1) :] if self.averaging_window > 1 else []
        return (sum(window) + raw) / (len(window) + 1)

    def _tail_of(self, raw: float) -> float:
        return self._tail_at(self._recent_mean(raw))

    def _tail_at(self, avg: float) -> float:
        """The tail probability of a recent mean ``avg`` (``raw`` averaged with the recent scores)."""
        if not self.fitted:
            return 0.5
        tail = _tail(avg, self.mean, self.std, self.one_sided)
        # Numenta's filter: a second "red" in a row is shown as "yellow", so a long anomaly
        # does not fire on every point.
        if tail <= _RED and self.last_tail <= _RED:
            tail = _YELLOW
        return tail

    def score(self, raw: float) -> float:
        """The calibrated score (0..1) ``raw`` would get now. Changes nothing."""
        return log_score(1.0 - self._tail_of(raw))

    def likelihood(self, raw: float) -> float:
        """``1 - tail probability`` of ``raw`` now (0..1). Changes nothing."""
        return 1.0 - self._tail_of(raw)

    def learn(self, raw: float) -> None:
        """Add one raw score to the history."""
        self.update(raw)

    def update(self, raw: float) -> float:
        """Score ``raw``, then learn it; returns the score (``score`` then ``learn``, in one pass:
        the detection engine calls this for every event of a calibrated stream).

        >>> a, b = (AnomalyLikelihood(learning_period=5, estimation_samples=5) for _ in range(2))
        >>> raws = [0.1, 0.2, 0.05, 0.3] * 10 + [5.0, 5.0, 0.1]
        >>> fused = [a.update(r) for r in raws]
        >>> apart = []
        >>> for r in raws:
        ...     apart.append(b.score(r))
        ...     b.learn(r)
        >>> fused == apart and a == b
        True
        """
        avg = self._recent_mean(raw)
        tail = self.last_tail = self._tail_at(avg)
        self.recent.append(raw)
        if len(self.recent) > self.averaging_window:
            del self.recent[0]
        self.n += 1
        if self.n > self.learning_period:
            if len(self.history) < self.historic_window:
                self.history.append(avg)
            else:
                self.history[self.head] = avg
                self.head = (self.head + 1) % self.historic_window
        warm = self.n >= self.learning_period + self.estimation_samples
        if warm and (not self.fitted or self.n % self.reestimation_period == 0):
            self._fit()
        return log_score(1.0 - tail)

    def _fit(self) -> None:
        # in numpy: a full history (8,640 scores) took ~0.7 ms in a Python loop every 100 scores,
        # ~7 µs per event of every long-running stream; the same two-pass mean and variance (equal
        # to the loop's to ~1e-14 relative: numpy sums pairwise) take ~10 µs
        h = np.frombuffer(self.history, dtype=np.float32).astype(np.float64)
        m = float(h.sum()) / len(h)
        d = h - m
        var = float(d @ d) / len(h)
        self.mean = max(m, _MIN_MEAN)
        self.std = max(math.sqrt(max(var, _MIN_VARIANCE)), self.min_std)
        self.fitted = True

    @property
    def warm(self) -> bool:
        """Whether the stream has seen enough scores to be calibrated."""
        return self.fitted

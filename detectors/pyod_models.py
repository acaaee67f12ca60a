"""PyOD models refitted on a sliding window, and a River-contract wrapper around them.

The pieces, each usable without Ray:

- :class:`FittedModel`: one fitted PyOD model plus its feature order and a score scale. Scores
  are put on the scale of the training window (the fraction of training rows that score lower,
  plus a log-excess beyond the highest), so swapping in a new version does not shift the scale
  that the per-stream calibration downstream has learnt. :meth:`FittedModel.tail` calibrates a
  raw score against the model's own training scores (the share of them at or above it, with +1
  smoothing): raw scales differ from refit to refit, tail probabilities do not. The model also
  keeps each feature's training range (:attr:`FittedModel.lows` / :attr:`FittedModel.highs`),
  which the group judgement of cold streams (:mod:`.pyod_groups`) explains with. Blobs are
  pickles (:meth:`FittedModel.to_blob` / :meth:`FittedModel.from_blob`).
- :class:`Refitter`: rows (``(ts, dict[str, float])``) → a new :class:`FittedModel`, its training
  window, parameters and metrics. The proxy metric (``proxy_auc``) is the ROC AUC that separates a
  random held-out slice of the window from the same slice with injected synthetic outliers (a few
  features shifted by 4-8 robust standard deviations). Serving runs it as a Ray task.
- :class:`PyODDetector`: River's contract. ``learn_one`` buffers into the window (and, when
  ``auto_refit`` is on, refits in-process every ``refit_every`` rows or when ADWIN sees the score
  stream drift); ``score_one`` is pure and uses the current model. :meth:`PyODDetector.swap` /
  :meth:`PyODDetector.swap_blob` replace the model in one attribute assignment (atomic in CPython).

The default algorithm is ECOD; ``bench/pyod_select.py`` holds the measurement behind that choice
(see ``bench/RESULTS.md``).

>>> import random
>>> rng = random.Random(1)
>>> det = PyODDetector(window=200, refit_every=50, min_rows=50)
>>> for _ in range(200):
...     det.learn_one({"latency": rng.gauss(100, 5), "errors": rng.gauss(1, 0.2)})
>>> det.score_one({"latency": 101.0, "errors": 1.0}) < 1.0 < det.score_one({"latency": 180.0, "errors": 6.0})
True
"""

from __future__ import annotations

import logging
import math
import pickle
import random
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import numpy as np

from opsradar.models import Contribution

from .base import Detector, register, share_contributions

__all__ = [
    "ALGORITHMS",
    "DRIFT_BATCH",
    "FittedModel",
    "PyODDetector",
    "RefitResult",
    "Refitter",
    "auc",
    "inject_outliers",
    "make_model",
    "matrix",
]

log = logging.getLogger(__name__)

#: One window row: its timestamp (or None) and its features.
Row = tuple[datetime | None, dict[str, float]]

#: Rows learnt between two drift scorings of a champion (:meth:`PyODDetector._flush_drift`): one
#: matrix of 512 rows costs about what one of 64 does (numpy's cost per call dominates), and a serving
#: shard reads :attr:`PyODDetector.refit_due`, which scores what is pending, every second anyway.
DRIFT_BATCH = 512


def _ecod(params: dict[str, Any]) -> Any:
    from pyod.models.ecod import ECOD

    return ECOD(**params)


def _iforest(params: dict[str, Any]) -> Any:
    from pyod.models.iforest import IForest

    return IForest(**{"n_estimators": 100, "random_state": 0, **params})


def _hbos(params: dict[str, Any]) -> Any:
    from pyod.models.hbos import HBOS

    return HBOS(**params)


def _copod(params: dict[str, Any]) -> Any:
    from pyod.models.copod import COPOD

    return COPOD(**params)


#: The PyOD algorithms a group can use, by name.
ALGORITHMS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "ecod": _ecod,
    "iforest": _iforest,
    "hbos": _hbos,
    "copod": _copod,
}


def make_model(algorithm: str, params: dict[str, Any] | None = None) -> Any:
    """A new, unfitted PyOD model."""
    try:
        factory = ALGORITHMS[algorithm]
    except KeyError:
        raise ValueError(f"unknown PyOD algorithm {algorithm!r}; known: {', '.join(sorted(ALGORITHMS))}") from None
    return factory(dict(params or {}))


def matrix(rows: Sequence[dict[str, float]], features: Sequence[str]) -> np.ndarray:
    """Rows as a float matrix in ``features`` order; a missing or non-finite value is 0.

    >>> matrix([{"a": 1.0, "b": float("nan")}, {"b": 2.0}], ("a", "b")).tolist()
    [[1.0, 0.0], [0.0, 2.0]]
    """
    try:  # one C pass over the values (the drift scores of every learnt row come through here)
        out = np.array([[row.get(f, 0.0) for f in features] for row in rows], dtype=float)
    except (TypeError, ValueError):  # a None or a non-number among the values: cell by cell
        out = np.zeros((len(rows), len(features)), dtype=float)
        for i, row in enumerate(rows):
            for j, f in enumerate(features):
                v = row.get(f)
                if isinstance(v, int | float) and math.isfinite(v):
                    out[i, j] = v
        return out
    out = out.reshape(len(rows), len(features))
    finite = np.isfinite(out)
    if not finite.all():
        out[~finite] = 0.0
    return out


def _features(rows: Sequence[dict[str, float]]) -> tuple[str, ...]:
    """The sorted feature names of ``rows``; context features (``_hour``, ``_weekend``…) are left out."""
    return tuple(sorted({k for r in rows for k in r if not k.startswith("_")}))


def auc(negatives: Sequence[float], positives: Sequence[float]) -> float:
    """ROC AUC: the chance that a positive outscores a negative (ties count half).

    >>> auc([0.1, 0.2], [0.3, 0.2])
    0.875
    """
    if not negatives or not positives:
        return float("nan")
    neg = np.sort(np.asarray(negatives, dtype=float))
    wins = 0.0
    for p in positives:
        lo = np.searchsorted(neg, p, side="left")
        hi = np.searchsorted(neg, p, side="right")
        wins += lo + 0.5 * (hi - lo)
    return float(wins / (len(neg) * len(positives)))


def _robust_scale(col: np.ndarray) -> float:
    q75, q25 = np.percentile(col, [75, 25])
    s = (q75 - q25) / 1.349
    if s <= 0:
        s = float(np.std(col))
    if s <= 0:
        s = 1e-3 * abs(float(np.median(col))) + 1e-3
    return float(s)


def _ranges(rows: Sequence[dict[str, float]], features: Sequence[str], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's min and max over the rows that have it (a failed build has no ``duration_s``:
    its 0 in the matrix is no duration); a feature no row has falls back to its matrix column."""
    lows, highs = x.min(axis=0), x.max(axis=0)
    for j, f in enumerate(features):
        present = [v for r in rows if (v := r.get(f)) is not None and math.isfinite(v)]
        if present:
            lows[j], highs[j] = min(present), max(present)
    return lows, highs


def inject_outliers(x: np.ndarray, rng: random.Random, *, low: float = 4.0, high: float = 8.0) -> np.ndarray:
    """A copy of ``x`` where each row has 1..max(1, d//3) features shifted by ``low..high`` robust sds."""
    out = x.copy()
    n, d = x.shape
    if n == 0 or d == 0:
        return out
    scales = [_robust_scale(x[:, j]) for j in range(d)]
    for i in range(n):
        for j in rng.sample(range(d), rng.randint(1, max(1, d // 3))):
            out[i, j] += rng.choice((-1.0, 1.0)) * rng.uniform(low, high) * scales[j]
    return out


@dataclass
class FittedModel:
    """A fitted PyOD model with its feature order and the scale of its training scores."""

    algorithm: str
    params: dict[str, Any]
    features: tuple[str, ...]
    model: Any
    train_scores: np.ndarray  # sorted, at most 1024 quantiles of the training scores
    medians: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scales: np.ndarray = field(default_factory=lambda: np.zeros(0))
    columns: np.ndarray | None = None  # ECOD: the sorted training columns (d x n)
    skew_signs: np.ndarray | None = None  # ECOD: the sign of each training column's skewness
    n_train: int = 0  # training rows (train_scores may hold quantiles of more)
    lows: np.ndarray = field(default_factory=lambda: np.zeros(0))  # each feature's training min (rows that have it)
    highs: np.ndarray = field(default_factory=lambda: np.zeros(0))  # each feature's training max (rows that have it)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # blobs registered before tails and ranges: ECOD's sorted columns still give the ranges
        state.setdefault("n_train", 0)
        columns = state.get("columns")
        if "lows" not in state:
            if columns is not None and columns.shape[1] > 0:
                state["lows"], state["highs"] = columns[:, 0].copy(), columns[:, -1].copy()
            else:
                state["lows"], state["highs"] = np.zeros(0), np.zeros(0)
        self.__dict__.update(state)

    @classmethod
    def fit(cls, algorithm: str, params: dict[str, Any], rows: Sequence[dict[str, float]],
            features: Sequence[str] | None = None) -> FittedModel:
        feats = _features(rows) if features is None else tuple(features)
        if not rows or not feats:
            raise ValueError(f"cannot fit {algorithm!r} on {len(rows)} rows with features {list(feats)!r}")
        x = matrix(rows, feats)
        model = make_model(algorithm, params)
        try:
            with warnings.catch_warnings():
                # a constant column (no failed build in the window) has no skewness: it is 0 here
                warnings.filterwarnings("ignore", "Precision loss occurred in moment calculation", RuntimeWarning)
                model.fit(x)
        except Exception as exc:
            raise ValueError(f"{algorithm!r} failed to fit {x.shape[0]}x{x.shape[1]} rows: {exc}") from exc
        fitted = cls(algorithm, dict(params), feats, model, np.zeros(0))
        fitted.medians = np.median(x, axis=0)
        fitted.lows, fitted.highs = _ranges(rows, feats, x)
        fitted.n_train = int(x.shape[0])
        fitted.scales = np.array([_robust_scale(x[:, j]) for j in range(x.shape[1])])
        if algorithm == "ecod":
            from scipy.stats import skew

            fitted.columns = np.sort(x, axis=0).T.copy()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Precision loss occurred in moment calculation", RuntimeWarning)
                fitted.skew_signs = np.sign(np.nan_to_num(skew(x, axis=0)))
            scores = np.sort(fitted.raw_scores(x))
            # scored from the columns alone: without PyOD's object (which holds the whole window
            # again), the registered blob is smaller and a shard that loads it never imports PyOD
            fitted.model = None
        else:
            scores = np.sort(np.asarray(model.decision_scores_, dtype=float))
        if len(scores) > 1024:
            scores = np.quantile(scores, np.linspace(0, 1, 1024))
        fitted.train_scores = scores
        return fitted

    def raw_scores(self, x: np.ndarray) -> np.ndarray:
        """Decision scores (higher is more outlying) of a matrix in :attr:`features` order.

        ECOD is scored with numpy from the sorted training columns (:meth:`ecod_scores`): PyOD's
        own ``decision_function`` ranks a batch jointly, copies the whole window per call and
        writes scratch arrays onto the model, which would make ``score_one`` impure.
        """
        if self.columns is not None and self.skew_signs is not None:
            return self.ecod_scores(x, extend=True)
        model = self.model
        if self.algorithm == "copod":
            # COPOD writes scratch arrays onto the model while scoring: score a copy, stay pure.
            model = pickle.loads(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301 - our own model
        return np.asarray(model.decision_function(x), dtype=float)

    def ecod_scores(self, x: np.ndarray, *, extend: bool = True) -> np.ndarray:
        """ECOD's scores, each row ranked against the training window alone.

        With ``extend=False`` this is PyOD's formula exactly. ECOD's tail probability of a feature
        saturates at ``1/(n+1)`` beyond the training range, so a latency ten times the normal
        scores no higher than one just past the maximum; with ``extend=True`` (the default) the
        tail keeps decaying exponentially with the distance beyond the range, in robust standard
        deviations of the window, which ranks far-out values above near ones.
        """
        assert self.columns is not None
        assert self.skew_signs is not None
        n = self.columns.shape[1]
        out = np.zeros(x.shape[0])
        for j, col in enumerate(self.columns):
            v = x[:, j]
            left = -np.log((np.searchsorted(col, v, side="right") + 1) / (n + 1))
            right = -np.log((n - np.searchsorted(col, v, side="left") + 1) / (n + 1))
            sign = self.skew_signs[j]
            skewed = left if sign < 0 else right if sign > 0 else left + right
            out += np.maximum(np.maximum(left, right), skewed)
            if extend and len(self.scales) == len(self.columns):
                beyond = np.maximum(np.maximum(v - col[-1], col[0] - v), 0.0)
                out += beyond / self.scales[j]
        return out

    def scale(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores on the training scale: fraction of training scores below, plus log-excess."""
        ref = self.train_scores
        frac = np.searchsorted(ref, raw, side="left") / max(len(ref), 1)
        spread = float(ref[-1] - ref[len(ref) // 2]) or 1.0
        excess = np.log1p(np.maximum(raw - ref[-1], 0.0) / spread)
        return np.asarray(frac + excess, dtype=float)

    def tail(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated tail probabilities of raw scores: ``(k + 1) / (n + 1)``, where ``k`` of the
        ``n`` training scores are at or above the raw score. Comparable across refits (each has its
        own raw scale); the smallest value, ``1 / (n + 1)`` (:meth:`floor`), means "beyond every
        training score".

        >>> import random
        >>> rng = random.Random(0)
        >>> m = FittedModel.fit("ecod", {}, [{"a": rng.gauss(0, 1)} for _ in range(99)])
        >>> [round(float(p), 2) for p in m.tail(m.raw_scores(matrix([{"a": 0.0}, {"a": 9.0}], m.features)))]
        [0.87, 0.01]
        """
        ref = self.train_scores
        n = self.n_train or len(ref)
        if len(ref) == 0:
            return np.ones(np.shape(raw))
        above = (len(ref) - np.searchsorted(ref, raw, side="left")) / len(ref) * n
        return np.asarray((above + 1.0) / (n + 1.0), dtype=float)

    def floor(self) -> float:
        """The smallest tail probability this model gives: beyond every training score."""
        return 1.0 / ((self.n_train or len(self.train_scores)) + 1.0)

    def score_many(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        return self.scale(self.raw_scores(matrix(rows, self.features)))

    def score(self, row: dict[str, float]) -> float:
        return float(self.score_many([row])[0])

    def to_blob(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def from_blob(blob: bytes) -> FittedModel:
        try:
            obj = pickle.loads(blob)  # noqa: S301 - blobs come from our own model registry
        except Exception as exc:
            raise ValueError(f"not a model blob ({len(blob)} bytes): {exc}") from exc
        if not isinstance(obj, FittedModel):
            raise ValueError(f"not a model blob: it holds a {type(obj).__name__}")
        return obj


@dataclass
class RefitResult:
    """What one refit produced: the model, its training window, and its metrics."""

    model: FittedModel
    train_start: datetime | None
    train_end: datetime | None
    metrics: dict[str, float]
    holdout: list[dict[str, float]]


class Refitter:
    """Fits a new model on the most recent ``window`` rows (see the module docstring)."""

    def __init__(self, algorithm: str = "ecod", params: dict[str, Any] | None = None, *, window: int = 1024,
                 min_rows: int = 64, holdout_fraction: float = 0.2, seed: int = 0) -> None:
        if params or algorithm not in ALGORITHMS:  # fail early on an unknown algorithm or bad parameters
            make_model(algorithm, params)  # (the defaults need no check, nor PyOD's import here)
        if min_rows < 8:
            raise ValueError(f"min_rows must be at least 8, got {min_rows!r}")
        if not 0 < holdout_fraction < 0.5:
            raise ValueError(f"holdout_fraction must be in (0, 0.5), got {holdout_fraction!r}")
        self.algorithm = algorithm
        self.params = dict(params or {})
        self.window = window
        self.min_rows = min_rows
        self.holdout_fraction = holdout_fraction
        self.seed = seed

    def fit(self, rows: Sequence[Row]) -> RefitResult:
        """Fit on the last ``window`` rows; holds out a random slice to compute ``proxy_auc``."""
        recent = list(rows)[-self.window :]
        if len(recent) < self.min_rows:
            raise ValueError(f"need at least {self.min_rows} rows to refit, got {len(recent)}")
        rng = random.Random(self.seed + len(recent))
        idx = list(range(len(recent)))
        rng.shuffle(idx)
        n_hold = max(4, int(len(recent) * self.holdout_fraction))
        hold = sorted(idx[:n_hold])
        train = sorted(idx[n_hold:])
        train_rows = [recent[i][1] for i in train]
        hold_rows = [recent[i][1] for i in hold]
        features = _features([r for _, r in recent])
        model = FittedModel.fit(self.algorithm, self.params, train_rows, features)
        metrics = {"proxy_auc": proxy_auc(model, hold_rows, rng), "train_rows": float(len(train_rows)),
                   "holdout_rows": float(len(hold_rows)), "features": float(len(features))}
        stamps = [ts for ts, _ in recent if ts is not None]
        return RefitResult(model, min(stamps) if stamps else None, max(stamps) if stamps else None, metrics, hold_rows)


def proxy_auc(model: FittedModel, holdout: Sequence[dict[str, float]], rng: random.Random | None = None) -> float:
    """AUC separating ``holdout`` rows from the same rows with injected outliers."""
    if not holdout:
        return float("nan")
    x = matrix(holdout, model.features)
    bad = inject_outliers(x, rng or random.Random(0))
    normal = model.scale(model.raw_scores(x))
    outliers = model.scale(model.raw_scores(bad))
    return auc(normal.tolist(), outliers.tolist())


@register
class PyODDetector(Detector):
    """A PyOD model behind River's contract: ``learn_one`` buffers, ``score_one`` uses the champion."""

    name: ClassVar[str] = "pyod"
    version: ClassVar[str] = "1"

    def __init__(self, algorithm: str = "ecod", params: dict[str, Any] | None = None, *, window: int = 512,
                 refit_every: int = 128, min_rows: int = 64, auto_refit: bool = True, drift: bool = True,
                 seed: int = 0, drift_batch: int = DRIFT_BATCH) -> None:
        self.refitter = Refitter(algorithm, params, window=window, min_rows=min_rows, seed=seed)
        self.refit_every = refit_every
        self.auto_refit = auto_refit
        self.drift_batch = drift_batch
        self.buffer: deque[Row] = deque(maxlen=window)
        self.since_refit = 0
        self.model: FittedModel | None = None
        self.model_version: int | None = None
        self._refit_due = False
        self._drift_pending: list[dict[str, float]] = []  # rows learnt, not yet scored for ADWIN
        self.adwin: Any = None
        if drift:
            from river.drift import ADWIN

            self.adwin = ADWIN()

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"window": 128, "refit_every": 32, "min_rows": 32}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "refit_due" in state:  # checkpoints written before the drift scores were batched
            state["_refit_due"] = state.pop("refit_due")
        state.setdefault("_drift_pending", [])
        state.setdefault("drift_batch", 64)
        self.__dict__.update(state)

    @property
    def refit_due(self) -> bool:
        """Whether the window asks for a refit (rows due, or ADWIN saw the score stream drift)."""
        self._flush_drift()
        return self._refit_due

    @refit_due.setter
    def refit_due(self, value: bool) -> None:
        self._flush_drift()
        self._refit_due = value

    def _flush_drift(self) -> None:
        """Feed ADWIN the scores of the rows learnt since the last flush, in order.

        Scoring them as one matrix gives each row the score it would have had alone (ECOD ranks
        every row against the training window only), so ADWIN sees the same stream; only when
        the flag is raised moves, to the next read of :attr:`refit_due` (or every ``drift_batch``
        rows). Other algorithms, and ``auto_refit``, score each row as it is learnt.
        """
        pending = self._drift_pending
        if not pending:
            return
        self._drift_pending = []
        model, adwin = self.model, self.adwin
        if model is None or adwin is None:
            return
        for s in model.score_many(pending).tolist():
            adwin.update(s)
            if adwin.drift_detected:
                self._refit_due = True

    def learn_one(self, x: dict[str, float], ts: datetime | None = None) -> None:
        row = dict(x)
        if self.model is not None and self.adwin is not None:
            self._drift_pending.append(row)
            if (self.auto_refit or self.model.columns is None
                    or len(self._drift_pending) >= self.drift_batch):
                self._flush_drift()
        self.buffer.append((ts, row))
        self.since_refit += 1
        if len(self.buffer) >= self.refitter.min_rows and (
            self.model is None or self.since_refit >= self.refit_every or self._refit_due
        ):
            self._refit_due = True
            if self.auto_refit:
                try:
                    self.refit()
                except ValueError as exc:  # e.g. rows without features: keep the current model
                    log.warning("PyOD refit failed, keeping the current model: %s", exc)
                    self.since_refit = 0
                    self.refit_due = False

    def score_one(self, x: dict[str, float]) -> float:
        model = self.model  # one read: a concurrent swap cannot tear it
        if model is None:
            return 0.0
        return model.score(x)

    def explain_one(self, x: dict[str, float]) -> list[Contribution]:
        model = self.model
        if model is None:
            return super().explain_one(x)
        items = []
        for j, f in enumerate(model.features):
            if f not in x:
                continue
            v = float(x[f])
            med, s = float(model.medians[j]), float(model.scales[j])
            items.append((f, v, med, med - 3 * s, med + 3 * s, abs(v - med) / s if s > 0 else 0.0))
        return share_contributions(items)

    def window_rows(self) -> list[Row]:
        """The rows in the window, oldest first (what an off-path refit trains on)."""
        return list(self.buffer)

    def refit(self) -> RefitResult:
        """Refit in-process on the window and swap the new model in."""
        result = self.refitter.fit(self.window_rows())
        self.swap(result.model)
        return result

    def swap(self, model: FittedModel, version: int | None = None) -> None:
        """Use ``model`` from now on (one attribute assignment)."""
        self._drift_pending = []  # ADWIN restarts below: the old model's scores would be dropped
        self.model = model
        self.model_version = version
        self.since_refit = 0
        self._refit_due = False
        if self.adwin is not None:
            from river.drift import ADWIN

            self.adwin = ADWIN()

    def swap_blob(self, blob: bytes, version: int | None = None) -> None:
        """Use the model in ``blob`` (a registry blob) from now on."""
        self.swap(FittedModel.from_blob(blob), version)

"""Generic checks that every detector passes, in the manner of River's ``river/checks``.

:func:`yield_checks` yields the checks that apply to a detector (minus those its
``_unit_test_skips()`` names); :func:`check_detector` runs them all. Each check builds fresh
detectors from a factory, runs on synthetic streams made here (no network, no files), and
raises ``AssertionError`` saying what went wrong.

- ``check_score_before_learning``: scoring a fresh detector does not crash and gives a finite number;
- ``check_score_is_pure``: ``score_one`` (and ``explain_one``) change nothing: the pickled state
  is the same before and after, and scoring twice gives the same score;
- ``check_pickling``: a pickled and restored detector scores the next points exactly (``==``)
  as the original;
- ``check_roc_auc``: scored before learning (prequential), injected anomalies rank above normal
  points (ROC AUC ≥ 0.5);
- ``check_explanation``: ``explain_one`` names only real features, with shares in 0..1.

>>> from opsradar.detectors.robust import RobustZScore
>>> check_detector(RobustZScore)
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable, Iterator

from .base import Detector

__all__ = ["anomaly_stream", "check_detector", "yield_checks"]

Factory = Callable[[], Detector]
Check = Callable[[Factory], None]


def anomaly_stream(n: int = 600, *, seed: int = 42, rate: float = 0.03) -> list[tuple[dict[str, float], bool]]:
    """A synthetic stream: two correlated seasonal features with noise, and injected anomalies.

    Returns ``(x, is_anomaly)`` pairs; anomalies are large spikes on one or both features after
    the first 100 points. Context features ``_hour``/``_weekend`` ride along.
    """
    rng = random.Random(seed)
    out: list[tuple[dict[str, float], bool]] = []
    for i in range(n):
        base = 10.0 + 3.0 * math.sin(2 * math.pi * i / 24)
        a = base + rng.gauss(0, 0.5)
        b = 0.5 * base + rng.gauss(0, 0.3)
        anomalous = i >= 100 and rng.random() < rate
        if anomalous:
            which = rng.random()
            if which < 0.4:
                a += rng.choice((-1, 1)) * rng.uniform(8, 15)
            elif which < 0.8:
                b += rng.choice((-1, 1)) * rng.uniform(5, 10)
            else:
                a += rng.uniform(8, 15)
                b += rng.uniform(5, 10)
        x = {"value": a, "other": b, "_hour": float(i % 24), "_weekend": 0.0}
        out.append((x, anomalous))
    return out


def _auc(labels: list[bool], scores: list[float]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        raise ValueError("the AUC needs both anomalies and normal points")
    wins = 0.0
    for p in pos:
        for q in neg:
            wins += 1.0 if p > q else 0.5 if p == q else 0.0
    return wins / (len(pos) * len(neg))


def _state(det: Detector) -> bytes:
    return pickle.dumps(det, protocol=pickle.HIGHEST_PROTOCOL)


def check_score_before_learning(make: Factory) -> None:
    det = make()
    x, _ = anomaly_stream(5)[0]
    s = det.score_one(x)
    assert isinstance(s, float | int), f"{det.name}: score_one returned {type(s).__name__}, not a float"
    assert not math.isnan(s), f"{det.name}: score_one before learning returned NaN"
    det.explain_one(x)
    det.score_one({})


def check_score_is_pure(make: Factory) -> None:
    det = make()
    stream = anomaly_stream(300)
    for x, _ in stream[:200]:
        det.learn_one(x)
    for x, _ in stream[200:]:
        before = _state(det)
        s1 = det.score_one(x)
        det.explain_one(x)
        s2 = det.score_one(x)
        assert s1 == s2, f"{det.name}: scoring twice gave {s1!r} then {s2!r}"
        assert _state(det) == before, f"{det.name}: score_one or explain_one changed the state"
        det.learn_one(x)


def check_pickling(make: Factory) -> None:
    det = make()
    stream = anomaly_stream(300)
    for x, _ in stream[:150]:
        det.learn_one(x)
    copy: Detector = pickle.loads(pickle.dumps(det, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301
    for x, _ in stream[150:]:
        a, b = det.score_one(x), copy.score_one(x)
        assert a == b, f"{det.name}: the restored detector scored {b!r}, the original {a!r}"
        det.learn_one(x)
        copy.learn_one(x)


def check_roc_auc(make: Factory) -> None:
    det = make()
    labels: list[bool] = []
    scores: list[float] = []
    for i, (x, y) in enumerate(anomaly_stream(800)):
        s = det.score_one(x)
        det.learn_one(x)
        if i >= 100:
            labels.append(y)
            scores.append(float(s))
    auc = _auc(labels, scores)
    assert auc >= 0.5, f"{det.name}: ROC AUC {auc:.3f} < 0.5 when scored before learning"


def check_explanation(make: Factory) -> None:
    det = make()
    stream = anomaly_stream(200)
    for x, _ in stream[:150]:
        det.learn_one(x)
    x = stream[160][0]
    for c in det.explain_one(x):
        assert c.feature in x, f"{det.name}: explained unknown feature {c.feature!r}"
        assert not c.feature.startswith("_"), f"{det.name}: explained the context feature {c.feature!r}"
        assert 0.0 <= c.contribution <= 1.0, f"{det.name}: contribution {c.contribution!r} not in 0..1"


_CHECKS: list[Check] = [
    check_score_before_learning,
    check_score_is_pure,
    check_pickling,
    check_roc_auc,
    check_explanation,
]


def yield_checks(cls: type[Detector]) -> Iterator[Check]:
    """The checks that apply to ``cls`` (those named in ``_unit_test_skips()`` are left out)."""
    skips = cls._unit_test_skips()
    for check in _CHECKS:
        if check.__name__ not in skips:
            yield check


def check_detector(cls: type[Detector], factory: Factory | None = None) -> None:
    """Run every applicable check on ``cls`` built with ``_unit_test_params()`` (or ``factory``)."""
    make: Factory = factory or (lambda: cls(**cls._unit_test_params()))
    for check in yield_checks(cls):
        check(make)

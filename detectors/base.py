"""The detector contract, explanations, and the registry of detector classes.

Every detector follows River's anomaly-detector contract (``river/base/anomaly_detector.py``):

- ``learn_one(x: dict[str, float]) -> None`` updates the state;
- ``score_one(x: dict[str, float]) -> float`` is pure (it changes nothing) and high means anomalous.

On top of River's contract, an opsradar detector can say *why*: ``explain_one(x)`` gives, per
feature, the value, what the detector expected, the normal low..high range and the share of the
score it drove (:class:`Contribution`). ``_unit_test_params()`` gives the arguments the generic
checks (:mod:`opsradar.detectors.checks`) build it with.

New detector classes join :data:`DETECTORS` with :func:`register`, so the generic checks run on them:

>>> @register
... class Never(Detector):
...     name = "never"
...     def learn_one(self, x: dict[str, float]) -> None:
...         return None
...     def score_one(self, x: dict[str, float]) -> float:
...         return 0.0
>>> DETECTORS["never"] is Never
True
>>> del DETECTORS["never"]
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from typing import Any, ClassVar, TypeVar

from opsradar.models import Contribution

__all__ = ["DETECTORS", "Detector", "register", "share_contributions"]


class Detector(ABC):
    """Base class of an online anomaly detector (River's contract, plus explanations)."""

    #: Short stable name, used in anomalies and in :data:`DETECTORS`.
    name: ClassVar[str] = "detector"
    #: Bumped when the meaning of the state or of the score changes.
    version: ClassVar[str] = "1"

    @abstractmethod
    def learn_one(self, x: dict[str, float]) -> None:
        """Update the state with one observation."""

    @abstractmethod
    def score_one(self, x: dict[str, float]) -> float:
        """The anomaly score of ``x`` (higher is more anomalous). Changes nothing."""

    def explain_one(self, x: dict[str, float]) -> list[Contribution]:
        """Why ``x`` scores as it does, most important feature first. Changes nothing.

        The default says only the values; detectors override it with their baselines.
        """
        return [Contribution(feature=k, value=v, expected=v, low=v, high=v, contribution=0.0) for k, v in x.items()]

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        """Arguments to build this detector with in the generic checks."""
        return {}

    @classmethod
    def _unit_test_skips(cls) -> set[str]:
        """Names of generic checks that do not apply to this detector (say why in a comment)."""
        return set()

    def clone(self) -> Detector:
        """A deep copy of this detector, state included."""
        clone: Detector = pickle.loads(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301 - our own state
        return clone


D = TypeVar("D", bound=type[Detector])

#: Every detector class by name. The PyOD models register here too, so the generic checks cover them.
DETECTORS: dict[str, type[Detector]] = {}


def register(cls: D) -> D:
    """Class decorator: add a detector class to :data:`DETECTORS` under its ``name``."""
    name = cls.name
    if name in DETECTORS and DETECTORS[name] is not cls:
        raise ValueError(f"a detector named {name!r} is already registered: {DETECTORS[name]!r}")
    DETECTORS[name] = cls
    return cls


def share_contributions(items: list[tuple[str, float, float, float, float, float]]) -> list[Contribution]:
    """Contributions from ``(feature, value, expected, low, high, weight)``, weights made shares.

    Shares sum to 1 (all zero when every weight is zero); the list is sorted by share, largest first.

    >>> [c.feature for c in share_contributions([("a", 1, 0, -1, 1, 1.0), ("b", 5, 0, -1, 1, 3.0)])]
    ['b', 'a']
    """
    total = sum(max(w, 0.0) for *_, w in items)
    out = [
        Contribution(
            feature=f,
            value=float(v),
            expected=float(e),
            low=float(lo),
            high=float(hi),
            contribution=(max(w, 0.0) / total) if total > 0 else 0.0,
        )
        for f, v, e, lo, hi, w in items
    ]
    out.sort(key=lambda c: -c.contribution)
    return out

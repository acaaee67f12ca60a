"""One PyOD model per stream group: windows, due refits and hot swaps, without Ray.

A stream group (``elasticsearch|access|*``, see :func:`~opsradar.detectors.registry.group_of`)
shares one sliding window and one champion model: every stream of the group learns into the
group's :class:`~opsradar.detectors.pyod_models.PyODDetector` and is scored by its champion.

With a :class:`~opsradar.detectors.registry.ModelRegistry`, nothing is refitted on the hot path:
:meth:`GroupModels.due` names the groups whose window asks for a refit (every ``refit_every``
rows, or early when ADWIN sees their score stream drift); serving ships
``window_rows(group)`` to a Ray task that runs :meth:`ModelRegistry.refit` (fit, register,
champion/challenger), then calls :meth:`GroupModels.sync`, which swaps the champion's blob in when
its version changed. Without a registry, the detectors refit themselves in-process.

**Judging cold streams** (:meth:`GroupModels.judge`). A stream does not page during its warm-up
(a CI job's first 15 runs, a repository's first 10 commits…): its own detector has no baseline
yet. The group's champion has one, so a cold stream's event is judged against it, and it is an
anomaly only when both hold:

1. the champion's **calibrated tail** is at its floor: the event (its one-sided features clamped
   at the group median from below, count features and features the group never varied left at
   the median) scores above *every* score of the champion's training window
   (:meth:`~opsradar.detectors.pyod_models.FittedModel.tail`, stable across refits, where raw
   scores are not);
2. at least one judged feature lies **beyond the group's whole training range by at least the
   width of that range** (:data:`GROUP_MARGIN`), in its harmful direction: a build longer than
   the longest build of the group plus (longest − shortest), i.e. about twice the longest.

Groups mix streams of very different scales (5-minute and 40-minute jobs), so "unusual for the
group" alone is mostly "a big member"; the second rule asks for "bigger than anything in the
group, by a wide margin", which a normal big member is not. Count features (failed builds, 5xx
and log rates, never-seen templates) are not judged: they ramp up during a warm-up by
construction, and the per-stream detectors judge them with their Poisson floors once warm.

>>> import random
>>> from opsradar.store import Store
>>> from opsradar.detectors.registry import ModelRegistry
>>> rng = random.Random(0)
>>> models = GroupModels(ModelRegistry(Store("sqlite://")), min_rows=64, refit_every=64)
>>> for i in range(100):
...     models.learn_one(f"jenkins|build|job:j{i % 3}", {"duration_s": rng.gauss(60, 5)})
>>> models.due()
['jenkins|build|*']
>>> models.refit("jenkins|build|*").promoted
True
>>> models.score_one("jenkins|build|job:new", {"duration_s": 300.0}) > 1.0
True
>>> found = models.judge("jenkins|build|job:new", {"duration_s": 600.0}, upper={"duration_s"})
>>> found.model_id, found.tail == found.floor, found.explanation[0].describe()
('jenkins|build|*@v1', True, 'duration 10 min (usual 0.81–1.2 min)')
>>> models.judge("jenkins|build|job:new", {"duration_s": 5.0}, upper={"duration_s"}) is None  # fast: good news
True
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from opsradar.models import Contribution

from .base import share_contributions
from .pyod_models import FittedModel, PyODDetector, Refitter, Row, matrix
from .registry import Decision, ModelRegistry, group_of

__all__ = ["GROUP_MARGIN", "GroupFinding", "GroupModels", "judge"]

#: How far beyond the group's training range (in widths of that range) a feature of a cold stream
#: must lie to page: 1.0 = beyond max + (max - min), about twice the largest value the group has
#: seen for a non-negative feature. See the module docstring.
GROUP_MARGIN = 1.0


@dataclass(frozen=True)
class GroupFinding:
    """A cold stream's event judged anomalous by its group's champion (see :func:`judge`)."""

    group: str
    version: int | None  # the champion's registry version (None: refitted in-process)
    algorithm: str
    raw: float
    tail: float  # calibrated tail probability: share of training scores at or above ``raw`` (+1 smoothed)
    floor: float  # the smallest tail the champion gives, 1 / (training rows + 1)
    explanation: list[Contribution] = field(default_factory=list)

    @property
    def model_id(self) -> str:
        """The registry id of the champion (``group@vN``), what ``/v1/models/{id}/rollback`` takes."""
        return f"{self.group}@v{self.version}" if self.version is not None else f"{self.group}@local"


def judge(model: FittedModel, x: dict[str, float], *, upper: Collection[str] = (), skip: Collection[str] = (),
          margin: float = GROUP_MARGIN) -> tuple[float, float, list[Contribution]] | None:
    """Judge one cold stream's features against a group champion (see the module docstring).

    Returns ``(raw, tail, explanation)`` when the event is anomalous for the group, else None.
    The explanation holds every judged feature: its value, the group's median, and its training
    range (min–max), with shares of how far beyond the range by margin each went.
    """
    feats = model.features
    if len(model.lows) != len(feats) or len(model.highs) != len(feats) or len(model.medians) != len(feats):
        return None  # a model without training ranges: nothing to explain with
    row = {f: float(model.medians[j]) for j, f in enumerate(feats)}
    items: list[tuple[str, float, float, float, float, float]] = []
    beyond = False
    for j, f in enumerate(feats):
        v = x.get(f)
        lo, hi, med = float(model.lows[j]), float(model.highs[j]), float(model.medians[j])
        if v is None or not math.isfinite(v) or f in skip or f.startswith("_") or not hi > lo:
            continue
        width = hi - lo
        if f in upper:
            row[f] = max(float(v), med)  # below the median is good news for a one-sided feature
            excess = (v - hi) / width
        else:
            row[f] = float(v)
            excess = max(v - hi, lo - v) / width
        beyond = beyond or excess >= margin
        items.append((f, float(v), med, lo, hi, max(excess, 0.0)))
    if not beyond:
        return None
    raw = float(model.raw_scores(matrix([row], feats))[0])
    tail = float(model.tail(np.asarray([raw]))[0])
    if tail > model.floor():
        return None  # the champion has trained on rows at least as outlying
    return raw, tail, share_contributions(items)


class GroupModels:
    """PyOD detectors by stream group (see the module docstring)."""

    def __init__(self, registry: ModelRegistry | None = None, *, algorithm: str = "ecod",
                 params: dict[str, Any] | None = None, window: int = 1024, refit_every: int = 256,
                 min_rows: int = 64, depth: int = 2) -> None:
        self.registry = registry
        self.algorithm = algorithm
        self.params = dict(params or {})
        self.window = window
        self.refit_every = refit_every
        self.min_rows = min_rows
        self.depth = depth
        self.detectors: dict[str, PyODDetector] = {}
        self._groups: dict[str, str] = {}  # stream key -> its group (group_of, per event otherwise)

    def group(self, stream_key: str) -> str:
        groups = self._groups
        found = groups.get(stream_key)
        if found is None:
            if len(groups) >= 100_000:
                groups.clear()
            found = groups[stream_key] = group_of(stream_key, self.depth)
        return found

    def detector(self, group_key: str) -> PyODDetector:
        """The group's detector (created on first use, with the registry's champion if any)."""
        det = self.detectors.get(group_key)
        if det is None:
            det = PyODDetector(self.algorithm, self.params, window=self.window, refit_every=self.refit_every,
                               min_rows=self.min_rows, auto_refit=self.registry is None)
            self.detectors[group_key] = det
            self.sync(group_key)
        return det

    def learn_one(self, stream_key: str, x: dict[str, float], ts: datetime | None = None) -> None:
        self.detector(self.group(stream_key)).learn_one(x, ts)

    def learn(self, stream_key: str, x: dict[str, float], ts: datetime | None = None) -> None:
        """:meth:`learn_one` (the name the detection engine calls)."""
        self.learn_one(stream_key, x, ts)

    def score_one(self, stream_key: str, x: dict[str, float]) -> float:
        det = self.detectors.get(self.group(stream_key))
        return det.score_one(x) if det is not None else 0.0

    def judge(self, stream_key: str, x: dict[str, float], *, upper: Collection[str] = (),
              skip: Collection[str] = ()) -> GroupFinding | None:
        """Judge a cold stream's event against its group's champion (module docstring). Changes nothing."""
        group = self.group(stream_key)
        det = self.detectors.get(group)
        model = det.model if det is not None else None  # one read: a concurrent swap cannot tear it
        if det is None or model is None:
            return None
        found = judge(model, x, upper=upper, skip=skip)
        if found is None:
            return None
        raw, tail, explanation = found
        return GroupFinding(group, det.model_version, model.algorithm, raw, tail, model.floor(), explanation)

    def due(self) -> list[str]:
        """The groups that ask for a refit, sorted."""
        return sorted(g for g, d in self.detectors.items() if d.refit_due)

    def window_rows(self, group_key: str) -> list[Row]:
        """What a refit task trains on."""
        return self.detector(group_key).window_rows()

    def refitter(self) -> Refitter:
        return Refitter(self.algorithm, self.params, window=self.window, min_rows=self.min_rows)

    def refit(self, group_key: str) -> Decision:
        """Run one refit job in-process (serving runs :meth:`ModelRegistry.refit` as a Ray task)."""
        if self.registry is None:
            raise RuntimeError("refit jobs need a model registry; without one the detectors refit themselves")
        det = self.detector(group_key)
        decision = self.registry.refit(group_key, det.window_rows(), self.refitter())
        det.refit_due = False
        det.since_refit = 0
        self.sync(group_key)
        return decision

    def sync(self, group_key: str | None = None) -> list[str]:
        """Swap each group's champion in where its version changed; returns the groups swapped."""
        if self.registry is None:
            return []
        swapped = []
        for g in [group_key] if group_key is not None else list(self.detectors):
            det = self.detectors.get(g)
            champ = self.registry.champion_blob(g)
            if det is None or champ is None or champ[0] == det.model_version:
                continue
            det.swap_blob(champ[1], champ[0])
            swapped.append(g)
        return swapped

    def snapshot(self) -> bytes:
        """The detectors (windows and current models), for a checkpoint."""
        return pickle.dumps(self.detectors, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes) -> None:
        try:
            detectors = pickle.loads(blob)  # noqa: S301 - our own checkpoint
        except Exception as exc:
            raise ValueError(f"not a GroupModels snapshot ({len(blob)} bytes): {exc}") from exc
        if not isinstance(detectors, dict):
            raise ValueError(f"not a GroupModels snapshot: it holds a {type(detectors).__name__}")
        self.detectors = detectors

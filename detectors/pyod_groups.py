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
"""

from __future__ import annotations

import pickle
from datetime import datetime
from typing import Any

from .pyod_models import PyODDetector, Refitter, Row
from .registry import Decision, ModelRegistry, group_of

__all__ = ["GroupModels"]


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

    def group(self, stream_key: str) -> str:
        return group_of(stream_key, self.depth)

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

    def score_one(self, stream_key: str, x: dict[str, float]) -> float:
        det = self.detectors.get(self.group(stream_key))
        return det.score_one(x) if det is not None else 0.0

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

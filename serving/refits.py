"""PyOD refits off the request path: the shard's group models, the refit job, and its Ray task.

A detector shard feeds every scored event's features to its
:class:`~opsradar.detectors.pyod_groups.GroupModels` (one PyOD model per stream group). When a
group's window asks for a refit (:meth:`GroupModels.due`), :class:`ShardRefits` hands the window's
rows to :func:`refit_job` (fit, register, champion/challenger against the store's model registry),
run as a Ray task by the shard, and, once it finished, calls :meth:`GroupModels.sync`, which swaps
the champion in when its version changed. Nothing is fitted on the request path. The shard's
detection engine holds a :class:`ShardRefits` as its ``groups``: it learns every scored event, and
judges the events of cold streams against their group's champion (:meth:`ShardRefits.judge`,
:meth:`GroupModels.judge <opsradar.detectors.pyod_groups.GroupModels.judge>`).

**Pace** (``min_interval``, the config's ``detectors.refit_interval``): a group that has a champion
is refitted at most once per ``min_interval`` of wall-clock time when its window asks for rows'
sake (every ``refit_every`` rows); when ADWIN saw its scores drift, sooner, but at most once per
``min(min_interval, DRIFT_MIN_INTERVAL_S)``. A group without a champion is fitted as soon as it has
enough rows. A refit that must wait stays due: it is taken, on the then-current window, once its
time comes. A group is never handed out again while its last refit runs (until
:meth:`ShardRefits.finished`): without that, a group with no champion yet was handed out again on
every round until its first fit came back, and a busy shard queued a dozen refits of one group behind
a worker's start-up. (Unpaced, a busy group asked for a refit every ``refit_every`` rows: at 1,000
events/s that was a refit every half second, and the refit tasks took more CPU than detection itself.)

>>> import random, tempfile
>>> from opsradar.store import Store
>>> store = Store(f"sqlite:///{tempfile.mkdtemp()}/state.db")
>>> refits = ShardRefits(store, window=64, refit_every=64)
>>> rng = random.Random(0)
>>> for i in range(70):
...     refits.learn("jenkins|build|job:a", {"duration_s": rng.gauss(60, 5)})
>>> jobs = refits.take_due()
>>> [(group, len(rows)) for group, rows in jobs]
[('jenkins|build|*', 64)]
>>> refit_job(store.url, jobs[0][0], jobs[0][1], refits.spec())["promoted"]
True
>>> refits.finished(jobs[0][0])
>>> refits.sync(), refits.versions()
(['jenkins|build|*'], {'jenkins|build|*': 1})
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from opsradar.detectors.pyod_groups import GroupFinding, GroupModels
from opsradar.detectors.pyod_models import Refitter, Row
from opsradar.detectors.registry import ModelRegistry
from opsradar.store import Store

__all__ = ["DRIFT_MIN_INTERVAL_S", "ShardRefits", "refit_job", "warm_refit_worker"]

#: The shortest wall-clock time between two refits of a group that ADWIN asks for early (drift).
DRIFT_MIN_INTERVAL_S = 60.0


class ShardRefits:
    """A shard's PyOD group models, with the refits they ask for."""

    def __init__(self, store: Store, *, algorithm: str = "ecod", window: int = 1024, refit_every: int = 256,
                 min_interval: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = ModelRegistry(store, actor="opsradar:shard")
        self.models = GroupModels(self.registry, algorithm=algorithm, window=window, refit_every=refit_every,
                                  min_rows=min(64, window))
        self.lock = threading.Lock()
        self.refits = 0
        self.min_interval = max(0.0, float(min_interval))
        self.clock = clock
        self._last_refit: dict[str, float] = {}  # group -> when its last refit was handed out (clock)
        self._running: set[str] = set()  # groups whose refit was handed out and has not finished

    def learn(self, stream_key: str, x: dict[str, float], ts: datetime | None = None) -> None:
        if x:
            with self.lock:
                self.models.learn_one(stream_key, x, ts)

    def judge(self, stream_key: str, x: dict[str, float], *, upper: Collection[str] = (),
              skip: Collection[str] = ()) -> GroupFinding | None:
        """A cold stream's event judged by its group's champion (None: not anomalous, or no champion)."""
        with self.lock:
            return self.models.judge(stream_key, x, upper=upper, skip=skip)

    def score(self, stream_key: str, x: dict[str, float]) -> float:
        with self.lock:
            return self.models.score_one(stream_key, x)

    def take_due(self) -> list[tuple[str, list[Row]]]:
        """The groups due for a refit whose time has come (see the module's *Pace*), with their window
        rows; each is marked as no longer due. Groups due but paced stay due."""
        with self.lock:
            jobs = []
            now = self.clock()
            for group in self.models.due():
                if group in self._running:
                    continue
                det = self.models.detector(group)
                last = self._last_refit.get(group)
                if det.model_version is not None and last is not None:
                    drifted = det.since_refit < self.models.refit_every  # due before its rows: ADWIN
                    wait = min(self.min_interval, DRIFT_MIN_INTERVAL_S) if drifted else self.min_interval
                    if now - last < wait:
                        continue
                self._last_refit[group] = now
                self._running.add(group)
                jobs.append((group, list(self.models.window_rows(group))))
                det.refit_due = False
                det.since_refit = 0
            self.refits += len(jobs)
            return jobs

    def finished(self, group: str) -> None:
        """The refit of ``group`` handed out by :meth:`take_due` ended (done or failed): it may be due again."""
        with self.lock:
            self._running.discard(group)

    def spec(self) -> dict[str, Any]:
        """What :func:`refit_job` needs to build the same refitter."""
        return {"algorithm": self.models.algorithm, "params": self.models.params, "window": self.models.window,
                "min_rows": self.models.min_rows}

    def sync(self) -> list[str]:
        """Swap in every champion whose version changed (after a refit, or a manual promote/rollback)."""
        with self.lock:
            return self.models.sync()

    def versions(self) -> dict[str, int | None]:
        with self.lock:
            return {g: d.model_version for g, d in self.models.detectors.items()}


def refit_job(store_url: str, group: str, rows: Sequence[Row], spec: dict[str, Any]) -> dict[str, Any]:
    """Fit a challenger on ``rows``, register it and run the champion/challenger decision."""
    store = Store(store_url, migrate=False)
    try:
        refitter = Refitter(spec["algorithm"], spec["params"], window=spec["window"], min_rows=spec["min_rows"])
        decision = ModelRegistry(store, actor="opsradar:refit").refit(group, rows, refitter)
    finally:
        store.close()
    return {"group": decision.group_key, "version": decision.version, "promoted": decision.promoted,
            "reason": decision.reason}


def warm_refit_worker(spec: dict[str, Any]) -> float:
    """Fit a small synthetic window with ``spec`` (a :meth:`ShardRefits.spec`) and throw it away;
    returns the CPU seconds it took.

    A shard runs this as a Ray task when it starts, so that a refit worker imports River,
    scikit-learn and PyOD, and runs the fit path once, while the application is still idle: ~2.5 s of
    CPU that the first real refit would otherwise spend while the shards are busy with events.
    """
    import random

    t = time.process_time()
    rng = random.Random(0)
    rows: list[Row] = [(None, {"a": rng.random(), "b": rng.random()}) for _ in range(64)]
    Refitter(spec["algorithm"], spec["params"], window=64, min_rows=8).fit(rows)
    return time.process_time() - t

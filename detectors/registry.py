"""The model registry: versions of each stream group's PyOD model, champion/challenger, rollback.

Every refit of a group's model is **registered** as a new version in the store's
``model_versions`` table (training window, parameters, metrics and the pickled model). A new
version is a *challenger*: :meth:`ModelRegistry.challenge` scores it and the current *champion*
on the same data, now, and promotes it only when it wins by ``margin``:

- **with feedback** (at least ``min_labels`` anomalies of the group marked true positive *and* as
  many marked false positive, through ``Store.add_feedback(target_type="anomaly", …)``), the
  metric is ``feedback_auc``: how well the model ranks the true positives' feature vectors above
  the false positives';
- **without**, the metric is ``proxy_auc``: how well it separates the challenger's held-out slice
  of its training window from the same slice with injected synthetic outliers (see
  :func:`opsradar.detectors.pyod_models.inject_outliers`). Both models see the same rows and the
  same injected outliers. The champion was trained on an older window that may overlap the
  held-out slice, which favours the champion: a challenger must really be better.

A group without a champion promotes its first challenger. :meth:`ModelRegistry.rollback` makes
the previous champion the champion again in one call (the rolled-back version is marked
``rejected``). Every change (register, promote, reject, rollback) is written to the audit log, in
the same transaction as the status change.

Statuses: ``candidate`` (registered, not decided), ``champion`` (one per group), ``retired`` (a
former champion, the target of a rollback), ``rejected``.

>>> from opsradar.store import Store
>>> from opsradar.detectors.pyod_models import Refitter
>>> import random
>>> rng = random.Random(3)
>>> rows = [(None, {"ms": rng.gauss(100, 10), "n": rng.gauss(5, 1)}) for _ in range(200)]
>>> registry = ModelRegistry(Store("sqlite://"))
>>> decision = registry.refit("ci|build|*", rows, Refitter(min_rows=50))
>>> decision.promoted, decision.reason
(True, 'no champion yet')
>>> registry.champion("ci|build|*")[0]
1
"""

from __future__ import annotations

import fnmatch
import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .pyod_models import FittedModel, RefitResult, Refitter, Row, auc, proxy_auc

if TYPE_CHECKING:
    from opsradar.store import Store

__all__ = ["Decision", "ModelRegistry", "group_of", "in_group"]


@functools.lru_cache(maxsize=65_536)  # per event in the shards; stream keys repeat
def group_of(stream_key: str, depth: int = 2) -> str:
    """The stream group of a stream key: its first ``depth`` parts and a wildcard.

    >>> group_of("elasticsearch|access|index:shop")
    'elasticsearch|access|*'
    """
    parts = stream_key.split("|")
    if len(parts) <= depth:
        return stream_key
    return "|".join([*parts[:depth], "*"])


def in_group(stream_key: str, group_key: str) -> bool:
    """Whether ``stream_key`` belongs to ``group_key`` (a pattern with ``*`` or an exact key)."""
    return fnmatch.fnmatchcase(stream_key, group_key) if "*" in group_key else stream_key == group_key


@dataclass(frozen=True)
class Decision:
    """The outcome of a champion/challenger comparison."""

    group_key: str
    version: int
    promoted: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    champion_version: int | None


class ModelRegistry:
    """Model versions per stream group, in the store (see the module docstring)."""

    def __init__(self, store: Store, *, actor: str = "opsradar", margin: float = 0.01, min_labels: int = 5,
                 seed: int = 0) -> None:
        self.store = store
        self.actor = actor
        self.margin = margin
        self.min_labels = min_labels
        self.seed = seed
        self._cache: dict[tuple[str, int], FittedModel] = {}

    # ------------------------------------------------------------------ versions

    def register(self, group_key: str, result: RefitResult) -> int:
        """Store a refit as a new ``candidate`` version; returns its version number."""
        model = result.model
        version = self.store.register_model(
            group_key, algorithm=model.algorithm, params={**model.params, "features": list(model.features)},
            metrics=dict(result.metrics), blob=model.to_blob(), train_start=result.train_start,
            train_end=result.train_end, status="candidate")
        self._cache[(group_key, version)] = model
        self.store.audit(self.actor, "model.register", f"{group_key}@v{version}", {
            "algorithm": model.algorithm, "metrics": dict(result.metrics),
            "train_start": _iso(result.train_start), "train_end": _iso(result.train_end)})
        return version

    def load(self, group_key: str, version: int) -> FittedModel:
        """The model of one version (cached)."""
        key = (group_key, version)
        if key not in self._cache:
            blob = self.store.load_model_blob(group_key, version)
            if blob is None:
                raise KeyError(f"no model blob for {group_key} v{version}")
            self._cache[key] = FittedModel.from_blob(blob)
        return self._cache[key]

    def champion(self, group_key: str) -> tuple[int, FittedModel] | None:
        """The current champion's version and model, or None."""
        row = self.store.champion(group_key)
        if row is None:
            return None
        return int(row["version"]), self.load(group_key, int(row["version"]))

    def champion_blob(self, group_key: str) -> tuple[int, bytes] | None:
        """The champion's version and blob: what a serving replica hot-swaps in."""
        row = self.store.champion(group_key)
        if row is None:
            return None
        blob = self.store.load_model_blob(group_key, int(row["version"]))
        return (int(row["version"]), blob) if blob is not None else None

    def versions(self, group_key: str) -> list[dict[str, Any]]:
        """Every version of the group (without blobs), oldest first."""
        return self.store.list_models(group_key)

    # ------------------------------------------------------------------ decisions

    def labelled_rows(self, group_key: str) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
        """Feature vectors of the group's anomalies marked true positive and false positive."""
        verdicts: dict[str, str] = {}
        for fb in self.store.feedback_for("anomaly"):
            verdicts[str(fb["target_id"])] = str(fb["verdict"])  # the latest verdict wins
        tps: list[dict[str, float]] = []
        fps: list[dict[str, float]] = []
        if not verdicts:
            return tps, fps
        for doc in self.store.iter_anomalies():
            verdict = verdicts.get(str(doc.get("id")))
            if verdict is None or not in_group(str(doc.get("stream", "")), group_key) or not doc.get("features"):
                continue
            (tps if verdict == "true_positive" else fps).append({k: float(v) for k, v in doc["features"].items()})
        return tps, fps

    def _metric(self, model: FittedModel, holdout: Sequence[dict[str, float]],
                labelled: tuple[list[dict[str, float]], list[dict[str, float]]] | None) -> float:
        if labelled is not None:
            tps, fps = labelled
            return auc(model.score_many(fps).tolist(), model.score_many(tps).tolist())
        return proxy_auc(model, holdout, random.Random(self.seed))

    def challenge(self, group_key: str, version: int, holdout: Sequence[dict[str, float]]) -> Decision:
        """Promote ``version`` if it beats the champion (see the module docstring), else reject it."""
        challenger = self.load(group_key, version)
        tps, fps = self.labelled_rows(group_key)
        labelled = (tps, fps) if len(tps) >= self.min_labels and len(fps) >= self.min_labels else None
        metric = "feedback_auc" if labelled is not None else "proxy_auc"
        score = self._metric(challenger, holdout, labelled)
        current = self.champion(group_key)
        if current is None:
            return self._decide(group_key, version, True, "no champion yet", metric, score, None, None)
        champ_version, champ = current
        if champ_version == version:
            return self._decide(group_key, version, True, "already champion", metric, score, score, version)
        champ_score = self._metric(champ, holdout, labelled)
        if score >= champ_score + self.margin:
            reason = f"{metric} {score:.4f} beats champion v{champ_version} {champ_score:.4f} by ≥ {self.margin}"
            return self._decide(group_key, version, True, reason, metric, score, champ_score, champ_version)
        reason = f"{metric} {score:.4f} does not beat champion v{champ_version} {champ_score:.4f} by {self.margin}"
        return self._decide(group_key, version, False, reason, metric, score, champ_score, champ_version)

    def _decide(self, group_key: str, version: int, promote: bool, reason: str, metric: str, score: float,
                champ_score: float | None, champ_version: int | None) -> Decision:
        decision = Decision(group_key, version, promote, reason, metric, score, champ_score, champ_version)
        detail = {"reason": reason, "metric": metric, "challenger": score, "champion": champ_score,
                  "champion_version": champ_version}
        if promote:
            if champ_version != version:
                self._set(group_key, version, "champion", "model.promote", detail)
        else:
            self._set(group_key, version, "rejected", "model.reject", detail)
        return decision

    def _set(self, group_key: str, version: int, status: str, action: str, detail: dict[str, Any]) -> None:
        with self.store.transaction() as conn:
            self.store.set_model_status(group_key, version, status, conn=conn)
            self.store.audit(self.actor, action, f"{group_key}@v{version}", detail, conn=conn)

    def promote(self, group_key: str, version: int, *, reason: str = "manual") -> None:
        """Make ``version`` the champion, whatever its metrics (an operator's decision)."""
        current = self.store.champion(group_key)
        self._set(group_key, version, "champion", "model.promote",
                  {"reason": reason, "champion_version": current["version"] if current else None})

    def reject(self, group_key: str, version: int, *, reason: str = "manual") -> None:
        self._set(group_key, version, "rejected", "model.reject", {"reason": reason})

    def rollback(self, group_key: str, *, reason: str = "rollback") -> int:
        """Make the previous champion the champion again; returns its version.

        The current champion becomes ``rejected``. Raises ``LookupError`` when there is no champion
        or no former champion to go back to.
        """
        rows = self.store.list_models(group_key)
        current = next((r for r in rows if r["status"] == "champion"), None)
        if current is None:
            raise LookupError(f"no champion to roll back for group {group_key!r}")
        previous = [r for r in rows if r["status"] == "retired" and r["version"] < current["version"]]
        if not previous:
            raise LookupError(f"group {group_key!r} has no former champion before v{current['version']}")
        target = int(previous[-1]["version"])
        with self.store.transaction() as conn:
            self.store.set_model_status(group_key, int(current["version"]), "rejected", conn=conn)
            self.store.set_model_status(group_key, target, "champion", conn=conn)
            self.store.audit(self.actor, "model.rollback", f"{group_key}@v{target}",
                             {"reason": reason, "from_version": int(current["version"]), "to_version": target},
                             conn=conn)
        return target

    # ------------------------------------------------------------------ the refit job

    def refit(self, group_key: str, rows: Sequence[Row], refitter: Refitter) -> Decision:
        """One refit job (what serving runs as a Ray task): fit, register, challenge."""
        result = refitter.fit(rows)
        version = self.register(group_key, result)
        return self.challenge(group_key, version, result.holdout)


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None

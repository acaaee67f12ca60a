"""The model registry: register, champion/challenger, feedback metric, rollback, audit log."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from opsradar.detectors.pyod_models import PyODDetector, Refitter
from opsradar.detectors.registry import ModelRegistry, group_of, in_group
from opsradar.store import Store

T0 = datetime(2026, 1, 5, tzinfo=UTC)
GROUP = "elasticsearch|access|*"


def rows(n: int, seed: int, shift: float = 0.0) -> list[tuple[datetime | None, dict[str, float]]]:
    rng = random.Random(seed)
    return [(T0 + timedelta(minutes=i), {"latency_ms": rng.gauss(100 + shift, 10), "status_5xx": abs(rng.gauss(1, 0.3)),
                                         "bytes": rng.gauss(5000, 300)}) for i in range(n)]


@pytest.fixture
def registry(store: Store) -> ModelRegistry:
    return ModelRegistry(store, actor="test")


def test_first_refit_becomes_champion(registry: ModelRegistry) -> None:
    decision = registry.refit(GROUP, rows(200, 1), Refitter(min_rows=50))
    assert decision.promoted
    assert decision.metric == "proxy_auc"
    [v] = registry.versions(GROUP)
    assert v["status"] == "champion"
    assert v["train_start"] == T0
    assert v["metrics"]["proxy_auc"] > 0.8
    assert v["params"]["features"] == ["bytes", "latency_ms", "status_5xx"]


def test_worse_challenger_is_rejected_and_audited(registry: ModelRegistry, store: Store) -> None:
    registry.refit(GROUP, rows(200, 1), Refitter(min_rows=50))
    # A challenger trained on a window from another regime separates today's rows badly.
    stale = Refitter(min_rows=50).fit(rows(200, 2, shift=500.0))
    version = registry.register(GROUP, stale)
    holdout = [r for _, r in rows(80, 3)]
    decision = registry.challenge(GROUP, version, holdout)
    assert not decision.promoted
    assert decision.champion_version == 1
    assert decision.champion is not None
    assert decision.challenger < decision.champion
    assert registry.champion(GROUP)[0] == 1  # type: ignore[index]
    assert [r["status"] for r in registry.versions(GROUP)] == ["champion", "rejected"]
    assert [a["action"] for a in store.audit_log()] == ["model.register", "model.promote", "model.register", "model.reject"]


def test_promotion_and_rollback_are_in_the_audit_log(registry: ModelRegistry, store: Store) -> None:
    registry.refit(GROUP, rows(200, 1), Refitter(min_rows=50))
    v2 = registry.register(GROUP, Refitter(min_rows=50).fit(rows(200, 4)))
    registry.promote(GROUP, v2, reason="operator")
    assert registry.champion(GROUP)[0] == v2  # type: ignore[index]
    assert registry.rollback(GROUP) == 1
    assert [r["status"] for r in registry.versions(GROUP)] == ["champion", "rejected"]
    log = store.audit_log()
    promotes = [a for a in log if a["action"] == "model.promote"]
    assert [p["subject"] for p in promotes] == [f"{GROUP}@v1", f"{GROUP}@v2"]
    [rollback] = [a for a in log if a["action"] == "model.rollback"]
    assert rollback["subject"] == f"{GROUP}@v1"
    assert rollback["detail"]["from_version"] == 2
    assert rollback["actor"] == "test"
    with pytest.raises(LookupError, match="no former champion before v1"):
        registry.rollback(GROUP)


def test_rollback_without_champion(registry: ModelRegistry) -> None:
    with pytest.raises(LookupError, match="no champion to roll back"):
        registry.rollback(GROUP)


def _anomaly(i: int, features: dict[str, float], stream: str) -> dict[str, object]:
    return {"id": f"a{i}", "stream": stream, "detector": "pyod", "detector_version": "1",
            "ts": (T0 + timedelta(minutes=i)).isoformat(), "source": "elasticsearch", "kind": "access",
            "entity": "index:shop", "score": 0.99, "threshold": 0.9, "raw_score": 2.0, "features": features}


def test_feedback_labels_decide_when_there_are_enough(registry: ModelRegistry, store: Store) -> None:
    rng = random.Random(5)
    for i in range(12):
        tp = i % 2 == 0
        features = {"latency_ms": rng.gauss(400 if tp else 130, 10), "status_5xx": 1.0, "bytes": 5000.0}
        store.add_anomaly(_anomaly(i, features, "elasticsearch|access|index:shop"))
        store.add_feedback(target_type="anomaly", target_id=f"a{i}",
                           verdict="true_positive" if tp else "false_positive", actor="ana")
    store.add_anomaly(_anomaly(99, {"latency_ms": 1.0}, "jenkins|build|job:x"))  # another group: ignored
    store.add_feedback(target_type="anomaly", target_id="a99", verdict="true_positive", actor="ana")
    tps, fps = registry.labelled_rows(GROUP)
    assert (len(tps), len(fps)) == (6, 6)
    decision = registry.refit(GROUP, rows(200, 1), Refitter(min_rows=50))
    assert decision.metric == "feedback_auc"
    assert decision.challenger == 1.0


def test_champion_blob_hot_swaps_into_a_detector(registry: ModelRegistry) -> None:
    registry.refit(GROUP, rows(200, 1), Refitter(min_rows=50))
    det = PyODDetector(auto_refit=False)
    assert det.score_one({"latency_ms": 900.0}) == 0.0
    version, blob = registry.champion_blob(GROUP)  # type: ignore[misc]
    det.swap_blob(blob, version)
    assert det.model_version == 1
    assert det.score_one({"latency_ms": 900.0, "status_5xx": 1.0, "bytes": 5000.0}) > 1.0


def test_groups() -> None:
    assert group_of("jenkins|build|job:shop-build") == "jenkins|build|*"
    assert group_of("git|commit") == "git|commit"
    assert in_group("jenkins|build|job:a", "jenkins|build|*")
    assert not in_group("jenkins|deploy|job:a", "jenkins|build|*")

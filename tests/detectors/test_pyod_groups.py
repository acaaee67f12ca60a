"""GroupModels: one window and champion per stream group, refit jobs and hot swaps."""

from __future__ import annotations

import random

import pytest

from opsradar.detectors.pyod_groups import GroupModels
from opsradar.detectors.registry import ModelRegistry
from opsradar.store import Store


def feed(models: GroupModels, n: int, seed: int, shift: float = 0.0) -> None:
    rng = random.Random(seed)
    for i in range(n):
        models.learn_one(f"elasticsearch|access|index:i{i % 4}", {"latency_ms": rng.gauss(100 + shift, 10),
                                                                  "bytes": rng.gauss(4000, 200)})
        models.learn_one(f"jenkins|build|job:j{i % 2}", {"duration_s": rng.gauss(60, 5)})


def test_groups_share_a_window_and_refit_off_the_hot_path() -> None:
    models = GroupModels(ModelRegistry(Store("sqlite://")), min_rows=64, refit_every=64)
    feed(models, 40, 1)
    assert models.due() == []
    feed(models, 40, 2)
    assert models.due() == ["elasticsearch|access|*", "jenkins|build|*"]
    assert models.score_one("elasticsearch|access|index:i0", {"latency_ms": 900.0}) == 0.0  # nothing fitted yet
    assert models.refit("elasticsearch|access|*").promoted
    assert models.due() == ["jenkins|build|*"]
    assert models.score_one("elasticsearch|access|index:other", {"latency_ms": 900.0, "bytes": 4000.0}) > 1.0
    assert models.score_one("jenkins|build|job:j0", {"duration_s": 900.0}) == 0.0


def test_rollback_is_picked_up_by_sync() -> None:
    registry = ModelRegistry(Store("sqlite://"))
    models = GroupModels(registry, min_rows=64, refit_every=64)
    feed(models, 100, 1)
    models.refit("elasticsearch|access|*")
    feed(models, 100, 2)
    registry.promote("elasticsearch|access|*", registry.register(
        "elasticsearch|access|*", models.refitter().fit(models.window_rows("elasticsearch|access|*"))))
    assert models.sync() == ["elasticsearch|access|*"]
    assert models.detector("elasticsearch|access|*").model_version == 2
    registry.rollback("elasticsearch|access|*")
    assert models.sync() == ["elasticsearch|access|*"]
    assert models.detector("elasticsearch|access|*").model_version == 1
    assert models.sync() == []


def test_a_new_replica_starts_from_the_champion_and_snapshots_round_trip() -> None:
    registry = ModelRegistry(Store("sqlite://"))
    models = GroupModels(registry, min_rows=64, refit_every=64)
    feed(models, 100, 1)
    models.refit("jenkins|build|*")
    replica = GroupModels(registry, min_rows=64)
    assert replica.detector("jenkins|build|*").model_version == 1
    copy = GroupModels(registry)
    copy.restore(models.snapshot())
    x = {"duration_s": 75.0}
    assert copy.score_one("jenkins|build|job:j1", x) == models.score_one("jenkins|build|job:j1", x)
    with pytest.raises(ValueError, match="not a GroupModels snapshot"):
        copy.restore(b"garbage")


def test_without_a_registry_detectors_refit_themselves() -> None:
    models = GroupModels(None, min_rows=64, refit_every=64)
    feed(models, 100, 1)
    assert models.score_one("jenkins|build|job:j0", {"duration_s": 200.0}) > 1.0
    with pytest.raises(RuntimeError, match="need a model registry"):
        models.refit("jenkins|build|*")

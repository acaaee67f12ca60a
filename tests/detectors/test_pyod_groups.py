"""GroupModels: one window and champion per stream group, refit jobs and hot swaps."""

from __future__ import annotations

import random

import numpy as np
import pytest

from opsradar.detectors.pyod_groups import GroupModels, judge
from opsradar.detectors.pyod_models import FittedModel, matrix
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


# ---------------------------------------------------------------- judging cold streams

BUILD_UPPER = frozenset({"duration_s", "queue_s", "failed", "fail_rate"})
BUILD_COUNTS = frozenset({"failed", "fail_rate"})


def mixed_builds(models: GroupModels, n: int, seed: int) -> None:
    """Three 5-minute jobs and one 40-minute job in one group (the case a raw group score gets wrong)."""
    rng = random.Random(seed)
    for i in range(n):
        job = i % 4
        minutes = 40.0 if job == 3 else 5.0
        models.learn_one(f"jenkins|build|job:j{job}", {"duration_s": rng.gauss(60 * minutes, 6 * minutes),
                                                        "queue_s": abs(rng.gauss(20, 5)), "failed": 0.0,
                                                        "fail_rate": 0.0})


def fitted_groups(seed: int = 1) -> GroupModels:
    models = GroupModels(ModelRegistry(Store("sqlite://")), min_rows=64, refit_every=400, window=400)
    mixed_builds(models, 400, seed)
    assert models.refit("jenkins|build|*").promoted
    return models


def test_a_cold_stream_far_beyond_its_group_is_an_explained_group_finding() -> None:
    models = fitted_groups()
    found = models.judge("jenkins|build|job:new", {"duration_s": 10 * 2400.0, "queue_s": 20.0, "failed": 0.0,
                                                    "fail_rate": 0.0}, upper=BUILD_UPPER, skip=BUILD_COUNTS)
    assert found is not None
    assert found.model_id == "jenkins|build|*@v1"
    assert found.tail == found.floor == pytest.approx(1 / 321)  # 400 rows, 80 held out
    top = found.explanation[0]
    assert top.feature == "duration_s"
    assert top.contribution == 1.0
    assert top.low < 5 * 60
    assert 2400 < top.high < 3600
    assert top.describe().startswith("duration 6.7 h (usual ")
    assert {c.feature for c in found.explanation} == {"duration_s", "queue_s"}  # counts are not judged


@pytest.mark.parametrize("x", [
    {"duration_s": 2600.0},  # a new job as big as the group's big member: normal for the group
    {"duration_s": 300.0},   # an ordinary 5-minute build
    {"duration_s": 5.0},     # much faster than anything: good news for a one-sided feature
    {"duration_s": 300.0, "failed": 1.0, "fail_rate": 1.0},  # a first build that fails: a count, not judged
    {"duration_s": 300.0, "queue_s": 60.0},  # a long queue, but inside the group's range plus its width
])
def test_an_ordinary_cold_event_is_no_group_finding(x: dict[str, float]) -> None:
    models = fitted_groups()
    assert models.judge("jenkins|build|job:new", x, upper=BUILD_UPPER, skip=BUILD_COUNTS) is None


def test_without_a_champion_nothing_is_judged() -> None:
    models = GroupModels(ModelRegistry(Store("sqlite://")), min_rows=64)
    mixed_builds(models, 40, 1)
    assert models.judge("jenkins|build|job:new", {"duration_s": 1e6}, upper=BUILD_UPPER) is None
    assert models.judge("git|commit|repo:x", {"commit_size": 1e6}) is None  # a group never seen


def test_tail_probabilities_stay_calibrated_across_a_champion_swap() -> None:
    """Two champions fitted on the same distribution, from windows of 300 and 2,000 rows (ECOD's raw
    scale grows with the window: a feature's score saturates at ln(n + 1)): the same event gets a
    similar tail probability from both, and both are calibrated on fresh rows."""
    registry = ModelRegistry(Store("sqlite://"))
    models = GroupModels(registry, min_rows=64, refit_every=10_000, window=300)
    mixed_builds(models, 300, 1)
    models.refit("jenkins|build|*")
    first = models.detector("jenkins|build|*").model
    big = GroupModels(registry, min_rows=64, refit_every=10_000, window=2000)
    mixed_builds(big, 2000, 2)
    registry.promote("jenkins|build|*", registry.register("jenkins|build|*", big.refitter().fit(
        big.window_rows("jenkins|build|*"))))
    assert models.sync() == ["jenkins|build|*"]
    second = models.detector("jenkins|build|*").model
    assert first is not None
    assert second is not None
    assert second is not first
    assert first.n_train == 240
    assert second.n_train == 1600

    def tails(m: FittedModel, rows: list[dict[str, float]]) -> np.ndarray:
        return m.tail(m.raw_scores(matrix(rows, m.features)))

    same = [{"duration_s": 360.0, "queue_s": 28.0, "failed": 0.0, "fail_rate": 0.0},
            {"duration_s": 2500.0, "queue_s": 14.0, "failed": 0.0, "fail_rate": 0.0}]
    assert np.all(np.abs(tails(first, same) - tails(second, same)) < 0.05)
    fresh = GroupModels(None, min_rows=64, refit_every=10_000, window=2000)
    mixed_builds(fresh, 2000, 3)
    rows = [x for _, x in fresh.window_rows("jenkins|build|*")]
    for m in (first, second):
        for alpha in (0.05, 0.2, 0.5):
            # within ~2.3 binomial sds of a 240-row window (0.026 at alpha 0.2)
            assert abs(float(np.mean(tails(m, rows) <= alpha)) - alpha) < 0.06, (m.n_train, alpha)
    far = [{"duration_s": 30_000.0, "queue_s": 20.0, "failed": 0.0, "fail_rate": 0.0}]
    assert np.all(tails(first, far) == first.floor())
    assert np.all(tails(second, far) == second.floor())


def test_old_model_blobs_without_ranges_get_them_from_ecods_columns() -> None:
    models = fitted_groups()
    model = models.detector("jenkins|build|*").model
    assert model is not None
    state = dict(model.__dict__)
    for key in ("lows", "highs", "n_train"):
        del state[key]
    old = FittedModel.__new__(FittedModel)
    old.__setstate__(state)
    assert np.array_equal(old.lows, model.lows)
    assert np.array_equal(old.highs, model.highs)
    assert old.floor() == pytest.approx(1 / 321)
    assert judge(old, {"duration_s": 1e5}, upper=BUILD_UPPER) is not None


def test_the_groups_range_counts_only_rows_that_have_the_feature() -> None:
    """A failed build has no ``duration_s`` (its duration is context): its 0 in ECOD's matrix is no
    duration, and the group's usual range, shown to people, does not start at 0 s."""
    rng = random.Random(2)
    rows = [{"duration_s": rng.gauss(300, 20), "failed": 0.0} if i % 5 else {"failed": 1.0} for i in range(200)]
    model = FittedModel.fit("ecod", {}, rows)
    j = model.features.index("duration_s")
    assert 200 < model.lows[j] < 260
    found = judge(model, {"duration_s": 3000.0, "failed": 0.0}, upper={"duration_s", "failed"}, skip={"failed"})
    assert found is not None
    assert found[2][0].describe() == "duration 50 min (usual 3.8–6 min)"

"""PyOD sliding-window models: the ECOD fast path, refits, and the River-contract wrapper."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from opsradar.detectors.base import DETECTORS
from opsradar.detectors.checks import check_detector
from opsradar.detectors.pyod_models import FittedModel, PyODDetector, Refitter, auc, matrix

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def normal_row(rng: random.Random) -> dict[str, float]:
    load = rng.lognormvariate(0, 0.2)
    return {"duration_s": 60 * load, "count": 10 * load + rng.gauss(0, 1), "errors": abs(rng.gauss(0.5, 0.2))}


def rows_with_ts(n: int, seed: int = 0) -> list[tuple[datetime | None, dict[str, float]]]:
    rng = random.Random(seed)
    return [(T0 + timedelta(minutes=i), normal_row(rng)) for i in range(n)]


def test_ecod_fast_path_matches_pyod_row_by_row() -> None:
    from pyod.models.ecod import ECOD

    rng = random.Random(1)
    train = [normal_row(rng) for _ in range(300)]
    model = FittedModel.fit("ecod", {}, train)
    reference = ECOD().fit(matrix(train, model.features))
    queries = [normal_row(rng) for _ in range(20)] + [{"duration_s": 400.0, "count": 2.0, "errors": 3.0}]
    ours = model.ecod_scores(matrix(queries, model.features), extend=False)
    pyod = [float(reference.decision_function(matrix([q], model.features))[0]) for q in queries]
    np.testing.assert_allclose(ours, pyod, rtol=1e-9)


def test_a_fitted_ecod_keeps_no_pyod_object_and_a_shard_never_imports_pyod() -> None:
    import pickle
    import subprocess
    import sys

    rng = random.Random(1)
    model = FittedModel.fit("ecod", {}, [normal_row(rng) for _ in range(300)])
    assert model.model is None
    assert b"pyod.models" not in pickle.dumps(model)  # the registered blob: columns and scales only
    # a shard's path in a fresh interpreter: learn, take a refit (fitted elsewhere), swap it in, judge
    script = '''
import random, sys, tempfile
from opsradar.serving.refits import ShardRefits, refit_job
from opsradar.store import Store
store = Store(f"sqlite:///{tempfile.mkdtemp()}/state.db")
refits = ShardRefits(store, window=64, refit_every=64)
rng = random.Random(0)
for i in range(70):
    refits.learn("jenkins|build|job:a", {"duration_s": rng.gauss(60, 5)})
jobs = refits.take_due()
assert "pyod" not in sys.modules, "learning imported PyOD"
refit_job(store.url, jobs[0][0], jobs[0][1], refits.spec())  # the refit task (a Ray worker in serving)
for name in [m for m in sys.modules if m == "pyod" or m.startswith("pyod.")]:
    del sys.modules[name]
refits.finished(jobs[0][0])
assert refits.sync() == ["jenkins|build|*"]
assert refits.judge("jenkins|build|job:b", {"duration_s": 600.0}) is not None
assert "pyod" not in sys.modules, "loading or scoring the champion imported PyOD"
'''
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_ecod_keeps_ranking_beyond_the_training_range() -> None:
    rng = random.Random(1)
    model = FittedModel.fit("ecod", {}, [normal_row(rng) for _ in range(300)])
    near, far = ({"duration_s": d, "count": 10.0, "errors": 0.5} for d in (200.0, 2000.0))
    assert model.score(far) > model.score(near) > 1.0


def test_refit_records_window_and_metrics() -> None:
    rows = rows_with_ts(300)
    result = Refitter("ecod", window=200, min_rows=50).fit(rows)
    assert result.train_start == rows[100][0]
    assert result.train_end == rows[-1][0]
    assert result.metrics["train_rows"] + result.metrics["holdout_rows"] == 200
    assert result.metrics["proxy_auc"] > 0.8
    assert result.model.features == ("count", "duration_s", "errors")


def test_refitter_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown PyOD algorithm 'nope'"):
        Refitter("nope")
    with pytest.raises(ValueError, match="need at least 64 rows to refit, got 10"):
        Refitter().fit(rows_with_ts(10))


def test_blob_round_trip_and_garbage() -> None:
    model = Refitter(min_rows=50).fit(rows_with_ts(100)).model
    again = FittedModel.from_blob(model.to_blob())
    row = {"duration_s": 70.0, "count": 9.0, "errors": 0.4}
    assert again.score(row) == model.score(row)
    with pytest.raises(ValueError, match="not a model blob"):
        FittedModel.from_blob(pickle.dumps({"a": 1}))


def test_swap_replaces_the_model_in_one_assignment() -> None:
    det = PyODDetector(auto_refit=False, min_rows=64)
    for _, row in rows_with_ts(100):
        det.learn_one(row)
    assert det.model is None
    assert det.refit_due
    blob = Refitter(min_rows=50).fit(det.window_rows()).model.to_blob()
    det.swap_blob(blob, version=3)
    assert det.model_version == 3
    assert not det.refit_due
    assert det.score_one({"duration_s": 600.0, "count": 1.0, "errors": 5.0}) > 1.0


def test_drift_in_the_score_stream_asks_for_an_early_refit() -> None:
    rng = random.Random(2)
    det = PyODDetector(auto_refit=False, refit_every=10_000, min_rows=64)
    for _ in range(100):
        det.learn_one(normal_row(rng))
    det.swap(Refitter(min_rows=64).fit(det.window_rows()).model)
    for _ in range(200):
        det.learn_one(normal_row(rng))
    assert not det.refit_due
    for _ in range(300):
        row = normal_row(rng)
        row["duration_s"] *= 5
        det.learn_one(row)
        if det.refit_due:
            break
    assert det.refit_due


def test_explanation_names_the_shifted_feature_first() -> None:
    det = PyODDetector(min_rows=64)
    for _, row in rows_with_ts(128):
        det.learn_one(row)
    top = det.explain_one({"duration_s": 60.0, "count": 10.0, "errors": 9.0})[0]
    assert top.feature == "errors"
    assert top.value == 9.0


# Generic detector checks for the PyOD wrapper (River's check_estimator style), per algorithm.
ALGOS = [("ecod", {}), ("iforest", {"n_estimators": 25})]


def stream(n: int, seed: int) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        row = normal_row(rng)
        bad = rng.random() < 0.05
        if bad:
            row[rng.choice(list(row))] *= rng.uniform(4, 8)
        out.append((row, bad))
    return out


@pytest.mark.parametrize(("algorithm", "params"), ALGOS)
def test_score_before_learning_is_zero(algorithm: str, params: dict[str, int]) -> None:
    assert PyODDetector(algorithm, params).score_one({"x": 1.0}) == 0.0


@pytest.mark.parametrize(("algorithm", "params"), ALGOS)
def test_score_one_is_pure_and_pickles(algorithm: str, params: dict[str, int]) -> None:
    det = PyODDetector(algorithm, params, **PyODDetector._unit_test_params())
    for row, _ in stream(100, 3):
        det.learn_one(row)
    probe = {"duration_s": 200.0, "count": 3.0, "errors": 1.0}
    before = pickle.dumps(det)
    first = det.score_one(probe)
    assert det.score_one(probe) == first
    assert pickle.dumps(det) == before
    clone = pickle.loads(before)
    assert clone.score_one(probe) == first


@pytest.mark.parametrize(("algorithm", "params"), ALGOS)
def test_auc_scored_before_learning(algorithm: str, params: dict[str, int]) -> None:
    det = PyODDetector(algorithm, params, **{**PyODDetector._unit_test_params(), "refit_every": 100})
    normal, anomalous = [], []
    for row, bad in stream(400, 4):
        (anomalous if bad else normal).append(det.score_one(row))
        det.learn_one(row)
    assert auc(normal, anomalous) >= 0.7


def test_wrapper_is_in_the_detector_registry() -> None:
    assert DETECTORS["pyod"] is PyODDetector


def test_generic_detector_checks() -> None:
    # The default (ECOD); IForest goes through the lighter checks above (its pickles are large).
    check_detector(PyODDetector)


def test_context_features_are_not_modelled() -> None:
    det = PyODDetector(min_rows=64)
    for _, row in rows_with_ts(100):
        det.learn_one({**row, "_hour": 3.0})
    assert det.model is not None
    assert "_hour" not in det.model.features


def test_rows_without_features_do_not_break_learning() -> None:
    det = PyODDetector(min_rows=64, refit_every=64)
    for _ in range(100):
        det.learn_one({"_hour": 1.0})
    assert det.model is None
    assert det.score_one({"_hour": 1.0}) == 0.0
    for _, row in rows_with_ts(64):
        det.learn_one(row)
    assert det.model is not None


def test_batched_drift_scores_feed_adwin_the_same_stream_as_row_by_row() -> None:
    rng = random.Random(5)
    warm = [normal_row(rng) for _ in range(100)]
    rows = [normal_row(rng) for _ in range(400)]
    for row in rows[250:]:
        row["duration_s"] *= 5
    dets = [PyODDetector(auto_refit=False, refit_every=10_000, min_rows=64, drift_batch=b) for b in (1, 64)]
    model = Refitter(min_rows=64).fit([(None, r) for r in warm]).model
    flags: list[list[bool]] = [[], []]
    for k, det in enumerate(dets):
        det.swap(model)
        for i, row in enumerate(rows):
            det.learn_one(row)
            if i % 50 == 49:
                flags[k].append(det.refit_due)
    assert flags[0] == flags[1]
    assert flags[0][-1]
    assert not flags[0][0]
    assert dets[0].adwin.estimation == dets[1].adwin.estimation
    assert dets[0].adwin.width == dets[1].adwin.width


def test_old_checkpoints_without_batched_drift_state_still_load() -> None:
    det = PyODDetector(auto_refit=False, min_rows=64)
    for _, row in rows_with_ts(100):
        det.learn_one(row)
    state = dict(det.__dict__)
    state["refit_due"] = state.pop("_refit_due")
    del state["_drift_pending"], state["drift_batch"]
    old = PyODDetector.__new__(PyODDetector)
    old.__setstate__(state)
    again = pickle.loads(pickle.dumps(old))
    assert again.refit_due
    again.learn_one({"duration_s": 60.0, "count": 10.0, "errors": 0.5})

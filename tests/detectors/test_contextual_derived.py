"""The contextual detector's derived (unpickled) state: the walk score_one keeps for learn_one, and
the per-left-semi-context weights, must never change a score, an explanation or a checkpoint."""

from __future__ import annotations

import pickle
import random
from typing import Any

import pytest

from opsradar.detectors.contextual import ContextualDetector

from .test_contextual import _Reference, wavy


@pytest.mark.parametrize("params", [{}, {"max_contexts": 60, "rest_period": 5}, {"bits": 4, "max_active": 3}])
def test_any_call_order_scores_as_the_reference(params: dict[str, Any]) -> None:
    """Score then learn the same value, learn unscored, score one value and learn another, restore a
    checkpoint between score and learn: always the scores of the reference implementation."""
    values = wavy(4, 1200)
    rng = random.Random(7)
    new, ref = ContextualDetector(**params), _Reference(**params)
    for i, v in enumerate(values):
        x = {"value": v}
        other = {"value": values[(i * 7) % len(values)]}
        p = rng.random()
        if p < 0.1:
            pass  # learn without scoring
        elif p < 0.2:
            assert new.score_one(other) == ref.score_one(other)
            x = other if p < 0.15 else x  # scored one value, learn the same or another
        elif p < 0.25:
            assert new.score_one(x) == ref.score_one(x)
            new = pickle.loads(pickle.dumps(new))  # the kept walk is not in the checkpoint
        else:
            assert new.score_one(x) == ref.score_one(x)
            assert new.score_one(x) == ref.score_one(x)  # pure
        new.learn_one(x)
        ref.learn_one(x)
    assert len(new.memory) == len(ref.memory.contexts)


def test_checkpoints_hold_the_state_only_and_restore_exactly() -> None:
    det = ContextualDetector(max_contexts=80)
    for v in wavy(5, 700):
        det.score_one({"value": v})
        det.learn_one({"value": v})
    det.score_one({"value": 50.0})  # a walk is kept for the next learn_one
    state = det.__getstate__()
    assert not {"_pending", "_full"} & set(state)
    assert list(state)[list(state).index("left") + 1] == "left_matches"  # the format checkpoints always had
    assert set(det.memory.__getstate__()[1]) == set(det.memory._STATE)
    blob = pickle.dumps(det)
    copy = pickle.loads(blob)
    assert pickle.dumps(copy) == blob
    assert list(copy.memory.left_best) == list(det.memory.left_best)
    assert copy.memory.left_union == det.memory.left_union
    assert copy.memory.left_zero == det.memory.left_zero
    for v in wavy(6, 300):
        x = {"value": v}
        assert copy.score_one(x) == det.score_one(x)
        assert copy.explain_one(x) == det.explain_one(x)
        copy.learn_one(x)
        det.learn_one(x)
    assert pickle.dumps(copy) == pickle.dumps(det)

"""The owner's memory of the ids it has handled (a shard's replay may send some again)."""

from __future__ import annotations

from opsradar.serving.app import _Seen


def test_each_id_is_fresh_once_even_twice_in_one_call() -> None:
    seen = _Seen(cap=100)
    assert seen.fresh(["a", "b", "a"]) == [True, True, False]
    assert seen.fresh(["b", "c"]) == [False, True]
    assert seen.fresh([]) == []


def test_the_oldest_ids_are_forgotten_first_and_the_newest_cap_are_kept() -> None:
    seen = _Seen(cap=100)
    assert all(seen.fresh([f"id{i}" for i in range(250)]))
    assert seen.fresh([f"id{i}" for i in range(160, 250)]) == [False] * 90  # the newest are remembered
    assert seen.fresh(["id0", "id100"]) == [True, True]  # the oldest were forgotten

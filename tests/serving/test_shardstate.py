"""Detector shard state without Ray: checkpoints with a high-water mark, replay from the store,
idempotent detection."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from opsradar.config import DetectorsConfig
from opsradar.models import Event
from opsradar.serving.pipeline import LocalDetectors
from opsradar.serving.shardstate import ShardState, checkpoint_key
from opsradar.store import Store

T0 = datetime(2026, 3, 2, tzinfo=UTC)
CFG = DetectorsConfig(warmup=5)


def events(job: str, start: int, n: int) -> list[Event]:
    return [Event.new(source="jenkins", native_id=f"{job}#{i}", kind="build", ts=T0 + timedelta(hours=i),
                      entity=f"job:{job}", values={"duration_s": 300.0 + i % 7}) for i in range(start, start + n)]


def docs(evs: list[Event]) -> list[dict[str, object]]:
    return [e.model_dump(mode="json") for e in evs]


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def counts(state: ShardState) -> dict[str, int]:
    return {k: s.n for k in state.engine.keys() if (s := state.engine.stream(k)) is not None}  # noqa: SIM118


def test_restart_replays_what_was_stored_after_the_checkpoint_and_skips_what_it_held(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path}/s.db")
    clock = Clock()
    a = ShardState(0, 1, store, CFG, clock=clock)
    first = events("a", 0, 30) + events("b", 0, 30)
    store.add_events(first)
    a.detect(docs(first))
    clock.now += 5
    a.checkpoint()
    later = events("a", 30, 12)
    store.add_events(later)
    a.detect(docs(later))  # learned, but not checkpointed: the replica dies now
    unseen = events("b", 30, 4)
    store.add_events(unseen)  # stored, never detected

    clock.now += 20
    b = ShardState(0, 1, store, CFG, clock=clock)
    assert b.replayed == 16
    assert counts(b) == counts(a) | {"jenkins|build|job:b": 34}
    replay_events, _ = b.take_replay()
    assert {e.id for e in replay_events} == {e.id for e in later + unseen}
    assert b.take_replay() == ([], [])
    assert b.detect(docs(unseen)) == []  # the ingest retried after the restart: nothing learned twice
    assert counts(b)["jenkins|build|job:b"] == 34


def test_a_shard_replays_only_its_own_streams(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path}/s.db")
    shards = [ShardState(i, 2, store, CFG) for i in range(2)]
    evs = [e for j in "abcdefgh" for e in events(j, 0, 3)]
    store.add_events(evs)  # stored after the shards' first (empty) checkpoints
    again = [ShardState(i, 2, store, CFG) for i in range(2)]
    assert again[0].replayed + again[1].replayed == len(evs)
    assert all(s.owns(e) for s in again for e in s.take_replay()[0])
    assert sorted(shards[0].engine.keys() + shards[1].engine.keys()) == []


def test_events_processed_just_before_the_checkpoint_are_not_replayed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path}/s.db")
    clock = Clock()
    a = ShardState(0, 1, store, CFG, clock=clock)
    evs = events("a", 0, 10)
    store.add_events(evs)
    a.detect(docs(evs))
    a.checkpoint()  # at the same instant: within the margin, so the ids travel with the checkpoint
    b = ShardState(0, 1, store, CFG, clock=clock)
    assert b.replayed == 0
    assert counts(b) == {"jenkins|build|job:a": 10}


def test_a_checkpoint_carries_the_ids_of_the_margin_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path}/s.db")
    clock = Clock()
    a = ShardState(0, 1, store, CFG, clock=clock, margin=timedelta(seconds=60))
    old, edge, new = events("a", 0, 5), events("a", 5, 3), events("a", 8, 4)
    for batch, step in ((old, 30.0), (edge, 31.0), (new, 0.0)):
        store.add_events(batch)
        a.detect(docs(batch))
        clock.now += step
    a.checkpoint()  # 61 s after the first batch, 31 s after the second
    assert list(a.seen) == [e.id for e in edge + new]
    clock.now += 40  # now the second batch is past the margin too
    a.checkpoint()
    assert list(a.seen) == [e.id for e in new]
    clock.now += 61
    a.checkpoint()
    assert a.seen == {}
    b = ShardState(0, 1, store, CFG, clock=clock)  # nothing stored since: nothing to replay
    assert b.replayed == 0
    assert counts(b) == {"jenkins|build|job:a": 12}


def test_a_plain_engine_snapshot_is_restored_without_replay(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path}/s.db")
    from opsradar.config import Config

    local = LocalDetectors(Config(detectors=CFG), store)
    evs = events("a", 0, 8)
    store.add_events(evs)
    local.detect(evs)
    local.checkpoint()  # the in-process pipeline's format, same key
    assert store.load_checkpoint(checkpoint_key(0)) is not None
    s = ShardState(0, local.n, store, CFG)
    assert s.restored_from is None
    assert s.replayed == 0
    assert sum(counts(s).values()) + sum(
        counts(ShardState(i, local.n, store, CFG)).get("jenkins|build|job:a", 0) for i in range(1, local.n)) == 8


def test_group_models_are_fed_refit_off_the_path_hot_swapped_and_checkpointed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from opsradar.serving.refits import ShardRefits, refit_job

    store = Store(f"sqlite:///{tmp_path}/s.db")
    refits = ShardRefits(store, window=64, refit_every=64)
    a = ShardState(0, 1, store, CFG, refits=refits)
    evs = events("a", 0, 40) + events("b", 0, 40)
    store.add_events(evs)
    a.detect(docs(evs))
    [(group, rows)] = refits.take_due()
    assert (group, len(rows)) == ("jenkins|build|*", 64)
    assert refits.take_due() == []  # handed out once
    assert refits.versions() == {group: None}
    decision = refit_job(store.url, group, rows, refits.spec())  # what the Ray task runs
    assert decision["promoted"] is True
    assert refits.sync() == [group]
    assert refits.versions() == {group: decision["version"]}
    a.checkpoint()
    b = ShardState(0, 1, store, CFG, refits=ShardRefits(store, window=64, refit_every=64))
    assert b.refits is not None
    assert b.refits.versions() == {group: decision["version"]}
    assert b.refits.score("jenkins|build|job:a", {"duration_s": 5000.0}) > b.refits.score("jenkins|build|job:a", {"duration_s": 303.0})


def test_a_cold_stream_is_judged_by_its_group_champion_and_a_restored_shard_judges_it_the_same(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from opsradar.serving.refits import ShardRefits, refit_job

    store = Store(f"sqlite:///{tmp_path}/s.db")
    clock = Clock()
    refits = ShardRefits(store, window=64, refit_every=64)
    a = ShardState(0, 1, store, CFG, clock=clock, refits=refits)
    evs = events("a", 0, 40) + events("b", 0, 40)
    store.add_events(evs)
    assert a.detect(docs(evs)) == []
    [(group, rows)] = refits.take_due()
    refit_job(store.url, group, rows, refits.spec())
    assert refits.sync() == [group]
    clock.now += 5
    a.checkpoint()
    b = ShardState(0, 1, store, CFG, clock=clock, refits=ShardRefits(store, window=64, refit_every=64))

    def new_job(i: int, secs: float) -> Event:
        return Event.new(source="jenkins", native_id=f"new#{i}", kind="build", ts=T0 + timedelta(hours=50 + i),
                         entity="job:new", values={"duration_s": secs})

    later = [new_job(0, 301.0), new_job(1, 3000.0), new_job(2, 20.0), new_job(3, 4000.0)]
    store.add_events(later)
    found_a, found_b = a.detect(docs(later)), b.detect(docs(later))
    assert found_a == found_b  # exact: same anomalies, scores, explanations
    assert [(d["event_id"], d["detector"], d["detector_version"]) for d in found_a] == [
        (later[1].id, "pyod_group", f"{group}@v1"), (later[3].id, "pyod_group", f"{group}@v1")]
    assert found_a[0]["explanation"][0]["feature"] == "duration_s"
    assert counts(a) == counts(b)


def test_refits_are_paced_by_the_refit_interval_and_drift_only_brings_them_forward(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import random

    from opsradar.serving.refits import DRIFT_MIN_INTERVAL_S, ShardRefits, refit_job

    now = [0.0]
    store = Store(f"sqlite:///{tmp_path}/state.db")
    refits = ShardRefits(store, window=64, refit_every=64, min_interval=1800.0, clock=lambda: now[0])
    rng = random.Random(3)

    def feed(n: int, mu: float = 60.0) -> None:
        for _ in range(n):
            refits.learn("jenkins|build|job:a", {"duration_s": rng.gauss(mu, 5.0)})

    def refit_now() -> list[str]:
        jobs = refits.take_due()
        for group, rows in jobs:
            refit_job(store.url, group, rows, refits.spec())
            refits.finished(group)
        refits.sync()
        return [g for g, _ in jobs]

    feed(64)
    assert refit_now() == ["jenkins|build|*"]  # no champion yet: fitted at once
    feed(64)
    now[0] += 60.0
    assert refit_now() == []  # due by its rows, but the last refit was a minute ago
    assert refits.models.due() == ["jenkins|build|*"]  # and it stays due
    now[0] += 1800.0
    assert refit_now() == ["jenkins|build|*"]  # its time came
    versions = refits.versions()["jenkins|build|*"]
    # drift: the scores of a shifted distribution make ADWIN ask before the rows do
    det = refits.models.detector("jenkins|build|*")
    now[0] += DRIFT_MIN_INTERVAL_S / 2
    feed(60, mu=400.0)
    assert det.refit_due  # ADWIN saw the shift
    assert det.since_refit < 64  # before the rows would have asked
    assert refit_now() == []  # drift, but under a minute since the last refit
    now[0] += DRIFT_MIN_INTERVAL_S
    assert refit_now() == ["jenkins|build|*"]  # drift brings it forward of the 30 minutes
    assert refits.versions()["jenkins|build|*"] != versions


def test_a_group_is_not_handed_out_again_while_its_refit_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import random

    from opsradar.serving.refits import ShardRefits, refit_job

    store = Store(f"sqlite:///{tmp_path}/state.db")
    refits = ShardRefits(store, window=64, refit_every=64, min_interval=1800.0)
    rng = random.Random(5)

    def feed(n: int) -> None:
        for _ in range(n):
            refits.learn("jenkins|build|job:a", {"duration_s": rng.gauss(60, 5.0)})

    feed(64)
    [(group, rows)] = refits.take_due()  # no champion yet: handed out at once
    feed(64 * 3)  # due again by its rows, and still without a champion: no pace applies
    assert refits.models.due() == [group]
    assert refits.take_due() == []  # but its first refit is still running
    refit_job(store.url, group, rows, refits.spec())
    refits.finished(group)
    assert refits.sync() == [group]
    assert refits.versions()[group] == 1
    assert refits.take_due() == []  # now a champion paces it (30 minutes)
    feed(64)
    assert refits.models.due() == [group]  # and it stays due meanwhile


def test_a_failed_refit_lets_its_group_be_handed_out_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from opsradar.serving.refits import ShardRefits

    store = Store(f"sqlite:///{tmp_path}/state.db")
    refits = ShardRefits(store, window=64, refit_every=64)
    for i in range(64):
        refits.learn("jenkins|build|job:a", {"duration_s": 60.0 + i % 7})
    [(group, _)] = refits.take_due()
    for i in range(64):
        refits.learn("jenkins|build|job:a", {"duration_s": 60.0 + i % 5})
    assert refits.take_due() == []
    refits.finished(group)  # the task failed: no version came of it
    [(again, rows)] = refits.take_due()
    assert (again, len(rows)) == (group, 64)


def test_warming_a_refit_worker_runs_the_fit_path_of_the_shard_spec(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sys

    from opsradar.serving.refits import ShardRefits, warm_refit_worker
    from opsradar.store import Store

    refits = ShardRefits(Store(f"sqlite:///{tmp_path}/state.db"), window=256, refit_every=64)
    assert warm_refit_worker(refits.spec()) > 0.0
    assert "pyod.models.ecod" in sys.modules  # what the worker's first real refit would import
    bad = {**refits.spec(), "algorithm": "nope"}
    with pytest.raises(ValueError, match="unknown PyOD algorithm"):
        warm_refit_worker(bad)


def test_the_replay_reads_only_recent_rows_and_hands_them_over_in_event_time_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from opsradar import schema as t

    store = Store(f"sqlite:///{tmp_path}/s.db")
    clock = Clock()
    a = ShardState(0, 1, store, CFG, clock=clock)
    store.add_events(events("a", 0, 10))
    a.detect(docs(events("a", 0, 10)))
    clock.now += 5
    a.checkpoint()
    late = events("a", 10, 6)
    store.add_events(late[3:])  # stored after the checkpoint, newer events first
    store.add_events(late[:3])
    clock.now += 20
    b = ShardState(0, 1, store, CFG, clock=clock)
    replayed, _ = b.take_replay()
    assert [e.id for e in replayed] == [e.id for e in late]  # by event time, not by arrival
    q = select(t.events.c.ts, t.events.c.id, t.events.c.doc).where(t.events.c.ingested_at >= T0)
    with store.engine.connect() as conn:
        sql = str(q.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(r) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "ix_events_ingested_at" in plan  # not a scan of the whole table

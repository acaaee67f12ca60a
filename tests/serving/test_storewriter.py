"""Group commit of concurrent ingests (no Ray): each ingest learns what it would have alone."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path

import pytest

from opsradar.models import Event
from opsradar.serving.storewriter import StoreWriter
from opsradar.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _event(n: int) -> Event:
    return Event.new(source="ci", native_id=f"b{n}", kind="build", entity="job:shop", ts=T0 + timedelta(minutes=n),
                     values={"duration_s": float(n)})


def test_ingests_queued_during_a_transaction_share_the_next_one_and_learn_what_they_would_alone(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/s.db")
    store.add_events([_event(0)])  # already stored: a duplicate for whoever sends it
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []
    committed: list[int] = []

    def add(events: list[Event]) -> list[Event]:
        calls.append(len(events))
        if len(calls) == 1:  # hold the first transaction until the others have queued
            started.set()
            release.wait(10)
        return store.add_events(events)

    async def main() -> list[list[Event]]:
        writer: StoreWriter[Event] = StoreWriter(add, key=attrgetter("id"), on_commit=committed.append)
        first = asyncio.create_task(writer.add([_event(1), _event(2)]))
        await asyncio.to_thread(started.wait, 10)
        later = [asyncio.create_task(writer.add(batch)) for batch in
                 ([_event(2), _event(3), _event(3)], [_event(0), _event(3), _event(4)], [_event(5)])]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(first, *later)
        assert (len(committed), sum(committed)) == (2, 4)  # transactions, and the ingests they held
        return results

    results = asyncio.run(main())
    assert calls == [2, 7]  # the three ingests that queued meanwhile went in one transaction
    assert committed == [1, 3]  # what the ingress counts in opsradar_ingest_store_transactions
    assert [[e.id for e in r] for r in results] == [
        [_event(1).id, _event(2).id],
        [_event(3).id],  # event 2 was stored by the first ingest; its second 3 is the same event
        [_event(4).id],  # 0 was stored before; 3 is claimed by the earlier ingest of the transaction
        [_event(5).id],
    ]
    assert store.count_events() == 6


def test_a_failed_transaction_fails_each_of_its_ingests_and_the_writer_goes_on(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/s.db")
    fail = [True]

    def add(events: list[Event]) -> list[Event]:
        if fail and fail.pop():
            raise RuntimeError("database is locked")
        return store.add_events(events)

    async def main() -> tuple[list[BaseException | list[Event]], list[Event]]:
        writer: StoreWriter[Event] = StoreWriter(add, key=attrgetter("id"))
        failed = await asyncio.gather(writer.add([_event(1)]), writer.add([_event(2)]), return_exceptions=True)
        return failed, await writer.add([_event(1), _event(3)])

    failed, after = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in failed)
    assert [e.id for e in after] == [_event(1).id, _event(3).id]  # nothing of the failed transaction was kept
    assert store.count_events() == 2


def test_a_transaction_holds_at_most_max_items_but_a_larger_ingest_is_stored_whole(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/s.db")
    sizes: list[int] = []

    def add(events: list[Event]) -> list[Event]:
        sizes.append(len(events))
        return store.add_events(events)

    async def main() -> list[list[Event]]:
        writer: StoreWriter[Event] = StoreWriter(add, key=attrgetter("id"), max_items=4)
        return await asyncio.gather(writer.add([_event(i) for i in range(6)]),
                                    writer.add([_event(10), _event(11)]), writer.add([_event(12), _event(13)]))

    results = asyncio.run(main())
    assert sizes == [6, 4]
    assert [len(r) for r in results] == [6, 2, 2]


@pytest.mark.parametrize("n", [1, 3])
def test_the_stored_rows_are_those_of_one_transaction_per_ingest(tmp_path: Path, n: int) -> None:
    """Merged or not, the same events end up stored, with the same documents."""
    merged, alone = Store(f"sqlite:///{tmp_path}/a.db"), Store(f"sqlite:///{tmp_path}/b.db")
    batches = [[_event(i), _event(i + 1)] for i in range(0, 2 * n, 2)]
    for b in batches:
        alone.add_events(b)

    async def main() -> None:
        writer: StoreWriter[Event] = StoreWriter(merged.add_events, key=attrgetter("id"))
        await asyncio.gather(*(writer.add(b) for b in batches))

    asyncio.run(main())
    assert list(merged.iter_events()) == list(alone.iter_events())
    assert merged.count_events() == 2 * n

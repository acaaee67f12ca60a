"""The ingress's ordered, bounded hand-off to the incident owner (no Ray)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from opsradar.serving.ownerfeed import OwnerBusy, OwnerFeed


def test_batches_reach_the_owner_in_order_merged_while_it_is_busy() -> None:
    calls: list[list[Any]] = []

    async def owner(events: list[Any], anomalies: list[Any]) -> None:
        calls.append(list(events))
        await asyncio.sleep(0.01)

    async def main() -> OwnerFeed:
        feed = OwnerFeed(owner)
        for i in range(5):
            feed.put([f"e{i}"], [])
            await asyncio.sleep(0)
        await feed.flush()
        return feed

    feed = asyncio.run(main())
    assert [e for c in calls for e in c] == [f"e{i}" for i in range(5)]
    assert len(calls) < 5  # what queued during a call went in one call
    assert feed.stats() == {"owner_backlog": 0, "owner_handed": 5, "owner_failures": 0}


def test_a_failed_owner_call_is_retried_without_losing_or_reordering() -> None:
    seen: list[Any] = []
    fails = [True]

    async def owner(events: list[Any], anomalies: list[Any]) -> None:
        if fails and fails.pop():
            raise RuntimeError("owner restarting")
        seen.extend(events + anomalies)

    async def main() -> OwnerFeed:
        feed = OwnerFeed(owner)
        feed.put(["e1"], ["a1"])
        feed.put(["e2"], [])
        await feed.flush(timeout_s=10)
        return feed

    feed = asyncio.run(main())
    assert seen == ["e1", "e2", "a1"] or seen == ["e1", "a1", "e2"]
    assert (feed.failures, feed.handed, feed.backlog) == (1, 2, 0)


def test_a_full_queue_makes_admit_wait_then_refuse() -> None:
    async def main() -> tuple[str, bool]:
        gate = asyncio.Event()

        async def owner(events: list[Any], anomalies: list[Any]) -> None:
            await gate.wait()

        feed = OwnerFeed(owner, max_backlog=2, wait_s=0.05)
        feed.put(["e1", "e2"], [])
        with pytest.raises(OwnerBusy, match="2 events behind"):
            await feed.admit()
        feed.wait_s = 5.0
        waiter = asyncio.create_task(feed.admit())  # admitted once the owner catches up
        await asyncio.sleep(0.01)
        pending = not waiter.done()
        gate.set()
        await feed.flush(timeout_s=5)
        await asyncio.wait_for(waiter, 5)
        return "ok", pending

    assert asyncio.run(main()) == ("ok", True)


def test_blobs_of_several_events_count_as_their_events() -> None:
    calls: list[list[Any]] = []
    gate = asyncio.Event()

    async def owner(events: list[Any], anomalies: list[Any]) -> None:
        await gate.wait()
        calls.append(list(events))

    async def main() -> tuple[int, OwnerFeed]:
        feed = OwnerFeed(owner, max_backlog=10, max_call_events=6)
        feed.put([b"blob-a"], [], events_count=4)  # one item standing for 4 events
        await asyncio.sleep(0)  # its call starts, and waits for the gate
        feed.put([b"blob-b", b"blob-c"], [], events_count=5)
        feed.put([b"blob-d"], [], events_count=3)
        backlog = feed.backlog
        gate.set()
        await feed.flush(timeout_s=5)
        return backlog, feed

    backlog, feed = asyncio.run(main())
    assert backlog == 12
    assert calls == [[b"blob-a"], [b"blob-b", b"blob-c"], [b"blob-d"]]  # 5 + 3 > 6 events: two calls
    assert (feed.handed, feed.backlog) == (12, 0)

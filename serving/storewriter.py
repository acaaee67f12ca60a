"""The ingress's writes to the store: concurrent ingests share one transaction (group commit).

Every ingest stores its events before anything else happens to them, and answers only once they
are committed. Ingests that arrive while a transaction is running wait for it and are then stored
together, in one transaction (one writer task, which runs each transaction in a worker thread). A
SQLite transaction rewrites every index page it touches, and concurrent batches touch many of the
same pages (the tail of the time index, the entity index's pages), so one transaction for several
batches costs less per event than one per batch (``bench/store_insert.py``: 43 µs of CPU per event at batches of 500, 33 at 2,000, at
400,000 events).

What each ingest learns is what it would have learned alone, in arrival order: an event id is new
for the first ingest, and the first item of that ingest, that holds it; a later ingest of the same
transaction that holds it too sees a duplicate. If the transaction fails, every ingest in it gets
the error, and none of their events is stored.

>>> import asyncio
>>> stored: set[str] = set()
>>> transactions = []
>>> def add(events):
...     transactions.append(len(events))
...     new = [e for e in dict.fromkeys(events) if e not in stored]
...     stored.update(new)
...     return new
>>> async def main():
...     writer = StoreWriter(add, key=lambda e: e)
...     return await asyncio.gather(writer.add(["a", "b"]), writer.add(["b", "c"]), writer.add(["a"]))
>>> asyncio.run(main())
[['a', 'b'], ['c'], []]
>>> transactions  # all three were queued before the writer ran: one transaction
[5]
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

__all__ = ["StoreWriter"]

T = TypeVar("T")


class StoreWriter(Generic[T]):
    """Group commit of ``add(items) -> new items`` (a store's ``add_events``), run in a worker thread.

    ``key`` gives an item's id (what ``add`` deduplicates by); ``max_items`` bounds one transaction
    (an ingest larger than that is still stored alone, whole); ``on_commit(ingests)`` is told of each
    committed transaction.
    """

    def __init__(self, add: Callable[[list[T]], Sequence[T]], *, key: Callable[[T], Hashable],
                 max_items: int = 10_000, on_commit: Callable[[int], None] | None = None) -> None:
        self._add = add
        self._key = key
        self._on_commit = on_commit  # called with the number of ingests of each committed transaction
        self.max_items = max_items
        self._queue: list[tuple[list[T], asyncio.Future[list[T]]]] = []
        self._writing = False

    async def add(self, items: Sequence[T]) -> list[T]:
        """Store ``items`` (in a transaction shared with the ingests queued meanwhile); the new ones."""
        fut: asyncio.Future[list[T]] = asyncio.get_running_loop().create_future()
        self._queue.append((list(items), fut))
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().create_task(self._write(), name="store-writer")
        return await fut

    def _take(self) -> list[tuple[list[T], asyncio.Future[list[T]]]]:
        """The queued ingests for the next transaction: in order, at least one, up to ``max_items``."""
        n, size = 0, 0
        for items, _ in self._queue:
            if n and size + len(items) > self.max_items:
                break
            n, size = n + 1, size + len(items)
        group, self._queue = self._queue[:n], self._queue[n:]
        return group

    async def _write(self) -> None:
        from anyio import to_thread

        try:
            while self._queue:
                group = self._take()
                merged = [item for items, _ in group for item in items]
                try:
                    new = await to_thread.run_sync(self._add, merged)
                except Exception as exc:  # noqa: BLE001 - each ingest of the transaction gets it
                    for _, fut in group:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                except BaseException:  # cancelled (the replica is stopping): so are the waiting ingests
                    for _, fut in group + self._queue:
                        fut.cancel()
                    self._queue = []
                    raise
                if self._on_commit is not None:
                    self._on_commit(len(group))
                fresh = {self._key(item) for item in new}
                for items, fut in group:
                    mine = []
                    for item in items:
                        k = self._key(item)
                        if k in fresh:  # new, and not claimed by an earlier ingest or item
                            fresh.discard(k)
                            mine.append(item)
                    if not fut.done():  # a cancelled ingest's events are stored all the same
                        fut.set_result(mine)
        finally:
            self._writing = False

"""The ingress's calls to one detector shard: concurrent ingests share a call (natural batching).

Ray Serve costs a few milliseconds of CPU per call between deployments, in the caller and in the
replica, whatever the call carries (``bench/serve_overhead.py``): at batches of hundreds of events,
that is a large part of each event's cost. So, as :class:`~opsradar.serving.storewriter.StoreWriter`
does for transactions: a call goes out at once when none is in flight to that shard; the ingests
that arrive while one is in flight queue, and go out together in the next call, each getting back
the anomalies of its own events. Nothing waits for company: an ingest waits only for the call
before it, as it would have waited for the shard anyway.

Each queued part keeps its place: the shard detects the parts of one call in arrival order. When a
call fails, every ingest in it gets the error (their events are stored; the shard's replay sees
them); the next queued ones go out in a call of their own.

>>> import asyncio
>>> calls = []
>>> async def detect(parts):
...     calls.append(list(parts))
...     await asyncio.sleep(0)
...     return [[p.upper()] for p in parts]
>>> async def main():
...     shard = ShardCalls(detect)
...     first = asyncio.create_task(shard.call("a"))
...     await asyncio.sleep(0)  # "a" goes out alone; "b" and "c" arrive while it is in flight
...     return await asyncio.gather(first, shard.call("b"), shard.call("c"))
>>> asyncio.run(main())
[['A'], ['B'], ['C']]
>>> calls
[['a'], ['b', 'c']]
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["ShardCalls"]

P = TypeVar("P")
R = TypeVar("R")


class ShardCalls(Generic[P, R]):
    """Coalesces concurrent ``call(part)`` into ``send(parts) -> one result per part``.

    ``max_parts`` bounds one call (the queue beyond it waits for the next).
    """

    def __init__(self, send: Callable[[list[P]], Awaitable[Sequence[R]]], *, max_parts: int = 64) -> None:
        self._send = send
        self.max_parts = max_parts
        self._queue: list[tuple[P, asyncio.Future[R]]] = []
        self._sending = False
        self.calls = 0  # calls made (for tests and metrics)

    async def call(self, part: P) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((part, fut))
        if not self._sending:
            self._sending = True
            asyncio.get_running_loop().create_task(self._drain(), name="shard-calls")
        return await fut

    async def _drain(self) -> None:
        try:
            while self._queue:
                group, self._queue = self._queue[: self.max_parts], self._queue[self.max_parts :]
                self.calls += 1
                try:
                    results = await self._send([part for part, _ in group])
                    if len(results) != len(group):
                        raise RuntimeError(f"the shard answered {len(results)} parts for {len(group)}")
                except Exception as exc:  # noqa: BLE001 - each ingest of the call gets it
                    for _, fut in group:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                except BaseException:  # cancelled (the replica is stopping): so are the waiting ingests
                    for _, fut in group + self._queue:
                        fut.cancel()
                    self._queue = []
                    raise
                for (_, fut), result in zip(group, results, strict=True):
                    if not fut.done():  # a cancelled ingest's events were detected all the same
                        fut.set_result(result)
        finally:
            self._sending = False

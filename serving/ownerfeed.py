"""The ingress's hand-off to the incident owner: ordered, bounded, and not awaited by the ingest.

An ingest stores its events and has them detected by their shards, then *queues* the events and the
anomalies found for the ``Owner`` (rules, correlation, notification) and answers. One sender task
delivers the queue to the owner in arrival order, merging what queued up while the previous call
ran into one call (so a busy owner gets fewer, larger calls). What a client learns from the answer
(stored, duplicates, anomalies detected) is final when it answers; alerts and incidents follow.

Back-pressure: :meth:`OwnerFeed.admit` is called *before* an ingest stores anything; while the
queue holds ``max_backlog`` events or more it waits up to ``wait_s`` for room and then raises
:class:`OwnerBusy` (HTTP 503 with ``Retry-After``), so nothing that was stored is ever dropped from
the queue. A failed owner call (the owner replica restarting) is retried with backoff; the owner
ignores ids it has already handled, so a retry is harmless.

Known limit: the queue lives in the ingress replica; if that replica dies, the anomalies queued in
it are not handed to the owner (the events are stored, and detected: their shards will not detect
them again).

>>> import asyncio
>>> calls = []
>>> async def owner(events, anomalies):
...     calls.append((list(events), list(anomalies)))
>>> async def main():
...     feed = OwnerFeed(owner, max_backlog=10)
...     await feed.admit()
...     feed.put(["e1", "e2"], ["a1"])
...     feed.put(["e3"], [])
...     await feed.flush()
...     return feed.backlog, feed.handed
>>> asyncio.run(main())
(0, 3)
>>> [e for evs, _ in calls for e in evs], [a for _, anoms in calls for a in anoms]
(['e1', 'e2', 'e3'], ['a1'])
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from opsradar.serving.operations import Unavailable

__all__ = ["OwnerBusy", "OwnerFeed"]

log = logging.getLogger(__name__)

#: ``(events, anomalies) -> awaitable``: one call to the owner
Send = Callable[[list[Any], list[Any]], Awaitable[Any]]


class OwnerBusy(Unavailable):  # type: ignore[misc]
    """The owner's queue stayed full: nothing of this request was stored; retry later."""


class OwnerFeed:
    """An ordered queue of (events, anomalies) for the owner, delivered by one background task."""

    def __init__(self, send: Send, *, max_backlog: int = 20_000, wait_s: float = 30.0,
                 max_call_events: int = 5_000) -> None:
        if max_backlog < 1:
            raise ValueError(f"max_backlog must be >= 1, got {max_backlog!r}")
        self.send = send
        self.max_backlog, self.wait_s, self.max_call_events = max_backlog, wait_s, max_call_events
        self._queue: deque[tuple[list[Any], list[Any], int]] = deque()  # (events, anomalies, event count)
        self.backlog = 0  # events queued or being handed, not yet acknowledged by the owner
        self.handed = 0  # events the owner acknowledged
        self.failures = 0
        self._changed: asyncio.Condition | None = None
        self._task: asyncio.Task[None] | None = None

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:  # created on the serving event loop, at first use
            self._changed = asyncio.Condition()
        return self._changed

    async def admit(self) -> None:
        """Wait for room in the queue (call before storing); raises :class:`OwnerBusy` after ``wait_s``."""
        if self.backlog < self.max_backlog:
            return
        cond = self._cond()
        try:
            async with cond:
                await asyncio.wait_for(cond.wait_for(lambda: self.backlog < self.max_backlog), self.wait_s)
        except TimeoutError:
            raise OwnerBusy(f"the incident owner is {self.backlog} events behind (limit {self.max_backlog}) "
                            f"for {self.wait_s:.0f}s; nothing was stored") from None

    def put(self, events: list[Any], anomalies: list[Any], *, events_count: int | None = None) -> None:
        """Queue ``events`` and their ``anomalies`` for the owner (never blocks, never drops).

        ``events_count``: how many events ``events`` holds, when its items are not events one by one
        (blobs of several); the backlog and the calls' size count events."""
        n = len(events) if events_count is None else events_count
        if not n and not anomalies:
            return
        self._queue.append((events, anomalies, n))
        self.backlog += n
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="owner-feed")

    async def _run(self) -> None:
        delay = 0.2
        while self._queue:
            events: list[Any] = []
            anomalies: list[Any] = []
            n = 0
            while self._queue and (not n or n + self._queue[0][2] <= self.max_call_events):
                evs, anoms, k = self._queue.popleft()
                events += evs
                anomalies += anoms
                n += k
            try:
                await self.send(events, anomalies)
            except Exception as exc:  # noqa: BLE001 - the owner restarting: keep the order, retry
                self.failures += 1
                log.warning("handing %d events to the owner failed (%s: %s); retrying in %.1fs",
                            n, type(exc).__name__, exc, delay)
                self._queue.appendleft((events, anomalies, n))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            self.backlog -= n
            self.handed += n
            cond = self._cond()
            async with cond:
                cond.notify_all()

    async def flush(self, timeout_s: float = 600.0) -> None:
        """Wait until everything queued so far was handed to the owner."""
        cond = self._cond()
        async with cond:
            await asyncio.wait_for(cond.wait_for(lambda: self.backlog == 0), timeout_s)

    def stats(self) -> dict[str, int]:
        return {"owner_backlog": self.backlog, "owner_handed": self.handed, "owner_failures": self.failures}

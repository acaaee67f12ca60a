"""The shared machinery of pull collectors: batches, cursors, one transaction per batch.

A :class:`Collector` reads one source incrementally. ``pull(cursor)`` yields :class:`Batch` objects,
each holding normalised events and the cursor to store *after* them. :func:`run_once` commits every
batch together with its cursor in one transaction (``Store.add_events(..., cursor=...)``), so a crash
at any point re-pulls at most the batch that was not committed, and stable event ids make that
re-pull idempotent. Cursors overlap by a margin (late data); dedup is by event id.

Malformed records do not stop a pull: the collector puts them in ``Batch.rejected`` with the reason,
and keeps the rest.

>>> from datetime import datetime, timezone
>>> from opsradar.store import Store
>>> class Counter(Collector):
...     kind = "demo"
...     def pull(self, cursor, *, until=None):
...         start = cursor or 0
...         for i in range(start, 5, 2):
...             ev = Event.new(source=self.name, native_id=str(i), kind="build", entity="job:x",
...                            ts=datetime(2026, 1, 1, tzinfo=timezone.utc))
...             yield Batch(events=[ev], cursor=i + 1)
>>> store = Store("sqlite://")
>>> run_once(Counter("c"), store).new
3
>>> run_once(Counter("c"), store).new, store.get_cursor("c")
(0, 5)
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter as _Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from opsradar.models import Event
from opsradar.store import Store

__all__ = ["Batch", "Collector", "PullResult", "Rejected", "run_once"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that could not be turned into an event, and why."""

    record_id: str
    reason: str


@dataclass
class Batch:
    """Events plus the cursor that is stored with them, in one transaction."""

    events: list[Event]
    cursor: Any
    rejected: list[Rejected] = field(default_factory=list)


@dataclass
class PullResult:
    source: str
    fetched: int = 0
    new: int = 0
    batches: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    by_kind: _Counter[str] = field(default_factory=_Counter)
    new_events: list[Event] = field(default_factory=list)
    last_event_ts: datetime | None = None


class Collector(ABC):
    """One source, read incrementally from a cursor. Subclasses implement :meth:`pull`."""

    #: the source type (jira, git, jenkins, elasticsearch)
    kind: str = ""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def cursor_key(self) -> str:
        """The key of this collector's cursor in the store."""
        return self.name

    @abstractmethod
    def pull(self, cursor: Any, *, until: datetime | None = None) -> Iterator[Batch]:
        """Yield batches of events newer than ``cursor`` (``None``: from the beginning).

        Raises a :class:`opsradar.errors.CollectorError` subclass when the source cannot be read.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def run_once(
    collector: Collector,
    store: Store,
    *,
    cursor: Any = None,
    use_stored_cursor: bool = True,
    until: datetime | None = None,
    keep_new_events: bool = False,
    on_batch: Callable[[Batch, list[Event]], None] | None = None,
) -> PullResult:
    """Pull everything new from ``collector`` into ``store``; each batch is committed with its cursor.

    ``on_batch(batch, new_events)`` runs after each commit (progress bars, the detectors).
    """
    if use_stored_cursor and cursor is None:
        cursor = store.get_cursor(collector.cursor_key)
    result = PullResult(source=collector.name)
    for batch in collector.pull(cursor, until=until):
        new = store.add_events(batch.events, cursor=(collector.cursor_key, batch.cursor))
        result.batches += 1
        result.fetched += len(batch.events)
        result.new += len(new)
        result.rejected += batch.rejected
        for e in new:
            result.by_kind[e.kind] += 1
            if result.last_event_ts is None or e.ts > result.last_event_ts:
                result.last_event_ts = e.ts
        if keep_new_events:
            result.new_events += new
        for r in batch.rejected:
            log.warning("source %r: rejected record %s: %s", collector.name, r.record_id, r.reason)
        if on_batch is not None:
            on_batch(batch, new)
    return result

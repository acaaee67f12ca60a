"""Event reads for root-cause reports, decoded once per process.

A report reads the change events of a day around the incident (thousands of builds on a busy CI),
and the pipeline ranks again as an incident grows, so the same stored events are read over and
over. Stored events never change (an insert with a known id is ignored), so :class:`EventReader`
selects only the *ids* matching a query and decodes (JSON + pydantic) just the events it has not
kept yet, from a bounded per-store cache (least recently used out first). Results are exactly
those of :meth:`opsradar.store.Store.iter_events`: the same filters, the same order.

>>> from datetime import datetime, timedelta, timezone
>>> from opsradar.models import Event
>>> store = Store("sqlite://")
>>> t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
>>> _ = store.add_events([Event.new(source="git", native_id=f"c{i}", kind="commit", entity="repo:shop",
...                                 ts=t0 + timedelta(minutes=i)) for i in range(5)])
>>> reader = reader_for(store)
>>> [e.id for e in reader.events(since=t0, kinds=["commit"])] == [e.id for e in store.iter_events(since=t0, kinds=["commit"])]
True
>>> reader.decoded, len(reader.events(since=t0 + timedelta(minutes=2))), reader.decoded   # the second read decodes nothing
(5, 3, 5)
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select

from opsradar import schema as t
from opsradar.models import Event
from opsradar.store import Store

__all__ = ["EventReader", "reader_for"]

_readers: weakref.WeakKeyDictionary[Store, EventReader] = weakref.WeakKeyDictionary()
_readers_lock = threading.Lock()


def reader_for(store: Store) -> EventReader:
    """The process's :class:`EventReader` of ``store`` (created at first use)."""
    with _readers_lock:
        reader = _readers.get(store)
        if reader is None:
            reader = _readers[store] = EventReader(store)
        return reader


class EventReader:
    """:meth:`Store.iter_events` with decoded events kept by id (at most ``cap``)."""

    def __init__(self, store: Store, *, cap: int = 100_000, chunk: int = 500) -> None:
        self.store, self.cap, self.chunk = store, cap, chunk
        self._cache: OrderedDict[str, Event] = OrderedDict()
        self._lock = threading.Lock()
        self.decoded = 0  # events decoded from the store so far

    def events(self, *, since: datetime | None = None, until: datetime | None = None, source: str | None = None,
               kinds: Iterable[str] | None = None, entities: Iterable[str] | None = None) -> list[Event]:
        """Stored events in event-time order (ties broken by id), filtered as :meth:`Store.iter_events`."""
        q = select(t.events.c.id)
        if since is not None:
            q = q.where(t.events.c.ts >= since)
        if until is not None:
            q = q.where(t.events.c.ts < until)
        if source:
            q = q.where(t.events.c.source == source)
        if kinds is not None:
            q = q.where(t.events.c.kind.in_(list(kinds)))
        if entities is not None:
            q = q.where(t.events.c.entity.in_(list(entities)))
        q = q.order_by(t.events.c.ts, t.events.c.id)
        with self.store.engine.connect() as conn:
            ids = list(conn.execute(q).scalars())
            with self._lock:
                found = {i: e for i in ids if (e := self._cache.get(i)) is not None}
            missing = [i for i in ids if i not in found]
            for k in range(0, len(missing), self.chunk):
                part = missing[k : k + self.chunk]
                rows = conn.execute(select(t.events.c.id, t.events.c.doc).where(t.events.c.id.in_(part)))
                for eid, doc in rows:
                    found[eid] = Event.model_validate(doc)
        with self._lock:
            self.decoded += len(missing)
            for i in ids:  # most recently used last
                if i in self._cache:
                    self._cache.move_to_end(i)
                elif i in found:  # (one pruned between the two queries is left out)
                    self._cache[i] = found[i]
            while len(self._cache) > self.cap:
                self._cache.popitem(last=False)
        return [found[i] for i in ids if i in found]

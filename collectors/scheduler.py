"""Polls every source at its own interval; one failing source never stops the others.

A failure is logged once with a clear message (the source, what failed, what to check) and the
source is retried with exponential backoff and full jitter; ``Retry-After`` from a 429 or 503
(``CollectorError.retry_after``) is honoured. Per-source health (last success, last error, lag) is
kept in memory and written to the store for the API and the metrics.

The scheduler is deterministic to test: :meth:`Scheduler.run_due` runs the sources due at ``now``;
:meth:`Scheduler.run_forever` loops on it in a thread.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from opsradar.collectors.base import Collector, PullResult, run_once
from opsradar.errors import CollectorError
from opsradar.models import MAX_AHEAD_OF_CLOCK, Event, utcnow
from opsradar.store import Store

__all__ = ["Scheduler", "SourceHealth", "backoff_delay"]

log = logging.getLogger(__name__)


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d else None


def backoff_delay(failures: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [base/2, min(cap, base * 2**(failures-1))]."""
    ceiling = min(cap, base * (2 ** max(0, failures - 1)))
    return rng.uniform(min(base / 2, ceiling), ceiling)


@dataclass
class SourceHealth:
    source: str
    kind: str
    status: str = "pending"  # pending | ok | failing
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    next_run: datetime | None = None
    last_event_ts: datetime | None = None
    events_total: int = 0
    events_ahead_of_clock: int = 0  # new events dated more than MAX_AHEAD_OF_CLOCK after the pull

    def lag_seconds(self, now: datetime) -> float | None:
        """How far behind now the newest event we hold is."""
        return (now - self.last_event_ts).total_seconds() if self.last_event_ts else None

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or utcnow()
        return {
            "source": self.source, "kind": self.kind, "status": self.status,
            "last_success": _iso(self.last_success), "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at), "consecutive_failures": self.consecutive_failures,
            "next_run": _iso(self.next_run), "last_event_ts": _iso(self.last_event_ts),
            "lag_seconds": self.lag_seconds(now), "events_total": self.events_total,
            "events_ahead_of_clock": self.events_ahead_of_clock,
        }


@dataclass
class _Entry:
    collector: Collector
    interval: timedelta
    health: SourceHealth
    rng: random.Random = field(default_factory=random.Random)


class Scheduler:
    """Runs collectors on their intervals into ``store``; ``on_events`` gets each source's new events."""

    def __init__(
        self,
        store: Store,
        *,
        on_events: Callable[[str, list[Event]], None] | None = None,
        backoff_base: float = 5.0,
        backoff_cap: float = 600.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.on_events = on_events
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, collector: Collector, *, interval: timedelta, seed: int | None = None) -> None:
        health = SourceHealth(collector.name, collector.kind, next_run=self.clock())
        self._entries[collector.name] = _Entry(collector, interval, health, random.Random(seed))

    def health(self) -> dict[str, SourceHealth]:
        return {name: e.health for name, e in self._entries.items()}

    def run_due(self, now: datetime | None = None, *, force: bool = False) -> dict[str, PullResult | CollectorError]:
        """Run every source whose time has come (every source with ``force``).

        A failure in one never stops the others.
        """
        now = now or self.clock()
        out: dict[str, PullResult | CollectorError] = {}
        for name, entry in self._entries.items():
            if not force and entry.health.next_run is not None and entry.health.next_run > now:
                continue
            out[name] = self._run(entry, now)
        return out

    def _run(self, entry: _Entry, now: datetime) -> PullResult | CollectorError:
        h = entry.health
        try:
            # New events are handed on batch by batch, right after each commit: a run that fails on a
            # later page must not strand the pages it already stored (the next run would see them as
            # already stored, and never report them as new).
            name, sink, limit = entry.collector.name, self.on_events, now + MAX_AHEAD_OF_CLOCK
            ahead: list[Event] = []  # a source whose clock is wrong: its events are kept, and shown

            def on_batch(_batch: Any, new: list[Event], name: str = name, sink: Any = sink) -> None:
                ahead.extend(e for e in new if e.ts > limit)
                if new and sink is not None:
                    sink(name, new)

            result = run_once(entry.collector, self.store, on_batch=on_batch)
        except CollectorError as exc:
            h.consecutive_failures += 1
            delay = backoff_delay(h.consecutive_failures, base=self.backoff_base, cap=self.backoff_cap, rng=entry.rng)
            if exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            first = h.status != "failing" or h.last_error != str(exc)
            h.status, h.last_error, h.last_error_at = "failing", str(exc), now
            h.next_run = now + timedelta(seconds=delay)
            if first:  # logged once, not at every retry
                log.error("%s — retrying in %.0fs with backoff", exc, delay)
            else:
                log.debug("%s (failure %d) — retrying in %.0fs", exc, h.consecutive_failures, delay)
            self._save_health(h, now)
            return exc
        except Exception as exc:
            h.consecutive_failures += 1
            delay = backoff_delay(h.consecutive_failures, base=self.backoff_base, cap=self.backoff_cap, rng=entry.rng)
            err = CollectorError(f"unexpected {type(exc).__name__}: {exc}", source=entry.collector.name,
                                 hint="this is a bug in opsradar; please report it with the log")
            if h.last_error != str(err):
                log.exception("%s", err)
            h.status, h.last_error, h.last_error_at = "failing", str(err), now
            h.next_run = now + timedelta(seconds=delay)
            self._save_health(h, now)
            return err
        if h.status == "failing":
            log.info("source %r recovered after %d failure(s)", entry.collector.name, h.consecutive_failures)
        h.status, h.consecutive_failures, h.last_success = "ok", 0, now
        h.next_run = now + entry.interval
        h.events_total += result.new
        if ahead:
            h.events_ahead_of_clock += len(ahead)
            log.warning("source %r: %d new event(s) dated more than %s after this clock (the latest %s): check the "
                        "source's clock and time zone; they are stored, but event time does not advance to them",
                        entry.collector.name, len(ahead), MAX_AHEAD_OF_CLOCK, max(e.ts for e in ahead).isoformat())
        if result.last_event_ts and (h.last_event_ts is None or result.last_event_ts > h.last_event_ts):
            h.last_event_ts = result.last_event_ts
        self._save_health(h, now)
        return result

    def _save_health(self, h: SourceHealth, now: datetime) -> None:
        try:
            self.store.set_source_health(h.source, h.as_dict(now))
        except Exception:
            log.warning("could not record health of source %r", h.source, exc_info=True)

    # ------------------------------------------------------------------ background loop

    def run_forever(self, *, tick: float = 1.0) -> None:
        while not self._stop.is_set():
            self.run_due()
            self._stop.wait(tick)

    def start(self, *, tick: float = 1.0) -> None:
        self._thread = threading.Thread(target=self.run_forever, kwargs={"tick": tick}, name="collectors", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for e in self._entries.values():
            e.collector.close()

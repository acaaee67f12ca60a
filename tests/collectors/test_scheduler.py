from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from opsradar.collectors.base import Batch, Collector
from opsradar.collectors.scheduler import Scheduler, backoff_delay
from opsradar.errors import SourceAuthError, SourceUnavailable
from opsradar.models import Event
from opsradar.store import Store

from ..conftest import T0


class Fixed(Collector):
    kind = "test"

    def __init__(self, name: str, n: int) -> None:
        super().__init__(name)
        self.n = n

    def pull(self, cursor: Any, *, until: datetime | None = None) -> Iterator[Batch]:
        start = cursor or 0
        events = [Event.new(source=self.name, native_id=str(i), kind="build", entity="job:j", ts=T0 + timedelta(minutes=i))
                  for i in range(start, self.n)]
        yield Batch(events=events, cursor=self.n)


class Failing(Collector):
    kind = "test"

    def __init__(self, name: str, exc: Exception) -> None:
        super().__init__(name)
        self.exc = exc
        self.calls = 0

    def pull(self, cursor: Any, *, until: datetime | None = None) -> Iterator[Batch]:
        self.calls += 1
        raise self.exc
        yield  # pragma: no cover


def test_one_failing_source_never_stops_the_others(caplog: pytest.LogCaptureFixture) -> None:
    store = Store("sqlite://")
    got: dict[str, int] = {}
    sched = Scheduler(store, on_events=lambda name, evs: got.__setitem__(name, len(evs)), clock=lambda: T0)
    bad = Failing("jira", SourceAuthError("401 Unauthorized", source="jira", hint="check sources.jira.user and JIRA_TOKEN"))
    sched.add(bad, interval=timedelta(minutes=1), seed=1)
    sched.add(Fixed("jenkins", 3), interval=timedelta(minutes=1))
    out = sched.run_due(T0)
    assert isinstance(out["jira"], SourceAuthError)
    assert got == {"jenkins": 3}
    health = {k: v.as_dict(T0) for k, v in sched.health().items()}
    assert health["jira"]["status"] == "failing"
    assert "check sources.jira.user" in health["jira"]["last_error"]
    assert health["jenkins"]["status"] == "ok"
    assert store.source_health()["jira"]["status"] == "failing"
    # logged once, not at every retry
    for day in range(1, 4):
        sched.run_due(T0 + timedelta(days=day))
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "jira" in r.getMessage()]
    assert len(errors) == 1
    assert bad.calls == 4


def test_retry_after_is_honoured_and_backoff_grows() -> None:
    store = Store("sqlite://")
    sched = Scheduler(store, backoff_base=1, backoff_cap=1000, clock=lambda: T0)
    src = Failing("es", SourceUnavailable("429 Too Many Requests", source="es", retry_after=120))
    sched.add(src, interval=timedelta(seconds=10), seed=0)
    sched.run_due(T0)
    nxt = sched.health()["es"].next_run
    assert nxt is not None
    assert nxt >= T0 + timedelta(seconds=120)
    assert sched.run_due(T0 + timedelta(seconds=119)) == {}
    assert "es" in sched.run_due(T0 + timedelta(seconds=121))


def test_backoff_delay_is_bounded_and_jittered() -> None:
    rng = random.Random(3)
    delays = [backoff_delay(n, base=2, cap=60, rng=rng) for n in range(1, 12)]
    assert all(1 <= d <= 60 for d in delays)
    assert max(delays[6:]) > max(delays[:2])


def test_recovery_resets_the_failure_count() -> None:
    store = Store("sqlite://")
    sched = Scheduler(store, clock=lambda: T0)
    src = Failing("j", SourceUnavailable("connection refused", source="j"))
    sched.add(src, interval=timedelta(seconds=10))
    sched.run_due(T0)
    assert sched.health()["j"].consecutive_failures == 1
    sched._entries["j"].collector = Fixed("j", 2)
    sched.run_due(T0 + timedelta(hours=1))
    h = sched.health()["j"]
    assert (h.status, h.consecutive_failures, h.events_total) == ("ok", 0, 2)


class FailsOnSecondPage(Collector):
    kind = "test"

    def pull(self, cursor: Any, *, until: datetime | None = None) -> Iterator[Batch]:
        page = cursor or 0
        if page == 0:
            yield Batch(events=[Event.new(source=self.name, native_id="p0", kind="build", entity="job:j", ts=T0)], cursor=1)
        raise SourceUnavailable("503 on page 2", source=self.name)


def test_events_committed_before_a_failure_still_reach_the_pipeline() -> None:
    store = Store("sqlite://")
    got: list[str] = []
    sched = Scheduler(store, on_events=lambda name, evs: got.extend(e.id for e in evs), clock=lambda: T0)
    sched.add(FailsOnSecondPage("es"), interval=timedelta(minutes=1))
    out = sched.run_due(T0)
    assert isinstance(out["es"], SourceUnavailable)
    assert got == [Event.make_id("es", "p0", T0)]
    assert store.get_cursor("es") == 1


class ClockAhead(Collector):
    """A source whose clock runs a day ahead, for one of its two events."""

    kind = "test"

    def pull(self, cursor: Any, *, until: datetime | None = None) -> Iterator[Batch]:
        if cursor is None:
            yield Batch(events=[Event.new(source=self.name, native_id=n, kind="build", entity="job:j", ts=ts)
                                for n, ts in (("ok", T0), ("ahead", T0 + timedelta(days=1)))], cursor=1)


def test_a_source_whose_clock_is_ahead_shows_it_in_its_health_and_loses_nothing() -> None:
    store = Store("sqlite://")
    got: list[str] = []
    sched = Scheduler(store, on_events=lambda name, evs: got.extend(e.id for e in evs), clock=lambda: T0)
    sched.add(ClockAhead("ci"), interval=timedelta(minutes=1))
    sched.run_due(T0)
    assert len(got) == 2, "both events are stored and handed on"
    health = sched.health()["ci"].as_dict(T0)
    assert health["events_ahead_of_clock"] == 1
    assert health["status"] == "ok"
    assert store.source_health()["ci"]["events_ahead_of_clock"] == 1  # what GET /v1/sources shows

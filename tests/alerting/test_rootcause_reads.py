"""The root-cause reports' cached event reads return exactly what the store returns."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from opsradar.alerting.rootcause.reads import EventReader, reader_for
from opsradar.models import Event
from opsradar.store import Store

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _events(rng: random.Random, start: int, n: int) -> list[Event]:
    kinds = ["commit", "build", "deploy", "log", "test_run"]
    return [Event.new(source=rng.choice(["git", "jenkins"]), native_id=f"e{i}", kind=rng.choice(kinds),
                      entity=f"job:j{rng.randrange(4)}", ts=T0 + timedelta(minutes=rng.randrange(600)),
                      values={"n": float(i)}) for i in range(start, start + n)]


def test_reads_match_the_store_as_events_arrive_and_the_cache_evicts() -> None:
    rng = random.Random(5)
    store = Store("sqlite://")
    reader = EventReader(store, cap=150, chunk=7)
    queries = [
        {},
        {"since": T0 + timedelta(hours=2), "until": T0 + timedelta(hours=6)},
        {"kinds": ["commit", "build", "deploy"]},
        {"source": "git", "kinds": ["log"], "entities": ["job:j1", "job:j2"]},
        {"since": T0, "entities": ["job:j3"]},
    ]
    for start in (0, 120, 240):
        store.add_events(_events(rng, start, 120))
        for q in queries:
            got = reader.events(**q)  # type: ignore[arg-type]
            assert [e.model_dump() for e in got] == [e.model_dump() for e in store.iter_events(**q)]  # type: ignore[arg-type]
    assert len(reader._cache) <= 150
    assert reader.decoded < 3 * len(queries) * 360  # reads were served from the cache


def test_one_reader_per_store() -> None:
    a, b = Store("sqlite://"), Store("sqlite://")
    assert reader_for(a) is reader_for(a)
    assert reader_for(a) is not reader_for(b)

"""Micro-benchmark of ``Store.add_events``: events/s for batches of build events.

Stores ``--batches`` batches of ``--batch`` new build events (the shape ``bench/serve.py`` posts)
into a fresh SQLite file database (or ``--url``), each batch with a collector cursor as one
transaction (events/s over wall time, and the CPU time of this process per event: the
Ingress is CPU-bound), then re-adds the last ``--batches // 4`` batches (all duplicates). ``--profile``
prints a cProfile of the new-event phase. ``--slices N`` also prints the CPU per event, user and
system (kernel) apart, for each of N equal slices of the new-event phase: how the cost of an insert
grows with the table. ``--ids`` chooses the event ids: ``opsradar`` (default; ``Event.make_id``, time
first, so they sort by event time), ``hashed`` (``Event.record_id``, the time-free digests opsradar
gave before schema 0004: each insert lands on a random page of the id index) or ``ordered``
(``jenkins-<counter>``, in insertion order: the floor).

Usage: ``python bench/store_insert.py`` (``--url postgresql+psycopg://…`` for PostgreSQL; the
events table of that database is emptied first). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from opsradar.models import Event
from opsradar.store import Store

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def batches(n: int, size: int, jobs: int = 200, *, ids: str = "opsradar") -> list[list[Event]]:
    out = []
    for b in range(n):
        batch = []
        for k in range(size):
            i = b * size + k
            job = f"job-{i % jobs}"
            e = Event.new(source="jenkins", native_id=f"{job}#{i}", kind="build", ts=T0 + timedelta(seconds=i),
                          entity=f"job:{job}", labels={"result": "SUCCESS"},
                          values={"duration_s": 300.0 + i % 7, "queue_s": 2.0})
            if ids == "hashed":
                e = e.model_copy(update={"id": Event.record_id("jenkins", f"{job}#{i}")})
            elif ids == "ordered":
                e = e.model_copy(update={"id": f"jenkins-{i:024d}"})
            batch.append(e)
        out.append(batch)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--url", default=None, help="store URL (default: a fresh SQLite file in a temp dir)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--slices", type=int, default=0, help="print user/system CPU per event for N slices")
    ap.add_argument("--ids", choices=("opsradar", "hashed", "ordered"), default="opsradar",
                    help="opsradar's ids (time first), the time-free digests of schema < 0004, or a counter")
    args = ap.parse_args()
    data = batches(args.batches, args.batch, ids=args.ids)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/state.db"
        store = Store(url)
        if args.url:
            from opsradar import schema as t

            with store.transaction() as conn:
                conn.execute(t.events.delete())
        prof = cProfile.Profile() if args.profile else None
        t0, c0 = time.perf_counter(), time.process_time()
        if prof:
            prof.enable()
        stored = 0
        slices: list[dict[str, float]] = []
        every = max(1, args.batches // args.slices) if args.slices else 0
        mark = resource.getrusage(resource.RUSAGE_SELF)
        for i, batch in enumerate(data):
            stored += len(store.add_events(batch, cursor=("jenkins", {"i": i})))
            if every and (i + 1) % every == 0:
                now = resource.getrusage(resource.RUSAGE_SELF)
                n = every * args.batch
                slices.append({"rows": stored, "user_us": round((now.ru_utime - mark.ru_utime) / n * 1e6, 1),
                               "system_us": round((now.ru_stime - mark.ru_stime) / n * 1e6, 1)})
                print(f"events {stored - n:,}-{stored:,}: {slices[-1]['user_us']} µs user + "
                      f"{slices[-1]['system_us']} µs system CPU per event", flush=True)
                mark = now
        if prof:
            prof.disable()
        new_s, new_cpu = time.perf_counter() - t0, time.process_time() - c0
        dup = data[-max(1, args.batches // 4):]
        t0 = time.perf_counter()
        again = sum(len(store.add_events(b)) for b in dup)
        dup_s = time.perf_counter() - t0
        if stored != args.batches * args.batch or again:
            raise SystemExit(f"stored {stored} new events and {again} of the duplicates")
        store.close()
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    total = args.batches * args.batch
    print(json.dumps({"events_per_s": round(total / new_s, 1), "cpu_us_per_event": round(new_cpu / total * 1e6, 1),
                      "dup_events_per_s": round(len(dup) * args.batch / dup_s, 1),
                      "events": total, "batch": args.batch, "store": "postgresql" if args.url else "sqlite-file",
                      "ids": args.ids, **({"slices": slices} if slices else {}),
                      "load_avg_1m": round(os.getloadavg()[0], 1)}))


if __name__ == "__main__":
    main()

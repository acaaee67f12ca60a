"""CPU per event of each stage of an ingest, in one process, without Ray.

``bench/serve.py`` gives the CPU per event of each deployment under load; this bench gives the part
of it that is opsradar's own code, stage by stage, on the same load (batches of build events over
200 jobs, embedded default config, a SQLite file):

- ``parse``: ``parse_batch`` of the JSON body (validation, ids);
- ``store``: ``Store.add_events`` (one transaction per batch, dedup by id);
- ``pack``: the events' blob to a detector shard and its unpacking there, then the same blob's
  unpacking by the owner, and the anomalies' blob (``serving.app.pack_events``/``pack``/``unpack``);
- ``detect``: ``ShardState.detect_events`` with the PyOD group models fed, as in a shard;
- ``owner``: ``Pipeline.handle`` (rules, correlation, notification outbox; ranking asynchronous).

Usage: ``python bench/ingest_stages.py`` (``--batches 60 --batch 500``; ``--gc off`` to see what is
left without the cyclic garbage collector, ``--gc default`` for CPython's default thresholds). The last line is one JSON
object with microseconds of CPU per event by stage and their total.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

from serve import build  # the same documents as bench/serve.py's load


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--format", choices=("array", "ndjson"), default="array", help="how each batch is posted")
    ap.add_argument("--gc", choices=("serving", "default", "off"), default="serving",
                    help="CPython's collector as the serving deployments run it (serving.metrics.GC_THRESHOLDS), "
                         "with CPython's default thresholds, or off (the difference is the collector's share)")
    a = ap.parse_args()

    from opsradar.collectors.push import parse_batch
    from opsradar.config import load_config
    from opsradar.serving.app import _RemoteDetectors, pack, pack_events, unpack
    from opsradar.serving.pipeline import Pipeline
    from opsradar.serving.refits import ShardRefits
    from opsradar.serving.shardstate import ShardState
    from opsradar.store import Store

    cfg = load_config(None)
    tmp = Path(tempfile.mkdtemp(prefix="opsradar-stages-"))
    store = Store(f"sqlite:///{tmp}/state.db")
    refits = ShardRefits(store, window=cfg.detectors.refit_window, refit_every=max(64, cfg.detectors.refit_window // 4),
                         min_interval=cfg.detectors.refit_interval.total_seconds())
    shard = ShardState(0, 1, store, cfg.detectors, cfg.entities, refits=refits)
    owner = Pipeline(cfg, store, detectors=_RemoteDetectors(1), notify=False, rank_async=True)  # type: ignore[arg-type]
    docs = [[build(f"load{(k * a.batch + i) % a.jobs}", k * a.batch + i, 300.0) for i in range(a.batch)] for k in range(a.batches)]
    if a.format == "ndjson":
        bodies, ctype = ["\n".join(json.dumps(d) for d in batch).encode() for batch in docs], "application/x-ndjson"
    else:
        bodies, ctype = [json.dumps(batch).encode() for batch in docs], "application/json"
    cpu: dict[str, float] = dict.fromkeys(("parse", "store", "pack", "detect", "owner"), 0.0)
    warm = max(1, a.batches // 6)  # streams warm up first, as under a sustained load
    if a.gc == "off":
        gc.disable()
    elif a.gc == "serving":
        from opsradar.serving.metrics import GC_THRESHOLDS

        gc.set_threshold(*GC_THRESHOLDS)
    events = 0
    for k, body in enumerate(bodies):
        t = time.process_time()
        parsed = parse_batch(body, ctype, max_bytes=50 * 1024 * 1024, max_items=100_000)
        t1 = time.process_time()
        new = store.add_events(parsed.events)
        t2 = time.process_time()
        blob = pack_events(new)
        to_shard = unpack(blob)
        t3 = time.process_time()
        anomalies = shard.detect_events(to_shard)
        t4 = time.process_time()
        to_owner, anoms = unpack([blob]), unpack(pack(anomalies))
        t5 = time.process_time()
        owner.handle(to_owner, anoms)
        t6 = time.process_time()
        if k >= warm:
            events += len(new)
            for stage, dt in (("parse", t1 - t), ("store", t2 - t1), ("pack", (t3 - t2) + (t5 - t4)),
                              ("detect", t4 - t3), ("owner", t6 - t5)):
                cpu[stage] += dt
    owner.close()
    us = {stage: round(v / max(1, events) * 1e6, 1) for stage, v in cpu.items()}
    total = round(sum(us.values()), 1)
    print(f"CPU per event, in one process, {a.format} bodies, gc {a.gc} ({events} events after {warm} warm-up batches of {a.batch}): "
          + ", ".join(f"{k} {v} µs" for k, v in us.items()) + f"; total {total} µs")
    print(json.dumps({"us_per_event": us, "total_us": total, "events": events, "batch": a.batch, "format": a.format, "gc": a.gc}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Prometheus metrics of the serving layer, and ``/metrics`` merged across deployments.

Each deployment runs in its own process with its own registry. ``GET /metrics`` on the ingress
asks the owner and every detector shard for their exposition text and merges it with its own:
metric families are joined by name (the shards label theirs with ``shard``), and the process
and Python runtime families are the ingress's only, so the output is one valid exposition.

>>> a = b'# HELP x_total X\\n# TYPE x_total counter\\nx_total{shard="0"} 1.0\\n'
>>> b = b'# HELP x_total X\\n# TYPE x_total counter\\nx_total{shard="1"} 2.0\\n'
>>> print(merge_exposition([a, b]).decode().strip())
# HELP x_total X
# TYPE x_total counter
x_total{shard="0"} 1.0
x_total{shard="1"} 2.0
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

__all__ = [
    "CHECKPOINTS",
    "DETECT_EVENTS",
    "DETECT_SECONDS",
    "EVENTS_AHEAD",
    "EVENTS_PRUNED",
    "GC_SECONDS",
    "GC_THRESHOLDS",
    "INGEST_EVENTS",
    "INGEST_SECONDS",
    "INGEST_TRANSACTIONS",
    "REPLAYED",
    "REPORTS_SAVED",
    "STREAMS",
    "merge_exposition",
    "setup_gc",
]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

INGEST_EVENTS = Counter("opsradar_ingest_events", "Pushed events by outcome (stored, duplicate, rejected)", ["outcome"])
INGEST_SECONDS = Histogram("opsradar_ingest_request_seconds", "POST /v1/events: from request to detection done",
                           buckets=_LATENCY_BUCKETS)
INGEST_TRANSACTIONS = Counter("opsradar_ingest_store_transactions",
                              "Store transactions of the ingress: concurrent ingests share one (group commit), so "
                              "ingests per transaction = opsradar_ingest_request_seconds_count / this")
DETECT_EVENTS = Counter("opsradar_detect_events", "Events a detector shard processed", ["shard"])
DETECT_SECONDS = Histogram("opsradar_detect_batch_seconds", "Time a detector shard spent on one batch", ["shard"],
                           buckets=_LATENCY_BUCKETS)
STREAMS = Gauge("opsradar_detector_streams", "Streams a detector shard holds", ["shard"])
CHECKPOINTS = Counter("opsradar_detector_checkpoints", "Checkpoints a detector shard wrote", ["shard"])
REPLAYED = Counter("opsradar_detector_replayed_events", "Events a restarted shard replayed from the store", ["shard"])
EVENTS_PRUNED = Counter("opsradar_events_pruned", "Stored events deleted past store.event_retention")
REPORTS_SAVED = Counter("opsradar_reports_saved", "Root-cause reports saved before the retention deleted the events they read")
EVENTS_AHEAD = Counter("opsradar_events_ahead_of_clock",
                       "Events later than the wall clock allows (a source's clock gone wrong): handled, but event "
                       "time did not advance to them")

GC_SECONDS = Counter("opsradar_gc_seconds", "Time this deployment's process spent in CPython's cyclic garbage "
                     "collector, by generation", ["deployment", "generation"])

_RUNTIME_PREFIXES = ("process_", "python_")
_gc_tracked: list[str] = []

#: The collector's thresholds in each deployment's process (CPython's default: 700, 10, 10). A batch
#: of 5,000 events is ~50,000 tracked objects alive for the seconds its request lasts: with the
#: defaults they were promoted and the older generations were scanned over and over, 27-37 µs of
#: collector time per event over the ingress, the shards and the owner (``bench/serve.py``); with
#: these, 2-3 µs. Garbage cycles wait longer to be freed.
GC_THRESHOLDS = (50_000, 20, 100)


def setup_gc(deployment: str) -> None:
    """Set :data:`GC_THRESHOLDS` and count the time of every garbage collection of this process in
    :data:`GC_SECONDS` (once per process; the first deployment to ask names it).

    >>> setup_gc("doctest"); setup_gc("again")
    >>> gc.get_threshold() == GC_THRESHOLDS
    True
    >>> _ = gc.collect(0)
    >>> GC_SECONDS.labels(deployment="doctest", generation="0")._value.get() > 0
    True
    >>> gc.set_threshold(700, 10, 10)  # this process is a test run: back to the defaults
    """
    if _gc_tracked:
        return
    _gc_tracked.append(deployment)
    gc.set_threshold(*GC_THRESHOLDS)
    series = [GC_SECONDS.labels(deployment=deployment, generation=str(g)) for g in range(3)]
    started = [0.0]
    clock = time.perf_counter

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = clock()
        else:
            series[info["generation"]].inc(clock() - started[0])

    gc.callbacks.append(on_gc)


class _Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def merge_exposition(texts: Sequence[bytes]) -> bytes:
    """One exposition from several (the first one's runtime families only); see the module docstring."""
    merged: dict[str, Metric] = {}
    for i, text in enumerate(texts):
        for fam in text_string_to_metric_families(text.decode("utf-8")):
            if i > 0 and fam.name.startswith(_RUNTIME_PREFIXES):
                continue
            if fam.name in merged:
                merged[fam.name].samples.extend(fam.samples)
            else:
                merged[fam.name] = fam
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(merged.values())))
    return generate_latest(registry)

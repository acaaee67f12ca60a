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

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

__all__ = [
    "CHECKPOINTS", "DETECT_EVENTS", "DETECT_SECONDS", "INGEST_EVENTS", "INGEST_SECONDS", "INGEST_TRANSACTIONS", "REPLAYED",
    "STREAMS",
    "merge_exposition",
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

_RUNTIME_PREFIXES = ("process_", "python_")


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

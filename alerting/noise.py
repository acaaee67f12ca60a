"""Noise metrics: how much each stage of the pipeline compresses what reaches people.

The stages are ``events → anomalies → alerts → incidents → slack_messages``, counted per source and
rule. :class:`NoiseMetrics` keeps the counts in memory (the API accessor :meth:`NoiseMetrics.snapshot`)
and mirrors them into a Prometheus counter ``opsradar_pipeline_items_total{stage,source,rule}``.

>>> from prometheus_client import CollectorRegistry
>>> m = NoiseMetrics(registry=CollectorRegistry())
>>> m.record("alerts", source="jenkins", rule="BuildSlow", n=10)
>>> m.record("incidents", source="jenkins", rule="BuildSlow")
>>> m.snapshot()["totals"]["alerts"], m.snapshot()["compression"]["alerts_per_incident"]
(10, 10.0)
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter

__all__ = ["STAGES", "NoiseMetrics", "default_metrics"]

STAGES = ("events", "anomalies", "alerts", "incidents", "slack_messages")

_DEFAULT: NoiseMetrics | None = None
_DEFAULT_GUARD = threading.Lock()


class NoiseMetrics:
    """Counts per (stage, source, rule), exported to Prometheus."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._counter = Counter(
            "opsradar_pipeline_items",
            "Items that reached each pipeline stage (events, anomalies, alerts, incidents, slack_messages)",
            ["stage", "source", "rule"],
            registry=registry if registry is not None else REGISTRY,
        )

    def record(self, stage: str, *, source: str | None = None, rule: str | None = None, n: int = 1) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        key = (stage, source or "", rule or "")
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n
        self._counter.labels(stage=stage, source=source or "", rule=rule or "").inc(n)

    def snapshot(self) -> dict[str, Any]:
        """Totals per stage, per (source, rule), and the compression ratios between stages."""
        with self._lock:
            counts = dict(self._counts)
        totals = dict.fromkeys(STAGES, 0)
        by: dict[str, dict[str, int]] = {}
        for (stage, source, rule), n in counts.items():
            totals[stage] += n
            by.setdefault(f"{source or '-'}/{rule or '-'}", dict.fromkeys(STAGES, 0))[stage] += n

        def ratio(a: str, b: str) -> float | None:
            return round(totals[a] / totals[b], 3) if totals[b] else None

        return {
            "totals": totals,
            "by_source_rule": by,
            "compression": {
                "events_per_anomaly": ratio("events", "anomalies"),
                "anomalies_per_alert": ratio("anomalies", "alerts"),
                "alerts_per_incident": ratio("alerts", "incidents"),
                "incidents_per_message": ratio("incidents", "slack_messages"),
            },
        }


def default_metrics() -> NoiseMetrics:
    """The process-wide metrics registered with the default Prometheus registry."""
    global _DEFAULT
    with _DEFAULT_GUARD:
        if _DEFAULT is None:
            _DEFAULT = NoiseMetrics()
        return _DEFAULT

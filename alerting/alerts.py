"""Alerts from anomalies: ``alert_from_anomaly(anomaly, graph) -> Alert``.

Labels: ``alertname`` (``<kind>-anomaly``), ``service`` and ``team`` (from the entity graph, when
known), ``source``, ``kind``, ``entity``, ``stream``, ``detector``, ``severity``, plus the anomaly's
own labels (such as ``stream_type``) where they do not clash. The fingerprint
leaves out ``severity``, so repeated anomalies of one stream deduplicate into one alert.

>>> from datetime import datetime, timezone
>>> from opsradar.config import EntityGraph
>>> from opsradar.models import Anomaly
>>> graph = EntityGraph.model_validate({"services": {"shop": {"jobs": ["shop-build"], "team": "web"}}})
>>> a = Anomaly(id="an1", stream="jenkins|build|job:shop-build", detector="hst", detector_version="1",
...             ts=datetime(2026, 1, 5, tzinfo=timezone.utc), source="jenkins", kind="build",
...             entity="job:shop-build", score=0.995, threshold=0.99, raw_score=0.8)
>>> alert = alert_from_anomaly(a, graph)
>>> alert.labels["alertname"], alert.labels["service"], alert.labels["team"], alert.severity.value
('build-anomaly', 'shop', 'web', 'warning')
"""

from __future__ import annotations

from opsradar.config import EntityGraph
from opsradar.models import Alert, Anomaly, Severity, fingerprint

__all__ = ["alert_from_anomaly", "severity_of"]


def severity_of(anomaly: Anomaly) -> Severity:
    """``error`` for a near-certain anomaly (score ≥ 0.999 and above threshold), else ``warning``."""
    return Severity.error if anomaly.score >= max(0.999, anomaly.threshold) else Severity.warning


def alert_from_anomaly(anomaly: Anomaly, graph: EntityGraph | None = None) -> Alert:
    """The alert an anomaly raises, labelled for rules and routing."""
    severity = severity_of(anomaly)
    labels = {
        "alertname": f"{anomaly.kind}-anomaly",
        "source": anomaly.source,
        "kind": anomaly.kind,
        "entity": anomaly.entity,
        "stream": anomaly.stream,
        "detector": anomaly.detector,
    }
    service = anomaly.labels.get("service") or (graph.service_of(anomaly.entity) if graph else None)
    if service is None and anomaly.entity.startswith("service:"):
        service = anomaly.entity.partition(":")[2]
    if service:
        labels["service"] = service
        team = graph.services[service].team if graph and service in graph.services else None
        if team:
            labels["team"] = team
    for key, value in anomaly.labels.items():  # the detector's own labels (e.g. stream_type) never override
        if key != "template":
            labels.setdefault(key, value)
    identity = dict(labels)
    labels["severity"] = severity.value
    if "template" in anomaly.labels:  # for rules to match; not part of the alert's identity (one alert per stream)
        labels.setdefault("template", anomaly.labels["template"])
    annotations = {"summary": anomaly.summary(), "score": f"{anomaly.score:.4f}",
                   "threshold": f"{anomaly.threshold:.4f}"}
    return Alert(fingerprint=fingerprint(identity), title=f"Anomalous {anomaly.kind} on {anomaly.entity}",
                 labels=labels, annotations=annotations, severity=severity, starts_at=anomaly.ts,
                 anomaly_id=anomaly.id, event_ids=[anomaly.event_id] if anomaly.event_id else [])

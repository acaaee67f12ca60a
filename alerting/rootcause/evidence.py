"""The evidence around the ranked changes: anomalous features, log templates, similar incidents, series.

Each function works on plain lists (no store), so it can be tested on hand-built data.

>>> from datetime import datetime, timedelta, timezone
>>> from opsradar.models import Event
>>> t0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
>>> def log(i, tid, minutes):
...     return Event.new(source="es", native_id=str(i), kind="log", entity="service:shop",
...                      ts=t0 + timedelta(minutes=minutes), labels={"template_id": tid},
...                      attrs={"template": f"template {tid} <*>"})
>>> logs = [log(i, "a", -300 + 10 * i) for i in range(30)] + [log(100, "b", 2), log(101, "b", 3)]
>>> [(t.template_id, t.status, t.count) for t in template_changes(logs, window_start=t0, window_end=t0 + timedelta(minutes=30))]
[('b', 'new', 2)]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from opsradar.alerting.rootcause.model import FeatureDeviation, Series, SeriesPoint, SimilarIncident, TemplateChange
from opsradar.models import Anomaly, Event, Incident

__all__ = ["event_series", "feature_points", "series_for", "similar_incidents", "stream_parts", "template_changes", "top_features"]


def top_features(anomalies: Iterable[Anomaly], *, limit: int = 10) -> list[FeatureDeviation]:
    """The most anomalous features, one row per (stream, feature), strongest first.

    Strength is the feature's share of the explanation times the anomaly's calibrated score.
    """
    best: dict[tuple[str, str], FeatureDeviation] = {}
    for a in anomalies:
        for c in a.explanation:
            row = FeatureDeviation(stream=a.stream, entity=a.entity, ts=a.ts, feature=c.feature, value=c.value,
                                   expected=c.expected, low=c.low, high=c.high, contribution=c.contribution,
                                   anomaly_score=a.score)
            key = (a.stream, c.feature)
            old = best.get(key)
            if old is None or row.contribution * row.anomaly_score > old.contribution * old.anomaly_score:
                best[key] = row
    rows = sorted(best.values(), key=lambda r: (-r.contribution * r.anomaly_score, r.stream, r.feature))
    return rows[:limit]


def template_changes(
    logs: Iterable[Event],
    *,
    window_start: datetime,
    window_end: datetime,
    min_ratio: float = 3.0,
    min_count: int = 3,
    limit: int = 20,
) -> list[TemplateChange]:
    """Log templates new in ``[window_start, window_end)``, or whose rate rose at least ``min_ratio``×.

    Events before ``window_start`` are the baseline. A template is *new* when the baseline never
    saw it; *increased* when its rate in the window, against its baseline rate plus one event
    (smoothing), is at least ``min_ratio`` and it occurred at least ``min_count`` times.
    Events without ``labels["template_id"]`` are ignored.
    """
    base: dict[str, int] = {}
    win: dict[str, int] = {}
    text: dict[str, str] = {}
    ents: dict[str, set[str]] = {}
    first: dict[str, datetime] = {}
    base_start: datetime | None = None
    for e in logs:
        tid = e.labels.get("template_id")
        if not tid:
            continue
        tmpl = e.attrs.get("template")
        if isinstance(tmpl, str):
            text.setdefault(tid, tmpl)
        if e.ts < window_start:
            base[tid] = base.get(tid, 0) + 1
            base_start = e.ts if base_start is None or e.ts < base_start else base_start
        elif e.ts < window_end:
            win[tid] = win.get(tid, 0) + 1
            ents.setdefault(tid, set()).add(e.entity)
            if tid not in first or e.ts < first[tid]:
                first[tid] = e.ts
    win_s = max((window_end - window_start).total_seconds(), 1.0)
    base_s = max((window_start - base_start).total_seconds(), win_s) if base_start else win_s
    out: list[TemplateChange] = []
    for tid, n in win.items():
        b = base.get(tid, 0)
        if b == 0:
            out.append(TemplateChange(template_id=tid, template=text.get(tid, tid), status="new", entities=sorted(ents[tid]),
                                      count=n, baseline_count=0, ratio=None, first_seen=first[tid]))
            continue
        ratio = (n / win_s) / ((b + 1) / base_s)
        if ratio >= min_ratio and n >= min_count:
            out.append(TemplateChange(template_id=tid, template=text.get(tid, tid), status="increased",
                                      entities=sorted(ents[tid]), count=n, baseline_count=b, ratio=round(ratio, 2),
                                      first_seen=first[tid]))
    out.sort(key=lambda t: (t.status != "new", -(t.ratio or 0.0), -t.count, t.first_seen, t.template_id))
    return out[:limit]


_WORD = re.compile(r"[a-z0-9]+")


def _jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 0.0


def _words(title: str) -> set[str]:
    return {w for w in _WORD.findall(title.lower()) if len(w) > 2 and not w.isdigit()}


def similar_incidents(
    incident: Incident,
    past: Iterable[Incident],
    *,
    feedback: dict[str, list[dict[str, Any]]] | None = None,
    min_similarity: float = 0.3,
    limit: int = 5,
) -> list[SimilarIncident]:
    """Earlier incidents that share services, sources and title words with ``incident``.

    ``similarity = 0.5 × J(services) + 0.2 × J(sources) + 0.3 × J(title words)`` (J: Jaccard).
    How each ended comes from its status, its timeline's last entries, its stored root cause and
    the feedback given on it.
    """
    feedback = feedback or {}
    out: list[SimilarIncident] = []
    for other in past:
        if other.id == incident.id or other.first_seen >= incident.first_seen:
            continue
        sim = (0.5 * _jaccard(incident.services, other.services) + 0.2 * _jaccard(incident.sources, other.sources)
               + 0.3 * _jaccard(_words(incident.title), _words(other.title)))
        if sim < min_similarity:
            continue
        steps = [f"{t.what}" + (f" ({t.detail})" if t.detail else "") + (f" by {t.actor}" if t.actor else "")
                 for t in other.timeline if any(k in t.what.lower() for k in ("resolv", "ack", "fix", "rollback", "revert", "note"))]
        resolution = "; ".join(steps[-3:])
        if not resolution:
            resolution = other.status.value + (f" at {other.resolved_at:%Y-%m-%d %H:%M} UTC" if other.resolved_at else "")
        rc = None
        if other.root_cause:
            first = other.root_cause[0]
            rc = str(first.get("summary") or first.get("event_id") or "")[:200] or None
        fb = [f"{f.get('verdict')}: {f.get('reason') or ''}".rstrip(": ") + (f" ({f.get('actor')})" if f.get("actor") else "")
              for f in feedback.get(other.id, [])]
        if other.feedback:
            fb.insert(0, other.feedback)
        out.append(SimilarIncident(id=other.id, title=other.title, similarity=round(sim, 3), status=other.status.value,
                                   first_seen=other.first_seen, resolved_at=other.resolved_at, services=other.services,
                                   resolution=resolution, root_cause=rc, feedback=fb))
    out.sort(key=lambda s: (-s.similarity, -s.first_seen.timestamp(), s.id))
    return out[:limit]


def stream_parts(anomaly: Anomaly) -> tuple[str, str, str]:
    """(source, kind, entity) of an anomaly's stream: from the key ``source|kind|entity``, else its fields."""
    parts = anomaly.stream.split("|")
    if len(parts) >= 3 and ":" in parts[2]:
        return parts[0], parts[1], "|".join(parts[2:])
    return anomaly.source, anomaly.kind, anomaly.entity


def feature_points(events: Sequence[Event], feature: str) -> list[tuple[datetime, float]]:
    """The values of ``feature`` along a stream's events, as the detectors computed them.

    The events are replayed through the stream type's feature extractor
    (:func:`opsradar.detectors.features.extractor_for`), so features come out as the detector saw
    them: derived ones (``log_latency_ms``, ``log_rate``, ``error_rate``…), and plain values only
    where the extractor keeps them (a failed build's ``duration_s`` is context, not a duration to
    compare). A feature that no extractor gives is read from the events' values. Empty when neither
    gives it.

    >>> from datetime import datetime, timezone
    >>> ts = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)
    >>> e = Event.new(source="es", native_id="r1", kind="access", ts=ts, entity="service:shop",
    ...               values={"status": 200.0, "duration_ms": 120.0})
    >>> [round(v, 3) for _, v in feature_points([e], "log_latency_ms")]  # ln(1 + 120 ms)
    [4.796]
    >>> feature_points([e], "duration_ms")
    [(datetime.datetime(2026, 1, 5, 9, 30, tzinfo=datetime.timezone.utc), 120.0)]
    """
    ordered = sorted(events, key=lambda e: (e.ts, e.id))
    if not ordered:
        return []
    out: list[tuple[datetime, float]] = []
    try:
        from opsradar.detectors.features import extractor_for

        extractor = extractor_for(ordered[0].kind)
    except (ImportError, KeyError):
        extractor = None
    if extractor is not None:
        for e in ordered:
            try:
                x = extractor.extract(e)
                extractor.learn(e)
            except (ValueError, KeyError, TypeError, ArithmeticError):  # one odd event must not hide the series
                continue
            if feature in x:
                out.append((e.ts, float(x[feature])))
    if out:
        return out
    return [(e.ts, float(e.values[feature])) for e in ordered if feature in e.values]


def series_for(
    anomalies: Sequence[Anomaly],
    events: Sequence[Event],
    *,
    start: datetime,
    end: datetime,
    bucket: timedelta | None = None,
) -> Series:
    """The series of one stream for the chart, between ``start`` and ``end``.

    The plotted feature is the anomalies' top explained feature (see :func:`feature_points`);
    when the events do not give it, they are counted per bucket (a rate: what log and access streams show). Points
    at an anomaly's time are marked anomalous.
    """
    a0 = anomalies[0]
    source, kind, entity = stream_parts(a0)
    feature = a0.explanation[0].feature if a0.explanation else None
    anomalous_ids = {a.event_id for a in anomalies if a.event_id}
    anomalous_ts = sorted(a.ts for a in anomalies)
    valued = feature_points(events, feature) if feature is not None else []
    points: list[SeriesPoint] = []
    if feature is not None and valued:
        ids_at = {e.ts: e.id for e in events}
        for ts, value in valued:
            hit = ids_at.get(ts) in anomalous_ids or any(abs((ts - t).total_seconds()) < 1 for t in anomalous_ts)
            if start <= ts <= end:
                points.append(SeriesPoint(ts=ts, value=value, anomalous=hit))
        label = feature
    else:
        points, label = _counts(events, anomalous_ts, start=start, end=end, bucket=bucket)
    return Series(stream=a0.stream if "|" in a0.stream else f"{source}|{kind}|{entity}", entity=entity, feature=label, points=points)


def _counts(events: Sequence[Event], marks: Sequence[datetime], *, start: datetime, end: datetime,
            bucket: timedelta | None) -> tuple[list[SeriesPoint], str]:
    span = (end - start).total_seconds()
    step = bucket or timedelta(seconds=max(60.0, span / 60))
    n = max(1, int(span // step.total_seconds()) + 1)
    counts = [0] * n
    for e in events:
        i = int((e.ts - start).total_seconds() // step.total_seconds())
        if 0 <= i < n:
            counts[i] += 1
    marked = {int((t - start).total_seconds() // step.total_seconds()) for t in marks}
    points = [SeriesPoint(ts=start + i * step, value=float(c), anomalous=i in marked) for i, c in enumerate(counts)]
    return points, f"events per {step.total_seconds() / 60:.0f} min"


def event_series(
    stream: tuple[str, str, str],
    events: Sequence[Event],
    marks: Sequence[datetime],
    *,
    start: datetime,
    end: datetime,
    bucket: timedelta | None = None,
) -> Series:
    """A stream's event count per bucket, with the buckets of ``marks`` (a rule alert's events) marked.

    For incidents raised by rules on events rather than by detector anomalies.
    """
    source, kind, entity = stream
    points, label = _counts(events, marks, start=start, end=end, bucket=bucket)
    return Series(stream=f"{source}|{kind}|{entity}", entity=entity, feature=label, points=points)

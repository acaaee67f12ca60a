"""Score what the pipeline found in a simulated world against the world's ground truth.

:func:`score` takes the injected incidents (:class:`~opsradar.demo.groundtruth.GroundTruth`) and the
pipeline's incidents (``Incident`` models or dicts with ``services``, ``entities``, ``first_seen``,
``notified_at`` — the *simulated* time of its Slack message — ``root_cause`` — the ranked candidate
dicts, or bare event ids — and ``alert_count``), with the raw anomaly and alert counts and the Slack messages, and
returns:

- ``recall``: injected (detectable) incidents matched by at least one detected incident;
- ``precision``: detected incidents that match an injected one. A detected incident matches an
  injected one when it was first seen between 15 minutes before the injected start and 2 hours
  after its end, and shares a service (or an entity) with it;
- ``compression``: raw anomalies plus alerts per top-level Slack incident message;
- ``ttd_median_s`` / ``ttd_p90_s``: simulated seconds from an injected start to the first Slack
  message of a matching incident (0 when the message came first);
- ``rca_top1`` / ``rca_top3``: over the detected injected incidents that have a root-cause change,
  the share whose main matching incident (the one holding most of the expected signals, then the
  earliest) ranks that change first / in its first three candidates;
- ``grouped_as_one`` (injected incidents found as exactly one incident), ``fragmentation``
  (matching detections per found injected incident) and ``signal_coverage`` (the share of an
  injected incident's expected signals whose entity its main detection holds) measure grouping.

A metric with nothing to measure is ``None``. Extra keys give the counts and a per-incident view.

>>> from datetime import datetime, timedelta, timezone
>>> from opsradar.demo.groundtruth import ChangeRef, GroundTruth, InjectedIncident
>>> from opsradar.models import Event
>>> t0 = datetime(2026, 3, 6, 10, tzinfo=timezone.utc)
>>> ref = ChangeRef(source="jenkins", kind="deploy", entity="job:shop-deploy", job="shop-deploy", number=7)
>>> gt = GroundTruth(scenario="x", seed=1, start=t0, end=t0 + timedelta(days=1), incidents=[
...     InjectedIncident(id="bad", type="bad_deploy", title="t", start=t0, end=t0 + timedelta(hours=1),
...                      services=["shop"], root_cause=[ref])])
>>> found = [{"id": "i1", "services": ["shop"], "first_seen": t0 + timedelta(minutes=3), "alert_count": 4,
...           "notified_at": t0 + timedelta(minutes=5), "root_cause": [{"event_id": Event.make_id("jenkins", "shop-deploy#7", t0)}]}]
>>> s = score(gt, found, anomalies_count=10, alerts_count=4, slack_messages=1)
>>> s["recall"], s["precision"], s["compression"], s["ttd_median_s"], s["rca_top1"]
(1.0, 1.0, 14.0, 300.0, 1.0)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel

from opsradar.demo.groundtruth import GroundTruth, InjectedIncident
from opsradar.models import Event

__all__ = ["count_incident_messages", "match_incidents", "score"]


def _as_dict(item: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    return item.model_dump() if isinstance(item, BaseModel) else dict(item)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    raise ValueError(f"expected a datetime or an ISO-8601 string, got {value!r}")


def count_incident_messages(slack_messages: Sequence[Mapping[str, Any]] | int) -> int:
    """Top-level messages (not thread replies): one per incident notification.

    >>> count_incident_messages([{"ts": "1.0"}, {"ts": "2.0", "thread_ts": "1.0"}, {"ts": "3.0", "thread_ts": "3.0"}])
    2
    """
    if isinstance(slack_messages, int):
        return slack_messages
    return sum(1 for m in slack_messages if m.get("thread_ts") in (None, m.get("ts")))


def _overlap(inj: InjectedIncident, det: dict[str, Any]) -> int:
    services = set(det.get("services") or [])
    entities = set(det.get("entities") or [])
    return len(services & set(inj.services)) + len(entities & set(inj.entities))


def match_incidents(ground_truth: GroundTruth, detected: Sequence[Mapping[str, Any] | BaseModel], *,
                    before: timedelta = timedelta(minutes=15),
                    after: timedelta = timedelta(hours=2)) -> dict[str, str | None]:
    """Detected incident id → the injected incident it matches (None: a false positive).

    Among several candidates the one sharing most services/entities wins, then the nearest start.
    """
    out: dict[str, str | None] = {}
    for n, item in enumerate(detected):
        det = _as_dict(item)
        det_id = str(det.get("id", n))
        first = _time(det.get("first_seen"))
        best: tuple[int, float, str] | None = None
        if first is not None:
            for inj in ground_truth.incidents:
                ov = _overlap(inj, det)
                if ov and inj.overlaps(first, before=before, after=after):
                    key = (-ov, abs((first - inj.start).total_seconds()), inj.id)
                    best = key if best is None or key < best else best
        out[det_id] = best[2] if best else None
    return out


def _coverage(inj: InjectedIncident, dets: list[dict[str, Any]]) -> float | None:
    """The share of the injected incident's expected signals whose entity the first detection holds."""
    if not inj.signals:
        return None
    main = dets[0]
    entities = set(main.get("entities") or []) | {f"service:{s}" for s in main.get("services") or []}
    return round(sum(sig.entity in entities for sig in inj.signals) / len(inj.signals), 4)


def _main_first(inj: InjectedIncident, det: dict[str, Any]) -> tuple[float, datetime]:
    """Sort key: the main detection holds most of the expected signals, then comes first."""
    return -(_coverage(inj, [det]) or 0.0), _time(det.get("first_seen")) or inj.start


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def score(
    ground_truth: GroundTruth,
    incidents: Sequence[Mapping[str, Any] | BaseModel],
    anomalies_count: int,
    alerts_count: int,
    slack_messages: Sequence[Mapping[str, Any]] | int,
    *,
    events: Mapping[str, Event] | None = None,
    before: timedelta = timedelta(minutes=15),
    after: timedelta = timedelta(hours=2),
) -> dict[str, Any]:
    """The benchmark figures (see the module docstring). ``events`` resolves candidate event ids."""
    detected = [_as_dict(i) for i in incidents]
    for n, d in enumerate(detected):
        d.setdefault("id", str(n))
        d["id"] = str(d["id"])
    matches = match_incidents(ground_truth, detected, before=before, after=after)
    by_injected: dict[str, list[dict[str, Any]]] = {}
    for d in detected:
        target = matches[d["id"]]
        if target is not None:
            by_injected.setdefault(target, []).append(d)
    scored = [i for i in ground_truth.incidents if i.detectable]
    found = [i for i in scored if i.id in by_injected]
    ttds: list[float] = []
    coverages: list[float] = []
    rca_n = top1 = top3 = 0
    per_incident = []
    for inj in ground_truth.incidents:
        dets = sorted(by_injected.get(inj.id, []), key=functools.partial(_main_first, inj))
        notified = [t for t in (_time(d.get("notified_at")) for d in dets) if t is not None]
        ttd = max(0.0, (min(notified) - inj.start).total_seconds()) if notified else None
        if ttd is not None and inj.detectable:
            ttds.append(ttd)
        rank = None
        if dets and inj.root_cause and inj.detectable:
            rca_n += 1
            for k, cand in enumerate(dets[0].get("root_cause") or []):
                if isinstance(cand, str):  # a bare event id
                    cand = {"event_id": cand}
                if inj.candidate_is_root_cause(cand, events):
                    rank = k + 1
                    break
            top1 += rank == 1
            top3 += rank is not None and rank <= 3
        coverage = _coverage(inj, dets) if dets else None
        if coverage is not None and inj.detectable:
            coverages.append(coverage)
        per_incident.append({"id": inj.id, "type": inj.type, "detected": bool(dets), "incidents": [d["id"] for d in dets],
                             "ttd_s": ttd, "rca_rank": rank, "has_root_cause": bool(inj.root_cause),
                             "signal_coverage": coverage})
    messages = count_incident_messages(slack_messages)
    matched_detected = sum(1 for v in matches.values() if v is not None)
    return {
        "recall": _ratio(len(found), len(scored)),
        "precision": _ratio(matched_detected, len(detected)),
        "compression": round((anomalies_count + alerts_count) / messages, 2) if messages else None,
        "ttd_median_s": _pct(ttds, 50),
        "ttd_p90_s": _pct(ttds, 90),
        "rca_top1": _ratio(top1, rca_n),
        "rca_top3": _ratio(top3, rca_n),
        "injected": len(scored),
        "detected": len(detected),
        "matched_detected": matched_detected,
        "incident_messages": messages,
        "alerts_per_message": round(alerts_count / messages, 2) if messages else None,
        "fragmentation": round(matched_detected / len(found), 2) if found else None,
        "grouped_as_one": _ratio(sum(1 for i in found if len(by_injected[i.id]) == 1), len(found)),
        "signal_coverage": round(sum(coverages) / len(coverages), 4) if coverages else None,
        "ttd_n": len(ttds),
        "rca_n": rca_n,
        "unmatched": sorted(k for k, v in matches.items() if v is None),
        "per_incident": per_incident,
    }

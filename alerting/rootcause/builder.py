"""Build the root-cause report of one incident from the store.

:func:`build_report` reads the incident, its alerts and anomalies, the change events of the
look-back window, the logs of the affected services and the past incidents, ranks the changes with
:func:`~opsradar.alerting.rootcause.scoring.rank_changes` and gathers the evidence around them.

The *onset* is the first **symptom** of the incident: an anomaly (or a rule alert's event) that is
not a change. Anomalies of commits, deploys, releases, config and Jira changes describe the change
itself (a huge commit): they are a risk signal of that change (``ScoringParams.risk_anomalous``) and
set the onset only when there is no symptom. An anomalous *build* is a symptom (CI): it is evidence
against the commits it built, and is not a candidate itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import ValidationError

from opsradar.alerting.rootcause.evidence import (
    event_series,
    feature_points,
    series_for,
    similar_incidents,
    stream_parts,
    template_changes,
    top_features,
)
from opsradar.alerting.rootcause.model import RootCauseReport, Series, TimelineItem
from opsradar.alerting.rootcause.onset import drift_start
from opsradar.alerting.rootcause.reads import reader_for
from opsradar.alerting.rootcause.scoring import CAUSE_KINDS, ScoringParams, rank_changes, with_test_results
from opsradar.config import EntityGraph
from opsradar.errors import OpsradarError
from opsradar.models import CHANGE_KINDS, Alert, Anomaly, Event, Incident, utcnow
from opsradar.store import Store

__all__ = ["IncidentNotFound", "ReportSettings", "build_report", "report_for", "save_report"]


class IncidentNotFound(OpsradarError, LookupError):
    """No incident has this id."""

    def __init__(self, incident_id: str) -> None:
        self.incident_id = incident_id
        super().__init__(f"no incident with id {incident_id!r}")


@dataclass(frozen=True)
class ReportSettings:
    """How far the report looks, and how much it shows."""

    lookback: timedelta = timedelta(hours=24)  # changes this long before the onset are candidates
    symptom_lookback: timedelta = timedelta(hours=1)  # anomalies this long before the onset count for 'order'
    drift_lookback: timedelta = timedelta(hours=48)  # values this long before the first anomaly fit the drift models
    drift_min_baseline: int = 24  # ... or, for a sparse stream, at least this many values before it,
    drift_max_lookback: timedelta = timedelta(days=7)  # looking back at most this far
    log_baseline: timedelta = timedelta(hours=6)  # logs before the template window are the baseline
    log_window_lead: timedelta = timedelta(minutes=30)  # the template window starts this long before the onset
    chart_lead: timedelta = timedelta(hours=1)
    chart_max_lead: timedelta = timedelta(hours=6)
    timeline_lead: timedelta = timedelta(hours=6)
    max_candidates: int = 20
    max_timeline_alerts: int = 200
    max_series: int = 4
    scoring: ScoringParams = field(default_factory=ScoringParams)

    @property
    def reach(self) -> timedelta:
        """How far before its incident's ``first_seen`` a report reads events: its symptoms may start
        ``symptom_lookback`` before it, changes count ``lookback`` before the onset, and a symptom's
        stream is read up to ``drift_max_lookback`` back (the timeline, the chart and the log
        baseline reach less far). Once the store deletes events older than that, the report is no
        longer what it was (:func:`save_report`).

        >>> ReportSettings().reach
        datetime.timedelta(days=8, seconds=3600)
        """
        before_symptom = max(self.drift_lookback, self.drift_max_lookback, self.chart_max_lead, self.timeline_lead,
                             self.log_baseline + self.log_window_lead)
        return self.symptom_lookback + self.lookback + before_symptom


def _affected(incident: Incident, alerts: Iterable[Alert]) -> set[str]:
    out = set(incident.entities) | {f"service:{s}" for s in incident.services}
    for a in alerts:
        if a.labels.get("entity"):
            out.add(a.labels["entity"])
        if a.labels.get("service"):
            out.add(f"service:{a.labels['service']}")
    return {e for e in out if ":" in e}


def _drift_points(store: Store, a: Anomaly, feature: str, until: datetime, st: ReportSettings) -> list[tuple[datetime, float]]:
    """The values of ``a``'s stream around it: ``drift_lookback`` before it, extended for a sparse stream
    (a job that builds a few times a day) until ``drift_min_baseline`` values precede the anomaly, as
    far back as ``drift_max_lookback``: a drift is a departure from a baseline, and two or three
    values are no baseline."""
    source, kind, entity = stream_parts(a)
    reader = reader_for(store)
    evs = list(reader.events(since=a.ts - st.drift_lookback, until=until, source=source, kinds=[kind], entities=[entity]))
    pts = feature_points(evs, feature)
    if sum(1 for t, _ in pts if t < a.ts) >= st.drift_min_baseline or st.drift_max_lookback <= st.drift_lookback:
        return pts
    evs = list(reader.events(since=a.ts - st.drift_max_lookback, until=until, source=source, kinds=[kind], entities=[entity]))
    pts = feature_points(evs, feature)
    before = [p for p in pts if p[0] < a.ts]
    keep_from = min(len(before) - st.drift_min_baseline,
                    next((i for i, p in enumerate(before) if p[0] >= a.ts - st.drift_lookback), len(before)))
    return pts[max(0, keep_from):]


def _drift_onset(
    store: Store, symptoms: list[Anomaly], onset: datetime, inc: Incident, st: ReportSettings
) -> tuple[datetime, str]:
    """The onset moved back to the estimated start of a drift, when a symptom stream shows one.

    Only the streams of the first symptoms count (those within ``symptom_lookback`` of the first
    anomaly): a stream that joined the incident hours later is a consequence or a neighbour's
    trouble, and its own drift says nothing about when this incident began.
    """
    basis = "first anomaly"
    seen: set[str] = set()
    latest = onset + st.symptom_lookback
    for a in sorted(symptoms, key=lambda a: a.ts):
        if a.ts > latest:
            break
        if a.stream in seen or not a.explanation or len(seen) >= 3:
            continue
        seen.add(a.stream)
        c = a.explanation[0]
        direction = 1.0 if c.value > c.expected else -1.0 if c.value < c.expected else 0.0
        until = min(inc.last_seen, a.ts + timedelta(hours=24)) + timedelta(seconds=1)
        pts = _drift_points(store, a, c.feature, until, st)
        start = drift_start(pts, a.ts, direction=direction)
        if start is not None and start < onset:
            onset, basis = start, f"estimated start of a drift in {a.stream} {c.feature} (first anomaly at {a.ts:%Y-%m-%d %H:%M} UTC)"
    return onset, basis


def build_report(
    incident: str | Incident,
    store: Store,
    graph: EntityGraph,
    *,
    now: datetime | None = None,
    settings: ReportSettings | None = None,
) -> RootCauseReport:
    """The root-cause report of ``incident`` (an id or an :class:`Incident`).

    Raises :class:`IncidentNotFound` for an unknown id.
    """
    st = settings or ReportSettings()
    if isinstance(incident, str):
        doc = store.get_incident(incident)
        if doc is None:
            raise IncidentNotFound(incident)
        incident = Incident.model_validate(doc)
    inc = incident
    alerts = []
    for d in store.alerts_of(inc.id):
        try:
            alerts.append(Alert.model_validate(d))
        except ValidationError:  # one malformed stored alert must not hide the report
            continue
    affected = _affected(inc, alerts)
    affected_services = {s for e in affected if (s := graph.service_of(e))}
    linked_ids = {a.anomaly_id for a in alerts if a.anomaly_id}

    def is_affected(entity: str) -> bool:
        return entity in affected or graph.service_of(entity) in affected_services

    # Anomalies: those the alerts point to, and those on the affected services around the incident.
    scan_start = inc.first_seen - st.symptom_lookback - st.lookback
    scan_end = inc.last_seen + timedelta(seconds=1)
    anomalies = []
    for d in store.iter_anomalies(since=scan_start, until=scan_end):
        try:
            a = Anomaly.model_validate(d)
        except ValidationError:
            continue
        if a.id in linked_ids or is_affected(a.entity):
            anomalies.append(a)
    linked = [a for a in anomalies if a.id in linked_ids]
    symptoms_linked = [a for a in linked if a.kind not in CAUSE_KINDS]
    # Rule alerts point at the events that matched.
    alert_events = [ev for al in alerts for i in al.event_ids[:50] if (ev := store.get_event(i)) is not None]
    symptom_events = [ev for ev in alert_events if ev.kind not in CAUSE_KINDS]
    symptom_times = [a.ts for a in symptoms_linked] + [ev.ts for ev in symptom_events]
    cause_times = [a.ts for a in linked if a.kind in CAUSE_KINDS] + [ev.ts for ev in alert_events if ev.kind in CAUSE_KINDS]
    if symptom_times:
        onset = min(symptom_times)
    elif cause_times:
        onset = min(cause_times)
    else:
        onset = min([a.starts_at for a in alerts] + [inc.first_seen])
    first_anomaly = onset
    onset, onset_basis = _drift_onset(store, symptoms_linked, onset, inc, st)
    symptoms = [a for a in anomalies if a.kind not in CAUSE_KINDS and a.ts >= onset - st.symptom_lookback]
    flagged_changes = {a.event_id for a in anomalies if a.kind in CAUSE_KINDS and a.event_id}
    flagged_changes |= {ev.id for ev in alert_events if ev.kind in CAUSE_KINDS}
    # The incident's own anomalous builds are symptoms, not candidates; so are the other events of
    # the anomalous streams (the builds of a job whose duration drifts are its measurements).
    own_symptoms = {a.event_id for a in symptoms_linked if a.event_id} | {ev.id for ev in symptom_events}
    symptom_streams = {stream_parts(a) for a in symptoms_linked}

    window_start = onset - st.lookback
    window_end = max(inc.last_seen, onset) + timedelta(minutes=1)
    changes = list(reader_for(store).events(since=window_start, until=window_end, kinds=sorted(CHANGE_KINDS)))
    jobs = sorted({e.entity for e in changes if e.kind in ("build", "deploy")})
    if jobs:  # failed tests live on the builds' test_run events
        tests = reader_for(store).events(since=window_start, until=window_end, kinds=["test_run"], entities=jobs)
        changes = with_test_results(changes, tests)
    own_symptoms |= {e.id for e in changes if (e.source, e.kind, e.entity) in symptom_streams}

    # Logs of the affected services: new and increased templates.
    log_start = onset - st.log_window_lead
    log_entities = set(affected)
    for svc_name in affected_services:
        svc = graph.services.get(svc_name)
        log_entities.add(f"service:{svc_name}")
        if svc is not None:
            log_entities |= {f"service:{s}" for s in svc.es_services} | {f"host:{h}" for h in svc.hosts}
    logs = list(reader_for(store).events(since=log_start - st.log_baseline, until=window_end, kinds=["log"],
                                  entities=sorted(log_entities)))
    templates = template_changes(logs, window_start=log_start, window_end=window_end)
    new_templates = [(ent, t.first_seen) for t in templates if t.status == "new" for ent in t.entities]

    symptom_points = [(a.ts, a.entity, a.kind) for a in symptoms] + [(ev.ts, ev.entity, ev.kind) for ev in symptom_events]
    ranked = rank_changes(changes, graph=graph, affected=affected, onset=onset, first_anomaly=first_anomaly,
                          anomalies=symptom_points,
                          new_templates=new_templates, flagged=flagged_changes, exclude=own_symptoms, params=st.scoring)
    excluded = sum(1 for e in changes if e.is_change and e.id not in own_symptoms) - len(ranked)
    candidates = ranked[: st.max_candidates]

    # Timeline: alerts, the onset, the incident's own entries, and the related changes near it.
    timeline: list[TimelineItem] = [TimelineItem(ts=first_anomaly, type="onset", title="first anomaly",
                                                 detail="; ".join(a.summary() for a in (symptoms_linked or linked)[:1]))]
    if onset < first_anomaly:
        timeline.append(TimelineItem(ts=onset, type="onset", title="drift start (estimated)", detail=onset_basis))
    for al in alerts[: st.max_timeline_alerts]:
        timeline.append(TimelineItem(ts=al.starts_at, type="alert", title=al.title, entity=al.labels.get("entity"),
                                     detail=f"{al.severity.value}" + (f", rule {al.rule}" if al.rule else "")))
    for entry in inc.timeline:
        timeline.append(TimelineItem(ts=entry.ts, type="incident", title=entry.what,
                                     detail=entry.detail + (f" ({entry.actor})" if entry.actor else "")))
    rank_of = {c.event_id: c.rank for c in candidates}
    for c in ranked:
        if c.event_id in rank_of or (c.ts >= onset - st.timeline_lead):
            timeline.append(TimelineItem(ts=c.ts, type="change", title=c.summary, entity=c.entity,
                                         detail=f"score {c.score:.3f}", candidate_rank=rank_of.get(c.event_id)))
    timeline.sort(key=lambda t: (t.ts, t.type, t.title))

    # Similar past incidents.
    past = []
    for d in store.list_incidents(limit=500):
        try:
            past.append(Incident.model_validate(d))
        except ValidationError:
            continue
    feedback: dict[str, list[dict[str, object]]] = {}
    for row in store.feedback_for("incident"):
        feedback.setdefault(str(row["target_id"]), []).append(row)
    similar = similar_incidents(inc, past, feedback=feedback)

    # The chart: the most anomalous affected streams, around the onset and the top changes.
    chart_start = onset - st.chart_lead
    for c in candidates[:3]:
        eff = c.effective_ts or c.ts
        if onset - st.chart_max_lead <= eff < chart_start:
            chart_start = eff - timedelta(minutes=5)
    chart_end = max(inc.last_seen, onset + timedelta(minutes=30))
    by_stream: dict[str, list[Anomaly]] = {}
    for a in sorted(symptoms_linked or linked or symptoms, key=lambda a: a.ts):
        by_stream.setdefault(a.stream, []).append(a)
    for a in sorted(symptoms, key=lambda a: a.ts):
        if a.stream in by_stream and a not in by_stream[a.stream]:
            by_stream[a.stream].append(a)
    streams = sorted(by_stream.values(), key=lambda xs: -max(a.score for a in xs))[: st.max_series]
    series: list[Series] = []
    for group in streams:
        group.sort(key=lambda a: a.ts)
        source, kind, entity = stream_parts(group[0])
        evs: list[Event] = list(reader_for(store).events(since=chart_start, until=chart_end, source=source, kinds=[kind],
                                                  entities=[entity]))
        series.append(series_for(group, evs, start=chart_start, end=chart_end))
    # Incidents raised by rules on events: chart the streams of the events that matched.
    rule_streams: dict[tuple[str, str, str], list[datetime]] = {}
    for ev in symptom_events:
        rule_streams.setdefault((ev.source, ev.kind, ev.entity), []).append(ev.ts)
    for key, marks in sorted(rule_streams.items(), key=lambda kv: -len(kv[1])):
        if len(series) >= st.max_series or any(s.stream == "|".join(key) for s in series):
            continue
        evs = list(reader_for(store).events(since=chart_start, until=chart_end, source=key[0], kinds=[key[1]], entities=[key[2]]))
        series.append(event_series(key, evs, marks, start=chart_start, end=chart_end))

    return RootCauseReport(
        incident_id=inc.id, title=inc.title, status=inc.status.value, severity=inc.severity.value,
        services=inc.services, entities=sorted(affected), first_seen=inc.first_seen, last_seen=inc.last_seen,
        onset=onset, first_anomaly=first_anomaly, onset_basis=onset_basis, generated_at=now or utcnow(), window_start=window_start, window_end=window_end,
        chart_start=chart_start, chart_end=chart_end,
        candidates=candidates, excluded_unrelated=excluded, timeline=timeline,
        top_features=top_features(symptoms_linked or linked or symptoms), log_templates=templates,
        similar_incidents=similar, series=series,
        scoring={**st.scoring.as_dict(), "lookback_s": st.lookback.total_seconds()},
    )


def save_report(incident: str | Incident, store: Store, graph: EntityGraph, *, now: datetime | None = None,
                settings: ReportSettings | None = None) -> RootCauseReport:
    """Build the report of ``incident`` and keep it in the store (``saved=True``): from then on
    :func:`report_for` serves this copy. For the owner's retention, before it deletes the events the
    report is built from."""
    report = build_report(incident, store, graph, now=now, settings=settings).model_copy(update={"saved": True})
    store.save_report(report.incident_id, report.model_dump(mode="json"))
    return report


def report_for(incident_id: str, store: Store, graph: EntityGraph, *, now: datetime | None = None) -> RootCauseReport:
    """The report the API and ``opsradar report`` show: the saved one (:func:`save_report`) if the
    incident has one, with the incident's current status, else one built now.

    Raises :class:`IncidentNotFound` for an unknown id.
    """
    doc = store.get_incident(incident_id)
    if doc is None:
        raise IncidentNotFound(incident_id)
    saved = store.saved_report(incident_id)
    if saved is not None:
        try:
            report = RootCauseReport.model_validate(saved)
        except ValidationError:  # a copy this version cannot read: build what the store still holds
            pass
        else:
            return report.model_copy(update={"status": str(doc.get("status", report.status))})
    return build_report(Incident.model_validate(doc), store, graph, now=now)

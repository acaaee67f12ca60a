"""Correlation: alerts that survived the rules are grouped into incidents.

The algorithm, for one alert at time ``now`` (see ``docs/correlation.md`` for the long version):

1. **Dedup by fingerprint.** An alert whose fingerprint is already part of an open or acknowledged
   incident is a duplicate: the incident's ``last_seen`` moves, nothing else changes.
2. **Hysteresis (flapping).** When the fingerprint — or the ``group_by`` key — belongs to an incident
   resolved less than ``reopen_window`` ago, that incident is *reopened* instead of a new one opening.
   A resolved incident is never joined by any other alert: after ``reopen_window`` it is closed for good.
3. **Join an active incident.** Candidates are the open/acknowledged incidents seen within
   ``window``. A candidate matches on, strongest first:

   - the same ``group_by`` key (the labels the routing rules group by);
   - the **entity graph**: some entity of the alert (its ``entity`` label, its service and the
     service that owns the entity) lies within ``max_graph_distance`` hops of the incident's
     *origin* (the entities of the alert that opened it) through service ↔ repository ↔ Jenkins job
     ↔ Jira project ↔ ES service ↔ dependencies. A storm that spreads from a deploy job to its
     service's logs, tickets and commits, and to the services depending on it, is one incident;
     measuring from the origin (not from everything the incident has absorbed) keeps incidents from
     chaining across the whole estate. An incident of one alert less severe than the new one does
     not absorb it from another entity (low evidence must not swallow a stronger, later burst);
   - **title similarity** (token Jaccard of normalised titles / log templates ≥ ``title_similarity``),
     the secondary signal: on its own it joins only alerts the graph knows nothing about, otherwise
     it breaks ties between graph candidates, and it never joins across two different ``group_by`` keys.

   The best candidate wins (then the most recently seen one).
4. Otherwise a **new incident opens**.

An incident with no new alert for ``quiet_period`` resolves itself (:meth:`Correlator.tick`).

Every change is written to the store in one transaction under :func:`~opsradar.alerting.incidents.incident_lock`,
so two threads or two processes adding the same alert at once make one incident.

>>> from datetime import datetime, timedelta, timezone
>>> from opsradar.config import CorrelationConfig, EntityGraph
>>> from opsradar.models import Alert
>>> from opsradar.store import Store
>>> graph = EntityGraph.model_validate({"services": {"shop": {"jobs": ["shop-deploy"]}}})
>>> c = Correlator(Store("sqlite://"), graph, CorrelationConfig())
>>> t = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
>>> a = Alert.from_labels(title="deploy failed", labels={"entity": "job:shop-deploy", "source": "jenkins"}, starts_at=t)
>>> b = Alert.from_labels(title="5xx up", labels={"service": "shop", "source": "elasticsearch"}, starts_at=t)
>>> u1, u2 = c.add(a, t), c.add(b, t + timedelta(minutes=2))
>>> u1.changes, u2.changes, u1.incident.id == u2.incident.id
((<Change.opened: 'opened'>,), (<Change.joined: 'joined'>,), True)
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, select

from opsradar import schema as t
from opsradar.alerting.incidents import (
    FeedbackResult,
    IncidentNotFound,
    incident_lock,
    load_incident,
    proposed_drop_rule,
    revision,
    save_incident,
    transition,
    trim_timeline,
)
from opsradar.alerting.noise import NoiseMetrics
from opsradar.config import CorrelationConfig, EntityGraph
from opsradar.models import Alert, AlertStatus, Incident, IncidentStatus, Severity, TimelineEntry, utcnow
from opsradar.store import Store

__all__ = ["Change", "Correlator", "IncidentUpdate", "group_key_of", "title_similarity"]

_ACTIVE = (IncidentStatus.open.value, IncidentStatus.acknowledged.value)
_NUMBERS = re.compile(r"\b(?:0x)?[0-9a-f]*\d[0-9a-f]*\b|<\*>")
_TOKEN = re.compile(r"[a-z0-9#_\-.:/]+")


class Change(StrEnum):
    """What an update did to its incident."""

    opened = "opened"
    joined = "joined"
    duplicate = "duplicate"
    new_service = "new_service"
    escalated = "escalated"
    reopened = "reopened"
    acknowledged = "acknowledged"
    resolved = "resolved"
    feedback = "feedback"


#: Changes worth a thread reply in Slack (the rest only update the parent message).
NOTABLE = frozenset({Change.new_service, Change.escalated, Change.reopened, Change.acknowledged, Change.resolved})


@dataclass(frozen=True)
class IncidentUpdate:
    """The incident an alert (or an action) landed in, and what changed."""

    incident: Incident | None
    changes: tuple[Change, ...]
    alert: Alert | None = None
    new_services: tuple[str, ...] = ()
    actor: str | None = None

    @property
    def incident_id(self) -> str | None:
        return self.incident.id if self.incident else None

    @property
    def revision(self) -> int:
        return revision(self.incident) if self.incident else 0

    @property
    def notable(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c in NOTABLE)

    @property
    def visible(self) -> bool:
        """Whether people should see this change (anything but a duplicate or a no-op)."""
        return bool(self.changes) and self.changes != (Change.duplicate,)


def group_key_of(labels: dict[str, str], group_by: Sequence[str] | None) -> str:
    """The group key of an alert: its ``group_by`` labels (empty when there is no grouping).

    >>> group_key_of({"service": "shop", "x": "1"}, ["service"])
    'service="shop"'
    """
    if not group_by or list(group_by) == ["..."]:
        return ""
    return ",".join(f'{n}="{labels.get(n, "")}"' for n in sorted(group_by))


def _tokens(title: str) -> set[str]:
    return set(_TOKEN.findall(_NUMBERS.sub("#", title.lower())))


def title_similarity(a: str, b: str) -> float:
    """Token Jaccard of two titles with numbers and ids masked (log templates compare alike).

    >>> title_similarity("Timeout calling db-7 after 3000 ms", "Timeout calling db-2 after 5000 ms")
    1.0
    >>> title_similarity("disk full", "build failed")
    0.0
    """
    ta, tb = _tokens(a), _tokens(b)
    if not ta or not tb:
        return 0.0
    return len(ta & tb) / len(ta | tb)


@dataclass
class _Candidate:
    incident: Incident
    score: float
    why: str = field(default="")


class Correlator:
    """Groups alerts into incidents stored in ``store`` (see the module docstring for the algorithm)."""

    def __init__(self, store: Store, graph: EntityGraph, cfg: CorrelationConfig | None = None, *,
                 metrics: NoiseMetrics | None = None, max_candidates: int = 500) -> None:
        self.store = store
        self.graph = graph
        self.cfg = cfg or CorrelationConfig()
        self.metrics = metrics
        self.max_candidates = max_candidates
        self._adj = graph.neighbours()
        self._seeds: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ entities and the graph

    def entities_of(self, alert: Alert) -> set[str]:
        """The qualified entities an alert is about (its entity, its service, the entity's owner)."""
        out: set[str] = set()
        entity = alert.labels.get("entity")
        if entity and ":" in entity:
            out.add(entity)
            owner = self.graph.service_of(entity)
            if owner:
                out.add(f"service:{owner}")
        if alert.service:
            out.add(f"service:{alert.service}")
            owner = self.graph.service_of(f"service:{alert.service}")
            if owner:
                out.add(f"service:{owner}")
        return out

    def _services_of(self, entities: Iterable[str]) -> list[str]:
        return sorted({self.graph.service_of(e) or e.partition(":")[2] for e in entities if e.startswith("service:")})

    def _known(self, entities: Iterable[str]) -> bool:
        return any(e in self._adj for e in entities)

    def _distance(self, sources: set[str], targets: set[str]) -> int | None:
        """Fewest hops from any of ``sources`` to any of ``targets`` (None beyond the limit)."""
        limit = self.cfg.max_graph_distance
        if sources & targets:
            return 0
        seen = set(sources)
        frontier = deque((s, 0) for s in sources)
        while frontier:
            node, d = frontier.popleft()
            if d >= limit:
                continue
            for nxt in self._adj.get(node, ()):
                if nxt in targets:
                    return d + 1
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append((nxt, d + 1))
        return None

    # ------------------------------------------------------------------ the public API

    def add(self, alert: Alert, now: datetime | None = None, *, group_by: Sequence[str] | None = None,
            receivers: Sequence[str] | None = None) -> IncidentUpdate:
        """Correlate one alert; returns the incident it landed in and what changed."""
        now = now or utcnow()
        gk = group_key_of(alert.labels, group_by)
        recv = list(receivers) if receivers is not None else list(alert.receivers)
        with incident_lock(self.store) as conn:
            update = self._add(conn, alert, now, gk, recv)
        if self.metrics is not None and update.changes and update.changes != (Change.duplicate,):
            rule = alert.rule or alert.labels.get("alertname")
            self.metrics.record("alerts", source=alert.source, rule=rule)
            if Change.opened in update.changes:
                self.metrics.record("incidents", source=alert.source, rule=rule)
        return update

    def tick(self, now: datetime | None = None) -> list[IncidentUpdate]:
        """Resolve the incidents quiet for ``quiet_period``; returns their updates."""
        now = now or utcnow()
        cutoff = now - self.cfg.quiet_period
        out = []
        with incident_lock(self.store) as conn:
            q = select(t.incidents.c.doc).where(t.incidents.c.status.in_(_ACTIVE), t.incidents.c.last_seen < cutoff)
            for (doc,) in conn.execute(q).all():
                inc = Incident.model_validate(doc)
                transition(inc, IncidentStatus.resolved, now=now, actor="opsradar",
                           detail=f"no new alert for {self.cfg.quiet_period}")
                save_incident(self.store, conn, inc)
                self.store.audit("opsradar", "incident.auto_resolve", f"incident:{inc.id}", {}, conn=conn)
                out.append(IncidentUpdate(inc, (Change.resolved,), actor="opsradar"))
        return out

    def ack(self, incident_id: str, actor: str, now: datetime | None = None) -> IncidentUpdate:
        """Acknowledge an incident (audited). Acknowledging twice changes nothing."""
        return self._set_status(incident_id, IncidentStatus.acknowledged, actor, now or utcnow())

    def resolve(self, incident_id: str, actor: str, now: datetime | None = None) -> IncidentUpdate:
        """Resolve an incident by hand (audited)."""
        return self._set_status(incident_id, IncidentStatus.resolved, actor, now or utcnow())

    def set_root_cause(self, incident_id: str, candidates: Sequence[dict[str, Any]]) -> Incident:
        """Store the ranked root-cause candidates on the incident (under the incident lock, so a
        concurrent change — an alert joining, Slack recording its message — is not overwritten)."""
        with incident_lock(self.store) as conn:
            inc = load_incident(conn, incident_id)
            inc.root_cause = [dict(c) for c in candidates]
            save_incident(self.store, conn, inc)
        return inc

    def get(self, incident_id: str) -> Incident:
        doc = self.store.get_incident(incident_id)
        if doc is None:
            raise IncidentNotFound(incident_id)
        return Incident.model_validate(doc)

    def feedback(self, target_type: str, target_id: str, verdict: str, actor: str, reason: str = "",
                 now: datetime | None = None) -> FeedbackResult:
        """Mark an incident or an alert true or false positive (stored with who and why).

        For a false positive, the result proposes a drop rule (YAML text) matching what the alerts
        share; it is shown to the user and never applied.
        """
        if target_type not in ("incident", "alert"):
            raise ValueError(f"target_type must be 'incident' or 'alert', got {target_type!r}")
        now = now or utcnow()
        if target_type == "incident":
            with incident_lock(self.store) as conn:
                inc = load_incident(conn, target_id)
                inc.feedback = verdict
                inc.timeline.append(TimelineEntry(ts=now, what="feedback", detail=f"{verdict}: {reason}".rstrip(": "),
                                                  actor=actor))
                save_incident(self.store, conn, inc)
            label_sets = [d.get("labels", {}) for d in self.store.alerts_of(target_id)]
        else:
            got = self.store.get_alert(target_id)
            if got is None:
                raise KeyError(f"no alert with fingerprint {target_id!r}")
            label_sets = [got[0].get("labels", {})]
        self.store.add_feedback(target_type=target_type, target_id=target_id, verdict=verdict, actor=actor,
                                reason=reason)
        rule = proposed_drop_rule(label_sets, reason=reason) if verdict == "false_positive" else None
        return FeedbackResult(target_type, target_id, verdict, actor, rule)

    # ------------------------------------------------------------------ internals

    def _set_status(self, incident_id: str, status: IncidentStatus, actor: str, now: datetime) -> IncidentUpdate:
        with incident_lock(self.store) as conn:
            inc = load_incident(conn, incident_id)
            if inc.status == status:
                return IncidentUpdate(inc, (), actor=actor)
            transition(inc, status, now=now, actor=actor)
            save_incident(self.store, conn, inc)
            self.store.audit(actor, f"incident.{status.value}", f"incident:{inc.id}", {}, conn=conn)
        return IncidentUpdate(inc, (Change(status.value),), actor=actor)

    def _save_alert(self, conn: Connection, alert: Alert, incident_id: str | None) -> None:
        self.store.save_alert(alert.model_dump(mode="json"), incident_id=incident_id, conn=conn)

    def _add(self, conn: Connection, alert: Alert, now: datetime, gk: str, recv: list[str]) -> IncidentUpdate:
        row = conn.execute(select(t.alerts.c.incident_id).where(t.alerts.c.fingerprint == alert.fingerprint)).first()
        if row is not None and row.incident_id:
            inc = load_incident(conn, row.incident_id)
            if alert.status == AlertStatus.resolved:
                return self._alert_resolved(conn, inc, alert, now)
            if inc.status != IncidentStatus.resolved:
                inc.last_seen = max(inc.last_seen, now)
                save_incident(self.store, conn, inc)
                return IncidentUpdate(inc, (Change.duplicate,), alert)
            if inc.resolved_at is not None and now - inc.resolved_at <= self.cfg.reopen_window:
                return self._reopen(conn, inc, alert, now, recv)
            # resolved long ago: this is a new occurrence, correlated afresh below
        if alert.status == AlertStatus.resolved:
            self._save_alert(conn, alert, row.incident_id if row is not None else None)
            return IncidentUpdate(None, (), alert)
        if gk:
            flapping = self._recently_resolved_group(conn, gk, now)
            if flapping is not None:
                return self._reopen(conn, flapping, alert, now, recv)
        entities = self.entities_of(alert)
        best = self._best_candidate(conn, alert, entities, gk, now)
        if best is not None:
            return self._join(conn, best.incident, alert, entities, now, recv, why=best.why)
        return self._open(conn, alert, entities, gk, now, recv)

    def _recently_resolved_group(self, conn: Connection, gk: str, now: datetime) -> Incident | None:
        q = (select(t.incidents.c.doc)
             .where(t.incidents.c.status == IncidentStatus.resolved.value, t.incidents.c.group_key == gk,
                    t.incidents.c.last_seen >= now - self.cfg.reopen_window - self.cfg.quiet_period)
             .order_by(t.incidents.c.last_seen.desc()))
        for (doc,) in conn.execute(q).all():
            inc = Incident.model_validate(doc)
            if inc.resolved_at is not None and now - inc.resolved_at <= self.cfg.reopen_window:
                return inc
        return None

    def _best_candidate(self, conn: Connection, alert: Alert, entities: set[str], gk: str,
                        now: datetime) -> _Candidate | None:
        q = (select(t.incidents.c.doc)
             .where(t.incidents.c.status.in_(_ACTIVE), t.incidents.c.last_seen >= now - self.cfg.window)
             .order_by(t.incidents.c.last_seen.desc()).limit(self.max_candidates))
        known = self._known(entities)
        best: _Candidate | None = None
        for (doc,) in conn.execute(q).all():
            inc = Incident.model_validate(doc)
            score, why = 0.0, ""
            if gk and inc.group_key == gk:
                score, why = 3.0, f"same group {gk}"
            seed = self._seed(conn, inc)
            dist = self._distance(entities, seed) if entities and seed else None
            if dist and score < 2.0 and self._weaker_lone(inc, alert):
                dist = None  # a lone weaker alert elsewhere does not take over a stronger burst
            if dist is not None and score < 2.0:
                score, why = 2.0 + 1.0 / (1 + dist), f"entity graph: {dist} hop(s)"
            sim = max((title_similarity(alert.title, title) for title in self._titles(inc)), default=0.0)
            if sim >= self.cfg.title_similarity:
                if score > 0:
                    score += sim / 10
                elif (not known or not self._known(inc.entities)) and not (gk and inc.group_key and inc.group_key != gk):
                    score, why = 1.0 + sim / 10, f"similar title ({sim:.2f})"
            if score > 0 and (best is None or score > best.score):
                best = _Candidate(inc, score, why)
        return best

    @staticmethod
    def _weaker_lone(inc: Incident, alert: Alert) -> bool:
        """Whether ``inc`` is one alert less severe than ``alert``: too little evidence to hold it.

        Such an incident does not absorb the alert through the entity graph from another entity
        (it still does on a shared entity or group key): a lone slow build on one service must not
        become the headline of a stronger error burst on a dependent service half an hour later,
        which opens its own incident, measured from its own origin.
        """
        return inc.alert_count <= 1 and inc.severity.rank < alert.severity.rank

    def _seed(self, conn: Connection, inc: Incident) -> set[str]:
        """The entities of the alert that opened the incident: graph relations are measured from them,
        so an incident grows by ``max_graph_distance`` around its origin and never chains on."""
        seed = self._seeds.get(inc.id)
        if seed is None:
            seed = set()
            if inc.alert_fingerprints:
                doc = conn.execute(select(t.alerts.c.doc).where(
                    t.alerts.c.fingerprint == inc.alert_fingerprints[0])).scalar()
                if doc is not None:
                    seed = self.entities_of(Alert.model_validate(doc))
            if len(self._seeds) > 10_000:
                self._seeds.clear()
            self._seeds[inc.id] = seed
        return seed

    def _titles(self, inc: Incident) -> list[str]:
        return [e.detail for e in inc.timeline if e.what in ("opened", "joined")][-20:] or [inc.title]

    def _absorb(self, inc: Incident, alert: Alert, entities: set[str], now: datetime,
                recv: list[str]) -> tuple[list[str], bool]:
        """Merge the alert's facts into the incident; returns the new services and whether it escalated."""
        before = set(inc.services)
        if alert.fingerprint not in inc.alert_fingerprints:
            inc.alert_fingerprints.append(alert.fingerprint)
            inc.alert_count += 1
            if alert.anomaly_id:
                inc.anomaly_count += 1
        inc.last_seen = max(inc.last_seen, now)
        inc.first_seen = min(inc.first_seen, now)
        inc.entities = sorted(set(inc.entities) | entities)
        inc.services = sorted(before | set(self._services_of(entities)))
        if alert.source and alert.source not in inc.sources:
            inc.sources = sorted({*inc.sources, alert.source})
        for r in recv:
            if r not in inc.receivers:
                inc.receivers.append(r)
        escalated = alert.severity.rank > inc.severity.rank
        if escalated:
            inc.severity = alert.severity
        return sorted(set(inc.services) - before), escalated

    def _open(self, conn: Connection, alert: Alert, entities: set[str], gk: str, now: datetime,
              recv: list[str]) -> IncidentUpdate:
        digest = hashlib.sha256(f"{alert.fingerprint}|{now.isoformat()}".encode()).hexdigest()[:10]
        inc = Incident(id=f"inc-{now:%Y%m%d-%H%M%S}-{digest}", title=alert.title, severity=Severity.info,
                       first_seen=now, last_seen=now, group_key=gk)
        self._absorb(inc, alert, entities, now, recv)
        inc.severity = alert.severity
        inc.timeline.append(TimelineEntry(ts=now, what="opened", detail=alert.title))
        save_incident(self.store, conn, inc)
        self._save_alert(conn, alert, inc.id)
        return IncidentUpdate(inc, (Change.opened,), alert, tuple(inc.services))

    def _join(self, conn: Connection, inc: Incident, alert: Alert, entities: set[str], now: datetime,
              recv: list[str], *, why: str) -> IncidentUpdate:
        new_services, escalated = self._absorb(inc, alert, entities, now, recv)
        inc.timeline.append(TimelineEntry(ts=now, what="joined", detail=alert.title, actor=None))
        trim_timeline(inc)
        changes = [Change.joined]
        if new_services:
            inc.timeline.append(TimelineEntry(ts=now, what="new_service", detail=", ".join(new_services)))
            changes.append(Change.new_service)
        if escalated:
            inc.timeline.append(TimelineEntry(ts=now, what="escalated", detail=inc.severity.value))
            changes.append(Change.escalated)
        save_incident(self.store, conn, inc)
        self._save_alert(conn, alert, inc.id)
        return IncidentUpdate(inc, tuple(changes), alert, tuple(new_services))

    def _reopen(self, conn: Connection, inc: Incident, alert: Alert, now: datetime, recv: list[str]) -> IncidentUpdate:
        transition(inc, IncidentStatus.open, now=now, actor=None, detail=alert.title)
        new_services, escalated = self._absorb(inc, alert, self.entities_of(alert), now, recv)
        changes = [Change.reopened]
        if new_services:
            inc.timeline.append(TimelineEntry(ts=now, what="new_service", detail=", ".join(new_services)))
            changes.append(Change.new_service)
        if escalated:
            inc.timeline.append(TimelineEntry(ts=now, what="escalated", detail=inc.severity.value))
            changes.append(Change.escalated)
        save_incident(self.store, conn, inc)
        self._save_alert(conn, alert, inc.id)
        return IncidentUpdate(inc, tuple(changes), alert, tuple(new_services))

    def _alert_resolved(self, conn: Connection, inc: Incident, alert: Alert, now: datetime) -> IncidentUpdate:
        """The source says an alert stopped firing; the incident resolves when all its alerts have."""
        self._save_alert(conn, alert, inc.id)
        if inc.status == IncidentStatus.resolved:
            return IncidentUpdate(inc, (), alert)
        statuses = conn.execute(select(t.alerts.c.status).where(t.alerts.c.incident_id == inc.id)).scalars().all()
        if statuses and all(s == AlertStatus.resolved.value for s in statuses):
            transition(inc, IncidentStatus.resolved, now=now, actor="opsradar", detail="all alerts resolved")
            save_incident(self.store, conn, inc)
            return IncidentUpdate(inc, (Change.resolved,), alert)
        return IncidentUpdate(inc, (), alert)

"""The pipeline, as plain Python: events → detectors → anomalies → rules → alerts → incidents →
outbox → Slack, with root-cause candidates attached to incidents.

:class:`Pipeline` owns the incident state (rules, correlation, notifier) and, locally, the detector
shards. On Ray Serve the detector shards live in their own deployments and call
:meth:`Pipeline.handle` with the anomalies they found; locally :meth:`Pipeline.ingest` does it all
in-process. Either way the logic is this one class, testable without Ray.

Root-cause ranking is synchronous by default (the incident's first message already names its likely
causes; the local demo, the scenarios and the tests stay deterministic). With ``rank_async=True`` (the
Ray ``Owner``) a :class:`Ranker` thread ranks off the alerting path: requests for one incident that
wait together are ranked once, the result is attached with ``Correlator.set_root_cause`` under the
pipeline lock and the incident's message is updated in place.

Time is **event time**: the pipeline's clock is the newest event it has processed (its watermark),
so replaying last week's history behaves as it did live (group windows, quiet periods, reopen
windows), and going from history to live needs no switch.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from prometheus_client import REGISTRY, generate_latest

from opsradar.alerting.alerts import alert_from_anomaly
from opsradar.alerting.correlation import Change, Correlator, IncidentUpdate
from opsradar.alerting.noise import NoiseMetrics, default_metrics
from opsradar.alerting.notifiers.outbox import Notifier, OutboxWorker
from opsradar.alerting.rules.reload import RuleManager
from opsradar.config import Config
from opsradar.detectors.engine import DetectionEngine, shard_of
from opsradar.models import (
    CHANGE_KINDS,
    MAX_AHEAD_OF_CLOCK,
    Alert,
    Anomaly,
    Event,
    Incident,
    IncidentStatus,
    Severity,
    utcnow,
)
from opsradar.serving.metrics import EVENTS_AHEAD, EVENTS_PRUNED, REPORTS_SAVED
from opsradar.store import Store

__all__ = ["LocalDetectors", "Pipeline", "PipelineStats", "Ranker"]

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "detectors/shard-"
#: how often (event time) an incident's root-cause ranking is refreshed as alerts join it
RANK_EVERY = timedelta(minutes=10)
#: a change that arrives after its incident was ranked is a candidate if it is this much older than the
#: incident at most (the report looks 24 h back from an onset, which a drift may move earlier)
LATE_CHANGE_LOOKBACK = timedelta(hours=48)
#: How often (wall clock) :meth:`Pipeline.remind` looks for incidents due a reminder, and how many
#: open incidents, newest first, it looks at.
REMIND_CHECK_EVERY = timedelta(seconds=30)
REMIND_MAX_INCIDENTS = 1000
#: How often (wall clock) :meth:`Pipeline.prune` deletes the events past ``store.event_retention``.
PRUNE_EVERY = timedelta(minutes=10)
#: Reports :meth:`Pipeline.prune` saves per round at most; the events of the incidents left for the
#: next round are kept until then.
SAVE_REPORTS_PER_PRUNE = 50
#: candidate changes that rank an open incident again when they arrive late; builds are candidates
#: too, but they follow their commits, and every CI run would otherwise rank again
_LATE_CHANGE_KINDS = CHANGE_KINDS - {"build"}
#: event-time order (then id, for ties), and an event's source: C getters, for the owner's batches
_BY_TIME, _SOURCE = attrgetter("ts", "id"), attrgetter("source")


class LocalDetectors:
    """``n`` detector shards in this process; an event goes to the shard of its stream key."""

    def __init__(self, cfg: Config, store: Store | None = None) -> None:
        self.n = cfg.detectors.shards
        self.store = store
        self.engines = [DetectionEngine(cfg.detectors, cfg.entities) for _ in range(self.n)]
        if store is not None:
            for i, engine in enumerate(self.engines):
                found = store.load_checkpoint(f"{CHECKPOINT_PREFIX}{i}")
                if found is not None:
                    engine.restore(_engine_blob(*found))

    def shard(self, event: Event) -> int:
        return shard_of(DetectionEngine.stream_key(event), self.n)

    def detect(self, events: Sequence[Event]) -> list[Anomaly]:
        out: list[Anomaly] = []
        for e in events:
            out += self.engines[self.shard(e)].process(e)
        return out

    def checkpoint(self) -> None:
        if self.store is not None:
            self.store.save_checkpoints({f"{CHECKPOINT_PREFIX}{i}": e.snapshot() for i, e in enumerate(self.engines)})

    @property
    def streams(self) -> int:
        return sum(e.streams for e in self.engines)


def _engine_blob(blob: bytes, version: str) -> bytes:
    """The engine snapshot inside a shard checkpoint: the Ray shards write it with a high-water
    mark (``serving/shardstate.py``), this process writes the snapshot alone."""
    from opsradar.serving.shardstate import CHECKPOINT_FORMAT

    if version != CHECKPOINT_FORMAT:
        return blob
    doc = pickle.loads(blob)  # noqa: S301 - our own checkpoint
    return bytes(doc["engine"])


@dataclass
class PipelineStats:
    events: int = 0
    anomalies: int = 0
    alerts: int = 0
    dropped: int = 0
    silenced: int = 0
    inhibited: int = 0
    below_severity: int = 0
    incidents_opened: int = 0
    notifications: int = 0
    future_events: int = 0  # later than the wall clock allows: event time did not advance to them
    pruned: int = 0  # events deleted past store.event_retention
    reports_saved: int = 0  # root-cause reports saved before the events they read were deleted
    by_rule: dict[str, int] = field(default_factory=dict)


class Ranker:
    """One background thread that runs ``rank(incident_id, now)`` for the incidents submitted.

    Requests for an incident still waiting are coalesced into one (with the newest ``now``); an
    incident is ranked again only if it is submitted again after its ranking started. Incidents are
    ranked in the order they were first submitted. A failing ``rank`` is logged and the thread goes
    on. :meth:`close` does not wait for what is pending (it is dropped): a shutdown never waits on
    a ranking longer than ``timeout`` for the one in progress.
    """

    def __init__(self, rank: Callable[[str, datetime], None], *, name: str = "rootcause-ranker") -> None:
        self._rank = rank
        self._pending: dict[str, datetime] = {}
        self._busy = False
        self._closed = False
        self._cv = threading.Condition()
        self.submitted = self.coalesced = self.ranked = self.failed = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    def submit(self, incident_id: str, now: datetime) -> None:
        with self._cv:
            if self._closed:
                return
            self.submitted += 1
            prev = self._pending.get(incident_id)
            if prev is not None:
                self.coalesced += 1
                self._pending[incident_id] = max(prev, now)
                return
            self._pending[incident_id] = now
            self._cv.notify_all()

    @property
    def backlog(self) -> int:
        """Incidents waiting for a ranking, plus the one being ranked."""
        with self._cv:
            return len(self._pending) + self._busy

    def join(self, timeout: float | None = None) -> bool:
        """Wait until nothing is pending or running; False if ``timeout`` passed first or it is closed."""
        with self._cv:
            return self._cv.wait_for(lambda: self._closed or (not self._pending and not self._busy), timeout) \
                and not self._pending and not self._busy

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread; what is pending is dropped."""
        with self._cv:
            self._closed = True
            self._pending.clear()
            self._cv.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._closed or bool(self._pending))
                if self._closed:
                    return
                incident_id = next(iter(self._pending))
                now = self._pending.pop(incident_id)
                self._busy = True
            try:
                self._rank(incident_id, now)
                ok = True
            except Exception:  # a ranking failure must never stop the thread (nor alerting)
                log.exception("root-cause ranking failed for incident %s", incident_id)
                ok = False
            with self._cv:
                self._busy = False
                self.ranked += ok
                self.failed += not ok
                self._cv.notify_all()


class Pipeline:
    """Owns rules, correlation and notification state; see the module docstring."""

    def __init__(
        self,
        cfg: Config,
        store: Store,
        *,
        detectors: LocalDetectors | None = None,
        rules_paths: Sequence[str] | None = None,
        worker: OutboxWorker | None = None,
        metrics: NoiseMetrics | None = None,
        notify: bool = True,
        interaction_handler: Any = None,
        sources: Callable[[], dict[str, Any]] | None = None,
        rank_async: bool = False,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.graph = cfg.entities
        self.detectors = detectors if detectors is not None else LocalDetectors(cfg, store)
        self.metrics = metrics or default_metrics()
        self.rules = RuleManager(list(rules_paths or cfg.rules.paths), store=store, graph=self.graph)
        self.correlator = Correlator(store, self.graph, cfg.correlation, metrics=self.metrics)
        self.notifier = Notifier(store, cfg.slack, targets=self._targets(), metrics=self.metrics,
                                 clock=worker.clock if worker is not None else utcnow)
        self.worker = worker
        self.notify = notify
        self.interaction_handler = interaction_handler
        self._sources = sources
        self.watermark: datetime | None = None
        self._ranked_at: dict[str, datetime] = {}
        self._reminded_at: datetime | None = None  # wall clock (see remind)
        self._ahead_limit = utcnow() + MAX_AHEAD_OF_CLOCK  # see _advance; refreshed when passed
        self._pruned_at: datetime | None = None  # wall clock (see prune)
        self.stats = PipelineStats()
        self._lock = threading.RLock()
        #: ranks root causes off the alerting path when ``rank_async`` (see the module docstring)
        self.ranker: Ranker | None = Ranker(self._rank_later) if rank_async else None

    def close(self) -> None:
        """Stop the background ranking (pending rankings are dropped, never waited for)."""
        if self.ranker is not None:
            self.ranker.close()

    def _targets(self) -> dict[str, Any]:
        from opsradar.alerting.notifiers.slack import destinations_from_receivers

        return destinations_from_receivers(self.rules.engine.rules.receivers)

    # ------------------------------------------------------------------ the main path

    def ingest(self, events: Sequence[Event]) -> list[Anomaly]:
        """Store ``events`` (dedup by id), detect on the new ones, and handle the results."""
        new = self.store.add_events(list(events))
        return self.process(new)

    def ingest_summary(self, events: Sequence[Event]) -> dict[str, Any]:
        before = (self.stats.alerts, self.stats.anomalies)
        new = self.store.add_events(list(events))
        anomalies = self.process(new)
        return {"stored": len(new), "duplicates": len(events) - len(new), "anomalies": len(anomalies),
                "alerts": self.stats.alerts - before[0]}

    def process(self, events: Sequence[Event]) -> list[Anomaly]:
        """Detect on events that are already stored, then handle them (event-time order)."""
        ordered = sorted(events, key=_BY_TIME)
        anomalies = self.detectors.detect(ordered)
        self.handle(ordered, anomalies)
        return anomalies

    def handle(self, events: Sequence[Event], anomalies: Sequence[Anomaly]) -> None:
        """Rules, correlation and notification for events and the anomalies found on them."""
        with self._lock:
            by_event: dict[str, list[Anomaly]] = {}
            loose: list[Anomaly] = []
            for a in anomalies:
                (by_event.setdefault(a.event_id, []) if a.event_id else loose).append(a)
            for source, n in Counter(map(_SOURCE, events)).items():  # per batch: a labelled counter costs per call
                self.metrics.record("events", source=source, n=n)
            self.stats.events += len(events)
            on_event = self.rules.engine.on_event
            for e in sorted(events, key=_BY_TIME):
                self._advance(e.ts)
                if by_event:
                    for a in by_event.pop(e.id, ()):
                        self._on_anomaly(a)
                for alert in on_event(e):
                    self._on_alert(alert, e.ts)
            for a in loose + [a for rest in by_event.values() for a in rest]:
                self._advance(a.ts)
                self._on_anomaly(a)
            self._rerank_for_late_changes([e for e in events if e.kind in _LATE_CHANGE_KINDS])
            self.tick()

    def _rerank_for_late_changes(self, changes: Sequence[Event]) -> None:
        """Rank again the open incidents that a change arriving now may have caused.

        Sources are polled on their own schedules, so a commit or deploy is often stored after the
        anomalies it caused, and after their incident was ranked without it. An open or acknowledged
        incident is ranked again (once per batch) when a change lands in its window
        (``LATE_CHANGE_LOOKBACK`` before its first alert, up to its last) on an entity that the
        ranking counts as related to it (:class:`~opsradar.alerting.rootcause.scoring.Relatedness`).
        """
        if not changes or self.watermark is None:
            return
        from opsradar.alerting.rootcause.scoring import Relatedness, ScoringParams

        params = ScoringParams()
        open_docs = [d for status in ("open", "acknowledged") for d in self.store.list_incidents(status=status, limit=500)]
        for doc in open_docs:
            try:
                first = datetime.fromisoformat(doc["first_seen"])
                last = datetime.fromisoformat(doc["last_seen"])
            except (KeyError, TypeError, ValueError):
                continue
            affected = [*(doc.get("entities") or []), *(f"service:{s}" for s in doc.get("services") or [])]
            related = Relatedness(self.graph, affected, params)
            if any(first - LATE_CHANGE_LOOKBACK <= e.ts <= last + timedelta(minutes=1) and related(e.entity)[0] > 0
                   for e in changes):
                self._rank(doc["id"], self.watermark)

    def _rank(self, incident_id: str, now: datetime) -> None:
        """Rank ``incident_id`` now, or hand it to the ranker; its message follows a new top three."""
        self._ranked_at[incident_id] = now
        if self.ranker is not None:
            self.ranker.submit(incident_id, now)
        else:
            self._rank_later(incident_id, now)

    def _advance(self, ts: datetime) -> None:
        if self.watermark is None or ts > self.watermark:
            if ts > self._ahead_limit:  # the clock is read only when an event passes the last limit
                self._ahead_limit = utcnow() + MAX_AHEAD_OF_CLOCK
            if ts > self._ahead_limit:
                # a clock gone wrong (a collector's source, a sender the API's check did not cover):
                # event time would jump ahead, and with it timers and the auto-resolve of every incident;
                # the event is still handled, at the watermark's time
                self.stats.future_events += 1
                EVENTS_AHEAD.inc()
                if self.stats.future_events == 1 or self.stats.future_events % 10_000 == 0:
                    log.warning("event time %s is more than %s ahead of this clock; event time does not advance "
                                "to it (%d such events so far)", ts.isoformat(), MAX_AHEAD_OF_CLOCK,
                                self.stats.future_events)
                return
            self.watermark = ts

    def _on_anomaly(self, anomaly: Anomaly) -> None:
        self.stats.anomalies += 1
        self.metrics.record("anomalies", source=anomaly.source, rule=f"{anomaly.kind}-anomaly")
        self.store.add_anomaly(anomaly.model_dump(mode="json"))
        self._on_alert(alert_from_anomaly(anomaly, self.graph), anomaly.ts)

    def _on_alert(self, alert: Alert, now: datetime) -> None:
        decision = self.rules.engine.on_alert(alert, now)
        if decision.dropped:
            self.stats.dropped += 1
            return
        final = decision.alert
        if decision.silenced or decision.inhibited:
            self.stats.silenced += decision.silenced
            self.stats.inhibited += decision.inhibited
            known = self.store.get_alert(final.fingerprint)
            # kept and marked, not notified; an alert already in an incident keeps its link
            self.store.save_alert(final.model_dump(mode="json"), incident_id=known[1] if known else None)
            return
        if final.severity.rank < Severity(self.cfg.correlation.min_severity).rank:
            # context, not a page: kept for the API and the reports, but it opens no incident
            self.stats.below_severity += 1
            known = self.store.get_alert(final.fingerprint)
            self.store.save_alert(final.model_dump(mode="json"), incident_id=known[1] if known else None)
            return
        self.stats.alerts += 1
        rule = final.rule or final.labels.get("alertname", "")
        self.stats.by_rule[rule] = self.stats.by_rule.get(rule, 0) + 1
        group_by = decision.routes[0].group_by if decision.routes else None
        update = self.correlator.add(final, now, group_by=group_by or None, receivers=decision.receivers)
        # a first message waits for the group_wait of the route that led to its channel, and reminds
        # it every repeat_interval of that route
        group_wait: dict[str, timedelta] = {}
        repeat: dict[str, timedelta] = {}
        for r in decision.routes:
            if r.receiver:
                group_wait[r.receiver] = min(r.group_wait, group_wait.get(r.receiver, r.group_wait))
                repeat[r.receiver] = min(r.repeat_interval, repeat.get(r.receiver, r.repeat_interval))
        self._after_update(update, now, group_wait=group_wait, repeat_interval=repeat)

    def _after_update(self, update: IncidentUpdate, now: datetime, *,
                      group_wait: Mapping[str, timedelta] | None = None,
                      repeat_interval: Mapping[str, timedelta] | None = None) -> None:
        if update.incident is None or not update.visible:
            return
        if Change.opened in update.changes:
            self.stats.incidents_opened += 1
        # Ranking reads the incident's surroundings from the store: do it when the incident opens or
        # spreads to another service, and for alerts that join it at most every RANK_EVERY (event
        # time), not for every alert of a storm.
        inc_id = update.incident.id
        last = self._ranked_at.get(inc_id)
        if (Change.opened in update.changes or Change.new_service in update.changes
                or (Change.joined in update.changes and (last is None or now - last >= RANK_EVERY))):
            self._ranked_at[inc_id] = now
            if self.ranker is not None:
                self.ranker.submit(inc_id, now)
            else:
                update = self._attach_root_cause(update, now)
        if self.notify:
            self.stats.notifications += len(self.notifier.notify(update, now, group_wait=group_wait,
                                                                 repeat_interval=repeat_interval))

    def _attach_root_cause(self, update: IncidentUpdate, now: datetime) -> IncidentUpdate:
        """Rank the candidate changes and keep the top three on the incident."""
        from opsradar.alerting.rootcause import build_report

        inc = update.incident
        assert inc is not None
        try:
            if self.store.has_saved_report(inc.id):  # its early events are gone: ranking again would lose candidates
                return update
            report = build_report(inc, self.store, self.graph, now=now)
        except Exception:  # a report failure must never stop alerting
            log.exception("root-cause ranking failed for incident %s", inc.id)
            return update
        top = report.root_cause_entries(3)
        if top == inc.root_cause:
            return update
        fresh = self.correlator.set_root_cause(inc.id, top)
        return IncidentUpdate(fresh, update.changes, update.alert, update.new_services, update.actor)

    def _rank_later(self, incident_id: str, now: datetime) -> None:
        """The :class:`Ranker`'s work: rank the incident as it is now (outside the lock: it only
        reads), then attach the top three under the lock and update the incident's message."""
        from opsradar.alerting.rootcause import build_report

        if self.store.has_saved_report(incident_id):  # its early events are gone: ranking again would lose candidates
            return
        report = build_report(self.correlator.get(incident_id), self.store, self.graph, now=now)
        top = report.root_cause_entries(3)
        with self._lock:
            if top == self.correlator.get(incident_id).root_cause or self.store.has_saved_report(incident_id):
                return  # (saved meanwhile: this ranking may have read what the retention was deleting)
            fresh = self.correlator.set_root_cause(incident_id, top)
            if self.notify:
                # not opened and not notable: the notifier enqueues a ``chat.update`` of the one message
                ranked = IncidentUpdate(fresh, (Change.joined,))
                self.stats.notifications += len(self.notifier.notify(ranked, now))

    def tick(self, now: datetime | None = None) -> None:
        """Time-driven work at ``now`` (default: the watermark): event-rule timers, auto-resolve."""
        now = now or self.watermark
        if now is None:
            return
        for alert in self.rules.engine.tick(now):
            self._on_alert(alert, now)
        for update in self.correlator.tick(now):
            if self.notify:
                self.stats.notifications += len(self.notifier.notify(update, now))

    def remind(self, *, force: bool = False) -> int:
        """Reminders for the open, unacknowledged incidents whose message went out a
        ``repeat_interval`` ago or more (:meth:`Notifier.remind`, wall clock); at most every
        ``REMIND_CHECK_EVERY`` unless ``force``. Returns how many were enqueued."""
        if not self.notify:
            return 0
        wall = self.notifier.clock()
        if not force and self._reminded_at is not None and wall - self._reminded_at < REMIND_CHECK_EVERY:
            return 0
        self._reminded_at = wall
        n = 0
        # not under the pipeline's lock: only the store and the notifier (which has its own) are
        # touched, and an incident acknowledged meanwhile gets no reminder (the transport checks)
        for doc in self.store.list_incidents(status=IncidentStatus.open.value, limit=REMIND_MAX_INCIDENTS):
            n += len(self.notifier.remind(Incident.model_validate(doc), wall))
        self.stats.notifications += n
        return n

    def prune(self, *, force: bool = False) -> int:
        """Delete the events older than ``store.event_retention`` behind event time (the watermark);
        at most every ``PRUNE_EVERY`` of wall-clock time unless ``force``. Returns how many."""
        wall = utcnow()
        if self.watermark is None or (not force and self._pruned_at is not None
                                      and wall - self._pruned_at < PRUNE_EVERY):
            return 0
        self._pruned_at = wall
        cutoff = self._save_reports_before(self.watermark - self.cfg.store.event_retention)
        n = self.store.prune_events_before(cutoff)  # short transactions, outside the pipeline's lock
        if n:
            log.info("deleted %d events from before %s (store.event_retention %s behind event time)",
                     n, cutoff.isoformat(), self.cfg.store.event_retention)
        self.stats.pruned += n
        EVENTS_PRUNED.inc(n)
        return n

    def _save_reports_before(self, cutoff: datetime) -> datetime:
        """Save the root-cause report of every incident whose report reads events from before ``cutoff``
        (:attr:`ReportSettings.reach <opsradar.alerting.rootcause.builder.ReportSettings.reach>` before
        its first alert), before they are deleted; returns the time before which events may be deleted:
        ``cutoff``, or earlier when more than :data:`SAVE_REPORTS_PER_PRUNE` reports were due (the rest
        are saved in the next rounds, and their events are kept until then)."""
        from opsradar.alerting.rootcause import ReportSettings, save_report

        reach = ReportSettings().reach
        due = self.store.incidents_without_report(first_seen_before=cutoff + reach, limit=SAVE_REPORTS_PER_PRUNE + 1)
        for doc in due[:SAVE_REPORTS_PER_PRUNE]:
            try:
                save_report(Incident.model_validate(doc), self.store, self.graph, now=self.watermark)
                self.stats.reports_saved += 1
                REPORTS_SAVED.inc()
            except Exception:  # one report that cannot be built must not stop the retention
                log.exception("could not save the root-cause report of incident %s before its events are deleted; "
                              "its report will be built from the events that remain", doc.get("id"))
        if len(due) > SAVE_REPORTS_PER_PRUNE:
            first = Incident.model_validate(due[SAVE_REPORTS_PER_PRUNE]).first_seen
            return min(cutoff, first - reach)
        return cutoff

    def drain_outbox(self, *, release_held: bool = False) -> int:
        """Deliver what is due in the outbox; returns how many were delivered. ``release_held``:
        also the first messages still waiting out their ``group_wait`` (at shutdown)."""
        if self.worker is None:
            return 0
        if release_held:
            self.worker.release_held()
        return self.worker.drain().delivered

    def checkpoint(self) -> None:
        """Save detector and event-rule state (restored by the next start)."""
        self.detectors.checkpoint()
        self.rules.checkpoint()

    # ------------------------------------------------------------------ operations for the API

    def incident_action(self, incident_id: str, action: str, actor: str) -> dict[str, Any]:
        with self._lock:
            if action == "ack":
                update = self.correlator.ack(incident_id, actor)
            elif action == "resolve":
                update = self.correlator.resolve(incident_id, actor)
            else:
                raise ValueError(f"unknown action {action!r}")
            if self.notify and update.visible:
                self.notifier.notify(update)
            assert update.incident is not None
            return update.incident.model_dump(mode="json")

    def feedback(self, incident_id: str, verdict: str, actor: str, reason: str) -> dict[str, Any]:
        result = self.correlator.feedback("incident", incident_id, verdict, actor, reason)
        return {"verdict": verdict, "actor": actor, "proposed_drop_rule": getattr(result, "proposed_rule", None)}

    def list_silences(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.rules.silences.list()]

    def add_silence(self, spec: dict[str, Any], actor: str) -> dict[str, Any]:
        from opsradar.config import parse_duration

        starts = datetime.fromisoformat(spec["starts_at"]) if spec.get("starts_at") else utcnow()
        if spec.get("ends_at"):
            ends = datetime.fromisoformat(spec["ends_at"])
        elif spec.get("duration"):
            ends = starts + parse_duration(spec["duration"])
        else:
            raise ValueError("give ends_at or duration")
        if starts.tzinfo is None or ends.tzinfo is None:
            raise ValueError("starts_at and ends_at need a time zone")
        if ends <= starts:
            raise ValueError("ends_at must be after starts_at")
        silence = self.rules.silences.add(spec["matchers"], starts_at=starts, ends_at=ends, created_by=actor,
                                          comment=spec.get("comment", ""))
        return silence.to_json()

    def expire_silence(self, silence_id: str, actor: str) -> dict[str, Any]:
        """End an API or Slack silence now; ``LookupError`` for an unknown id or a rule-file silence."""
        try:
            return self.rules.silences.expire(silence_id, actor=actor).to_json()
        except KeyError as exc:
            raise LookupError(str(exc.args[0]) if exc.args else f"no silence {silence_id!r}") from None

    def rules_status(self) -> dict[str, Any]:
        return {**self.rules.status(), "stats": self.rules.stats.snapshot(self.rules.engine.rule_names)}

    def reload_rules(self, actor: str) -> dict[str, Any]:
        with self._lock:
            result = self.rules.reload(actor=actor)
            if result.ok:
                self.notifier.targets = self._targets()
        return {"ok": result.ok, "changed": result.changed, "digest": result.digest, "diff": result.diff,
                "errors": [str(p) for p in result.error.problems] if result.error else []}

    def list_models(self) -> list[dict[str, Any]]:
        return [{**m, "id": f"{m['group_key']}@v{m['version']}"} for m in _jsonable(self.store.list_models())]

    def model_action(self, model_id: str, action: str, actor: str) -> dict[str, Any]:
        from opsradar.detectors.registry import ModelRegistry

        group, _, version = model_id.rpartition("@v")
        if not group or not version.isdigit():
            raise LookupError(f"no model {model_id!r}: ids look like GROUP@vN")
        registry = ModelRegistry(self.store, actor=actor)
        if not any(m["version"] == int(version) for m in self.store.list_models(group)):
            raise LookupError(f"no model {model_id!r}")
        if action == "promote":
            registry.promote(group, int(version), reason=f"manual, by {actor}")
        elif action == "rollback":
            registry.rollback(group, reason=f"rollback, by {actor}")
        else:
            raise ValueError(f"unknown action {action!r}")
        return {"group": group, "champion": _jsonable([self.store.champion(group)])[0]}

    def sources(self) -> dict[str, Any]:
        health = self._sources() if self._sources else self.store.source_health()
        return {"sources": health}

    def slack_interaction(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        from opsradar.alerting.notifiers.slack import InvalidSignature

        if self.interaction_handler is None:
            return 503, {"detail": "Slack interactions are not configured (set slack.signing_secret_env)"}
        try:
            with self._lock:
                result = self.interaction_handler.handle_interaction(body, headers)
        except InvalidSignature as exc:
            return 401, {"detail": str(exc)}
        except (ValueError, LookupError) as exc:
            return 400, {"detail": str(exc)}
        return 200, {"response_type": "ephemeral", "text": getattr(result, "message", str(result))}

    def ready(self) -> dict[str, Any]:
        state = {"ready": True, "rules": self.rules.engine.digest, "streams": self.detectors.streams}
        if self.ranker is not None:
            state |= {"ranking_backlog": self.ranker.backlog, "rankings": self.ranker.ranked,
                      "ranking_failures": self.ranker.failed, "rankings_coalesced": self.ranker.coalesced}
        return state

    def metrics_text(self) -> bytes:
        return generate_latest(REGISTRY)


def _jsonable(rows: Iterable[dict[str, Any] | None]) -> list[Any]:
    out: list[Any] = []
    for r in rows:
        if r is None:
            out.append(None)
            continue
        out.append({k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()})
    return out


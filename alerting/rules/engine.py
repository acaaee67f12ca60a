"""The rule engine: a validated :class:`RuleSet` compiled into runtime objects.

- ``on_event(event) -> list[Alert]``: the event rules (known-bad patterns and the frequency,
  new_term, flatline and sequence types) raise alerts on their own; ``tick(now)`` lets flatline
  rules notice silence between events.
- ``on_alert(alert, now) -> Decision``: filters in file order (``drop`` stops; ``set``,
  ``escalate`` and ``route`` accumulate), then the routing tree, silences and inhibition. Silenced
  and inhibited alerts are kept and marked; ``Decision.notify`` says whether to notify.

Plain Python, no Ray; one engine per process (it holds the event rules' state, behind a lock, so
threads may share it). A reload builds a new engine that adopts the state of unchanged rules (see
:mod:`opsradar.alerting.rules.reload`). ``Decision.to_dict()`` gives a JSON-ready summary.

>>> from datetime import datetime, timezone
>>> from opsradar.alerting.rules.loader import load_texts
>>> rules = load_texts({"r.yaml": '''
... receivers: [{name: sre, slack: {channel: "#sre"}}]
... route: {receiver: sre, group_by: [service]}
... filters:
...   - {name: drop-nightly, action: drop, matchers: ['entity=~"job:nightly-.*"']}
... '''})
>>> engine = RuleEngine(rules)
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> a = Alert.from_labels(title="slow build", labels={"alertname": "build-anomaly",
...                       "entity": "job:nightly-etl", "service": "etl"}, starts_at=t)
>>> engine.on_alert(a, t).dropped_by
'drop-nightly'
>>> d = engine.on_alert(a.model_copy(update={"labels": {**a.labels, "entity": "job:shop-build"}}), t)
>>> d.receivers, d.notify
(['sre'], True)
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from opsradar.alerting.rules.fields import EventFields
from opsradar.alerting.rules.inhibit import Inhibitor
from opsradar.alerting.rules.loader import RuleSet
from opsradar.alerting.rules.matchers import Matcher, parse_matcher
from opsradar.alerting.rules.metrics import RuleStats
from opsradar.alerting.rules.model import EventRule, FilterRule, Receiver, TimeInterval
from opsradar.alerting.rules.routing import (
    DEFAULT_GROUP_INTERVAL,
    DEFAULT_GROUP_WAIT,
    DEFAULT_REPEAT_INTERVAL,
    RouteNode,
    compile_route,
)
from opsradar.alerting.rules.silences import SilenceStore
from opsradar.alerting.rules.triggers import Firing, Trigger, make_trigger
from opsradar.config import EntityGraph
from opsradar.models import Alert, AlertStatus, Event, Severity, fingerprint, utcnow

__all__ = ["Decision", "RouteDecision", "RuleEngine", "alert_labels"]

_SEVERITIES = list(Severity)
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")


@dataclass(frozen=True)
class RouteDecision:
    """One route an alert takes: the receiver and the aggregation group with its windows."""

    receiver: str | None
    route: str
    group_by: tuple[str, ...]
    group_key: str
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta


@dataclass
class Decision:
    """What the rules did with one alert.

    ``alert`` is the alert after the rules (severity, labels, receivers set); when ``dropped``, it
    is the alert as it came. Silenced and inhibited alerts are kept and marked, and not notified.
    """

    alert: Alert
    dropped: bool = False
    dropped_by: str | None = None
    matched: list[str] = field(default_factory=list)
    escalated_by: list[str] = field(default_factory=list)
    routes: list[RouteDecision] = field(default_factory=list)
    silenced_by: list[str] = field(default_factory=list)
    inhibited_by: list[str] = field(default_factory=list)

    @property
    def receivers(self) -> list[str]:
        return self.alert.receivers

    @property
    def silenced(self) -> bool:
        return bool(self.silenced_by)

    @property
    def inhibited(self) -> bool:
        return bool(self.inhibited_by)

    @property
    def notify(self) -> bool:
        """Whether this alert should reach its receivers."""
        return not (self.dropped or self.silenced or self.inhibited) and bool(self.receivers)

    @property
    def group_keys(self) -> list[str]:
        return [f"{r.receiver}|{r.group_key}" for r in self.routes]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for the API and the audit trail)."""
        return {
            "alert": self.alert.model_dump(mode="json"),
            "dropped": self.dropped, "dropped_by": self.dropped_by, "matched": list(self.matched),
            "escalated_by": list(self.escalated_by), "silenced_by": list(self.silenced_by),
            "inhibited_by": list(self.inhibited_by), "notify": self.notify,
            "routes": [{"receiver": r.receiver, "route": r.route, "group_by": list(r.group_by),
                        "group_key": r.group_key, "group_wait": r.group_wait.total_seconds(),
                        "group_interval": r.group_interval.total_seconds(),
                        "repeat_interval": r.repeat_interval.total_seconds()} for r in self.routes],
        }


def alert_labels(alert: Alert) -> dict[str, str]:
    """The labels filters and routes match: the alert's labels with ``severity`` kept in sync."""
    return {**alert.labels, "severity": alert.severity.value}


def _render(template: str, f: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: f.get(m.group(1), m.group(0)), template)


@dataclass
class _Scoped:
    active: list[TimeInterval]
    outside: list[TimeInterval]

    def applies(self, ts: datetime) -> bool:
        if self.active and not any(i.contains(ts) for i in self.active):
            return False
        return not any(i.contains(ts) for i in self.outside)


@dataclass
class _Filter:
    rule: FilterRule
    matchers: list[Matcher]
    when: _Scoped


@dataclass
class _EventRule:
    rule: EventRule
    trigger: Trigger
    when: _Scoped


class RuleEngine:
    """A compiled rule set with its runtime state (event-rule windows, inhibition sources)."""

    def __init__(
        self,
        rules: RuleSet,
        *,
        graph: EntityGraph | None = None,
        silences: SilenceStore | None = None,
        stats: RuleStats | None = None,
        previous: RuleEngine | None = None,
    ) -> None:
        self.rules = rules
        self.graph = graph
        self.silences = silences or SilenceStore()
        self.silences.set_from_rules(rules.silences)
        self.stats = stats or RuleStats()
        self.stats.declare([r.name for r in (*rules.filters, *rules.event_rules)])
        intervals = {i.name: i for i in rules.time_intervals}

        def scoped(r: FilterRule | EventRule) -> _Scoped:
            return _Scoped([intervals[n] for n in r.active_time_intervals],
                           [intervals[n] for n in r.outside_time_intervals])

        self.receivers: dict[str, Receiver] = {r.name: r for r in rules.receivers}
        self.route: RouteNode = compile_route(rules.route)
        self.filters = [_Filter(r, [parse_matcher(m) for m in r.matchers], scoped(r)) for r in rules.filters]
        self.event_rules = [_EventRule(r, make_trigger(r.trigger), scoped(r)) for r in rules.event_rules]
        self.inhibitor = Inhibitor(rules.inhibit_rules)
        self._raised = 0
        self._lock = threading.RLock()  # the rules' state has one owner at a time
        #: the event rules that may act on an event of a (source, kind), in file order (built lazily)
        self._for_source_kind: dict[tuple[str, str], list[_EventRule]] = {}
        self._services: dict[str, str | None] = {}  # graph.service_of by entity, for event_fields
        if previous is not None:
            self._adopt(previous)

    @property
    def digest(self) -> str:
        return str(self.rules.digest)

    @property
    def rule_names(self) -> list[str]:
        return list(self.rules.rule_names)

    def _adopt(self, previous: RuleEngine) -> None:
        """Keep the state of event rules whose definition did not change, and inhibition sources."""
        old = {er.rule.name: er for er in previous.event_rules}
        for er in self.event_rules:
            prev = old.get(er.rule.name)
            if prev is not None and prev.rule.trigger == er.rule.trigger:
                er.trigger = prev.trigger
        self.inhibitor.adopt(previous.inhibitor)

    # ------------------------------------------------------------------ checkpoints

    def snapshot(self) -> bytes:
        """The runtime state (event-rule windows, terms seen, pending sequences, inhibition sources) as
        JSON bytes, each rule's state next to its definition."""
        with self._lock:
            doc = {
                "version": 1,
                "event_rules": {er.rule.name: {"trigger": er.rule.trigger.model_dump(mode="json"),
                                               "state": er.trigger.state()} for er in self.event_rules},
                "inhibit": self.inhibitor.state(),
            }
        return json.dumps(doc, separators=(",", ":")).encode()

    def restore(self, blob: bytes) -> list[str]:
        """Restore a :meth:`snapshot`; rules whose definition changed since start afresh.

        Returns the names of the event rules whose state was restored."""
        doc = json.loads(blob)
        restored = []
        with self._lock:
            for er in self.event_rules:
                saved = doc.get("event_rules", {}).get(er.rule.name)
                if saved is not None and saved["trigger"] == er.rule.trigger.model_dump(mode="json"):
                    er.trigger.set_state(saved["state"])
                    restored.append(er.rule.name)
            self.inhibitor.set_state(doc.get("inhibit", []))
        return restored

    # ------------------------------------------------------------------ events

    def on_event(self, event: Event) -> list[Alert]:
        """The alerts that the event rules raise on ``event`` (known-bad patterns and rule types)."""
        out: list[Alert] = []
        with self._lock:
            rules = self._rules_for(event.source, event.kind)
            if not rules:
                return out
            f = EventFields(event, self.graph, services=self._services)  # flattened only if a rule asks
            for er in rules:
                for firing in er.trigger.on_event(f, event.ts):
                    if er.when.applies(firing.ts):
                        out.append(self._raise(er.rule, firing))
        return out

    def _rules_for(self, source: str, kind: str) -> list[_EventRule]:
        """The event rules whose trigger may act on events of ``source`` and ``kind`` (the others'
        ``match`` rejects every such event, so calling them changes nothing)."""
        key = (source, kind)
        found = self._for_source_kind.get(key)
        if found is None:
            if len(self._for_source_kind) >= 4096:
                self._for_source_kind.clear()
            found = self._for_source_kind[key] = [er for er in self.event_rules if er.trigger.may_act(source, kind)]
        return found

    def tick(self, now: datetime | None = None) -> list[Alert]:
        """Alerts due with no event to carry them (flatline rules)."""
        now = now or utcnow()
        out = []
        with self._lock:
            for er in self.event_rules:
                for firing in er.trigger.tick(now):
                    if er.when.applies(firing.ts):
                        out.append(self._raise(er.rule, firing))
        return out

    def _raise(self, rule: EventRule, firing: Firing) -> Alert:
        f = firing.fields
        labels = {"alertname": rule.name, "detector": f"rule:{rule.trigger.type}"}
        for key in ("source", "kind", "entity", "service"):
            if f.get(key):
                labels[key] = f[key]
        for key, value in f.items():  # group-by fields of flatline alerts (no event to take labels from)
            if not firing.event_ids and key not in labels:
                labels[key.replace(".", "_")] = value
        if rule.team:
            labels["team"] = rule.team
        labels.update(rule.labels)
        identity = dict(labels)
        labels["severity"] = rule.severity.value
        title = _render(rule.title, f) if rule.title else f"{rule.name}: {f.get('entity', '')}".rstrip(": ")
        annotations = {"rule_type": rule.trigger.type}
        if rule.description:
            annotations["description"] = rule.description.strip()
        if firing.detail:
            annotations["detail"] = firing.detail
        self.stats.record(rule.name, "raised", firing.ts.timestamp())
        self._raised += 1
        return Alert(fingerprint=fingerprint(identity), title=title, labels=labels, annotations=annotations,
                     severity=rule.severity, starts_at=firing.ts, event_ids=[i for i in firing.event_ids if i],
                     rule=rule.name)

    # ------------------------------------------------------------------ alerts

    def on_alert(self, alert: Alert, now: datetime | None = None) -> Decision:
        """Apply filters, routing, silences and inhibition to ``alert`` at ``now``."""
        with self._lock:
            return self._on_alert(alert, now)

    def _on_alert(self, alert: Alert, now: datetime | None) -> Decision:
        now = now or alert.starts_at
        labels = alert_labels(alert)
        severity = alert.severity
        decision = Decision(alert=alert)
        extra: list[tuple[str, FilterRule]] = []
        for flt in self.filters:
            r = flt.rule
            if not (all(m.matches(labels) for m in flt.matchers) and flt.when.applies(alert.starts_at)):
                continue
            decision.matched.append(r.name)
            ts = alert.starts_at.timestamp()
            if r.action == "drop":
                self.stats.record(r.name, "drops", ts)
                decision.dropped, decision.dropped_by = True, r.name
                return decision
            if r.action == "escalate":
                floor = r.severity or _SEVERITIES[min(severity.rank + 1, len(_SEVERITIES) - 1)]
                if floor.rank > severity.rank:
                    severity = floor
                    decision.escalated_by.append(r.name)
                self.stats.record(r.name, "escalations" if r.name in decision.escalated_by else "matches", ts)
            else:
                if r.severity is not None:
                    if r.severity.rank > severity.rank:
                        decision.escalated_by.append(r.name)
                    severity = r.severity
                self.stats.record(r.name, "escalations" if r.name in decision.escalated_by else "matches", ts)
            if r.team:
                labels["team"] = r.team
            labels.update(r.labels)
            extra += [(x, r) for x in r.receivers if x not in {e for e, _ in extra}]
            labels["severity"] = severity.value
        labels["severity"] = severity.value
        for node in self.route.match(labels):
            decision.routes.append(RouteDecision(
                receiver=node.receiver, route=node.id, group_by=node.group_by, group_key=node.group_key(labels),
                group_wait=node.group_wait, group_interval=node.group_interval, repeat_interval=node.repeat_interval))
        base = decision.routes[0] if decision.routes else None
        for receiver, r in extra:
            if any(d.receiver == receiver for d in decision.routes):
                continue
            group_by = tuple(r.group_by) if r.group_by is not None else (base.group_by if base else ())
            node = RouteNode(id=f"filter:{r.name}", matchers=[], receiver=receiver,
                             group_by=tuple(g for g in group_by if g != "..."), group_all="..." in group_by,
                             group_wait=r.group_wait or (base.group_wait if base else DEFAULT_GROUP_WAIT),
                             group_interval=r.group_interval or (base.group_interval if base else DEFAULT_GROUP_INTERVAL),
                             repeat_interval=r.repeat_interval or (base.repeat_interval if base else DEFAULT_REPEAT_INTERVAL))
            decision.routes.append(RouteDecision(
                receiver=receiver, route=node.id, group_by=node.group_by, group_key=node.group_key(labels),
                group_wait=node.group_wait, group_interval=node.group_interval, repeat_interval=node.repeat_interval))
        receivers = [r.receiver for r in decision.routes if r.receiver]
        decision.alert = alert.model_copy(update={"labels": labels, "severity": severity,
                                                  "receivers": list(dict.fromkeys(receivers))})
        decision.silenced_by = self.silences.silenced_by(labels, now)
        decision.inhibited_by = self.inhibitor.inhibited_by(labels, alert.fingerprint, now)
        ends = alert.ends_at or (now if alert.status == AlertStatus.resolved else None)
        self.inhibitor.observe(labels, alert.fingerprint, now, ends)
        return decision

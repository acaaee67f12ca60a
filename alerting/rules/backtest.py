"""Backtest: replay stored history through candidate rules and the rules in force, and diff.

The history is the store's events (``Store.iter_events``, through the event rules) and anomalies
(``Store.iter_anomalies``, through :func:`~opsradar.alerting.alerts.alert_from_anomaly`), merged in
time order. Both rule sets see exactly the same input, each with its own fresh state.

The rules **in force** are the files snapshotted in the store by the last successful (re)load of a
running opsradar (checkpoint ``rules/in-force``, see :mod:`opsradar.alerting.rules.reload`); with
no snapshot, ``baseline`` paths (e.g. a checkout of the main branch) or, failing that, no rules.

Incidents: every alert that survives the rules goes through the real correlator
(:class:`opsradar.alerting.correlation.Correlator`, one throw-away in-memory store per side, the
config's entity graph and correlation settings). A merge is a candidate incident holding alerts of
several incidents in force, a split the reverse. Without the correlator (``correlate=False``),
incidents are approximated by aggregation groups (receiver + group key of the first route).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from opsradar.alerting.alerts import alert_from_anomaly
from opsradar.alerting.rules.engine import Decision, RuleEngine
from opsradar.alerting.rules.loader import RuleSet, load_texts
from opsradar.alerting.rules.metrics import RuleStats
from opsradar.alerting.rules.silences import SilenceStore
from opsradar.config import CorrelationConfig, EntityGraph
from opsradar.models import Alert, Anomaly, Event
from opsradar.store import Store

__all__ = ["BacktestReport", "Outcome", "backtest"]


@dataclass(frozen=True)
class Outcome:
    """What one rule set did with one alert."""

    dropped_by: str | None
    raised_by: str | None
    receivers: tuple[str, ...]
    severity: str
    group: str | None
    notify: bool
    incident: str | None = None

    @classmethod
    def of(cls, d: Decision) -> Outcome:
        return cls(d.dropped_by, d.alert.rule, tuple(sorted(d.receivers)), d.alert.severity.value,
                   d.group_keys[0] if d.group_keys and not d.dropped else None, d.notify)


@dataclass
class BacktestReport:
    in_force: str
    candidate: str
    events: int = 0
    anomalies: int = 0
    old: dict[str, Outcome] = field(default_factory=dict)
    new: dict[str, Outcome] = field(default_factory=dict)
    correlated: bool = False

    def per_rule(self) -> dict[str, Counter[str]]:
        """Changes per rule: newly/no longer dropped, newly/no longer raised, severity changed."""
        rows: dict[str, Counter[str]] = {}
        for key in self.old.keys() | self.new.keys():
            o, n = self.old.get(key), self.new.get(key)
            if o is None and n is not None:
                rows.setdefault(n.raised_by or "?", Counter())["newly raised"] += 1
            elif n is None and o is not None:
                rows.setdefault(o.raised_by or "?", Counter())["no longer raised"] += 1
            elif o is not None and n is not None:
                if n.dropped_by and not o.dropped_by:
                    rows.setdefault(n.dropped_by, Counter())["newly dropped"] += 1
                elif o.dropped_by and not n.dropped_by:
                    rows.setdefault(o.dropped_by, Counter())["no longer dropped"] += 1
                elif o.dropped_by and n.dropped_by and o.dropped_by != n.dropped_by:
                    rows.setdefault(n.dropped_by, Counter())["dropped by another rule"] += 1
        return dict(sorted(rows.items()))

    def routing_changes(self) -> Counter[tuple[tuple[str, ...], tuple[str, ...]]]:
        out: Counter[tuple[tuple[str, ...], tuple[str, ...]]] = Counter()
        for key in self.old.keys() & self.new.keys():
            o, n = self.old[key], self.new[key]
            if not o.dropped_by and not n.dropped_by and o.receivers != n.receivers:
                out[(o.receivers, n.receivers)] += 1
        return out

    def severity_changes(self) -> Counter[tuple[str, str]]:
        out: Counter[tuple[str, str]] = Counter()
        for key in self.old.keys() & self.new.keys():
            o, n = self.old[key], self.new[key]
            if not o.dropped_by and not n.dropped_by and o.severity != n.severity:
                out[(o.severity, n.severity)] += 1
        return out

    def notify_counts(self) -> tuple[int, int]:
        return (sum(o.notify for o in self.old.values()), sum(n.notify for n in self.new.values()))

    def group_changes(self) -> tuple[int, int, list[str], list[str]]:
        """(incidents in force, candidate incidents, merges, splits), each merge and split with its alerts."""
        def unit(o: Outcome) -> str | None:
            return o.incident if self.correlated else o.group

        both = [k for k in self.old.keys() & self.new.keys() if unit(self.old[k]) and unit(self.new[k])]
        old_to_new: dict[str, set[str]] = {}
        new_to_old: dict[str, set[str]] = {}
        for k in both:
            og, ng = unit(self.old[k]), unit(self.new[k])
            assert og is not None
            assert ng is not None
            old_to_new.setdefault(og, set()).add(ng)
            new_to_old.setdefault(ng, set()).add(og)
        members: dict[tuple[str, str], list[str]] = {}
        for k in sorted(both):
            members.setdefault(("new", str(unit(self.new[k]))), []).append(k)
            members.setdefault(("old", str(unit(self.old[k]))), []).append(k)
        merges = [f"{len(olds)} incidents in force become one: {', '.join(members[('new', g)][:5])}"
                  for g, olds in sorted(new_to_old.items()) if len(olds) > 1]
        splits = [f"one incident in force becomes {len(news)}: {', '.join(members[('old', g)][:5])}"
                  for g, news in sorted(old_to_new.items()) if len(news) > 1]
        n_old = len({unit(o) for o in self.old.values() if unit(o)})
        n_new = len({unit(n) for n in self.new.values() if unit(n)})
        return n_old, n_new, merges, splits

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``POST /v1/rules/backtest``); ``text`` is :meth:`render`."""
        (old_notified, new_notified), (n_old, n_new, merges, splits) = self.notify_counts(), self.group_changes()
        return {
            "events": self.events, "anomalies": self.anomalies,
            "in_force": {"rules": self.in_force, "alerts": len(self.old), "notified": old_notified, "incidents": n_old},
            "candidate": {"rules": self.candidate, "alerts": len(self.new), "notified": new_notified,
                          "incidents": n_new},
            "changes_per_rule": {rule: dict(c) for rule, c in self.per_rule().items()},
            "routing_changes": [{"from": list(a), "to": list(b), "alerts": n}
                                for (a, b), n in sorted(self.routing_changes().items())],
            "severity_changes": [{"from": a, "to": b, "alerts": n} for (a, b), n in sorted(self.severity_changes().items())],
            "merges": merges, "splits": splits, "correlated": self.correlated,
            "text": self.render(),
        }

    def render(self) -> str:
        lines = [f"backtest: {self.events} events, {self.anomalies} anomalies replayed",
                 f"  in force:  {self.in_force}", f"  candidate: {self.candidate}",
                 f"alerts: {len(self.old)} in force, {len(self.new)} candidate; "
                 f"notified: {self.notify_counts()[0]} -> {self.notify_counts()[1]}"]
        rows = self.per_rule()
        cols = ["newly dropped", "no longer dropped", "newly raised", "no longer raised", "dropped by another rule"]
        if rows:
            lines.append("changes per rule:")
            width = max(len(r) for r in rows)
            for rule, c in rows.items():
                parts = ", ".join(f"{c[col]} {col}" for col in cols if c[col])
                lines.append(f"  {rule.ljust(width)}  {parts}")
        else:
            lines.append("changes per rule: none")
        routing = self.routing_changes()
        lines.append("routing changes:" + ("" if routing else " none"))
        for (a, b), n in sorted(routing.items()):
            lines.append(f"  {list(a)} -> {list(b)}: {n} alerts")
        sev = self.severity_changes()
        lines.append("severity changes:" + ("" if sev else " none"))
        for (s_old, s_new), n in sorted(sev.items()):
            lines.append(f"  {s_old} -> {s_new}: {n} alerts")
        n_old, n_new, merges, splits = self.group_changes()
        how = "correlated" if self.correlated else "approximated by groups"
        lines.append(f"incidents ({how}): {n_old} in force, {n_new} candidate; "
                     f"{len(merges)} would merge, {len(splits)} would split")
        lines += [f"  merged: {g}" for g in merges[:10]] + [f"  split: {g}" for g in splits[:10]]
        return "\n".join(lines)


def _history(store: Store, since: datetime | None, until: datetime | None) -> Iterator[tuple[datetime, int, Any]]:
    events = ((e.ts, 0, e) for e in store.iter_events(since=since, until=until))
    anomalies = ((a.ts, 1, a) for a in (Anomaly.model_validate(d) for d in store.iter_anomalies(since=since, until=until)))
    return heapq.merge(events, anomalies, key=lambda x: (x[0], x[1]))


def _engine(rules: RuleSet, graph: EntityGraph | None) -> RuleEngine:
    return RuleEngine(rules, graph=graph, silences=SilenceStore(), stats=RuleStats(export=False))


class _Side:
    """One rule set replaying the history: its engine, outcomes and (optionally) correlator."""

    def __init__(self, rules: RuleSet, graph: EntityGraph | None, correlation: CorrelationConfig | None,
                 correlate: bool) -> None:
        self.engine = _engine(rules, graph)
        self.out: dict[str, Outcome] = {}
        self.counts: dict[str, int] = {}
        self.correlator: Any = None
        self.store: Store | None = None
        self.last_tick: datetime | None = None
        if correlate:
            from opsradar.alerting.correlation import Correlator

            self.store = Store("sqlite://")
            self.cfg = correlation or CorrelationConfig()
            self.correlator = Correlator(self.store, graph or EntityGraph(), self.cfg)

    def decide(self, key: str, alert: Alert) -> None:
        d = self.engine.on_alert(alert, alert.starts_at)
        incident = None
        if self.correlator is not None and not d.dropped:
            now = alert.starts_at
            if self.last_tick is None or now - self.last_tick >= self.cfg.quiet_period / 4:
                self.correlator.tick(now)
                self.last_tick = now
            group_by = list(d.routes[0].group_by) if d.routes else None
            incident = self.correlator.add(d.alert, now, group_by=group_by).incident_id
        o = Outcome.of(d)
        self.out[key] = Outcome(o.dropped_by, o.raised_by, o.receivers, o.severity, o.group, o.notify, incident)

    def raised(self, alerts: list[Alert]) -> None:
        for a in alerts:
            n = self.counts[a.fingerprint] = self.counts.get(a.fingerprint, 0) + 1
            self.decide(f"{a.rule}:{a.fingerprint}:{n}", a)

    def feed(self, item: Event | Anomaly, graph: EntityGraph | None) -> None:
        if isinstance(item, Event):
            self.raised(self.engine.on_event(item))
        else:
            self.decide(f"anomaly:{item.id}", alert_from_anomaly(item, graph))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _correlator_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("opsradar.alerting.correlation") is not None


def backtest(store: Store, candidate: RuleSet, *, in_force: RuleSet | None, in_force_label: str,
             candidate_label: str, since: datetime | None = None, until: datetime | None = None,
             graph: EntityGraph | None = None, correlation: CorrelationConfig | None = None,
             correlate: bool = True) -> BacktestReport:
    """Replay history from ``store`` through both rule sets and return the differences."""
    correlate = correlate and _correlator_available()
    old = _Side(in_force or load_texts({}), graph, correlation, correlate)
    new = _Side(candidate, graph, correlation, correlate)
    report = BacktestReport(in_force=in_force_label, candidate=candidate_label, correlated=correlate)
    last: datetime | None = None
    try:
        for ts, kind, item in _history(store, since, until):
            if kind == 0:
                report.events += 1
            else:
                report.anomalies += 1
            old.feed(item, graph)
            new.feed(item, graph)
            last = ts
        if last is not None:
            for side in (old, new):
                side.raised(side.engine.tick(until or last))
    finally:
        old.close()
        new.close()
    report.old, report.new = old.out, new.out
    return report


def describe(texts: dict[str, str] | None, fallback: str) -> str:
    if texts is None:
        return fallback
    rs = load_texts(texts)
    return f"{len(texts)} files, {len(rs.rule_names)} rules, digest {rs.digest}"




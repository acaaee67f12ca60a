"""Per-rule metrics, so that authors find dead rules: matches, drops, escalations, alerts raised,
time of the last match. Prometheus counters with a ``rule`` label, and a plain accessor.

>>> stats = RuleStats()
>>> stats.record("drop-nightly", "drops", 0.0)
>>> stats.snapshot()["drop-nightly"]["drops"]
1
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import Counter, Gauge

__all__ = ["LAST_RELOAD_OK", "RELOADS", "RuleStats"]

_MATCHES = Counter("opsradar_rule_matches", "Alerts or events a rule matched", ["rule"])
_DROPS = Counter("opsradar_rule_drops", "Alerts a rule dropped", ["rule"])
_ESCALATIONS = Counter("opsradar_rule_escalations", "Alerts a rule escalated", ["rule"])
_RAISED = Counter("opsradar_rule_alerts_raised", "Alerts an event rule raised", ["rule"])
_LAST = Gauge("opsradar_rule_last_match_timestamp_seconds", "Event time of the rule's last match", ["rule"])
#: Rule reloads by outcome (``ok`` / ``rejected``).
RELOADS = Counter("opsradar_rules_reloads", "Rule reloads", ["outcome"])
#: 1 when the last reload succeeded, 0 when it was rejected (the previous rules still run).
LAST_RELOAD_OK = Gauge("opsradar_rules_last_reload_successful", "Whether the last rule reload succeeded")

_COUNTERS = {"drops": _DROPS, "escalations": _ESCALATIONS, "raised": _RAISED}


class RuleStats:
    """Counts per rule (also exported to Prometheus). Shared across reloads by the manager."""

    def __init__(self, *, export: bool = True) -> None:
        self.export = export
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] = {}

    def _row(self, rule: str) -> dict[str, Any]:
        return self._data.setdefault(rule, {"matches": 0, "drops": 0, "escalations": 0, "raised": 0,
                                            "last_match": None})

    def declare(self, rules: list[str]) -> None:
        """Export every loaded rule's counters, at zero until it matches: a dead rule shows as 0 in
        Prometheus, not as a missing series (and the dashboard's queries always have data)."""
        if not self.export:
            return
        for rule in rules:
            for counter in (_MATCHES, *_COUNTERS.values()):
                counter.labels(rule=rule)

    def record(self, rule: str, what: str, ts: float) -> None:
        """Count a match of ``rule``; ``what`` is also one of ``drops``, ``escalations``, ``raised``."""
        with self._lock:
            row = self._row(rule)
            row["matches"] += 1
            row["last_match"] = max(row["last_match"] or ts, ts)
            if what != "matches":
                row[what] += 1
        if self.export:
            _MATCHES.labels(rule=rule).inc()
            _LAST.labels(rule=rule).set(ts)
            if what in _COUNTERS:
                _COUNTERS[what].labels(rule=rule).inc()

    def snapshot(self, rules: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Counts per rule; with ``rules``, every one of them is listed (zeros for dead rules)."""
        with self._lock:
            if rules is not None:
                for r in rules:
                    self._row(r)
            return {k: dict(v) for k, v in sorted(self._data.items())}

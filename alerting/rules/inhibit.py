"""Inhibition, with Alertmanager's semantics.

While a *source* alert fires (until its ``ends_at``, or ``source_ttl`` after it was last seen),
*target* alerts whose ``equal`` labels have the same values are inhibited: kept, marked, not
notified. An alert never inhibits itself.

>>> from datetime import datetime, timezone
>>> from opsradar.alerting.rules.model import InhibitRule
>>> inh = Inhibitor([InhibitRule(source_matchers=['alertname="ServiceDown"'],
...                              target_matchers=['severity="warning"'], equal=["service"])])
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> inh.observe({"alertname": "ServiceDown", "service": "shop"}, "fp1", t, None)
>>> inh.inhibited_by({"alertname": "Slow", "severity": "warning", "service": "shop"}, "fp2", t)
['inhibit_rules[0]']
>>> inh.inhibited_by({"alertname": "Slow", "severity": "warning", "service": "pay"}, "fp3", t)
[]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from opsradar.alerting.rules.matchers import Matcher, parse_matcher
from opsradar.alerting.rules.model import InhibitRule

__all__ = ["Inhibitor"]


@dataclass
class _Compiled:
    name: str
    source: list[Matcher]
    target: list[Matcher]
    equal: tuple[str, ...]
    ttl: timedelta
    # source fingerprint -> (equal values, firing until)
    firing: dict[str, tuple[tuple[str, ...], datetime]] = field(default_factory=dict)


def _compile(i: int, rule: InhibitRule) -> _Compiled:
    source = [parse_matcher(m) for m in rule.source_matchers]
    if rule.source_rules:
        alt = "|".join(rule.source_rules)
        source.append(parse_matcher(f'alertname=~"{alt}"'))
    return _Compiled(rule.name or f"inhibit_rules[{i}]", source, [parse_matcher(m) for m in rule.target_matchers],
                     tuple(rule.equal), rule.source_ttl)


class Inhibitor:
    """The inhibit rules with the source alerts they have seen."""

    def __init__(self, rules: list[InhibitRule]) -> None:
        self.rules = [_compile(i, r) for i, r in enumerate(rules)]

    def adopt(self, previous: Inhibitor) -> None:
        """Keep the firing sources of ``previous`` for rules that did not change (on reload)."""
        old = {(r.name, tuple(map(str, r.source)), r.equal): r for r in previous.rules}
        for r in self.rules:
            prev = old.get((r.name, tuple(map(str, r.source)), r.equal))
            if prev is not None:
                r.firing = dict(prev.firing)

    def state(self) -> list[Any]:
        """The firing sources per rule, JSON-ready (for checkpoints)."""
        return [[r.name, [[fp, list(v), u.isoformat()] for fp, (v, u) in r.firing.items()]] for r in self.rules]

    def set_state(self, state: list[Any]) -> None:
        by_name = {r.name: r for r in self.rules}
        for name, firing in state:
            if name in by_name:
                by_name[name].firing = {fp: (tuple(v), datetime.fromisoformat(u)) for fp, v, u in firing}

    def observe(self, labels: Mapping[str, str], fp: str, seen_at: datetime, ends_at: datetime | None) -> None:
        """Record an alert: if it matches a rule's source, it fires until ``ends_at`` or the TTL."""
        for r in self.rules:
            if r.source and all(m.matches(labels) for m in r.source):
                until = ends_at if ends_at is not None else seen_at + r.ttl
                r.firing[fp] = (tuple(labels.get(e, "") for e in r.equal), until)

    def inhibited_by(self, labels: Mapping[str, str], fp: str, now: datetime) -> list[str]:
        """The names of the rules that inhibit an alert with ``labels`` at ``now``."""
        out = []
        for r in self.rules:
            if not all(m.matches(labels) for m in r.target):
                continue
            want = tuple(labels.get(e, "") for e in r.equal)
            for sfp, (vals, until) in list(r.firing.items()):
                if until <= now:
                    del r.firing[sfp]
                elif sfp != fp and vals == want:
                    out.append(r.name)
                    break
        return out

"""Rule engine throughput with the shipped rules (``rules/``): events and alerts per second.

Usage: ``python bench/rules_engine.py [--events 50000] [--alerts 50000] [--repeat 3] [--services 5] [--days 7]``

A seeded synthetic stream (builds, deploys, test runs, logs, access and audit events over ``--days``,
``--services`` services: five by default; a rule grouped by service, such as the shipped flatline
of each service's logs, holds a group per service) goes through ``RuleEngine.on_event``; every alert raised goes through ``on_alert``.
Then synthetic anomaly alerts go through ``on_alert`` alone (filters, routing tree, silences,
inhibition). Also times the RE2 matcher ``(a+)+$`` on inputs of growing length (linear, where a
backtracking engine takes exponential time). Figures are medians of ``--repeat`` runs; the last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opsradar.alerting.rules import RuleEngine, RuleStats, load_rules, parse_matcher
from opsradar.models import Alert, Event, Severity

ROOT = Path(__file__).parents[1]
T0 = datetime(2026, 3, 2, tzinfo=UTC)
SERVICES = ["shop", "payments", "search", "auth", "catalog"]


def events(n: int, seed: int = 7, services: list[str] = SERVICES, days: float = 7.0) -> list[Event]:
    rng = random.Random(seed)
    out = []
    step = timedelta(days=days) / n
    for i in range(n):
        svc = rng.choice(services)
        r = rng.random()
        if r < 0.6:
            kind, entity, labels = "log", f"service:{svc}", {"level": rng.choice(["info"] * 8 + ["error", "warn"])}
        elif r < 0.75:
            kind, entity, labels = "build", f"job:{svc}-build", {"result": rng.choice(["SUCCESS"] * 5 + ["FAILURE"])}
        elif r < 0.8:
            kind, entity, labels = "deploy", f"job:{svc}-deploy", {"service": svc, "environment": "production"}
        elif r < 0.9:
            kind, entity, labels = "access", f"service:{svc}", {"service": svc, "status_class": "2xx"}
        elif r < 0.95:
            user = f"u{rng.randrange(50)}"
            kind, entity, labels = "audit", f"user:{user}", {"user": user, "action": "login",
                                                           "outcome": rng.choice(["success"] * 9 + ["failure"])}
        else:
            kind, entity, labels = "test_run", f"job:{svc}-build", {"result": "UNSTABLE"}
        values = {}
        if kind == "test_run":
            values = {"failed": float(rng.randrange(30)), "newly_failing": float(rng.randrange(3))}
        elif kind == "access":
            values = {"status": float(rng.choice([200] * 18 + [401, 403]))}
        out.append(Event.new(source="bench", native_id=str(i), kind=kind, ts=T0 + i * step, entity=entity,
                             labels=labels, values=values))
    return out


def alerts(n: int, seed: int = 8) -> list[Alert]:
    rng = random.Random(seed)
    kinds = ["build", "deploy", "log", "access", "test_run"]
    out = []
    for i in range(n):
        kind, svc = rng.choice(kinds), rng.choice(SERVICES)
        labels = {"alertname": f"{kind}-anomaly", "kind": kind, "service": svc, "source": "bench",
                  "entity": rng.choice([f"job:{svc}-build", f"job:{svc}-nightly", f"service:{svc}"])}
        out.append(Alert.from_labels(title="x", labels=labels, starts_at=T0 + timedelta(seconds=30 * i),
                                     severity=rng.choice([Severity.warning, Severity.error])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--alerts", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--services", type=int, default=len(SERVICES), help="services of the event stream")
    ap.add_argument("--days", type=float, default=7.0, help="the event time the stream spans")
    args = ap.parse_args()
    rules = load_rules([ROOT / "rules"])
    services = SERVICES[: args.services] + [f"service{i}" for i in range(len(SERVICES), args.services)]
    evs, als = events(args.events, services=services, days=args.days), alerts(args.alerts)
    ev_rates, al_rates, raised = [], [], 0
    for _ in range(args.repeat):
        engine = RuleEngine(rules, stats=RuleStats(export=False))
        t = time.perf_counter()
        raised = 0
        for e in evs:
            for a in engine.on_event(e):
                engine.on_alert(a, a.starts_at)
                raised += 1
        ev_rates.append(len(evs) / (time.perf_counter() - t))
        engine = RuleEngine(rules, stats=RuleStats(export=False))
        t = time.perf_counter()
        for a in als:
            engine.on_alert(a, a.starts_at)
        al_rates.append(len(als) / (time.perf_counter() - t))
    m = parse_matcher('entity=~"(a+)+$"')
    regex_us = {}
    for n in (1_000, 10_000, 100_000):
        s = "a" * n + "!"
        t = time.perf_counter()
        for _ in range(20):
            m.matches({"entity": s})
        regex_us[n] = (time.perf_counter() - t) / 20 * 1e6
    result = {
        "rules": len(rules.rule_names), "services": len(services), "days": args.days,
        "events": len(evs), "events_per_s": round(statistics.median(ev_rates)), "alerts_raised": raised,
        "alerts": len(als), "alerts_per_s": round(statistics.median(al_rates)),
        "regex_a_plus_plus_us": {str(k): round(v, 1) for k, v in regex_us.items()},
    }
    print(f"shipped rules: {result['rules']}")
    print(f"on_event (+ on_alert for raised): {result['events_per_s']:,} events/s "
          f"({len(evs):,} events of {len(services)} services over {args.days:g} days, {raised} alerts raised)")
    print(f"on_alert: {result['alerts_per_s']:,} alerts/s ({len(als):,} alerts)")
    for n, us in regex_us.items():
        print(f"(a+)+$ on {n + 1:,} chars: {us:,.1f} µs")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

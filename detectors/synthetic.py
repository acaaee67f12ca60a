"""Synthetic event streams with injected anomalies, one generator per stream type.

Used by the tests and by ``bench/detect.py`` (throughput, memory, and the measurement behind the
choice of detector per stream type). Everything is seeded and made here: no network, no files.

>>> events = stream_events("access", n=50, entity="service:shop", seed=1)
>>> len(events), events[0].kind, sorted(events[0].values)
(50, 'access', ['duration_ms', 'status'])
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from opsradar.models import Event

__all__ = ["KINDS", "labelled_events", "stream_events"]

#: The event kind generated for each stream type.
KINDS = {
    "build": "build",
    "test_run": "test_run",
    "commit": "commit",
    "issue": "issue",
    "access": "access",
    "log": "log",
    "audit": "audit",
    "metric": "metric",
}

_T0 = datetime(2026, 1, 5, tzinfo=UTC)
_SPACING = {  # seconds between events
    "build": 1800.0,
    "test_run": 1800.0,
    "commit": 2400.0,
    "issue": 7200.0,
    "access": 0.5,
    "log": 1.0,
    "audit": 30.0,
    "metric": 300.0,
}


def _normal(st: str, i: int, ts: datetime, rng: random.Random) -> tuple[dict[str, float], dict[str, str]]:
    day = 1.0 + 0.3 * math.sin(2 * math.pi * (ts.hour + ts.minute / 60) / 24)
    if st == "build":
        return {"duration_s": rng.gauss(300, 20) * day, "queue_s": abs(rng.gauss(20, 5))}, {
            "result": "FAILURE" if rng.random() < 0.05 else "SUCCESS"
        }
    if st == "test_run":
        total = 400.0
        return {"failed": float(rng.random() < 0.2), "total": total, "duration_s": rng.gauss(120, 10)}, {}
    if st == "commit":
        return {"lines_added": float(int(rng.expovariate(1 / 40))), "lines_deleted": float(int(rng.expovariate(1 / 15))),
                "files_changed": float(1 + int(rng.expovariate(1 / 2)))}, {}
    if st == "issue":
        return {"reopen_count": float(rng.random() < 0.1), "cycle_time_h": rng.gammavariate(2, 12)}, {}
    if st == "access":
        status = 500.0 if rng.random() < 0.01 else 200.0
        return {"status": status, "duration_ms": max(1.0, rng.gauss(80, 10) * day)}, {}
    if st == "log":
        tid = f"t{min(int(rng.expovariate(0.5)), 9)}"
        return {}, {"template_id": tid, "level": "ERROR" if rng.random() < 0.02 else "INFO"}
    if st == "audit":
        user = f"u{rng.randrange(8)}"
        return {}, {"user": user, "resource": f"r{(int(user[1:]) * 3 + rng.randrange(3)) % 20}"}
    return {"value": 50.0 * day + rng.gauss(0, 2)}, {}


def _anomalous(st: str, values: dict[str, float], labels: dict[str, str], rng: random.Random) -> None:
    if st == "build":
        values["duration_s"] *= rng.uniform(3, 6)
    elif st == "test_run":
        values["failed"] = float(rng.randrange(60, 200))
    elif st == "commit":
        values["lines_added"] = float(rng.randrange(3000, 9000))
    elif st == "issue":
        values["reopen_count"] = float(rng.randrange(3, 6))
    elif st == "access":
        values["duration_ms"] *= rng.uniform(8, 20)
    elif st == "log":
        labels["template_id"] = f"new{rng.randrange(10**6)}"
        labels["level"] = "ERROR"
    elif st == "audit":
        labels["user"] = f"intruder{rng.randrange(3)}"
        labels["resource"] = f"r{rng.randrange(20)}"
    else:
        values["value"] += rng.choice((-1, 1)) * rng.uniform(30, 50)


def labelled_events(
    st: str, *, n: int = 1000, entity: str | None = None, seed: int = 0, rate: float = 0.02, start: int = 200
) -> list[tuple[Event, bool]]:
    """``n`` events of stream type ``st`` for one entity, each with whether it is an injected anomaly."""
    rng = random.Random(seed)
    kind = KINDS[st]
    ent = entity or {"build": "job:shop-build", "test_run": "job:shop-test", "commit": "repo:shop-svc",
                     "issue": "project:SHOP", "audit": "service:vault"}.get(st, "service:shop")
    out: list[tuple[Event, bool]] = []
    t = _T0
    for i in range(n):
        t = t + timedelta(seconds=rng.expovariate(1 / _SPACING[st]))
        values, labels = _normal(st, i, t, rng)
        bad = i >= start and rng.random() < rate
        if bad:
            _anomalous(st, values, labels, rng)
        ev = Event(id=f"{st}-{seed}-{i}", source="synthetic", kind=kind, ts=t, entity=ent, values=values, labels=labels)
        out.append((ev, bad))
    return out


def stream_events(st: str, *, n: int = 1000, entity: str | None = None, seed: int = 0) -> list[Event]:
    """``n`` normal events (no injected anomalies) of stream type ``st``."""
    return [e for e, _ in labelled_events(st, n=n, entity=entity, seed=seed, rate=0.0)]

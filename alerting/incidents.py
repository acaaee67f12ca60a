"""Incident state in the store: the lifecycle, the owner lock, feedback and the ``incidents`` listing.

The lifecycle is ``open → acknowledged → resolved``, and ``resolved → open`` again (reopen). Every
transition appends a :class:`~opsradar.models.TimelineEntry`; :func:`revision` (alerts joined plus
other timeline entries) grows with every state change, and the notifier uses it to send one message
per state change. Only the last ``MAX_JOINED_ENTRIES`` "joined" entries stay on the timeline, so a
storm of thousands of alerts keeps a bounded incident document.

Writers of incident state (the correlator, the Slack worker recording a message ts, the interaction
handler) serialise through :func:`incident_lock`: a thread lock, plus a lock shared by every process
on the same store — ``flock`` on a file beside a SQLite database, ``pg_advisory_xact_lock`` keyed by
the schema on PostgreSQL — held for one transaction.

>>> from datetime import datetime, timezone
>>> t = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
>>> inc = Incident(id="inc-1", title="build slow", first_seen=t, last_seen=t)
>>> transition(inc, IncidentStatus.acknowledged, now=t, actor="ana").status
<IncidentStatus.acknowledged: 'acknowledged'>
>>> transition(inc, IncidentStatus.resolved, now=t, actor="ana").timeline[-1].what
'resolved'
>>> drop_rule_yaml("fp-shop", {"alertname": "BuildSlow", "service": "shop"}, reason="nightly job")
'filters:\\n- name: fp-shop\\n  description: nightly job\\n  action: drop\\n  matchers:\\n  - alertname=\"BuildSlow\"\\n  - service=\"shop\"\\n'
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, select, text
from sqlalchemy.engine import make_url

from opsradar import schema as t
from opsradar.models import Incident, IncidentStatus, TimelineEntry, utcnow
from opsradar.store import Store

__all__ = [
    "FeedbackResult",
    "IncidentNotFound",
    "drop_rule_yaml",
    "feedback_counts",
    "incident_lock",
    "incident_rows",
    "incidents_table",
    "load_incident",
    "revision",
    "save_incident",
    "transition",
    "trim_timeline",
]

#: Labels worth keeping in a proposed drop rule, in this order.
DROP_RULE_LABELS = ("alertname", "rule", "service", "source", "kind", "entity", "stream", "detector")

_THREAD_LOCKS: dict[str, threading.RLock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class IncidentNotFound(KeyError):
    """No incident with this id."""

    def __init__(self, incident_id: str) -> None:
        self.incident_id = incident_id
        super().__init__(f"no incident {incident_id!r}")

    def __str__(self) -> str:
        return str(self.args[0])


def _thread_lock(key: str) -> threading.RLock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(key, threading.RLock())


@contextmanager
def incident_lock(store: Store) -> Iterator[Connection]:
    """One transaction holding the incident-state lock of ``store`` (across threads and processes)."""
    lock = _thread_lock(store.url)
    with lock:
        lock_file = None
        try:
            if store.dialect == "sqlite":
                db = make_url(store.url).database
                if db and db != ":memory:":
                    path = Path(db).expanduser()
                    lock_file = open(path.with_name(path.name + ".incidents.lock"), "a+b")  # noqa: SIM115
                    fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            with store.transaction() as conn:
                if store.dialect == "postgresql":
                    key = int.from_bytes(hashlib.sha256(b"opsradar.incidents").digest()[:4], "big", signed=True)
                    conn.execute(text("select pg_advisory_xact_lock(:k, hashtext(current_schema()))"), {"k": key})
                yield conn
        finally:
            if lock_file is not None:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
                lock_file.close()


def load_incident(conn: Connection, incident_id: str) -> Incident:
    """The incident ``incident_id`` read inside ``conn``'s transaction."""
    doc = conn.execute(select(t.incidents.c.doc).where(t.incidents.c.id == incident_id)).scalar()
    if doc is None:
        raise IncidentNotFound(incident_id)
    return Incident.model_validate(doc)


def save_incident(store: Store, conn: Connection, incident: Incident) -> None:
    store.save_incident(incident.model_dump(mode="json"), conn=conn)


#: "joined" timeline entries kept per incident (older ones are dropped; the alerts stay in the store).
MAX_JOINED_ENTRIES = 200


def revision(incident: Incident) -> int:
    """A number that grows with every state change: alerts joined plus the other timeline entries."""
    return incident.alert_count + sum(1 for e in incident.timeline if e.what != "joined")


def trim_timeline(incident: Incident, keep_joined: int = MAX_JOINED_ENTRIES) -> None:
    """Drop the oldest "joined" entries beyond ``keep_joined`` (in place)."""
    joined = [i for i, e in enumerate(incident.timeline) if e.what == "joined"]
    if len(joined) > keep_joined:
        drop = set(joined[: len(joined) - keep_joined])
        incident.timeline = [e for i, e in enumerate(incident.timeline) if i not in drop]


def transition(incident: Incident, status: IncidentStatus, *, now: datetime, actor: str | None,
               detail: str = "") -> Incident:
    """Move ``incident`` to ``status`` (in place, and returned), recording it on the timeline.

    Acknowledging a resolved incident is refused; resolving twice changes nothing.
    """
    old = incident.status
    if status == old:
        return incident
    if status == IncidentStatus.acknowledged:
        if old == IncidentStatus.resolved:
            raise ValueError(f"incident {incident.id} is resolved; it cannot be acknowledged")
        incident.acknowledged_by = actor
        what = "acknowledged"
    elif status == IncidentStatus.resolved:
        incident.resolved_at = now
        what = "resolved"
    else:  # back to open: a reopen
        incident.resolved_at = None
        incident.acknowledged_by = None
        incident.reopen_count += 1
        what = "reopened"
    incident.status = status
    incident.timeline.append(TimelineEntry(ts=now, what=what, detail=detail, actor=actor))
    return incident


# ------------------------------------------------------------------------------------ feedback


@dataclass(frozen=True)
class FeedbackResult:
    """Feedback stored; for a false positive, a drop rule the user may choose to add (never applied)."""

    target_type: str
    target_id: str
    verdict: str
    actor: str
    proposed_rule: str | None = None


def _rule_name(prefix: str, labels: dict[str, str]) -> str:
    digest = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:8]
    return f"{prefix}-{digest}"


def drop_rule_yaml(name: str, labels: dict[str, str], *, reason: str = "") -> str:
    """A ``filters:`` rule file (YAML text) dropping alerts with these labels."""
    matchers = []
    for key in DROP_RULE_LABELS:
        if labels.get(key):
            value = labels[key].replace("\\", "\\\\").replace('"', '\\"')
            matchers.append(f'{key}="{value}"')
    rule: dict[str, Any] = {"name": name}
    if reason:
        rule["description"] = reason
    rule["action"] = "drop"
    rule["matchers"] = matchers
    return yaml.safe_dump({"filters": [rule]}, sort_keys=False, allow_unicode=True)


def common_labels(label_sets: list[dict[str, str]]) -> dict[str, str]:
    """The labels every set shares with the same value."""
    if not label_sets:
        return {}
    out = dict(label_sets[0])
    for labels in label_sets[1:]:
        out = {k: v for k, v in out.items() if labels.get(k) == v}
    return out


def proposed_drop_rule(label_sets: list[dict[str, str]], *, reason: str = "") -> str | None:
    """A drop rule for what the alerts have in common, or None when they share nothing useful."""
    common = common_labels(label_sets)
    useful = {k: v for k, v in common.items() if k in DROP_RULE_LABELS}
    if not useful:
        return None
    return drop_rule_yaml(_rule_name("drop-false-positive", useful), useful, reason=reason)


def feedback_counts(store: Store, *, label: str = "stream") -> dict[str, dict[str, int]]:
    """Feedback verdicts per value of an alert label, for detectors tuning their thresholds.

    An incident's verdict counts for each of its alerts. Returns ``{value: {"true_positive": n,
    "false_positive": m}}``.
    """
    out: dict[str, dict[str, int]] = {}

    def bump(labels: dict[str, str], verdict: str) -> None:
        value = labels.get(label)
        if value:
            counts = out.setdefault(value, {"true_positive": 0, "false_positive": 0})
            counts[verdict] = counts.get(verdict, 0) + 1

    for row in store.feedback_for():
        if row["target_type"] == "alert":
            got = store.get_alert(row["target_id"])
            if got is not None:
                bump(got[0].get("labels", {}), row["verdict"])
        elif row["target_type"] == "incident":
            for doc in store.alerts_of(row["target_id"]):
                bump(doc.get("labels", {}), row["verdict"])
    return out


def now_or_utc(now: datetime | None) -> datetime:
    return now if now is not None else utcnow()


# ------------------------------------------------------------------------------------ the CLI listing


def incident_rows(store: Store, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Incidents for a listing, newest first: the fields a person scans."""
    if status is not None and status not in {s.value for s in IncidentStatus}:
        raise ValueError(f"status must be one of {', '.join(s.value for s in IncidentStatus)}; got {status!r}")
    out = []
    for doc in store.list_incidents(status=status, limit=limit):
        inc = Incident.model_validate(doc)
        out.append({
            "id": inc.id, "status": inc.status.value, "severity": inc.severity.value, "title": inc.title,
            "services": inc.services, "sources": inc.sources, "alerts": inc.alert_count,
            "first_seen": inc.first_seen.isoformat(), "last_seen": inc.last_seen.isoformat(),
            "acknowledged_by": inc.acknowledged_by, "reopened": inc.reopen_count, "feedback": inc.feedback,
            "slack": f"{inc.slack_channel}/{inc.slack_ts}" if inc.slack_ts else None,
        })
    return out


def incidents_table(rows: list[dict[str, Any]]) -> Any:
    """A Rich table of :func:`incident_rows`."""
    from rich.table import Table

    table = Table(title=f"{len(rows)} incident{'s' if len(rows) != 1 else ''}")
    for col in ("id", "status", "severity", "title", "services", "alerts", "first seen", "last seen"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["id"], r["status"] + (f" ({r['acknowledged_by']})" if r["acknowledged_by"] else ""),
                      r["severity"], r["title"], ", ".join(r["services"]) or "—", str(r["alerts"]),
                      r["first_seen"][:16].replace("T", " "), r["last_seen"][:16].replace("T", " "))
    return table

"""From incident updates to outbox rows, and the worker that drains the outbox.

:class:`Notifier` turns an :class:`~opsradar.alerting.correlation.IncidentUpdate` into rows of the
persistent outbox (``Store.enqueue``), **once per (incident, state change, channel)**: the dedup key
names all three, and the store's unique key on it makes a second enqueue a no-op. Rows:

===================  =====================================  ================================================
action               dedup key                              effect
===================  =====================================  ================================================
``post``             ``inc:{id}:post:{channel}``            the parent message (Block Kit)
``update``           ``inc:{id}:update:{channel}:r{rev}…``  ``chat.update`` of the parent (``…``: see below)
``reply``            ``inc:{id}:reply:{channel}:r{rev}:…``  a thread reply about a notable change
``reply``            ``inc:{id}:remind:{channel}:{n}``      the n-th reminder (``repeat_interval``)
``digest``           ``digest:{channel}:{d}:post``          storm mode: one message for many incidents
``digest_update``    ``digest:{channel}:{d}:update:{n}``    the digest, re-rendered
``digest_reminder``  ``digest:{channel}:{d}:remind:{n}``    the n-th reminder in the digest's thread
===================  =====================================  ================================================

A root-cause ranking attached after an update was enqueued (ranking runs beside alerting) does not
change the revision; the update key also names the ranked candidates (``:rc`` and a short hash of
their event ids in order), so a new ranking updates the message once, and an unchanged one never.

Messages render the incident's state **when they are sent**, so an old update replayed after a newer
one cannot roll the message back, and several pending updates of one message collapse into one call.

**group_wait**: an incident's first message in a channel waits for the ``group_wait`` of the route
that sent its opening alert there (Alertmanager's semantics, on the wall clock; the shortest when
several of the alert's routes lead to that channel), so that the alerts that join it meanwhile are
in that message instead of in edits right after it. While the first message is held, no update or
reply is queued for it: it renders the incident as it is when it goes out.
``slack.apply_group_wait: false`` posts at once; a clean shutdown sends the held messages
(:meth:`OutboxWorker.release_held`). Later changes are not held: the message is edited in place as
the incident evolves. A storm's digest is not held either.

**repeat_interval**: while an incident stays open and unacknowledged, :meth:`Notifier.remind` posts a
reminder in its message's thread every ``repeat_interval`` (of the route that sent the first message
to that channel, on the wall clock, counted from when that message was sent), mentioning the
channel's people for the severities in ``mention_on``. Acknowledging or resolving the incident
stops them. Incidents in a storm's digest are reminded together: every ``repeat_interval`` (of the
route that opened the digest) since the digest was sent, one reminder in the digest's thread lists
those still open and not acknowledged; none is sent once all are acknowledged or resolved.
``slack.apply_repeat_interval: false`` sends none. ``group_interval`` does not pace the edits and
replies: an edit notifies nobody, and an escalation should not wait.

**Storm mode**: when more than ``storm_threshold`` incidents open for one channel within
``storm_window``, the next ones do not get their own message: one digest message lists them and is
updated as the storm grows (and as its incidents change).

:class:`OutboxWorker` drains due rows in order through a transport (the Slack one lives in
:mod:`opsradar.alerting.notifiers.slack`): replies and updates wait for their parent message;
each channel keeps Slack's pace (``pace`` seconds between messages); ``Retry-After`` on 429 pauses
the channel; 5xx and network errors back off exponentially; a permanent error makes the row ``dead``.
Only one worker drains a store's outbox at a time: :class:`OutboxOwner` is an exclusive lock held by
the draining worker (``flock`` on a file beside a SQLite database, a session-level
``pg_try_advisory_lock`` keyed by the schema on PostgreSQL) and released when the worker closes or its process dies; other
workers stay idle meanwhile, so a standby worker can be started without sending anything twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, select, text, update
from sqlalchemy.engine import make_url

from opsradar import schema as t
from opsradar.alerting.correlation import Change, Correlator, IncidentUpdate
from opsradar.alerting.noise import NoiseMetrics
from opsradar.config import SlackConfig
from opsradar.errors import NotifyError
from opsradar.models import Incident, IncidentStatus, utcnow
from opsradar.store import Store

__all__ = [
    "Deferred",
    "Destination",
    "DrainStats",
    "Notifier",
    "OutboxOwner",
    "OutboxWorker",
    "Transport",
    "handle_decision",
    "message_state",
    "post_key",
]

log = logging.getLogger(__name__)

_CHANNEL_ID = ("C", "G", "D")


def post_key(incident_id: str, channel: str) -> str:
    return f"inc:{incident_id}:post:{channel}"


def digest_post_key(channel: str, digest_id: str) -> str:
    return f"digest:{channel}:{digest_id}:post"


@dataclass(frozen=True)
class Destination:
    """A Slack channel (``#name`` or an id) and who to mention there for high severities."""

    channel: str
    mentions: tuple[str, ...] = ()


def _looks_like_channel(name: str) -> bool:
    return name.startswith("#") or (len(name) >= 7 and name[0] in _CHANNEL_ID and name[1:].isalnum() and name.isupper())


class Deferred(Exception):
    """The row cannot be sent yet (its parent message is not delivered); try again later."""


class Transport(Protocol):
    def deliver(self, row: Mapping[str, Any], *, maybe_sent: bool,
                before_send: Callable[[], None]) -> dict[str, Any]:
        """Send one outbox row; returns the result to store.

        ``maybe_sent``: an earlier attempt may have reached the service (look before sending again).
        ``before_send`` must be called right before a call that is not idempotent (posting a message).
        Raises :class:`Deferred` when the row must wait, :class:`NotifyError` when sending failed.
        """
        ...


# ------------------------------------------------------------------------------------ notifier


class Notifier:
    """Incident updates → outbox rows (see the module docstring)."""

    def __init__(self, store: Store, cfg: SlackConfig | None = None, *,
                 targets: Mapping[str, Destination | None] | None = None,
                 metrics: NoiseMetrics | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.cfg = cfg or SlackConfig()
        self.targets = dict(targets or {})
        self.metrics = metrics
        #: the wall clock that ``group_wait`` is counted on (the outbox worker's)
        self.clock = clock
        self._lock = threading.Lock()

    def destinations(self, incident: Incident) -> list[Destination]:
        """Where an incident goes: its receivers resolved to channels, else the default channel."""
        out: list[Destination] = []
        routed = False
        for name in incident.receivers:
            if name in self.targets:
                routed = True
                dest = self.targets[name]
                if dest is not None:
                    out.append(dest)
            elif _looks_like_channel(name):
                routed = True
                out.append(Destination(name))
        if not routed:
            out.append(Destination(self.cfg.default_channel))
        seen: dict[str, Destination] = {}
        for d in out:
            prev = seen.get(d.channel)
            seen[d.channel] = Destination(d.channel, tuple(dict.fromkeys((*(prev.mentions if prev else ()), *d.mentions))))
        return list(seen.values())

    def _channel_of(self, receiver: str) -> str | None:
        """The channel a receiver posts to ("" when it has none; None when it is not routed)."""
        if receiver in self.targets:
            dest = self.targets[receiver]
            return dest.channel if dest is not None else ""
        return receiver if _looks_like_channel(receiver) else None

    def _for_channel(self, channel: str, per_receiver: timedelta | Mapping[str, timedelta] | None) -> timedelta | None:
        """The shortest of the durations of the receivers that lead to ``channel`` (of all of them when
        none does: the default channel); None when there is none or it is zero."""
        if not per_receiver:
            return None
        if isinstance(per_receiver, timedelta):
            d = per_receiver
        else:
            here = [w for r, w in per_receiver.items() if self._channel_of(r) == channel]
            d = min(here or per_receiver.values())
        return d if d > timedelta(0) else None

    def _wait(self, channel: str, group_wait: timedelta | Mapping[str, timedelta] | None) -> timedelta | None:
        """How long a first message in ``channel`` waits (its routes' ``group_wait``), None for no wait."""
        return self._for_channel(channel, group_wait) if self.cfg.apply_group_wait else None

    def _mentions(self, incident: Incident, dest: Destination) -> list[str]:
        return list(dest.mentions) if incident.severity.value in self.cfg.mention_on else []

    def _exists(self, dedup_key: str) -> bool:
        return self._row(dedup_key) is not None

    def _row(self, dedup_key: str) -> Mapping[str, Any] | None:
        q = select(t.outbox.c.status, t.outbox.c.attempts, t.outbox.c.next_attempt_at, t.outbox.c.delivered_at,
                   t.outbox.c.payload).where(t.outbox.c.dedup_key == dedup_key)
        with self.store.engine.connect() as conn:
            row = conn.execute(q).first()
        return dict(row._mapping) if row is not None else None

    def notify(self, update: IncidentUpdate, now: datetime | None = None, *,
               group_wait: timedelta | Mapping[str, timedelta] | None = None,
               repeat_interval: timedelta | Mapping[str, timedelta] | None = None) -> list[str]:
        """Enqueue what people should see of ``update``; returns the dedup keys newly enqueued.

        ``group_wait``: how long a first message waits, in every channel or per receiver (the
        routes'; see the module docstring). ``repeat_interval``: how often :meth:`remind` reminds
        the channel of the incident while it is open (kept with the first message)."""
        if update.incident is None or not update.visible:
            return []
        now = now or utcnow()
        inc = update.incident
        rev = update.revision
        keys: list[str] = []
        with self._lock:
            for dest in self.destinations(inc):
                ch = dest.channel
                digest_id = self._digest_member(ch, inc.id, now, opened=Change.opened in update.changes)
                if digest_id is not None:
                    keys += self._enqueue_digest(ch, digest_id, inc.id, rev, every=self._for_channel(ch, repeat_interval))
                    continue
                post = self._row(post_key(inc.id, ch))
                if post is None:
                    hold = self._wait(ch, group_wait)
                    payload: dict[str, Any] = {"incident_id": inc.id, "mentions": list(dest.mentions),
                                               "mention_on": list(self.cfg.mention_on)}
                    if every := self._for_channel(ch, repeat_interval):
                        payload["repeat_interval_s"] = every.total_seconds()
                    if self.store.enqueue(dedup_key=post_key(inc.id, ch), channel=ch, action="post",
                                          payload=payload, incident_id=inc.id,
                                          not_before=self.clock() + hold if hold else None):
                        keys.append(post_key(inc.id, ch))
                    if Change.opened in update.changes or hold:
                        continue
                elif _held(post, self.clock()):  # it goes out as the incident is then: nothing to add to it
                    continue
                key = f"inc:{inc.id}:update:{ch}:r{rev}{_ranking_tag(inc)}"
                if self.store.enqueue(dedup_key=key, channel=ch, action="update",
                                      payload={"incident_id": inc.id, "rev": rev}, incident_id=inc.id):
                    keys.append(key)
                for change in update.notable:
                    detail = {
                        Change.new_service: ", ".join(update.new_services),
                        Change.escalated: inc.severity.value,
                        Change.reopened: update.alert.title if update.alert else "",
                        Change.resolved: inc.timeline[-1].detail if inc.timeline else "",
                    }.get(change, "")
                    key = f"inc:{inc.id}:reply:{ch}:r{rev}:{change.value}"
                    payload = {"incident_id": inc.id, "rev": rev, "change": change.value, "detail": detail,
                               "actor": update.actor or (inc.acknowledged_by if change == Change.acknowledged else None),
                               "mentions": self._mentions(inc, dest) if change == Change.escalated else []}
                    if self.store.enqueue(dedup_key=key, channel=ch, action="reply", payload=payload,
                                          incident_id=inc.id):
                        keys.append(key)
        return keys

    def remind(self, incident: Incident, now: datetime | None = None) -> list[str]:
        """Remind each channel of an open, unacknowledged incident, in its message's thread, every
        ``repeat_interval`` (of the route that sent the first message there) since that message was
        sent, on the wall clock; returns the dedup keys newly enqueued.

        The ``n``-th reminder has the dedup key ``inc:{id}:remind:{channel}:{n}``, so calling this
        again (every few seconds, or after a restart) enqueues nothing twice, and reminders missed
        while opsradar was down collapse into one. A reminder still queued when the incident is
        acknowledged or resolved is not sent (the transport checks). An incident in a storm's digest
        has no message of its own: the digest's thread is reminded of those of its incidents still
        open (``digest:{channel}:{d}:remind:{n}``, the digest's ``repeat_interval``).
        """
        if incident.status != IncidentStatus.open or not self.cfg.apply_repeat_interval:
            return []
        now = now or self.clock()
        keys: list[str] = []
        with self._lock:
            posts = {r["channel"]: r for r in self.store.first_messages(incident.id)}
            for dest in self.destinations(incident):
                ch = dest.channel
                if ch not in posts:  # no message of its own there: a storm's digest, perhaps
                    keys += self._remind_digest(incident, dest, now)
                    continue
                due = _reminders_due(posts[ch], now)
                if due is None or due[1] < 1:
                    continue
                every, n = due
                key = f"inc:{incident.id}:remind:{ch}:{n}"
                payload = {"incident_id": incident.id, "change": "reminder", "detail": _duration(n * every),
                           "mentions": self._mentions(incident, dest)}
                if self.store.enqueue(dedup_key=key, channel=ch, action="reply", payload=payload,
                                      incident_id=incident.id):
                    keys.append(key)
        return keys

    def _remind_digest(self, incident: Incident, dest: Destination, now: datetime) -> list[str]:
        """The reminder due in the thread of the digest that holds ``incident`` in ``dest``'s channel
        (one per digest and interval, whichever of its open incidents asks first)."""
        ch = dest.channel
        state = self._load_storm(ch)
        digest_id = _digest_of(state, incident.id)
        if digest_id is None:
            return []
        d = state["digests"][digest_id]
        row = self._row(digest_post_key(ch, digest_id))
        due = _reminders_due(row, now) if row is not None else None
        if due is None or due[1] < 1:
            return []
        every, n = due
        key = f"digest:{ch}:{digest_id}:remind:{n}"
        if self._exists(key):
            return []
        # the channel's people are mentioned when any incident of the digest still open calls for it
        still = [doc for m in d["members"] if (doc := self.store.get_incident(m)) is not None
                 and doc.get("status") == IncidentStatus.open.value]
        mention = any(doc.get("severity") in self.cfg.mention_on for doc in still)
        payload = {"digest_id": digest_id, "members": list(d["members"]), "change": "reminder",
                   "detail": _duration(n * every), "mentions": list(dest.mentions) if mention else []}
        return [key] if self.store.enqueue(dedup_key=key, channel=ch, action="digest_reminder", payload=payload) else []

    # ------------------------------------------------------------------ storm mode

    def _storm_key(self, channel: str) -> str:
        return f"notify/storm/{channel}"

    def _load_storm(self, channel: str) -> dict[str, Any]:
        got = self.store.load_checkpoint(self._storm_key(channel))
        return json.loads(got[0]) if got else {"opened": [], "digests": {}, "active": None}

    def _save_storm(self, channel: str, state: dict[str, Any]) -> None:
        self.store.save_checkpoint(self._storm_key(channel), json.dumps(state).encode())

    def _digest_member(self, channel: str, incident_id: str, now: datetime, *, opened: bool) -> str | None:
        """The digest the incident belongs to in ``channel`` (joining or starting one when it opens)."""
        state = self._load_storm(channel)
        if (did := _digest_of(state, incident_id)) is not None:
            return did
        if not opened or self._exists(post_key(incident_id, channel)):
            return None
        window = self.cfg.storm_window
        state["opened"] = [(ts, i) for ts, i in state["opened"] if datetime.fromisoformat(ts) >= now - window]
        active = state.get("active")
        if active and datetime.fromisoformat(state["digests"][active]["last"]) >= now - window:
            state["digests"][active]["members"].append(incident_id)
            state["digests"][active]["last"] = now.isoformat()
            self._save_storm(channel, state)
            return str(active)
        if len(state["opened"]) >= self.cfg.storm_threshold:
            did = f"{now:%Y%m%dT%H%M%S}-{incident_id[-6:]}"
            state["digests"][did] = {"started": now.isoformat(), "last": now.isoformat(), "members": [incident_id]}
            state["active"] = did
            self._save_storm(channel, state)
            return did
        state["opened"].append((now.isoformat(), incident_id))
        state["active"] = None
        self._save_storm(channel, state)
        return None

    def _enqueue_digest(self, channel: str, digest_id: str, incident_id: str, rev: int, *,
                        every: timedelta | None = None) -> list[str]:
        d = self._load_storm(channel)["digests"][digest_id]
        payload: dict[str, Any] = {"digest_id": digest_id, "started": d["started"], "members": list(d["members"])}
        key = digest_post_key(channel, digest_id)
        if not self._exists(key):
            if every:  # the reminders of the digest's incidents (:meth:`remind`)
                payload["repeat_interval_s"] = every.total_seconds()
            self.store.enqueue(dedup_key=key, channel=channel, action="digest", payload=payload)
            return [key]
        key = f"digest:{channel}:{digest_id}:update:{incident_id}:r{rev}"
        if self.store.enqueue(dedup_key=key, channel=channel, action="digest_update", payload=payload):
            return [key]
        return []


def _digest_of(storm: Mapping[str, Any], incident_id: str) -> str | None:
    """The digest of a channel's storm state that lists ``incident_id``, if any."""
    return next((str(did) for did, d in storm["digests"].items() if incident_id in d["members"]), None)


def _duration(d: timedelta) -> str:
    """``d`` as people say it: ``4h``, ``1h 30m``, ``2d 4h``, ``45m``, ``30s``.

    >>> _duration(timedelta(hours=4)), _duration(timedelta(minutes=90)), _duration(timedelta(days=2, hours=4))
    ('4h', '1h 30m', '2d 4h')
    """
    s = int(d.total_seconds())
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m")]
    text = " ".join(f"{v}{u}" for v, u in parts if v)
    return text or f"{s}s"


def _ranking_tag(incident: Incident) -> str:
    """``:rc`` and a short hash of the ranked candidates' event ids in order ("" when not ranked)."""
    ids = [str(c.get("event_id", "")) for c in incident.root_cause]
    if not ids:
        return ""
    return ":rc" + hashlib.sha1("|".join(ids).encode(), usedforsecurity=False).hexdigest()[:8]


def _held(row: Mapping[str, Any], now: datetime) -> bool:
    """Whether an outbox row is a message still waiting out its ``group_wait``: pending, never
    tried, not yet due (:meth:`OutboxWorker.release_held` selects the same rows in SQL)."""
    return bool(row["status"] == "pending" and not row["attempts"] and row["next_attempt_at"] > now)


def _repeat_interval(row: Mapping[str, Any]) -> timedelta | None:
    """The ``repeat_interval`` kept with a first message (``post`` row), None when its route had none."""
    every_s = (row.get("payload") or {}).get("repeat_interval_s")
    return timedelta(seconds=float(every_s)) if every_s else None


def _reminders_due(row: Mapping[str, Any], now: datetime) -> tuple[timedelta, int] | None:
    """For a first message that was sent and has a ``repeat_interval``: that interval, and how many
    reminders are due by ``now`` (whole intervals since it was sent); None otherwise (not sent yet,
    or never: failed; or no ``repeat_interval``)."""
    every = _repeat_interval(row)
    if every is None or row["status"] != "done" or row["delivered_at"] is None:
        return None
    return every, int((now - row["delivered_at"]) / every)


def message_state(row: Mapping[str, Any], now: datetime, *, reminders: bool = False) -> dict[str, Any]:
    """What became of one first message (an outbox ``post`` row), for people asking the API why an
    incident is, or is not yet, in Slack: ``held`` (waiting out ``group_wait`` until ``due_at``),
    ``queued`` (due, waiting for the worker or the channel's pace), ``retrying`` (an attempt failed
    or may have been cut short: ``last_error``, next at ``due_at``), ``sent`` (at ``sent_at``) or
    ``failed`` (given up: ``last_error``). With its route's ``repeat_interval_s``; ``reminders``
    (the incident is open and reminders are on): when a sent message's next reminder is due
    (``next_reminder_at``, as :meth:`Notifier.remind` counts)."""
    attempts = int(row["attempts"] or 0)
    if row["status"] == "done":
        state = "sent"
    elif row["status"] == "dead":
        state = "failed"
    elif attempts:
        state = "retrying"
    else:
        state = "held" if _held(row, now) else "queued"
    out: dict[str, Any] = {"channel": row["channel"], "state": state, "attempts": attempts}
    if state in ("held", "queued", "retrying"):
        out["due_at"] = row["next_attempt_at"].isoformat()
    if state == "sent" and row["delivered_at"] is not None:
        out["sent_at"] = row["delivered_at"].isoformat()
    if (every := _repeat_interval(row)) is not None:
        out["repeat_interval_s"] = every.total_seconds()
        if reminders and (due := _reminders_due(row, now)) is not None:
            out["next_reminder_at"] = (row["delivered_at"] + (due[1] + 1) * every).isoformat()
    if state in ("retrying", "failed") and row["last_error"]:
        out["last_error"] = row["last_error"]
    return out


def handle_decision(decision: Any, correlator: Correlator, notifier: Notifier,
                    now: datetime | None = None) -> IncidentUpdate | None:
    """The pipeline's glue: a rule engine ``Decision`` → correlation → notification.

    A dropped alert is ignored. A silenced or inhibited alert is still correlated (the incident
    records it) but not notified; when a notifiable alert later reaches the incident, its message
    is posted then.
    """
    if decision.dropped:
        return None
    routes = getattr(decision, "routes", None) or []
    group_by = list(routes[0].group_by) if routes else None
    update = correlator.add(decision.alert, now, group_by=group_by, receivers=list(decision.receivers))
    if decision.notify:
        notifier.notify(update, now)
    return update


# ------------------------------------------------------------------------------------ the worker

_OUTBOX_KEY = int.from_bytes(hashlib.sha256(b"opsradar.outbox").digest()[:4], "big", signed=True)
_MEMORY_OWNERS: dict[str, threading.Lock] = {}
_MEMORY_GUARD = threading.Lock()


class OutboxOwner:
    """An exclusive, non-blocking lock: the one worker allowed to drain a store's outbox."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._file: Any = None
        self._conn: Connection | None = None
        self._mem: threading.Lock | None = None
        self.held = False

    def acquire(self) -> bool:
        """Take ownership if free (or already ours); False when another worker owns the outbox."""
        if self.held:
            return True
        if self.store.dialect == "postgresql":
            conn = self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if conn.execute(text("select pg_try_advisory_lock(:k, hashtext(current_schema()))"), {"k": _OUTBOX_KEY}).scalar():
                self._conn, self.held = conn, True
            else:
                conn.close()
            return self.held
        db = make_url(self.store.url).database
        if db and db != ":memory:":
            path = Path(db).expanduser()
            f = open(path.with_name(path.name + ".outbox.lock"), "a+b")  # noqa: SIM115 - held while owner
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                return False
            self._file, self.held = f, True
            return True
        with _MEMORY_GUARD:
            lock = _MEMORY_OWNERS.setdefault(self.store.url + f"#{id(self.store)}", threading.Lock())
        if lock.acquire(blocking=False):
            self._mem, self.held = lock, True
        return self.held

    def release(self) -> None:
        if not self.held:
            return
        if self._conn is not None:
            try:  # the pooled session outlives close(): unlock explicitly
                self._conn.execute(text("select pg_advisory_unlock(:k, hashtext(current_schema()))"), {"k": _OUTBOX_KEY})
            finally:
                self._conn.close()
                self._conn = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._mem is not None:
            self._mem.release()
            self._mem = None
        self.held = False


@dataclass
class DrainStats:
    delivered: int = 0
    superseded: int = 0
    retried: int = 0
    dead: int = 0
    deferred: int = 0
    waiting: float = 0.0  # seconds until the next row may go (0: nothing waits)


class OutboxWorker:
    """Drains the outbox through a transport, in order, at Slack's pace, with retries (module docstring)."""

    def __init__(self, store: Store, transport: Transport, *, clock: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], None] = time.sleep, pace: float = 1.0, max_attempts: int = 12,
                 base_backoff: float = 2.0, max_backoff: float = 300.0, batch: int = 500,
                 metrics: NoiseMetrics | None = None,
                 on_delivered: Callable[[Mapping[str, Any], dict[str, Any]], None] | None = None) -> None:
        self.store = store
        self.transport = transport
        self.clock = clock
        self.sleep = sleep
        self.pace = pace
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.batch = batch
        self.metrics = metrics
        self.on_delivered = on_delivered
        self._next_ok: dict[str, datetime] = {}
        self.owner = OutboxOwner(store)

    def close(self) -> None:
        """Give up the ownership of the outbox (a standby worker may take over)."""
        self.owner.release()

    # ------------------------------------------------------------------ row bookkeeping

    def _set(self, row_id: int, **values: Any) -> None:
        with self.store.transaction() as conn:
            conn.execute(update(t.outbox).where(t.outbox.c.id == row_id).values(**values))

    def _mark_in_flight(self, row: Mapping[str, Any]) -> None:
        """Record the attempt *before* calling out: after a crash, the next attempt knows to look first."""
        self._set(row["id"], attempts=t.outbox.c.attempts + 1, last_error=f"in flight since {self.clock().isoformat()}")

    def _newer_update_pending(self, row: Mapping[str, Any]) -> bool:
        q = select(t.outbox.c.id).where(
            t.outbox.c.status == "pending", t.outbox.c.action == row["action"], t.outbox.c.channel == row["channel"],
            t.outbox.c.id > row["id"],
        )
        if row["action"] == "update":
            q = q.where(t.outbox.c.incident_id == row["incident_id"])
        else:  # digest_update: same digest
            q = q.where(t.outbox.c.dedup_key.startswith(row["dedup_key"].split(":update:")[0] + ":update:", autoescape=True))
        with self.store.engine.connect() as conn:
            return conn.execute(q.limit(1)).first() is not None

    def _backoff(self, attempts: int) -> float:
        return float(min(self.max_backoff, self.base_backoff * 2 ** max(0, attempts - 1)))

    # ------------------------------------------------------------------ draining

    def drain_once(self) -> DrainStats:
        """One pass over the due rows. Rows of a channel that must wait are left for a later pass."""
        stats = DrainStats()
        if not self.owner.acquire():
            stats.waiting = 1.0  # another worker owns the outbox; stand by
            return stats
        now = self.clock()
        blocked: set[str] = set()
        waits: list[float] = []
        for row in self.store.due_notifications(now=now, limit=self.batch):
            ch = row["channel"]
            if ch in blocked:
                continue
            ready = self._next_ok.get(ch)
            now = self.clock()
            if ready is not None and now < ready:
                blocked.add(ch)
                waits.append((ready - now).total_seconds())
                continue
            if row["action"] in ("update", "digest_update") and self._newer_update_pending(row):
                self.store.mark_delivered(row["id"], {"superseded": True})
                stats.superseded += 1
                continue
            maybe_sent = int(row["attempts"] or 0) > 0
            marked: list[bool] = []

            def before_send(row: Mapping[str, Any] = row, marked: list[bool] = marked) -> None:
                if not marked:
                    self._mark_in_flight(row)
                    marked.append(True)

            try:
                result = self.transport.deliver(row, maybe_sent=maybe_sent, before_send=before_send)
            except Deferred as exc:
                stats.deferred += 1
                blocked.add(ch)  # keep the channel's order: nothing after it goes first
                self._set(row["id"], next_attempt_at=now + timedelta(seconds=self.pace), last_error=str(exc)[:2000])
                waits.append(self.pace)
                continue
            except NotifyError as exc:
                attempts = int(row["attempts"] or 0) + 1
                in_flight = bool(marked)
                if not exc.retryable or attempts >= self.max_attempts:
                    log.warning("outbox row %s (%s) is dead after %d attempt(s): %s", row["id"], row["dedup_key"], attempts, exc)
                    if in_flight:
                        self._set(row["id"], status="dead", last_error=str(exc)[:2000])
                    else:
                        self.store.mark_failed(row["id"], str(exc), retry_at=None)
                    stats.dead += 1
                    continue
                delay = max(exc.retry_after or 0.0, self._backoff(attempts) if exc.retry_after is None else 0.0)
                retry_at = now + timedelta(seconds=delay)
                if exc.retry_after is not None:  # 429: the whole channel waits
                    self._next_ok[ch] = retry_at
                if in_flight:
                    self._set(row["id"], next_attempt_at=retry_at, last_error=str(exc)[:2000])
                else:
                    self.store.mark_failed(row["id"], str(exc), retry_at=retry_at)
                blocked.add(ch)
                waits.append(delay)
                stats.retried += 1
                continue
            self.store.mark_delivered(row["id"], result)
            stats.delivered += 1
            sent = not (result.get("superseded") or result.get("skipped"))
            if sent:
                self._next_ok[ch] = self.clock() + timedelta(seconds=self.pace)
            if self.on_delivered is not None:
                self.on_delivered(row, result)
            if (self.metrics is not None and sent and row["action"] in ("post", "reply", "digest", "digest_reminder")
                    and not result.get("recovered")):
                self.metrics.record("slack_messages", source=result.get("source"), rule=result.get("rule"))
        stats.waiting = min(waits) if waits else 0.0
        return stats

    def release_held(self) -> int:
        """Make the first messages held for ``group_wait`` due now (a clean shutdown sends them);
        returns how many there were."""
        now = self.clock()
        with self.store.transaction() as conn:
            res = conn.execute(update(t.outbox).where(
                t.outbox.c.status == "pending", t.outbox.c.action == "post", t.outbox.c.attempts == 0,
                t.outbox.c.next_attempt_at > now).values(next_attempt_at=now))
        return int(res.rowcount or 0)

    def pending(self) -> int:
        return len(self.store.outbox_rows(status="pending"))

    def drain(self, *, max_passes: int = 1000) -> DrainStats:
        """Drain until nothing is pending (sleeping, through ``sleep``, when rows must wait)."""
        total = DrainStats()
        for _ in range(max_passes):
            s = self.drain_once()
            for f in ("delivered", "superseded", "retried", "dead", "deferred"):
                setattr(total, f, getattr(total, f) + getattr(s, f))
            if not self.pending() or not self.owner.held:
                break
            progressed = s.delivered or s.superseded
            wait = s.waiting or (0.0 if progressed else self._next_due_in())
            if wait > 0 or not progressed:
                self.sleep(max(wait, 0.01))
        return total

    def _next_due_in(self) -> float:
        rows = self.store.outbox_rows(status="pending")
        if not rows:
            return 0.0
        now = self.clock()
        return float(max(0.0, min((r["next_attempt_at"] - now).total_seconds() for r in rows)))

    def run(self, stop: threading.Event, *, idle: float = 0.5) -> None:
        """Drain until ``stop`` is set (the serving loop); then give up the ownership."""
        try:
            self._run(stop, idle)
        finally:
            self.close()

    def _run(self, stop: threading.Event, idle: float) -> None:
        while not stop.is_set():
            try:
                s = self.drain_once()
            except Exception:  # keep the loop alive; the row stays pending and is retried
                log.exception("outbox drain failed")
                s = DrainStats(waiting=idle)
            if s.delivered == 0 and s.superseded == 0:
                stop.wait(min(max(s.waiting, 0.05), idle) if s.waiting else idle)


def dedup_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(r["dedup_key"]) for r in rows]

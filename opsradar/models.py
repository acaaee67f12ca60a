"""The core data model: Event, Anomaly, Alert, Incident.

Every part of opsradar speaks these types. They are pydantic v2 models; the ones that take input
from outside (``Event``) are strict about it. All timestamps are timezone-aware UTC.

>>> from datetime import datetime, timezone
>>> e = Event.new(source="jenkins", native_id="checkout-build#42", kind="build",
...               ts=datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc), entity="job:checkout-build",
...               values={"duration_s": 312.0})
>>> e.id == Event.make_id("jenkins", "checkout-build#42", e.ts)
True
>>> e.id  # the source, the time in milliseconds (hex), a digest of the source's id
'jenkins-19b8d7df1c066d4c6705b34a0f927c9d99d'
>>> e.entity_type, e.entity_name
('job', 'checkout-build')
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import msgspec
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "CHANGE_KINDS",
    "MAX_AHEAD_OF_CLOCK",
    "Alert",
    "AlertStatus",
    "Anomaly",
    "Contribution",
    "Event",
    "Incident",
    "IncidentStatus",
    "Severity",
    "TimelineEntry",
    "UtcDatetime",
    "fingerprint",
    "utcnow",
]


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


#: A timezone-aware datetime, normalised to UTC. Naive datetimes are rejected.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]

#: How far ahead of the wall clock an event's time may be before opsradar treats that clock as wrong:
#: event time (timers, auto-resolve) does not advance to such an event, and a source that sends them
#: shows it in its health (``events_ahead_of_clock``).
MAX_AHEAD_OF_CLOCK = timedelta(hours=1)

#: Event kinds that are changes: candidates for root cause.
CHANGE_KINDS = frozenset({"commit", "deploy", "build", "issue", "config", "release"})

_ENTITY_TYPES = ("service", "repo", "job", "project", "index", "host", "user")
_ALL_EVENT_FIELDS = frozenset({"id", "source", "kind", "ts", "entity", "labels", "values", "attrs"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_HEX = re.compile(r"[0-9a-f]+")


def _digest(source: str, native_id: str) -> str:
    return hashlib.sha256(f"{source}\x00{native_id}".encode()).hexdigest()[:24]


#: How deep an event's ``attrs`` may nest (the attrs object itself is level 1). Deeper documents
#: could not be stored: pydantic's JSON serializer stops at ~255 levels, the pickler between
#: deployments at a few hundred.
MAX_ATTRS_DEPTH = 64


def attrs_too_deep(attrs: dict[str, Any], limit: int = MAX_ATTRS_DEPTH) -> bool:
    """Whether ``attrs`` nests dicts and lists more than ``limit`` levels deep (without recursion).

    >>> attrs_too_deep({"a": [{"b": 1}]}, limit=3), attrs_too_deep({"a": [{"b": [1]}]}, limit=3)
    (False, True)
    """
    stack: list[tuple[Any, int]] = [(attrs, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, dict | list | tuple):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


_JSON_SCALARS = (str, int, float, bool, type(None))


def json_native(value: Any, limit: int = MAX_ATTRS_DEPTH) -> bool:
    """Whether ``value`` holds only what JSON holds, as JSON gives it back: dicts with string keys,
    lists, strings, finite floats, ints of at most 64 bits, booleans and ``None`` (exact types, no
    subclasses, no tuples), at most ``limit`` levels deep. Such values encode to JSON and msgpack
    and decode back equal; other values take the slower, general paths.

    >>> json_native({"a": [1, 2.5, None, {"b": "c"}]}), json_native({"a": (1, 2)}), json_native({1: "x"})
    (True, False, False)
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is dict:
            children = node.values()
            if any(type(k) is not str for k in node):
                return False
        elif kind is list:
            children = node
        else:
            return False
        for child in children:
            ck = type(child)
            if ck is dict or ck is list:
                if depth >= limit:
                    return False
                stack.append((child, depth + 1))
            elif (ck not in _JSON_SCALARS or (ck is float and child - child != 0.0)  # nan, inf
                  or (ck is int and not -(2**63) <= child < 2**63)):
                return False
    return True


_JSON_ENCODER = msgspec.json.Encoder()


def event_json(event: Event) -> str:
    """``event.model_dump_json()``, or an equal document faster: what it encodes to JSON decodes to
    the same values (``tests/test_models.py`` compares them); events whose attrs are not
    :func:`json_native` take pydantic's serializer."""
    d = event.__dict__
    attrs = d["attrs"]
    if attrs and not json_native(attrs):
        return event.model_dump_json()
    return _JSON_ENCODER.encode(d).decode()


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def fingerprint(labels: dict[str, str]) -> str:
    """A stable fingerprint of a label set (order does not matter), as Alertmanager does."""
    blob = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Event(BaseModel):
    """One normalised fact from one source.

    ``id`` is derived from ``source``, the source's own id for the record and ``ts``
    (:meth:`make_id`), so pulling the same record twice gives the same id and is stored once.
    ``entity`` is qualified by its type: ``service:checkout``, ``repo:checkout-svc``,
    ``job:checkout-deploy``, ``project:CHK``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
    ts: UtcDatetime
    entity: str = Field(min_length=3, max_length=256)
    labels: dict[str, str] = Field(default_factory=dict)
    values: dict[str, float] = Field(default_factory=dict)
    attrs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("entity")
    @classmethod
    def _qualified_entity(cls, v: str) -> str:
        kind, sep, name = v.partition(":")
        if not sep or not name or kind not in _ENTITY_TYPES:
            raise ValueError(
                f"entity must be '<type>:<name>' with type one of {', '.join(_ENTITY_TYPES)}; got {v!r}"
            )
        return v

    @field_validator("values")
    @classmethod
    def _finite_values(cls, v: dict[str, float]) -> dict[str, float]:
        for key, val in v.items():
            if val != val or val in (float("inf"), float("-inf")):
                raise ValueError(f"values.{key} must be a finite number, got {val!r}")
        return v

    @field_validator("attrs")
    @classmethod
    def _bounded_attrs(cls, v: dict[str, Any]) -> dict[str, Any]:
        if attrs_too_deep(v):
            raise ValueError(f"nested more than {MAX_ATTRS_DEPTH} levels deep; flatten them")
        return v

    @staticmethod
    def make_id(source: str, native_id: str, ts: datetime) -> str:
        """The id of the record ``native_id`` of ``source`` at time ``ts`` (timezone-aware).

        ``<source>-<ms><digest>``: the event time in milliseconds since the epoch (11 hex digits,
        so ids of one source sort by time until the year 2527), then 24 hex digits of SHA-256 of
        source and native id (:meth:`record_id`'s). The same record at the same time always gets
        the same id, so a re-pull or a resend is stored once. Ids that sort by time keep the store's
        insert cost flat: each insert lands at the end of the id index instead of on a random page of
        it (``bench/store_insert.py --ids``).
        """
        ms = (ts - _EPOCH) // _MS if ts >= _EPOCH else 0
        return f"{source}-{ms:011x}{_digest(source, native_id)}"

    @staticmethod
    def record_id(source: str, native_id: str) -> str:
        """The time-free id of a record: what :meth:`make_id` gave before schema 0004, and what
        :meth:`record_id_of` recovers from any event id."""
        return f"{source}-{_digest(source, native_id)}"

    @staticmethod
    def record_id_of(event_id: str) -> str:
        """:meth:`record_id` of the record an id of :meth:`make_id` names (other ids as they are).

        >>> t = datetime(2026, 1, 5, tzinfo=UTC)
        >>> Event.record_id_of(Event.make_id("git", "shop:abc", t)) == Event.record_id("git", "shop:abc")
        True
        """
        head, sep, tail = event_id.rpartition("-")
        if sep and len(tail) >= 35 and _HEX.fullmatch(tail):  # 11 digits of time (more after 2527), 24 of digest
            return f"{head}-{tail[-24:]}"
        return event_id

    @classmethod
    def new(cls, *, source: str, native_id: str, **fields: Any) -> Event:
        """Build an event whose id derives from ``source``, ``native_id`` and ``ts``."""
        ts = fields.get("ts")
        if isinstance(ts, datetime) and ts.tzinfo is not None:
            return cls(id=cls.make_id(source, native_id, ts), source=source, **fields)
        event = cls(id="pending", source=source, **fields)  # validates ts (and says what is wrong with it)
        return event.model_copy(update={"id": cls.make_id(source, native_id, event.ts)})

    @classmethod
    def trusted(cls, id: str, source: str, kind: str, ts: datetime, entity: str,
                labels: dict[str, str], values: dict[str, float], attrs: dict[str, Any],
                fields_set: frozenset[str] | set[str] = _ALL_EVENT_FIELDS) -> Event:
        """An event from fields that were already validated as an ``Event``'s are (no validation).

        For hot paths only: the push fast path (whose ``PushEvent`` checks the same constraints) and
        unpickling (``__reduce__``). ``Event.trusted(*e.wire())`` equals ``e``.
        """
        obj = cls.__new__(cls)
        object.__setattr__(obj, "__dict__", {"id": id, "source": source, "kind": kind, "ts": ts, "entity": entity,
                                             "labels": labels, "values": values, "attrs": attrs})
        object.__setattr__(obj, "__pydantic_fields_set__", set(fields_set))
        object.__setattr__(obj, "__pydantic_extra__", None)
        object.__setattr__(obj, "__pydantic_private__", None)
        return obj

    def wire(self) -> tuple[Any, ...]:
        """The fields in :meth:`trusted`'s order (what a pickle of an event carries)."""
        d = self.__dict__
        fields_set = self.__pydantic_fields_set__
        return (d["id"], d["source"], d["kind"], d["ts"], d["entity"], d["labels"], d["values"], d["attrs"],
                *(() if len(fields_set) == len(_ALL_EVENT_FIELDS) else (frozenset(fields_set),)))

    def __reduce__(self) -> tuple[Any, ...]:
        # a plain tuple instead of pydantic's state dict: events cross process boundaries (Ray) by
        # the hundred thousand, and this pickles and unpickles ~2x faster with the same result
        return (_event_from_wire, self.wire())

    @property
    def entity_type(self) -> str:
        return self.entity.partition(":")[0]

    @property
    def entity_name(self) -> str:
        return self.entity.partition(":")[2]

    @property
    def is_change(self) -> bool:
        """Whether this event is a change (commit, deploy, build, Jira change, config)."""
        return self.kind in CHANGE_KINDS


def _event_from_wire(*fields: Any) -> Event:
    # pickles of events name this function: keep it here, under this name, for blobs already written
    return Event.trusted(*fields)


#: A batch of events in plain containers (:func:`events_to_plain`): each event's field dict, and the
#: fields set of those that do not have every field set, by index.
PlainEvents = tuple[list[dict[str, Any]], dict[int, frozenset[str]]]


def events_to_plain(events: list[Event]) -> PlainEvents:
    """A batch of events as plain dicts, for the C pickler (:func:`events_from_plain` reverses it).

    Pickling the events themselves calls ``Event.__reduce__`` once per event, and unpickling
    ``Event.trusted``; this is one comprehension each way, about twice as fast for a batch, with the
    same events back (``tests/collectors/test_push.py``).
    """
    full = len(_ALL_EVENT_FIELDS)
    partial = {i: frozenset(e.__pydantic_fields_set__) for i, e in enumerate(events)
               if len(e.__pydantic_fields_set__) != full}
    return [e.__dict__ for e in events], partial


def events_from_plain(plain: PlainEvents) -> list[Event]:
    """The events of :func:`events_to_plain` (the dicts become the events' own: pass fresh ones)."""
    states, partial = plain
    new, put, cls = object.__new__, object.__setattr__, Event
    out: list[Event] = []
    append = out.append
    for d in states:
        obj = new(cls)
        put(obj, "__dict__", d)
        put(obj, "__pydantic_fields_set__", set(_ALL_EVENT_FIELDS))
        put(obj, "__pydantic_extra__", None)
        put(obj, "__pydantic_private__", None)
        append(obj)
    for i, fields_set in partial.items():
        put(out[i], "__pydantic_fields_set__", set(fields_set))
    return out


class Severity(StrEnum):
    info = "info"
    warning = "warning"
    error = "error"
    critical = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Contribution(BaseModel):
    """How one feature drove an anomaly score: its value against the expected range."""

    model_config = ConfigDict(extra="forbid")

    feature: str
    value: float
    expected: float
    low: float
    high: float
    contribution: float = Field(description="share of the score explained by this feature, 0..1")

    def describe(self) -> str:
        """In words, e.g. ``duration 41 min (usual 4.8–6.8 min)`` (see :mod:`opsradar.explain`)."""
        from opsradar.explain import describe

        return describe(self)


#: Features about one log template: an anomaly driven by them names the template.
_TEMPLATE_FEATURES = frozenset({"template_rate", "new_template", "duration_trend"})


class Anomaly(BaseModel):
    """A detector found an event (or a window of a stream) anomalous, and says why."""

    model_config = ConfigDict(extra="forbid")

    id: str
    stream: str
    detector: str
    detector_version: str
    ts: UtcDatetime
    event_id: str | None = None
    source: str
    kind: str
    entity: str
    score: float = Field(ge=0.0, le=1.0, description="calibrated anomaly probability")
    threshold: float = Field(ge=0.0, le=1.0)
    raw_score: float
    features: dict[str, float] = Field(default_factory=dict)
    explanation: list[Contribution] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)

    def summary(self) -> str:
        """What was anomalous, in words: the features that left their normal range, then the score.

        >>> from datetime import datetime, timezone
        >>> a = Anomaly(id="a1", stream="jenkins|build|job:shop", detector="quantile_band", detector_version="1",
        ...             ts=datetime(2026, 1, 5, tzinfo=timezone.utc), source="jenkins", kind="build", entity="job:shop",
        ...             score=0.99, threshold=0.5, raw_score=9.0, explanation=[
        ...                 Contribution(feature="duration_s", value=2460, expected=330, low=290, high=410, contribution=0.9),
        ...                 Contribution(feature="queue_s", value=20, expected=18, low=5, high=40, contribution=0.1)])
        >>> a.summary()
        'duration 41 min (usual 4.8–6.8 min) — score 0.99 ≥ 0.50'

        When a log template's own rate, novelty or duration is the news, the template says which lines:

        >>> gc = a.model_copy(update={"labels": {"template": "GC pause <*> ms, heap used <*> MB"}, "explanation": [
        ...     Contribution(feature="duration_trend", value=0.02, expected=0, low=0, high=0, contribution=1.0)]})
        >>> gc.summary()
        'duration of these log lines rising 5 %/h (at least doubling in a day: a slow leak?); lines like "GC pause <*> ms, heap used <*> MB" — score 0.99 ≥ 0.50'
        """
        from opsradar.explain import notable, outside

        shown = notable(self.explanation)
        what = "; ".join(c.describe() for c in shown)
        if shown and not any(outside(c) for c in shown):  # every feature in range: their combination scored
            what = f"unusual combination, strongest: {what}"
        template = self.labels.get("template")
        if template and any(c.feature in _TEMPLATE_FEATURES for c in shown):
            what = f'{what}; lines like "{template}"'
        score = f"score {self.score:.2f} ≥ {self.threshold:.2f}"
        return f"{what} — {score}" if what else f"{self.stream}: {score}"


class AlertStatus(StrEnum):
    firing = "firing"
    resolved = "resolved"


class Alert(BaseModel):
    """Raised by an anomaly or by a rule that matched a known-bad pattern."""

    model_config = ConfigDict(extra="forbid")

    fingerprint: str
    title: str
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    severity: Severity = Severity.warning
    status: AlertStatus = AlertStatus.firing
    starts_at: UtcDatetime
    ends_at: UtcDatetime | None = None
    anomaly_id: str | None = None
    event_ids: list[str] = Field(default_factory=list)
    rule: str | None = None
    receivers: list[str] = Field(default_factory=list)

    @classmethod
    def from_labels(cls, *, title: str, labels: dict[str, str], starts_at: datetime, **fields: Any) -> Alert:
        return cls(fingerprint=fingerprint(labels), title=title, labels=labels, starts_at=starts_at, **fields)

    @property
    def service(self) -> str | None:
        return self.labels.get("service")

    @property
    def source(self) -> str | None:
        return self.labels.get("source")


class IncidentStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


class TimelineEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ts: UtcDatetime
    what: str
    detail: str = ""
    actor: str | None = None


class Incident(BaseModel):
    """A group of correlated alerts with a lifecycle: open → acknowledged → resolved, and reopen."""

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    status: IncidentStatus = IncidentStatus.open
    severity: Severity = Severity.warning
    services: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    entities: list[str] = Field(default_factory=list)
    alert_fingerprints: list[str] = Field(default_factory=list)
    alert_count: int = 0
    anomaly_count: int = 0
    first_seen: UtcDatetime
    last_seen: UtcDatetime
    acknowledged_by: str | None = None
    resolved_at: UtcDatetime | None = None
    reopen_count: int = 0
    group_key: str = ""
    receivers: list[str] = Field(default_factory=list)
    slack_channel: str | None = None
    slack_ts: str | None = None
    root_cause: list[dict[str, Any]] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    feedback: str | None = None

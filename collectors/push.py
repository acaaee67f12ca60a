"""The push format: events sent by webhooks and in-house tools, validated item by item.

The body is a JSON array of event objects (``Content-Type: application/json``; a single object is
a batch of one) or NDJSON, one object per line (``application/x-ndjson``). Each object::

    {
      "source":    "deploybot",                  required; letters, digits, _ . -  (≤ 64)
      "native_id": "deploy-8812",                required unless "id" is given: the sender's own
                                                 id for the record; the event id derives from
                                                 (source, native_id, ts), so a resend is stored
                                                 once (the same record at another time is
                                                 another event)
      "id":        "…",                          optional: a ready-made stable event id (≤ 128)
      "kind":      "deploy",                     required; lower case, [a-z][a-z0-9_]* (≤ 32)
      "ts":        "2026-03-02T09:30:00Z",       required; ISO-8601 with a timezone; at most
                                                 api.max_clock_skew (1h) ahead of the server
      "entity":    "service:shop",               required; <type>:<name>, type one of service,
                                                 repo, job, project, index, host, user
      "labels":    {"env": "prod"},              optional; string → string
      "values":    {"duration_s": 42.5},         optional; string → finite number
      "attrs":     {"anything": ["json"]}        optional; any JSON object, at most 64
                                                 levels deep (MAX_ATTRS_DEPTH)
    }

The id of an event sent with ``native_id`` (``Event.make_id``), for tools that need it without
opsradar's code: the source, ``-``, the event time in whole milliseconds since the Unix epoch (UTC)
as 11 lower-case hex digits, then the first 24 hex digits of the SHA-256 of
``source + "\\x00" + native_id`` (UTF-8):

>>> import hashlib
>>> source, native_id, ms = "deploybot", "d-1", 1772443800000  # 2026-03-02T09:30:00Z
>>> digest = hashlib.sha256((source + "\\x00" + native_id).encode()).hexdigest()[:24]
>>> f"{source}-{ms:011x}{digest}" == Event.make_id(source, native_id, datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
True

:func:`parse_batch` validates every item on its own: a malformed item gets its own error (its
index in the batch, the path of the bad field, the message) and the others are still accepted.
A body larger than ``max_bytes`` or with more than ``max_items`` items raises
:class:`PayloadTooLarge` (the API answers 413); a body that is not JSON / NDJSON at all raises
:class:`PushFormatError` (400). :func:`event_json_schema` is the JSON Schema of one item, and
:func:`ingest` stores the accepted events (dedup by id).

>>> body = b'''[{"source": "deploybot", "native_id": "d-1", "kind": "deploy", "ts": "2026-03-02T09:30:00Z",
...              "entity": "service:shop", "values": {"duration_s": 42}},
...             {"source": "deploybot", "kind": "deploy", "ts": "2026-03-02T09:31:00", "entity": "shop"}]'''
>>> result = parse_batch(body, "application/json", max_bytes=10_000, max_items=100)
>>> [e.entity for e in result.events]
['service:shop']
>>> for err in result.errors:
...     print(err)
[1] native_id: give native_id (the sender's id for the record) or id
[1] ts: Input should have timezone info
[1] entity: entity must be '<type>:<name>' with type one of service, repo, job, project, index, host, user; got 'shop'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from opsradar.errors import OpsradarError
from opsradar.models import _ENTITY_TYPES as ENTITY_TYPES
from opsradar.models import Event, UtcDatetime, attrs_too_deep
from opsradar.store import Store

__all__ = [
    "IngestResult",
    "ItemError",
    "PayloadTooLarge",
    "PushEvent",
    "PushFormatError",
    "PushResult",
    "event_json_schema",
    "ingest",
    "parse_batch",
]

_NDJSON = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")


class PayloadTooLarge(OpsradarError):
    """The body or the batch is over the limit (the API answers 413)."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        self.size, self.limit = size, limit
        super().__init__(message)


class PushFormatError(OpsradarError):
    """The body is not a JSON array, a JSON object or NDJSON (the API answers 400)."""


@dataclass(frozen=True, slots=True)
class ItemError:
    """One item of the batch that was rejected: where it is, which field, and why."""

    index: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"[{self.index}] {self.path}: {self.message}" if self.path else f"[{self.index}] {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "path": self.path, "message": self.message}


@dataclass
class PushResult:
    """The events that validated and the errors of those that did not."""

    events: list[Event] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    items: int = 0


@dataclass
class IngestResult:
    accepted: int
    new: int
    duplicates: int
    errors: list[ItemError]

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "new": self.new, "duplicates": self.duplicates,
                "rejected": len(self.errors), "errors": [e.as_dict() for e in self.errors]}


StrictFloat = Annotated[float, Field(strict=True)]


def _qualified_entity(value: str) -> str:
    kind, sep, name = value.partition(":")
    if not sep or not name or kind not in ENTITY_TYPES:
        raise ValueError(f"entity must be '<type>:<name>' with type one of {', '.join(ENTITY_TYPES)}; got {value!r}")
    return value


class PushEvent(BaseModel):
    """One pushed event, before it becomes an :class:`~opsradar.models.Event`."""

    model_config = ConfigDict(extra="forbid", strict=False, title="opsradar pushed event")

    source: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    native_id: str | None = Field(default=None, min_length=1, max_length=512,
                                  description="the sender's own id for the record; required unless id is given. "
                                              "The event id derives from source, native_id and ts: a "
                                              "resend is stored once")
    id: str | None = Field(default=None, min_length=1, max_length=128, description="a ready-made stable event id")
    kind: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
    ts: UtcDatetime = Field(description="ISO-8601 with a timezone")
    entity: Annotated[str, AfterValidator(_qualified_entity)] = Field(min_length=3, max_length=256,
                                                                      description="<type>:<name>")
    labels: dict[str, Annotated[str, Field(strict=True)]] = Field(default_factory=dict)
    values: dict[str, StrictFloat] = Field(default_factory=dict)
    attrs: dict[str, Any] = Field(default_factory=dict)


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one pushed event.

    >>> s = event_json_schema()
    >>> sorted(s["required"]), s["anyOf"]
    (['entity', 'kind', 'source', 'ts'], [{'required': ['native_id']}, {'required': ['id']}])
    """
    schema = PushEvent.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["anyOf"] = [{"required": ["native_id"]}, {"required": ["id"]}]
    schema["description"] = "One event pushed to opsradar (POST /v1/events: a JSON array or NDJSON of these)."
    return schema


def _path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _ahead(index: int, ts: datetime, not_after: datetime) -> ItemError:
    return ItemError(index, "ts", f"{ts.isoformat()} is later than the server's clock allows "
                                  f"({not_after.isoformat(timespec='seconds')}, api.max_clock_skew ahead of it): "
                                  "check the sender's clock and time zone")


def _validate(index: int, item: Any, not_after: datetime | None = None) -> tuple[Event | None, list[ItemError]]:
    if not isinstance(item, dict):
        return None, [ItemError(index, "", f"an event must be a JSON object, got {type(item).__name__}")]
    errors: list[ItemError] = []
    try:
        pe = PushEvent.model_validate(item)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = "unknown field" if err["type"] == "extra_forbidden" else str(err["msg"]).removeprefix("Value error, ")
            errors.append(ItemError(index, _path(loc), msg))
        if not item.get("native_id") and not item.get("id"):
            errors.insert(0, ItemError(index, "native_id", "give native_id (the sender's id for the record) or id"))
        return None, errors
    if pe.native_id is None and pe.id is None:
        return None, [ItemError(index, "native_id", "give native_id (the sender's id for the record) or id")]
    fields = pe.model_dump(exclude={"native_id", "id"})
    try:
        event = Event(id=pe.id, **fields) if pe.id is not None else Event.new(native_id=pe.native_id or "", **fields)
    except ValidationError as exc:
        return None, [ItemError(index, _path(tuple(e["loc"])), str(e["msg"]).removeprefix("Value error, "))
                      for e in exc.errors()]
    if not_after is not None and event.ts > not_after:
        return None, [_ahead(index, event.ts, not_after)]
    return event, []


def _is_ndjson(content_type: str, *, starts_as_array: bool) -> bool:
    """Whether a body is NDJSON: by its content type, or else unless it is JSON and starts with ``[``."""
    mime = (content_type or "").split(";")[0].strip().lower()
    return mime in _NDJSON or (mime not in ("application/json", "text/json") and not starts_as_array)


def _lines(text: str) -> list[tuple[int, str]]:
    """The non-blank lines of an NDJSON body, numbered from 1."""
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _items(body: bytes, content_type: str) -> list[tuple[Any, str | None]]:
    """The items of the body, each with a parse error (NDJSON lines fail one by one)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PushFormatError(f"the body is not UTF-8: {exc}") from exc
    stripped = text.lstrip()
    if not stripped:
        raise PushFormatError("the body is empty: send a JSON array of events or NDJSON")
    if not _is_ndjson(content_type, starts_as_array=stripped.startswith("[")):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise PushFormatError(f"the body is not valid JSON: {exc}") from exc
        except RecursionError:
            raise PushFormatError(_TOO_DEEP) from None
        if isinstance(doc, dict):
            return [(doc, None)]
        if not isinstance(doc, list):
            raise PushFormatError(f"the body must be a JSON array of events (or one event object), got {type(doc).__name__}")
        return [(item, None) for item in doc]
    out: list[tuple[Any, str | None]] = []
    for n, line in _lines(text):
        try:
            out.append((json.loads(line), None))
        except ValueError as exc:
            out.append((None, f"line {n} is not valid JSON: {exc}"))
        except RecursionError:
            out.append((None, f"line {n}: {_TOO_DEEP}"))
    return out


_TOO_DEEP = "the JSON is nested too deeply (keep attrs to a few levels)"


class _FastItem(msgspec.Struct, forbid_unknown_fields=True):
    """One pushed event as the fast path decodes it: the constraints of :class:`PushEvent`, or
    stricter (``ts`` only as an RFC 3339 UTC or offset time with seconds; ``$`` as ``\\Z``, since
    Python's ``$`` also matches before a final newline and pydantic's does not). What it refuses, the
    item-by-item path judges."""

    source: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]  # and _SOURCE, checked in _all_valid
    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]  # and _KIND
    ts: Annotated[str, msgspec.Meta(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})\Z")]
    entity: Annotated[str, msgspec.Meta(min_length=3, max_length=256)]  # and _ENTITY
    native_id: Annotated[str, msgspec.Meta(min_length=1, max_length=512)] | None = None
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    values: dict[str, float] = msgspec.field(default_factory=dict)
    attrs: dict[str, Any] = msgspec.field(default_factory=dict)


# The patterns of source, kind and entity, which repeat within a batch: each distinct value is
# matched once per batch (as msgspec would match it: ``search``), not once per item.
_SOURCE = re.compile(r"^[A-Za-z0-9_.\-]+\Z").search
_KIND = re.compile(r"^[a-z][a-z0-9_]*\Z").search
_ENTITY = re.compile(rf"^(?:{'|'.join(ENTITY_TYPES)}):[\s\S]").search

_FAST_BATCH = msgspec.json.Decoder(list[_FastItem])
_FAST_ITEM = msgspec.json.Decoder(_FastItem)


def _all_valid(body: bytes, content_type: str, max_items: int, not_after: datetime | None = None) -> list[Event] | None:
    """The events of a body whose items are all valid, decoded in one pass (msgspec, straight into
    :class:`_FastItem`: the whole array at once, or NDJSON line by line, split as the item-by-item
    path splits them), then events without validating the same fields again.
    ``None`` when any item is refused, there are too many, or the body is something else (one object,
    not JSON, not UTF-8): the item-by-item path (pydantic) then gives each error. Both paths give
    equal events (``tests/collectors/test_push.py``); this one costs about half.
    """
    starts_as_array = body.lstrip()[:1] == b"["
    try:
        if _is_ndjson(content_type, starts_as_array=starts_as_array):
            lines = _lines(body.decode("utf-8"))
            if not lines or len(lines) > max_items:  # empty: the item-by-item path says so
                return None
            pushed = [_FAST_ITEM.decode(line) for _, line in lines]
        elif starts_as_array:
            pushed = _FAST_BATCH.decode(body)
        else:  # one JSON object
            return None
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError, RecursionError):  # the item-by-item path says why
        return None
    if len(pushed) > max_items:
        return None
    events: list[Event] = []
    trusted, make_id, parse_ts, utc = Event.trusted, Event.make_id, datetime.fromisoformat, UTC
    # each distinct source, kind and entity: checked once, then one string object for all its items
    # (as pydantic's string cache gives): the blobs to the shards memoise them instead of repeating
    sources: dict[str, str] = {}
    kinds: dict[str, str] = {}
    entities: dict[str, str] = {}
    try:
        for pe in pushed:
            source = sources.get(pe.source)
            if source is None:
                if not _SOURCE(pe.source):
                    return None
                source = sources[pe.source] = pe.source
            kind = kinds.get(pe.kind)
            if kind is None:
                if not _KIND(pe.kind):
                    return None
                kind = kinds[pe.kind] = pe.kind
            entity = entities.get(pe.entity)
            if entity is None:
                if not _ENTITY(pe.entity):
                    return None
                entity = entities[pe.entity] = pe.entity
            values = pe.values
            for v in values.values():
                if v - v != 0.0:  # inf (1e999): Event refuses it with a message the slow path gives
                    return None
            if pe.attrs and attrs_too_deep(pe.attrs):  # Event refuses them with a message the slow path gives
                return None
            ts = parse_ts(pe.ts)
            if ts.tzinfo is not utc:
                ts = ts.astimezone(utc)
            if not_after is not None and ts > not_after:  # the item-by-item path says why
                return None
            if pe.id is not None:
                eid = pe.id
            elif pe.native_id is not None:
                eid = make_id(source, pe.native_id, ts)
            else:
                return None
            events.append(trusted(eid, source, kind, ts, entity, pe.labels, values, pe.attrs))
    except ValueError:  # a time that matches the pattern but is not one (month 13, offset 24:00)
        return None
    return events


def parse_batch(body: bytes, content_type: str, *, max_bytes: int, max_items: int,
                not_after: datetime | None = None) -> PushResult:
    """Validate a pushed batch item by item. See the module docstring for the format.

    ``not_after``: the latest event time accepted (the API gives its clock plus
    ``api.max_clock_skew``); a later item gets an error of its own. Raises :class:`PayloadTooLarge`
    (413) or :class:`PushFormatError` (400) for the whole body.
    """
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"the body is {len(body)} bytes; the limit is {max_bytes} (api.max_body_bytes): "
                              "split the batch", size=len(body), limit=max_bytes)
    fast = _all_valid(body, content_type, max_items, not_after)
    if fast is not None:
        return PushResult(events=fast, items=len(fast))
    items = _items(body, content_type)
    if len(items) > max_items:
        raise PayloadTooLarge(f"the batch holds {len(items)} events; the limit is {max_items} (api.max_batch_items): "
                              "split the batch", size=len(items), limit=max_items)
    result = PushResult(items=len(items))
    for index, (item, parse_error) in enumerate(items):
        if parse_error is not None:
            result.errors.append(ItemError(index, "", parse_error))
            continue
        event, errors = _validate(index, item, not_after)
        if event is not None:
            result.events.append(event)
        result.errors += errors
    return result


def ingest(store: Store, result: PushResult) -> IngestResult:
    """Store the accepted events of a batch in one transaction (dedup by id)."""
    new = store.add_events(result.events) if result.events else []
    return IngestResult(accepted=len(result.events), new=len(new), duplicates=len(result.events) - len(new),
                        errors=list(result.errors))

"""The flat view of an event that event matchers address.

Top-level fields (``source``, ``kind``, ``entity``, ``entity_type``, ``entity_name``, ``id``), the
derived ``service`` (``labels.service``, else the entity graph, else the name of a ``service:``
entity), and ``labels.x``, ``values.x`` and ``attrs.x`` (nested attrs as ``attrs.a.b``).

>>> from datetime import datetime, timezone
>>> from opsradar.models import Event
>>> e = Event.new(source="es", native_id="1", kind="log", entity="service:shop",
...               ts=datetime(2026, 1, 1, tzinfo=timezone.utc), labels={"level": "error"},
...               values={"status": 503.0}, attrs={"http": {"method": "GET"}})
>>> f = event_fields(e)
>>> f["service"], f["labels.level"], f["values.status"], f["attrs.http.method"]
('shop', 'error', '503', 'GET')

:class:`EventFields` is the same mapping, computed as the matchers ask: an event that the first
matchers of the rules reject (most events) is never flattened.

>>> lazy = EventFields(e)
>>> lazy.get("kind"), lazy.get("labels.level"), lazy.get("values.status"), lazy.get("labels.nope")
('log', 'error', '503', None)
>>> dict(lazy) == f
True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from opsradar.config import EntityGraph
from opsradar.models import Event

__all__ = ["EventFields", "event_fields"]


_UNKNOWN: Any = object()


def _num(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _flatten(prefix: str, value: Any, out: dict[str, str], depth: int) -> None:
    if isinstance(value, dict):
        if depth < 4:
            for k, v in value.items():
                _flatten(f"{prefix}.{k}", v, out, depth + 1)
    elif isinstance(value, bool):
        out[prefix] = "true" if value else "false"
    elif isinstance(value, float):
        out[prefix] = _num(value)
    elif isinstance(value, int | str):
        out[prefix] = str(value)


def _service(event: Event, graph: EntityGraph | None, services: dict[str, str | None] | None) -> str | None:
    """The derived ``service`` field (``labels.service``, else the entity graph, else the name of a
    ``service:`` entity); None or empty when there is none."""
    service = event.labels.get("service")
    entity = event.entity
    if not service and graph is not None:
        if services is None:
            service = graph.service_of(entity)
        else:
            service = services.get(entity, _UNKNOWN)
            if service is _UNKNOWN:
                if len(services) >= 100_000:
                    services.clear()
                service = services[entity] = graph.service_of(entity)
    if service is None and entity[:8] == "service:":
        service = entity[8:]
    return service


def event_fields(event: Event, graph: EntityGraph | None = None, *,
                 services: dict[str, str | None] | None = None) -> dict[str, str]:
    """The fields of ``event`` as a flat ``{name: string}`` mapping.

    ``services``: a memo of ``graph.service_of`` by entity kept by the caller (the graph's answers
    never change; its own cache sits behind a slower attribute lookup).
    """
    entity = event.entity
    entity_type, _, entity_name = entity.partition(":")
    out = {
        "id": event.id, "source": event.source, "kind": event.kind, "entity": entity,
        "entity_type": entity_type, "entity_name": entity_name,
    }
    service = _service(event, graph, services)
    if service:
        out["service"] = service
    for k, v in event.labels.items():
        out[f"labels.{k}"] = v
    for k, f in event.values.items():
        out[f"values.{k}"] = _num(f)
    for k, a in event.attrs.items():
        _flatten(f"attrs.{k}", a, out, 1)
    return out


class EventFields(Mapping[str, str]):
    """:func:`event_fields` of an event as a lazy mapping: every name but ``attrs.x`` is read
    straight from the event; ``attrs.x``, iteration or length build the whole map once
    (``tests/alerting/test_rules_event_index.py`` compares both)."""

    __slots__ = ("_event", "_full", "_graph", "_services")

    def __init__(self, event: Event, graph: EntityGraph | None = None, *,
                 services: dict[str, str | None] | None = None) -> None:
        self._event, self._graph, self._services = event, graph, services
        self._full: dict[str, str] | None = None

    def _all(self) -> dict[str, str]:
        full = self._full
        if full is None:
            full = self._full = event_fields(self._event, self._graph, services=self._services)
        return full

    def get(self, name: str, default: Any = None) -> Any:
        if self._full is None:
            e = self._event
            if name == "kind":
                return e.kind
            if name == "source":
                return e.source
            if name == "entity":
                return e.entity
            if name == "id":
                return e.id
            if name[:7] == "labels.":
                v = e.labels.get(name[7:])
                return default if v is None else v
            if name[:7] == "values.":
                f = e.values.get(name[7:])
                return default if f is None else _num(f)
            if name == "service":  # what a sequence rule's ``by`` asks of every event
                service = _service(e, self._graph, self._services)
                return service if service else default
            if name == "entity_type":
                return e.entity.partition(":")[0]
            if name == "entity_name":
                return e.entity.partition(":")[2]
            if name[:6] != "attrs.":  # a name the map never holds
                return default
        return self._all().get(name, default)

    def __getitem__(self, name: str) -> str:
        v = self.get(name, _UNKNOWN)
        if v is _UNKNOWN:
            raise KeyError(name)
        return v  # type: ignore[no-any-return]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name, _UNKNOWN) is not _UNKNOWN

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

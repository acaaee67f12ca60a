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
"""

from __future__ import annotations

from typing import Any

from opsradar.config import EntityGraph
from opsradar.models import Event

__all__ = ["event_fields"]


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
    service = event.labels.get("service")
    if not service and graph is not None:
        if services is None:
            service = graph.service_of(entity)
        else:
            service = services.get(entity, _UNKNOWN)
            if service is _UNKNOWN:
                if len(services) >= 100_000:
                    services.clear()
                service = services[entity] = graph.service_of(entity)
    if service is None and entity_type == "service":
        service = entity_name
    if service:
        out["service"] = service
    for k, v in event.labels.items():
        out[f"labels.{k}"] = v
    for k, f in event.values.items():
        out[f"values.{k}"] = _num(f)
    for k, a in event.attrs.items():
        _flatten(f"attrs.{k}", a, out, 1)
    return out

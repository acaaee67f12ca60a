"""The core models' fast serialisation paths give what pydantic's give."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from opsradar.models import MAX_ATTRS_DEPTH, Event, event_json, json_native

T0 = datetime(2026, 3, 2, 9, 30, 0, 123456, tzinfo=UTC)


def _event(**over: Any) -> Event:
    fields: dict[str, Any] = {"source": "s", "native_id": "1", "kind": "build", "ts": T0, "entity": "job:x",
                              "labels": {"result": "SUCCESS", "é": "\u2028"}, "values": {"a": 1.5, "b": 1e-7, "c": 3}}
    fields.update(over)
    return Event.new(**fields)


def _nested(levels: int) -> dict[str, Any]:
    inner: Any = 1
    for _ in range(levels - 1):
        inner = [inner]
    return {"a": inner}


@pytest.mark.parametrize(("value", "native"), [
    ({}, True),
    ({"s": "x", "i": -(2**63), "j": 2**63 - 1, "f": 0.1, "b": True, "n": None, "l": [1, [2, {"k": []}]]}, True),
    ({"i": 2**63}, False),  # msgpack and JSON encoders stop at 64 bits
    ({"f": float("nan")}, False),
    ({"f": float("inf")}, False),
    ({"t": (1, 2)}, False),  # a tuple comes back as a list
    ({"d": T0}, False),
    ({"b": b"x"}, False),
    ({"x": Decimal("1.5")}, False),
    ({1: "x"}, False),
    ({"e": {"k": {2: "x"}}}, False),
    (_nested(MAX_ATTRS_DEPTH), True),
    (_nested(MAX_ATTRS_DEPTH + 1), False),
])
def test_json_native_says_which_attrs_round_trip_through_json(value: dict[Any, Any], native: bool) -> None:
    assert json_native(value) is native
    if native:
        assert json.loads(json.dumps(value)) == value


@pytest.mark.parametrize("attrs", [
    {},
    {"by": ["ana", {"n": 1, "f": 2.5, "none": None, "t": True}], "u": "\u2028é\"\\"},
    {"big": 10**30},  # not native: pydantic's serializer
    {"when": T0, "pair": (1, 2), "span": timedelta(seconds=90)},  # not JSON types: pydantic's serializer
])
@pytest.mark.parametrize("ts", [T0, T0.replace(microsecond=0), datetime(2026, 3, 2, 9, 30, tzinfo=timezone(timedelta(hours=2)))])
def test_event_json_decodes_to_what_pydantic_writes(attrs: dict[str, Any], ts: datetime) -> None:
    e = _event(attrs=attrs, ts=ts)
    ours, theirs = event_json(e), e.model_dump_json()
    assert json.loads(ours) == json.loads(theirs)
    if json_native(attrs):
        assert Event.model_validate_json(ours) == e  # the store reads it back
    else:
        assert ours == theirs  # pydantic's own text (its attrs do not read back as they were)


def test_events_cross_deployments_in_msgpack_or_pickle_and_come_back_equal() -> None:
    from opsradar.serving.app import pack_events, unpack

    plain = [_event(native_id=str(i), attrs={"k": [i, {"z": None}]}) for i in range(3)]
    partial = Event.new(source="s", native_id="p", kind="build", ts=T0, entity="job:x")  # labels etc. unset
    odd = _event(native_id="odd", attrs={"when": T0, "pair": (1, 2)})
    for events, msgpack in (([*plain, partial], True), ([*plain, odd], False), ([], True)):
        blob = pack_events(events)
        assert blob.startswith(b"OREM") is msgpack
        back = unpack(blob)
        assert back == events
        assert [b.model_fields_set for b in back] == [e.model_fields_set for e in events]
        assert [b.ts.tzinfo for b in back] == [UTC] * len(events)
        assert [b.model_dump_json() for b in back] == [e.model_dump_json() for e in events]
    assert unpack(pack_events([odd]))[0].attrs["pair"] == (1, 2)  # the pickle keeps the tuple
    assert unpack([pack_events(plain), pack_events([odd])]) == [*plain, odd]
    assert unpack(pickle.dumps([partial])) == [partial]  # a pack() blob

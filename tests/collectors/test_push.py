"""Push-format validation: per-item errors, size caps, JSON array and NDJSON, store ingestion."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from opsradar.collectors.push import (
    PayloadTooLarge,
    PushFormatError,
    event_json_schema,
    ingest,
    parse_batch,
)
from opsradar.models import Event
from opsradar.store import Store


def item(i: int, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"source": "deploybot", "native_id": f"d-{i}", "kind": "deploy",
                           "ts": f"2026-03-02T09:{i:02d}:00+01:00", "entity": "service:shop",
                           "labels": {"env": "prod"}, "values": {"duration_s": 10 + i}, "attrs": {"by": ["ana"]}}
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


def parse(body: bytes, ctype: str = "application/json", **kw: Any) -> Any:
    return parse_batch(body, ctype, max_bytes=kw.get("max_bytes", 1_000_000), max_items=kw.get("max_items", 1000))


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store("sqlite://")
    yield s
    s.close()


def test_a_json_array_with_malformed_items_keeps_the_rest() -> None:
    items = [item(0), item(1, ts="yesterday"), item(2, values={"duration_s": "slow"}), item(3, labels={"env": 3}),
             item(4, native_id=None), item(5, colour="red"), "not an object", item(7, entity="repo:"), item(8)]
    result = parse(json.dumps(items).encode())
    assert [e.attrs["by"] for e in result.events] == [["ana"], ["ana"]]
    assert result.items == 9
    errors = [(e.index, e.path) for e in result.errors]
    assert errors == [(1, "ts"), (2, "values.duration_s"), (3, "labels.env"), (4, "native_id"), (5, "colour"),
                      (6, ""), (7, "entity")]
    messages = {e.index: e.message for e in result.errors}
    assert "Input should be a valid datetime" in messages[1]
    assert messages[4] == "give native_id (the sender's id for the record) or id"
    assert messages[5] == "unknown field"
    assert messages[6] == "an event must be a JSON object, got str"
    assert "got 'repo:'" in messages[7]


def test_events_are_normalised_and_ids_stable() -> None:
    (ev,) = parse(json.dumps([item(3)]).encode()).events
    assert ev.id == Event.make_id("deploybot", "d-3", datetime(2026, 3, 2, 8, 3, tzinfo=UTC))
    assert ev.ts.isoformat() == "2026-03-02T08:03:00+00:00"  # UTC
    assert ev.values == {"duration_s": 13.0}
    (given,) = parse(json.dumps(item(1, native_id=None, id="custom-1")).encode()).events  # one object: a batch of one
    assert given.id == "custom-1"


def test_ndjson_with_a_broken_line() -> None:
    lines = [json.dumps(item(0)), "{not json", "", json.dumps(item(2))]
    result = parse("\n".join(lines).encode(), "application/x-ndjson; charset=utf-8")
    assert len(result.events) == 2
    (err,) = result.errors
    assert err.index == 1
    assert err.message.startswith("line 2 is not valid JSON")


def test_the_size_and_item_caps_raise_a_clear_413_error() -> None:
    body = json.dumps([item(i) for i in range(20)]).encode()
    with pytest.raises(PayloadTooLarge) as info:
        parse(body, max_bytes=1000)
    assert f"the body is {len(body)} bytes; the limit is 1000 (api.max_body_bytes)" in str(info.value)
    with pytest.raises(PayloadTooLarge) as info:
        parse(body, max_items=5)
    assert "the batch holds 20 events; the limit is 5 (api.max_batch_items)" in str(info.value)


@pytest.mark.parametrize(("body", "ctype", "message"), [
    (b"", "application/json", "the body is empty"),
    (b"[1, 2", "application/json", "not valid JSON"),
    (b'"x"', "application/json", "must be a JSON array"),
    (b"\xff\xfe", "application/json", "not UTF-8"),
])
def test_a_body_that_is_not_json_is_a_format_error(body: bytes, ctype: str, message: str) -> None:
    with pytest.raises(PushFormatError, match=message):
        parse(body, ctype)


def test_ingest_stores_once_and_counts_duplicates(store: Store) -> None:
    body = json.dumps([item(0), item(1), item(2, kind="Bad Kind")]).encode()
    first = ingest(store, parse(body))
    assert first.as_dict()["accepted"] == 2
    assert (first.new, first.duplicates, len(first.errors)) == (2, 0, 1)
    again = ingest(store, parse(body))  # a retried webhook
    assert (again.new, again.duplicates) == (0, 2)
    assert store.count_events(source="deploybot") == 2


def test_the_json_schema_agrees_with_the_validator() -> None:
    schema = event_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(item(0))
    assert validator.is_valid(item(0, native_id=None, id="x"))
    assert not validator.is_valid(item(0, native_id=None))
    assert not validator.is_valid(item(0, colour="red"))
    assert not validator.is_valid(item(0, values={"x": "1"}))


def _one_by_one(body: bytes) -> list[Event]:
    """The item-by-item path (what a batch with an invalid item goes through)."""
    from opsradar.collectors import push

    out = []
    for i, item in enumerate(json.loads(body)):
        event, errors = push._validate(i, item)
        assert not errors, errors
        assert event is not None
        out.append(event)
    return out


def test_an_all_valid_array_takes_the_fast_path_with_the_same_events() -> None:
    from opsradar.collectors.push import _all_valid

    items = [
        {"source": "s", "native_id": "1", "kind": "build", "ts": "2026-03-02T09:30:00+02:00", "entity": "job:x",
         "values": {"a": 42, "b": 1.5}, "labels": {"x": "y"}, "attrs": {"n": [1, {"z": None}], "u": "é"}},
        {"source": "s", "id": "ready-made", "kind": "log", "ts": "2026-03-02T09:30:00Z", "entity": "service:x"},
        {"source": "s", "native_id": "2", "kind": "deploy", "ts": "2026-03-02T09:30:00.123456Z", "entity": "service:y",
         "values": {}, "labels": {}, "attrs": {}},
    ]
    body = json.dumps(items).encode()
    fast = _all_valid(body, "application/json", 100)
    assert fast is not None
    slow = _one_by_one(body)
    assert fast == slow
    assert [e.model_dump_json() for e in fast] == [e.model_dump_json() for e in slow]
    assert [e.model_fields_set for e in fast] == [e.model_fields_set for e in slow]
    assert parse_batch(body, "application/json", max_bytes=10_000, max_items=100).events == slow


@pytest.mark.parametrize("bad", [
    {"kind": "build"},  # no native_id or id
    {"entity": "shop"},  # not qualified
    {"entity": "jobs:x"},  # not an entity type (the fast path checks each distinct entity once)
    {"source": "s p"},  # not a source name
    {"kind": "Build"},  # not a kind
    {"values": {"a": "1"}},  # not a number
    {"values": {"a": float("inf")}},  # not finite (json.dumps writes Infinity)
    {"ts": "2026-03-02T09:30:00"},  # no timezone
    {"surprise": 1},  # unknown field
])
def test_a_batch_with_one_bad_item_still_reports_it_and_keeps_the_rest(bad: dict[str, Any]) -> None:
    from opsradar.collectors.push import _all_valid

    good = {"source": "s", "native_id": "1", "kind": "build", "ts": "2026-03-02T09:30:00Z", "entity": "job:x"}
    item = {**good, "native_id": "2", **bad}
    if "kind" in bad:
        item.pop("native_id")
    body = json.dumps([good, item]).encode()
    assert _all_valid(body, "application/json", 100) is None
    result = parse_batch(body, "application/json", max_bytes=10_000, max_items=100)
    assert [e.id for e in result.events] == [Event.make_id("s", "1", datetime(2026, 3, 2, 9, 30, tzinfo=UTC))]
    assert {err.index for err in result.errors} == {1}


def test_events_pickle_compactly_and_come_back_equal() -> None:
    import pickle

    body = json.dumps([{"source": "s", "native_id": "1", "kind": "build", "ts": "2026-03-02T09:30:00Z",
                        "entity": "job:x", "values": {"a": 1.0}, "attrs": {"k": [1]}}]).encode()
    event = parse_batch(body, "application/json", max_bytes=10_000, max_items=100).events[0]
    partial = Event.new(source="s", native_id="2", kind="build", ts=event.ts, entity="job:x")  # labels etc. unset
    for e in (event, partial):
        back = pickle.loads(pickle.dumps(e))
        assert back == e
        assert back.model_fields_set == e.model_fields_set
        assert back.model_dump_json() == e.model_dump_json()
    assert len(pickle.dumps(event)) < len(pickle.dumps(event.model_dump()))  # a tuple, not pydantic's state


def test_a_batch_of_events_goes_through_plain_containers_and_comes_back_equal() -> None:
    import pickle

    from opsradar.models import events_from_plain, events_to_plain

    body = json.dumps([{"source": "s", "native_id": str(i), "kind": "build", "ts": "2026-03-02T09:30:00Z",
                        "entity": "job:x", "values": {"a": float(i)}, "attrs": {"k": [i]}} for i in range(3)]).encode()
    events = parse_batch(body, "application/json", max_bytes=10_000, max_items=100).events
    events.insert(1, Event.new(source="s", native_id="p", kind="build", ts=events[0].ts, entity="job:x"))  # unset fields
    back = events_from_plain(pickle.loads(pickle.dumps(events_to_plain(events))))
    assert back == events
    assert [b.model_fields_set for b in back] == [e.model_fields_set for e in events]
    assert [b.model_dump_json() for b in back] == [e.model_dump_json() for e in events]
    assert back[1].model_fields_set != back[0].model_fields_set
    assert events_from_plain(events_to_plain([])) == []


@pytest.mark.parametrize("ctype", ["application/x-ndjson", "text/plain"])
def test_all_valid_ndjson_takes_the_fast_path_with_the_same_events(ctype: str) -> None:
    from opsradar.collectors.push import _all_valid

    items = [
        {"source": "s", "native_id": "1", "kind": "build", "ts": "2026-03-02T09:30:00+02:00", "entity": "job:x",
         "values": {"a": 42, "b": 1.5}, "labels": {"x": "y"}, "attrs": {"n": [1, {"z": None}], "u": "\u2028é"}},
        {"source": "s", "id": "ready-made", "kind": "log", "ts": "2026-03-02T09:30:00Z", "entity": "service:x"},
    ]
    body = ("\r\n".join(json.dumps(i) for i in items) + "\n\n").encode()
    fast = _all_valid(body, ctype, 100)
    assert fast is not None
    slow = _one_by_one(json.dumps(items).encode())
    assert fast == slow
    assert [e.model_dump_json() for e in fast] == [e.model_dump_json() for e in slow]
    assert parse_batch(body, ctype, max_bytes=10_000, max_items=100).events == slow


@pytest.mark.parametrize(("body", "ctype"), [
    (b"", "application/x-ndjson"),  # empty: a format error, not an empty batch
    (b'{"source": "s"}\nnot json\n', "application/x-ndjson"),  # a broken line: its own error
    (b'{"source": "s", "native_id": "1", "kind": "build", "ts": "2026-03-02T09:30:00Z", "entity": "job:x"}',
     "application/json"),  # one object, not an array: the item-by-item path
    (b"\xff\xfe[]", "application/json"),  # not UTF-8
])
def test_bodies_the_fast_path_leaves_to_the_item_by_item_path(body: bytes, ctype: str) -> None:
    from opsradar.collectors.push import _all_valid

    assert _all_valid(body, ctype, 100) is None


_GOOD = {"source": "s", "native_id": "1", "kind": "build", "ts": "2026-03-02T09:30:00Z", "entity": "job:x"}


@pytest.mark.parametrize("change", [
    {}, {"ts": "2026-03-02T09:30:00+02:00"}, {"ts": "2026-03-02T09:30:00.123456-05:30"},
    {"ts": "2026-03-02T09:30:00.1Z"}, {"ts": "2026-03-02T09:30:00+00:00"}, {"ts": "2026-03-02T09:30:00.1234567Z"},
    {"ts": "2026-03-02 09:30:00Z"}, {"ts": "2026-03-02T09:30:00z"}, {"ts": "2026-03-02T09:30Z"},
    {"ts": "2026-13-02T09:30:00Z"}, {"ts": "2026-03-02T09:30:00+24:00"}, {"ts": "2026-03-02T09:30:60Z"},
    {"ts": "2026-03-02T09:30:00"}, {"ts": 1772443800}, {"ts": 1772443800.5}, {"ts": "1772443800"},
    {"source": "s\n"}, {"source": "s p"}, {"source": "x" * 64}, {"source": "x" * 65}, {"source": ""},
    {"kind": "Build"}, {"kind": "build\n"}, {"kind": "b" * 33},
    {"entity": "job:"}, {"entity": "job"}, {"entity": "jobs:x"}, {"entity": "job:x:y"}, {"entity": "job:\n"},
    {"entity": "service:" + "é" * 248}, {"entity": "service:" + "é" * 249},
    {"native_id": None, "id": "ready-made"}, {"native_id": None}, {"native_id": ""}, {"id": None},
    {"id": "x" * 129}, {"native_id": "ü" * 512}, {"native_id": "ü" * 513},
    {"values": {"a": 1}}, {"values": {"a": 1.5e300}}, {"values": {"a": True}}, {"values": {"a": "1"}},
    {"values": {"a": 10**30}}, {"values": {"a": None}},
    {"labels": {"a": "b"}}, {"labels": {"a": 1}}, {"labels": {"a": None}},
    {"attrs": {"n": 10**30, "f": 0.1, "l": [1, {"z": None}], "t": True}}, {"attrs": []},
    {"extra": 1}, {"source": None},
])
def test_the_fast_path_takes_only_what_the_item_by_item_path_takes_and_gives_the_same_event(change: dict[str, Any]) -> None:
    from opsradar.collectors.push import _all_valid, _validate
    from opsradar.models import event_json
    from opsradar.serving.app import pack_events, unpack

    item = {**_GOOD, **change}
    item = {k: v for k, v in item.items() if v is not None or k in change}
    reference, errors = _validate(0, item)
    for body, ctype in ((json.dumps([item]).encode(), "application/json"),
                        (json.dumps(item).encode(), "application/x-ndjson")):
        fast = _all_valid(body, ctype, 100)
        if fast is None:
            continue  # refused: the item-by-item path judges it (and gives the reference result)
        assert reference is not None, f"the fast path took an item the item-by-item path refuses: {errors}"
        assert fast == [reference]
        assert fast[0].ts.tzinfo is reference.ts.tzinfo
        assert fast[0].model_dump_json() == reference.model_dump_json()
        assert fast[0].model_fields_set == reference.model_fields_set
        assert json.loads(event_json(fast[0])) == json.loads(reference.model_dump_json())  # as stored
        assert unpack(pack_events(fast)) == [reference]  # as handed to the shards
    result = parse_batch(json.dumps([item]).encode(), "application/json", max_bytes=100_000, max_items=100)
    assert result.events == ([reference] if reference else [])
    assert [str(e) for e in result.errors] == [str(e) for e in errors]


def test_the_fast_path_takes_common_bodies() -> None:
    from opsradar.collectors.push import _all_valid

    items = [{**_GOOD, "native_id": str(i), "ts": ts, "values": {"d": 1.5, "n": 3}, "labels": {"r": "ok"},
              "attrs": {"u": "\u2028é", "l": [1, None]}}
             for i, ts in enumerate(("2026-03-02T09:30:00Z", "2026-03-02T09:30:00.250+01:00"))]
    events = _all_valid(json.dumps(items).encode(), "application/json", 100)
    assert events is not None
    assert len(events) == 2
    assert events[1].ts.isoformat() == "2026-03-02T08:30:00.250000+00:00"


def test_duplicate_keys_mean_the_same_on_both_paths() -> None:
    from opsradar.collectors.push import _all_valid, _validate

    body = (b'[{"source": "a", "source": "b", "native_id": "1", "kind": "build", "ts": "2026-03-02T09:30:00Z",'
            b' "entity": "job:x", "values": {"v": 1, "v": 2}}]')
    fast = _all_valid(body, "application/json", 10)
    reference, errors = _validate(0, json.loads(body)[0])  # json.loads keeps the last value too
    assert not errors
    assert fast == [reference]
    assert (fast[0].source, fast[0].values) == ("b", {"v": 2.0})


def test_json_nested_too_deeply_is_a_clear_error_not_a_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    item = ('{"source": "s", "native_id": "1", "kind": "build", "ts": "2026-03-02T09:30:00Z", "entity": "job:x", '
            '"attrs": {"a": ' + deep + "}}")
    with pytest.raises(PushFormatError, match="nested too deeply"):
        parse_batch(f"[{item}]".encode(), "application/json", max_bytes=10**7, max_items=10)
    good = '{"source": "s", "native_id": "2", "kind": "build", "ts": "2026-03-02T09:30:00Z", "entity": "job:x"}'
    result = parse_batch(f"{item}\n{good}".encode(), "application/x-ndjson", max_bytes=10**7, max_items=10)
    assert [e.id for e in result.events] == [Event.make_id("s", "2", datetime(2026, 3, 2, 9, 30, tzinfo=UTC))]  # the other line is still accepted
    assert [str(e) for e in result.errors] == ["[0] line 1: the JSON is nested too deeply (keep attrs to a few levels)"]


def test_attrs_nested_deeper_than_the_store_can_write_are_refused_by_both_paths() -> None:
    from opsradar.collectors.push import _all_valid
    from opsradar.models import MAX_ATTRS_DEPTH
    from opsradar.serving.app import pack_events, unpack

    def item(levels: int) -> str:  # attrs nesting ``levels`` deep, attrs itself included
        inner = "[" * (levels - 1) + "]" * (levels - 1)
        return ('{"source": "s", "native_id": "' + str(levels) + '", "kind": "build", "ts": "2026-03-02T09:30:00Z",'
                ' "entity": "job:x", "attrs": {"a": ' + inner + "}}")

    deepest = f"[{item(MAX_ATTRS_DEPTH)}]".encode()
    events = _all_valid(deepest, "application/json", 10)
    assert events is not None
    assert len(events) == 1
    assert json.loads(events[0].model_dump_json())["attrs"]  # it can be stored
    assert unpack(pack_events(events)) == events  # and handed to the shards

    too_deep = f"[{item(MAX_ATTRS_DEPTH + 1)}]".encode()
    assert _all_valid(too_deep, "application/json", 10) is None
    result = parse_batch(too_deep, "application/json", max_bytes=100_000, max_items=10)
    assert result.events == []
    assert [str(e) for e in result.errors] == [f"[0] attrs: nested more than {MAX_ATTRS_DEPTH} levels deep; flatten them"]


def test_an_event_later_than_the_server_s_clock_allows_gets_its_own_error() -> None:
    from datetime import timedelta

    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    late = {**item(1), "native_id": "late", "ts": "2099-01-01T00:00:00Z"}
    soon = {**item(2), "native_id": "soon", "ts": "2026-03-02T10:30:00Z"}  # within the allowed skew
    body = json.dumps([item(3), late, soon]).encode()
    result = parse_batch(body, "application/json", max_bytes=100_000, max_items=10, not_after=now + timedelta(hours=1))
    assert [e.ts.isoformat() for e in result.events] == ["2026-03-02T08:03:00+00:00", "2026-03-02T10:30:00+00:00"]
    (err,) = result.errors
    assert (err.index, err.path) == (1, "ts")
    assert err.message == ("2099-01-01T00:00:00+00:00 is later than the server's clock allows "
                           "(2026-03-02T11:00:00+00:00, api.max_clock_skew ahead of it): check the sender's clock "
                           "and time zone")
    assert parse_batch(body, "application/json", max_bytes=100_000, max_items=10).errors == [], "no limit given"

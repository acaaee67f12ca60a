"""The ingress's split of a batch between the detector shards (without Ray)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from opsradar.detectors.engine import DetectionEngine, shard_of
from opsradar.models import Event
from opsradar.serving.app import _by_shard

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _events() -> list[Event]:
    out = []
    for i in range(300):
        kind = ("build", "commit", "audit")[i % 3]
        out.append(Event.new(source="src", native_id=str(i), kind=kind, ts=T0 + timedelta(seconds=i),
                             entity=f"job:j{i % 17}" if kind != "audit" else f"user:u{i % 5}"))
    return out


def test_each_event_goes_to_the_shard_of_its_stream_in_order_whatever_the_number_of_shards() -> None:
    events = _events()
    for n in (3, 1, 2, 3, 5, 2):  # the memo follows a change of the number of shards
        groups = _by_shard(events, n)
        want: dict[int, list[Event]] = {}
        for e in events:
            want.setdefault(shard_of(DetectionEngine.stream_key(e), n), []).append(e)
        assert groups == want
        assert sum(map(len, groups.values())) == len(events)
    assert len(_by_shard(events, 5)) > 1  # not all in one: the split is exercised
    assert _by_shard([], 1) == {}
    assert _by_shard([], 4) == {}

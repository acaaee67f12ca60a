"""The flatline trigger walks its groups only when one of them could fire, and keeps only the latest
``threshold`` times of each: the firings are those of walking every group at every event and keeping
every time in the window (the reference below, what the trigger did before)."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from opsradar.alerting.rules.model import FlatlineTrigger
from opsradar.alerting.rules.triggers import Firing, make_trigger

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


@dataclass
class _RefWindow:
    since: datetime
    last: datetime
    times: deque[datetime] = field(default_factory=deque)


class _Reference:
    def __init__(self, t: FlatlineTrigger) -> None:
        self.t = t
        self.windows: dict[tuple[str, ...], _RefWindow] = {}

    def _advance(self, now: datetime) -> list[tuple[datetime, dict[str, str], str]]:
        out = []
        w = self.t.window
        for key, state in self.windows.items():
            while state.times and state.times[0] <= now - w:
                state.times.popleft()
            if len(state.times) >= self.t.threshold or now - state.since < w:
                continue
            at = min(now, max(state.since, state.last) + w)
            out.append((at, dict(zip(self.t.group_by, key, strict=True)), f"{len(state.times)} events"))
            state.since = at + ((now - at) // w) * w
        return out

    def on_event(self, f: Mapping[str, str], ts: datetime) -> list[tuple[datetime, dict[str, str], str]]:
        out = self._advance(ts)
        if f.get("kind") == "log":
            state = self.windows.setdefault(tuple(f[n] for n in self.t.group_by), _RefWindow(ts, ts))
            state.times.append(ts)
            state.last = ts
        return out


def _seen(firings: list[Firing]) -> list[tuple[datetime, dict[str, str], str]]:
    return [(x.ts, x.fields, x.detail.split(" in the last")[0]) for x in firings]


@pytest.mark.parametrize(("threshold", "seed"), [(1, 1), (1, 2), (3, 3), (5, 4)])
def test_walking_only_when_due_fires_as_walking_at_every_event(threshold: int, seed: int) -> None:
    spec = FlatlineTrigger(type="flatline", match=['kind="log"'], threshold=threshold, window="10m",
                           group_by=["service"])
    trigger, reference = make_trigger(spec), _Reference(spec)
    rng = random.Random(seed)
    services = [f"s{i}" for i in range(12)]
    quiet_from = {s: rng.uniform(0, 6) for s in services[:4]}  # four services fall silent for a while
    t, got, want = T0, [], []
    for i in range(4000):
        t += timedelta(seconds=rng.expovariate(1 / 6))
        hours = (t - T0).total_seconds() / 3600
        service = rng.choice([s for s in services if not quiet_from.get(s, 99) <= hours < quiet_from[s] + 1.5]
                             if hours < 12 else services[4:])
        kind = rng.choice(["log", "log", "log", "access"])
        if rng.random() < 0.02:
            got += _seen(trigger.tick(t))
            want += reference._advance(t)
            continue
        f = {"kind": kind, "service": service, "id": str(i)}
        got += _seen(trigger.on_event(f, t))
        want += reference.on_event(f, t)
    got += _seen(trigger.tick(t + timedelta(hours=2)))
    want += reference._advance(t + timedelta(hours=2))
    assert len(want) >= 8  # silences happened: not a vacuous comparison
    assert got == want


def test_a_group_keeps_its_latest_threshold_times_in_order_and_restores_from_an_older_checkpoint() -> None:
    spec = FlatlineTrigger(type="flatline", match=['kind="log"'], threshold=2, window="10m", group_by=["service"])
    trigger = make_trigger(spec)
    for minutes in (0, 1, 2, 3, 2.5):  # the last one arrives out of order
        trigger.on_event({"kind": "log", "service": "shop"}, T0 + timedelta(minutes=minutes))
    [[key, _, _, times]] = trigger.state()
    assert key == ["shop"]
    assert times == [(T0 + timedelta(minutes=m)).isoformat() for m in (2.5, 3)]
    # a checkpoint written when every time in the window was kept
    old = [[["shop"], T0.isoformat(), (T0 + timedelta(minutes=3)).isoformat(),
            [(T0 + timedelta(minutes=m)).isoformat() for m in (0, 1, 2, 3)]]]
    restored = make_trigger(spec)
    restored.set_state(old)
    assert restored.state()[0][3] == [(T0 + timedelta(minutes=m)).isoformat() for m in (2, 3)]
    assert restored.tick(T0 + timedelta(minutes=11, seconds=59)) == []  # minutes 2 and 3 are in the window
    [fired] = restored.tick(T0 + timedelta(minutes=12))  # minute 2 left it
    assert (fired.ts, fired.fields) == (T0 + timedelta(minutes=12), {"service": "shop"})
    assert fired.detail == "1 events in the last 10m (fewer than 2)"

"""Stateful rule types over the event stream, as in ElastAlert: pattern, frequency, new_term,
flatline and sequence. Each keeps its own state, driven by event time (and ``tick`` for flatline).

A trigger returns :class:`Firing` records; the engine turns them into alerts.

>>> from datetime import datetime, timedelta, timezone
>>> from opsradar.alerting.rules.model import FrequencyTrigger
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> freq = make_trigger(FrequencyTrigger(type="frequency", match=['kind="log"'], count=3, window="5m"))
>>> [len(freq.on_event({"kind": "log", "id": str(i)}, t + timedelta(minutes=i))) for i in range(4)]
[0, 0, 1, 0]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from opsradar.alerting.rules.matchers import Matcher, parse_matcher
from opsradar.alerting.rules.model import (
    FlatlineTrigger,
    FrequencyTrigger,
    NewTermTrigger,
    PatternTrigger,
    SequenceTrigger,
)
from opsradar.config import format_duration

__all__ = ["Firing", "Trigger", "make_trigger"]

_MAX_PENDING = 100  # sequence instances kept per key


@dataclass
class Firing:
    """A trigger fired at ``ts``: ``fields`` of the last event (or the group), the events involved."""

    ts: datetime
    fields: dict[str, str]
    event_ids: list[str] = field(default_factory=list)
    detail: str = ""


def _all(ms: list[Matcher], f: Mapping[str, str]) -> bool:
    return all(m.matches(f) for m in ms)


def _may_match(ms: list[Matcher], source: str, kind: str) -> bool:
    """Whether an event of ``source`` and ``kind`` may pass ``ms``: its matchers on those two fields
    (the others depend on the rest of the event)."""
    top = {"source": source, "kind": kind}  # the same values as in ``event_fields``
    return _all([m for m in ms if m.name in top], top)


def _span(d: timedelta) -> str:
    """A span as a reader wants it in a message, to the second: ``10m1s``, not ``0:10:00.658000``."""
    return format_duration(timedelta(seconds=round(d.total_seconds())))


class Trigger:
    """Base: match events; no state."""

    def __init__(self, match: list[str]) -> None:
        self.match = [parse_matcher(m) for m in match]

    def on_event(self, f: Mapping[str, str], ts: datetime) -> list[Firing]:
        return []

    def may_act(self, source: str, kind: str) -> bool:
        """False when :meth:`on_event` can do nothing (no firing, no change of state) for any event of
        this ``source`` and ``kind``: the engine then skips the call. True unless a subclass knows."""
        return True

    def tick(self, now: datetime) -> list[Firing]:
        return []

    def state(self) -> Any:
        """The trigger's state as JSON-ready data (for checkpoints)."""
        return None

    def set_state(self, state: Any) -> None:
        """Restore what :meth:`state` returned."""


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s)


def _key(f: Mapping[str, str], names: list[str]) -> tuple[str, ...]:
    return tuple(f.get(n, "") for n in names)


def _key_fields(names: list[str], key: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(names, key, strict=True))


class _Matching(Trigger):
    """A trigger that does nothing with an event its ``match`` rejects (pattern, frequency, new_term)."""

    def may_act(self, source: str, kind: str) -> bool:
        return _may_match(self.match, source, kind)


class _Pattern(_Matching):
    def on_event(self, f: Mapping[str, str], ts: datetime) -> list[Firing]:
        return [Firing(ts, dict(f), [f.get("id", "")])] if _all(self.match, f) else []


class _Frequency(_Matching):
    def __init__(self, t: FrequencyTrigger) -> None:
        super().__init__(t.match)
        self.t = t
        self.windows: dict[tuple[str, ...], deque[tuple[datetime, str]]] = {}

    def on_event(self, f: Mapping[str, str], ts: datetime) -> list[Firing]:
        if not _all(self.match, f):
            return []
        q = self.windows.setdefault(_key(f, self.t.group_by), deque())
        q.append((ts, f.get("id", "")))
        while q and q[0][0] <= ts - self.t.window:
            q.popleft()
        if len(q) < self.t.count:
            return []
        ids = [i for _, i in q]
        q.clear()
        return [Firing(ts, dict(f), ids, f"{len(ids)} events within {_span(self.t.window)}")]

    def state(self) -> Any:
        return [[list(k), [[t.isoformat(), i] for t, i in q]] for k, q in self.windows.items() if q]

    def set_state(self, state: Any) -> None:
        self.windows = {tuple(k): deque((_t(t), i) for t, i in q) for k, q in state}


class _NewTerm(_Matching):
    def __init__(self, t: NewTermTrigger) -> None:
        super().__init__(t.match)
        self.t = t
        self.first: datetime | None = None
        self.seen: set[tuple[str, ...]] = set()

    def on_event(self, f: Mapping[str, str], ts: datetime) -> list[Firing]:
        if not _all(self.match, f) or any(n not in f for n in self.t.fields):
            return []
        self.first = self.first or ts
        term = _key(f, self.t.fields)
        if term in self.seen:
            return []
        self.seen.add(term)
        if ts - self.first < self.t.learn_for:
            return []
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(self.t.fields, term, strict=True))
        return [Firing(ts, dict(f), [f.get("id", "")], f"first time seen: {shown}")]

    def state(self) -> Any:
        return {"first": self.first.isoformat() if self.first else None, "seen": sorted(map(list, self.seen))}

    def set_state(self, state: Any) -> None:
        self.first = _t(state["first"]) if state["first"] else None
        self.seen = {tuple(x) for x in state["seen"]}


@dataclass
class _Window:
    since: datetime  # first seen, or the last alert: the trailing window is judged from here
    last: datetime
    times: deque[datetime] = field(default_factory=deque)


class _Flatline(Trigger):
    """Fewer than ``threshold`` events in the trailing ``window``; re-fires after each further window.

    A group keeps the times of its latest ``threshold`` events, in order: fewer than ``threshold``
    in the window means the oldest of those left it. Every event (and ``tick``) moves the clock, but
    the groups are only walked once the clock reaches ``_due``: the earliest time at which any of
    them could fire, given what they hold. An event only puts its group's moment later, so between
    walks an event costs O(1) however many groups there are.
    """

    def __init__(self, t: FlatlineTrigger) -> None:
        super().__init__(t.match)
        self.t = t
        self.windows: dict[tuple[str, ...], _Window] = {}
        self._due: datetime | None = None  # None: not known yet (walk at the next event)

    def _advance(self, now: datetime) -> list[Firing]:
        due = self._due
        if due is not None and now < due:
            return []
        out = []
        w, threshold = self.t.window, self.t.threshold
        due = None
        for key, state in self.windows.items():
            times = state.times
            while times and times[0] <= now - w:
                times.popleft()
            if len(times) < threshold and now - state.since >= w:
                at = min(now, max(state.since, state.last) + w)
                out.append(Firing(at, _key_fields(self.t.group_by, key),
                                  [], f"{len(times)} events in the last {_span(w)} (fewer than {threshold})"))
                state.since = at + ((now - at) // w) * w  # one alert per silent window, even when catching up
            # it fires once a window has passed since ``since`` and its threshold-th latest event left it
            moment = state.since + w
            if len(times) >= threshold:
                moment = max(moment, times[0] + w)
            if due is None or moment < due:
                due = moment
        self._due = due
        return out

    def on_event(self, f: Mapping[str, str], ts: datetime) -> list[Firing]:
        out = self._advance(ts)
        if _all(self.match, f):
            key = _key(f, self.t.group_by)
            state = self.windows.get(key)
            if state is None:
                state = self.windows[key] = _Window(ts, ts, deque(maxlen=self.t.threshold))
                if self._due is not None and ts + self.t.window < self._due:
                    self._due = ts + self.t.window
            times = state.times
            if times and ts < times[-1]:  # out of order: keep the latest ``threshold`` in order
                state.times = deque(sorted([*times, ts]), maxlen=self.t.threshold)
            else:
                times.append(ts)
            state.last = ts
        return out

    def tick(self, now: datetime) -> list[Firing]:
        return self._advance(now)

    def state(self) -> Any:
        return [[list(k), w.since.isoformat(), w.last.isoformat(), [t.isoformat() for t in w.times]]
                for k, w in self.windows.items()]

    def set_state(self, state: Any) -> None:
        n = self.t.threshold  # a checkpoint from before the cap holds every time in the window
        self.windows = {tuple(k): _Window(_t(since), _t(last), deque(sorted(map(_t, times)), maxlen=n))
                        for k, since, last, times in state}
        self._due = None


@dataclass
class _Instance:
    start: datetime
    step: int = 0
    count: int = 0
    ids: list[str] = field(default_factory=list)


class _Sequence(Trigger):
    def __init__(self, t: SequenceTrigger) -> None:
        super().__init__([])
        self.t = t
        self.steps = [([parse_matcher(m) for m in s.match], s.count) for s in t.steps]
        self.pending: dict[tuple[str, ...], list[_Instance]] = {}

    def may_act(self, source: str, kind: str) -> bool:
        """An event that matches no step changes nothing (:meth:`on_event`), so the engine skips the
        sources and kinds that every step's ``match`` rejects."""
        return any(_may_match(ms, source, kind) for ms, _ in self.steps)

    def on_event(self, f: Mapping[str, str], ts: datetime) -> list[Firing]:
        """Advance the oldest instance of the event's key that it moves forward, or count it towards
        a new instance's first step. An event that does neither changes nothing: it does not expire
        the key's instances either (they expire by the time of the events that could move them)."""
        if any(n not in f for n in self.t.by):  # an event we cannot place is in no sequence
            return []
        key = _key(f, self.t.by)
        insts = [i for i in self.pending.get(key, ()) if ts - i.start <= self.t.window]
        out: list[Firing] = []
        for inst in insts:  # advance the oldest instance this event moves forward
            ms, need = self.steps[inst.step]
            if inst.step > 0 and _all(ms, f):
                inst.count += 1
                inst.ids.append(f.get("id", ""))
                if inst.count >= need:
                    inst.step, inst.count = inst.step + 1, 0
                if inst.step == len(self.steps):
                    insts.remove(inst)
                    out.append(Firing(ts, dict(f), inst.ids, f"sequence completed within {_span(ts - inst.start)}"))
                break
        else:
            ms, need = self.steps[0]
            if not _all(ms, f):
                return []
            cur = next((i for i in insts if i.step == 0), None)
            if cur is None:
                cur = _Instance(ts)
                insts.append(cur)
            cur.count += 1
            cur.ids.append(f.get("id", ""))
            if cur.count >= need:
                cur.step, cur.count = 1, 0
        if insts := insts[-_MAX_PENDING:]:
            self.pending[key] = insts
        else:
            self.pending.pop(key, None)
        return out

    def state(self) -> Any:
        return [[list(k), [[i.start.isoformat(), i.step, i.count, i.ids] for i in insts]]
                for k, insts in self.pending.items()]

    def set_state(self, state: Any) -> None:
        self.pending = {tuple(k): [_Instance(_t(start), step, count, list(ids)) for start, step, count, ids in insts]
                        for k, insts in state}


def make_trigger(t: PatternTrigger | FrequencyTrigger | NewTermTrigger | FlatlineTrigger | SequenceTrigger) -> Trigger:
    """The runtime state machine of a trigger."""
    if isinstance(t, PatternTrigger):
        return _Pattern(t.match)
    if isinstance(t, FrequencyTrigger):
        return _Frequency(t)
    if isinstance(t, NewTermTrigger):
        return _NewTerm(t)
    if isinstance(t, FlatlineTrigger):
        return _Flatline(t)
    return _Sequence(t)


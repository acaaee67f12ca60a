"""The contextual detector for metric streams."""

from __future__ import annotations

import math
import pickle
import random
from typing import Any

import pytest

from opsradar.detectors.checks import check_detector
from opsradar.detectors.contextual import ContextualDetector


def sine(i: int) -> dict[str, float]:
    return {"value": 50 + 40 * math.sin(2 * math.pi * i / 24)}


def test_learns_a_periodic_pattern_and_flags_a_break() -> None:
    det = ContextualDetector(rest_period=10)
    for i in range(24 * 40):
        det.learn_one(sine(i))
    assert det.score_one(sine(24 * 40)) == 0.0
    assert det.score_one({"value": 90.0}) > 0.4  # the peak, where the trough should come


def test_memory_is_capped() -> None:
    det = ContextualDetector(max_contexts=200)
    for i in range(3000):
        det.learn_one({"value": float((i * 7919) % 101)})
    assert len(det.memory) <= 200
    assert det.score_one({"value": 3.0}) >= 0.0


def test_known_range_and_explanation() -> None:
    det = ContextualDetector(low=0.0, high=100.0)
    for i in range(200):
        det.learn_one({"value": 10.0 + (i % 2)})
    [c] = det.explain_one({"value": 95.0})
    assert c.feature == "value"
    assert c.low <= c.expected <= c.high
    assert c.high < 95.0


def test_range_growth_relearns() -> None:
    det = ContextualDetector(relearn_on_growth=0.25)
    for i in range(100):
        det.learn_one({"value": float(i % 4)})
    n_before = len(det.memory)
    det.learn_one({"value": 40.0})
    assert len(det.memory) < n_before
    assert det.hi > 40.0


def wavy(seed: int, n: int) -> list[float]:
    """A deterministic metric: a noisy daily wave with rare spikes and a level shift half way."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        v = 50 + 30 * math.sin(2 * math.pi * i / (24 + seed)) + rng.gauss(0, 3)
        if rng.random() < 0.01:
            v += rng.choice([-1, 1]) * 60
        if i > n // 2:
            v += 20 * (seed % 3)
        out.append(v)
    return out


@pytest.mark.parametrize(
    "params",
    [{}, {"max_contexts": 60, "rest_period": 5}, {"low": -50.0, "high": 150.0, "bits": 4}, {"max_left": 3, "max_active": 5, "max_contexts": 100}],
)
def test_packed_state_scores_exactly_as_the_reference(params: dict[str, Any]) -> None:
    values = wavy(1, 1500)
    new, ref = ContextualDetector(**params), _Reference(**params)
    got, want, filled = [], [], 0
    for v in values:
        got.append(new.score_one({"value": v}))
        want.append(ref.score_one({"value": v}))
        new.learn_one({"value": v})
        ref.learn_one({"value": v})
        assert len(new.memory) == len(ref.memory.contexts)
        filled = max(filled, len(new.memory))
    assert filled == new.max_contexts  # the cap was reached
    assert got == want
    assert sum(s > 0 for s in got) > 10  # and there was something to score


def test_packed_state_pickles_and_passes_the_generic_checks() -> None:
    det = ContextualDetector(max_contexts=60)
    for v in wavy(2, 600):
        det.learn_one({"value": v})
    copy = pickle.loads(pickle.dumps(det))
    for v in wavy(3, 200):
        assert copy.score_one({"value": v}) == det.score_one({"value": v})
        copy.learn_one({"value": v})
        det.learn_one({"value": v})
    check_detector(ContextualDetector)


# ---------------------------------------------------------------------------------------------
# The reference: the tuple/set/dict implementation the packed one replaced (contextual.py before
# the packing, copied verbatim but for the class header and explanations). The packed detector
# must give exactly the same scores.

_NEURON = 1 << 20  # neuron facts are _NEURON + context id; sensor facts are small ints


class _RefMemory:
    """Contexts as pairs of semi-contexts, with an index from fact to semi-context."""

    __slots__ = (
        "contexts",
        "fact_index",
        "left_contexts",
        "max_contexts",
        "right_facts",
        "semi_ids",
        "semi_len",
    )

    def __init__(self, max_contexts: int) -> None:
        self.max_contexts = max_contexts
        # side 0 = left, 1 = right: facts tuple -> semi id; semi id -> length; fact -> semi ids
        self.semi_ids: tuple[dict[tuple[int, ...], int], dict[tuple[int, ...], int]] = ({}, {})
        self.semi_len: tuple[list[int], list[int]] = ([], [])
        self.fact_index: tuple[dict[int, list[int]], dict[int, list[int]]] = ({}, {})
        # left semi id -> {right semi id: context id}
        self.left_contexts: list[dict[int, int]] = []
        self.right_facts: list[tuple[int, ...]] = []  # right semi id -> its facts
        # context id -> [predicted facts total, predicted facts true, activations, zero level, right id]
        self.contexts: list[list[int]] = []

    def _semi(self, side: int, facts: tuple[int, ...]) -> int:
        ids = self.semi_ids[side]
        sid = ids.get(facts)
        if sid is None:
            sid = ids[facts] = len(self.semi_len[side])
            self.semi_len[side].append(len(facts))
            index = self.fact_index[side]
            for f in facts:
                index.setdefault(f, []).append(sid)
            if side == 0:
                self.left_contexts.append({})
            else:
                self.right_facts.append(facts)
        return sid

    def add(self, left: tuple[int, ...], right: tuple[int, ...], zero_level: bool) -> int | None:
        """Store a context; returns its id if it is new, else None (a known zero-level one is marked)."""
        if len(self.contexts) >= self.max_contexts:
            lid = self.semi_ids[0].get(left)
            rid = self.semi_ids[1].get(right)
            if lid is not None and rid is not None:
                cid = self.left_contexts[lid].get(rid)
                if cid is not None and zero_level:
                    self.contexts[cid][3] = 1
            return None
        lid = self._semi(0, left)
        rid = self._semi(1, right)
        known = self.left_contexts[lid]
        cid = known.get(rid)
        if cid is None:
            cid = known[rid] = len(self.contexts)
            self.contexts.append([0, 0, 0, 1 if zero_level else 0, rid])
            return cid
        if zero_level:
            self.contexts[cid][3] = 1
        return None

    def matches(self, side: int, facts: tuple[int, ...]) -> dict[int, list[int]]:
        """Semi-context id -> the facts of ``facts`` it holds (only those holding one or more)."""
        out: dict[int, list[int]] = {}
        index = self.fact_index[side]
        for f in facts:
            for sid in index.get(f, ()):
                got = out.get(sid)
                if got is None:
                    out[sid] = [f]
                else:
                    got.append(f)
        return out



class _Reference:
    """The contextual detector as it was before its state was packed."""

    def __init__(
        self,
        feature: str = "value",
        bits: int = 3,
        max_left: int = 7,
        max_active: int = 15,
        base_threshold: float = 0.75,
        rest_period: int = 30,
        max_contexts: int = 300,
        low: float | None = None,
        high: float | None = None,
        relearn_on_growth: float = 0.05,
    ) -> None:
        if bits < 1:
            raise ValueError(f"bits must be at least 1, got {bits!r}")
        self.feature = feature
        self.bits = bits
        self.max_left = max_left
        self.max_active = max_active
        self.base_threshold = base_threshold
        self.rest_period = rest_period
        self.memory = _RefMemory(max_contexts)
        self.max_contexts = max_contexts
        self.relearn_on_growth = relearn_on_growth
        self.n = 0
        self.fixed_range = low is not None and high is not None
        self.lo = low if low is not None and high is not None else math.inf
        self.hi = high if low is not None and high is not None else -math.inf
        self.left: tuple[int, ...] = ()  # the current left group of facts
        self.left_matches: dict[int, list[int]] = {}  # left semi id -> its facts in self.left
        self.predicted: frozenset[int] = frozenset()
        self.since_alarm = 0  # steps since the last raw score ≥ base_threshold (none yet: rest first)

    # ----------------------------------------------------------------- encoding
    def _value(self, x: dict[str, float]) -> float | None:
        v = x.get(self.feature)
        if v is None:
            vals = [val for k, val in x.items() if not k.startswith("_")]
            if len(vals) != 1:
                return None
            v = vals[0]
        return float(v)

    def _level(self, v: float) -> int:
        top = (1 << self.bits) - 1
        span = self.hi - self.lo
        step = span / top if span > 0 else 1.0
        level = int((v - self.lo) / step) if self.n or self.fixed_range else 0
        return max(0, min(level, (1 << (self.bits + 1)) - 1))

    def _facts(self, v: float) -> tuple[int, ...]:
        level = self._level(v)
        width = max(self.bits, level.bit_length())
        return tuple(2 * i + ((level >> i) & 1) for i in range(width))

    def _surprised(self, facts: tuple[int, ...]) -> bool:
        return any(f not in self.predicted for f in facts)

    # ----------------------------------------------------------------- the step
    def _step(self, facts: tuple[int, ...], commit: bool) -> tuple[float, float]:
        """Run one step on ``facts``: returns (active share, novelty share).

        With ``commit=False`` nothing is stored (``score_one`` stays pure): new contexts are
        counted as they would be created, without creating them.
        """
        mem = self.memory
        new_zero = False
        uniq: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        zero_cid: int | None = None
        if self.left and facts:
            zero = (self.left, facts)
            uniq.add(zero)
            if commit:
                zero_cid = mem.add(self.left, facts, zero_level=True)
                new_zero = zero_cid is not None
            else:
                lid = mem.semi_ids[0].get(self.left)
                rid = mem.semi_ids[1].get(facts)
                new_zero = (
                    lid is None or rid is None or rid not in mem.left_contexts[lid]
                ) and len(mem.contexts) < mem.max_contexts
        right = mem.matches(1, facts)
        active: list[tuple[int, int, int, int]] = []
        selected = 0
        potential: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        semi_len = mem.semi_len[0]
        for lid, lfacts in self.left_matches.items():
            full_left = len(lfacts) == semi_len[lid]
            if not full_left and (not new_zero or len(lfacts) > self.max_left):
                continue  # a partial match only matters when it may seed new contexts
            for rid, cid in mem.left_contexts[lid].items():
                if cid == zero_cid:
                    continue
                ctx = mem.contexts[cid]
                rfacts = right.get(rid)
                if full_left:
                    selected += 1
                    if commit:
                        ctx[0] += mem.semi_len[1][rid]
                    if rfacts:
                        if commit:
                            ctx[1] += len(rfacts)
                        if len(rfacts) == mem.semi_len[1][rid]:
                            act = ctx[2] + 1
                            if commit:
                                ctx[2] = act
                            active.append((act, lid, rid, cid))
                        elif ctx[3] and new_zero and len(lfacts) <= self.max_left:
                            potential.append((tuple(lfacts), tuple(rfacts)))
                elif ctx[3] and new_zero and rfacts and len(lfacts) <= self.max_left:
                    potential.append((tuple(lfacts), tuple(rfacts)))
        uniq.update(potential)
        active_share = len(active) / selected if selected else 0.0
        active.sort()
        neurons = [_NEURON + a[3] for a in active[-self.max_active :]]
        left = tuple(sorted({*facts, *neurons}))
        n_new = 1 if new_zero else 0
        if commit:
            for lf, rf in potential:
                if mem.add(lf, rf, zero_level=False) is not None:
                    n_new += 1
            self._predict(left)
        else:
            n_new += sum(1 for p in set(potential) if self._is_new(p))
        novelty = n_new / len(uniq) if new_zero and uniq else 0.0
        return active_share, novelty

    def _is_new(self, pair: tuple[tuple[int, ...], tuple[int, ...]]) -> bool:
        mem = self.memory
        lid = mem.semi_ids[0].get(pair[0])
        rid = mem.semi_ids[1].get(pair[1])
        return lid is None or rid is None or rid not in mem.left_contexts[lid]

    def _predict(self, left: tuple[int, ...]) -> None:
        mem = self.memory
        self.left = left
        self.left_matches = mem.matches(0, left)
        best = 0.0
        chosen: list[int] = []
        for lid, lfacts in self.left_matches.items():
            if len(lfacts) != mem.semi_len[0][lid]:
                continue
            for cid in mem.left_contexts[lid].values():
                ctx = mem.contexts[cid]
                w = ctx[1] / ctx[0] if ctx[0] > 0 else 0.0
                if w > best:
                    best, chosen = w, [ctx[4]]
                elif w == best:
                    chosen.append(ctx[4])
        right_facts = mem.right_facts
        self.predicted = frozenset(f for rid in chosen for f in right_facts[rid])

    def _raw(self, x: dict[str, float], commit: bool) -> float:
        v = self._value(x)
        if v is None:
            return 0.0
        facts = self._facts(v)
        surprised = self._surprised(facts)
        active, novelty = self._step(facts, commit)
        return (1.0 - active + novelty) / 2.0 if surprised else 0.0

    def _relearn(self) -> None:
        """Forget the contexts (their levels no longer mean the same values) and widen the range."""
        pad = self.relearn_on_growth / 2 * (self.hi - self.lo)
        self.lo -= pad
        self.hi += pad
        self.memory = _RefMemory(self.max_contexts)
        self.left = ()
        self.left_matches = {}
        self.predicted = frozenset()

    # ----------------------------------------------------------------- the contract
    def score_one(self, x: dict[str, float]) -> float:
        if self.n == 0:
            return 0.0
        raw = self._raw(x, commit=False)
        return raw if self.since_alarm >= self.rest_period else 0.0

    def learn_one(self, x: dict[str, float]) -> None:
        v = self._value(x)
        if v is None:
            return
        if self.n == 0 and not self.fixed_range:
            self.lo = self.hi = v
        raw = self._raw(x, commit=True)
        self.since_alarm = 0 if raw >= self.base_threshold else self.since_alarm + 1
        if not self.fixed_range:
            old = self.hi - self.lo
            self.lo = min(self.lo, v)
            self.hi = max(self.hi, v)
            if self.relearn_on_growth and old > 0 and (self.hi - self.lo) > old * (1 + self.relearn_on_growth):
                self._relearn()
        self.n += 1


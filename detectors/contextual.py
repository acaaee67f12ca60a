"""Contextual sequence detector for metric streams (after Smirnov's Contextual Anomaly Detector).

The algorithm is the one of the "Contextual Anomaly Detector" (CAD OSE) that NAB ships, written
anew here with bounded, typed state:

1. A value is quantised to ``2**bits`` levels over the range learned so far; each bit of the level
   is a *sensor fact*. A value above the range gets an extra bit (a fact never seen before).
2. A *context* pairs a left set of facts (the previous step's sensor facts plus the contexts that
   were active then, as "neuron" facts) with a right set (the facts that followed). Contexts are
   stored as pairs of shared semi-contexts, indexed by fact.
3. Each step, contexts whose left side matched last step are checked against the new facts: the
   share of them that came true fully (``active``), and how many new contexts the step had to
   create (``novelty``), give the raw score ``(1 - active + novelty) / 2`` whenever the facts were
   not all predicted. The best-weighted matching contexts predict the next facts.
4. After a score of ``base_threshold`` or more, ``rest_period`` steps score 0, so one anomaly
   raises one alert.

Differences from CAD OSE: no look-ahead. CAD OSE is given the whole series' minimum and
maximum; here the range is learned online, and when it grows by more than ``relearn_on_growth``
of itself the levels no longer mean the same values, so the contexts are forgotten and relearnt
over a range padded by half that fraction on each side (the growth itself usually is the
anomaly). A known range can be given (``low``/``high``, e.g. 0..100 for a percentage). The memory is capped at
``max_contexts`` contexts (a full stream keeps scoring, it just stops memorising); and the
traversal visits only the semi-contexts that share a fact with the input, so a step costs
time proportional to what matched, not to everything stored.

>>> det = ContextualDetector()
>>> for i in range(400):
...     det.learn_one({"value": float(i % 8)})
>>> det.score_one({"value": 0.0})
0.0
>>> det.score_one({"value": 5.0}) > 0.5
True
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from opsradar.models import Contribution

from .base import Detector, register, share_contributions

__all__ = ["ContextualDetector"]

_NEURON = 1 << 20  # neuron facts are _NEURON + context id; sensor facts are small ints


class _Memory:
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


@register
class ContextualDetector(Detector):
    """Contextual sequence detector for one metric (see the module docstring)."""

    name: ClassVar[str] = "contextual"
    version: ClassVar[str] = "1"
    bounded: ClassVar[bool] = True

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
        self.memory = _Memory(max_contexts)
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

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"rest_period": 5, "max_contexts": 500}

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
        self.memory = _Memory(self.max_contexts)
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

    def explain_one(self, x: dict[str, float]) -> list[Contribution]:
        v = self._value(x)
        if v is None:
            return []
        top = (1 << self.bits) - 1
        step = (self.hi - self.lo) / top if self.hi > self.lo else 0.0
        levels = []
        for level in range(1 << (self.bits + 1)):
            bits = {2 * i + ((level >> i) & 1) for i in range(max(self.bits, level.bit_length()))}
            if bits and bits <= self.predicted:
                levels.append(level)
        if levels and step > 0:
            low = self.lo + min(levels) * step
            high = self.lo + (max(levels) + 1) * step
        else:
            low, high = (self.lo, self.hi) if self.n else (v, v)
        return share_contributions([(self.feature, v, (low + high) / 2, low, high, 1.0)])

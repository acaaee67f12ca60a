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

The state is packed for the ~100,000 streams a replica holds: a set of facts is one integer bit
mask (fact order is bit order), the contexts are parallel ``array`` columns, and the contexts of a
left semi-context form a chain through one of them, so a warm stream weighs a few tens of KiB.

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
import sys
from array import array
from bisect import insort
from functools import cache
from operator import itemgetter
from typing import Any, ClassVar

from opsradar.models import Contribution

from .base import Detector, register, share_contributions

__all__ = ["ContextualDetector"]


def _bits_of(mask: int) -> list[int]:
    """The positions of the set bits of ``mask``, lowest first.

    >>> _bits_of(0b10110)
    [1, 2, 4]
    """
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


class _Memory:
    """Contexts as pairs of semi-contexts, packed into arrays.

    A semi-context (a set of facts) is one integer bit mask: sensor fact ``f`` is bit ``f`` and the
    neuron fact of context ``c`` is bit ``sensor_bits + c``, so the bit order is the fact order and
    a mask is exactly its sorted tuple of facts. Semi-context ids are given in creation order, per
    side (0 = left, 1 = right). The contexts of one left semi-context form a chain through
    ``ctx_next`` in creation order (``-1`` ends it).

    Derived from those (not pickled, rebuilt on restore): per left semi-context, the best weight
    (predicted facts true / total) of its contexts and the union of their right sides at that
    weight, so that a prediction reads one entry per matched left semi-context, and its zero-level
    contexts (the only ones a partial match may seed from); and per sensor facts, how much of each
    right semi-context they make true.
    """

    #: The state (what a checkpoint holds), in the order pickles have always listed it.
    _STATE = (
        "ctx_act",
        "ctx_next",
        "ctx_right",
        "ctx_total",
        "ctx_true",
        "ctx_zero",
        "first_ctx",
        "last_ctx",
        "masks",
        "max_contexts",
        "semi_ids",
    )
    #: The state, and what is derived from it (rebuilt on restore, see the class docstring).
    __slots__ = (*_STATE, "left_best", "left_union", "left_zero", "right_states")

    def __init__(self, max_contexts: int) -> None:
        self.max_contexts = max_contexts
        # side 0 = left, 1 = right: mask -> semi id, and semi id -> mask
        self.semi_ids: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self.masks: tuple[list[int], list[int]] = ([], [])
        # left semi id -> its first and last context (-1: none)
        self.first_ctx = array("i")
        self.last_ctx = array("i")
        # per context: predicted facts total and true, activations, zero level, right id, next in chain
        self.ctx_total = array("q")
        self.ctx_true = array("q")
        self.ctx_act = array("q")
        self.ctx_zero = bytearray()
        self.ctx_right = array("i")
        self.ctx_next = array("i")
        # derived, per left semi id: the best weight of its contexts, the union of their rights at
        # it, its zero-level contexts (in chain order); per facts mask: see right_state
        self.left_best = array("d")
        self.left_union: list[int] = []
        self.left_zero: dict[int, list[int]] = {}  # only the left semi ids that have zero-level contexts
        self.right_states: dict[int, list[int]] = {}

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        return None, {name: getattr(self, name) for name in self._STATE}

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        for name, value in state[1].items():
            setattr(self, name, value)
        self.left_best, self.left_union, self.left_zero, self.right_states = array("d"), [], {}, {}
        right_masks = self.masks[1]
        ctx_total, ctx_true, ctx_right, ctx_next = self.ctx_total, self.ctx_true, self.ctx_right, self.ctx_next
        for cid in self.first_ctx:
            best = 0.0
            union = 0
            zeros = []
            while cid >= 0:
                total = ctx_total[cid]
                w = ctx_true[cid] / total if total > 0 else 0.0
                if w > best:
                    best, union = w, right_masks[ctx_right[cid]]
                elif w == best:
                    union |= right_masks[ctx_right[cid]]
                if self.ctx_zero[cid]:
                    zeros.append(cid)
                cid = ctx_next[cid]
            if zeros:
                self.left_zero[len(self.left_best)] = zeros
            self.left_best.append(best)
            self.left_union.append(union)

    def right_state(self, facts: int) -> list[int]:
        """Per right semi-context: whether none (0), some (1) or all (2) of its facts are in ``facts``."""
        right_masks = self.masks[1]
        states = self.right_states.get(facts)
        if states is None or len(states) != len(right_masks):  # right semi-contexts are only ever added
            states = [0 if not (t := m & facts) else 2 if t == m else 1 for m in right_masks]
            self.right_states[facts] = states
        return states

    def _mark_zero(self, lid: int, cid: int) -> None:
        """Mark known context ``cid`` (of left semi-context ``lid``) zero-level."""
        if not self.ctx_zero[cid]:
            self.ctx_zero[cid] = 1
            insort(self.left_zero.setdefault(lid, []), cid)

    def __len__(self) -> int:
        return len(self.ctx_right)

    def _semi(self, side: int, mask: int) -> int:
        ids = self.semi_ids[side]
        sid = ids.get(mask)
        if sid is None:
            masks = self.masks[side]
            sid = ids[mask] = len(masks)
            masks.append(mask)
            if side == 0:
                self.first_ctx.append(-1)
                self.last_ctx.append(-1)
                self.left_best.append(0.0)
                self.left_union.append(0)
        return sid

    def find(self, left: int, right: int) -> int | None:
        """The id of context (``left``, ``right``) given as masks, or None."""
        lid = self.semi_ids[0].get(left)
        rid = self.semi_ids[1].get(right)
        if lid is None or rid is None:
            return None
        return self._find(lid, rid)

    def _find(self, lid: int, rid: int) -> int | None:
        cid = self.first_ctx[lid]
        ctx_right, ctx_next = self.ctx_right, self.ctx_next
        while cid >= 0:
            if ctx_right[cid] == rid:
                return cid
            cid = ctx_next[cid]
        return None

    def add(self, left: int, right: int, zero_level: bool) -> int | None:
        """Store a context; returns its id if it is new, else None (a known zero-level one is marked)."""
        ctx_right = self.ctx_right
        if len(ctx_right) >= self.max_contexts:
            cid = self.find(left, right)
            if cid is not None and zero_level:
                self._mark_zero(self.semi_ids[0][left], cid)
            return None
        lid = self.semi_ids[0].get(left)
        if lid is None:
            lid = self._semi(0, left)
            cid = -1  # a new left semi-context has no contexts yet
        else:
            cid = self.first_ctx[lid]
        rid = self.semi_ids[1].get(right)
        if rid is None:
            rid = self._semi(1, right)
            cid = -1  # nor has a new right one
        ctx_next = self.ctx_next
        while cid >= 0 and ctx_right[cid] != rid:
            cid = ctx_next[cid]
        if cid < 0:
            cid = len(ctx_right)
            self.ctx_total.append(0)
            self.ctx_true.append(0)
            self.ctx_act.append(0)
            self.ctx_zero.append(1 if zero_level else 0)
            ctx_right.append(rid)
            ctx_next.append(-1)
            last = self.last_ctx[lid]
            if last < 0:
                self.first_ctx[lid] = cid
            else:
                ctx_next[last] = cid
            self.last_ctx[lid] = cid
            if self.left_best[lid] == 0.0:  # a new context weighs 0: it ties only with zero weights
                self.left_union[lid] |= self.masks[1][rid]
            if zero_level:
                self.left_zero.setdefault(lid, []).append(cid)
            return cid
        if zero_level:
            self._mark_zero(lid, cid)
        return None

    def count(self, full: list[int], facts: int) -> None:
        """Score the predictions of the contexts of the left semi-contexts ``full`` (all matched):
        each predicted its right side's facts, of which those in ``facts`` came true."""
        right_masks = self.masks[1]
        right_bits = [m.bit_count() for m in right_masks]
        true_bits = [(m & facts).bit_count() for m in right_masks]
        first_ctx, ctx_next, ctx_right = self.first_ctx, self.ctx_next, self.ctx_right
        ctx_total, ctx_true = self.ctx_total, self.ctx_true
        left_best, left_union = self.left_best, self.left_union
        for lid in full:
            best = 0.0
            union = 0
            cid = first_ctx[lid]
            while cid >= 0:
                rid = ctx_right[cid]
                total = ctx_total[cid] = ctx_total[cid] + right_bits[rid]
                true = ctx_true[cid] = ctx_true[cid] + true_bits[rid]
                w = true / total if total > 0 else 0.0
                if w > best:
                    best, union = w, right_masks[rid]
                elif w == best:
                    union |= right_masks[rid]
                cid = ctx_next[cid]
            left_best[lid] = best
            left_union[lid] = union

    def add_seeds(self, seeds: list[tuple[int, int]]) -> int:
        """Store the (left, right) contexts ``seeds`` (not zero-level), in order; returns how many were new."""
        left_ids, right_ids = self.semi_ids
        right_masks = self.masks[1]
        first_ctx, last_ctx, ctx_next, ctx_right = self.first_ctx, self.last_ctx, self.ctx_next, self.ctx_right
        left_best, left_union = self.left_best, self.left_union
        n_new = 0
        max_contexts = self.max_contexts
        for left, right in seeds:
            if len(ctx_right) >= max_contexts:
                break  # full: nothing more is stored (and a known seed, not zero-level, is not marked)
            lid = left_ids.get(left)
            if lid is None:
                lid = self._semi(0, left)
                cid = -1  # a new left semi-context has no contexts yet
            else:
                cid = first_ctx[lid]
            rid = right_ids.get(right)
            if rid is None:
                rid = self._semi(1, right)
                cid = -1  # nor has a new right one
            while cid >= 0 and ctx_right[cid] != rid:
                cid = ctx_next[cid]
            if cid >= 0:
                continue  # known
            cid = len(ctx_right)
            self.ctx_total.append(0)
            self.ctx_true.append(0)
            self.ctx_act.append(0)
            self.ctx_zero.append(0)
            ctx_right.append(rid)
            ctx_next.append(-1)
            last = last_ctx[lid]
            if last < 0:
                first_ctx[lid] = cid
            else:
                ctx_next[last] = cid
            last_ctx[lid] = cid
            if left_best[lid] == 0.0:  # a new context weighs 0: it ties only with zero weights
                left_union[lid] |= right_masks[rid]
            n_new += 1
        return n_new

    def left_matches(self, mask: int) -> array[int]:
        """Left semi-context ids sharing a fact with ``mask``, by their lowest shared fact, then id."""
        # (lowest shared fact + 1) << 32 | semi id, so that sorting orders by both
        found = [(c & -c).bit_length() << 32 | sid for sid, m in enumerate(self.masks[0]) if (c := m & mask)]
        found.sort()
        return array("i", [key & 0xFFFFFFFF for key in found])


@cache
def _fact_table(bits: int) -> tuple[int, ...]:
    """The sensor facts of every level ``0 .. 2 ** (bits + 1) - 1``, as masks (see ``_facts_of``).

    >>> [bin(m) for m in _fact_table(1)]
    ['0b1', '0b10', '0b1001', '0b1010']
    >>> all(_fact_table(3)[v] == ContextualDetector(bits=3)._facts_of(v) for v in range(16))
    True
    """
    out = []
    for level in range(1 << (bits + 1)):
        mask = 0
        for i in range(max(bits, level.bit_length())):
            mask |= 1 << (2 * i + ((level >> i) & 1))
        out.append(mask)
    return tuple(out)


class _Walk:
    """One step's match of the input facts against the memory, before anything is stored.

    ``score_one`` reads its scores from it; ``learn_one`` stores it (counts, activations, the
    contexts it seeds, the next prediction), so that a value scored then learned is matched once.
    """

    __slots__ = ("active", "facts", "full", "new_zero", "next_left", "potential", "selected", "value")

    def __init__(
        self,
        value: float,
        facts: int,
        new_zero: bool,
        full: list[int],
        selected: int,
        active: list[tuple[int, int, int, int]],
        potential: list[tuple[int, int]],
        next_left: int,
    ) -> None:
        self.value = value  # the input value
        self.facts = facts  # its sensor facts
        self.new_zero = new_zero  # whether the zero-level context (previous left, facts) is new
        self.full = full  # the left semi-contexts wholly in the left group: their contexts predicted
        self.selected = selected  # how many contexts predicted
        self.active = active  # (activations, left id, right id, context id) of those predicting all facts
        self.potential = potential  # (left, right) masks of the contexts the step seeds, in order
        self.next_left = next_left  # the facts and the most active contexts' neuron facts


@register
class ContextualDetector(Detector):
    """Contextual sequence detector for one metric (see the module docstring)."""

    name: ClassVar[str] = "contextual"
    version: ClassVar[str] = "2"
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
        # sensor facts are bits 0 .. 2 * bits + 1 of a mask; the neuron fact of context c is bit neuron + c
        self.neuron = 2 * (bits + 1)
        self.left = 0  # the current left group of facts, as a mask
        self.predicted = 0  # the predicted facts, as a mask
        self.since_alarm = 0  # steps since the last raw score ≥ base_threshold (none yet: rest first)

    # Derived from the state, not part of it (not pickled; None: to be computed):
    #: the last ``score_one``'s walk, reused by the ``learn_one`` that follows it when the facts are
    #: the same (nothing else changes the memory in between);
    _pending: _Walk | None = None
    #: the left semi-contexts wholly in ``left``.
    _full: list[int] | None = None
    _DERIVED: ClassVar[frozenset[str]] = frozenset({"_pending", "_full"})

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"rest_period": 5, "max_contexts": 500}

    @property
    def left_matches(self) -> array[int]:
        """Left semi ids sharing a fact with ``left``, by their lowest shared fact, then id."""
        return self.memory.left_matches(self.left)

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            if name not in self._DERIVED:
                state[name] = value
                if name == "left":  # derived, but checkpoints have always held it (right after left)
                    state["left_matches"] = self.left_matches
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # as pickle's own restore does, with interned names; left_matches is derived from memory and left
        self.__dict__.update((sys.intern(name), value) for name, value in state.items() if name != "left_matches")

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
        cap = (1 << (self.bits + 1)) - 1
        return 0 if level < 0 else cap if level > cap else level

    def _facts_of(self, level: int) -> int:
        """The sensor facts of a level, as a mask: bit ``2 i + b`` where ``b`` is the level's bit ``i``.

        >>> bin(ContextualDetector(bits=3)._facts_of(0b101))
        '0b100110'
        """
        mask = 0
        for i in range(max(self.bits, level.bit_length())):
            mask |= 1 << (2 * i + ((level >> i) & 1))
        return mask

    # ----------------------------------------------------------------- the step
    def _match(self) -> list[int]:
        """The ids of the left semi-contexts wholly in ``left``."""
        if self._full is None:
            left = self.left
            self._full = [lid for lid, m in enumerate(self.memory.masks[0]) if m & left == m]
        return self._full

    def _walk(self, value: float, facts: int) -> _Walk:
        """Match the ``facts`` mask against the contexts, changing nothing (see :class:`_Walk`)."""
        mem = self.memory
        left = self.left
        max_left = self.max_left
        full = self._match()
        new_zero = bool(left and facts) and mem.find(left, facts) is None and len(mem) < mem.max_contexts
        left_masks, right_masks = mem.masks
        first_ctx, ctx_next, ctx_right = mem.first_ctx, mem.ctx_next, mem.ctx_right
        ctx_act, ctx_zero, left_zero = mem.ctx_act, mem.ctx_zero, mem.left_zero
        right_state = mem.right_state(facts)
        selected = 0
        active: list[tuple[int, int, int, int]] = []
        # the contexts to seed: (order, left facts, right facts), where the order of a left semi-context's
        # seeds is its lowest shared fact, then its id (as left_matches orders them)
        seeds: list[tuple[int, int, int]] = []
        for lid in full:  # the whole left side matched: these contexts predicted
            lfacts = left_masks[lid]
            seeding = new_zero and lfacts.bit_count() <= max_left
            order = 0
            cid = first_ctx[lid]
            while cid >= 0:
                selected += 1
                rid = ctx_right[cid]
                state = right_state[rid]
                if state == 2:
                    active.append((ctx_act[cid] + 1, lid, rid, cid))
                elif state and seeding and ctx_zero[cid]:
                    order = order or (lfacts & -lfacts).bit_length() << 32 | lid
                    seeds.append((order, lfacts, right_masks[rid] & facts))
                cid = ctx_next[cid]
        if new_zero:  # a partial match only matters when it may seed new contexts
            for lid, zeros in left_zero.items():  # only zero-level contexts seed
                lmask = left_masks[lid]
                lfacts = lmask & left
                if lfacts and lfacts != lmask and lfacts.bit_count() <= max_left:
                    order = 0
                    for cid in zeros:
                        rid = ctx_right[cid]
                        if right_state[rid]:
                            order = order or (lfacts & -lfacts).bit_length() << 32 | lid
                            seeds.append((order, lfacts, right_masks[rid] & facts))
            if len(seeds) > 1:
                seeds.sort(key=itemgetter(0))  # stable: a left semi-context's seeds stay in chain order
        if 0 < len(active) <= self.max_active:
            top = active  # all of them, in any order
        else:
            active.sort()
            top = active[-self.max_active :]  # the most active ones
        next_left = facts
        neuron = self.neuron
        for a in top:
            next_left |= 1 << (neuron + a[3])
        potential = [(lf, rf) for _, lf, rf in seeds]
        return _Walk(value, facts, new_zero, full, selected, active, potential, next_left)

    def _novelty(self, walk: _Walk, n_new: int) -> float:
        """The share of the step's distinct candidate contexts (the zero-level one and the seeded
        ones) that were new, ``n_new`` of them; 0 when the zero-level context was not new."""
        if not walk.new_zero:
            return 0.0
        return n_new / len({(self.left, walk.facts), *walk.potential})

    def _score_walk(self, walk: _Walk) -> tuple[float, float]:
        """(active share, novelty share) of a step, without storing anything: the contexts it
        would create are counted, not created."""
        active_share = len(walk.active) / walk.selected if walk.selected else 0.0
        n_new = 0
        if walk.new_zero:
            find = self.memory.find
            n_new = 1 + sum(1 for lf, rf in set(walk.potential) if find(lf, rf) is None)
        return active_share, self._novelty(walk, n_new)

    def _commit(self, walk: _Walk) -> tuple[float, float]:
        """Store a step (counts, activations, new contexts, the next prediction): returns its
        (active share, novelty share)."""
        mem = self.memory
        facts = walk.facts
        # the contexts that predicted (the zero-level one, if new, is not among them: not stored yet)
        mem.count(walk.full, facts)
        ctx_act = mem.ctx_act
        for act, _, _, cid in walk.active:
            ctx_act[cid] = act
        n_new = 0
        if self.left and facts:
            # new exactly when the walk found it new: the memory has not changed since
            n_new = 0 if mem.add(self.left, facts, zero_level=True) is None else 1
        n_new += mem.add_seeds(walk.potential)
        active_share = len(walk.active) / walk.selected if walk.selected else 0.0
        novelty = self._novelty(walk, n_new)
        self._predict(walk.next_left)
        return active_share, novelty

    def _predict(self, left: int) -> None:
        """Make ``left`` the left group; predict the union of the right sides of the best-weighted
        contexts whose whole left side is in it."""
        self.left = left
        self._full = None
        full = self._match()
        left_best, left_union = self.memory.left_best, self.memory.left_union
        best = 0.0
        predicted = 0
        for lid in full:
            w = left_best[lid]
            if w > best:
                best, predicted = w, left_union[lid]
            elif w == best:
                predicted |= left_union[lid]
        self.predicted = predicted

    def _relearn(self) -> None:
        """Forget the contexts (their levels no longer mean the same values) and widen the range."""
        pad = self.relearn_on_growth / 2 * (self.hi - self.lo)
        self.lo -= pad
        self.hi += pad
        self.memory = _Memory(self.max_contexts)
        self.left = 0
        self._full = None
        self.predicted = 0

    # ----------------------------------------------------------------- the contract
    def score_one(self, x: dict[str, float]) -> float:
        if self.n == 0:
            return 0.0
        v = self._value(x)
        if v is None:
            return 0.0
        facts = _fact_table(self.bits)[self._level(v)]
        # kept for learn_one: the engine learns each event right after scoring it
        walk = self._pending = self._walk(v, facts)
        if self.since_alarm < self.rest_period or not facts & ~self.predicted:
            return 0.0  # resting, or every fact was predicted
        active, novelty = self._score_walk(walk)
        return (1.0 - active + novelty) / 2.0

    def learn_one(self, x: dict[str, float]) -> None:
        v = self._value(x)
        if v is None:
            return
        if self.n == 0 and not self.fixed_range:
            self.lo = self.hi = v
        walk = self._pending
        self._pending = None
        if walk is not None and walk.value == v:  # just scored: the same level, so the same facts
            facts = walk.facts
        else:
            facts = _fact_table(self.bits)[self._level(v)]
            if walk is None or walk.facts != facts:
                walk = self._walk(v, facts)
        surprised = bool(facts & ~self.predicted)
        active, novelty = self._commit(walk)
        raw = (1.0 - active + novelty) / 2.0 if surprised else 0.0
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
            mask = self._facts_of(level)
            if mask and not mask & ~self.predicted:
                levels.append(level)
        if levels and step > 0:
            low = self.lo + min(levels) * step
            high = self.lo + (max(levels) + 1) * step
        else:
            low, high = (self.lo, self.hi) if self.n else (v, v)
        return share_contributions([(self.feature, v, (low + high) / 2, low, high, 1.0)])

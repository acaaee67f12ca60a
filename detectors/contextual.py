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
from array import array
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
    """

    __slots__ = (
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
        if len(self.ctx_right) >= self.max_contexts:
            cid = self.find(left, right)
            if cid is not None and zero_level:
                self.ctx_zero[cid] = 1
            return None
        lid = self._semi(0, left)
        rid = self._semi(1, right)
        cid = self._find(lid, rid)
        if cid is None:
            cid = len(self.ctx_right)
            self.ctx_total.append(0)
            self.ctx_true.append(0)
            self.ctx_act.append(0)
            self.ctx_zero.append(1 if zero_level else 0)
            self.ctx_right.append(rid)
            self.ctx_next.append(-1)
            last = self.last_ctx[lid]
            if last < 0:
                self.first_ctx[lid] = cid
            else:
                self.ctx_next[last] = cid
            self.last_ctx[lid] = cid
            return cid
        if zero_level:
            self.ctx_zero[cid] = 1
        return None

    def left_matches(self, mask: int) -> array[int]:
        """Left semi-context ids sharing a fact with ``mask``, by their lowest shared fact, then id."""
        found = []  # (lowest shared fact + 1) << 32 | semi id, so that sorting orders by both
        for sid, m in enumerate(self.masks[0]):
            common = m & mask
            if common:
                found.append((common & -common).bit_length() << 32 | sid)
        found.sort()
        return array("i", [key & 0xFFFFFFFF for key in found])


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
        self.left_matches = array("i")  # left semi ids sharing a fact with self.left (memory order)
        self.predicted = 0  # the predicted facts, as a mask
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
    def _step(self, facts: int, commit: bool) -> tuple[float, float]:
        """Run one step on the ``facts`` mask: returns (active share, novelty share).

        With ``commit=False`` nothing is stored (``score_one`` stays pure): new contexts are
        counted as they would be created, without creating them.
        """
        mem = self.memory
        left = self.left
        max_left = self.max_left
        new_zero = False
        uniq: set[tuple[int, int]] = set()
        zero_cid: int | None = None
        if left and facts:
            uniq.add((left, facts))
            if commit:
                zero_cid = mem.add(left, facts, zero_level=True)
                new_zero = zero_cid is not None
            else:
                new_zero = mem.find(left, facts) is None and len(mem) < mem.max_contexts
        left_masks, right_masks = mem.masks
        first_ctx, ctx_next, ctx_right = mem.first_ctx, mem.ctx_next, mem.ctx_right
        ctx_total, ctx_true, ctx_act, ctx_zero = mem.ctx_total, mem.ctx_true, mem.ctx_act, mem.ctx_zero
        # per right semi-context: its facts that came true, and whether none (0), some (1) or all (2) did
        right_true = [m & facts for m in right_masks]
        right_state = [0 if not t else 2 if t == m else 1 for t, m in zip(right_true, right_masks, strict=True)]
        active: list[tuple[int, int, int, int]] = []
        selected = 0
        potential: list[tuple[int, int]] = []
        for lid in self.left_matches:
            lmask = left_masks[lid]
            lfacts = lmask & left
            seeds = new_zero and lfacts.bit_count() <= max_left
            cid = first_ctx[lid]
            if lfacts == lmask:  # the whole left side matched: these contexts predicted
                while cid >= 0:
                    if cid != zero_cid:
                        rid = ctx_right[cid]
                        selected += 1
                        state = right_state[rid]
                        if commit:
                            ctx_total[cid] += right_masks[rid].bit_count()
                            if state:
                                ctx_true[cid] += right_true[rid].bit_count()
                        if state == 2:
                            act = ctx_act[cid] + 1
                            if commit:
                                ctx_act[cid] = act
                            active.append((act, lid, rid, cid))
                        elif state and seeds and ctx_zero[cid]:
                            potential.append((lfacts, right_true[rid]))
                    cid = ctx_next[cid]
            elif seeds:  # a partial match only matters when it may seed new contexts
                while cid >= 0:
                    if cid != zero_cid:
                        rid = ctx_right[cid]
                        if right_state[rid] and ctx_zero[cid]:
                            potential.append((lfacts, right_true[rid]))
                    cid = ctx_next[cid]
        uniq.update(potential)
        active_share = len(active) / selected if selected else 0.0
        active.sort()
        next_left = facts
        for a in active[-self.max_active :]:
            next_left |= 1 << (self.neuron + a[3])
        n_new = 1 if new_zero else 0
        if commit:
            for lf, rf in potential:
                if mem.add(lf, rf, zero_level=False) is not None:
                    n_new += 1
            self._predict(next_left)
        else:
            n_new += sum(1 for lf, rf in set(potential) if mem.find(lf, rf) is None)
        novelty = n_new / len(uniq) if new_zero and uniq else 0.0
        return active_share, novelty

    def _predict(self, left: int) -> None:
        mem = self.memory
        self.left = left
        self.left_matches = mem.left_matches(left)
        left_masks, right_masks = mem.masks
        first_ctx, ctx_next, ctx_right = mem.first_ctx, mem.ctx_next, mem.ctx_right
        ctx_total, ctx_true = mem.ctx_total, mem.ctx_true
        best = 0.0
        chosen: list[int] = []
        for lid in self.left_matches:
            lmask = left_masks[lid]
            if lmask & left != lmask:
                continue
            cid = first_ctx[lid]
            while cid >= 0:
                total = ctx_total[cid]
                w = ctx_true[cid] / total if total > 0 else 0.0
                if w > best:
                    best, chosen = w, [cid]
                elif w == best:
                    chosen.append(cid)
                cid = ctx_next[cid]
        predicted = 0
        for cid in chosen:
            predicted |= right_masks[ctx_right[cid]]
        self.predicted = predicted

    def _raw(self, x: dict[str, float], commit: bool) -> float:
        v = self._value(x)
        if v is None:
            return 0.0
        facts = self._facts_of(self._level(v))
        surprised = bool(facts & ~self.predicted)
        active, novelty = self._step(facts, commit)
        return (1.0 - active + novelty) / 2.0 if surprised else 0.0

    def _relearn(self) -> None:
        """Forget the contexts (their levels no longer mean the same values) and widen the range."""
        pad = self.relearn_on_growth / 2 * (self.hi - self.lo)
        self.lo -= pad
        self.hi += pad
        self.memory = _Memory(self.max_contexts)
        self.left = 0
        self.left_matches = array("i")
        self.predicted = 0

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
            mask = self._facts_of(level)
            if mask and not mask & ~self.predicted:
                levels.append(level)
        if levels and step > 0:
            low = self.lo + min(levels) * step
            high = self.lo + (max(levels) + 1) * step
        else:
            low, high = (self.lo, self.hi) if self.n else (v, v)
        return share_contributions([(self.feature, v, (low + high) / 2, low, high, 1.0)])

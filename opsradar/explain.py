"""Detector features in words a reader of Slack understands.

The detectors work on features such as ``duration_s`` or ``log_latency_ms`` (the log of a
latency, because latencies are skewed). People read "duration 41 min (usual 4.8–6.9 min)".
This module holds what each feature means (:data:`FEATURES`) and how to show its value, and
picks which parts of an explanation are worth showing: the features that left their normal
range, strongest first.

>>> from opsradar.models import Contribution
>>> c = Contribution(feature="duration_s", value=2460.0, expected=330.0, low=290.0, high=410.0, contribution=0.9)
>>> describe(c)
'duration 41 min (usual 4.8–6.8 min)'
>>> describe(Contribution(feature="log_latency_ms", value=7.09, expected=4.39, low=4.2, high=4.6, contribution=1.0))
'latency 1,199 ms (usual 66–98 ms)'
>>> describe(Contribution(feature="failed", value=0.0, expected=0.02, low=-2.0, high=3.0, contribution=0.0))
'failed tests 0 (usual 0–3)'
>>> describe(Contribution(feature="new_template", value=1.0, expected=0.0, low=0.0, high=0.0, contribution=1.0))
'never-seen log template'
>>> describe(Contribution(feature="p95", value=3.5, expected=1.0, low=0.5, high=1.5, contribution=1.0))
'p95 3.5 (usual 0.5–1.5)'
>>> describe(Contribution(feature="duration_trend", value=0.02, expected=0.0, low=0.0, high=0.0, contribution=1.0))
'duration of these log lines rising 5 %/h (at least doubling in a day: a slow leak?)'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opsradar.models import Contribution

__all__ = ["FEATURES", "FeatureText", "columns", "describe", "format_value", "label", "notable", "outside"]


@dataclass(frozen=True)
class FeatureText:
    """How to show one feature: its label, its unit and the transform back to that unit.

    ``unit`` is one of ``""`` (a plain number), ``"s"`` and ``"h"`` (durations, shown in the
    largest readable unit), ``"ms"``, ``"/min"``, ``"/h"``, ``"%"`` (a 0..1 share) or ``"flag"``
    (0/1: the label alone says it, e.g. "never-seen log template").
    """

    label: str
    unit: str = ""
    to_unit: Callable[[float], float] | None = None
    non_negative: bool = True
    #: shown instead of "usual low–high" where the usual range says nothing (a trend beyond an allowance)
    instead_of_range: str = ""


def _expm1(v: float) -> float:
    return math.expm1(min(v, 700.0))


#: The slope of ln(duration) per hour that doubles a duration in a day: ``duration_trend`` counts
#: only what a duration climbs beyond it (``opsradar.detectors.features.LEAK_SLOPE``).
DOUBLING_A_DAY = math.log(2.0) / 24.0


def _hourly_growth(excess: float) -> float:
    """``duration_trend`` (ln-slope per hour beyond a doubling a day) as growth per hour, 0..1 = 0..100 %."""
    return math.expm1(min(excess, 50.0) + DOUBLING_A_DAY)


#: What each detector feature means. A feature not listed here is shown by its own name.
FEATURES: dict[str, FeatureText] = {
    # builds, deploys, test runs
    "duration_s": FeatureText("duration", "s"),
    "queue_s": FeatureText("queue time", "s"),
    "failed": FeatureText("failed tests"),
    "fail_rate": FeatureText("recent failure share", "%"),
    # commits
    "commit_size": FeatureText("lines changed"),
    "files_changed": FeatureText("files changed"),
    "hours_to_release": FeatureText("time before the release", "h"),
    "off_hours": FeatureText("outside working hours", "flag"),
    # issues
    "reopen_count": FeatureText("reopens"),
    "cycle_time_h": FeatureText("cycle time", "h"),
    "lead_time_h": FeatureText("lead time", "h"),
    # access logs
    "request_rate": FeatureText("requests", "/min"),
    "path_rate": FeatureText("requests to the endpoint", "/min"),
    "log_latency_ms": FeatureText("latency", "ms", _expm1),
    # application logs (error_rate is 5xx responses on access streams, error lines on log streams)
    "error_rate": FeatureText("errors", "/min"),
    "log_rate": FeatureText("log lines", "/min"),
    "template_rate": FeatureText("lines of this template", "/min"),
    "new_template": FeatureText("never-seen log template", "flag"),
    "duration_trend": FeatureText("duration of these log lines rising", "%/h", _hourly_growth,
                                  instead_of_range="at least doubling in a day: a slow leak?"),
    # audit logs
    "user_rate": FeatureText("accesses by the user", "/h"),
    "resource_rate": FeatureText("accesses to the resource", "/h"),
    "pair_rate": FeatureText("accesses by the user to the resource", "/h"),
    "pair_rarity": FeatureText("rarity of this user on this resource", "%"),
    "new_pair": FeatureText("first access of this user to this resource", "flag"),
    # metric series
    "value": FeatureText("value", non_negative=False),
}


def label(feature: str) -> str:
    """The feature's label (its own name when unknown)."""
    text = FEATURES.get(feature)
    return text.label if text else feature


def _number(v: float) -> str:
    a = abs(v)
    if a >= 9.95:
        return f"{v:,.0f}"
    return f"{v:.2g}" if a >= 0.01 or a == 0 else f"{v:.1e}"


def _duration_unit(seconds: float) -> tuple[float, str]:
    """The readable unit for a duration of about ``seconds``: s, min, h or days."""
    a = abs(seconds)
    if a < 120:
        return 1.0, "s"
    if a < 2 * 3600:
        return 60.0, "min"
    if a < 2 * 86400:
        return 3600.0, "h"
    return 86400.0, "days"


def _unit_value(text: FeatureText, v: float) -> float:
    v = text.to_unit(v) if text.to_unit else v
    return max(0.0, v) if text.non_negative else v


def _numbers(feature: str, values: Sequence[float]) -> tuple[list[str], str]:
    """Several values of one feature as numbers in one common unit, and that unit's suffix
    (``" min"``, ``" ms"``, ``"/min"``…), so a range reads "4.8–6.8 min"."""
    text = FEATURES.get(feature) or FeatureText(feature, non_negative=False)
    vs = [_unit_value(text, v) for v in values]
    if text.unit in ("s", "h"):
        scale = 3600.0 if text.unit == "h" else 1.0
        div, unit = _duration_unit(scale * max((abs(v) for v in vs), default=0.0))
        return [_number(scale * v / div) for v in vs], f" {unit}"
    if text.unit == "%":
        return [_number(100 * v) for v in vs], " %"
    if text.unit == "%/h":
        return [_number(100 * v) for v in vs], " %/h"
    if text.unit == "ms":
        return [_number(v) for v in vs], " ms"
    if text.unit in ("/min", "/h"):
        return [_number(v) for v in vs], text.unit
    return [_number(v) for v in vs], ""


def format_value(feature: str, value: float) -> str:
    """``value`` of ``feature`` with its unit, e.g. ``"41 min"``, ``"1,199 ms"``, ``"12/min"``.

    >>> format_value("cycle_time_h", 93.5), format_value("request_rate", 12.0), format_value("x", -0.5)
    ('3.9 days', '12/min', '-0.5')
    """
    (number,), unit = _numbers(feature, [value])
    return number + unit


def columns(feature: str, value: float, expected: float, low: float, high: float) -> tuple[str, str, str, str]:
    """A report row in words: (label, value, expected, usual range), all in one unit.

    >>> columns("log_latency_ms", 7.09, 4.39, 4.2, 4.6)
    ('latency', '1,199 ms', '80 ms', '66–98 ms')
    """
    text = FEATURES.get(feature)
    if text is not None and text.unit == "flag":
        def flag(v: float) -> str:
            return "yes" if v >= 0.5 else "no"

        return text.label, flag(value), flag(expected), f"{low:.2g}–{high:.2g}"
    (v, e, lo, hi), unit = _numbers(feature, [value, expected, low, high])
    return label(feature), v + unit, e + unit, (f"{lo}–{hi}" if lo != hi else lo) + unit


def describe(c: Contribution) -> str:
    """One contribution in words: the value, then the usual range, in the same unit."""
    text = FEATURES.get(c.feature)
    if text is not None and text.unit == "flag":
        return text.label if c.value >= 0.5 else f"not {text.label}"
    if text is not None and text.instead_of_range:
        (value,), unit = _numbers(c.feature, [c.value])
        return f"{text.label} {value}{unit} ({text.instead_of_range})"
    (value, low, high), unit = _numbers(c.feature, [c.value, c.low, c.high])
    usual = f"{low}–{high}" if low != high else low
    return f"{label(c.feature)} {value}{unit} (usual {usual}{unit})"


def outside(c: Contribution) -> bool:
    """Whether the value left its normal range."""
    return c.value < c.low or c.value > c.high


def notable(explanation: Sequence[Contribution], limit: int = 2) -> list[Contribution]:
    """The contributions worth showing: those outside their range, strongest first (at most
    ``limit``); when none left its range (a combination of features scored), the strongest one."""
    ranked = sorted(explanation, key=lambda c: -c.contribution)
    out = [c for c in ranked if outside(c)]
    weighed = [c for c in out if c.contribution > 0]  # a fast build is outside its range, yet no evidence
    return (weighed or out)[:limit] or ranked[:1]

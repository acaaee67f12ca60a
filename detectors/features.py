"""Feature extractors: events of one stream → ``dict[str, float]``, with the windowed state they need.

An event is routed to a **stream** (see :func:`stream_type` and
:meth:`~opsradar.detectors.engine.DetectionEngine.stream_key`); each stream has one extractor,
whose state (decayed rates, ratios, counts, last release time…) is part of the stream's checkpoint.
``extract(event)`` is *pure*; ``learn(event)`` updates the state after the event was scored, so a
value is always judged against what came before it.

Rates and flags made of event counts are listed in the extractor's :meth:`~FeatureExtractor.counts`
(feature → events per unit), so that detectors judge them against Poisson noise: on a quiet
stream one 5xx or one never-seen template is not an anomaly, a burst of them is. Ratios such as
"share of 5xx" are deliberately not features: over a window that holds three requests, one error
is a third of them.

Features whose name starts with ``_`` are context, not evidence: ``_hour`` (0..23 UTC) and
``_weekend`` (0/1) let detectors keep a seasonal baseline; they never appear in explanations.

What collectors should send (``event.values`` unless marked *label*); anything missing is skipped:

============  ===========================================================================
kind          names expected
============  ===========================================================================
``build``     ``duration_s``, ``queue_s``; *label* ``result`` (``SUCCESS``, ``FAILURE``, …)
``deploy``    ``duration_s``; *label* ``result``
``test_run``  ``failed``, ``total`` (or ``passed`` + ``failed`` + ``skipped``), ``duration_s``
``commit``    ``lines_added``, ``lines_deleted``, ``files_changed``; optional
              ``hours_to_release`` (when the collector knows the next release)
``release``   none (a git tag: the timestamp is what counts); updates its repo's commit stream
``issue``     ``reopen_count``, ``cycle_time_h`` (created → resolved), ``lead_time_h``
``access``    ``status`` (HTTP code), ``duration_ms``; optional ``bytes``
``log``       *label* ``template_id`` (from the log-template miner), *label* ``level``
``audit``     *label* ``user``, *label* ``resource`` (falls back to ``event.entity``)
``metric``    ``value`` (one univariate metric per stream)
============  ===========================================================================

Features produced, per kind:

- build / deploy: ``duration_s``, ``queue_s``, ``failed`` (0/1), ``fail_rate`` (decayed share
  of failed runs of the job);
- test_run: ``failed``, ``duration_s``; context ``_failure_ratio``;
- commit: ``commit_size`` (lines added + deleted), ``files_changed`` (or the collector's
  ``files``), ``hours_to_release`` (when sent), ``off_hours`` (0/1, outside 08–19 UTC or on a
  weekend); context ``_hours_since_release``;
- issue: ``reopen_count``, ``cycle_time_h``, ``lead_time_h``;
- access: ``request_rate`` (requests per minute, decayed over 5 minutes), ``path_rate`` (the
  same for this event's endpoint, *label* ``path``: a flood on one endpoint), ``error_rate`` (5xx
  per minute over the same window), ``log_latency_ms`` (``ln(1 + latency in ms)``: latencies are
  heavy-tailed, and one slow request among few is not an outage);
- log: ``log_rate`` (lines per minute of the service), ``template_rate`` (lines per minute of
  this template), ``new_template`` (1 the first time a template is seen), ``error_rate``
  (ERROR/FATAL/CRITICAL lines per minute), ``duration_trend`` (for a template whose lines report
  ``duration_ms``: how much faster than a doubling a day that duration climbs, see :class:`Trend`);
- audit: ``user_rate``, ``resource_rate``, ``pair_rate`` (accesses per hour by this user, to this
  resource, by this user to this resource), ``pair_rarity`` (1 / (1 + times this user touched
  this resource)), ``new_pair`` (0/1);
- metric: ``value``.

>>> from datetime import datetime, timezone
>>> from opsradar.models import Event
>>> ts = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)
>>> ex = extractor_for("access")
>>> e = Event.new(source="es", native_id="r1", kind="access", ts=ts, entity="service:shop",
...               values={"status": 503.0, "duration_ms": 120.0})
>>> x = ex.extract(e); ex.learn(e)
>>> x["error_rate"], round(x["log_latency_ms"], 3), x["_hour"]
(0.2, 4.796, 9.0)
>>> ex.counts()["error_rate"]  # events per unit: a per-minute rate over 5 minutes
5.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar, TypeVar

from opsradar.explain import DOUBLING_A_DAY
from opsradar.models import Event

__all__ = [
    "EXTRACTORS",
    "AccessFeatures",
    "AuditFeatures",
    "BuildFeatures",
    "CommitFeatures",
    "DecayedCount",
    "FeatureExtractor",
    "IssueFeatures",
    "LogFeatures",
    "MetricFeatures",
    "TestRunFeatures",
    "extractor_for",
    "stream_type",
]

_FAILED_RESULTS = frozenset({"FAILURE", "FAILED", "UNSTABLE", "ABORTED", "ERROR"})
_ERROR_LEVELS = frozenset({"ERROR", "FATAL", "CRITICAL", "SEVERE", "ERR", "CRIT", "EMERG", "ALERT"})


def _seconds(ts: datetime) -> float:
    return ts.timestamp()


_T = TypeVar("_T")


def _context(ts: datetime) -> dict[str, float]:
    return {"_hour": float(ts.hour), "_weekend": 1.0 if ts.weekday() >= 5 else 0.0}


class DecayedCount:
    """A count that decays exponentially with time constant ``tau`` seconds: a windowed rate.

    ``rate(now)`` is events per ``tau`` seconds (so per minute with ``tau=60``).

    >>> c = DecayedCount(tau=60.0)
    >>> for t in range(0, 600, 6):
    ...     c.add(float(t))
    >>> 9.0 < c.rate(600.0) < 11.0
    True
    """

    __slots__ = ("t", "tau", "value")

    def __init__(self, tau: float) -> None:
        self.tau = tau
        self.value = 0.0
        self.t = 0.0

    def rate(self, now: float) -> float:
        if now <= self.t:
            return self.value
        return self.value * math.exp(-(now - self.t) / self.tau)

    def add(self, now: float, weight: float = 1.0) -> None:
        self.value = self.rate(now) + weight
        self.t = max(self.t, now)

    def __getstate__(self) -> tuple[float, float, float]:
        return (self.tau, self.value, self.t)

    def __setstate__(self, state: tuple[float, float, float]) -> None:
        self.tau, self.value, self.t = state


#: A duration climbing slower than this (ln units per hour: doubling within a day) is no slow leak.
LEAK_SLOPE = DOUBLING_A_DAY


class Trend:
    """The slope of a value over time, by exponentially weighted least squares (half-weight after
    ``half_life_s`` seconds), safe under irregular sampling: a point's weight depends on its age,
    not on how many points came since. ``slope(now, value)`` is per hour, with the point at ``now``
    included and nothing stored; None until ``min_weight`` points over at least ``min_span_s``.

    >>> tr = Trend(half_life_s=3600.0)
    >>> for i in range(40):  # a value that climbs 2 per hour, sampled every 7.5 minutes
    ...     tr.add(i * 450.0, 10.0 + 2.0 * i / 8)
    >>> round(tr.slope(40 * 450.0, 20.0), 2)
    2.0
    """

    __slots__ = ("half_life_s", "last", "st", "stt", "stv", "sv", "sw")

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self.last = 0.0
        # weighted sums, with times in hours relative to ``last`` (so the numbers stay small)
        self.sw = self.st = self.stt = self.sv = self.stv = 0.0

    def _shifted(self, now: float) -> tuple[float, float, float, float, float]:
        dt = max(0.0, now - self.last) / 3600.0
        d = 0.5 ** (dt * 3600.0 / self.half_life_s)
        sw, st, stt, sv, stv = self.sw, self.st, self.stt, self.sv, self.stv
        # move the origin to ``now`` (t → t − dt), then age every weight by ``d``
        return (d * sw, d * (st - dt * sw), d * (stt - 2 * dt * st + dt * dt * sw), d * sv, d * (stv - dt * sv))

    def add(self, now: float, value: float) -> None:
        sw, st, stt, sv, stv = self._shifted(now)
        self.sw, self.st, self.stt, self.sv, self.stv = sw + 1.0, st, stt, sv + value, stv
        self.last = max(self.last, now)

    def slope(self, now: float, value: float, *, min_weight: float = 5.0, min_span_s: float = 900.0) -> float | None:
        sw, st, stt, sv, stv = self._shifted(now)
        sw, sv = sw + 1.0, sv + value
        if sw < min_weight:
            return None
        mt = st / sw
        var = stt / sw - mt * mt
        if var < (min_span_s / 3600.0) ** 2 / 4.0:
            return None
        return (stv / sw - mt * (sv / sw)) / var

    def __getstate__(self) -> tuple[float, ...]:
        return (self.half_life_s, self.last, self.sw, self.st, self.stt, self.sv, self.stv)

    def __setstate__(self, state: tuple[float, ...]) -> None:
        self.half_life_s, self.last, self.sw, self.st, self.stt, self.sv, self.stv = state


class FeatureExtractor:
    """Turns the events of one stream into features; ``extract`` is pure, ``learn`` updates."""

    #: The stream type this extractor serves (see :func:`stream_type`).
    stream_type: ClassVar[str] = "generic"

    def extract(self, event: Event) -> dict[str, float]:
        """The features of ``event`` given the state so far. Changes nothing."""
        x = _context(event.ts)
        x.update(event.values)
        return x

    def learn(self, event: Event) -> None:
        """Update the windowed state with ``event`` (after it was scored)."""
        return None

    def counts(self) -> dict[str, float]:
        """Features made of event counts → how many events one unit of the feature stands for."""
        return {}

    #: Features where only a value *above* the usual is a problem (a slow build, a burst of 5xx);
    #: below it (a fast build, no errors) is no evidence. The others are judged both ways.
    upper: ClassVar[frozenset[str]] = frozenset()


class MetricFeatures(FeatureExtractor):
    """A univariate metric: the ``value`` (or the only value) of the event."""

    stream_type: ClassVar[str] = "metric"

    def extract(self, event: Event) -> dict[str, float]:
        v = event.values.get("value")
        if v is None and len(event.values) == 1:
            v = next(iter(event.values.values()))
        return {} if v is None else {"value": float(v)}


class BuildFeatures(FeatureExtractor):
    """Builds and deploys of one job: duration, queue time, failure and its decayed rate.

    The duration of a failed run is context (``_duration_s``), not evidence: a run that fails
    stops early, and its being short says nothing the failure does not.
    """

    stream_type: ClassVar[str] = "build"
    upper: ClassVar[frozenset[str]] = frozenset({"duration_s", "queue_s", "failed", "fail_rate"})

    def __init__(self) -> None:
        self.fail_rate = 0.0
        self.n = 0

    def counts(self) -> dict[str, float]:
        return {"failed": 1.0, "fail_rate": 20.0}  # the decayed rate spans ~20 runs (alpha 0.05)

    def extract(self, event: Event) -> dict[str, float]:
        x = _context(event.ts)
        vals = event.values
        result = event.labels.get("result")
        failed = 1.0 if result is not None and result.upper() in _FAILED_RESULTS else 0.0
        if "duration_s" in vals:
            x["_duration_s" if failed else "duration_s"] = float(vals["duration_s"])
        if "queue_s" in vals:
            x["queue_s"] = float(vals["queue_s"])
        if result is not None:
            x["failed"] = failed
            x["fail_rate"] = self._next_rate(failed)
        return x

    def _next_rate(self, failed: float) -> float:
        alpha = max(0.05, 1.0 / (self.n + 1))
        return self.fail_rate + alpha * (failed - self.fail_rate)

    def learn(self, event: Event) -> None:
        result = event.labels.get("result")
        if result is not None:
            self.fail_rate = self._next_rate(1.0 if result.upper() in _FAILED_RESULTS else 0.0)
            self.n += 1


class TestRunFeatures(FeatureExtractor):
    """Test runs of one job: failure ratio, failures, duration."""

    stream_type: ClassVar[str] = "test_run"
    upper: ClassVar[frozenset[str]] = frozenset({"failed"})  # a much shorter run is still suspect
    __test__ = False  # not a pytest class

    def counts(self) -> dict[str, float]:
        return {"failed": 1.0}

    def extract(self, event: Event) -> dict[str, float]:
        x = _context(event.ts)
        vals = event.values
        failed = vals.get("failed")
        total = vals.get("total")
        if total is None and failed is not None:
            total = failed + vals.get("passed", 0.0) + vals.get("skipped", 0.0)
        if failed is not None:
            x["failed"] = float(failed)
            # context: one failed test of a small suite is a large share, and no anomaly
            x["_failure_ratio"] = float(failed) / total if total else 0.0
        if "duration_s" in vals:
            x["duration_s"] = float(vals["duration_s"])
        return x


class CommitFeatures(FeatureExtractor):
    """Commits of one repository: size, and how late they are relative to releases.

    Release events of the same repository are routed here too (:meth:`learn` records their time).
    """

    stream_type: ClassVar[str] = "commit"
    upper: ClassVar[frozenset[str]] = frozenset({"commit_size", "files_changed", "off_hours"})

    def __init__(self, work_hours: tuple[int, int] = (8, 19)) -> None:
        self.work_hours = work_hours
        self.last_release: float | None = None

    def extract(self, event: Event) -> dict[str, float]:
        if event.kind == "release":
            return {}
        x = _context(event.ts)
        vals = event.values
        if "lines_added" in vals or "lines_deleted" in vals:
            x["commit_size"] = float(vals.get("lines_added", 0.0) + vals.get("lines_deleted", 0.0))
        files = vals.get("files_changed", vals.get("files"))  # the git collector says "files"
        if files is not None:
            x["files_changed"] = float(files)
        if "hours_to_release" in vals:
            x["hours_to_release"] = float(vals["hours_to_release"])
        if self.last_release is not None:
            # context only: after a weekend or a quiet week every commit is "long after" a release
            x["_hours_since_release"] = max(0.0, (_seconds(event.ts) - self.last_release) / 3600.0)
        start, end = self.work_hours
        x["off_hours"] = 1.0 if (event.ts.weekday() >= 5 or not start <= event.ts.hour < end) else 0.0
        return x

    def learn(self, event: Event) -> None:
        if event.kind == "release":
            t = _seconds(event.ts)
            self.last_release = t if self.last_release is None else max(self.last_release, t)


class IssueFeatures(FeatureExtractor):
    """Issues of one project: reopen count, cycle time, lead time."""

    stream_type: ClassVar[str] = "issue"
    upper: ClassVar[frozenset[str]] = frozenset({"reopen_count", "cycle_time_h", "lead_time_h"})

    def extract(self, event: Event) -> dict[str, float]:
        x = _context(event.ts)
        for name in ("reopen_count", "cycle_time_h", "lead_time_h"):
            if name in event.values:
                x[name] = float(event.values[name])
        return x


class AccessFeatures(FeatureExtractor):
    """HTTP access lines of one service: request rate (whole service and this endpoint), 5xx rate, latency.

    At most ``max_paths`` endpoint rates are kept; beyond that the least active is forgotten.
    """

    stream_type: ClassVar[str] = "access"
    # a traffic drop (request_rate) counts both ways
    upper: ClassVar[frozenset[str]] = frozenset({"error_rate", "path_rate", "log_latency_ms"})

    def __init__(self, window_s: float = 300.0, max_paths: int = 200) -> None:
        self.requests = DecayedCount(window_s)
        self.errors = DecayedCount(window_s)
        self.paths: dict[str, DecayedCount] = {}
        self.window_s = window_s
        self.max_paths = max_paths

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("paths", {})  # a checkpoint from before endpoint rates
        self.__dict__.setdefault("max_paths", 200)

    def counts(self) -> dict[str, float]:
        per_unit = self.window_s / 60.0
        return {"request_rate": per_unit, "path_rate": per_unit, "error_rate": per_unit}

    @staticmethod
    def _is_error(event: Event) -> float:
        status = event.values.get("status")
        return 1.0 if status is not None and 500 <= status < 600 else 0.0

    def extract(self, event: Event) -> dict[str, float]:
        now = _seconds(event.ts)
        x = _context(event.ts)
        per_min = 60.0 / self.window_s
        x["request_rate"] = (self.requests.rate(now) + 1.0) * per_min
        x["error_rate"] = (self.errors.rate(now) + self._is_error(event)) * per_min
        path = event.labels.get("path")
        if path is not None:
            counter = self.paths.get(path)
            x["path_rate"] = ((counter.rate(now) if counter is not None else 0.0) + 1.0) * per_min
        latency = event.values.get("duration_ms")
        if latency is not None:
            x["log_latency_ms"] = math.log1p(max(0.0, float(latency)))
        return x

    def learn(self, event: Event) -> None:
        now = _seconds(event.ts)
        self.requests.add(now)
        if self._is_error(event):
            self.errors.add(now)
        path = event.labels.get("path")
        if path is not None:
            _bump_bounded(self.paths, path, now, self.window_s, self.max_paths)


def _recent(table: dict[str, _T], key: str, max_keys: int, make: Callable[[], _T]) -> _T:
    """``table[key]`` (made when missing), moved to the end as the most recently active; past
    ``max_keys`` keys the least recently active is forgotten (dicts keep insertion order)."""
    item = table.pop(key, None)
    if item is None:
        if len(table) >= max_keys:
            del table[next(iter(table))]
        item = make()
    table[key] = item
    return item


def _log_ms(duration: float) -> float:
    """A duration in ms on the scale its trend is fitted on: ln(1 + ms)."""
    return math.log1p(max(0.0, float(duration)))


def _bump_bounded(table: dict[str, DecayedCount], key: str, now: float, window_s: float, max_keys: int) -> None:
    """Count one event of ``key``; past ``max_keys`` keys the quietest is forgotten."""
    counter = table.get(key)
    if counter is None:
        if len(table) >= max_keys:
            quietest = min(table, key=lambda k: table[k].rate(now))
            del table[quietest]
        counter = table[key] = DecayedCount(window_s)
    counter.add(now)


class LogFeatures(FeatureExtractor):
    """Log lines of one service: volume per template, never-seen templates, error share.

    The template id comes from ``labels["template_id"]`` (set by the log-template miner). At most
    ``max_templates`` template rates are kept; beyond that the least active is forgotten.
    """

    stream_type: ClassVar[str] = "log"
    # logs going quiet (log_rate) count; a duration that falls is no slow leak
    upper: ClassVar[frozenset[str]] = frozenset({"error_rate", "new_template", "duration_trend"})

    def __init__(self, window_s: float = 300.0, max_templates: int = 200, trend_half_life_s: float = 21600.0) -> None:
        self.window_s = window_s
        self.max_templates = max_templates
        self.total = DecayedCount(window_s)
        self.errors = DecayedCount(window_s)
        self.templates: dict[str, DecayedCount] = {}
        self.trend_half_life_s = trend_half_life_s
        #: per template that reports a duration (GC pauses, slow-query logs…): its log-duration trend
        self.trends: dict[str, Trend] = {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("trend_half_life_s", 21600.0)  # a checkpoint from before duration trends
        self.__dict__.setdefault("trends", {})

    @staticmethod
    def _is_error(event: Event) -> float:
        return 1.0 if event.labels.get("level", "").upper() in _ERROR_LEVELS else 0.0

    def counts(self) -> dict[str, float]:
        per_unit = self.window_s / 60.0
        return {"log_rate": per_unit, "template_rate": per_unit, "error_rate": per_unit, "new_template": 1.0}

    def extract(self, event: Event) -> dict[str, float]:
        now = _seconds(event.ts)
        x = _context(event.ts)
        per_min = 60.0 / self.window_s
        x["log_rate"] = (self.total.rate(now) + 1.0) * per_min
        x["error_rate"] = (self.errors.rate(now) + self._is_error(event)) * per_min
        tid = event.labels.get("template_id")
        if tid is not None:
            counter = self.templates.get(tid)
            mine = (counter.rate(now) if counter is not None else 0.0) + 1.0
            x["template_rate"] = mine * per_min
            x["new_template"] = 0.0 if counter is not None else 1.0
            duration = event.values.get("duration_ms")
            trend = self.trends.get(tid)
            if duration is not None and trend is not None:
                # a slow leak: the template's duration (a GC pause) climbing faster than it would to
                # double within a day (ln(1 + ms) per hour beyond LEAK_SLOPE; slower drifts are no leak)
                # only once the fit spans a half-life (6 h by default: its slope is too noisy before)
                slope = trend.slope(now, _log_ms(duration), min_weight=8.0, min_span_s=self.trend_half_life_s)
                if slope is not None:
                    x["duration_trend"] = max(0.0, slope - LEAK_SLOPE)
        return x

    def learn(self, event: Event) -> None:
        now = _seconds(event.ts)
        self.total.add(now)
        if self._is_error(event):
            self.errors.add(now)
        tid = event.labels.get("template_id")
        if tid is not None:
            _bump_bounded(self.templates, tid, now, self.window_s, self.max_templates)
            duration = event.values.get("duration_ms")
            if duration is not None:
                trend = _recent(self.trends, tid, self.max_templates, lambda: Trend(self.trend_half_life_s))
                trend.add(now, _log_ms(duration))


class AuditFeatures(FeatureExtractor):
    """User/resource accesses: per-user, per-resource and per-pair rates and rare user–resource pairs.

    One stream holds the whole audit log of a source (see
    :meth:`~opsradar.detectors.engine.DetectionEngine.stream_key`), so a user never seen before is
    judged against everyone's habits instead of starting a cold stream of their own.

    Counts are bounded: at most ``max_keys`` users, resources and pairs each are kept (the
    least recently active are forgotten first), so a stream stays small under a scan.
    """

    stream_type: ClassVar[str] = "audit"
    # a burst (high rate) and a dormant user, rarely touched resource or rare pair (low rate) are
    # both suspicious; only rarity and newness count one way
    upper: ClassVar[frozenset[str]] = frozenset({"pair_rarity", "new_pair"})

    def __init__(self, window_s: float = 3600.0, max_keys: int = 256) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self.users: dict[str, DecayedCount] = {}
        self.resources: dict[str, DecayedCount] = {}
        self.pairs: dict[str, int] = {}
        self.pair_rates: dict[str, DecayedCount] = {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("pair_rates", {})  # a checkpoint from before pair rates

    def counts(self) -> dict[str, float]:
        # rates are counts in the window (Poisson-noisy); rarity and newness are not counts
        return {"user_rate": 1.0, "resource_rate": 1.0, "pair_rate": 1.0}

    @staticmethod
    def _who_what(event: Event) -> tuple[str, str]:
        user = event.labels.get("user") or (event.entity if event.entity_type == "user" else "?")
        resource = event.labels.get("resource") or event.entity
        return user, resource

    def extract(self, event: Event) -> dict[str, float]:
        now = _seconds(event.ts)
        user, resource = self._who_what(event)
        x = _context(event.ts)
        u = self.users.get(user)
        r = self.resources.get(resource)
        x["user_rate"] = (u.rate(now) if u is not None else 0.0) + 1.0
        x["resource_rate"] = (r.rate(now) if r is not None else 0.0) + 1.0
        pair = self.pair_rates.get(f"{user}\x00{resource}")
        x["pair_rate"] = (pair.rate(now) if pair is not None else 0.0) + 1.0
        seen = self.pairs.get(f"{user}\x00{resource}", 0)
        x["pair_rarity"] = 1.0 / (1.0 + seen)
        x["new_pair"] = 0.0 if seen else 1.0
        return x

    def _bump(self, table: dict[str, DecayedCount], key: str, now: float) -> None:
        _recent(table, key, self.max_keys, lambda: DecayedCount(self.window_s)).add(now)

    def learn(self, event: Event) -> None:
        now = _seconds(event.ts)
        user, resource = self._who_what(event)
        self._bump(self.users, user, now)
        self._bump(self.resources, resource, now)
        pair = f"{user}\x00{resource}"
        self._bump(self.pair_rates, pair, now)
        n = self.pairs.pop(pair, 0)
        if n == 0 and len(self.pairs) >= self.max_keys:
            del self.pairs[next(iter(self.pairs))]
        self.pairs[pair] = n + 1


#: Stream type → extractor class.
EXTRACTORS: dict[str, type[FeatureExtractor]] = {
    "build": BuildFeatures,
    "test_run": TestRunFeatures,
    "commit": CommitFeatures,
    "issue": IssueFeatures,
    "access": AccessFeatures,
    "log": LogFeatures,
    "audit": AuditFeatures,
    "metric": MetricFeatures,
}

_KIND_TO_TYPE = {
    "build": "build",
    "deploy": "build",
    "test_run": "test_run",
    "commit": "commit",
    "release": "commit",
    "issue": "issue",
    "access": "access",
    "log": "log",
    "audit": "audit",
    "metric": "metric",
}


def stream_type(kind: str) -> str | None:
    """The stream type of an event kind (None for kinds the detectors do not know).

    >>> stream_type("deploy"), stream_type("release"), stream_type("config")
    ('build', 'commit', None)
    """
    return _KIND_TO_TYPE.get(kind)


def extractor_for(kind_or_type: str) -> FeatureExtractor:
    """A fresh extractor for an event kind or stream type."""
    st = _KIND_TO_TYPE.get(kind_or_type, kind_or_type)
    cls = EXTRACTORS.get(st)
    if cls is None:
        raise KeyError(f"no feature extractor for {kind_or_type!r}; known: {', '.join(sorted(EXTRACTORS))}")
    return cls()

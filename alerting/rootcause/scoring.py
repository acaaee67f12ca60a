"""Rank the changes that may have caused an incident, and say why.

Every candidate change gets six factors, each a number in (0, 1] that multiplies the score. The
factors are independent pieces of evidence, so they combine like likelihood ratios (a product, as in
naive Bayes): a change that is unrelated, or came after the trouble started, cannot be rescued by
being large. ``score = time × graph × reach × risk × order × logs``, in [0, 1].

``time`` – proximity to the onset (the first symptom of the incident, see the builder)
    ``1 / (1 + Δ / τ)`` where Δ is how long before the onset the change reached production, and
    τ = 30 min: 1.0 at the onset, 0.5 half an hour before, 0.33 an hour before, 0.02 a day before.
    The tail is heavy on purpose (latent faults exist). A commit counts from the deploy that shipped
    it, when a deploy lists its sha in ``attrs.commits``. A change more than 2 min (clock skew)
    *after* the first anomaly cannot have caused it: 0.05. When the onset is the estimated start of a
    drift (:mod:`~opsradar.alerting.rootcause.onset`), Δ is the distance to it in either direction.
``graph`` – distance in the entity graph between the changed entity and the nearest affected one
    1.0 when both belong to the same service; ``0.5 ** k`` when their services are k dependency
    hops apart (0.5, 0.25, 0.125); entities without a service use their raw graph distance.
    Beyond 3 hops the change is *unrelated* and is not a candidate at all.
``reach`` – whether the change reached where the symptoms are
    Symptoms are anomalies of the incident that are not changes themselves: production ones (logs,
    access, metrics) and CI ones (builds, test runs). A deploy, release or config change reaches
    production; a commit reaches production once a deploy or release before the onset lists it in
    ``attrs.commits``; commits and config reach CI. 1.0 when the change reached a symptom's domain.
    0.5 when that is unknown: a commit that no deploy lists, while no deploy of its service says what
    it shipped. 0.2 when it is known not to have: a commit that the service's deploys do not list, a
    build (it is where CI symptoms show, not their cause; its commits are), a deploy for CI symptoms,
    a Jira change (it reaches nothing by itself). With no symptom at all (the change itself was
    flagged): 1.0.
``risk`` – how risky the change was, a prior: ``0.5 + 0.5 × r``
    r combines the risk signals as a noisy-OR, ``r = 1 − Π (1 − r_i)``: size
    ``lines / (lines + 200)`` (or ``files / (files + 10)``, the larger), late check-in 0.3
    (``labels.late``; without it, ``values.late_hours`` or ``values.hours_to_release`` ≤ 24 h),
    off-hours 0.2, first-time author 0.3, failed tests in its build 0.6 (from the build's
    ``test_run`` event; a commit takes them from the builds that list it), a failed or unstable
    build/deploy 0.4, a production change (deploy, release, config) 0.2, a high-priority issue 0.2,
    flagged by a detector or a rule (a huge commit) 0.3. A deploy also carries the signals of the
    commits it shipped, and a merge those of the branch it merges (git shows no diff for a merge).
    The floor of 0.5 keeps risk a tie-breaker between related changes: at most a factor 2, as much
    as one dependency hop.
``order`` – whether the anomalies of the change's own service start after it and not before
    1.0 when they start after it; 0.25 when that service was already anomalous before the change
    (the trouble predates it); 0.6 when that service shows no anomaly (no evidence either way, e.g.
    a dependency of the affected service).
``logs`` – optional: log templates that are new since the change, on its service
    1.0 when at least one template new in the incident window first appeared on the change's service
    after the change; 0.8 otherwise (including when there are no logs), so logs only ever help.

The numbers are round values chosen from what each factor means, not fitted to any data set.
:class:`ScoringParams` holds them, and the report records the ones it used.

>>> from datetime import datetime, timedelta, timezone
>>> from opsradar.config import EntityGraph
>>> from opsradar.models import Event
>>> graph = EntityGraph.model_validate({"services": {
...     "shop": {"repos": ["shop-svc"], "depends_on": ["pay"]}, "pay": {"repos": ["pay-svc"]},
...     "crm": {"repos": ["crm-svc"]}}})
>>> onset = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
>>> def commit(n, repo, minutes, lines):
...     return Event.new(source="git", native_id=n, kind="commit", entity=f"repo:{repo}",
...                      ts=onset - timedelta(minutes=minutes), values={"lines_added": lines})
>>> ranked = rank_changes([commit("a", "crm-svc", 5, 5000), commit("b", "shop-svc", 20, 3)],
...                       graph=graph, affected=["service:shop"], onset=onset)
>>> [(c.entity, c.rank) for c in ranked]
[('repo:shop-svc', 1)]
>>> ranked[0].factors["graph"], ranked[0].factors["time"]
(1.0, 0.6)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from opsradar.alerting.rootcause.model import Candidate
from opsradar.config import EntityGraph
from opsradar.models import Event

__all__ = [
    "CAUSE_KINDS",
    "CI_KINDS",
    "FACTORS",
    "Relatedness",
    "ScoringParams",
    "change_risk",
    "describe_change",
    "merged_commits",
    "rank_changes",
    "with_test_results",
]

#: The factors of every candidate's score, in the order they are shown.
FACTORS = ("time", "graph", "reach", "risk", "order", "logs")

_PRODUCTION_KINDS = frozenset({"deploy", "release", "config"})
_SHIP_KINDS = frozenset({"deploy", "release"})
#: Anomalies of these kinds are CI symptoms; the other non-change kinds are production symptoms.
CI_KINDS = frozenset({"build", "test_run", "test"})
#: Anomalies of these kinds describe a change itself (a risk signal of it), not a symptom.
CAUSE_KINDS = frozenset({"commit", "deploy", "release", "config", "issue"})
_CI_REACHING = frozenset({"commit", "config"})
_TRUE = frozenset({"true", "yes", "1"})
_FAILED_RESULTS = frozenset({"failure", "failed", "unstable", "aborted", "error"})
_HIGH_PRIORITY = frozenset({"highest", "high", "blocker", "critical", "p1", "p0"})


@dataclass(frozen=True)
class ScoringParams:
    """The constants of the score (see the module docstring for what each one means)."""

    time_scale: timedelta = timedelta(minutes=30)
    grace: timedelta = timedelta(minutes=2)
    after_onset: float = 0.05
    hop_decay: float = 0.5
    max_hops: int = 3
    risk_floor: float = 0.5
    size_half_lines: float = 200.0
    size_half_files: float = 10.0
    risk_late: float = 0.3
    late_window_h: float = 24.0  # a commit this close before a release is late (the git freeze window)
    risk_off_hours: float = 0.2
    risk_first_time_author: float = 0.3
    risk_failed_tests: float = 0.6
    risk_failed_result: float = 0.4
    risk_production: float = 0.2
    risk_high_priority: float = 0.2
    risk_anomalous: float = 0.3
    reach_unknown: float = 0.5
    reach_not: float = 0.2
    order_after: float = 1.0
    order_unknown: float = 0.6
    order_before: float = 0.25
    logs_new: float = 1.0
    logs_none: float = 0.8

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.total_seconds() if isinstance(v, timedelta) else v) for k, v in asdict(self).items()}


# ------------------------------------------------------------------------------------ helpers


def _flag(event: Event, key: str) -> bool:
    return event.labels.get(key, "").strip().lower() in _TRUE or event.values.get(key, 0.0) > 0


def _sha(event: Event) -> str | None:
    for key in ("sha", "hexsha", "commit"):
        v = event.labels.get(key) or event.attrs.get(key)
        if isinstance(v, str) and v:
            return v.lower()
    return None


def _shipped_shas(event: Event) -> list[str]:
    """The commits a build or deploy carried: ``attrs.commits`` (shas, or dicts with ``sha``/``id``)
    and the revision it built (``commit_sha`` / ``revision`` in labels or attrs)."""
    raw = event.attrs.get("commits")
    out = []
    for item in raw if isinstance(raw, list) else []:
        sha = (item.get("sha") or item.get("id") or item.get("commitId")) if isinstance(item, dict) else item
        if isinstance(sha, str) and sha:
            out.append(sha.lower())
    for key in ("commit_sha", "revision", "sha"):
        v = event.labels.get(key) or event.attrs.get(key)
        if isinstance(v, str) and v and v.lower() not in out:
            out.append(v.lower())
    return out


def _same_sha(a: str, b: str) -> bool:
    n = min(len(a), len(b))
    return n >= 7 and a[:n] == b[:n]


def describe_change(event: Event) -> str:
    """A one-line human summary of a change event, from whatever fields its collector set.

    >>> from datetime import datetime, timezone
    >>> e = Event.new(source="jenkins", native_id="d#7", kind="deploy", entity="job:shop-deploy",
    ...               ts=datetime(2026, 1, 5, tzinfo=timezone.utc), labels={"result": "SUCCESS", "number": "7"})
    >>> describe_change(e)
    'deploy job:shop-deploy #7 (SUCCESS)'
    """
    labels, attrs = event.labels, event.attrs
    title = ""
    for key in ("title", "summary", "message", "subject", "name"):
        v = attrs.get(key) or labels.get(key)
        if isinstance(v, str) and v.strip():
            title = v.strip().splitlines()[0][:160]
            break
    if event.kind == "commit":
        sha = _sha(event)
        who = labels.get("author")
        head = f"commit {sha[:10]}" if sha else "commit"
        return " ".join(p for p in (head, f"by {who}" if who else "", f"on {event.entity}", f"— {title}" if title else "") if p)
    if event.kind in ("build", "deploy", "release"):
        number = _build_number(event)
        result = labels.get("result")
        s = f"{event.kind} {event.entity}" + (f" #{number}" if number else "")
        s += f" ({result})" if result else ""
        return s + (f" — {title}" if title and event.kind == "release" else "")
    if event.kind == "issue":
        issue_key = labels.get("key") or attrs.get("key")
        status = labels.get("status")
        return " ".join(p for p in ("issue", str(issue_key) if issue_key else "", title, f"→ {status}" if status else "") if p)
    return f"{event.kind} on {event.entity}" + (f" — {title}" if title else "")


def _parents(event: Event) -> list[str]:
    raw = event.attrs.get("parents")
    return [p.lower() for p in raw if isinstance(p, str)] if isinstance(raw, list) else []


def merged_commits(commits: Sequence[Event], *, limit: int = 500) -> dict[str, list[Event]]:
    """For each merge commit, the commits it brings in: ancestors of its other parents, not of its first.

    Git shows no diff for a merge, so its own size is 0; what it changes is its branch. Only commits
    in ``commits`` (with ``attrs.sha`` and ``attrs.parents``, as the git collector sets) are walked.

    >>> from datetime import datetime, timezone
    >>> ts = datetime(2026, 1, 5, tzinfo=timezone.utc)
    >>> def c(sha, *parents):
    ...     return Event.new(source="git", native_id=sha, kind="commit", entity="repo:x", ts=ts,
    ...                      attrs={"sha": sha * 8, "parents": [p * 8 for p in parents]})
    >>> history = [c("a"), c("b", "a"), c("f", "a"), c("g", "f"), c("m", "b", "g")]
    >>> sorted(e.attrs["sha"][0] for e in merged_commits(history)[history[-1].id])
    ['f', 'g']
    """
    by_sha = {s: e for e in commits if (s := _sha(e))}

    def ancestors(start: list[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(start)
        while todo and len(seen) < limit:
            sha = todo.pop()
            if sha in seen or sha not in by_sha:
                continue
            seen.add(sha)
            todo += _parents(by_sha[sha])
        return seen

    out: dict[str, list[Event]] = {}
    for e in commits:
        parents = _parents(e)
        if len(parents) < 2:
            continue
        branch = ancestors(parents[1:]) - ancestors(parents[:1])
        if branch:
            out[e.id] = sorted((by_sha[s] for s in branch), key=lambda x: (x.ts, x.id))
    return out


def _is_late(event: Event, p: ScoringParams) -> bool:
    """``labels.late`` when the collector decided; else hours to the next release within the window."""
    label = event.labels.get("late", "").strip().lower()
    if label in ("true", "false"):
        return label == "true"
    for key in ("late_hours", "hours_to_release"):  # the git collector: hours from the commit to the next tag
        if key in event.values:
            return 0.0 <= event.values[key] <= p.late_window_h
    return False


def _build_number(event: Event) -> str:
    raw = event.labels.get("number") or event.attrs.get("number") or event.values.get("build_number") or ""
    return str(int(raw)) if isinstance(raw, float) and raw.is_integer() else str(raw)


def with_test_results(changes: Iterable[Event], test_runs: Iterable[Event]) -> list[Event]:
    """Builds and deploys with ``values.failed_tests`` taken from their ``test_run`` events.

    A test run belongs to the build of the same job entity and build number (``values.build_number``,
    or ``labels.number``); its ``values.failed`` becomes the build's ``failed_tests``.

    >>> from datetime import datetime, timezone
    >>> ts = datetime(2026, 1, 5, tzinfo=timezone.utc)
    >>> b = Event.new(source="jenkins", native_id="j#4", kind="build", entity="job:j", ts=ts, values={"build_number": 4})
    >>> t = Event.new(source="jenkins", native_id="j#4/tests", kind="test_run", entity="job:j", ts=ts,
    ...               values={"build_number": 4, "failed": 35})
    >>> with_test_results([b], [t])[0].values["failed_tests"]
    35.0
    """
    failed: dict[tuple[str, str], float] = {}
    for t in test_runs:
        n = _build_number(t)
        if n and "failed" in t.values:
            failed[(t.entity, n)] = max(failed.get((t.entity, n), 0.0), float(t.values["failed"]))
    if not failed:  # nothing to attach (the common case): skip the per-change lookups
        return list(changes)
    out = []
    for e in changes:
        key = (e.entity, _build_number(e))
        if e.kind in ("build", "deploy") and key in failed and "failed_tests" not in e.values:
            e = e.model_copy(update={"values": {**e.values, "failed_tests": failed[key]}})
        out.append(e)
    return out


def change_risk(
    event: Event,
    shipped: Sequence[Event] = (),
    params: ScoringParams | None = None,
    *,
    built: Sequence[Event] = (),
    flagged: bool = False,
) -> tuple[float, list[str]]:
    """The risk r in [0, 1] of a change (noisy-OR of its signals) and the signals that fired.

    ``shipped`` are the commits a deploy or build carried; their signals count for it too.
    ``built``: the builds that built a commit; their failed tests and results count for it.
    ``flagged``: a detector found the change itself anomalous.

    >>> from datetime import datetime, timezone
    >>> e = Event.new(source="git", native_id="c", kind="commit", entity="repo:x", ts=datetime(2026, 1, 5, tzinfo=timezone.utc),
    ...               values={"lines_added": 150, "lines_deleted": 50}, labels={"first_time_author": "true"})
    >>> r, why = change_risk(e)
    >>> round(r, 2), why
    (0.65, ['200 lines changed', 'first-time author'])
    """
    p = params or ScoringParams()
    signals: list[tuple[float, str]] = []
    events = [event, *shipped]
    lines = sum(e.values.get("lines_added", 0.0) + e.values.get("lines_deleted", 0.0) for e in events)
    files = sum(e.values.get("files", e.values.get("files_changed", 0.0)) for e in events)
    size = max(lines / (lines + p.size_half_lines) if lines > 0 else 0.0, files / (files + p.size_half_files) if files > 0 else 0.0)
    if size > 0:
        signals.append((size, f"{lines:.0f} lines changed" if lines > 0 else f"{files:.0f} files changed"))
    if any(_is_late(e, p) for e in events):
        signals.append((p.risk_late, "late check-in"))
    if any(_flag(e, "off_hours") for e in events):
        signals.append((p.risk_off_hours, "off-hours"))
    if any(_flag(e, "first_time_author") for e in events):
        signals.append((p.risk_first_time_author, "first-time author"))
    failed_tests = event.values.get("failed_tests", 0.0)
    if failed_tests > 0:
        signals.append((p.risk_failed_tests, f"{failed_tests:.0f} failed test{'s' if failed_tests != 1 else ''}"))
    result = event.labels.get("result", "").lower()
    if result in _FAILED_RESULTS:
        signals.append((p.risk_failed_result, f"result {event.labels['result']}"))
    build_failed = max((b.values.get("failed_tests", 0.0) for b in built), default=0.0)
    if build_failed > 0:
        signals.append((p.risk_failed_tests, f"{build_failed:.0f} failed test{'s' if build_failed != 1 else ''} in its build"))
    elif any(b.labels.get("result", "").lower() in _FAILED_RESULTS for b in built):
        signals.append((p.risk_failed_result, "its build failed"))
    if event.kind in _PRODUCTION_KINDS:
        signals.append((p.risk_production, "production change"))
    if event.kind == "issue" and event.labels.get("priority", "").lower() in _HIGH_PRIORITY:
        signals.append((p.risk_high_priority, f"priority {event.labels['priority']}"))
    if flagged:
        signals.append((p.risk_anomalous, "flagged by a detector or rule"))
    r = 1.0 - math.prod(1.0 - min(max(v, 0.0), 1.0) for v, _ in signals)
    return r, [why for _, why in signals]


class Relatedness:
    """Graph relatedness of an entity to the affected set, cached: ``(graph factor, why)``; a factor
    of 0 is unrelated (more than ``max_hops`` away), and such a change is no candidate."""

    def __init__(self, graph: EntityGraph, affected: Iterable[str], params: ScoringParams) -> None:
        self.graph, self.params = graph, params
        self.affected = sorted(set(affected))
        self.affected_services = sorted({s for a in self.affected if (s := graph.service_of(a))})
        self._cache: dict[str, tuple[float, str]] = {}

    def __call__(self, entity: str) -> tuple[float, str]:
        if entity not in self._cache:
            self._cache[entity] = self._compute(entity)
        return self._cache[entity]

    def _compute(self, entity: str) -> tuple[float, str]:
        p, g = self.params, self.graph
        svc = g.service_of(entity)
        best, why = 0.0, "unrelated to the affected entities"
        if svc is not None and svc in self.affected_services:
            return 1.0, f"same service ({svc})"
        if svc is not None:
            for other in self.affected_services:
                k = g.distance(f"service:{svc}", f"service:{other}", limit=p.max_hops)
                if k is not None and p.hop_decay**k > best:
                    best, why = p.hop_decay**k, f"service {svc} is {k} hop{'s' if k > 1 else ''} from affected service {other}"
        for a in self.affected:
            d = 0 if a == entity else g.distance(entity, a, limit=p.max_hops)
            if d is not None and p.hop_decay**d > best:
                best, why = p.hop_decay**d, f"{d} hop{'s' if d != 1 else ''} from {a}"
        return best, why


def _fmt_delta(delta: timedelta) -> str:
    minutes = abs(delta.total_seconds()) / 60
    text = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return f"{text} {'before' if delta.total_seconds() >= 0 else 'after'} the onset"


def rank_changes(
    changes: Iterable[Event],
    *,
    graph: EntityGraph,
    affected: Iterable[str],
    onset: datetime,
    first_anomaly: datetime | None = None,
    anomalies: Iterable[Any] = (),
    new_templates: Iterable[tuple[str, datetime]] = (),
    flagged: Iterable[str] = (),
    exclude: Iterable[str] = (),
    params: ScoringParams | None = None,
    include_unrelated: bool = False,
) -> list[Candidate]:
    """Score and rank change events as root-cause candidates (best first, ranks from 1).

    ``affected``: entities of the incident (``service:x``, the anomalous streams' entities, …).
    ``onset``: when the trouble started: the first anomaly, or the estimated start of the drift that
    ended in the first anomaly (``first_anomaly``, see :mod:`~opsradar.alerting.rootcause.onset`);
    changes between the two count by their distance to the onset. ``anomalies``: the symptom anomalies,
    as objects with ``ts``, ``entity`` and ``kind`` or as ``(ts, entity[, kind])`` tuples (kind
    defaults to a production one), used for the ``order`` and ``reach`` factors.
    ``new_templates``: ``(entity, first_seen)`` of log templates new in the incident window.
    ``flagged``: ids of change events that a detector found anomalous themselves (a risk signal).
    ``exclude``: ids of events that are symptoms (an anomalous build): not candidates, but their
    links (the commits they built) still count.
    Changes that are not change kinds (``Event.is_change``) are ignored; unrelated changes are left
    out unless ``include_unrelated``.
    """
    p = params or ScoringParams()
    first = max(first_anomaly or onset, onset)
    drifting = first > onset
    events = [e for e in changes if e.is_change]
    flagged_ids = set(flagged)
    related = Relatedness(graph, affected, p)

    def service_key(entity: str) -> str:
        return graph.service_of(entity) or entity

    service_onset: dict[str, datetime] = {}
    domains: set[str] = set()
    for a in anomalies:
        ts, entity, kind = (a if len(a) == 3 else (*a, "log")) if isinstance(a, tuple) else (a.ts, a.entity, a.kind)
        domains.add("CI" if kind in CI_KINDS else "production")
        key = service_key(entity)
        if key not in service_onset or ts < service_onset[key]:
            service_onset[key] = ts
    template_times: dict[str, list[datetime]] = {}
    for entity, seen_at in new_templates:
        template_times.setdefault(service_key(entity), []).append(seen_at)

    commits = [e for e in events if e.kind == "commit" and _sha(e)]
    merged = merged_commits(commits)
    shipped_by: dict[str, list[Event]] = {}  # deploy/build id -> commits it carried
    deployed: dict[str, list[Event]] = {}  # commit id -> deploys/releases that shipped it
    built: dict[str, list[Event]] = {}  # commit id -> builds that built it
    for e in events:
        shas = _shipped_shas(e)
        if not shas or e.kind == "commit":
            continue
        carried = [c for c in commits if any(_same_sha(_sha(c) or "", s) for s in shas)]
        shipped_by[e.id] = carried
        for c in carried:
            if e.kind in _SHIP_KINDS:
                deployed.setdefault(c.id, []).append(e)
            elif e.kind == "build" and c.ts <= e.ts <= first + p.grace:
                built.setdefault(c.id, []).append(e)

    # Services whose deploys say what they shipped: there, a commit no deploy lists was not deployed.
    tracked_services = {service_key(e.entity) for e in events if e.kind in _SHIP_KINDS and _shipped_shas(e)}
    out: list[Candidate] = []
    excluded = set(exclude)
    for e in events:
        if e.id in excluded:
            continue
        graph_f, graph_why = related(e.entity)
        if graph_f <= 0.0 and not include_unrelated:
            continue
        evidence = [graph_why]
        eff = e.ts
        ships = sorted((d for d in deployed.get(e.id, []) if d.ts >= e.ts and d.ts <= first + p.grace), key=lambda d: d.ts)
        if ships:
            eff = ships[0].ts
            evidence.append(f"shipped by {ships[0].kind} {ships[0].entity} at {eff:%Y-%m-%d %H:%M} UTC")
        delta = onset - eff
        if eff > first + p.grace:
            time_f = p.after_onset
        else:  # before the onset; or within the estimated drift (either side of its start is uncertain)
            dist = abs(delta) if drifting else max(delta, timedelta(0))
            time_f = 1.0 / (1.0 + dist / p.time_scale)
        evidence.insert(0, _fmt_delta(delta) if eff <= onset or not drifting or eff > first + p.grace
                        else f"{_fmt_delta(delta)}, during the drift (first anomaly at {first:%Y-%m-%d %H:%M} UTC)")

        reached: list[str] = []
        if "production" in domains and (e.kind in _PRODUCTION_KINDS or (e.kind == "commit" and ships)):
            reached.append("production")
        if "CI" in domains and e.kind in _CI_REACHING:
            reached.append("CI")
        unknown = ("production" in domains and e.kind == "commit" and not ships
                   and service_key(e.entity) not in tracked_services)
        reach_f = 1.0 if reached or not domains else p.reach_unknown if unknown else p.reach_not
        if domains:
            where = " or ".join(sorted(domains))
            evidence.append(f"reached {' and '.join(reached)}" if reached else
                            f"not known whether it reached {where}" if unknown else f"did not reach {where} before the onset")

        carried = shipped_by.get(e.id, [])
        brought = merged.get(e.id, [])
        if brought:
            evidence.append(f"merges {len(brought)} commit{'s' if len(brought) > 1 else ''} of its branch")
        r, risk_why = change_risk(e, [*carried, *brought], p, built=built.get(e.id, []),
                                  flagged=e.id in flagged_ids or any(c.id in flagged_ids for c in carried))
        risk_f = p.risk_floor + (1.0 - p.risk_floor) * r
        evidence.append("risk: " + (", ".join(risk_why) if risk_why else "no risk signal"))

        svc_key = service_key(e.entity)
        svc_first = service_onset.get(svc_key)
        if svc_first is None:
            order_f = p.order_unknown
            evidence.append(f"no anomaly on {svc_key} itself")
        elif svc_first >= eff - p.grace:
            order_f = p.order_after
            evidence.append(f"{svc_key} became anomalous after it")
        else:
            order_f = p.order_before
            evidence.append(f"{svc_key} was already anomalous at {svc_first:%H:%M} UTC, before it")

        new_after = [t for t in template_times.get(svc_key, []) if t >= eff - p.grace]
        logs_f = p.logs_new if new_after else p.logs_none
        if new_after:
            evidence.append(f"{len(new_after)} new log template{'s' if len(new_after) > 1 else ''} on {svc_key} since")

        factors = {"time": round(time_f, 4), "graph": round(graph_f, 4), "reach": round(reach_f, 4), "risk": round(risk_f, 4),
                   "order": round(order_f, 4), "logs": round(logs_f, 4)}
        related_ids = [d.id for d in deployed.get(e.id, [])] + [c.id for c in carried]
        url = e.attrs.get("url") or e.labels.get("url")
        out.append(Candidate(
            event_id=e.id, kind=e.kind, entity=e.entity, source=e.source, ts=e.ts, effective_ts=eff,
            service=graph.service_of(e.entity), summary=describe_change(e),
            score=round(math.prod(factors.values()), 6), factors=factors, evidence=evidence,
            related_event_ids=related_ids, url=url if isinstance(url, str) else None,
        ))
    kind_order = {"deploy": 0, "release": 1, "config": 2, "commit": 3, "build": 4, "issue": 5}
    out.sort(key=lambda c: (-c.score, -(c.effective_ts or c.ts).timestamp(), kind_order.get(c.kind, 9), c.event_id))
    for i, c in enumerate(out, 1):
        c.rank = i
    return out

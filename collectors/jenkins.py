"""Jenkins collector: finished builds (and their JUnit reports) of every job, folders included.

Jobs are ``source.jobs`` or, when empty, every job found by walking
``/api/json?tree=jobs[name,_class,lastCompletedBuild[number]]`` down through folders (``Folder``,
organisation folders, multibranch projects); for ``source.jobs`` one request reads the root with a
tree nested as deep as the jobs are. A job whose last completed build is not above its cursor has
nothing new and is not read further (an idle poll is one request per folder). For each other job one
request reads its newest ``max_builds`` builds with a ``tree`` (number, result, building, duration,
timestamp, queueId, causes, queue time, test-result summary, commits); when more builds than that
are new, older ranges are read from ``allBuilds``. A build whose ``TestResultAction`` summary shows
failures also has its ``testReport`` read (for the failing cases); a clean one needs no request.

The cursor is the highest build number per job below which every build is finished and emitted,
``{"jobs": {"folder/job": 41}}``. A running build holds its job's cursor, so it is read again, and
emitted, once it finishes; finished builds after it are emitted at once and deduped when re-read.
Build numbers are exact, so no time overlap is needed. One batch per job read carries the whole cursor.

Events (entity ``job:<full name>``):

- kind ``deploy`` for jobs matching ``deploy_jobs`` (a change event), else ``build``; native id
  ``<job>#<number>``; labels ``job``, ``result``, ``triggered_by`` (``user:<id>``, ``timer``,
  ``scm``, ``upstream:<job>``, ``remote``, ``branch-indexing`` or ``other``); values
  ``duration_s``, ``queue_s`` (metrics plugin ``TimeInQueueAction``, when present),
  ``build_number``; attrs ``commits`` (SHAs from ``changeSets``/``changeSet``), ``causes``, ``url``.
- kind ``test_run`` when a test report exists; native id ``<job>#<number>/tests``; labels ``job``,
  ``result``; values ``passed``, ``failed``, ``skipped``, ``fail_ratio`` (failed / run),
  ``newly_failing`` (cases whose status is ``REGRESSION`` or that fail for the first time,
  ``failedSince`` = this build: Jenkins' own comparison with the previous build); attrs
  ``failing_cases`` and ``newly_failing_cases`` (``Class.name``, at most 200 each).

>>> b = {"number": 7, "result": "FAILURE", "building": False, "duration": 90500, "timestamp": 1772442000000,
...      "actions": [{"_class": "hudson.model.CauseAction", "causes": [
...          {"_class": "hudson.model.Cause$UserIdCause", "userId": "ana"}]},
...          {"_class": "jenkins.metrics.impl.TimeInQueueAction", "queuingDurationMillis": 2500}],
...      "changeSets": [{"items": [{"commitId": "abc123"}]}]}
>>> e = build_event(b, job="shop/shop-deploy", source="jenkins", deploy=True)
>>> e.kind, e.entity, e.labels["triggered_by"], e.values["queue_s"], e.attrs["commits"]
('deploy', 'job:shop/shop-deploy', 'user:ana', 2.5, ['abc123'])
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from opsradar.collectors._http import get_json
from opsradar.collectors.base import Batch, Collector, Rejected
from opsradar.collectors.registry import register
from opsradar.config import JenkinsSource, resolve_secret
from opsradar.errors import SourceDataError
from opsradar.models import Event

__all__ = ["JenkinsCollector", "build_event", "job_path", "make_client", "test_run_event", "triggered_by"]

log = logging.getLogger(__name__)

#: Item classes whose children are jobs (walked when ``jobs`` is empty).
CONTAINER_CLASSES = frozenset({
    "com.cloudbees.hudson.plugins.folder.Folder",
    "jenkins.branch.OrganizationFolder",
    "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
})
#: what the job listing says of each job: enough to skip jobs with no newly finished build
JOB_TREE = "name,_class,lastCompletedBuild[number]"
#: a job whose last completed build the listing did not give: it is read
_UNSAID = float("inf")
BUILD_TREE = (
    "number,result,building,duration,timestamp,queueId,"
    "actions[causes[shortDescription,userId,userName,upstreamProject,upstreamBuild],"
    "queuingDurationMillis,failCount,skipCount,totalCount],"
    "changeSets[items[commitId]],changeSet[items[commitId]]"
)
#: only what the events need: a full report carries every case's stdout and stack trace
REPORT_TREE = "passCount,failCount,skipCount,suites[cases[className,name,status,failedSince]]"
_MAX_CASES = 200


def job_path(full_name: str) -> str:
    """The URL path of a job: ``a/b`` → ``/job/a/job/b``, each part quoted.

    >>> job_path("shop/shop build")
    '/job/shop/job/shop%20build'
    """
    return "".join(f"/job/{quote(p, safe='')}" for p in full_name.split("/") if p)


def make_client(source: JenkinsSource, *, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An ``httpx.Client`` for ``source``: base URL, timeout, basic auth with the user's API token."""
    token = resolve_secret(source.token_env)
    auth = (source.user, token.get_secret_value()) if source.user and token is not None else None
    return httpx.Client(base_url=source.url.rstrip("/"), auth=auth, headers={"Accept": "application/json"},
                        timeout=source.timeout.total_seconds(), transport=transport)


def triggered_by(actions: Any) -> tuple[str, list[str]]:
    """``(label, short descriptions)`` of a build's causes; the first cause names the trigger."""
    causes = [c for a in actions if isinstance(a, dict) for c in (a.get("causes") or []) if isinstance(c, dict)] \
        if isinstance(actions, list) else []
    texts = [str(c["shortDescription"]) for c in causes if c.get("shortDescription")]
    if not causes:
        return "other", texts
    c = causes[0]
    cls = str(c.get("_class", ""))
    if c.get("userId") or cls.endswith("UserIdCause"):
        return f"user:{c.get('userId') or 'anonymous'}", texts
    if c.get("upstreamProject") or cls.endswith("UpstreamCause"):
        return f"upstream:{c.get('upstreamProject', '?')}", texts
    for suffix, label in (("TimerTriggerCause", "timer"), ("SCMTriggerCause", "scm"), ("RemoteCause", "remote"),
                          ("BranchIndexingCause", "branch-indexing"), ("GitHubPushCause", "scm"),
                          ("BranchEventCause", "scm")):
        if cls.endswith(suffix):
            return label, texts
    return "other", texts


def _action(actions: Any, key: str) -> dict[str, Any] | None:
    if isinstance(actions, list):
        for a in actions:
            if isinstance(a, dict) and key in a:
                return a
    return None


def _commits(build: dict[str, Any]) -> list[str]:
    sets = build.get("changeSets")
    lists = list(sets) if isinstance(sets, list) else []
    if isinstance(build.get("changeSet"), dict):
        lists.append(build["changeSet"])
    out = [str(i["commitId"]) for cs in lists if isinstance(cs, dict)
           for i in (cs.get("items") or []) if isinstance(i, dict) and i.get("commitId")]
    return list(dict.fromkeys(out))


def _ts(build: dict[str, Any]) -> datetime:
    ms = build.get("timestamp")
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms <= 0:
        raise ValueError(f"bad timestamp {ms!r}")
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _summary_report(action: dict[str, Any]) -> dict[str, Any] | None:
    """A report without cases from a ``TestResultAction`` summary, when nothing failed (else None)."""
    total, failed, skipped = action.get("totalCount"), action.get("failCount"), action.get("skipCount", 0)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (total, failed, skipped)) or failed:
        return None
    return {"passCount": total - skipped, "failCount": 0, "skipCount": skipped, "suites": []}  # type: ignore[operator]


def build_event(build: dict[str, Any], *, job: str, source: str, deploy: bool, base_url: str = "") -> Event:
    """The ``build`` / ``deploy`` event of one finished build (REST shape). Raises ``ValueError`` if malformed."""
    number = build.get("number")
    if not isinstance(number, int) or isinstance(number, bool):
        raise ValueError(f"bad build number {number!r}")
    result = build.get("result")
    if not isinstance(result, str) or not result:
        raise ValueError(f"finished build without a result (got {result!r})")
    duration = build.get("duration")
    if not isinstance(duration, int | float) or isinstance(duration, bool) or duration < 0:
        raise ValueError(f"bad duration {duration!r}")
    actions = build.get("actions") or []
    trigger, causes = triggered_by(actions)
    values = {"duration_s": duration / 1000, "build_number": float(number)}
    queue = _action(actions, "queuingDurationMillis")
    if queue is not None and isinstance(queue["queuingDurationMillis"], int | float):
        values["queue_s"] = queue["queuingDurationMillis"] / 1000
    start = _ts(build)
    attrs: dict[str, Any] = {"commits": _commits(build), "causes": causes,
                             "finished_at": datetime.fromtimestamp((build["timestamp"] + duration) / 1000, tz=UTC).isoformat()}
    if base_url:
        attrs["url"] = f"{base_url}{job_path(job)}/{number}/"
    if build.get("queueId") is not None:
        attrs["queue_id"] = build.get("queueId")
    return Event.new(source=source, native_id=f"{job}#{number}", kind="deploy" if deploy else "build", ts=start,
                     entity=f"job:{job}", labels={"job": job, "result": result, "triggered_by": trigger},
                     values=values, attrs=attrs)


def test_run_event(report: dict[str, Any], *, build: dict[str, Any], job: str, source: str) -> Event:
    """The ``test_run`` event of a JUnit report (REST shape). Raises ``ValueError`` if malformed."""
    counts = []
    for key in ("passCount", "failCount", "skipCount"):
        v = report.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"test report: bad {key} {v!r}")
        counts.append(v)
    passed, failed, skipped = counts
    number = build["number"]
    failing: list[str] = []
    newly: list[str] = []
    for suite in report.get("suites") or []:
        for case in (suite.get("cases") or []) if isinstance(suite, dict) else []:
            if not isinstance(case, dict):
                continue
            status = str(case.get("status", "")).upper()
            if status not in ("FAILED", "REGRESSION"):
                continue
            name = f"{case.get('className', '?')}.{case.get('name', '?')}"
            failing.append(name)
            if status == "REGRESSION" or case.get("failedSince") == number:
                newly.append(name)
    run = passed + failed
    return Event.new(
        source=source, native_id=f"{job}#{number}/tests", kind="test_run", ts=_ts(build), entity=f"job:{job}",
        labels={"job": job, "result": str(build.get("result"))},
        values={"passed": float(passed), "failed": float(failed), "skipped": float(skipped),
                "fail_ratio": failed / run if run else 0.0, "newly_failing": float(len(newly)),
                "build_number": float(number)},
        attrs={"failing_cases": failing[:_MAX_CASES], "newly_failing_cases": newly[:_MAX_CASES]},
    )


class JenkinsCollector(Collector):  # type: ignore[misc]  # mypy sees opsradar.collectors.* as Any (package-dir mapping)
    """Pulls finished builds of ``source.jobs`` (or of every job) from Jenkins, by build number."""

    kind = "jenkins"

    def __init__(self, name: str, source: JenkinsSource, *, client: httpx.Client | None = None) -> None:
        super().__init__(name)
        self.source = source
        self.client = client if client is not None else make_client(source)
        self._owns_client = client is None
        self._deploy = re.compile(source.deploy_jobs)
        self._base_url = source.url.rstrip("/")

    @property
    def auth_hint(self) -> str:
        src = f"sources.{self.name}"
        if self.source.token_env:
            return (f"check {src}.user ({self.source.user!r}) and the API token in ${self.source.token_env} "
                    "(Jenkins: user menu → Security → API Token)")
        return f"set {src}.user and token_env (anonymous access is refused)"

    def _get(self, path: str, params: dict[str, Any] | None = None, *, allow_404: bool = False) -> Any:
        return get_json(self.client, path, source=self.name, params=params, auth_hint=self.auth_hint,
                        allow_status=(404,) if allow_404 else ())

    def _object(self, doc: Any, what: str) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise SourceDataError(f"{what}: expected a JSON object, got {str(doc)[:80]!r}", source=self.name,
                                  hint="check that the url points at the Jenkins root")
        return doc

    def jobs(self) -> list[str]:
        """The jobs to read: ``source.jobs``, or every job under the root (folders walked)."""
        if self.source.jobs:
            return list(self.source.jobs)
        return sorted(self._job_index())

    def _job_index(self) -> dict[str, float | None]:
        """Job full name → the number of its last completed build (``None``: none yet;
        :data:`_UNSAID` when the listing did not say), for every job the listing shows: every job under the root, one request per folder walked; or, with
        ``source.jobs``, one request for the root with a tree as deep as they are."""
        if self.source.jobs:
            depth = max(len([p for p in j.split("/") if p]) for j in self.source.jobs)
            tree = JOB_TREE
            for _ in range(depth - 1):
                tree = f"{JOB_TREE},jobs[{tree}]"
            doc = self._object(self._get("/api/json", {"tree": f"jobs[{tree}]"}), "jobs of the root")
            return {full: last for full, is_folder, last in self._listed(doc, "", nested=True) if not is_folder}
        index: dict[str, float | None] = {}
        pending = [""]
        while pending:
            folder = pending.pop()
            doc = self._object(self._get(f"{job_path(folder)}/api/json", {"tree": f"jobs[{JOB_TREE}]"}),
                               f"jobs of {folder or 'the root'}")
            for full, is_folder, last in self._listed(doc, folder, nested=False):
                if is_folder:
                    pending.append(full)
                else:
                    index[full] = last
        return index

    def _listed(self, doc: dict[str, Any], folder: str, *, nested: bool) -> Iterator[tuple[str, bool, float | None]]:
        """``(full name, is a folder, last completed build number)`` of each item listed in ``doc``
        (with ``nested``, the items listed inside folders too)."""
        for j in doc.get("jobs") or []:
            if not isinstance(j, dict) or not isinstance(j.get("name"), str):
                log.warning("source %r: skipping a job entry without a name: %r", self.name, j)
                continue
            full = f"{folder}/{j['name']}" if folder else j["name"]
            is_folder = j.get("_class") in CONTAINER_CLASSES
            lcb = j.get("lastCompletedBuild", _UNSAID)
            number = lcb.get("number") if isinstance(lcb, dict) else None
            if isinstance(number, int) and not isinstance(number, bool):
                yield full, is_folder, number
            else:
                yield full, is_folder, None if lcb is None else _UNSAID
            if is_folder and nested:
                yield from self._listed(j, full, nested=True)

    def _builds(self, job: str, last: int | None) -> list[dict[str, Any]] | None:
        """Builds newer than ``last`` (the newest ``max_builds`` on a first read), newest first;
        ``None`` when the job does not exist (404)."""
        n = self.source.max_builds
        prop = "builds" if n <= 100 else "allBuilds"
        out: list[Any] = []
        start = 0
        while True:
            got = self._get(f"{job_path(job)}/api/json", {"tree": f"{prop}[{BUILD_TREE}]{{{start},{start + n}}}"},
                            allow_404=True)
            if got is None:
                return None
            doc = self._object(got, f"builds of {job}")
            page = doc.get(prop)
            if not isinstance(page, list):
                raise SourceDataError(f"builds of {job}: no {prop!r} list in {str(doc)[:80]!r}", source=self.name,
                                      hint=f"check that {job!r} is a job, not a folder")
            out += page
            numbers: list[int] = [b["number"] for b in page if isinstance(b, dict) and isinstance(b.get("number"), int)]
            # stop at a short page, on a first read, or once we reach what we had
            if len(page) < n or last is None or not numbers or min(numbers) <= last + 1:
                return out
            start += n
            prop = "allBuilds"  # `builds` holds only the newest 100

    def pull(self, cursor: Any, *, until: datetime | None = None) -> Iterator[Batch]:
        state: dict[str, int] = dict(cursor.get("jobs") or {}) if isinstance(cursor, dict) else {}
        index = self._job_index()
        for job in list(self.source.jobs) or sorted(index):
            last = state.get(job)
            listed = job.strip("/") in index
            completed = index.get(job.strip("/"))
            if listed and (completed is None or (last is not None and completed <= last)):
                continue  # no build finished since the cursor (a running one holds it): nothing to read
            events, rejected, new_last = self._job_events(job, last, until)
            if new_last is not None:
                state[job] = new_last
            yield Batch(events=events, cursor={"jobs": dict(state)}, rejected=rejected)

    def _job_events(self, job: str, last: int | None,
                    until: datetime | None) -> tuple[list[Event], list[Rejected], int | None]:
        events: list[Event] = []
        rejected: list[Rejected] = []
        builds = self._builds(job, last)
        if builds is None:  # one missing job (renamed, deleted) does not stop the others
            rejected.append(Rejected(job, f"no such job (404): check sources.{self.name}.jobs"))
            return events, rejected, last
        by_number: dict[int, dict[str, Any]] = {}
        for b in builds:
            num = b.get("number") if isinstance(b, dict) else None
            if not isinstance(num, int) or isinstance(num, bool):
                rejected.append(Rejected(f"{job}#?", f"build without a number: {str(b)[:80]}"))
                continue
            if last is None or num > last:
                by_number[num] = b
        if not by_number:
            return events, rejected, last
        deploy = bool(self._deploy.search(job))
        held: int | None = None  # the first unfinished build holds the cursor
        for num in sorted(by_number):
            b = by_number[num]
            running = b.get("building") is True or b.get("result") is None
            late = False
            if until is not None:
                try:
                    late = _ts(b) > until
                except ValueError:
                    late = False
            if running or late:
                held = num if held is None else held
                continue
            try:
                events.append(build_event(b, job=job, source=self.name, deploy=deploy, base_url=self._base_url))
            except (ValueError, KeyError, TypeError, ValidationError) as exc:
                rejected.append(Rejected(f"{job}#{num}", str(exc).splitlines()[0]))
                continue
            summary = _action(b.get("actions"), "totalCount")
            if summary is not None:
                report = _summary_report(summary)
                if report is None:  # something failed: the cases say which, and which newly
                    report = self._get(f"{job_path(job)}/{num}/testReport/api/json", {"tree": REPORT_TREE},
                                       allow_404=True)
                    if report is None:
                        continue
                try:
                    events.append(test_run_event(self._object(report, f"test report of {job}#{num}"),
                                                 build=b, job=job, source=self.name))
                except (ValueError, KeyError, TypeError, ValidationError) as exc:
                    rejected.append(Rejected(f"{job}#{num}/tests", str(exc).splitlines()[0]))
        newest = max(by_number)
        new_last = newest if held is None else held - 1
        if last is not None:
            new_last = max(new_last, last)
        return events, rejected, new_last

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


register("jenkins", lambda name, source: JenkinsCollector(name, source))

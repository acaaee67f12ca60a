"""A loopback fake of the Jenkins remote access API (JSON), as the Jenkins collector reads it.

Endpoints, with Jenkins' documented behaviour:

- ``/api/json`` and ``/job/A/job/B/api/json``: the root, folders (``jobs``) and jobs (``builds``,
  newest first and at most the newest 100 as since Jenkins 1.485; ``allBuilds`` for all of them;
  ``lastBuild``, ``lastCompletedBuild``, ``nextBuildNumber``). Without ``tree`` nested builds are
  shallow (``_class``, ``number``, ``url``), as at depth 0; a ``tree`` may reach into the listed
  jobs at any depth (``jobs[name,lastCompletedBuild[number],jobs[…]]``).
- ``/job/…/N/api/json``: one build (``number``, ``result``, ``building``, ``duration``,
  ``timestamp``, ``queueId``, ``actions`` with ``CauseAction`` causes, the metrics plugin's
  ``TimeInQueueAction`` and ``TestResultAction``, ``changeSets`` / ``changeSet``).
- ``/job/…/N/testReport/api/json``: the JUnit ``TestResult`` (``passCount``, ``failCount``,
  ``skipCount``, ``suites[].cases[]`` with ``status``, ``age``, ``failedSince``); 404 without one.

The ``tree`` parameter is honoured (``a,b[c,d]{M,N}`` with the ``{M,N}``, ``{M,}``, ``{,N}``,
``{N}`` ranges); every object keeps its ``_class``. Auth is basic with a user and API token; a wrong
token is ``401 Invalid password/token for user: …``, no credentials a 403 for anonymous.

Case statuses are computed as the JUnit plugin does, against the previous build with a report:
``PASSED``, ``FAILED``, ``SKIPPED``, ``REGRESSION`` (newly failing) and ``FIXED``.

>>> import httpx
>>> from datetime import datetime, timezone
>>> jenkins = FakeJenkins(users={"opsradar": "token"})
>>> jenkins.add_job("shop/shop-build")
>>> _ = jenkins.add_build("shop/shop-build", {"number": 1, "result": "SUCCESS", "duration": 61000,
...     "timestamp": datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc), "actions": [user_cause("ana"),
...     time_in_queue(4000)]}, test_report={"suites": [{"name": "s", "cases": [
...     {"className": "shop.CartTest", "name": "total", "status": "PASSED"}]}]})
>>> with jenkins:
...     auth = ("opsradar", "token")
...     root = httpx.get(jenkins.url + "/api/json", params={"tree": "jobs[name]"}, auth=auth).json()
...     builds = httpx.get(jenkins.url + "/job/shop/job/shop-build/api/json", auth=auth,
...                        params={"tree": "builds[number,result,duration]{0,10}"}).json()
...     report = httpx.get(jenkins.url + "/job/shop/job/shop-build/1/testReport/api/json", auth=auth).json()
>>> root["jobs"]
[{'_class': 'com.cloudbees.hudson.plugins.folder.Folder', 'name': 'shop'}]
>>> builds["builds"]
[{'_class': 'hudson.model.FreeStyleBuild', 'number': 1, 'result': 'SUCCESS', 'duration': 61000}]
>>> report["passCount"], report["suites"][0]["cases"][0]["status"]
(1, 'PASSED')
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from opsradar.demo.fakes.base import FakeRequest, FakeServer, Response

__all__ = [
    "FOLDER_CLASS",
    "FREESTYLE_CLASS",
    "PIPELINE_CLASS",
    "FakeJenkins",
    "TreeError",
    "apply_tree",
    "git_changes",
    "parse_tree",
    "scm_cause",
    "time_in_queue",
    "timer_cause",
    "upstream_cause",
    "user_cause",
]

FOLDER_CLASS = "com.cloudbees.hudson.plugins.folder.Folder"
FREESTYLE_CLASS = "hudson.model.FreeStyleProject"
PIPELINE_CLASS = "org.jenkinsci.plugins.workflow.job.WorkflowJob"
_BUILD_CLASS = {FREESTYLE_CLASS: "hudson.model.FreeStyleBuild", PIPELINE_CLASS: "org.jenkinsci.plugins.workflow.job.WorkflowRun"}
_BUILDS_LIMIT = 100  # `builds` holds the newest 100; `allBuilds` holds all


# ------------------------------------------------------------------------------ action helpers


def user_cause(user_id: str, user_name: str | None = None) -> dict[str, Any]:
    """A ``CauseAction`` for a build started by a user."""
    name = user_name or user_id
    return {"_class": "hudson.model.CauseAction", "causes": [
        {"_class": "hudson.model.Cause$UserIdCause", "shortDescription": f"Started by user {name}",
         "userId": user_id, "userName": name}]}


def timer_cause() -> dict[str, Any]:
    """A ``CauseAction`` for a build started by a cron trigger."""
    return {"_class": "hudson.model.CauseAction", "causes": [
        {"_class": "hudson.triggers.TimerTrigger$TimerTriggerCause", "shortDescription": "Started by timer"}]}


def scm_cause() -> dict[str, Any]:
    """A ``CauseAction`` for a build started by SCM polling."""
    return {"_class": "hudson.model.CauseAction", "causes": [
        {"_class": "hudson.triggers.SCMTrigger$SCMTriggerCause", "shortDescription": "Started by an SCM change"}]}


def upstream_cause(project: str, build: int) -> dict[str, Any]:
    """A ``CauseAction`` for a build started by another job's build."""
    return {"_class": "hudson.model.CauseAction", "causes": [
        {"_class": "hudson.model.Cause$UpstreamCause",
         "shortDescription": f'Started by upstream project "{project}" build number {build}',
         "upstreamBuild": build, "upstreamProject": project,
         "upstreamUrl": "".join(f"job/{quote(p, safe='')}/" for p in project.split("/"))}]}


def time_in_queue(queuing_ms: int, *, blocked_ms: int = 0, buildable_ms: int | None = None,
                  waiting_ms: int = 0) -> dict[str, Any]:
    """The metrics plugin's ``TimeInQueueAction`` (exported durations in milliseconds)."""
    return {"_class": "jenkins.metrics.impl.TimeInQueueAction", "blockedDurationMillis": blocked_ms,
            "blockedTimeMillis": blocked_ms,
            "buildableDurationMillis": queuing_ms if buildable_ms is None else buildable_ms,
            "buildableTimeMillis": queuing_ms if buildable_ms is None else buildable_ms,
            "queuingDurationMillis": queuing_ms, "queuingTimeMillis": queuing_ms,
            "waitingDurationMillis": waiting_ms, "waitingTimeMillis": waiting_ms, "subTaskCount": 0}


def git_changes(*commits: str | Mapping[str, Any]) -> dict[str, Any]:
    """A git change set list (``changeSets[]`` item of a pipeline run, or a freestyle ``changeSet``)."""
    items = []
    for c in commits:
        item = {"commitId": c} if isinstance(c, str) else dict(c)
        items.append({"_class": "hudson.plugins.git.GitChangeSet", "affectedPaths": [], "msg": "",
                      "author": {"fullName": "unknown"}, **item})
    return {"_class": "hudson.plugins.git.GitChangeSetList", "kind": "git", "items": items}


# ------------------------------------------------------------------------------ tree parameter


class TreeError(ValueError):
    """A ``tree`` parameter that does not parse."""


@dataclass
class TreeNode:
    name: str
    children: list[TreeNode] | None = None
    range: tuple[int | None, int | None] | None = None


def parse_tree(text: str) -> list[TreeNode]:
    """Parse Jenkins' ``tree`` syntax.

    >>> [(n.name, n.range, [c.name for c in n.children or []]) for n in parse_tree("jobs[name,url]{0,5},views")]
    [('jobs', (0, 5), ['name', 'url']), ('views', None, [])]
    """
    pos = 0

    def parse_list() -> list[TreeNode]:
        nonlocal pos
        nodes: list[TreeNode] = []
        while True:
            m = re.compile(r"\s*([A-Za-z_$][\w$]*)").match(text, pos)
            if not m:
                raise TreeError(f"expected a property name at position {pos} of tree={text!r}")
            node = TreeNode(m.group(1))
            pos = m.end()
            if pos < len(text) and text[pos] == "[":
                pos += 1
                node.children = parse_list()
                if pos >= len(text) or text[pos] != "]":
                    raise TreeError(f"expected ']' at position {pos} of tree={text!r}")
                pos += 1
            if pos < len(text) and text[pos] == "{":
                end = text.find("}", pos)
                if end < 0:
                    raise TreeError(f"unclosed '{{' in tree={text!r}")
                node.range = _parse_range(text[pos + 1 : end], text)
                pos = end + 1
            nodes.append(node)
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            return nodes

    nodes = parse_list()
    if pos != len(text):
        raise TreeError(f"unexpected {text[pos]!r} at position {pos} of tree={text!r}")
    return nodes


def _parse_range(spec: str, text: str) -> tuple[int | None, int | None]:
    m = re.fullmatch(r"\s*(\d*)\s*(,)?\s*(\d*)\s*", spec)
    if not m or (not m.group(2) and not m.group(1)):
        raise TreeError(f"bad range {{{spec}}} in tree={text!r}")
    lo = int(m.group(1)) if m.group(1) else None
    hi = int(m.group(3)) if m.group(3) else None
    if not m.group(2):  # {N}: just the N-th
        return lo, (lo or 0) + 1
    return lo, hi


def apply_tree(value: Any, nodes: list[TreeNode] | None) -> Any:
    """Keep only the properties named by ``nodes`` (``_class`` is always kept), recursively.

    >>> apply_tree({"_class": "x", "a": 1, "b": [{"c": 1, "d": 2}, {"c": 3}]}, parse_tree("b[c]{1,}"))
    {'_class': 'x', 'b': [{'c': 3}]}
    """
    if nodes is None:
        return value
    if isinstance(value, list):
        return [apply_tree(v, nodes) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    if "_class" in value:
        out["_class"] = value["_class"]
    for node in nodes:
        if node.name not in value:
            continue
        v = value[node.name]
        if isinstance(v, list) and node.range is not None:
            lo, hi = node.range
            v = v[lo or 0 : hi]
        if node.children is not None:
            v = apply_tree(v, node.children)
        elif isinstance(v, dict):
            v = {"_class": v["_class"]} if "_class" in v else {}
        elif isinstance(v, list):
            v = [({"_class": x["_class"]} if "_class" in x else {}) if isinstance(x, dict) else x for x in v]
        out[node.name] = v
    return out


# ------------------------------------------------------------------------------ the fake


@dataclass
class _Item:
    full_name: str
    cls: str
    children: dict[str, _Item] = field(default_factory=dict)
    builds: dict[int, dict[str, Any]] = field(default_factory=dict)
    reports: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_folder(self) -> bool:
        return self.cls == FOLDER_CLASS

    @property
    def name(self) -> str:
        return self.full_name.rsplit("/", 1)[-1]


def _job_path(full_name: str) -> str:
    return "".join(f"/job/{quote(p, safe='')}" for p in full_name.split("/"))


def _ms(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone")
        return int(value.timestamp() * 1000)
    return value


class FakeJenkins(FakeServer):
    """Jenkins on 127.0.0.1. ``users`` maps user → API token (basic auth)."""

    name = "jenkins"

    def __init__(self, users: Mapping[str, str] | None = None, *, anonymous_read: bool = False,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.users = dict(users or {})
        self.anonymous_read = anonymous_read
        self._root = _Item("", "hudson.model.Hudson")
        self._data_lock = threading.RLock()
        self._next_queue_id = 1
        job = r"(?P<path>(?:/job/[^/]+)*)"
        self.route("GET", job + r"/api/json", self._item_json)
        self.route("GET", job + r"/(?P<number>\d+)/api/json", self._build_json)
        self.route("GET", job + r"/(?P<number>\d+)/testReport/api/json", self._report_json)

    # ------------------------------------------------------------------ Python API (the world)

    def add_job(self, full_name: str, *, job_class: str = FREESTYLE_CLASS) -> None:
        """Create job ``full_name`` (``folder/sub/job``), creating missing folders on the way."""
        parts = [p for p in full_name.split("/") if p]
        if not parts:
            raise ValueError(f"bad job name {full_name!r}")
        with self._data_lock:
            node = self._root
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                child = node.children.get(part)
                if child is None:
                    child = _Item("/".join(parts[: i + 1]), job_class if last else FOLDER_CLASS)
                    node.children[part] = child
                elif not last and not child.is_folder:
                    raise ValueError(f"{child.full_name!r} is a job, not a folder")
                node = child

    def add_build(self, job_full_name: str, build: Mapping[str, Any],
                  test_report: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Add a build in the REST shape (``number``, ``result``, ``building``, ``duration`` ms,
        ``timestamp`` ms or an aware datetime, ``actions``, ``changeSets``); returns the stored copy.

        ``test_report`` is a JUnit report in the REST shape; case ``status`` may be ``PASSED``,
        ``FAILED`` or ``SKIPPED`` (``REGRESSION`` / ``FIXED``, ``age``, ``failedSince`` and the counts are
        computed against the previous build's report, as Jenkins does).
        """
        with self._data_lock:
            job = self._job(job_full_name)
            number = build.get("number", max(job.builds, default=0) + 1)
            if not isinstance(number, int) or number < 1:
                raise ValueError(f"build number must be a positive int, got {number!r}")
            if number in job.builds:
                raise ValueError(f"{job_full_name} #{number} exists; use update_build()")
            doc = self._normalise(job, number, dict(build))
            job.builds[number] = doc
            if test_report is not None:
                try:
                    self._set_report(job, number, test_report)
                except (ValueError, KeyError, TypeError):
                    del job.builds[number]
                    raise
            return copy.deepcopy(job.builds[number])

    def update_build(self, job_full_name: str, number: int, changes: Mapping[str, Any] | None = None, *,
                     test_report: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Change a stored build (e.g. a running build finishing: ``building=False, result=…, duration=…``)."""
        with self._data_lock:
            job = self._job(job_full_name)
            if number not in job.builds:
                raise KeyError(f"{job_full_name} has no build #{number}")
            doc = job.builds[number]
            for k, v in {**(changes or {}), **fields}.items():
                doc[k] = _ms(v) if k == "timestamp" else copy.deepcopy(v)
            if test_report is not None:
                self._set_report(job, number, test_report)
            return copy.deepcopy(doc)

    def get_build(self, job_full_name: str, number: int) -> dict[str, Any]:
        with self._data_lock:
            return copy.deepcopy(self._job(job_full_name).builds[number])

    # ------------------------------------------------------------------ storage

    def _job(self, full_name: str) -> _Item:
        node = self._root
        for part in [p for p in full_name.split("/") if p]:
            if part not in node.children:
                raise KeyError(f"no job {full_name!r}; add_job() it first")
            node = node.children[part]
        if node.is_folder or node is self._root:
            raise KeyError(f"{full_name!r} is a folder, not a job")
        return node

    def _normalise(self, job: _Item, number: int, build: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(build)
        doc["number"] = number
        doc["timestamp"] = _ms(doc.get("timestamp", 0))
        doc.setdefault("_class", _BUILD_CLASS.get(job.cls, "hudson.model.FreeStyleBuild"))
        doc.setdefault("id", str(number))
        doc.setdefault("displayName", f"#{number}")
        doc.setdefault("fullDisplayName", f"{job.full_name.replace('/', ' » ')} #{number}")
        doc.setdefault("building", False)
        doc.setdefault("result", None if doc["building"] else "SUCCESS")
        doc.setdefault("duration", 0)
        doc.setdefault("estimatedDuration", doc["duration"] or -1)
        doc.setdefault("keepLog", False)
        doc.setdefault("description", None)
        doc.setdefault("actions", [])
        if "queueId" not in doc:
            doc["queueId"] = self._next_queue_id
            self._next_queue_id += 1
        if doc["_class"].endswith("WorkflowRun"):
            doc.setdefault("changeSets", [])
        else:
            doc.setdefault("changeSet", {"_class": "hudson.scm.EmptyChangeLogSet", "kind": None, "items": []})
        return doc

    def _set_report(self, job: _Item, number: int, report: Mapping[str, Any]) -> None:
        prev_num = max((n for n in job.reports if n < number), default=None)
        prev_cases: dict[tuple[str, str, str], dict[str, Any]] = {}
        if prev_num is not None:
            for s in job.reports[prev_num]["suites"]:
                for c in s["cases"]:
                    prev_cases[(s.get("name", ""), c["className"], c["name"])] = c
        doc = copy.deepcopy(dict(report))
        passed = failed = skipped = 0
        duration = 0.0
        for suite in doc.setdefault("suites", []):
            suite.setdefault("name", "")
            for case in suite.setdefault("cases", []):
                for req in ("className", "name"):
                    if req not in case:
                        raise ValueError(f"test case without {req!r}: {case!r}")
                outcome = _outcome(case)
                prev = prev_cases.get((suite["name"], case["className"], case["name"]))
                prev_outcome = _outcome(prev) if prev else None
                case["skipped"] = outcome == "skipped"
                case.setdefault("duration", 0.0)
                case.setdefault("errorDetails", "failed" if outcome == "failed" else None)
                case.setdefault("errorStackTrace", None)
                case.setdefault("skippedMessage", None)
                case.setdefault("stdout", None)
                case.setdefault("stderr", None)
                case.setdefault("testActions", [])
                if outcome == "failed":
                    failed += 1
                    case["failedSince"] = prev["failedSince"] if prev and prev_outcome == "failed" else number
                    case["age"] = number - case["failedSince"] + 1
                else:
                    case["failedSince"], case["age"] = 0, 0
                    passed += outcome == "passed"
                    skipped += outcome == "skipped"
                if outcome == "skipped":
                    case["status"] = "SKIPPED"
                elif prev_outcome is None or prev_outcome == "skipped":
                    case["status"] = "PASSED" if outcome == "passed" else "FAILED"
                elif prev_outcome == "passed":
                    case["status"] = "PASSED" if outcome == "passed" else "REGRESSION"
                else:
                    case["status"] = "FIXED" if outcome == "passed" else "FAILED"
                duration += float(case["duration"] or 0)
            suite.setdefault("duration", sum(float(c["duration"] or 0) for c in suite["cases"]))
            suite.setdefault("id", None)
            suite.setdefault("stdout", None)
            suite.setdefault("stderr", None)
            suite.setdefault("timestamp", None)
        doc.update({"_class": "hudson.tasks.junit.TestResult", "testActions": [], "passCount": passed,
                    "failCount": failed, "skipCount": skipped, "empty": passed + failed + skipped == 0})
        doc.setdefault("duration", duration)
        job.reports[number] = doc
        build = job.builds[number]
        build["actions"] = [a for a in build["actions"] if a.get("_class") != "hudson.tasks.junit.TestResultAction"]
        build["actions"].append({"_class": "hudson.tasks.junit.TestResultAction", "failCount": failed,
                                 "skipCount": skipped, "totalCount": passed + failed + skipped,
                                 "urlName": "testReport"})

    # ------------------------------------------------------------------ auth

    def authorized(self, req: FakeRequest) -> bool:
        basic = req.basic_auth()
        if basic is None:
            return self.anonymous_read and req.header("authorization") is None
        user, token = basic
        return self.users.get(user) == token

    def unauthorized(self, req: FakeRequest) -> Response:
        basic = req.basic_auth()
        if basic is None:
            return (403, "<html><head><title>Authentication required</title></head><body>Authentication required"
                    "</body></html>", {"Content-Type": "text/html;charset=utf-8",
                                       "X-You-Are-Authenticated-As": "anonymous",
                                       "X-Required-Permission": "hudson.model.Hudson.Read"})
        reason = f"Invalid password/token for user: {basic[0]}"
        return (401, f"<html><head><title>Error 401 {reason}</title></head><body><h2>HTTP ERROR 401</h2>"
                     f"<p>Problem accessing {req.path}. Reason:<pre>    {reason}</pre></p></body></html>",
                {"Content-Type": "text/html;charset=iso-8859-1", "WWW-Authenticate": 'Basic realm="Jenkins"'})

    # ------------------------------------------------------------------ handlers

    def _resolve(self, path: str) -> _Item | None:
        node = self._root
        for part in [unquote(p) for p in path.split("/job/") if p]:
            child = node.children.get(part)
            if child is None:
                return None
            node = child
        return node

    def _tree(self, req: FakeRequest) -> list[TreeNode] | None:
        tree = req.arg("tree")
        return parse_tree(tree) if tree else None

    def _not_found(self, req: FakeRequest) -> Response:
        return 404, f"<html><body><h2>HTTP ERROR 404 Not Found</h2><p>{req.path}</p></body></html>", \
            {"Content-Type": "text/html;charset=utf-8"}

    def _item_json(self, req: FakeRequest, path: str) -> Response:
        try:
            tree = self._tree(req)
        except TreeError as exc:
            return 400, str(exc)
        with self._data_lock:
            item = self._resolve(path)
            if item is None:
                return self._not_found(req)
            doc = self._render_item(item, full=tree is not None, tree=tree)
        return 200, apply_tree(doc, tree)

    def _render_item(self, item: _Item, *, full: bool, tree: list[TreeNode] | None = None) -> dict[str, Any]:
        wanted = None if tree is None else {n.name for n in tree}
        url = self.url + _job_path(item.full_name) + "/" if item.full_name else self.url + "/"
        jobs_node = next((n for n in tree or [] if n.name == "jobs"), None)
        if jobs_node is not None and jobs_node.children is not None and \
                {n.name for n in jobs_node.children} - {"_class", "name", "url", "color"}:
            # a tree asking for more of each child (jobs[name,lastCompletedBuild[number]]) gets it, at any depth
            jobs = [self._render_item(c, full=True, tree=jobs_node.children) for c in item.children.values()]
        else:
            jobs = [{"_class": c.cls, "name": c.name, "url": self.url + _job_path(c.full_name) + "/",
                     **({} if c.is_folder else {"color": _color(c)})} for c in item.children.values()]
        if item is self._root:
            return {"_class": item.cls, "mode": "NORMAL", "nodeDescription": "the master Jenkins node",
                    "numExecutors": 2, "useSecurity": True, "url": url, "jobs": jobs, "views": []}
        base = {"_class": item.cls, "name": item.name, "fullName": item.full_name,
                "displayName": item.name, "fullDisplayName": item.full_name.replace("/", " » "), "url": url}
        if item.is_folder:
            return {**base, "jobs": jobs}
        numbers = sorted(item.builds, reverse=True)

        def build_ref(n: int) -> dict[str, Any]:
            b = item.builds[n]
            return self._render_build(item, b) if full else {"_class": b["_class"], "number": n,
                                                             "url": f"{url}{n}/"}

        completed = [n for n in numbers if not item.builds[n]["building"]]
        lazy: dict[str, Any] = {
            "builds": lambda: [build_ref(n) for n in numbers[:_BUILDS_LIMIT]],
            "allBuilds": lambda: [build_ref(n) for n in numbers] if full else [],
            "firstBuild": lambda: build_ref(numbers[-1]) if numbers else None,
            "lastBuild": lambda: build_ref(numbers[0]) if numbers else None,
            "lastCompletedBuild": lambda: build_ref(completed[0]) if completed else None,
        }
        # with a tree, only the asked-for build lists are rendered (the rest would be dropped anyway)
        builds = {k: make() for k, make in lazy.items() if wanted is None or k in wanted}
        return {**base, "buildable": True, "color": _color(item), "inQueue": False, **builds,
                "nextBuildNumber": (numbers[0] + 1) if numbers else 1}

    def _render_build(self, job: _Item, build: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(build)
        doc["url"] = f"{self.url}{_job_path(job.full_name)}/{build['number']}/"
        return doc

    def _build_json(self, req: FakeRequest, path: str, number: str) -> Response:
        try:
            tree = self._tree(req)
        except TreeError as exc:
            return 400, str(exc)
        with self._data_lock:
            item = self._resolve(path)
            if item is None or item.is_folder or int(number) not in item.builds:
                return self._not_found(req)
            doc = self._render_build(item, item.builds[int(number)])
        return 200, apply_tree(doc, tree)

    def _report_json(self, req: FakeRequest, path: str, number: str) -> Response:
        try:
            tree = self._tree(req)
        except TreeError as exc:
            return 400, str(exc)
        with self._data_lock:
            item = self._resolve(path)
            if item is None or item.is_folder or int(number) not in item.reports:
                return self._not_found(req)
            doc = copy.deepcopy(item.reports[int(number)])
        return 200, apply_tree(doc, tree)


def _color(job: _Item) -> str:
    if not job.builds:
        return "notbuilt"
    last = job.builds[max(job.builds)]
    base = {"SUCCESS": "blue", "UNSTABLE": "yellow", "FAILURE": "red", "ABORTED": "aborted"}.get(
        str(last.get("result")), "notbuilt")
    return base + "_anime" if last.get("building") else base


def _outcome(case: Mapping[str, Any]) -> str:
    status = str(case.get("status") or "").upper()
    if status == "SKIPPED" or case.get("skipped") is True:
        return "skipped"
    if status in ("FAILED", "REGRESSION") or case.get("errorDetails") or case.get("errorStackTrace"):
        return "failed"
    return "passed"


"""Render timeline records in the vendors' REST shapes, as the fakes store and serve them.

- :func:`jenkins_build` / :func:`jenkins_test_report`: a build of the Jenkins remote access API
  (``number``, ``result``, ``duration`` ms, ``timestamp`` ms, ``actions`` with the ``CauseAction``,
  ``ParametersAction`` and git ``BuildData``, a git ``changeSet``) and its JUnit ``TestResult``;
- :func:`jira_issue`: a Jira issue (``key``, ``fields``, ``changelog.histories``) as it stands at a
  given moment: its status, ``updated`` and ``resolutiondate`` follow the transitions made so far.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from opsradar.demo.gitrepos import GitCommit
from opsradar.demo.records import Build, Issue
from opsradar.demo.timeline import test_cases

__all__ = ["jenkins_build", "jenkins_test_report", "jira_issue"]

_CATEGORY = {"To Do": "new", "In Progress": "indeterminate", "In Review": "indeterminate", "Done": "done"}
_STATUS_ID = {"To Do": "10000", "In Progress": "3", "In Review": "10001", "Done": "10002"}


def _cause(b: Build) -> dict[str, Any]:
    if b.cause == "timer":
        c = {"_class": "hudson.triggers.TimerTrigger$TimerTriggerCause", "shortDescription": "Started by timer"}
    elif b.cause == "scm":
        c = {"_class": "hudson.triggers.SCMTrigger$SCMTriggerCause", "shortDescription": "Started by an SCM change"}
    elif b.cause == "branch":
        c = {"_class": "jenkins.branch.BranchEventCause", "shortDescription": f"Branch event ({b.branch})"}
    else:
        user = b.user or "anonymous"
        c = {"_class": "hudson.model.Cause$UserIdCause", "shortDescription": f"Started by user {user}",
             "userId": user, "userName": user.capitalize()}
    return {"_class": "hudson.model.CauseAction", "causes": [c]}


def jenkins_build(b: Build, commits: Mapping[str, GitCommit], repo_url: str) -> dict[str, Any]:
    """The build as ``GET /job/<job>/<n>/api/json`` returns it (test counts are added by the fake)."""
    actions: list[dict[str, Any]] = [_cause(b)]
    if b.params:
        actions.append({"_class": "hudson.model.ParametersAction", "parameters": [
            {"_class": "hudson.model.StringParameterValue", "name": k, "value": v} for k, v in b.params.items()]})
    if b.commit_sha:
        branch = f"refs/remotes/origin/{b.branch}"
        actions.append({"_class": "hudson.plugins.git.util.BuildData",
                        "lastBuiltRevision": {"SHA1": b.commit_sha, "branch": [{"SHA1": b.commit_sha, "name": branch}]},
                        "remoteUrls": [repo_url], "scmName": ""})
    items = []
    for cid in b.commits:
        c = commits.get(cid)
        if c is None:
            continue
        items.append({"_class": "hudson.plugins.git.GitChangeSet", "commitId": c.sha, "id": c.sha,
                      "msg": c.message.splitlines()[0], "comment": c.message,
                      "author": {"fullName": c.author, "absoluteUrl": f"/user/{c.author.lower()}"},
                      "authorEmail": c.email, "timestamp": int(c.committed.timestamp() * 1000),
                      "date": c.committed.strftime("%Y-%m-%d %H:%M:%S +0000"),
                      "affectedPaths": list(c.changed), "paths": [{"editType": "edit", "file": p} for p in c.changed]})
    change_set: dict[str, Any] = ({"_class": "hudson.plugins.git.GitChangeSetList", "kind": "git", "items": items}
                                  if items else {"_class": "hudson.scm.EmptyChangeLogSet", "kind": None, "items": []})
    return {
        "number": b.number,
        "result": b.result,
        "building": False,
        "duration": int(b.duration_s * 1000),
        "timestamp": int(b.start.timestamp() * 1000),
        "builtOn": b.node,
        "description": b.description,
        "actions": actions,
        "changeSet": change_set,
        "culprits": [{"fullName": commits[cid].author} for cid in b.commits if cid in commits],
    }


def jenkins_test_report(b: Build, repo: str) -> dict[str, Any] | None:
    """The JUnit report of the build (``suites[].cases[]``), or None when no tests ran."""
    if b.tests is None:
        return None
    t = b.tests
    failed = {(s, c): err for s, c, err in t.failures}
    names = test_cases(repo, t.total)
    per_case = round(t.duration_s / max(1, t.total), 3)
    suites: dict[str, list[dict[str, Any]]] = {}
    skipped = {names[-1 - i] for i in range(t.skipped)}
    for suite, case in names:
        status = "FAILED" if (suite, case) in failed else "SKIPPED" if (suite, case) in skipped else "PASSED"
        item: dict[str, Any] = {"className": suite, "name": case, "status": status, "duration": per_case}
        if status == "FAILED":
            item["errorDetails"] = failed[(suite, case)]
        suites.setdefault(suite, []).append(item)
    for (suite, case), err in failed.items():
        if (suite, case) not in set(names):
            suites.setdefault(suite, []).append({"className": suite, "name": case, "status": "FAILED",
                                                 "duration": per_case, "errorDetails": err})
    return {"duration": t.duration_s, "suites": [{"name": s, "cases": cs} for s, cs in suites.items()]}


def _user(name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    return {"name": name, "key": name, "accountId": f"acc-{name}", "displayName": name.capitalize(),
            "emailAddress": f"{name}@example.com", "active": True, "timeZone": "UTC"}


def jira_issue(issue: Issue, now: datetime) -> dict[str, Any]:
    """The issue as it stands at ``now`` (transitions after ``now`` have not happened yet)."""
    done = [t for t in issue.transitions if t.ts <= now]
    status = done[-1].status if done else "To Do"
    histories = []
    prev = "To Do"
    for n, t in enumerate(done, start=1):
        histories.append({"id": str(issue.id * 100 + n), "author": _user(t.author), "created": t.ts,
                          "items": [{"field": "status", "fieldtype": "jira", "from": _STATUS_ID.get(prev),
                                     "fromString": prev, "to": _STATUS_ID.get(t.status), "toString": t.status}]})
        prev = t.status
    resolved = next((t.ts for t in done if t.status == "Done"), None) if status == "Done" else None
    fields: dict[str, Any] = {
        "summary": issue.summary,
        "description": issue.description,
        "issuetype": {"name": issue.issuetype, "subtask": False},
        "priority": {"name": issue.priority},
        "status": {"name": status, "id": _STATUS_ID[status], "statusCategory": {"key": _CATEGORY[status]}},
        "reporter": _user(issue.reporter),
        "creator": _user(issue.reporter),
        "assignee": _user(issue.assignee),
        "labels": list(issue.labels),
        "components": [{"name": issue.service}],
        "created": issue.created,
        "updated": done[-1].ts if done else issue.created,
        "resolutiondate": resolved,
        "resolution": {"name": "Done"} if resolved else None,
    }
    return {"id": str(issue.id), "key": issue.key, "fields": fields, "changelog": {"histories": histories}}

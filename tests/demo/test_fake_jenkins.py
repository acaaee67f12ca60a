"""The Jenkins fake answers as Jenkins' remote access API does (tree, ranges, folders, reports, auth)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from opsradar.demo.fakes.jenkins import (
    FOLDER_CLASS,
    PIPELINE_CLASS,
    FakeJenkins,
    TreeError,
    apply_tree,
    git_changes,
    parse_tree,
    time_in_queue,
    timer_cause,
    upstream_cause,
    user_cause,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AUTH = ("opsradar", "token")


def _report(**cases: str) -> dict[str, Any]:
    return {"suites": [{"name": "suite", "cases": [
        {"className": "shop.Test", "name": name, "status": status} for name, status in cases.items()]}]}


@pytest.fixture
def jenkins() -> Iterator[FakeJenkins]:
    fake = FakeJenkins(users={"opsradar": "token"})
    fake.add_job("shop/shop-build", job_class=PIPELINE_CLASS)
    fake.add_job("shop/deploy/shop-deploy")
    fake.add_job("tools")
    for n in range(1, 4):
        fake.add_build("shop/shop-build", {
            "number": n, "result": "SUCCESS", "duration": 1000 * n, "timestamp": T0 + timedelta(hours=n),
            "actions": [timer_cause(), time_in_queue(500 * n)], "changeSets": [git_changes(f"sha{n}")]})
    with fake:
        yield fake


def _get(fake: FakeJenkins, path: str, **params: str) -> httpx.Response:
    return httpx.get(fake.url + path, params=params, auth=AUTH)


def test_a_tree_reaches_into_listed_jobs_at_any_depth(jenkins: FakeJenkins) -> None:
    jenkins.add_build("shop/shop-build", {"number": 4, "building": True, "timestamp": T0 + timedelta(hours=5)})
    tree = "jobs[name,lastCompletedBuild[number],jobs[name,lastCompletedBuild[number],jobs[name]]]"
    root = _get(jenkins, "/api/json", tree=tree).json()
    shop, tools = root["jobs"]
    assert tools == {"_class": "hudson.model.FreeStyleProject", "name": "tools", "lastCompletedBuild": None}
    assert shop["jobs"][0] == {"_class": PIPELINE_CLASS, "name": "shop-build",
                               "lastCompletedBuild": {"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
                                                      "number": 3}}  # #4 is still running
    assert shop["jobs"][1]["jobs"] == [{"_class": "hudson.model.FreeStyleProject", "name": "shop-deploy"}]


def test_root_and_folders_list_jobs_with_their_classes(jenkins: FakeJenkins) -> None:
    root = _get(jenkins, "/api/json", tree="jobs[name,url]").json()
    assert root["_class"] == "hudson.model.Hudson"
    assert [(j["_class"], j["name"]) for j in root["jobs"]] == [
        (FOLDER_CLASS, "shop"), ("hudson.model.FreeStyleProject", "tools")]
    assert root["jobs"][0]["url"] == jenkins.url + "/job/shop/"
    shop = _get(jenkins, "/job/shop/api/json").json()
    assert shop["fullName"] == "shop"
    assert [(j["_class"], j["name"]) for j in shop["jobs"]] == [(PIPELINE_CLASS, "shop-build"), (FOLDER_CLASS, "deploy")]


def test_a_job_lists_builds_newest_first_shallow_without_tree(jenkins: FakeJenkins) -> None:
    job = _get(jenkins, "/job/shop/job/shop-build/api/json").json()
    assert job["builds"] == [{"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun", "number": n,
                              "url": f"{jenkins.url}/job/shop/job/shop-build/{n}/"} for n in (3, 2, 1)]
    assert (job["nextBuildNumber"], job["lastBuild"]["number"], job["color"]) == (4, 3, "blue")


def test_tree_ranges_select_builds_and_properties(jenkins: FakeJenkins) -> None:
    job = _get(jenkins, "/job/shop/job/shop-build/api/json",
               tree="builds[number,duration,actions[queuingDurationMillis]]{1,3}").json()
    assert [b["number"] for b in job["builds"]] == [2, 1]
    assert set(job["builds"][0]) == {"_class", "number", "duration", "actions"}
    # actions without the asked property keep only their _class, as Jenkins does
    assert job["builds"][0]["actions"] == [{"_class": "hudson.model.CauseAction"},
                                           {"_class": "jenkins.metrics.impl.TimeInQueueAction",
                                            "queuingDurationMillis": 1000}]
    one = _get(jenkins, "/job/shop/job/shop-build/api/json", tree="builds[number]{0}").json()
    assert one["builds"] == [{"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun", "number": 3}]


def test_builds_holds_the_newest_100_and_all_builds_everything() -> None:
    fake = FakeJenkins(users={"opsradar": "token"})
    fake.add_job("big")
    for n in range(1, 131):
        fake.add_build("big", {"number": n, "timestamp": T0 + timedelta(minutes=n)})
    with fake:
        job = _get(fake, "/job/big/api/json", tree="builds[number],allBuilds[number]{100,}").json()
    assert len(job["builds"]) == 100
    assert [b["number"] for b in job["allBuilds"]] == list(range(30, 0, -1))


def test_a_build_has_causes_queue_time_and_change_sets(jenkins: FakeJenkins) -> None:
    jenkins.add_build("shop/deploy/shop-deploy", {
        "number": 7, "result": "FAILURE", "duration": 42000, "timestamp": T0,
        "actions": [upstream_cause("shop/shop-build", 3), user_cause("ana", "Ana")],
        "changeSet": git_changes("abc")})
    build = _get(jenkins, "/job/shop/job/deploy/job/shop-deploy/7/api/json").json()
    assert build["_class"] == "hudson.model.FreeStyleBuild"
    assert (build["number"], build["result"], build["building"], build["timestamp"]) == (7, "FAILURE", False,
                                                                                         1772442000000)
    assert build["actions"][0]["causes"][0] == {
        "_class": "hudson.model.Cause$UpstreamCause",
        "shortDescription": 'Started by upstream project "shop/shop-build" build number 3',
        "upstreamBuild": 3, "upstreamProject": "shop/shop-build", "upstreamUrl": "job/shop/job/shop-build/"}
    assert build["changeSet"]["items"][0]["commitId"] == "abc"
    assert build["url"] == jenkins.url + "/job/shop/job/deploy/job/shop-deploy/7/"


def test_a_running_build_finishes_later(jenkins: FakeJenkins) -> None:
    jenkins.add_build("tools", {"number": 1, "building": True, "timestamp": T0})
    running = _get(jenkins, "/job/tools/1/api/json").json()
    assert (running["building"], running["result"]) == (True, None)
    assert _get(jenkins, "/job/tools/api/json").json()["color"] == "notbuilt_anime"
    jenkins.update_build("tools", 1, building=False, result="SUCCESS", duration=5000)
    done = _get(jenkins, "/job/tools/1/api/json").json()
    assert (done["building"], done["result"], done["duration"]) == (False, "SUCCESS", 5000)


def test_test_reports_get_junit_statuses_against_the_previous_build(jenkins: FakeJenkins) -> None:
    jenkins.add_build("tools", {"number": 1, "timestamp": T0},
                      test_report=_report(a="PASSED", b="PASSED", c="FAILED", d="SKIPPED"))
    jenkins.add_build("tools", {"number": 2, "timestamp": T0, "result": "UNSTABLE"},
                      test_report=_report(a="PASSED", b="FAILED", c="FAILED", d="SKIPPED", e="FAILED"))
    jenkins.add_build("tools", {"number": 3, "timestamp": T0, "result": "UNSTABLE"},
                      test_report=_report(a="PASSED", b="FAILED", c="PASSED", d="SKIPPED", e="FAILED"))
    two = _get(jenkins, "/job/tools/2/testReport/api/json").json()
    assert two["_class"] == "hudson.tasks.junit.TestResult"
    assert (two["passCount"], two["failCount"], two["skipCount"], two["empty"]) == (1, 3, 1, False)
    cases = {c["name"]: c for c in two["suites"][0]["cases"]}
    assert {n: c["status"] for n, c in cases.items()} == {"a": "PASSED", "b": "REGRESSION", "c": "FAILED",
                                                         "d": "SKIPPED", "e": "FAILED"}
    assert (cases["c"]["failedSince"], cases["c"]["age"]) == (1, 2)
    assert (cases["e"]["failedSince"], cases["e"]["age"]) == (2, 1)
    three = {c["name"]: c for c in _get(jenkins, "/job/tools/3/testReport/api/json").json()["suites"][0]["cases"]}
    assert (three["c"]["status"], three["b"]["status"], three["b"]["age"]) == ("FIXED", "FAILED", 2)
    build = _get(jenkins, "/job/tools/2/api/json", tree="actions[failCount,totalCount,urlName]").json()
    assert {"_class": "hudson.tasks.junit.TestResultAction", "failCount": 3, "totalCount": 5,
            "urlName": "testReport"} in build["actions"]


def test_missing_things_are_404(jenkins: FakeJenkins) -> None:
    assert _get(jenkins, "/job/shop/job/shop-build/1/testReport/api/json").status_code == 404
    assert _get(jenkins, "/job/nope/api/json").status_code == 404
    assert _get(jenkins, "/job/shop/job/shop-build/99/api/json").status_code == 404


def test_auth_failures_answer_as_jenkins_does(jenkins: FakeJenkins) -> None:
    bad = httpx.get(jenkins.url + "/api/json", auth=("opsradar", "wrong"))
    assert bad.status_code == 401
    assert "Invalid password/token for user: opsradar" in bad.text
    assert bad.headers["WWW-Authenticate"] == 'Basic realm="Jenkins"'
    anon = httpx.get(jenkins.url + "/api/json")
    assert anon.status_code == 403
    assert anon.headers["X-You-Are-Authenticated-As"] == "anonymous"


def test_tree_parsing_and_errors() -> None:
    assert apply_tree({"a": {"_class": "k", "x": 1}, "b": 2}, parse_tree("a,b")) == {"a": {"_class": "k"}, "b": 2}
    assert parse_tree("builds[number]{,5}")[0].range == (None, 5)
    with pytest.raises(TreeError, match="expected"):
        parse_tree("builds[number")
    with pytest.raises(TreeError, match="bad range"):
        parse_tree("builds{x}")


def test_add_build_validates(jenkins: FakeJenkins) -> None:
    with pytest.raises(ValueError, match="exists"):
        jenkins.add_build("shop/shop-build", {"number": 1, "timestamp": T0})
    with pytest.raises(KeyError, match="folder"):
        jenkins.add_build("shop", {"number": 1, "timestamp": T0})
    with pytest.raises(ValueError, match="test case without 'name'"):
        jenkins.add_build("tools", {"number": 5, "timestamp": T0}, test_report={"suites": [{"cases": [{"className": "x"}]}]})

"""The Jenkins collector against the loopback Jenkins fake: incremental by build number, resumable, clear."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import opsradar.collectors.jenkins as jc
from opsradar.collectors.base import run_once
from opsradar.collectors.registry import build_collector
from opsradar.collectors.scheduler import Scheduler
from opsradar.config import JenkinsSource
from opsradar.demo.fakes.jenkins import (
    PIPELINE_CLASS,
    FakeJenkins,
    git_changes,
    scm_cause,
    time_in_queue,
    upstream_cause,
    user_cause,
)
from opsradar.errors import SourceAuthError, SourceDataError, SourceUnavailable
from opsradar.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _build(n: int, *, result: str = "SUCCESS", **kw: Any) -> dict[str, Any]:
    return {"number": n, "result": result, "duration": 60_000 + n, "timestamp": T0 + timedelta(minutes=10 * n),
            "actions": [scm_cause(), time_in_queue(1500)], **kw}


def _report(**cases: str) -> dict[str, Any]:
    return {"suites": [{"name": "s", "cases": [{"className": "shop.T", "name": k, "status": v}
                                               for k, v in cases.items()]}]}


@pytest.fixture
def jenkins(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJenkins]:
    monkeypatch.setenv("JENKINS_TOKEN", "token")
    monkeypatch.setenv("JENKINS_BAD", "nope")
    fake = FakeJenkins(users={"opsradar": "token"})
    fake.add_job("shop/shop-build", job_class=PIPELINE_CLASS)
    fake.add_job("shop/shop-deploy")
    with fake:
        yield fake


def _collector(fake: FakeJenkins, name: str = "jenkins", **kw: Any) -> jc.JenkinsCollector:
    opts: dict[str, Any] = {"url": fake.url, "user": "opsradar", "token_env": "JENKINS_TOKEN"}
    opts.update(kw)
    return jc.JenkinsCollector(name, JenkinsSource(**opts))


def _events(store: Store, kind: str | None = None) -> list[Any]:
    return [e for e in store.iter_events(source="jenkins") if kind is None or e.kind == kind]


def test_incremental_pull_over_two_runs_with_a_running_build(jenkins: FakeJenkins) -> None:
    for n in (1, 2):
        jenkins.add_build("shop/shop-build", _build(n, changeSets=[git_changes(f"sha{n}")]))
    jenkins.add_build("shop/shop-build", {"number": 3, "building": True, "timestamp": T0 + timedelta(minutes=30)})
    jenkins.add_build("shop/shop-build", _build(4))  # finished while #3 still runs
    jenkins.add_build("shop/shop-deploy", _build(1, actions=[upstream_cause("shop/shop-build", 2), user_cause("ana")]))
    store = Store("sqlite://")
    coll = _collector(jenkins)
    first = run_once(coll, store)
    assert first.new == 4  # builds 1, 2, 4 and the deploy; #3 is still running
    assert store.get_cursor("jenkins") == {"jobs": {"shop/shop-build": 2, "shop/shop-deploy": 1}}

    jenkins.update_build("shop/shop-build", 3, building=False, result="FAILURE", duration=120_000)
    jenkins.add_build("shop/shop-build", _build(5))
    second = run_once(coll, store)
    assert second.new == 2  # #3 now that it finished, and #5; #4 is re-read and deduped
    assert store.get_cursor("jenkins") == {"jobs": {"shop/shop-build": 5, "shop/shop-deploy": 1}}
    assert run_once(coll, store).new == 0

    builds = {(e.labels["job"], int(e.values["build_number"])): e for e in _events(store)}
    assert sorted(builds) == [("shop/shop-build", n) for n in range(1, 6)] + [("shop/shop-deploy", 1)]
    ids = [e.id for e in _events(store)]
    assert len(ids) == len(set(ids))
    first_build = builds[("shop/shop-build", 1)]
    assert (first_build.kind, first_build.entity) == ("build", "job:shop/shop-build")
    assert first_build.labels == {"job": "shop/shop-build", "result": "SUCCESS", "triggered_by": "scm"}
    assert first_build.values == {"duration_s": 60.001, "build_number": 1.0, "queue_s": 1.5}
    assert first_build.attrs["commits"] == ["sha1"]
    assert first_build.ts == T0 + timedelta(minutes=10)
    deploy = builds[("shop/shop-deploy", 1)]
    assert (deploy.kind, deploy.labels["triggered_by"]) == ("deploy", "upstream:shop/shop-build")
    assert builds[("shop/shop-build", 3)].labels["result"] == "FAILURE"


def test_test_reports_become_test_run_events_with_newly_failing_cases(jenkins: FakeJenkins) -> None:
    jenkins.add_build("shop/shop-build", _build(1), test_report=_report(a="PASSED", b="PASSED", c="FAILED"))
    jenkins.add_build("shop/shop-build", _build(2, result="UNSTABLE"),
                      test_report=_report(a="PASSED", b="FAILED", c="FAILED", d="FAILED", e="SKIPPED"))
    jenkins.add_build("shop/shop-build", _build(3))  # no report: no test_run, no 404 asked for
    jenkins.add_build("shop/shop-build", _build(4), test_report=_report(a="PASSED", b="PASSED", e="SKIPPED"))
    store = Store("sqlite://")
    run_once(_collector(jenkins), store)
    runs = {int(e.values["build_number"]): e for e in _events(store, "test_run")}
    assert sorted(runs) == [1, 2, 4]
    # a clean build's counts come from its TestResultAction summary, without reading the report
    assert runs[4].values == {"passed": 2.0, "failed": 0.0, "skipped": 1.0, "fail_ratio": 0.0, "newly_failing": 0.0,
                              "build_number": 4.0}
    assert not any("/4/testReport" in r.path for r in jenkins.requests)
    two = runs[2]
    assert two.values == {"passed": 1.0, "failed": 3.0, "skipped": 1.0, "fail_ratio": 0.75, "newly_failing": 2.0,
                          "build_number": 2.0}
    assert two.attrs["failing_cases"] == ["shop.T.b", "shop.T.c", "shop.T.d"]
    assert two.attrs["newly_failing_cases"] == ["shop.T.b", "shop.T.d"]  # regression + first failure
    assert runs[1].values["newly_failing"] == 1.0  # c fails in the first build seen
    assert not any("/3/testReport" in r.path for r in jenkins.requests)


def test_a_crash_between_fetch_and_commit_loses_nothing_on_resume(jenkins: FakeJenkins,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for n in (1, 2, 3):
        jenkins.add_build("shop/shop-build", _build(n))
        jenkins.add_build("shop/shop-deploy", _build(n))
    store = Store("sqlite://")
    calls = {"n": 0}

    def on_batch(batch: Any, new: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("killed after the first commit")

    with pytest.raises(RuntimeError):
        run_once(_collector(jenkins), store, on_batch=on_batch)
    assert len(_events(store)) == 3
    real = Store._write_cursor
    state = {"n": 0}

    def flaky(self: Store, conn: Any, source: str, value: Any) -> None:
        state["n"] += 1
        if state["n"] == 1:  # the build job has nothing new (skipped): this is the deploy job's batch
            raise RuntimeError("power cut before the deploy job's commit")
        real(self, conn, source, value)

    monkeypatch.setattr(Store, "_write_cursor", flaky)
    with pytest.raises(RuntimeError, match="power cut"):
        run_once(_collector(jenkins), store)
    assert len(_events(store)) == 3
    assert run_once(_collector(jenkins), store).new == 3
    ids = [e.id for e in _events(store)]
    assert len(ids) == len(set(ids)) == 6


def test_a_401_is_a_clear_error_while_another_source_carries_on(jenkins: FakeJenkins) -> None:
    jenkins.add_build("shop/shop-build", _build(1))
    store = Store("sqlite://")
    sched = Scheduler(store, clock=lambda: T0)
    sched.add(_collector(jenkins, "jenkins-bad", token_env="JENKINS_BAD"), interval=timedelta(minutes=1), seed=1)
    sched.add(_collector(jenkins), interval=timedelta(minutes=1))
    out = sched.run_due(T0)
    err = out["jenkins-bad"]
    assert isinstance(err, SourceAuthError)
    assert "GET " in str(err)
    assert "/api/json?tree=jobs[name,_class,lastCompletedBuild[number]]: 401 Unauthorized: Error 401 Invalid password/token for user: opsradar" \
        in str(err)
    assert "check sources.jenkins-bad.user ('opsradar') and the API token in $JENKINS_BAD" in str(err)
    assert "nope" not in str(err)
    assert out["jenkins"].new == 1  # type: ignore[union-attr]
    assert sched.health()["jenkins-bad"].status == "failing"


def test_a_429_retry_after_is_honoured(jenkins: FakeJenkins) -> None:
    jenkins.add_build("shop/shop-build", _build(1))
    store = Store("sqlite://")
    sched = Scheduler(store, backoff_base=1, clock=lambda: T0)
    sched.add(_collector(jenkins), interval=timedelta(seconds=10), seed=0)
    jenkins.fail_next(429, retry_after=45, path="/job/")
    err = sched.run_due(T0)["jenkins"]
    assert isinstance(err, SourceUnavailable)
    assert err.retry_after == 45
    assert sched.health()["jenkins"].next_run == T0 + timedelta(seconds=45)
    assert sched.run_due(T0 + timedelta(seconds=44)) == {}
    assert sched.run_due(T0 + timedelta(seconds=45))["jenkins"].new == 1  # type: ignore[union-attr]


def test_more_new_builds_than_a_page_are_all_read(jenkins: FakeJenkins) -> None:
    jenkins.add_build("shop/shop-build", _build(1))
    store = Store("sqlite://")
    coll = _collector(jenkins, max_builds=3, jobs=["shop/shop-build"])
    assert run_once(coll, store).new == 1
    for n in range(2, 11):
        jenkins.add_build("shop/shop-build", _build(n))
    assert run_once(coll, store).new == 9
    trees = [r.query["tree"][0] for r in jenkins.requests if r.path == "/job/shop/job/shop-build/api/json"]
    assert [t[t.rindex("{"):] for t in trees[1:]] == ["{0,3}", "{3,6}", "{6,9}"]
    assert store.get_cursor("jenkins") == {"jobs": {"shop/shop-build": 10}}


def test_a_first_read_is_bounded_by_max_builds(jenkins: FakeJenkins) -> None:
    for n in range(1, 8):
        jenkins.add_build("shop/shop-build", _build(n))
    store = Store("sqlite://")
    assert run_once(_collector(jenkins, max_builds=4, jobs=["shop/shop-build"]), store).new == 4
    assert store.get_cursor("jenkins") == {"jobs": {"shop/shop-build": 7}}


def test_malformed_builds_are_rejected_with_the_reason_and_the_rest_kept(jenkins: FakeJenkins) -> None:
    jenkins.add_build("shop/shop-build", _build(1))
    jenkins.add_build("shop/shop-build", _build(2, duration="slow"))
    jenkins.add_build("shop/shop-build", _build(3))
    jenkins.update_build("shop/shop-build", 3, timestamp=-5)
    jenkins.add_build("shop/shop-build", _build(4))
    result = run_once(_collector(jenkins, jobs=["shop/shop-build"]), Store("sqlite://"))
    assert result.new == 2
    assert {r.record_id: r.reason for r in result.rejected} == {
        "shop/shop-build#2": "bad duration 'slow'", "shop/shop-build#3": "bad timestamp -5"}


def test_jobs_in_nested_folders_are_found(jenkins: FakeJenkins) -> None:
    jenkins.add_job("platform/infra/terraform-deploy")
    jenkins.add_build("platform/infra/terraform-deploy", _build(1))
    coll = _collector(jenkins)
    assert coll.jobs() == ["platform/infra/terraform-deploy", "shop/shop-build", "shop/shop-deploy"]
    store = Store("sqlite://")
    run_once(coll, store)
    (event,) = _events(store)
    assert (event.kind, event.entity) == ("deploy", "job:platform/infra/terraform-deploy")


def test_a_folder_named_as_a_job_is_a_data_error(jenkins: FakeJenkins) -> None:
    with pytest.raises(SourceDataError, match="check that 'shop' is a job"):
        list(_collector(jenkins, jobs=["shop"]).pull(None))


def test_an_html_answer_is_a_data_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>Please sign in</html>", headers={"Content-Type": "text/html"})

    source = JenkinsSource(url="https://ci.example", jobs=["x"])
    coll = jc.JenkinsCollector("jenkins", source, client=jc.make_client(source, transport=httpx.MockTransport(handler)))
    with pytest.raises(SourceDataError, match="expected JSON"):
        list(coll.pull(None))


def test_a_timeout_is_unavailable(jenkins: FakeJenkins) -> None:
    jenkins.fail_next(200, delay=1.5)
    with pytest.raises(SourceUnavailable, match="timed out"):
        list(_collector(jenkins, timeout="0.5s").pull(None))


def test_the_registry_builds_a_jenkins_collector(jenkins: FakeJenkins) -> None:
    coll = build_collector("jenkins", JenkinsSource(url=jenkins.url))
    assert isinstance(coll, jc.JenkinsCollector)
    coll.close()


@pytest.mark.parametrize(("causes", "label"), [
    ([], "other"),
    ([{"_class": "hudson.triggers.TimerTrigger$TimerTriggerCause"}], "timer"),
    ([{"_class": "hudson.model.Cause$RemoteCause", "addr": "10.0.0.1"}], "remote"),
    ([{"_class": "jenkins.branch.BranchIndexingCause"}], "branch-indexing"),
    ([{"_class": "hudson.model.Cause$UserIdCause", "userId": "bo"}, {"_class": "x"}], "user:bo"),
])
def test_triggered_by(causes: list[dict[str, Any]], label: str) -> None:
    actions = [{"_class": "hudson.model.CauseAction", "causes": causes}, {}]
    assert jc.triggered_by(actions)[0] == label


def test_until_holds_builds_started_later(jenkins: FakeJenkins) -> None:
    for n in range(1, 5):
        jenkins.add_build("shop/shop-build", _build(n))  # started at T0 + 10n minutes
    store = Store("sqlite://")
    coll = _collector(jenkins, jobs=["shop/shop-build"])
    assert run_once(coll, store, until=T0 + timedelta(minutes=25)).new == 2
    assert store.get_cursor("jenkins") == {"jobs": {"shop/shop-build": 2}}
    assert run_once(coll, store).new == 2


def test_an_idle_poll_reads_only_the_job_listing(jenkins: FakeJenkins) -> None:
    jenkins.add_build("shop/shop-build", _build(1))
    jenkins.add_build("shop/shop-deploy", _build(1))
    store = Store("sqlite://")
    coll = _collector(jenkins)
    assert run_once(coll, store).new == 2
    before = len(jenkins.requests)
    assert run_once(coll, store).new == 0
    assert [r.path for r in jenkins.requests[before:]] == ["/api/json", "/job/shop/api/json"]  # root, folder
    # a running build is not worth reading; a finished one is, in its own job only
    jenkins.add_build("shop/shop-build", {"number": 2, "building": True, "timestamp": T0 + timedelta(hours=1)})
    jenkins.add_build("shop/shop-deploy", _build(2))
    before = len(jenkins.requests)
    assert run_once(coll, store).new == 1
    assert [r.path for r in jenkins.requests[before:]] == ["/api/json", "/job/shop/api/json",
                                                          "/job/shop/job/shop-deploy/api/json"]
    jenkins.update_build("shop/shop-build", 2, building=False, result="SUCCESS", duration=1000)
    assert run_once(coll, store).new == 1
    assert store.get_cursor("jenkins") == {"jobs": {"shop/shop-build": 2, "shop/shop-deploy": 2}}


def test_configured_jobs_are_checked_with_one_listing_request(jenkins: FakeJenkins) -> None:
    jenkins.add_job("platform/infra/terraform-deploy")
    jenkins.add_build("platform/infra/terraform-deploy", _build(1))
    jenkins.add_build("shop/shop-build", _build(1))
    store = Store("sqlite://")
    coll = _collector(jenkins, jobs=["platform/infra/terraform-deploy", "shop/shop-build", "shop/gone"])
    assert run_once(coll, store).new == 2
    before = len(jenkins.requests)
    result = run_once(coll, store)
    assert result.new == 0
    listing, gone = jenkins.requests[before:]  # the job the listing does not show is still asked for
    assert (listing.path, gone.path) == ("/api/json", "/job/shop/job/gone/api/json")
    assert (listing.arg("tree") or "").count("lastCompletedBuild[number]") == 3  # as deep as the deepest job
    assert [r.record_id for r in result.rejected] == ["shop/gone"]


def test_a_missing_job_is_rejected_and_the_others_are_read(jenkins: FakeJenkins) -> None:
    jenkins.add_build("shop/shop-build", _build(1))
    result = run_once(_collector(jenkins, jobs=["shop/gone", "shop/shop-build"]), Store("sqlite://"))
    assert result.new == 1
    assert [(r.record_id, r.reason) for r in result.rejected] == [
        ("shop/gone", "no such job (404): check sources.jenkins.jobs")]

"""The Jira collector against the loopback Jira fake: incremental, resumable, paged, and clear on errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from opsradar.collectors.base import run_once
from opsradar.collectors.jira import JiraCollector, issue_events, make_client
from opsradar.collectors.registry import build_collector
from opsradar.collectors.scheduler import Scheduler
from opsradar.config import JiraSource
from opsradar.demo.fakes.jira import FakeJira
from opsradar.errors import SourceAuthError, SourceDataError, SourceUnavailable
from opsradar.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _issue(key: str, at: datetime, *, itype: str = "Story", priority: str = "Medium") -> dict[str, Any]:
    return {"key": key, "fields": {
        "summary": f"{key} summary", "issuetype": {"name": itype}, "priority": {"name": priority},
        "status": {"name": "Open", "statusCategory": {"key": "new"}}, "labels": ["web"],
        "assignee": {"name": "ana", "displayName": "Ana"}, "created": at, "updated": at}}


@pytest.fixture
def jira(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJira]:
    monkeypatch.setenv("JIRA_TOKEN", "token")
    monkeypatch.setenv("JIRA_BAD", "nope")
    fake = FakeJira(users={"bot": "token"}, pats={"bot": "pat-1"})
    fake.add_project("PAY")
    with fake:
        yield fake


def _source(fake: FakeJira, **kw: Any) -> JiraSource:
    opts: dict[str, Any] = {"url": fake.url, "projects": ["SHOP", "PAY"], "user": "bot", "token_env": "JIRA_TOKEN",
                            "page_size": 3, "overlap": "5m"}
    opts.update(kw)
    return JiraSource(**opts)


def _collector(fake: FakeJira, name: str = "jira", **kw: Any) -> JiraCollector:
    return JiraCollector(name, _source(fake, **kw))


def _ids(store: Store) -> list[str]:
    return [e.id for e in store.iter_events(source="jira")]


def test_incremental_pull_over_two_runs_has_no_gaps_and_no_duplicates(jira: FakeJira) -> None:
    for n in range(1, 8):
        jira.add_issue(_issue(f"SHOP-{n}", T0 + timedelta(minutes=n)))
    store = Store("sqlite://")
    coll = _collector(jira)
    first = run_once(coll, store)
    assert (first.new, first.batches) == (7, 3)  # 7 creations, pages of 3
    assert store.get_cursor("jira") == {"updated": (T0 + timedelta(minutes=7)).isoformat()}

    # time passes: new issues, a late change to an old issue, a reopen
    jira.transition("SHOP-2", "Done", at=T0 + timedelta(hours=1))
    jira.add_issue(_issue("PAY-1", T0 + timedelta(hours=1, minutes=5), itype="Incident"))
    jira.transition("SHOP-2", "Reopened", at=T0 + timedelta(hours=2))
    second = run_once(coll, store)
    assert second.new == 3  # Done, PAY-1 created, Reopened
    third = run_once(coll, store)
    assert third.new == 0  # the overlap re-reads, dedup drops

    ids = _ids(store)
    assert len(ids) == len(set(ids)) == 10
    # the second search started at the cursor minus the 5 minute overlap, to the minute
    jqls = [r.query["jql"][0] for r in jira.requests if r.path.endswith("/search")]
    assert 'updated >= "2026/03/02 09:02"' in jqls[-2]
    events = {(e.labels["issue_key"], e.labels["change"], e.labels.get("transition")): e
              for e in store.iter_events(source="jira")}
    reopened = events[("SHOP-2", "transition", "Done->Reopened")]
    assert reopened.labels["reopened"] == "true"
    assert reopened.values["reopen_count"] == 1.0
    assert reopened.values["time_in_status_h"] == 1.0
    resolved = events[("SHOP-2", "transition", "Open->Done")]
    assert resolved.labels["resolved"] == "true"
    assert resolved.values["cycle_time_h"] == pytest.approx(58 / 60)
    assert events[("PAY-1", "created", None)].labels["incident"] == "true"
    assert events[("PAY-1", "created", None)].entity == "project:PAY"


def test_a_crash_between_fetch_and_commit_loses_nothing_on_resume(jira: FakeJira,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(1, 8):
        jira.add_issue(_issue(f"SHOP-{n}", T0 + timedelta(minutes=n)))
    store = Store("sqlite://")
    calls = {"n": 0}
    real = Store._write_cursor

    def flaky(self: Store, conn: Any, source: str, value: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second batch dies before its commit
            raise RuntimeError("power cut")
        real(self, conn, source, value)

    monkeypatch.setattr(Store, "_write_cursor", flaky)
    with pytest.raises(RuntimeError, match="power cut"):
        run_once(_collector(jira), store)
    assert store.count_events(source="jira") == 3  # only the first batch was committed
    assert store.get_cursor("jira") == {"updated": (T0 + timedelta(minutes=3)).isoformat()}
    resumed = run_once(_collector(jira), store)
    assert resumed.new == 4
    ids = _ids(store)
    assert len(ids) == len(set(ids)) == 7


def test_a_401_is_a_clear_error_while_another_source_carries_on(jira: FakeJira, caplog: pytest.LogCaptureFixture) -> None:
    jira.add_issue(_issue("SHOP-1", T0))
    store = Store("sqlite://")
    sched = Scheduler(store, clock=lambda: T0)
    sched.add(_collector(jira, "jira-bad", token_env="JIRA_BAD"), interval=timedelta(minutes=1), seed=1)
    sched.add(_collector(jira, "jira"), interval=timedelta(minutes=1))
    out = sched.run_due(T0)
    err = out["jira-bad"]
    assert isinstance(err, SourceAuthError)
    assert str(err).startswith("source 'jira-bad': GET ")
    assert "401 Unauthorized: Client must be authenticated to access this resource." in str(err)
    assert "check sources.jira-bad.user ('bot') and the API token in $JIRA_BAD" in str(err)
    assert "nope" not in str(err)  # the secret never shows
    assert out["jira"].new == 1  # type: ignore[union-attr]
    health = sched.health()
    assert (health["jira-bad"].status, health["jira"].status) == ("failing", "ok")


def test_a_429_retry_after_is_honoured(jira: FakeJira) -> None:
    jira.add_issue(_issue("SHOP-1", T0))
    store = Store("sqlite://")
    sched = Scheduler(store, backoff_base=1, clock=lambda: T0)
    sched.add(_collector(jira), interval=timedelta(seconds=10), seed=0)
    jira.throttle(retry_after=120)
    err = sched.run_due(T0)["jira"]
    assert isinstance(err, SourceUnavailable)
    assert err.retry_after == 120
    assert "429 Too Many Requests" in str(err)
    assert sched.health()["jira"].next_run == T0 + timedelta(seconds=120)
    assert sched.run_due(T0 + timedelta(seconds=119)) == {}
    assert sched.run_due(T0 + timedelta(seconds=120))["jira"].new == 1  # type: ignore[union-attr]


def test_pagination_follows_what_the_server_returned_not_what_was_asked() -> None:
    fake = FakeJira(users={"bot": "token"}, max_results=2)  # Jira caps maxResults
    for n in range(1, 6):
        fake.add_issue(_issue(f"SHOP-{n}", T0 + timedelta(minutes=n)))
    with fake:
        source = JiraSource(url=fake.url, projects=["SHOP"], page_size=50)
        coll = JiraCollector("jira", source, client=httpx.Client(base_url=fake.url, auth=("bot", "token")))
        result = run_once(coll, Store("sqlite://"))
        starts = [r.query["startAt"][0] for r in fake.requests if r.path.endswith("/search")]
    assert (result.new, result.batches) == (5, 3)
    assert starts == ["0", "2", "4"]


def test_malformed_issues_are_rejected_with_the_reason_and_the_rest_kept(jira: FakeJira) -> None:
    jira.add_issue(_issue("SHOP-1", T0))
    bad_date = _issue("SHOP-2", T0 + timedelta(minutes=1))
    bad_date["fields"]["created"] = "yesterday"
    jira.add_issue(bad_date)
    no_type = _issue("SHOP-3", T0 + timedelta(minutes=2))
    del no_type["fields"]["issuetype"]
    jira.add_issue(no_type)
    jira.add_issue(_issue("SHOP-4", T0 + timedelta(minutes=3)))
    result = run_once(_collector(jira), Store("sqlite://"))
    assert result.new == 2
    reasons = {r.record_id: r.reason for r in result.rejected}
    assert reasons == {"SHOP-2": "invalid timestamp 'yesterday'", "SHOP-3": "missing fields.issuetype.name"}


def test_a_truncated_changelog_is_read_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeJira(pats={"bot": "pat-1"}, changelog_limit=2)
    fake.add_issue(_issue("SHOP-1", T0))
    for n, status in enumerate(["In Progress", "Review", "Done", "Reopened", "Done"], 1):
        fake.transition("SHOP-1", status, at=T0 + timedelta(hours=n))
    monkeypatch.setenv("JIRA_PAT", "pat-1")
    with fake:
        coll = JiraCollector("jira", JiraSource(url=fake.url, projects=["SHOP"], pat_env="JIRA_PAT", api_version=3))
        store = Store("sqlite://")
        result = run_once(coll, store)
        assert any(r.path == "/rest/api/3/issue/SHOP-1/changelog" for r in fake.requests)
    assert result.new == 6
    last = max(store.iter_events(source="jira"), key=lambda e: e.ts)
    assert last.labels["transition"] == "Reopened->Done"
    assert last.values["reopen_count"] == 1.0
    assert last.values["cycle_time_h"] == 5.0


def test_jql_dates_are_written_in_the_jira_users_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIRA_TOKEN", "token")
    fake = FakeJira(users={"bot": "token"}, timezone="America/New_York")
    fake.add_issue(_issue("SHOP-1", T0))
    with fake:
        coll = _collector(fake, projects=["SHOP"])
        store = Store("sqlite://")
        run_once(coll, store)
        fake.add_issue(_issue("SHOP-2", T0 + timedelta(minutes=1)))  # late: within the overlap
        assert run_once(coll, store).new == 1
        jql = [r.query["jql"][0] for r in fake.requests if r.path.endswith("/search")][-1]
    assert 'updated >= "2026/03/02 03:55"' in jql  # 09:00 UTC − 5m, in New York (UTC−5)


def test_a_non_json_answer_is_a_data_error_with_a_hint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/myself"):
            return httpx.Response(200, json={"timeZone": "UTC"})
        return httpx.Response(200, text="<html>login</html>", headers={"Content-Type": "text/html"})

    source = JiraSource(url="https://jira.example", projects=["SHOP"])
    coll = JiraCollector("jira", source, client=make_client(source, transport=httpx.MockTransport(handler)))
    with pytest.raises(SourceDataError, match=r"expected JSON, got 'text/html'.*check that the url"):
        list(coll.pull({"updated": T0.isoformat()}))


def test_a_connection_refused_is_unavailable() -> None:
    source = JiraSource(url="http://127.0.0.1:9", projects=["SHOP"], timeout="2s")
    with pytest.raises(SourceUnavailable, match=r"cannot connect.*check the source's url"):
        list(JiraCollector("jira", source).pull(None))


def test_the_registry_builds_a_jira_collector(jira: FakeJira) -> None:
    coll = build_collector("jira", _source(jira))
    assert isinstance(coll, JiraCollector)
    coll.close()


def test_issue_events_only_emits_changes_at_or_after_since() -> None:
    issue = {"key": "SHOP-1", "fields": {
        "issuetype": {"name": "Bug"}, "status": {"name": "Done", "statusCategory": {"key": "done"}},
        "created": "2026-03-02T09:00:00.000+0000", "updated": "2026-03-02T12:00:00.000+0000",
        "priority": None, "assignee": None},
        "changelog": {"total": 2, "histories": [
            {"id": "2", "created": "2026-03-02T12:00:00.000+0000",
             "items": [{"field": "status", "fromString": "Doing", "toString": "Done"}]},
            {"id": "1", "created": "2026-03-02T10:00:00.000+0000",
             "items": [{"field": "status", "fromString": "Open", "toString": "Doing"},
                       {"field": "assignee", "from": None, "to": "ana", "toString": "Ana"}]},
            {"id": "3", "created": "2026-03-02T12:00:00.000+0000", "items": [{"field": "description"}]}]}}
    events = issue_events(issue, source="jira", incident_types={"bug"}, done_statuses=set(),
                          since=datetime(2026, 3, 2, 11, tzinfo=UTC))
    assert len(events) == 1
    (done,) = events
    assert done.labels["transition"] == "Doing->Done"
    assert done.labels["resolved"] == "true"  # Jira's 'done' category counts
    assert (done.labels["priority"], done.labels["assignee"], done.labels["incident"]) == ("none", "ana", "true")
    assert done.values == {"time_in_status_h": 2.0, "cycle_time_h": 3.0, "reopen_count": 0.0}


def test_jira_cloud_is_searched_with_search_jql_and_next_page_tokens(jira: FakeJira) -> None:
    for n in range(1, 8):
        jira.add_issue(_issue(f"SHOP-{n}", T0 + timedelta(minutes=n)))
    store = Store("sqlite://")
    result = run_once(_collector(jira, api_version=3), store)
    searches = [r for r in jira.requests if "/search" in r.path]
    assert {r.path for r in searches} == {"/rest/api/3/search/jql"}
    assert [("nextPageToken" in r.query) for r in searches] == [False, True, True]
    assert (result.new, result.batches) == (7, 3)
    jira.transition("SHOP-7", "Done", at=T0 + timedelta(hours=1))
    assert run_once(_collector(jira, api_version=3), store).new == 1


def test_a_410_gone_search_switches_to_the_enhanced_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIRA_TOKEN", "token")
    fake = FakeJira(users={"bot": "token"}, legacy_search_removed=True)
    for n in range(1, 5):
        fake.add_issue(_issue(f"SHOP-{n}", T0 + timedelta(minutes=n)))
    with fake:
        coll = _collector(fake, projects=["SHOP"])
        store = Store("sqlite://")
        assert run_once(coll, store).new == 4
        assert run_once(coll, store).new == 0
        paths = [r.path for r in fake.requests if "/search" in r.path]
    assert paths[0] == "/rest/api/2/search"  # once: then the collector remembers
    assert paths[1:] == ["/rest/api/2/search/jql"] * (len(paths) - 1)
    ids = _ids(store)
    assert len(ids) == len(set(ids)) == 4


def test_until_stops_the_pull_and_the_cursor_there(jira: FakeJira) -> None:
    for n in range(1, 6):
        jira.add_issue(_issue(f"SHOP-{n}", T0 + timedelta(minutes=n)))
    store = Store("sqlite://")
    result = run_once(_collector(jira), store, until=T0 + timedelta(minutes=3))
    assert result.new == 3
    assert store.get_cursor("jira") == {"updated": (T0 + timedelta(minutes=3)).isoformat()}
    assert run_once(_collector(jira), store).new == 2


def test_labels_are_replayed_from_the_changelog_as_they_stood_at_each_change() -> None:
    issue = {"key": "SHOP-9", "fields": {
        "issuetype": {"name": "Incident"}, "priority": {"name": "Highest"}, "assignee": {"name": "bo"},
        "status": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}},
        "created": "2026-03-02T09:00:00.000+0000", "updated": "2026-03-02T11:00:00.000+0000"},
        "changelog": {"histories": [
            {"id": "1", "created": "2026-03-02T10:00:00.000+0000", "items": [
                {"field": "priority", "fromString": "Medium", "toString": "Highest"},
                {"field": "issuetype", "fromString": "Bug", "toString": "Incident"}]},
            {"id": "2", "created": "2026-03-02T11:00:00.000+0000", "items": [
                {"field": "status", "fromString": "Open", "toString": "In Progress"},
                {"field": "assignee", "from": "ana", "fromString": "Ana", "to": "bo", "toString": "Bo"}]}]}}
    created, escalated, started = issue_events(issue, source="jira", incident_types={"incident"}, done_statuses=set())
    assert [created.labels[k] for k in ("priority", "issue_type", "incident", "assignee", "status")] == [
        "Medium", "Bug", "false", "ana", "Open"]
    assert escalated.labels["change"] == "priority"
    assert [escalated.labels[k] for k in ("priority", "issue_type", "incident")] == ["Highest", "Incident", "true"]
    assert [started.labels[k] for k in ("assignee", "status", "transition")] == ["bo", "In Progress", "Open->In Progress"]
    assert started.values["time_in_status_h"] == 2.0

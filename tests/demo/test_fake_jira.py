"""The Jira fake answers with the shapes Jira documents (search, changelog, errors, auth, 429)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from opsradar.demo.fakes.jira import FakeJira, JqlError, parse_jql

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _issue(key: str, minutes: int, *, status: str = "Open", itype: str = "Bug") -> dict[str, Any]:
    return {"key": key, "fields": {
        "summary": f"issue {key}", "issuetype": {"name": itype}, "priority": {"name": "Medium"},
        "status": {"name": status, "statusCategory": {"key": "new"}}, "labels": [],
        "assignee": {"name": "ana", "displayName": "Ana"},
        "created": T0 + timedelta(minutes=minutes), "updated": T0 + timedelta(minutes=minutes)}}


@pytest.fixture
def jira() -> Iterator[FakeJira]:
    fake = FakeJira(users={"bot": "token"}, pats={"bot": "pat-123"}, max_results=3)
    for n in range(1, 8):
        fake.add_issue(_issue(f"SHOP-{n}", n * 10))
    fake.add_issue(_issue("PAY-1", 5))
    with fake:
        yield fake


def _search(jira: FakeJira, jql: str, **params: Any) -> httpx.Response:
    return httpx.get(jira.url + "/rest/api/2/search", auth=("bot", "token"), params={"jql": jql, **params})


def test_search_page_has_the_documented_shape_and_caps_max_results(jira: FakeJira) -> None:
    r = _search(jira, "project in (SHOP) ORDER BY updated ASC", maxResults=50, expand="changelog")
    assert r.status_code == 200
    page = r.json()
    # SearchResults: expand, startAt, maxResults, total, issues (Jira REST v2/v3 docs)
    assert set(page) == {"expand", "startAt", "maxResults", "total", "issues"}
    assert (page["startAt"], page["maxResults"], page["total"]) == (0, 3, 7)
    issue = page["issues"][0]
    assert set(issue) == {"expand", "id", "self", "key", "fields", "changelog"}
    assert set(issue["changelog"]) == {"startAt", "maxResults", "total", "histories"}
    assert issue["fields"]["created"] == "2026-03-02T09:10:00.000+0000"
    assert issue["fields"]["project"]["key"] == "SHOP"


def test_pagination_with_start_at_covers_every_issue_once(jira: FakeJira) -> None:
    keys: list[str] = []
    start = 0
    while True:
        page = _search(jira, "project = SHOP ORDER BY updated ASC", startAt=start).json()
        keys += [i["key"] for i in page["issues"]]
        start += len(page["issues"])
        if start >= page["total"]:
            break
    assert keys == [f"SHOP-{n}" for n in range(1, 8)]


def test_jql_date_bounds_are_read_in_the_users_time_zone() -> None:
    fake = FakeJira(users={"bot": "token"}, timezone="Europe/Berlin")
    fake.add_issue(_issue("SHOP-1", 0))  # 09:00 UTC = 10:00 in Berlin
    with fake:
        at_ten = _search(fake, 'project = SHOP AND updated >= "2026/03/02 10:00"').json()
        after_ten = _search(fake, 'project = SHOP AND updated > "2026-03-02 10:00"').json()
        me = httpx.get(fake.url + "/rest/api/3/myself", auth=("bot", "token")).json()
    assert at_ten["total"] == 1
    assert after_ten["total"] == 0
    assert me["timeZone"] == "Europe/Berlin"


@pytest.mark.parametrize(("jql", "message"), [
    ("project = SHOP AND foo = 1", "Field 'foo' does not exist or you do not have permission to view it."),
    ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
    ("project SHOP", "Error in the JQL Query: Expecting operator but got 'SHOP'. (line 1, character 9)"),
    ('updated >= "yesterday"', "Date value 'yesterday' for field 'updated' is invalid."),
])
def test_bad_jql_is_a_400_with_jiras_error_shape(jira: FakeJira, jql: str, message: str) -> None:
    r = _search(jira, jql)
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"errorMessages", "warningMessages"}
    assert body["errorMessages"][0].startswith(message)


def test_parse_jql_rejects_or_and_unbalanced_parentheses() -> None:
    with pytest.raises(JqlError, match="'OR' is not supported"):
        parse_jql("project = A OR project = B")
    with pytest.raises(JqlError, match=r"Expecting '\)'"):
        parse_jql("(project = A")
    assert parse_jql("(issuetype in (Bug, Incident)) AND project = A").clauses[0].values == ("Bug", "Incident")


def test_wrong_credentials_get_jiras_401_and_a_pat_works(jira: FakeJira) -> None:
    bad = httpx.get(jira.url + "/rest/api/2/search", auth=("bot", "wrong"), params={"jql": "project = SHOP"})
    assert bad.status_code == 401
    assert bad.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"
    assert bad.json()["message"] == "Client must be authenticated to access this resource."
    ok = httpx.get(jira.url + "/rest/api/3/search", headers={"Authorization": "Bearer pat-123"},
                   params={"jql": "project = SHOP"})
    assert ok.status_code == 200
    assert ok.json()["total"] == 7


def test_throttle_answers_429_with_retry_after(jira: FakeJira) -> None:
    jira.throttle(retry_after=7)
    r = _search(jira, "project = SHOP")
    assert (r.status_code, r.headers["Retry-After"]) == (429, "7")
    assert _search(jira, "project = SHOP").status_code == 200


def test_transitions_build_the_changelog_and_resolution(jira: FakeJira) -> None:
    jira.transition("SHOP-1", "In Progress", at=T0 + timedelta(hours=1), author="ana")
    jira.transition("SHOP-1", "Done", at=T0 + timedelta(hours=2))
    done = jira.get_issue("SHOP-1")
    assert done["fields"]["resolutiondate"] == "2026-03-02T11:00:00.000+0000"
    assert done["fields"]["status"]["statusCategory"]["key"] == "done"
    jira.transition("SHOP-1", "Reopened", at=T0 + timedelta(hours=3), assignee={"name": "bo", "displayName": "Bo"})
    issue = jira.get_issue("SHOP-1")
    assert issue["fields"]["resolutiondate"] is None
    assert issue["fields"]["updated"] == "2026-03-02T12:00:00.000+0000"
    hist = issue["changelog"]["histories"]
    assert [h["items"][0]["toString"] for h in hist] == ["In Progress", "Done", "Reopened"]
    assert hist[2]["items"][1] == {"field": "assignee", "fieldtype": "jira", "from": "ana", "fromString": "Ana",
                                   "to": "bo", "toString": "Bo"}
    assert len({h["id"] for h in hist}) == 3


def test_search_truncates_changelogs_and_the_changelog_endpoint_pages_them() -> None:
    fake = FakeJira(users={"bot": "token"}, changelog_limit=2)
    fake.add_issue(_issue("SHOP-1", 0))
    for n, status in enumerate(["A", "B", "C", "D", "E"], 1):
        fake.transition("SHOP-1", status, at=T0 + timedelta(minutes=n))
    with fake:
        page = _search(fake, "project = SHOP", expand="changelog").json()
        cl = page["issues"][0]["changelog"]
        assert (cl["total"], len(cl["histories"])) == (5, 2)
        assert [h["items"][0]["toString"] for h in cl["histories"]] == ["D", "E"]
        first = httpx.get(fake.url + "/rest/api/2/issue/SHOP-1/changelog", auth=("bot", "token"),
                          params={"maxResults": 3}).json()
        # PageBeanChangelog: self, maxResults, startAt, total, isLast, values (+ nextPage)
        assert {"self", "maxResults", "startAt", "total", "isLast", "values"} <= set(first)
        assert (first["total"], first["isLast"], len(first["values"])) == (5, False, 3)
        rest = httpx.get(fake.url + "/rest/api/2/issue/SHOP-1/changelog", auth=("bot", "token"),
                         params={"startAt": 3, "maxResults": 3}).json()
        assert rest["isLast"] is True
        assert [h["items"][0]["toString"] for h in first["values"] + rest["values"]] == list("ABCDE")
        missing = httpx.get(fake.url + "/rest/api/2/issue/SHOP-99/changelog", auth=("bot", "token"))
    assert missing.status_code == 404
    assert missing.json() == {"errorMessages": ["Issue does not exist or you do not have permission to see it."],
                              "errors": {}}


def test_upsert_replaces_an_issue_and_keeps_its_id(jira: FakeJira) -> None:
    before = jira.get_issue("SHOP-2")
    changed = _issue("SHOP-2", 500, status="In Progress")
    after = jira.upsert_issue(changed)
    assert after["id"] == before["id"]
    assert after["fields"]["status"]["name"] == "In Progress"
    with pytest.raises(ValueError, match="already exists"):
        jira.add_issue(changed)
    with pytest.raises(ValueError, match="issue key must look like"):
        jira.add_issue({"key": "shop", "fields": {"updated": T0}})


def test_enhanced_search_pages_with_next_page_token_and_has_no_total(jira: FakeJira) -> None:
    keys: list[str] = []
    token = None
    pages = 0
    while True:
        params: dict[str, str] = {"jql": "project = SHOP ORDER BY updated ASC", "fields": "summary,updated"}
        if token:
            params["nextPageToken"] = token
        page = httpx.get(jira.url + "/rest/api/3/search/jql", auth=("bot", "token"), params=params).json()
        pages += 1
        assert "total" not in page
        assert set(page["issues"][0]["fields"]) == {"summary", "updated"}
        keys += [i["key"] for i in page["issues"]]
        if page["isLast"]:
            assert "nextPageToken" not in page
            break
        token = page["nextPageToken"]
    assert (keys, pages) == ([f"SHOP-{n}" for n in range(1, 8)], 3)
    ids_only = httpx.get(jira.url + "/rest/api/3/search/jql", auth=("bot", "token"), params={"jql": "project = SHOP"})
    assert ids_only.json()["issues"][0]["fields"] == {}
    unbounded = httpx.get(jira.url + "/rest/api/3/search/jql", auth=("bot", "token"), params={"jql": ""})
    assert unbounded.status_code == 400
    assert unbounded.json()["errorMessages"][0].startswith("Unbounded JQL queries are not allowed here.")
    forged = httpx.get(jira.url + "/rest/api/3/search/jql", auth=("bot", "token"),
                       params={"jql": "project = PAY", "nextPageToken": token or "x"})
    assert forged.status_code == 400


def test_the_legacy_search_can_be_gone_as_on_jira_cloud() -> None:
    fake = FakeJira(users={"bot": "token"}, legacy_search_removed=True)
    fake.add_issue(_issue("SHOP-1", 0))
    with fake:
        gone = _search(fake, "project = SHOP")
    assert gone.status_code == 410
    assert gone.json()["errorMessages"][0].startswith("The requested API has been removed. Please migrate to the "
                                                      "/rest/api/3/search/jql API.")

"""A loopback fake of the Jira REST API (Cloud ``/rest/api/3`` and Server/DC ``/rest/api/2``).

It serves what the Jira collector reads, with Jira's documented shapes:

- ``GET /rest/api/{2,3}/search``: ``jql``, ``startAt``, ``maxResults`` (capped like Jira; the answer
  says the effective value), ``fields``, ``expand=changelog``. The answer is ``{"expand", "startAt",
  "maxResults", "total", "issues": [...]}``; each issue is ``{"expand", "id", "self", "key", "fields",
  "changelog": {"startAt", "maxResults", "total", "histories"}}``. As on Jira Cloud, a search returns
  at most ``changelog_limit`` histories per issue (the newest), with the real ``total``.
- ``GET /rest/api/{2,3}/search/jql``: Jira Cloud's enhanced search (the old ``/search`` is removed
  from Cloud, CHANGE-2046): ``nextPageToken`` paging, ``{"issues", "isLast", "nextPageToken"}`` and
  no ``total``; only ids unless ``fields`` are asked for; an empty (unbounded) JQL is a 400. With
  ``legacy_search_removed=True`` the old ``/search`` answers 410 Gone, as Cloud now does.
- ``GET /rest/api/{2,3}/issue/{key}/changelog``: a page ``{"self", "maxResults", "startAt", "total",
  "isLast", "values": [...]}``, oldest first; unknown issue → 404 with Jira's ``errorMessages``.
- ``GET /rest/api/{2,3}/myself``: the user, with the ``timeZone`` in which JQL dates are read.

JQL: the subset the collector writes is parsed, anything else is answered 400 with Jira's error shape
(``{"errorMessages": [...], "warningMessages": []}``): clauses joined by ``AND`` (optionally in
parentheses) on ``project``, ``key``, ``issuetype``, ``status``, ``priority`` (``=``, ``!=``, ``in``,
``not in``) and ``created`` / ``updated`` / ``resolutiondate`` (``=``, ``>``, ``>=``, ``<``, ``<=`` with
``"yyyy/MM/dd HH:mm"``, ``"yyyy-MM-dd HH:mm"``, ``"yyyy/MM/dd"`` or ``"yyyy-MM-dd"``, read in the
user's time zone, to the minute), then ``ORDER BY`` ``updated``, ``created`` or ``key``, ``ASC``/``DESC``.

Auth: basic (user + API token) or a bearer personal access token; anything else is 401 with
``X-Seraph-LoginReason: AUTHENTICATED_FAILED``. ``throttle()`` answers 429 with ``Retry-After``.

The world loads issues in the REST shape and changes them as simulated time passes:

>>> from datetime import datetime, timezone
>>> import httpx
>>> jira = FakeJira(users={"bot": "token"})
>>> _ = jira.add_issue({"key": "SHOP-1", "fields": {
...     "summary": "Checkout fails", "issuetype": {"name": "Bug"}, "priority": {"name": "High"},
...     "status": {"name": "Open", "statusCategory": {"key": "new"}},
...     "created": datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc),
...     "updated": datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)}})
>>> _ = jira.transition("SHOP-1", "Done", at=datetime(2026, 3, 2, 11, 30, tzinfo=timezone.utc))
>>> with jira:
...     r = httpx.get(jira.url + "/rest/api/2/search", auth=("bot", "token"), params={
...         "jql": 'project in (SHOP) AND updated >= "2026/03/02 10:00" ORDER BY updated ASC',
...         "expand": "changelog"})
>>> page = r.json()
>>> page["total"], page["issues"][0]["fields"]["status"]["name"], page["issues"][0]["fields"]["resolutiondate"]
(1, 'Done', '2026-03-02T11:30:00.000+0000')
>>> [i["toString"] for h in page["issues"][0]["changelog"]["histories"] for i in h["items"]]
['Done']
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from opsradar.demo.fakes.base import FakeRequest, FakeServer, Response

__all__ = ["FakeJira", "JqlError", "format_jira_datetime", "parse_jira_datetime", "parse_jql"]

_NAVIGABLE = ("summary", "issuetype", "project", "priority", "status", "created", "updated",
              "resolutiondate", "assignee", "labels", "resolution", "reporter")
_DONE_NAMES = frozenset({"done", "resolved", "closed"})


def format_jira_datetime(value: datetime) -> str:
    """Jira's timestamp format: ``2026-03-02T09:00:00.000+0000``.

    >>> format_jira_datetime(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    '2026-03-02T09:00:00.000+0000'
    """
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: give a timezone")
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}" + value.strftime("%z")


def parse_jira_datetime(value: str) -> datetime:
    """Parse a Jira timestamp (``2026-03-02T09:00:00.000+0000``, or ISO 8601) to an aware datetime.

    >>> parse_jira_datetime("2015-11-21T07:03:02.000-0500").isoformat()
    '2015-11-21T07:03:02-05:00'
    """
    text = value.strip()
    m = re.fullmatch(r"(.*[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)([+-]\d\d)(\d\d)", text)
    if m:  # +0000 → +00:00 for fromisoformat
        text = f"{m.group(1)}{m.group(2)}:{m.group(3)}"
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no UTC offset")
    return parsed


# ---------------------------------------------------------------------------------------- JQL


class JqlError(ValueError):
    """A JQL query outside the supported subset; the message is the one Jira would give."""


@dataclass(frozen=True)
class _Clause:
    field: str
    op: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Jql:
    """A parsed query: clauses ANDed together, then the ORDER BY fields with their direction."""

    clauses: tuple[_Clause, ...]
    order_by: tuple[tuple[str, bool], ...]  # (field, descending)


_TOKEN = re.compile(r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>>=|<=|!=|!~|=|~|>|<|\(|\)|,)|(?P<word>[A-Za-z0-9_.\-]+))""")
_LIST_FIELDS = {"project", "key", "issuetype", "type", "status", "priority"}
_DATE_FIELDS = {"created", "updated", "resolutiondate", "resolved"}
_ORDER_FIELDS = {"updated", "created", "key"}


def _tokens(jql: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(jql):
        if jql[pos:].strip() == "":
            break
        m = _TOKEN.match(jql, pos)
        if not m:
            col = len(jql) - len(jql[pos:].lstrip()) + 1
            raise JqlError(f"Error in the JQL Query: The character '{jql[col - 1]}' is a reserved JQL character. "
                           f"You must enclose it in a string or use the escape '\\u{ord(jql[col - 1]):04x}' instead. "
                           f"(line 1, character {col})")
        kind = m.lastgroup or "word"
        text = m.group(kind)
        if kind == "str":
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        out.append((kind, text, m.start(kind) + 1))
        pos = m.end()
    return out


def parse_jql(jql: str) -> Jql:
    """Parse the supported JQL subset; raise :class:`JqlError` with Jira's message otherwise.

    >>> q = parse_jql('project in (SHOP, "PAY") AND updated >= "2026/03/02 09:00" ORDER BY updated ASC, key ASC')
    >>> [(c.field, c.op, c.values) for c in q.clauses], q.order_by
    ([('project', 'in', ('SHOP', 'PAY')), ('updated', '>=', ('2026/03/02 09:00',))], (('updated', False), ('key', False)))
    >>> parse_jql("project SHOP")
    Traceback (most recent call last):
    ...
    opsradar.demo.fakes.jira.JqlError: Error in the JQL Query: Expecting operator but got 'SHOP'. (line 1, character 9)
    """
    toks = _tokens(jql)
    i = 0

    def peek(k: int = 0) -> tuple[str, str, int] | None:
        return toks[i + k] if i + k < len(toks) else None

    def expect(what: str) -> tuple[str, str, int]:
        nonlocal i
        tok = peek()
        if tok is None:
            raise JqlError(f"Error in the JQL Query: Expecting {what} before the end of the query.")
        i += 1
        return tok

    def bad(what: str, tok: tuple[str, str, int]) -> JqlError:
        return JqlError(f"Error in the JQL Query: Expecting {what} but got '{tok[1]}'. (line 1, character {tok[2]})")

    clauses: list[_Clause] = []
    depth = 0
    while peek() is not None and not (peek()[0] == "word" and peek()[1].lower() == "order"):  # type: ignore[index]
        while peek() is not None and peek()[1] == "(" and peek()[0] == "op":  # type: ignore[index]
            depth += 1
            i += 1
        kind, name, col = expect("a field name")
        if kind == "op":
            raise bad("a field name", (kind, name, col))
        field = name.lower()
        if field not in _LIST_FIELDS | _DATE_FIELDS:
            raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
        okind, op, ocol = expect("operator")
        if okind == "word" and op.lower() == "not":
            nxt = expect("'in'")
            if nxt[1].lower() != "in":
                raise bad("'in'", nxt)
            op = "not in"
        elif okind == "word" and op.lower() == "in":
            op = "in"
        elif okind != "op" or op in "(),":
            raise bad("operator", (okind, op, ocol))
        if field in _DATE_FIELDS and op not in ("=", ">", ">=", "<", "<="):
            raise JqlError(f"The operator '{op}' is not supported by the '{name}' field.")
        if field in _LIST_FIELDS and op not in ("=", "!=", "in", "not in"):
            raise JqlError(f"The operator '{op}' is not supported by the '{name}' field.")
        values: list[str] = []
        if op in ("in", "not in"):
            tok = expect("'('")
            if tok[1] != "(":
                raise bad("'('", tok)
            while True:
                v = expect("a value")
                if v[0] == "op":
                    raise bad("a value", v)
                values.append(v[1])
                sep = expect("',' or ')'")
                if sep[1] == ")":
                    break
                if sep[1] != ",":
                    raise bad("',' or ')'", sep)
        else:
            v = expect("a value")
            if v[0] == "op":
                raise bad("a value", v)
            values.append(v[1])
        if field in _DATE_FIELDS:
            _parse_jql_date(values[0])  # validates
        clauses.append(_Clause("issuetype" if field == "type" else "resolutiondate" if field == "resolved" else field,
                               op, tuple(values)))
        while peek() is not None and peek()[1] == ")" and peek()[0] == "op":  # type: ignore[index]
            depth -= 1
            i += 1
            if depth < 0:
                raise bad("a field name", toks[i - 1])
        after = peek()
        if after is None or (after[0] == "word" and after[1].lower() == "order"):
            break
        if after[0] == "word" and after[1].lower() == "and":
            i += 1
            continue
        if after[0] == "word" and after[1].lower() == "or":
            raise JqlError("Error in the JQL Query: 'OR' is not supported by this fake; use 'in (...)'. "
                           f"(line 1, character {after[2]})")
        raise bad("either 'OR' or 'AND'", after)
    if depth != 0:
        raise JqlError("Error in the JQL Query: Expecting ')' before the end of the query.")
    order: list[tuple[str, bool]] = []
    if peek() is not None:
        i += 1
        by = expect("'by'")
        if by[1].lower() != "by":
            raise bad("'by'", by)
        while True:
            f = expect("a field name")
            if f[1].lower() not in _ORDER_FIELDS:
                raise JqlError(f"Not able to sort using field '{f[1]}'.")
            desc = False
            direction = peek()
            if direction is not None and direction[0] == "word" and direction[1].lower() in ("asc", "desc"):
                desc = direction[1].lower() == "desc"
                i += 1
            order.append((f[1].lower(), desc))
            comma = peek()
            if comma is None:
                break
            if comma[1] != ",":
                raise bad("',' or the end of the query", comma)
            i += 1
    return Jql(tuple(clauses), tuple(order))


def _parse_jql_date(text: str) -> tuple[datetime, bool]:
    """(naive datetime, whether the minute was given)."""
    for fmt, has_time in (("%Y/%m/%d %H:%M", True), ("%Y-%m-%d %H:%M", True), ("%Y/%m/%d", False), ("%Y-%m-%d", False)):
        try:
            return datetime.strptime(text.strip(), fmt), has_time
        except ValueError:
            continue
    raise JqlError(
        f"Date value '{text}' for field 'updated' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', "
        "'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'."
    )


# ---------------------------------------------------------------------------------------- the fake


def _user_json(user: Any) -> Any:
    if isinstance(user, str):
        return {"name": user, "key": user, "displayName": user, "active": True}
    return user


class FakeJira(FakeServer):
    """Jira on 127.0.0.1. ``users`` maps user → API token (basic auth); ``pats`` maps user → PAT (bearer).

    ``timezone`` is the users' profile time zone (JQL dates are read in it); ``max_results`` caps
    ``maxResults`` as Jira does; ``changelog_limit`` caps the histories a search returns per issue;
    ``legacy_search_removed`` makes ``/search`` answer 410 Gone (Jira Cloud since 2025).
    """

    name = "jira"

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        pats: Mapping[str, str] | None = None,
        *,
        timezone: str = "UTC",
        max_results: int = 100,
        changelog_limit: int = 100,
        legacy_search_removed: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.users = dict(users or {})
        self.pats = {pat: user for user, pat in (pats or {}).items()}
        self.timezone = timezone
        self.max_results = max_results
        self.changelog_limit = changelog_limit
        self.legacy_search_removed = legacy_search_removed
        self._issues: dict[str, dict[str, Any]] = {}
        self._projects: dict[str, dict[str, Any]] = {}
        self._data_lock = threading.RLock()
        self._next_issue_id = 10000
        self._next_history_id = 10000
        for v in ("2", "3"):
            base = rf"/rest/api/{v}"
            self.route("GET", base + "/search", self._search)
            self.route("GET", base + "/search/jql", self._search_jql)
            self.route("GET", base + r"/issue/(?P<key>[^/]+)/changelog", self._changelog)
            self.route("GET", base + "/myself", self._myself)

    # ------------------------------------------------------------------ Python API (the world)

    def add_project(self, key: str, name: str | None = None) -> None:
        """Make ``key`` a known project (searching an unknown project is a 400, as on Jira)."""
        with self._data_lock:
            if key not in self._projects:
                pid = str(10000 + len(self._projects))
                self._projects[key] = {"self": f"/rest/api/2/project/{pid}", "id": pid, "key": key, "name": name or key}

    def add_issue(self, issue: Mapping[str, Any]) -> dict[str, Any]:
        """Add an issue in the REST shape (``key``, ``fields``, optional ``changelog.histories``).

        Datetimes may be given as aware ``datetime`` objects; they are stored in Jira's format.
        Missing ``id``, ``self``, ``fields.project`` and history ids are filled in. Returns the copy kept.
        """
        key = str(issue.get("key", ""))
        with self._data_lock:
            if key in self._issues:
                raise ValueError(f"issue {key!r} already exists; use upsert_issue() to change it")
            return self._store(issue)

    def upsert_issue(self, issue: Mapping[str, Any]) -> dict[str, Any]:
        """Add the issue, or replace the stored one with the same key (keeping its id)."""
        with self._data_lock:
            return self._store(issue)

    def get_issue(self, key: str) -> dict[str, Any]:
        """A copy of the stored issue ``key``."""
        with self._data_lock:
            return copy.deepcopy(self._issues[key])

    @property
    def issue_keys(self) -> list[str]:
        with self._data_lock:
            return list(self._issues)

    def transition(
        self,
        key: str,
        to_status: str,
        *,
        at: datetime,
        author: str | None = None,
        category: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Move issue ``key`` to ``to_status`` at ``at``, as a user would in Jira.

        Appends a changelog history with the status item, sets ``fields.status`` (category ``done`` for
        Done/Resolved/Closed unless ``category`` says otherwise), ``updated``, and ``resolutiondate``
        (set when entering a done status, cleared when leaving it). Other ``fields`` are set too
        (e.g. ``assignee=...``), each with its own history item.
        """
        with self._data_lock:
            issue = copy.deepcopy(self._issues[key])
            f = issue["fields"]
            old = (f.get("status") or {}).get("name")
            cat = category or ("done" if to_status.lower() in _DONE_NAMES else "indeterminate")
            items = [{"field": "status", "fieldtype": "jira", "from": None, "fromString": old,
                      "to": None, "toString": to_status}]
            f["status"] = {"name": to_status, "statusCategory": {"key": cat}}
            was_done = f.get("resolutiondate") is not None
            if cat == "done" and not was_done:
                f["resolutiondate"] = at
                f.setdefault("resolution", {"name": "Done"})
                if f["resolution"] is None:
                    f["resolution"] = {"name": "Done"}
            elif cat != "done" and was_done:
                f["resolutiondate"] = None
                f["resolution"] = None
            for name, value in fields.items():
                before = f.get(name)
                items.append({"field": name, "fieldtype": "jira", "from": _ident(before), "fromString": _display(before),
                              "to": _ident(value), "toString": _display(value)})
                f[name] = value
            f["updated"] = at
            hist: dict[str, Any] = {"created": at, "items": items}
            if author is not None:
                hist["author"] = _user_json(author)
            issue.setdefault("changelog", {}).setdefault("histories", []).append(hist)
            return self._store(issue)

    def throttle(self, *, times: int = 1, retry_after: float = 1.0) -> None:
        """Answer the next ``times`` requests with 429 Too Many Requests and ``Retry-After``."""
        self.fail_next(429, times=times, retry_after=retry_after, body="Rate limit exceeded.")

    # ------------------------------------------------------------------ storage

    def _store(self, issue: Mapping[str, Any]) -> dict[str, Any]:
        doc = _jsonable(copy.deepcopy(dict(issue)))
        key = doc.get("key")
        if not isinstance(key, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]*-\d+", key):
            raise ValueError(f"issue key must look like 'SHOP-12', got {key!r}")
        fields = doc.setdefault("fields", {})
        prefix = key.rsplit("-", 1)[0]
        self.add_project(prefix)
        fields.setdefault("project", dict(self._projects[prefix], avatarUrls={}))
        old = self._issues.get(key)
        if "id" not in doc:
            if old is not None:
                doc["id"] = old["id"]
            else:
                doc["id"] = str(self._next_issue_id)
                self._next_issue_id += 1
        doc.setdefault("self", f"/rest/api/2/issue/{doc['id']}")
        histories = doc.setdefault("changelog", {}).setdefault("histories", [])
        for h in histories:
            if "id" not in h:
                h["id"] = str(self._next_history_id)
                self._next_history_id += 1
        if "updated" not in fields:
            raise ValueError(f"issue {key}: fields.updated is required (the search orders and filters on it)")
        parse_jira_datetime(fields["updated"])
        self._issues[key] = doc
        return copy.deepcopy(doc)

    # ------------------------------------------------------------------ auth

    def _user_of(self, req: FakeRequest) -> str | None:
        basic = req.basic_auth()
        if basic is not None:
            user, token = basic
            return user if self.users.get(user) == token else None
        bearer = req.bearer()
        if bearer is not None:
            return self.pats.get(bearer)
        return None

    def authorized(self, req: FakeRequest) -> bool:
        return self._user_of(req) is not None

    def unauthorized(self, req: FakeRequest) -> Response:
        return (401, {"message": "Client must be authenticated to access this resource.", "status-code": 401},
                {"X-Seraph-LoginReason": "AUTHENTICATED_FAILED", "WWW-Authenticate": 'Basic realm="protected-area"'})

    # ------------------------------------------------------------------ handlers

    def _myself(self, req: FakeRequest) -> Response:
        user = self._user_of(req) or ""
        return 200, {"self": f"{self.url}/rest/api/2/user?username={user}", "key": user, "name": user,
                     "emailAddress": f"{user}@example.com", "displayName": user, "active": True,
                     "timeZone": self.timezone, "locale": "en_US"}

    def _query(self, req: FakeRequest, start: int, max_results: int) -> tuple[list[dict[str, Any]], int] | Response:
        """(the page of matching issues, rendered; how many match), or a 400 response."""
        try:
            query = parse_jql(req.arg("jql", "") or "")
            with self._data_lock:
                unknown = [v for c in query.clauses if c.field == "project" for v in c.values if v not in self._projects]
                if unknown:
                    return 400, {"errorMessages": [f"The value '{unknown[0]}' does not exist for the field 'project'."],
                                 "warningMessages": []}
                matches = [i for i in self._issues.values() if self._matches(i, query)]
                for field, desc in reversed(query.order_by or (("key", True),)):
                    matches.sort(key=_sort_key(field), reverse=desc)
                page = [copy.deepcopy(i) for i in matches[start : start + max_results]]
        except JqlError as exc:
            return 400, {"errorMessages": [str(exc)], "warningMessages": []}
        wanted = _wanted_fields(req.arg("fields"))
        expand = {e.strip() for e in (req.arg("expand") or "").split(",") if e.strip()}
        return [self._render(i, wanted, "changelog" in expand) for i in page], len(matches)

    def _search(self, req: FakeRequest) -> Response:
        if self.legacy_search_removed:
            return 410, {"errorMessages": [
                "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
                "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"],
                "errors": {}}
        try:
            start = int(req.arg("startAt", "0") or 0)
            max_results = int(req.arg("maxResults", "50") or 50)
        except ValueError:
            return 400, {"errorMessages": ["startAt and maxResults must be numbers."], "warningMessages": []}
        if start < 0 or max_results < 0:
            return 400, {"errorMessages": ["startAt and maxResults must not be negative."], "warningMessages": []}
        max_results = min(max_results, self.max_results)
        found = self._query(req, start, max_results)
        if not isinstance(found[0], list):
            return found  # type: ignore[return-value]
        issues, total = found
        return 200, {"expand": "names,schema", "startAt": start, "maxResults": max_results, "total": total,
                     "issues": issues}

    def _search_jql(self, req: FakeRequest) -> Response:
        """Jira Cloud's enhanced search: ``nextPageToken`` paging, no ``total``, only ids by default."""
        jql = req.arg("jql", "") or ""
        if not jql.strip() or jql.strip().lower().startswith("order"):
            return 400, {"errorMessages": ["Unbounded JQL queries are not allowed here. "
                                           "Please add a search restriction to your query."], "errors": {}}
        try:
            max_results = min(int(req.arg("maxResults", "50") or 50), self.max_results)
        except ValueError:
            return 400, {"errorMessages": ["maxResults must be a number."], "errors": {}}
        start = 0
        token = req.arg("nextPageToken")
        if token:
            try:
                offset, _, digest = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
                start = int(offset)
            except (ValueError, UnicodeDecodeError):
                digest = ""
            if digest != _digest(jql):
                return 400, {"errorMessages": ["The provided next page token is invalid or expired."], "errors": {}}
        if req.arg("fields") is None:  # the enhanced search returns only ids unless fields are asked for
            req.query["fields"] = ["id"]
        found = self._query(req, start, max_results)
        if not isinstance(found[0], list):
            return found  # type: ignore[return-value]
        issues, total = found
        out: dict[str, Any] = {"issues": issues, "isLast": start + len(issues) >= total}
        if not out["isLast"]:
            out["nextPageToken"] = base64.urlsafe_b64encode(f"{start + len(issues)}:{_digest(jql)}".encode()).decode()
        return 200, out

    def _render(self, issue: dict[str, Any], wanted: set[str] | None, changelog: bool) -> dict[str, Any]:
        fields = issue["fields"] if wanted is None else {k: v for k, v in issue["fields"].items() if k in wanted}
        out: dict[str, Any] = {"expand": "operations,versionedRepresentations,editmeta,changelog,renderedFields",
                               "id": issue["id"], "self": self.url + issue["self"], "key": issue["key"],
                               "fields": fields}
        if changelog:
            hist = sorted(issue["changelog"]["histories"], key=_history_key)
            shown = hist[-self.changelog_limit :] if self.changelog_limit else hist
            out["changelog"] = {"startAt": 0, "maxResults": len(shown), "total": len(hist), "histories": shown}
        return out

    def _changelog(self, req: FakeRequest, key: str) -> Response:
        with self._data_lock:
            issue = self._issues.get(key) or next((i for i in self._issues.values() if i["id"] == key), None)
            if issue is None:
                return 404, {"errorMessages": ["Issue does not exist or you do not have permission to see it."],
                             "errors": {}}
            hist = sorted(copy.deepcopy(issue["changelog"]["histories"]), key=_history_key)
        start = int(req.arg("startAt", "0") or 0)
        max_results = min(int(req.arg("maxResults", "100") or 100), 100)
        values = hist[start : start + max_results]
        self_url = f"{self.url}{req.path}?maxResults={max_results}&startAt={start}"
        out: dict[str, Any] = {"self": self_url, "maxResults": max_results, "startAt": start, "total": len(hist),
                               "isLast": start + len(values) >= len(hist), "values": values}
        if not out["isLast"]:
            out["nextPage"] = f"{self.url}{req.path}?maxResults={max_results}&startAt={start + max_results}"
        return 200, out

    def _matches(self, issue: dict[str, Any], query: Jql) -> bool:
        tz = ZoneInfo(self.timezone)
        f = issue["fields"]
        for c in query.clauses:
            if c.field in _DATE_FIELDS:
                raw = f.get(c.field)
                if raw is None:
                    return False
                value = parse_jira_datetime(raw)
                naive, has_time = _parse_jql_date(c.values[0])
                bound = naive.replace(tzinfo=tz)
                step = timedelta(minutes=1) if has_time else timedelta(days=1)
                if not _date_ok(c.op, value, bound, step):
                    return False
                continue
            actual = _field_value(issue, c.field)
            wanted = {v.lower() for v in c.values}
            inside = actual is not None and actual.lower() in wanted
            if c.op in ("=", "in") and not inside:
                return False
            if c.op in ("!=", "not in") and inside:
                return False
        return True


def _digest(jql: str) -> str:
    return hashlib.sha256(jql.encode()).hexdigest()[:12]


def _date_ok(op: str, value: datetime, bound: datetime, step: timedelta) -> bool:
    """JQL date comparison at the given resolution (a minute, or a day for a bare date)."""
    if op == ">=":
        return value >= bound
    if op == ">":
        return value >= bound + step
    if op == "<":
        return value < bound
    if op == "<=":
        return value < bound + step
    return bound <= value < bound + step


def _ident(value: Any) -> str | None:
    """The ``from``/``to`` of a changelog item: a user's name (Server) or accountId (Cloud), an id."""
    if isinstance(value, dict):
        found = value.get("name") or value.get("accountId") or value.get("id")
        return str(found) if found is not None else None
    return None


def _display(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return str(value.get("displayName") or value.get("name") or value.get("value") or value)
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_jira_datetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _history_key(h: dict[str, Any]) -> tuple[datetime, int]:
    try:
        when = parse_jira_datetime(h["created"])
    except (KeyError, TypeError, ValueError):
        when = datetime.min.replace(tzinfo=UTC)
    hid = str(h.get("id", "0"))
    return when, int(hid) if hid.isdigit() else 0


def _field_value(issue: dict[str, Any], field: str) -> str | None:
    if field == "key":
        return str(issue["key"])
    value = issue["fields"].get(field)
    if isinstance(value, dict):
        return str(value.get("key") if field == "project" else value.get("name"))
    return None if value is None else str(value)


def _sort_key(field: str) -> Callable[[dict[str, Any]], Any]:
    if field == "key":
        def by_key(i: dict[str, Any]) -> Any:
            prefix, _, num = i["key"].rpartition("-")
            return prefix, int(num)
        return by_key

    def by_date(i: dict[str, Any]) -> Any:
        raw = i["fields"].get(field)
        return parse_jira_datetime(raw) if raw else datetime.min.replace(tzinfo=UTC)
    return by_date


def _wanted_fields(arg: str | None) -> set[str] | None:
    if not arg:
        return set(_NAVIGABLE)
    names = {f.strip() for f in arg.split(",") if f.strip()}
    if "*all" in names:
        return None
    if "*navigable" in names:
        names |= set(_NAVIGABLE)
    return {n for n in names if not n.startswith("-")} - {n[1:] for n in names if n.startswith("-")}

"""Jira collector: issue changes from Jira Cloud (``/rest/api/3``) or Server/DC (``/rest/api/2``).

One JQL search per poll, ``project in (…) AND updated >= "<cursor − overlap>" ORDER BY updated ASC,
key ASC``, with ``expand=changelog``. Jira Cloud (``api_version: 3``) is searched with
``/search/jql`` and its ``nextPageToken`` (the old ``/search`` is removed from Cloud, CHANGE-2046);
Server/DC (``api_version: 2``) with ``/search`` and ``startAt``, paged by what the server returned
since Jira caps ``maxResults``, switching to ``/search/jql`` if ``/search`` answers 410 Gone; when a search truncates an issue's changelog, the full one is read from
``/issue/{key}/changelog``. JQL dates are read by Jira in the user's profile time zone, so the
collector asks ``/myself`` for it once. Each page is one :class:`~opsradar.collectors.base.Batch`
whose cursor is the newest ``updated`` seen; the overlap re-reads late changes and stable ids dedup.

Events (kind ``issue``, entity ``project:<KEY>``):

- one per issue creation (native id ``KEY@created``, label ``change=created``);
- one per changelog history that changes ``status``, ``priority``, ``assignee`` or ``issuetype``
  (native id ``KEY#<history id>``); a status change has ``change=transition``,
  ``transition=<from>-><to>``, ``resolved`` / ``reopened`` ("true" when entering / leaving a done
  status) and the values ``time_in_status_h`` (time spent in the previous status) and, when
  resolved, ``cycle_time_h`` (created → resolved).

Every event has the labels ``issue_key``, ``issue_type``, ``priority``, ``status``, ``assignee``
(each as it stood after that change, replayed from the changelog), ``incident`` ("true" for
``incident_issue_types``), ``resolved``, ``reopened``, and the value ``reopen_count`` (reopens so
far). Attributes keep the summary, Jira labels, the history author and a link.

>>> from datetime import datetime, timezone
>>> issue = {"key": "SHOP-7", "fields": {
...     "project": {"key": "SHOP"}, "issuetype": {"name": "Incident"}, "priority": {"name": "High"},
...     "status": {"name": "Done", "statusCategory": {"key": "done"}}, "summary": "checkout 500s",
...     "created": "2026-03-02T09:00:00.000+0000", "updated": "2026-03-02T12:00:00.000+0000"},
...   "changelog": {"total": 1, "histories": [{"id": "1", "created": "2026-03-02T12:00:00.000+0000",
...     "items": [{"field": "status", "fromString": "Open", "toString": "Done"}]}]}}
>>> created, done = issue_events(issue, source="jira", incident_types={"incident"}, done_statuses={"done"})
>>> created.labels["change"], done.labels["transition"], done.labels["resolved"], done.values["cycle_time_h"]
('created', 'Open->Done', 'true', 3.0)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import ValidationError

from opsradar.collectors._http import decode_json, get_json, send
from opsradar.collectors.base import Batch, Collector, Rejected
from opsradar.collectors.registry import register
from opsradar.config import JiraSource, resolve_secret
from opsradar.errors import SourceDataError
from opsradar.models import Event

__all__ = ["JiraCollector", "issue_events", "make_client", "parse_jira_datetime"]

log = logging.getLogger(__name__)

FIELDS = "project,issuetype,priority,status,created,updated,resolutiondate,assignee,labels,summary"
_TRACKED = ("status", "priority", "assignee", "issuetype")


def parse_jira_datetime(value: Any) -> datetime:
    """A Jira timestamp (``2026-03-02T09:00:00.000+0000`` or ISO 8601 with an offset) → aware UTC.

    >>> parse_jira_datetime("2015-11-21T07:03:02.000-0500").isoformat()
    '2015-11-21T12:03:02+00:00'
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a timestamp string, got {value!r}")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"invalid timestamp {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no UTC offset")
    return parsed.astimezone(UTC)


def make_client(source: JiraSource, *, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An ``httpx.Client`` for ``source``: base URL, timeout, and basic (user + API token) or bearer PAT auth."""
    headers = {"Accept": "application/json"}
    auth: tuple[str, str] | None = None
    pat = resolve_secret(source.pat_env)
    token = resolve_secret(source.token_env)
    if pat is not None:
        headers["Authorization"] = f"Bearer {pat.get_secret_value()}"
    elif source.user and token is not None:
        auth = (source.user, token.get_secret_value())
    return httpx.Client(base_url=source.url.rstrip("/"), headers=headers, auth=auth,
                        timeout=source.timeout.total_seconds(), transport=transport)


def _name(obj: Any, *keys: str) -> str | None:
    if isinstance(obj, dict):
        for k in keys:
            v = obj.get(k)
            if isinstance(v, str) and v:
                return v
    return None


def _user(obj: Any) -> str:
    # Server/DC users have a name; Cloud users only an accountId and a displayName.
    return _name(obj, "name", "accountId", "displayName") or "unassigned"


def _history_sort_key(h: dict[str, Any]) -> tuple[datetime, int, str]:
    hid = str(h.get("id", ""))
    return parse_jira_datetime(h.get("created")), int(hid) if hid.isdigit() else 0, hid


def issue_events(
    issue: Any,
    *,
    source: str,
    incident_types: set[str],
    done_statuses: set[str],
    since: datetime | None = None,
    histories: list[dict[str, Any]] | None = None,
    browse_url: str | None = None,
) -> list[Event]:
    """The events of one issue (REST shape) whose time is at or after ``since`` (all when ``None``).

    ``histories`` overrides ``issue.changelog.histories`` (the full changelog when a search truncated
    it). Raises ``ValueError`` / ``KeyError`` / ``TypeError`` for a malformed issue.
    """
    if not isinstance(issue, dict):
        raise TypeError(f"an issue must be an object, got {type(issue).__name__}")
    key = issue.get("key")
    if not isinstance(key, str) or "-" not in key:
        raise ValueError(f"missing or invalid issue key {key!r}")
    fields = issue.get("fields")
    if not isinstance(fields, dict):
        raise ValueError("missing 'fields'")
    created = parse_jira_datetime(fields.get("created"))
    project = _name(fields.get("project"), "key") or key.rsplit("-", 1)[0]
    issue_type = _name(fields.get("issuetype"), "name")
    if issue_type is None:
        raise ValueError("missing fields.issuetype.name")
    status_obj = fields.get("status")
    current_status = _name(status_obj, "name")
    if current_status is None:
        raise ValueError("missing fields.status.name")
    done = set(done_statuses)
    if isinstance(status_obj, dict) and _name(status_obj.get("statusCategory"), "key") == "done":
        done.add(current_status.lower())
    priority = _name(fields.get("priority"), "name") or "none"
    if histories is None:
        changelog = issue.get("changelog") or {}
        histories = changelog.get("histories") or [] if isinstance(changelog, dict) else []
    if not isinstance(histories, list) or not all(isinstance(h, dict) for h in histories):
        raise ValueError("changelog.histories must be a list of objects")
    ordered = sorted(histories, key=_history_sort_key)

    def status_items(h: dict[str, Any]) -> list[dict[str, Any]]:
        items = h.get("items")
        if not isinstance(items, list):
            raise ValueError(f"history {h.get('id')!r} has no 'items' list")
        return [i for i in items if isinstance(i, dict) and str(i.get("field", "")).lower() == "status"]

    first_status = next((status_items(h)[0].get("fromString") for h in ordered if status_items(h)), None)
    status = str(first_status or current_status)
    # the values at creation: the first change of a field says what it was before, else it is the current one
    def first_change(name: str) -> dict[str, Any] | None:
        return next((i for h in ordered for i in h.get("items") or []
                     if isinstance(i, dict) and str(i.get("field", "")).lower() == name), None)

    first = first_change("assignee")
    assignee = (first.get("from") or first.get("fromString") or "unassigned") if first else _user(fields.get("assignee"))
    first = first_change("priority")
    priority = (first.get("fromString") or "none") if first else priority
    first = first_change("issuetype")
    issue_type = (first.get("fromString") or issue_type) if first else issue_type
    jira_labels = fields.get("labels") if isinstance(fields.get("labels"), list) else []
    base_attrs: dict[str, Any] = {"summary": fields.get("summary"), "jira_labels": jira_labels}
    if browse_url:
        base_attrs["url"] = f"{browse_url}/browse/{key}"
    entity = f"project:{project}"

    def event(native_id: str, ts: datetime, labels: dict[str, str], values: dict[str, float],
              attrs: dict[str, Any]) -> Event:
        incident = "true" if str(issue_type).lower() in incident_types else "false"
        common = {"issue_key": key, "issue_type": issue_type, "priority": priority, "status": status,
                  "assignee": assignee, "incident": incident, "resolved": "false", "reopened": "false"}
        return Event.new(source=source, native_id=native_id, kind="issue", ts=ts, entity=entity,
                         labels={**common, **labels}, values=values, attrs={**base_attrs, **attrs})

    out: list[Event] = []
    reopen_count = 0
    if since is None or created >= since:
        out.append(event(f"{key}@created", created, {"change": "created"}, {"reopen_count": 0.0},
                         {"created": created.isoformat()}))
    status_since = created
    for h in ordered:
        items = h.get("items")
        if not isinstance(items, list):
            raise ValueError(f"history {h.get('id')!r} has no 'items' list")
        when = parse_jira_datetime(h.get("created"))
        changed = [str(i.get("field", "")).lower() for i in items if isinstance(i, dict)]
        tracked = [f for f in _TRACKED if f in changed]
        if not tracked:
            continue
        labels: dict[str, str] = {}
        values: dict[str, float] = {}
        for i in items:
            name = str(i.get("field", "")).lower() if isinstance(i, dict) else ""
            if name == "assignee":
                assignee = str(i.get("to") or i.get("toString") or "unassigned")
            elif name == "priority":
                priority = str(i.get("toString") or "none")
            elif name == "issuetype":
                issue_type = str(i.get("toString") or issue_type)
        sitems = status_items(h)
        if sitems:
            item = sitems[-1]
            before = str(item.get("fromString") or status)
            after = str(item.get("toString") or "")
            if not after:
                raise ValueError(f"history {h.get('id')!r}: status change without toString")
            was_done, now_done = before.lower() in done, after.lower() in done
            values["time_in_status_h"] = max(0.0, (when - status_since).total_seconds() / 3600)
            labels.update(change="transition", transition=f"{before}->{after}")
            if now_done and not was_done:
                labels["resolved"] = "true"
                values["cycle_time_h"] = max(0.0, (when - created).total_seconds() / 3600)
            if was_done and not now_done:
                labels["reopened"] = "true"
                reopen_count += 1
            status, status_since = after, when
        else:
            labels["change"] = tracked[0]
        values["reopen_count"] = float(reopen_count)
        if since is None or when >= since:
            author = h.get("author")
            out.append(event(f"{key}#{h.get('id', when.isoformat())}", when, labels, values,
                             {"author": _user(author) if author else None, "fields_changed": tracked}))
    return out


class JiraCollector(Collector):  # type: ignore[misc]  # mypy sees opsradar.collectors.* as Any (package-dir mapping)
    """Pulls issue changes of ``source.projects`` from Jira, incrementally by ``updated``."""

    kind = "jira"

    def __init__(
        self,
        name: str,
        source: JiraSource,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__(name)
        self.source = source
        self.client = client if client is not None else make_client(source)
        self._owns_client = client is None
        self._tz: ZoneInfo | None = None
        self._api = f"/rest/api/{source.api_version}"
        # Cloud (v3) searches with /search/jql; Server/DC (v2) with /search, switching on a 410 Gone
        self._enhanced = source.api_version == 3
        self._incident_types = {t.lower() for t in source.incident_issue_types}
        self._done = {s.lower() for s in source.done_statuses}

    @property
    def auth_hint(self) -> str:
        src = f"sources.{self.name}"
        if self.source.pat_env:
            return f"check the personal access token in ${self.source.pat_env} ({src}.pat_env)"
        if self.source.token_env:
            return (f"check {src}.user ({self.source.user!r}) and the API token in ${self.source.token_env}; "
                    "Jira Cloud wants the account e-mail and an API token, not a password")
        return f"set {src}.user with token_env, or pat_env"

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return get_json(self.client, path, source=self.name, params=params, auth_hint=self.auth_hint)

    def timezone(self) -> ZoneInfo:
        """The user's profile time zone, in which Jira reads JQL dates (``/myself``; UTC if unknown)."""
        if self._tz is None:
            me = self._get(f"{self._api}/myself")
            name = me.get("timeZone") if isinstance(me, dict) else None
            try:
                self._tz = ZoneInfo(name) if isinstance(name, str) and name else ZoneInfo("UTC")
            except (ZoneInfoNotFoundError, ValueError):
                log.warning("source %r: unknown Jira time zone %r; reading JQL dates as UTC", self.name, name)
                self._tz = ZoneInfo("UTC")
        return self._tz

    def jql(self, since: datetime | None) -> str:
        """The search: the projects, the extra JQL, the lower bound, ordered by ``updated``."""
        projects = ", ".join(f'"{p}"' for p in self.source.projects)
        parts = [f"project in ({projects})"]
        if self.source.jql:
            parts.append(f"({self.source.jql})")
        if since is not None:
            local = since.astimezone(self.timezone())
            parts.append(f'updated >= "{local:%Y/%m/%d %H:%M}"')
        return " AND ".join(parts) + " ORDER BY updated ASC, key ASC"

    def _full_histories(self, key: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        start = 0
        while True:
            page = self._get(f"{self._api}/issue/{key}/changelog", {"startAt": start, "maxResults": 100})
            values = page.get("values") if isinstance(page, dict) else None
            if not isinstance(values, list):
                raise SourceDataError(f"changelog of {key}: expected an object with 'values', got {str(page)[:80]!r}",
                                      source=self.name, hint="check that the url points at the Jira REST API")
            out += values
            start += len(values)
            total = page.get("total")
            if not values or page.get("isLast") is True or (isinstance(total, int) and start >= total):
                return out

    def _search_page(self, jql: str, start: int, token: str | None) -> tuple[list[Any], bool, str | None]:
        """One page of the search: (issues, whether it was the last page, the next page token)."""
        params: dict[str, Any] = {"jql": jql, "maxResults": self.source.page_size, "fields": FIELDS,
                                  "expand": "changelog"}
        if not self._enhanced:
            params["startAt"] = start
            response = send(self.client, "GET", f"{self._api}/search", source=self.name, params=params,
                            auth_hint=self.auth_hint, allow_status=(410,))
            if response.status_code == 410:  # Jira Cloud removed it (CHANGE-2046): use the enhanced search
                log.info("source %r: %s/search is gone; using %s/search/jql", self.name, self._api, self._api)
                self._enhanced = True
                return self._search_page(jql, 0, None)
            page = decode_json(response, source=self.name)
            issues, total = (page.get("issues"), page.get("total")) if isinstance(page, dict) else (None, None)
            if not isinstance(issues, list) or not isinstance(total, int):
                raise SourceDataError(f"search answered without 'issues' and 'total': {str(page)[:120]!r}",
                                      source=self.name, hint="check that the url points at Jira and api_version is right")
            return issues, not issues or start + len(issues) >= total, None
        if token:
            params["nextPageToken"] = token
        page = self._get(f"{self._api}/search/jql", params)
        issues = page.get("issues") if isinstance(page, dict) else None
        if not isinstance(issues, list):
            raise SourceDataError(f"search/jql answered without 'issues': {str(page)[:120]!r}",
                                  source=self.name, hint="check that the url points at Jira Cloud")
        nxt = page.get("nextPageToken")
        last = page.get("isLast") is True or not isinstance(nxt, str) or not nxt or not issues
        return issues, last, None if last else nxt

    def pull(self, cursor: Any, *, until: datetime | None = None) -> Iterator[Batch]:
        last: datetime | None = None
        if isinstance(cursor, dict) and cursor.get("updated"):
            last = parse_jira_datetime(cursor["updated"])
        since = last - self.source.overlap if last is not None else None
        jql = self.jql(since)
        start, token = 0, None
        while True:
            enhanced = self._enhanced
            issues, is_last, token = self._search_page(jql, start, token)
            if enhanced != self._enhanced:
                start = 0  # switched to the enhanced search: it pages from its first page
            events, rejected, newest, stop = self._convert(issues, start, since, until)
            if newest is not None and (last is None or newest > last):
                last = newest
            yield Batch(events=events, cursor={"updated": last.isoformat() if last else None}, rejected=rejected)
            start += len(issues)
            if stop or is_last:
                return

    def _convert(self, issues: Iterable[Any], start: int, since: datetime | None,
                 until: datetime | None) -> tuple[list[Event], list[Rejected], datetime | None, bool]:
        events: list[Event] = []
        rejected: list[Rejected] = []
        newest: datetime | None = None
        for n, issue in enumerate(issues, start):
            key = issue.get("key") if isinstance(issue, dict) else None
            rid = key if isinstance(key, str) else f"search result #{n}"
            try:
                updated = parse_jira_datetime((issue.get("fields") or {}).get("updated"))
            except (AttributeError, ValueError) as exc:
                rejected.append(Rejected(rid, f"bad fields.updated: {exc}"))
                continue
            if until is not None and updated > until:
                return events, rejected, newest, True
            newest = updated if newest is None or updated > newest else newest
            try:
                histories = None
                changelog = issue.get("changelog") or {}
                shown = changelog.get("histories") or []
                if isinstance(changelog.get("total"), int) and changelog["total"] > len(shown):
                    histories = self._full_histories(rid)
                events += issue_events(issue, source=self.name, incident_types=self._incident_types,
                                       done_statuses=self._done, since=since, histories=histories,
                                       browse_url=self.source.url.rstrip("/"))
            except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                rejected.append(Rejected(rid, reason))
        return events, rejected, newest, False

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


register("jira", lambda name, source: JiraCollector(name, source))

"""Shared httpx helpers for the HTTP collectors: one request, its errors translated, its JSON parsed.

Every failure of a vendor API becomes one of the :mod:`opsradar.errors` collector errors, with the
source name, what was asked, what came back, and a hint for the user:

- 401 / 403 → :class:`~opsradar.errors.SourceAuthError` (the caller's ``auth_hint``);
- connection refused, DNS, timeouts, 5xx, 429 → :class:`~opsradar.errors.SourceUnavailable`, with
  ``retry_after`` taken from a ``Retry-After`` header (seconds or an HTTP date);
- a body that is not the JSON we asked for → :class:`~opsradar.errors.SourceDataError`;
- any other 4xx → :class:`~opsradar.errors.CollectorError`, quoting the vendor's error message.

Secrets never appear in messages: URLs lose any user-info, and headers are never quoted.

>>> import httpx
>>> def handler(request: httpx.Request) -> httpx.Response:
...     if request.url.path == "/busy":
...         return httpx.Response(429, headers={"Retry-After": "7"}, json={"errorMessages": ["slow down"]})
...     return httpx.Response(200, json={"ok": True})
>>> client = httpx.Client(base_url="http://vendor.test", transport=httpx.MockTransport(handler))
>>> get_json(client, "/ok", source="demo")
{'ok': True}
>>> try:
...     get_json(client, "/busy", source="demo")
... except SourceUnavailable as exc:
...     print(exc.retry_after, exc)
7.0 source 'demo': GET http://vendor.test/busy: 429 Too Many Requests: slow down (rate limited by the server; retrying after 7s)
>>> parse_retry_after("120"), parse_retry_after("soon")
(120.0, None)
"""

from __future__ import annotations

import email.utils
import html
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import httpx

from opsradar.errors import CollectorError, SourceAuthError, SourceDataError, SourceUnavailable

__all__ = [
    "decode_json",
    "error_detail",
    "get_json",
    "parse_retry_after",
    "raise_for_response",
    "redact",
    "request_json",
    "send",
]

_MAX_DETAIL = 300


def redact(url: str | httpx.URL) -> str:
    """The URL without user-info (``user:password@``), its query decoded for reading, for messages.

    >>> redact("https://bot:s3cret@ci.example.com/api/json?tree=jobs%5Bname%5D")
    'https://ci.example.com/api/json?tree=jobs[name]'
    """
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, unquote_plus(parts.query), parts.fragment))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110).

    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=datetime(2015, 10, 21, 7, 28, tzinfo=UTC))
    30.0
    >>> parse_retry_after(None) is None
    True
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_detail(response: httpx.Response) -> str:
    """The vendor's own error message from a response body, shortened (Jira, Jenkins, Elasticsearch).

    >>> error_detail(httpx.Response(400, json={"errorMessages": ["Field 'foo' does not exist."], "errors": {}}))
    "Field 'foo' does not exist."
    >>> error_detail(httpx.Response(400, json={"error": {"type": "x", "reason": "bad query"}}))
    'bad query'
    >>> error_detail(httpx.Response(401, text="<html><title>Error 401 Invalid password/token for user: bot</title>"))
    'Error 401 Invalid password/token for user: bot'
    """
    try:
        body = response.read()
    except httpx.HTTPError:
        return ""
    text = body.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        doc = None
    parts: list[str] = []
    if isinstance(doc, dict):
        msgs = doc.get("errorMessages")
        if isinstance(msgs, list):
            parts += [str(m) for m in msgs if m]
        errs = doc.get("errors")
        if isinstance(errs, dict):
            parts += [f"{k}: {v}" for k, v in errs.items()]
        err = doc.get("error")
        if isinstance(err, dict):
            parts.append(str(err.get("reason") or err.get("type") or err))
        elif isinstance(err, str):
            parts.append(err)
        for key in ("message", "reason"):
            if isinstance(doc.get(key), str):
                parts.append(doc[key])
    elif text.lstrip().startswith("<"):
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        if title:  # e.g. Jenkins: "Error 401 Invalid password/token for user: bot"
            parts.append(html.unescape(" ".join(title.group(1).split())))
    elif text:
        parts.append(text.splitlines()[0])
    detail = "; ".join(dict.fromkeys(p for p in parts if p))
    return detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 1] + "…"


def raise_for_response(
    response: httpx.Response,
    *,
    source: str,
    auth_hint: str = "check the user and token of this source",
) -> None:
    """Raise the collector error that a non-2xx ``response`` deserves; do nothing on 2xx."""
    status = response.status_code
    if status < 300:
        return
    what = f"{response.request.method} {redact(response.request.url)}: {status} {response.reason_phrase}"
    detail = error_detail(response)
    if detail:
        what += f": {detail}"
    if status in (401, 403):
        hint = auth_hint if status == 401 else f"the account lacks permission; {auth_hint}"
        raise SourceAuthError(what, source=source, hint=hint)
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429:
            hint = "rate limited by the server; " + (
                f"retrying after {retry_after:g}s" if retry_after is not None else "retrying with backoff"
            )
        else:
            hint = "the server failed; retrying with backoff"
            if retry_after is not None:
                hint += f" (Retry-After {retry_after:g}s)"
        raise SourceUnavailable(what, source=source, hint=hint, retry_after=retry_after)
    raise CollectorError(what, source=source, hint="the server refused the request; check the source's settings")


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    source: str,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
    auth_hint: str = "check the user and token of this source",
    allow_status: tuple[int, ...] = (),
) -> httpx.Response:
    """Send one request; transport failures and non-2xx answers (except ``allow_status``) raise."""
    try:
        response = client.request(method, url, params=params, json=json_body)
    except httpx.TimeoutException as exc:
        raise SourceUnavailable(
            f"{method} {redact(client.base_url.join(url))}: timed out ({type(exc).__name__})",
            source=source, hint="the server is slow or unreachable; check the url or raise the source's timeout",
        ) from exc
    except httpx.TransportError as exc:
        raise SourceUnavailable(
            f"{method} {redact(client.base_url.join(url))}: cannot connect: {exc}",
            source=source, hint="check the source's url and that the server is up",
        ) from exc
    if response.status_code in allow_status:
        return response
    raise_for_response(response, source=source, auth_hint=auth_hint)
    return response


def decode_json(response: httpx.Response, *, source: str) -> Any:
    """The JSON body of ``response``; :class:`SourceDataError` (with a hint) when it is not JSON."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        ctype = response.headers.get("Content-Type", "?")
        start = response.text[:80].replace("\n", " ")
        raise SourceDataError(
            f"{response.request.method} {redact(response.request.url)}: expected JSON, got {ctype!r} "
            f"starting {start!r}",
            source=source, hint="check that the url points at the API root (a proxy or login page answers HTML)",
        ) from exc


def request_json(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    source: str,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
    auth_hint: str = "check the user and token of this source",
    allow_status: tuple[int, ...] = (),
) -> Any:
    """Send one request and return its JSON body; ``None`` for a status in ``allow_status``."""
    response = send(client, method, url, source=source, params=params, json_body=json_body,
                    auth_hint=auth_hint, allow_status=allow_status)
    if response.status_code in allow_status:
        return None
    return decode_json(response, source=source)


def get_json(
    client: httpx.Client,
    url: str,
    *,
    source: str,
    params: Mapping[str, Any] | None = None,
    auth_hint: str = "check the user and token of this source",
    allow_status: tuple[int, ...] = (),
) -> Any:
    """GET ``url`` and return its JSON body (see :func:`request_json`)."""
    return request_json(client, "GET", url, source=source, params=params, auth_hint=auth_hint,
                        allow_status=allow_status)

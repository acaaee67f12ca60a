"""A loopback fake of the Elasticsearch REST API, enough for the official ``elasticsearch`` client.

It serves, with the response shapes of the Elasticsearch reference documentation:

- ``GET /`` (root API: name, cluster name and uuid, ``version`` with ``number``, ``build_flavor``,
  ``lucene_version``, the compatibility versions, ``tagline``);
- ``_search`` (``/_search`` and ``/{index}/_search``): ``query``, ``sort``, ``search_after``,
  ``size``, ``from``, ``pit``, ``track_total_hits``; queries ``bool`` (``filter``, ``must``,
  ``must_not``, ``should``), ``range``, ``term``, ``terms``, ``exists``, ``match_all``. Any other
  query answers 400 ``parsing_exception``, as Elasticsearch does for an unknown query;
- points in time: ``POST /{index}/_pit?keep_alive=1m`` → ``{"id": …}``, ``_search`` with
  ``"pit": {"id": …}`` (a frozen view of the documents at open time), ``DELETE /_pit``;
- ``_count``; bulk indexing ``POST /_bulk`` and ``/{index}/_bulk`` (NDJSON ``index`` / ``create`` /
  ``delete``); ``PUT|POST /{index}/_doc[/{id}]``; ``PUT|HEAD|DELETE /{index}``; ``_refresh``;
- index patterns: comma lists, ``*`` wildcards, ``-exclusions``, ``_all``; a missing concrete
  index is 404 ``index_not_found_exception``, a wildcard matching nothing is an empty result;
  ``ignore_unavailable=true`` (``_search``, ``_count``, ``_pit``) skips missing concrete indices,
  and ``allow_no_indices=false`` (``_search``, ``_count``) makes an expression that names no index
  a 404, as the multi-target syntax documents (a point in time opened on no index is empty);
- auth: ``Authorization: ApiKey base64(id:key)`` or basic; wrong or missing credentials give 401
  ``security_exception`` with ``WWW-Authenticate``; with no credentials configured it is open;
- ``X-Elastic-Product: Elasticsearch`` on every response, and the compatibility media types the
  9.x client sends (``application/vnd.elasticsearch+json; compatible-with=9``): versions 8 and 9
  are accepted and echoed in the response ``Content-Type``; others answer 400
  ``media_type_header_exception``; an unsupported ``Content-Type`` answers 406;
- faults: ``fail_next(429, retry_after=2)`` answers in Elasticsearch's error shape.

Simplifications (documented, not hidden): one shard per index; every write is visible at once (as
after a refresh); ``term`` compares whole values (no analysis, ``field.keyword`` is the field);
fields are typed by their first value (an ISO-8601 string is a ``date``, as dynamic date detection
does); date sort values are epoch milliseconds, or strings when the sort gives a ``format``. A
``range`` on a date field that every hit must pass (a ``bool`` ``filter`` / ``must`` clause) is
answered from a per-index view sorted by that field, then the whole query runs on what it selects:
the same hits as a scan, in time proportional to the hits (the demo polls growing indices).

The Python API, for the simulated world and tests:

>>> es = ElasticsearchFake(api_keys={"collector": "s3cret"})
>>> es.index_documents("logs-shop", [{"@timestamp": "2026-01-05T09:30:00Z", "message": "ok",
...                                   "service.name": "shop"}])
['1']
>>> es.count("logs-*")
1
>>> from elasticsearch import Elasticsearch
>>> with es:
...     client = Elasticsearch(es.url, api_key=("collector", "s3cret"))
...     client.search(index="logs-*", query={"term": {"service.name": "shop"}})["hits"]["total"]
{'value': 1, 'relation': 'eq'}
"""

from __future__ import annotations

import base64
import bisect
import fnmatch
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from opsradar.demo.fakes.base import FakeRequest, FakeServer, Response

__all__ = ["ElasticsearchFake", "EsQueryError"]

_LONG_MAX = 9223372036854775807
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LONG_MIN = -9223372036854775808
_MAX_RESULT_WINDOW = 10_000
_JSON_TYPES = ("application/json", "application/vnd.elasticsearch+json")
_NDJSON_TYPES = ("application/x-ndjson", "application/vnd.elasticsearch+x-ndjson")
_COMPAT = re.compile(r"compatible-with\s*=\s*(\d+)")
_SUPPORTED_COMPAT = {"8", "9"}
_DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?$")
_UNSUPPORTED_KNOWN = {
    "match", "match_phrase", "multi_match", "query_string", "simple_query_string", "prefix",
    "wildcard", "regexp", "fuzzy", "ids", "nested", "script", "function_score", "dis_max",
    "constant_score", "boosting", "match_none",
}


class EsQueryError(Exception):
    """An error the fake answers in Elasticsearch's error shape."""

    def __init__(self, status: int, err_type: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status, self.err_type, self.reason, self.extra = status, err_type, reason, extra

    def body(self) -> dict[str, Any]:
        return _error_body(self.status, self.err_type, self.reason, **self.extra)


def _error_body(status: int, err_type: str, reason: str, **extra: Any) -> dict[str, Any]:
    cause = {"type": err_type, "reason": reason, **extra}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def _parse_date(value: Any) -> datetime:
    """An ISO-8601 string or epoch milliseconds as an aware UTC datetime (ValueError otherwise)."""
    if isinstance(value, bool):
        raise ValueError(f"not a date: {value!r}")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    if isinstance(value, str):
        s = value.strip()
        if s.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(s) / 1000.0, tz=UTC)
        d = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
        return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)
    raise ValueError(f"not a date: {value!r}")


def _epoch_millis(d: datetime) -> int:
    return (d - _EPOCH) // timedelta(milliseconds=1)


def _format_date(d: datetime) -> str:
    frac = f".{d.microsecond // 1000:03d}" if d.microsecond % 1000 == 0 else f".{d.microsecond:06d}"
    return d.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def _get_path(source: Mapping[str, Any], name: str) -> Any:
    """A field of ``_source`` by its dotted name, flat (``"service.name"``) or nested."""
    if name in source:
        return source[name]
    head, sep, rest = name.partition(".")
    while sep:
        if head in source and isinstance(source[head], Mapping):
            return _get_path(source[head], rest)
        nxt, sep, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return None


@dataclass
class _Doc:
    index: str
    id: str
    source: dict[str, Any]
    seq: int  # global insertion order: the fake's _shard_doc


@dataclass
class _Index:
    name: str
    docs: dict[str, _Doc] = field(default_factory=dict)
    mapping: dict[str, str] = field(default_factory=dict)  # field → date | long | double | keyword | boolean
    uuid: str = field(default_factory=lambda: secrets.token_urlsafe(16)[:22])
    version: int = 0  # bumped by every write
    # date field → (version, the documents holding a single date in it sorted by it, their dates):
    # a range filter on a date field then bisects instead of scanning every document
    by_date: dict[str, tuple[int, list[_Doc], list[datetime]]] = field(default_factory=dict)

    def date_sorted(self, name: str) -> tuple[list[_Doc], list[datetime]]:
        cached = self.by_date.get(name)
        if cached is None or cached[0] != self.version:
            keyed = []
            for d in self.docs.values():
                raw = _field_value(d.source, name)
                if raw is None or isinstance(raw, list):
                    continue  # a range filter matches neither (as _range_matcher)
                try:
                    keyed.append((_parse_date(raw), d.seq, d))
                except (TypeError, ValueError):
                    continue
            keyed.sort(key=lambda k: (k[0], k[1]))
            cached = self.by_date[name] = (self.version, [k[2] for k in keyed], [k[0] for k in keyed])
        return cached[1], cached[2]


@dataclass
class _Pit:
    docs: list[_Doc]
    mappings: dict[str, str]
    expires: float
    # (query, sort) → the matching hits sorted, with their comparison keys: a PIT is frozen, so
    # pages after the first are a binary search away
    sorted_cache: dict[str, tuple[list[tuple[_Doc, tuple[Any, ...]]], list[Any], int]] = field(default_factory=dict)


class ElasticsearchFake(FakeServer):
    """The fake server. ``api_keys`` maps API key id → key; ``users`` maps user → password.

    With neither, every request is allowed (as a cluster with security disabled).
    """

    name = "elasticsearch"

    def __init__(
        self,
        *,
        api_keys: Mapping[str, str] | None = None,
        users: Mapping[str, str] | None = None,
        version: str = "9.1.0",
        cluster_name: str = "opsradar-demo",
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(host, port)
        self.api_keys = dict(api_keys or {})
        self.users = dict(users or {})
        self.version = version
        self.cluster_name = cluster_name
        self.cluster_uuid = "opsradar" + secrets.token_hex(7)
        self._clock = clock
        self._indices: dict[str, _Index] = {}
        self._pits: dict[str, _Pit] = {}
        self._seq = itertools.count(1)
        self._auto_id = itertools.count(1)
        self._data_lock = threading.RLock()
        self.route("GET", r"/", self._root)
        self.route("POST", r"/_bulk", self._bulk)
        self.route("PUT", r"/_bulk", self._bulk)
        self.route("DELETE", r"/_pit", self._close_pit)
        for method in ("GET", "POST"):
            self.route(method, r"/_search", self._search)
            self.route(method, r"/(?P<index>[^/_][^/]*)/_search", self._search)
            self.route(method, r"/_count", self._count)
            self.route(method, r"/(?P<index>[^/_][^/]*)/_count", self._count)
            self.route(method, r"/(?P<index>[^/_][^/]*)/_refresh", self._refresh)
            self.route(method, r"/_refresh", self._refresh)
        self.route("POST", r"/(?P<index>[^/_][^/]*)/_pit", self._open_pit)
        self.route("POST", r"/(?P<index>[^/_][^/]*)/_bulk", self._bulk)
        self.route("PUT", r"/(?P<index>[^/_][^/]*)/_bulk", self._bulk)
        self.route("POST", r"/(?P<index>[^/_][^/]*)/_doc", self._index_one)
        self.route("PUT", r"/(?P<index>[^/_][^/]*)/_doc/(?P<doc_id>[^/]+)", self._index_one)
        self.route("POST", r"/(?P<index>[^/_][^/]*)/_doc/(?P<doc_id>[^/]+)", self._index_one)
        self.route("GET", r"/(?P<index>[^/_][^/]*)/_doc/(?P<doc_id>[^/]+)", self._get_one)
        self.route("PUT", r"/(?P<index>[^/_][^/]*)", self._create_index)
        self.route("GET", r"/(?P<index>[^/_][^/]*)", self._get_index)
        self.route("DELETE", r"/(?P<index>[^/_][^/]*)", self._delete_index_route)

    # ------------------------------------------------------------------ the Python API

    def index_documents(self, index: str, docs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Index ``docs`` into ``index`` (created if missing); returns their ids.

        A document's ``"_id"`` key, if present, is its id (and is not stored in ``_source``);
        otherwise ids are generated. Indexing an existing id replaces that document.
        """
        _check_index_name(index)
        ids = []
        with self._data_lock:
            for doc in docs:
                source = dict(doc)
                doc_id = str(source.pop("_id")) if "_id" in source else str(next(self._auto_id))
                self._put(index, doc_id, source)
                ids.append(doc_id)
        return ids

    def add_api_key(self, key_id: str, key: str) -> str:
        """Accept the API key ``key_id:key``; returns the encoded form for ``Authorization: ApiKey``."""
        self.api_keys[key_id] = key
        return base64.b64encode(f"{key_id}:{key}".encode()).decode()

    def add_user(self, user: str, password: str) -> None:
        """Accept basic auth for ``user``."""
        self.users[user] = password

    def count(self, index: str = "_all") -> int:
        """How many documents the indices matching ``index`` hold."""
        with self._data_lock:
            return sum(len(self._indices[n].docs) for n in self._resolve(index, strict=False))

    def documents(self, index: str = "_all") -> list[dict[str, Any]]:
        """The ``_source`` of every document in the matching indices, in insertion order."""
        with self._data_lock:
            docs = [d for n in self._resolve(index, strict=False) for d in self._indices[n].docs.values()]
        return [dict(d.source) for d in sorted(docs, key=lambda d: d.seq)]

    def indices(self) -> list[str]:
        with self._data_lock:
            return sorted(self._indices)

    def delete_index(self, index: str) -> None:
        with self._data_lock:
            self._indices.pop(index, None)

    def clear(self) -> None:
        """Drop every index and point in time."""
        with self._data_lock:
            self._indices.clear()
            self._pits.clear()

    def open_pits(self) -> int:
        """How many points in time are open (closed or expired ones are not counted)."""
        now = self._clock()
        with self._data_lock:
            return sum(1 for p in self._pits.values() if p.expires > now)

    # ------------------------------------------------------------------ auth and headers

    def authorized(self, request: FakeRequest) -> bool:
        return self._auth_failure(request) is None

    def _auth_failure(self, request: FakeRequest) -> str | None:
        if not self.api_keys and not self.users:
            return None
        auth = request.header("authorization") or ""
        scheme, _, value = auth.partition(" ")
        if not auth:
            return f"missing authentication credentials for REST request [{request.path}]"
        if scheme.lower() == "apikey":
            try:
                key_id, _, key = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except ValueError:
                key_id, key = "", ""
            if key_id and self.api_keys.get(key_id) == key:
                return None
            return "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
        if scheme.lower() == "basic":
            creds = request.basic_auth()
            if creds and creds[0] in self.users and self.users[creds[0]] == creds[1]:
                return None
            user = creds[0] if creds else ""
            return f"unable to authenticate user [{user}] for REST request [{request.path}]"
        return "unable to authenticate with provided credentials and anonymous access is not allowed for this request"

    def unauthorized(self, request: FakeRequest) -> Response:
        reason = self._auth_failure(request) or "unauthorized"
        challenge = ['Basic realm="security", charset="UTF-8"', "ApiKey"]
        body = _error_body(401, "security_exception", reason, header={"WWW-Authenticate": challenge})
        return 401, body, {"WWW-Authenticate": 'Basic realm="security", charset="UTF-8"'}

    def fail_next(self, status: int, *, times: int = 1, retry_after: float | None = None,
                  body: Any = None, path: str | None = None, delay: float = 0.0) -> None:
        """As :meth:`FakeServer.fail_next`, with Elasticsearch's error body for the status."""
        if body is None:
            body = {
                429: _error_body(429, "es_rejected_execution_exception",
                                 "rejected execution of coordinating operation [search queue capacity reached]"),
                503: _error_body(503, "cluster_block_exception",
                                 "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];"),
            }.get(status, _error_body(status, "exception", f"injected failure {status}"))
        super().fail_next(status, times=times, retry_after=retry_after, body=body, path=path, delay=delay)

    def _respond(self, req: FakeRequest) -> Response:
        compat, problem = self._check_media_types(req)
        if problem is not None:
            response: Response = problem
        else:
            try:
                response = super()._respond(req)
            except EsQueryError as exc:
                response = (exc.status, exc.body())
        status, payload = response[0], response[1]
        headers = dict(response[2]) if len(response) > 2 else {}  # type: ignore[misc]
        headers["X-Elastic-Product"] = "Elasticsearch"
        if isinstance(payload, dict | list):
            mime = f"application/vnd.elasticsearch+json;compatible-with={compat}" if compat else "application/json"
            headers.setdefault("Content-Type", mime)
            if status in (404, 405) and isinstance(payload, dict) and "error" in payload and "status" not in payload:
                payload = _error_body(status, "illegal_argument_exception", str(payload["error"]))
        return status, payload, headers

    def _check_media_types(self, req: FakeRequest) -> tuple[str | None, Response | None]:
        accept = req.header("accept") or ""
        ctype = req.header("content-type") or ""
        versions = {m for h in (accept, ctype) for m in _COMPAT.findall(h)}
        bad = versions - _SUPPORTED_COMPAT
        if bad:
            headers = [n for n, h in (("Accept", accept), ("Content-Type", ctype)) if set(_COMPAT.findall(h)) & bad]
            reason = f"Invalid media-type value on headers {headers}".replace("'", "")
            return None, (400, _error_body(400, "media_type_header_exception", reason))
        if req.body and ctype:
            mime = ctype.split(";")[0].strip().lower()
            if mime not in _JSON_TYPES + _NDJSON_TYPES:
                return None, (406, {"error": f"Content-Type header [{ctype}] is not supported", "status": 406})
        compat = next(iter(sorted(versions)), None)
        if compat is None and "vnd.elasticsearch" in accept:
            compat = self.version.partition(".")[0]
        return compat, None

    # ------------------------------------------------------------------ storage

    def _put(self, index: str, doc_id: str, source: dict[str, Any]) -> str:
        idx = self._indices.get(index)
        if idx is None:
            idx = self._indices[index] = _Index(index)
        for name, value in _flatten(source):
            if name not in idx.mapping and value is not None:
                idx.mapping[name] = _infer_type(value)
        result = "updated" if doc_id in idx.docs else "created"
        idx.docs[doc_id] = _Doc(index, doc_id, source, next(self._seq))
        idx.version += 1
        return result

    def _resolve_for(self, req: FakeRequest, expression: str, *, no_indices_param: bool = True) -> list[str]:
        """:meth:`_resolve` with the request's ``ignore_unavailable`` (missing concrete indices are
        skipped) and ``allow_no_indices`` (``false``: an expression that names no index is a 404)."""
        ignore = _bool_param(req, "ignore_unavailable", False)
        allow_none = _bool_param(req, "allow_no_indices", True) if no_indices_param else True
        names = self._resolve(expression, strict=not ignore)
        if not names and not allow_none:
            raise EsQueryError(404, "index_not_found_exception", f"no such index [{expression}]",
                               **{"resource.type": "index_or_alias", "resource.id": expression,
                                  "index_uuid": "_na_", "index": expression})
        return names

    def _resolve(self, expression: str, *, strict: bool = True) -> list[str]:
        """The index names an expression names (comma list, wildcards, exclusions, ``_all``)."""
        names: list[str] = []
        for part in [p.strip() for p in expression.split(",") if p.strip()]:
            if part.startswith("-") and names:
                names = [n for n in names if not fnmatch.fnmatchcase(n, part[1:])]
            elif part in ("_all", "*") or "*" in part or "?" in part:
                pattern = "*" if part == "_all" else part
                names += [n for n in sorted(self._indices) if fnmatch.fnmatchcase(n, pattern) and n not in names]
            elif part in self._indices:
                if part not in names:
                    names.append(part)
            elif strict:
                raise EsQueryError(404, "index_not_found_exception", f"no such index [{part}]",
                                   **{"resource.type": "index_or_alias", "resource.id": part,
                                      "index_uuid": "_na_", "index": part})
        return names

    # ------------------------------------------------------------------ routes

    def _root(self, req: FakeRequest) -> Response:
        major = self.version.partition(".")[0]
        return 200, {
            "name": "opsradar-fake-node-1",
            "cluster_name": self.cluster_name,
            "cluster_uuid": self.cluster_uuid,
            "version": {
                "number": self.version,
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": "0000000000000000000000000000000000000000",
                "build_date": "2025-07-01T00:00:00.000000000Z",
                "build_snapshot": False,
                "lucene_version": "10.2.2",
                "minimum_wire_compatibility_version": f"{int(major) - 1}.19.0",
                "minimum_index_compatibility_version": f"{int(major) - 1}.0.0",
            },
            "tagline": "You Know, for Search",
        }

    def _body(self, req: FakeRequest) -> dict[str, Any]:
        if not req.body:
            return {}
        try:
            body = json.loads(req.body)
        except ValueError as exc:
            raise EsQueryError(400, "x_content_parse_exception", f"[1:1] failed to parse the request body: {exc}") from exc
        if not isinstance(body, dict):
            raise EsQueryError(400, "parsing_exception", "request body is required to be an object")
        return body

    def _open_pit(self, req: FakeRequest, index: str) -> Response:
        keep_alive = req.arg("keep_alive")
        if not keep_alive:
            raise EsQueryError(400, "action_request_validation_exception",
                               "Validation Failed: 1: [keep_alive] is missing;")
        seconds = _parse_time_value(keep_alive)
        with self._data_lock:
            names = self._resolve_for(req, index, no_indices_param=False)
            docs = [d for n in names for d in self._indices[n].docs.values()]
            mappings: dict[str, str] = {}
            for n in names:
                for k, v in self._indices[n].mapping.items():
                    mappings.setdefault(k, v)
            pit_id = base64.urlsafe_b64encode(secrets.token_bytes(24)).decode()
            self._pits[pit_id] = _Pit(sorted(docs, key=lambda d: d.seq), mappings, self._clock() + seconds)
        shards = len(names)
        return 200, {"id": pit_id, "_shards": {"total": shards, "successful": shards, "skipped": 0, "failed": 0}}

    def _close_pit(self, req: FakeRequest) -> Response:
        pit_id = self._body(req).get("id")
        if not isinstance(pit_id, str):
            raise EsQueryError(400, "action_request_validation_exception", "Validation Failed: 1: [id] is missing;")
        with self._data_lock:
            pit = self._pits.pop(pit_id, None)
        if pit is None or pit.expires <= self._clock():
            return 404, {"succeeded": True, "num_freed": 0}
        return 200, {"succeeded": True, "num_freed": 1}

    def _collect(self, req: FakeRequest, index: str | None, body: dict[str, Any]) -> tuple[list[_Doc], dict[str, str], str | None]:
        pit = body.get("pit")
        with self._data_lock:
            if pit is not None:
                if index is not None:
                    raise EsQueryError(400, "action_request_validation_exception",
                                       "Validation Failed: 1: [indices] cannot be used with point in time. Do not specify any index with point in time.;")
                pit_id = pit.get("id") if isinstance(pit, dict) else None
                found = self._pits.get(pit_id) if isinstance(pit_id, str) else None
                if found is None or found.expires <= self._clock():
                    raise EsQueryError(404, "search_context_missing_exception",
                                       f"No search context found for id [{pit_id}]")
                if pit.get("keep_alive"):
                    found.expires = self._clock() + _parse_time_value(str(pit["keep_alive"]))
                return list(found.docs), found.mappings, pit_id
            names = self._resolve_for(req, index or "_all")
            mappings: dict[str, str] = {}
            for n in names:
                for k, v in self._indices[n].mapping.items():
                    mappings.setdefault(k, v)
            bounds = _date_range_filter(body.get("query"), mappings)
            if bounds is not None and all(self._indices[n].mapping.get(bounds[0], "date") == "date" for n in names):
                # only the documents inside the range can match: the full query still runs on them
                docs = []
                for n in names:
                    ordered, keys = self._indices[n].date_sorted(bounds[0])
                    docs += ordered[_bisect_bounds(keys, bounds[1])]
            else:
                docs = [d for n in names for d in self._indices[n].docs.values()]
            return sorted(docs, key=lambda d: d.seq), mappings, None

    def _search(self, req: FakeRequest, index: str | None = None) -> Response:
        started = time.perf_counter()
        body = self._body(req)
        if req.arg("q") is not None:
            raise EsQueryError(400, "parsing_exception",
                               "the [q] parameter (query string syntax) is not supported by the opsradar Elasticsearch fake")
        for key in ("size", "from", "sort"):
            if req.arg(key) is not None and key not in body:
                body[key] = int(req.arg(key) or 0) if key in ("size", "from") else req.arg(key)
        known = {"query", "sort", "search_after", "size", "from", "pit", "track_total_hits", "_source", "timeout"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise EsQueryError(400, "parsing_exception", f"Unknown key for a START_OBJECT in [{unknown[0]}].")
        docs, mappings, pit_id = self._collect(req, index, body)
        size = _int_param(body.get("size", 10), "size")
        start = _int_param(body.get("from", 0), "from")
        if start + size > _MAX_RESULT_WINDOW:
            raise EsQueryError(400, "illegal_argument_exception",
                               f"Result window is too large, from + size must be less than or equal to: [{_MAX_RESULT_WINDOW}] but was [{start + size}].")
        sort_specs = _parse_sort(body.get("sort"), pit=pit_id is not None)
        query = body.get("query", {"match_all": {}})
        pit = self._pits.get(pit_id) if pit_id is not None else None
        cache_key = json.dumps([query, body.get("sort")], sort_keys=True, default=str)
        if pit is not None and sort_specs and cache_key in pit.sorted_cache:
            keyed, cmp_keys, total = pit.sorted_cache[cache_key]
        else:
            matcher = _compile_query(query, mappings)
            hits = [d for d in docs if matcher(d.source)]
            total = len(hits)
            keyed = _sort_hits(hits, sort_specs, mappings) if sort_specs else []
            cmp_keys = [_cmp_key(k, sort_specs) for _, k in keyed]
            if pit is not None and sort_specs:
                pit.sorted_cache[cache_key] = (keyed, cmp_keys, total)
        sorted_hits: list[tuple[_Doc, tuple[Any, ...] | None]] = (
            list(keyed) if sort_specs else [(d, None) for d in hits])
        after = body.get("search_after")
        if after is not None:
            if not sort_specs:
                raise EsQueryError(400, "action_request_validation_exception",
                                   "Validation Failed: 1: [search_after] requires a sort;")
            if not isinstance(after, list) or len(after) != len(sort_specs):
                n = len(after) if isinstance(after, list) else 1
                raise EsQueryError(400, "illegal_argument_exception",
                                   f"search_after has {n} value(s) but sort has {len(sort_specs)}.")
            after_key = _cmp_key(_after_key(after, sort_specs, mappings), sort_specs)
            first = bisect.bisect_right(cmp_keys, after_key)
            sorted_hits = list(keyed[first:])
        page = sorted_hits[start : start + size]
        out_hits = []
        for doc, sort_key in page:
            hit: dict[str, Any] = {"_index": doc.index, "_id": doc.id, "_score": None if sort_specs else 1.0,
                                   "_source": _select_source(doc.source, body.get("_source", True))}
            if sort_key is not None:
                hit["sort"] = [_render_sort_value(v, s, mappings) for v, s in zip(sort_key, sort_specs, strict=True)]
            out_hits.append(hit)
        hits_obj: dict[str, Any] = {}
        track = body.get("track_total_hits", _MAX_RESULT_WINDOW)  # Elasticsearch counts up to 10,000 by default
        if track is not False:
            if track is not True and isinstance(track, int) and total > track:
                hits_obj["total"] = {"value": track, "relation": "gte"}
            else:
                hits_obj["total"] = {"value": total, "relation": "eq"}
        hits_obj["max_score"] = None if sort_specs or not total else 1.0
        hits_obj["hits"] = out_hits
        response: dict[str, Any] = {}
        if pit_id is not None:
            response["pit_id"] = pit_id
        response.update({
            "took": int((time.perf_counter() - started) * 1000),
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": hits_obj,
        })
        return 200, response

    def _count(self, req: FakeRequest, index: str | None = None) -> Response:
        body = self._body(req)
        docs, mappings, _ = self._collect(req, index, {k: v for k, v in body.items() if k != "pit"})
        matcher = _compile_query(body.get("query", {"match_all": {}}), mappings)
        return 200, {"count": sum(1 for d in docs if matcher(d.source)),
                     "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}

    def _refresh(self, req: FakeRequest, index: str | None = None) -> Response:
        with self._data_lock:
            n = len(self._resolve(index or "_all"))
        return 200, {"_shards": {"total": n, "successful": n, "failed": 0}}

    def _bulk(self, req: FakeRequest, index: str | None = None) -> Response:
        started = time.perf_counter()
        lines = [ln for ln in req.body.split(b"\n") if ln.strip()]
        items: list[dict[str, Any]] = []
        errors = False
        i = 0
        with self._data_lock:
            while i < len(lines):
                try:
                    action_line = json.loads(lines[i])
                except ValueError as exc:
                    raise EsQueryError(400, "illegal_argument_exception",
                                       f"Malformed action/metadata line [{i + 1}], expected START_OBJECT but found [{exc}]") from exc
                if not isinstance(action_line, dict) or len(action_line) != 1:
                    raise EsQueryError(400, "illegal_argument_exception",
                                       f"Malformed action/metadata line [{i + 1}], expected a single action")
                op, meta = next(iter(action_line.items()))
                if op not in ("index", "create", "delete", "update") or not isinstance(meta, dict):
                    raise EsQueryError(400, "illegal_argument_exception",
                                       f"Malformed action/metadata line [{i + 1}], expected field [create], [delete], [index] or [update], but found [{op}]")
                target = meta.get("_index") or index
                if not target:
                    raise EsQueryError(400, "action_request_validation_exception",
                                       "Validation Failed: 1: index is missing;")
                doc_id = str(meta["_id"]) if meta.get("_id") is not None else None
                i += 1
                source: Any = None
                if op != "delete":
                    if i >= len(lines):
                        raise EsQueryError(400, "illegal_argument_exception",
                                           "The bulk request must be terminated by a newline [\\n]")
                    try:
                        source = json.loads(lines[i])
                    except ValueError:
                        source = None
                    i += 1
                item = self._bulk_item(op, str(target), doc_id, source)
                errors = errors or "error" in item
                items.append({op: item})
        return 200, {"errors": errors, "took": int((time.perf_counter() - started) * 1000), "items": items}

    def _bulk_item(self, op: str, index: str, doc_id: str | None, source: Any) -> dict[str, Any]:
        base: dict[str, Any] = {"_index": index, "_id": doc_id}
        shards = {"total": 1, "successful": 1, "failed": 0}
        if op == "update":
            base["status"] = 400
            base["error"] = {"type": "illegal_argument_exception", "reason": "the fake does not support bulk [update]"}
            return base
        if op == "delete":
            idx = self._indices.get(index)
            found = idx is not None and doc_id is not None and idx.docs.pop(doc_id, None) is not None
            if idx is not None:
                idx.version += 1
            return {**base, "_version": 1, "result": "deleted" if found else "not_found", "_shards": shards,
                    "status": 200 if found else 404, "_seq_no": next(self._seq), "_primary_term": 1}
        if not isinstance(source, dict):
            base["status"] = 400
            base["error"] = {"type": "document_parsing_exception", "reason": "[1:1] failed to parse: the document is not a JSON object"}
            return base
        try:
            _check_index_name(index)
        except EsQueryError as exc:
            return {**base, "status": exc.status, "error": {"type": exc.err_type, "reason": exc.reason}}
        if doc_id is None:
            doc_id = base64.urlsafe_b64encode(secrets.token_bytes(15)).decode()
            base["_id"] = doc_id
        exists = index in self._indices and doc_id in self._indices[index].docs
        if op == "create" and exists:
            base["status"] = 409
            base["error"] = {"type": "version_conflict_engine_exception",
                             "reason": f"[{doc_id}]: version conflict, document already exists (current version [1])",
                             "index": index, "shard": "0"}
            return base
        result = self._put(index, doc_id, source)
        return {**base, "_version": 1, "result": result, "_shards": shards,
                "status": 201 if result == "created" else 200, "_seq_no": next(self._seq), "_primary_term": 1}

    def _index_one(self, req: FakeRequest, index: str, doc_id: str | None = None) -> Response:
        source = self._body(req)
        with self._data_lock:
            _check_index_name(index)
            doc_id = doc_id or base64.urlsafe_b64encode(secrets.token_bytes(15)).decode()
            result = self._put(index, doc_id, source)
        return (201 if result == "created" else 200), {
            "_index": index, "_id": doc_id, "_version": 1, "result": result,
            "_shards": {"total": 1, "successful": 1, "failed": 0}, "_seq_no": next(self._seq), "_primary_term": 1}

    def _get_one(self, req: FakeRequest, index: str, doc_id: str) -> Response:
        with self._data_lock:
            self._resolve(index)
            doc = self._indices[index].docs.get(doc_id)
        if doc is None:
            return 404, {"_index": index, "_id": doc_id, "found": False}
        return 200, {"_index": index, "_id": doc_id, "_version": 1, "_seq_no": doc.seq, "_primary_term": 1,
                     "found": True, "_source": doc.source}

    def _create_index(self, req: FakeRequest, index: str) -> Response:
        with self._data_lock:
            _check_index_name(index)
            if index in self._indices:
                raise EsQueryError(400, "resource_already_exists_exception",
                                   f"index [{index}/{self._indices[index].uuid}] already exists",
                                   index_uuid=self._indices[index].uuid, index=index)
            self._indices[index] = _Index(index)
        return 200, {"acknowledged": True, "shards_acknowledged": True, "index": index}

    def _get_index(self, req: FakeRequest, index: str) -> Response:
        with self._data_lock:
            names = self._resolve(index)
            return 200, {n: {"aliases": {}, "mappings": {"properties": _properties(self._indices[n].mapping)},
                             "settings": {"index": {"number_of_shards": "1", "uuid": self._indices[n].uuid}}}
                         for n in names}

    def _delete_index_route(self, req: FakeRequest, index: str) -> Response:
        with self._data_lock:
            for n in self._resolve(index):
                self._indices.pop(n, None)
        return 200, {"acknowledged": True}


# ---------------------------------------------------------------------------- helpers


def _date_range_filter(query: Any, mappings: Mapping[str, str]) -> tuple[str, dict[str, datetime]] | None:
    """``(field, {op: bound})`` of a ``range`` on a date field that every hit of ``query`` must pass
    (the query itself, or a clause of a top-level ``bool``'s ``filter`` / ``must``); None otherwise."""
    if not isinstance(query, dict) or len(query) != 1:
        return None
    name, spec = next(iter(query.items()))
    clauses: list[Any] = []
    if name == "range":
        clauses = [query]
    elif name == "bool" and isinstance(spec, dict):
        for key in ("filter", "must"):
            items = spec.get(key, [])
            clauses += items if isinstance(items, list) else [items]
    for clause in clauses:
        rng = clause.get("range") if isinstance(clause, dict) and len(clause) == 1 else None
        if not isinstance(rng, dict) or len(rng) != 1:
            continue
        fld, ops = next(iter(rng.items()))
        if mappings.get(fld) != "date" or not isinstance(ops, dict):
            continue
        try:
            bounds = {op: _parse_date(v) for op, v in ops.items() if op in ("gt", "gte", "lt", "lte") and v is not None}
        except (TypeError, ValueError):
            continue  # the query's own matcher reports it
        return fld, bounds
    return None


def _bisect_bounds(keys: list[datetime], bounds: Mapping[str, datetime]) -> slice:
    lo, hi = 0, len(keys)
    if "gte" in bounds:
        lo = max(lo, bisect.bisect_left(keys, bounds["gte"]))
    if "gt" in bounds:
        lo = max(lo, bisect.bisect_right(keys, bounds["gt"]))
    if "lte" in bounds:
        hi = min(hi, bisect.bisect_right(keys, bounds["lte"]))
    if "lt" in bounds:
        hi = min(hi, bisect.bisect_left(keys, bounds["lt"]))
    return slice(lo, max(lo, hi))


def _check_index_name(index: str) -> None:
    if not index or index != index.lower() or index.startswith(("_", "-", "+")) or any(c in index for c in ' "*\\<|,>/?'):
        raise EsQueryError(400, "invalid_index_name_exception",
                           f"Invalid index name [{index}], must be lowercase and must not contain the characters [ , \", *, \\, <, |, ,, >, /, ?]",
                           index=index, index_uuid="_na_")


def _flatten(source: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in source.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            yield from _flatten(v, name + ".")
        else:
            yield name, v


def _infer_type(value: Any) -> str:
    if isinstance(value, list):
        return _infer_type(value[0]) if value else "keyword"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str) and _DATE_LIKE.match(value):
        try:
            _parse_date(value)
            return "date"
        except ValueError:
            return "keyword"
    return "keyword"


def _properties(mapping: Mapping[str, str]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, typ in sorted(mapping.items()):
        node = props
        parts = name.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {"properties": {}})["properties"]
        node[parts[-1]] = {"type": typ}
    return props


def _parse_time_value(value: str) -> float:
    m = re.fullmatch(r"\s*(\d+)\s*(nanos|micros|ms|s|m|h|d)\s*", value)
    if not m:
        raise EsQueryError(400, "parse_exception",
                           f"failed to parse setting [keep_alive] with value [{value}] as a time value: unit is missing or unrecognized")
    scale = {"nanos": 1e-9, "micros": 1e-6, "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return int(m.group(1)) * scale


def _bool_param(req: FakeRequest, name: str, default: bool) -> bool:
    raw = req.arg(name)
    if raw is None:
        return default
    if raw.lower() in ("", "true"):
        return True
    if raw.lower() == "false":
        return False
    raise EsQueryError(400, "illegal_argument_exception",
                       f"Failed to parse value [{raw}] as only [true] or [false] are allowed.")


def _int_param(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EsQueryError(400, "illegal_argument_exception", f"[{name}] parameter cannot be negative, found [{value}]")
    return value


def _field_value(source: Mapping[str, Any], name: str) -> Any:
    value = _get_path(source, name)
    if value is None and name.endswith(".keyword"):
        value = _get_path(source, name[: -len(".keyword")])
    return value


def _typed(value: Any, typ: str | None) -> Any:
    """A value as the field type compares it (dates as datetimes)."""
    if typ == "date":
        return _parse_date(value)
    if typ in ("long", "double") and isinstance(value, str):
        return float(value)
    return value


Matcher = Callable[[Mapping[str, Any]], bool]


def _compile_query(query: Any, mappings: Mapping[str, str]) -> Matcher:
    if not isinstance(query, dict) or len(query) != 1:
        raise EsQueryError(400, "parsing_exception", "[_na] query malformed, must start with start_object")
    name, spec = next(iter(query.items()))
    if name == "match_all":
        return lambda _s: True
    if name == "bool":
        return _compile_bool(spec, mappings)
    if name == "term":
        fld, value = _single_field(spec, name)
        if isinstance(value, dict):
            value = value.get("value")
        return _term_matcher(fld, [value], mappings)
    if name == "terms":
        if not isinstance(spec, dict) or len(spec) != 1:
            raise EsQueryError(400, "parsing_exception", "[terms] query malformed")
        fld, values = next(iter(spec.items()))
        if not isinstance(values, list):
            raise EsQueryError(400, "parsing_exception", f"[terms] query does not support [{fld}]")
        return _term_matcher(fld, values, mappings)
    if name == "exists":
        exists_field = spec.get("field") if isinstance(spec, dict) else None
        if not isinstance(exists_field, str):
            raise EsQueryError(400, "parsing_exception", "[exists] must be provided with a [field]")
        return lambda s: _field_value(s, exists_field) is not None
    if name == "range":
        return _range_matcher(spec, mappings)
    if name in _UNSUPPORTED_KNOWN:
        raise EsQueryError(400, "parsing_exception",
                           f"query [{name}] is not supported by the opsradar Elasticsearch fake "
                           "(supported: bool, range, term, terms, exists, match_all)")
    raise EsQueryError(400, "parsing_exception", f"unknown query [{name}]")


def _single_field(spec: Any, name: str) -> tuple[str, Any]:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise EsQueryError(400, "parsing_exception", f"[{name}] query doesn't support multiple fields")
    fld, value = next(iter(spec.items()))
    return str(fld), value


def _term_matcher(fld: str, values: list[Any], mappings: Mapping[str, str]) -> Matcher:
    typ = mappings.get(fld[: -len(".keyword")] if fld.endswith(".keyword") else fld)
    try:
        wanted = [_typed(v, typ) for v in values]
    except ValueError as exc:
        raise EsQueryError(400, "query_shard_exception", f"failed to create query: {exc}") from exc

    def match(s: Mapping[str, Any]) -> bool:
        value = _field_value(s, fld)
        candidates = value if isinstance(value, list) else [value]
        for c in candidates:
            if c is None:
                continue
            try:
                if _typed(c, typ) in wanted:
                    return True
            except ValueError:
                continue
        return False

    return match


def _range_matcher(spec: Any, mappings: Mapping[str, str]) -> Matcher:
    fld, bounds = _single_field(spec, "range")
    if not isinstance(bounds, dict):
        raise EsQueryError(400, "parsing_exception", f"[range] query malformed, no start_object after query name ({fld})")
    ops = {k: v for k, v in bounds.items() if k in ("gt", "gte", "lt", "lte")}
    for k in bounds:
        if k not in ("gt", "gte", "lt", "lte", "format", "time_zone", "boost"):
            raise EsQueryError(400, "parsing_exception", f"[range] query does not support [{k}]")
    typ = mappings.get(fld)
    if typ is None:
        typ = "date" if any(isinstance(v, str) and _DATE_LIKE.match(v) for v in ops.values()) else None
    try:
        limits = {k: _typed(v, typ) for k, v in ops.items() if v is not None}
    except ValueError as exc:
        raise EsQueryError(400, "parse_exception", f"failed to parse date field [{next(iter(ops.values()))}]: {exc}") from exc

    def match(s: Mapping[str, Any]) -> bool:
        raw = _field_value(s, fld)
        if raw is None:
            return False
        try:
            v = _typed(raw, typ)
            return all(
                (op == "gt" and v > lim) or (op == "gte" and v >= lim) or (op == "lt" and v < lim) or (op == "lte" and v <= lim)
                for op, lim in limits.items()
            )
        except (TypeError, ValueError):
            return False

    return match


def _compile_bool(spec: Any, mappings: Mapping[str, str]) -> Matcher:
    if not isinstance(spec, dict):
        raise EsQueryError(400, "parsing_exception", "[bool] query malformed")
    parts: dict[str, list[Matcher]] = {}
    for key, clauses in spec.items():
        if key in ("boost", "minimum_should_match", "_name"):
            continue
        if key not in ("filter", "must", "must_not", "should"):
            raise EsQueryError(400, "parsing_exception", f"[bool] query does not support [{key}]")
        items = clauses if isinstance(clauses, list) else [clauses]
        parts[key] = [_compile_query(c, mappings) for c in items]
    musts = parts.get("filter", []) + parts.get("must", [])
    nots = parts.get("must_not", [])
    shoulds = parts.get("should", [])
    min_should = int(spec.get("minimum_should_match", 0 if musts else 1 if shoulds else 0))

    def match(s: Mapping[str, Any]) -> bool:
        if not all(m(s) for m in musts) or any(m(s) for m in nots):
            return False
        return sum(1 for m in shoulds if m(s)) >= min_should if shoulds else True

    return match


@dataclass(frozen=True)
class _SortSpec:
    field: str
    desc: bool
    format: str | None
    missing_last: bool


def _parse_sort(sort: Any, *, pit: bool) -> list[_SortSpec]:
    if sort is None:
        return []
    items = sort if isinstance(sort, list) else [sort]
    out = []
    for item in items:
        if isinstance(item, str):
            fld, _, order = item.partition(":")
            opts: dict[str, Any] = {"order": order or ("desc" if fld == "_score" else "asc")}
        elif isinstance(item, dict) and len(item) == 1:
            fld, raw = next(iter(item.items()))
            opts = {"order": raw} if isinstance(raw, str) else dict(raw) if isinstance(raw, dict) else {}
        else:
            raise EsQueryError(400, "parsing_exception", f"malformed sort: {item!r}")
        order = str(opts.get("order", "desc" if fld == "_score" else "asc")).lower()
        if order not in ("asc", "desc"):
            raise EsQueryError(400, "illegal_argument_exception", f"Unknown SortOrder [{order}]")
        if fld == "_shard_doc" and not pit:
            raise EsQueryError(400, "action_request_validation_exception",
                               "Validation Failed: 1: [_shard_doc] sort field cannot be used without [point in time];")
        missing = opts.get("missing", "_last")
        out.append(_SortSpec(fld, order == "desc", opts.get("format"), missing != "_first"))
    return out


def _sort_key_value(doc: _Doc, spec: _SortSpec, mappings: Mapping[str, str]) -> Any:
    if spec.field in ("_shard_doc", "_doc"):
        return doc.seq
    if spec.field == "_score":
        return 1.0
    if spec.field == "_id":
        return doc.id
    raw = _field_value(doc.source, spec.field)
    if isinstance(raw, list):
        raw = (max if spec.desc else min)(raw) if raw else None
    if raw is None:
        return None
    typ = mappings.get(spec.field)
    try:
        if typ == "date":
            return _epoch_nanos(_parse_date(raw))
        return _typed(raw, typ)
    except ValueError:
        return None


def _epoch_nanos(d: datetime) -> int:
    return (d - _EPOCH) // timedelta(microseconds=1) * 1000


class _Missing:
    """Sorts after (or before) every value."""


def _cmp_key(values: tuple[Any, ...], specs: list[_SortSpec]) -> tuple[Any, ...]:
    out: list[Any] = []
    for v, s in zip(values, specs, strict=True):
        missing = v is None
        # missing values go last (or first) whatever the order
        flag = (1 if s.missing_last else -1) if missing else 0
        if s.desc:
            out.append((flag, _Neg(v) if not missing else 0))
        else:
            out.append((flag, v if not missing else 0))
    return tuple(out)


class _Neg:
    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Neg) -> bool:
        return bool(other.v < self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Neg) and bool(other.v == self.v)

    def __hash__(self) -> int:
        return hash(self.v)


def _sort_hits(docs: list[_Doc], specs: list[_SortSpec], mappings: Mapping[str, str]) -> list[tuple[_Doc, tuple[Any, ...]]]:
    keyed = [(d, tuple(_sort_key_value(d, s, mappings) for s in specs)) for d in docs]
    keyed.sort(key=lambda dk: _cmp_key(dk[1], specs))
    return keyed


def _after_key(after: list[Any], specs: list[_SortSpec], mappings: Mapping[str, str]) -> tuple[Any, ...]:
    out: list[Any] = []
    for v, s in zip(after, specs, strict=True):
        typ = mappings.get(s.field)
        if v is None or v in (_LONG_MAX, _LONG_MIN):
            out.append(None)
        elif s.field in ("_shard_doc", "_doc"):
            out.append(int(v))
        elif typ == "date":
            try:
                out.append(_epoch_nanos(_parse_date(v)))
            except ValueError as exc:
                raise EsQueryError(400, "parse_exception", f"failed to parse date field [{v}]") from exc
        else:
            out.append(_typed(v, typ))
    return tuple(out)


def _render_sort_value(value: Any, spec: _SortSpec, mappings: Mapping[str, str]) -> Any:
    if value is None:
        if mappings.get(spec.field) in ("date", "long", "double"):
            return _LONG_MAX if spec.missing_last != spec.desc else _LONG_MIN
        return None
    if mappings.get(spec.field) == "date" and spec.field not in ("_shard_doc", "_doc"):
        d = _EPOCH + timedelta(microseconds=value // 1000)
        return _format_date(d) if spec.format else _epoch_millis(d)
    return value


def _select_source(source: dict[str, Any], spec: Any) -> Any:
    if spec is True or spec is None:
        return source
    if spec is False:
        return None
    includes = [spec] if isinstance(spec, str) else spec if isinstance(spec, list) else spec.get("includes", ["*"])
    return {k: v for k, v in source.items() if any(fnmatch.fnmatchcase(k, p) for p in includes)}

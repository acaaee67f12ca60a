"""Reads application, access and audit logs from Elasticsearch with the official client.

One source is one index pattern (``logs-*``, or a comma list) and an optional extra query. Each run
first searches the window once (``size=batch_size``, sorted by ``@timestamp``): one search request
sees one consistent state of the shards, so a window holding less than a page is read in that one
request (an idle poll costs one request). A fuller window is read through a point in time, paged
sorted by ``@timestamp`` and a tiebreaker (``_shard_doc`` by default) with ``search_after``, and
closed. Every page is one :class:`Batch`, committed with the cursor of its last hit. Indices that
do not exist yet hold no documents (``ignore_unavailable``, ``allow_no_indices``), not an error.

The cursor is ``{"ts": <@timestamp of the last committed hit>, "sort": <its sort values>,
"id": "<index>/<_id>"}``. The next run starts at ``ts - overlap`` (sort values of an older point in
time are not comparable with a new one, so only the timestamp carries over); documents seen again
in the overlap have the same event id (``index/_id``) and are stored once. Late documents older
than the overlap are missed, so set ``overlap`` above the ingest delay of the cluster.

Each hit becomes one event, its kind chosen by ``kind`` in the config or, with ``auto``, from ECS
``event.dataset`` / ``event.category`` (and the presence of ``http.response.status_code``):

========  ===========================================  ===================  =====================
kind      labels                                        values               entity
========  ===========================================  ===================  =====================
log       service, level, host (+ template_id)          —                    service:NAME (or host)
access    service, path, method, status_class ("5xx")   status, duration_ms  service:NAME (or host)
audit     user, resource, action, outcome               —                    user:NAME (or service)
========  ===========================================  ===================  =====================

``attrs`` keep ``message`` (for template mining), ``index``, ``dataset`` and, for access logs, the
raw ``url`` path. ECS names are read flat (``"service.name": …``) or nested; ``field_map`` maps an
ECS name to the field your documents use instead (``{"service.name": "app"}``). The audit
``resource`` is the first of ``orchestrator.resource.name``, ``url.path``, ``file.path`` found.

Errors become :mod:`opsradar.errors`: 401/403 → ``SourceAuthError``; 429/503 are retried in the run
as ``Retry-After`` says (``retries``, up to ``max_retry_wait``), then → ``SourceUnavailable`` with
``retry_after`` for the scheduler; connection failures → ``SourceUnavailable``; a bad query →
``CollectorError`` quoting Elasticsearch's reason.

Log templates: log events get ``labels["template_id"]`` and ``attrs["template"]`` from
:class:`opsradar.detectors.templates.LogTemplater` (Drain3), one template scope per service. The
default templater lives in memory; pass ``templater=LogTemplater(store, key=f"templates/{name}")``
to keep template ids stable across restarts. ``templater=False`` turns mining off.

>>> from opsradar.config import ElasticsearchSource
>>> from opsradar.demo.fakes.elasticsearch import ElasticsearchFake
>>> fake = ElasticsearchFake().start()
>>> _ = fake.index_documents("logs-shop", [
...     {"@timestamp": "2026-01-05T09:30:00Z", "service.name": "shop", "log.level": "ERROR",
...      "message": "payment failed for order 42"},
...     {"@timestamp": "2026-01-05T09:30:01Z", "service.name": "shop", "url.path": "/orders/42",
...      "http.request.method": "POST", "http.response.status_code": 502, "event.duration": 1500000}])
>>> src = ElasticsearchSource(url=fake.url, index="logs-*")
>>> [(e.kind, e.entity, e.labels.get("level") or e.labels["status_class"], e.values)
...  for b in ElasticsearchCollector("logs", src).pull(None) for e in b.events]
[('log', 'service:shop', 'error', {}), ('access', 'service:shop', '5xx', {'status': 502.0, 'duration_ms': 1.5})]
>>> fake.stop()
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from opsradar.collectors._http import parse_retry_after
from opsradar.collectors.base import Batch, Collector, Rejected
from opsradar.collectors.registry import register
from opsradar.config import ElasticsearchSource, resolve_secret
from opsradar.errors import CollectorError, SourceAuthError, SourceDataError, SourceUnavailable
from opsradar.models import Event

__all__ = ["ElasticsearchCollector", "Templater", "classify", "hit_to_event", "load_templater"]

log = logging.getLogger(__name__)

#: ``(message, scope) -> (template_id, template)``, or None when the message has no template.
Templater = Callable[[str, str], tuple[str, str] | None]

_RETRY_STATUSES = (429, 502, 503, 504)
_AUDIT_CATEGORIES = {"authentication", "iam", "configuration"}
_ID_SEGMENT = re.compile(
    r"^(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{16,})$"
)
_FRACTION = re.compile(r"(\.\d{6})\d+")


def load_templater(templater: Any = None) -> Templater | None:
    """A :data:`Templater` from a ``LogTemplater`` (a new in-memory one when ``None``).

    Returns None when the log-template engine cannot be imported.
    """
    if templater is None:
        try:
            from opsradar.detectors.templates import LogTemplater
        except ImportError:  # the template engine is optional for the collector
            log.warning("opsradar.detectors.templates is not importable: log events get no template_id")
            return None
        templater = LogTemplater(None)
    miner = templater

    def mine(message: str, scope: str) -> tuple[str, str] | None:
        match = miner.add(message, scope)
        return match.template_id, match.template

    return mine


def parse_timestamp(value: Any) -> datetime:
    """An ECS ``@timestamp`` (ISO-8601, any fraction; or epoch milliseconds) as aware UTC.

    >>> parse_timestamp("2026-01-05T09:30:00.123456789Z")
    datetime.datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=datetime.timezone.utc)
    """
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    s = _FRACTION.sub(r"\1", value.strip())
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    d = datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.astimezone(UTC)


def _iso(d: datetime) -> str:
    return d.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _lookup(source: Mapping[str, Any], name: str) -> Any:
    if name in source:
        return source[name]
    head, sep, rest = name.partition(".")
    while sep:
        if isinstance(source.get(head), Mapping):
            return _lookup(source[head], rest)
        nxt, sep, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return None


class _Fields:
    """ECS names read through the user's ``field_map``."""

    def __init__(self, source: Mapping[str, Any], field_map: Mapping[str, str]) -> None:
        self.source, self.field_map = source, field_map

    def get(self, ecs: str) -> Any:
        return _lookup(self.source, self.field_map.get(ecs, ecs))

    def text(self, ecs: str) -> str | None:
        v = self.get(ecs)
        if v is None or isinstance(v, dict | list):
            return None if not isinstance(v, list) or not v else str(v[0])
        return str(v)


def classify(fields: _Fields) -> str:
    """``audit``, ``access`` or ``log`` from ECS ``event.dataset`` / ``event.category``."""
    dataset = (fields.text("event.dataset") or "").lower()
    category = fields.get("event.category")
    cats = {str(c).lower() for c in (category if isinstance(category, list) else [category]) if c}
    if dataset.endswith(".audit") or "audit" in dataset.split(".") or cats & _AUDIT_CATEGORIES:
        return "audit"
    if dataset.endswith(".access") or "web" in cats or fields.get("http.response.status_code") is not None:
        return "access"
    return "log"


def normalise_path(path: str) -> str:
    """A URL path with ids (numbers, UUIDs, long hex) replaced by ``{id}``, without the query.

    >>> normalise_path("/orders/42/items/9f8e7d6c5b4a39281716?x=1")
    '/orders/{id}/items/{id}'
    """
    path = path.split("?", 1)[0]
    return "/".join("{id}" if _ID_SEGMENT.match(seg) else seg for seg in path.split("/")) or "/"


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None


def _duration_ms(f: _Fields) -> float | None:
    """ECS ``event.duration`` (nanoseconds) in milliseconds; None when absent, ValueError when not a number."""
    duration = f.get("event.duration")
    return None if duration is None else _number(duration, "event.duration") / 1e6


def hit_to_event(
    hit: Mapping[str, Any],
    *,
    source_name: str,
    kind: str = "auto",
    field_map: Mapping[str, str] | None = None,
    templater: Templater | None = None,
) -> Event:
    """One search hit as an event. Raises ``ValueError`` with the reason for a malformed hit."""
    src = hit.get("_source")
    if not isinstance(src, Mapping):
        raise ValueError("the hit has no _source")
    f = _Fields(src, field_map or {})
    raw_ts = f.get("@timestamp")
    if raw_ts is None:
        raise ValueError(f"no {f.field_map.get('@timestamp', '@timestamp')} field")
    ts = parse_timestamp(raw_ts)
    kind = classify(f) if kind == "auto" else kind
    service, host = f.text("service.name"), f.text("host.name")
    message = f.text("message")
    labels: dict[str, str] = {}
    values: dict[str, float] = {}
    attrs: dict[str, Any] = {"index": hit.get("_index")}
    if message is not None:
        attrs["message"] = message
    dataset = f.text("event.dataset")
    if dataset:
        attrs["dataset"] = dataset
    if service:
        entity = f"service:{service}"
    elif host:
        entity = f"host:{host}"
    else:
        entity = ""
    if kind == "audit":
        user = f.text("user.name")
        resource = f.text("orchestrator.resource.name") or f.text("url.path") or f.text("file.path") or service
        labels.update(user=user or "unknown", resource=resource or "unknown",
                      action=f.text("event.action") or "unknown", outcome=(f.text("event.outcome") or "unknown").lower())
        if user:
            entity = f"user:{user}"
        if service:
            labels["service"] = service
    elif kind == "access":
        status = _number(f.get("http.response.status_code"), "http.response.status_code")
        if not 100 <= status <= 599 or not status.is_integer():
            raise ValueError(f"http.response.status_code must be an HTTP status, got {status!r}")
        path = f.text("url.path") or f.text("url.original") or "/"
        labels.update(service=service or "unknown", path=normalise_path(path),
                      method=(f.text("http.request.method") or "unknown").upper(),
                      status_class=f"{int(status) // 100}xx")
        values["status"] = status
        if (duration_ms := _duration_ms(f)) is not None:
            values["duration_ms"] = duration_ms
        attrs["url"] = path
        if source_ip := f.text("source.ip"):
            attrs["source_ip"] = source_ip
        if user := f.text("user.name"):
            attrs["user"] = user
    else:
        kind = "log"
        labels.update(service=service or "unknown", level=(f.text("log.level") or "unknown").lower())
        if (duration_ms := _duration_ms(f)) is not None:  # what the line measured: a GC pause, a slow query
            values["duration_ms"] = duration_ms
        if templater is not None and message:
            mined = templater(message, service or host or "")
            if mined is not None:
                labels["template_id"], attrs["template"] = mined[0], mined[1]
    if host:
        labels.setdefault("host", host)
    if not entity:
        raise ValueError("neither service.name, host.name nor user.name: no entity to attach the event to")
    return Event.new(source=source_name, native_id=f"{hit.get('_index')}/{hit.get('_id')}", kind=kind, ts=ts,
                     entity=entity, labels=labels, values=values, attrs=attrs)


class ElasticsearchCollector(Collector):  # type: ignore[misc]  # mypy sees opsradar.collectors via the folder mapping as Any
    """Pulls one index pattern with a point in time and ``search_after``."""

    kind = "elasticsearch"

    def __init__(
        self,
        name: str,
        config: ElasticsearchSource,
        *,
        client: Any = None,
        templater: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(name)
        self.config = config
        self._client = client
        self.templater: Templater | None = None if templater is False else load_templater(templater)
        self.sleep = sleep

    # ------------------------------------------------------------------ client

    @property
    def client(self) -> Any:
        if self._client is None:
            from elasticsearch import Elasticsearch

            cfg = self.config
            kwargs: dict[str, Any] = {
                "request_timeout": cfg.timeout.total_seconds(),
                "max_retries": 0,  # retries are ours: they honour Retry-After
                "retry_on_status": (),
                "verify_certs": cfg.verify_certs,
            }
            if cfg.ca_certs:
                kwargs["ca_certs"] = cfg.ca_certs
            api_key = resolve_secret(cfg.api_key_env)
            password = resolve_secret(cfg.password_env)
            if api_key is not None:
                kwargs["api_key"] = api_key.get_secret_value()
            elif cfg.user:
                kwargs["basic_auth"] = (cfg.user, password.get_secret_value() if password else "")
            self._client = Elasticsearch(cfg.url, **kwargs)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ------------------------------------------------------------------ errors

    def _translate(self, exc: Exception, what: str) -> CollectorError:
        from elasticsearch import (
            ApiError,
            AuthenticationException,
            AuthorizationException,
            SerializationError,
            UnsupportedProductError,
        )
        from elasticsearch import ConnectionError as EsConnectionError

        where = f"{what} on {self.config.url}"
        if isinstance(exc, AuthenticationException | AuthorizationException):
            status = exc.meta.status
            hint = ("check api_key_env / user and password_env" if status == 401
                    else "the credentials lack the 'read' and 'view_index_metadata' privileges on the index")
            return SourceAuthError(f"{where}: {status} {_reason(exc)}", source=self.name, hint=hint)
        if isinstance(exc, UnsupportedProductError):
            return SourceDataError(f"{where}: the server is not Elasticsearch", source=self.name,
                                   hint="check the url")
        if isinstance(exc, ApiError):
            status = exc.meta.status
            if status in _RETRY_STATUSES:
                retry_after = parse_retry_after(exc.meta.headers.get("retry-after"))
                return SourceUnavailable(f"{where}: {status} {_reason(exc)}", source=self.name,
                                         hint="the cluster is overloaded or recovering", retry_after=retry_after)
            if status == 404 and _error_type(exc) == "search_context_missing_exception":
                return SourceUnavailable(f"{where}: the point in time expired", source=self.name,
                                         hint="raise keep_alive; the next run resumes from the cursor")
            hint = "check index" if status == 404 else "check query and field_map"
            return CollectorError(f"{where}: {status} {_reason(exc)}", source=self.name, hint=hint)
        if isinstance(exc, EsConnectionError):
            return SourceUnavailable(f"{where}: cannot connect: {exc.message}", source=self.name,
                                     hint="check url, the network and TLS (ca_certs)")
        if isinstance(exc, SerializationError):
            return SourceDataError(f"{where}: unreadable response: {exc}", source=self.name)
        return CollectorError(f"{where}: {type(exc).__name__}: {exc}", source=self.name)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, retrying 429/503 as ``Retry-After`` says, its errors translated."""
        from elasticsearch import ApiError, TransportError

        attempt = 0
        while True:
            try:
                return fn()
            except (ApiError, TransportError) as exc:
                err = self._translate(exc, what)
                if not err.retryable or attempt >= self.config.retries:
                    raise err from exc
                wait = err.retry_after if err.retry_after is not None else min(2.0 ** attempt, 30.0)
                if wait > self.config.max_retry_wait.total_seconds():
                    raise err from exc
                attempt += 1
                log.info("%s — retry %d in %.1fs", err, attempt, wait)
                self.sleep(wait)

    # ------------------------------------------------------------------ pull

    def _query(self, start: datetime | None, until: datetime | None) -> dict[str, Any]:
        ts_field = self.config.field_map.get("@timestamp", "@timestamp")
        bounds: dict[str, Any] = {}
        if start is not None:
            bounds["gte"] = _iso(start)
        if until is not None:
            bounds["lt"] = _iso(until)
        filters: list[dict[str, Any]] = [{"exists": {"field": ts_field}}]
        if bounds:
            filters.append({"range": {ts_field: {**bounds, "format": "strict_date_optional_time_nanos"}}})
        if self.config.query:
            filters.append(self.config.query)
        return {"bool": {"filter": filters}}

    def pull(self, cursor: Any, *, until: datetime | None = None) -> Iterator[Batch]:
        cfg = self.config
        start: datetime | None = None
        if isinstance(cursor, Mapping) and cursor.get("ts"):
            start = parse_timestamp(cursor["ts"]) - cfg.overlap
        ts_field = cfg.field_map.get("@timestamp", "@timestamp")
        ts_sort = {ts_field: {"order": "asc", "format": "strict_date_optional_time_nanos"}}
        query = self._query(start, until)
        last: dict[str, Any] | None = dict(cursor) if isinstance(cursor, Mapping) else None
        # One plain search first: a single search request sees one consistent state of every shard,
        # so when the window holds less than a page, that page is everything and no point in time
        # is needed (an idle poll is one request). Indices that do not exist yet hold no documents.
        resp = self._call(f"search {cfg.index!r}", lambda: self.client.search(
            index=cfg.index, query=query, sort=[ts_sort], size=cfg.batch_size, track_total_hits=False,
            ignore_unavailable=True, allow_no_indices=True))
        hits = resp.get("hits", {}).get("hits", [])
        if len(hits) < cfg.batch_size:
            if hits:
                yield self._batch(hits, last)
            return
        yield from self._pull_with_pit(query, [ts_sort, {cfg.tiebreaker: "asc"}], last)

    def _pull_with_pit(self, query: dict[str, Any], sort: list[Any], last: dict[str, Any] | None) -> Iterator[Batch]:
        """Page through a point in time with ``search_after``, one batch per page."""
        cfg = self.config
        keep_alive = f"{max(1, int(cfg.keep_alive.total_seconds()))}s"
        pit_id = self._call(f"open a point in time on {cfg.index!r}",
                            lambda: self.client.open_point_in_time(index=cfg.index, keep_alive=keep_alive,
                                                                   ignore_unavailable=True))["id"]
        search_after: list[Any] | None = None
        try:
            while True:
                def page(pit: str = pit_id, after: list[Any] | None = search_after) -> Any:
                    return self.client.search(pit={"id": pit, "keep_alive": keep_alive}, query=query, sort=sort,
                                              size=cfg.batch_size, search_after=after, track_total_hits=False)

                resp = self._call(f"search {cfg.index!r}", page)
                pit_id = resp.get("pit_id") or pit_id
                hits = resp.get("hits", {}).get("hits", [])
                if not hits:
                    return
                batch = self._batch(hits, last)
                last = batch.cursor
                search_after = last["sort"]
                yield batch
                if len(hits) < cfg.batch_size:
                    return
        finally:
            self._close_pit(pit_id)

    def _batch(self, hits: list[Any], last: Mapping[str, Any] | None) -> Batch:
        """One page of hits as a batch, its cursor taken from the last hit."""
        cfg = self.config
        events: list[Event] = []
        rejected: list[Rejected] = []
        for hit in hits:
            native = f"{hit.get('_index')}/{hit.get('_id')}"
            try:
                events.append(hit_to_event(hit, source_name=self.name, kind=cfg.kind,
                                           field_map=cfg.field_map, templater=self.templater))
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                rejected.append(Rejected(native, _short(exc)))
        tail = hits[-1]
        sort_values = tail.get("sort")
        if not isinstance(sort_values, list):
            raise SourceDataError(f"search {cfg.index!r}: a hit came back without sort values", source=self.name)
        cursor = {"ts": self._cursor_ts(tail, last), "sort": sort_values, "id": f"{tail.get('_index')}/{tail.get('_id')}"}
        return Batch(events=events, cursor=cursor, rejected=rejected)

    def _cursor_ts(self, hit: Mapping[str, Any], previous: Mapping[str, Any] | None) -> str | None:
        sort = hit.get("sort") or []
        for candidate in (sort[0] if sort else None, _lookup(hit.get("_source") or {}, self.config.field_map.get("@timestamp", "@timestamp"))):
            try:
                return _iso(parse_timestamp(candidate))
            except (ValueError, TypeError):
                continue
        return previous.get("ts") if previous else None

    def _close_pit(self, pit_id: str) -> None:
        try:
            self.client.close_point_in_time(id=pit_id)
        except Exception as exc:  # noqa: BLE001 - a PIT that cannot be closed expires by itself
            log.debug("source %r: could not close the point in time: %s", self.name, exc)


def _short(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return "; ".join(lines[:3])


def _error_type(exc: Any) -> str | None:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        t = body["error"].get("type")
        return str(t) if t else None
    return None


def _reason(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            causes = err.get("root_cause") or []
            first = causes[0] if causes and isinstance(causes[0], Mapping) else err
            return f"{first.get('type', err.get('type'))}: {first.get('reason', err.get('reason'))}"
        if isinstance(err, str):
            return err
    return str(getattr(exc, "message", exc))


def _factory(name: str, config: Any) -> Collector:
    return ElasticsearchCollector(name, config)


register("elasticsearch", _factory)

"""The HTTP API (FastAPI), versioned under ``/v1``.

``create_app(ops, store, auth, …)`` builds the app; it is the same app on Ray Serve (as the ingress
deployment) and in tests (with :class:`~opsradar.serving.operations.LocalOperations`).

Every endpoint but ``/healthz`` and ``/readyz`` needs a bearer token whose role allows it
(``reader`` < ``operator`` < ``rule-author`` < ``admin``): a missing or unknown token gets 401, a
role too low gets 403. Slack interactions are authenticated by Slack's signature instead. Request
bodies are size-capped (413), and malformed input gets a 4xx with a precise message, never a 500.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from opsradar import __version__
from opsradar.config import Config, EntityGraph
from opsradar.serving.auth import Forbidden, Principal, TokenAuth, Unauthorized
from opsradar.serving.metrics import INGEST_EVENTS, INGEST_SECONDS
from opsradar.serving.operations import Operations, Unavailable
from opsradar.store import Store

__all__ = ["create_app"]

log = logging.getLogger(__name__)


class ApiError(BaseModel):
    detail: str


class ItemError(BaseModel):
    index: int
    path: str
    message: str


class IngestResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    accepted: int = Field(description="valid items in the request")
    stored: int = Field(description="items that were new (others were already stored: same id)")
    rejected: int
    errors: list[ItemError]
    anomalies: int = 0
    alerts: int | None = Field(default=0, description="alerts raised by these events; null when the incident "
                               "owner handles them after the answer (on Ray Serve: alerts and incidents follow)")


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["true_positive", "false_positive"]
    reason: str = Field(default="", max_length=2000)


class SilenceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    matchers: list[str] = Field(min_length=1, description="Alertmanager-style matchers, e.g. service=\"shop\"")
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    duration: str | None = Field(default=None, description="instead of ends_at, e.g. '1h'")
    comment: str = Field(default="", max_length=2000)


#: The longest history ``POST /v1/rules/backtest`` replays in one request.
MAX_BACKTEST_WINDOW = timedelta(days=31)


class BacktestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: dict[str, str] | None = Field(
        default=None, max_length=500,
        description="candidate rule files, {file name: YAML text}; default: the configured rule files as they "
        "are on disk now")
    since: AwareDatetime | None = Field(default=None, description="start of the replayed history; default: 24 h "
                                        "before `until`")
    until: AwareDatetime | None = Field(default=None, description="end of the replayed history; default: now")


class BodyLimit:
    """ASGI middleware: every request body is capped at ``max_bytes`` (413), declared or streamed."""

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send, f"request body of {int(declared)} bytes is over the limit of {self.max_bytes} bytes")
            return
        seen = 0
        started = rejected = False

        async def limited_receive() -> Any:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request" and not rejected:
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    rejected = True  # answer 413 now; the app sees a disconnect and its answer is dropped
                    if not started:
                        await self._reject(send, f"request body is over the limit of {self.max_bytes} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if rejected:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, tracking_send)

    @staticmethod
    async def _reject(send: Any, detail: str) -> None:
        body = JSONResponse({"detail": detail}, status_code=413).body
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _role(needed: str) -> Any:
    def check(request: Request) -> Principal:
        auth: TokenAuth = request.app.state.auth
        try:
            return auth.check(_bearer(request), needed)
        except Unauthorized as exc:
            raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
        except Forbidden as exc:
            raise HTTPException(403, str(exc)) from None

    return Depends(check)


Reader = Annotated[Principal, _role("reader")]
Operator = Annotated[Principal, _role("operator")]
RuleAuthor = Annotated[Principal, _role("rule-author")]
Admin = Annotated[Principal, _role("admin")]


def create_app(
    ops: Operations,
    store: Store,
    auth: TokenAuth,
    *,
    graph: EntityGraph | None = None,
    max_body_bytes: int = 5 * 1024 * 1024,
    max_batch_items: int = 10_000,
    max_clock_skew: timedelta | None = timedelta(hours=1),
    public_url: str | None = None,
    config: Config | None = None,
) -> FastAPI:
    """The API app. ``ops`` performs owned-state operations and backtests; ``store`` serves reads;
    a backtest with no files in its request reads ``config``'s rule paths (embedded defaults without it)."""
    app = FastAPI(
        title="opsradar API",
        version=__version__,
        description="Incidents, root-cause reports, rules, silences, models and event ingestion. "
        "Authenticate with `Authorization: Bearer <token>`.",
        responses={401: {"model": ApiError}, 403: {"model": ApiError}},
    )
    graph = graph or EntityGraph()
    backtest_cfg = config or Config()  # the rule paths of POST /v1/rules/backtest
    app.state.auth = auth
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return JSONResponse({"detail": "invalid request", "errors": errors}, status_code=422)

    async def _body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise HTTPException(413, f"request body of {declared} bytes is over the limit of {max_body_bytes} bytes")
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > max_body_bytes:
                raise HTTPException(413, f"request body is over the limit of {max_body_bytes} bytes")
        return data

    # ------------------------------------------------------------------ health and metrics

    @app.get("/healthz", tags=["health"], summary="Liveness (no auth)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Readiness (no auth)", responses={503: {"model": ApiError}})
    async def readyz() -> JSONResponse:
        state = await ops.ready()
        return JSONResponse(state, status_code=200 if state.get("ready") else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics(_p: Reader) -> Response:
        return Response(await ops.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # ------------------------------------------------------------------ events

    @app.post("/v1/events", tags=["events"], response_model=IngestResponse,
              summary="Push events: a JSON array or NDJSON; each item is validated on its own",
              responses={400: {"model": ApiError}, 413: {"model": ApiError}, 422: {"model": IngestResponse},
                         503: {"model": ApiError}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                  "application/x-ndjson": {"schema": {"type": "string"}}}}})
    async def post_events(request: Request, _p: Operator) -> JSONResponse:
        from opsradar.collectors.push import PayloadTooLarge, PushFormatError, parse_batch
        from opsradar.models import utcnow

        started = time.perf_counter()
        body = await _body(request)
        ctype = request.headers.get("content-type", "application/json")
        try:
            parsed = parse_batch(body, ctype, max_bytes=max_body_bytes, max_items=max_batch_items,
                                 not_after=utcnow() + max_clock_skew if max_clock_skew is not None else None)
        except PayloadTooLarge as exc:
            raise HTTPException(413, str(exc)) from None
        except PushFormatError as exc:
            raise HTTPException(400, str(exc)) from None
        errors = [ItemError(index=e.index, path=e.path, message=e.message) for e in parsed.errors]
        summary: dict[str, Any] = {"stored": 0}
        if parsed.events:
            try:
                summary = await ops.ingest(parsed.events)
            except Unavailable as exc:
                raise HTTPException(503, f"{exc}; the events that were new are stored and will be detected "
                                         "when the detector comes back", headers={"Retry-After": "5"}) from None
        out = IngestResponse(accepted=len(parsed.events), rejected=len(errors), errors=errors,
                             **{k: v for k, v in summary.items() if k not in ("accepted", "rejected", "errors")})
        status = 200 if parsed.events or not errors else 422
        INGEST_EVENTS.labels(outcome="rejected").inc(len(errors))
        INGEST_SECONDS.observe(time.perf_counter() - started)
        return JSONResponse(out.model_dump(), status_code=status)

    # ------------------------------------------------------------------ incidents

    @app.get("/v1/incidents", tags=["incidents"], summary="List incidents, newest first")
    async def list_incidents(
        _p: Reader,
        status: Literal["open", "acknowledged", "resolved"] | None = None,
        service: str | None = Query(default=None, max_length=256),
        min_severity: Literal["info", "warning", "error", "critical"] | None = Query(
            default=None, description="this severity or a higher one (error: error and critical)"),
        since: datetime | None = None,
        limit: int = Query(default=50, ge=1, le=500),
        offset: int = Query(default=0, ge=0, le=1_000_000),
    ) -> dict[str, Any]:
        from opsradar.models import Severity

        if since is not None and since.tzinfo is None:
            raise HTTPException(422, "since must have a time zone, e.g. 2026-01-05T09:00:00Z")
        if service or min_severity:  # filter in Python: services and severity live in the document
            floor = Severity(min_severity).rank if min_severity else 0
            ranks = {s.value: s.rank for s in Severity}
            docs = [d for d in store.list_incidents(status=status, since=since, limit=5000)
                    if (not service or service in d.get("services", []))
                    and ranks.get(d.get("severity", ""), 0) >= floor]
            page = docs[offset: offset + limit]
        else:
            page = store.list_incidents(status=status, since=since, limit=limit, offset=offset)
        return {"incidents": page, "limit": limit, "offset": offset,
                "next_offset": offset + limit if len(page) == limit else None}

    def _incident(incident_id: str) -> dict[str, Any]:
        if len(incident_id) > 128:
            raise HTTPException(404, f"no incident {incident_id[:40]!r}…")
        doc = store.get_incident(incident_id)
        if doc is None:
            raise HTTPException(404, f"no incident {incident_id!r}")
        return doc

    @app.get("/v1/incidents/{incident_id}", tags=["incidents"], responses={404: {"model": ApiError}})
    async def get_incident(incident_id: str, _p: Reader) -> dict[str, Any]:
        """The incident, its alerts, and its Slack messages: in each channel, the state of its first
        message (``held`` for ``group_wait`` until ``due_at``, ``queued``, ``retrying``, ``sent``
        or ``failed``), its route's ``repeat_interval_s`` and, while the incident is open, when the
        next reminder is due (``next_reminder_at``)."""
        from opsradar.alerting.notifiers.outbox import message_state
        from opsradar.models import utcnow

        doc = _incident(incident_id)
        now = utcnow()
        reminders = doc.get("status") == "open" and (config is None or config.slack.apply_repeat_interval)
        return {**doc, "alerts": store.alerts_of(incident_id),
                "slack_messages": [message_state(r, now, reminders=reminders)
                                   for r in store.first_messages(incident_id)]}

    @app.post("/v1/incidents/{incident_id}/ack", tags=["incidents"], responses={404: {"model": ApiError}, 409: {"model": ApiError}})
    async def ack(incident_id: str, p: Operator) -> dict[str, Any]:
        _incident(incident_id)
        return await _action(incident_id, "ack", p)

    @app.post("/v1/incidents/{incident_id}/resolve", tags=["incidents"], responses={404: {"model": ApiError}, 409: {"model": ApiError}})
    async def resolve(incident_id: str, p: Operator) -> dict[str, Any]:
        _incident(incident_id)
        return await _action(incident_id, "resolve", p)

    async def _action(incident_id: str, action: str, p: Principal) -> dict[str, Any]:
        try:
            return await ops.incident_action(incident_id, action, f"api:{p.name}")
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None

    @app.post("/v1/incidents/{incident_id}/feedback", tags=["incidents"], responses={404: {"model": ApiError}})
    async def feedback(incident_id: str, body: FeedbackBody, p: Operator) -> dict[str, Any]:
        _incident(incident_id)
        return await ops.feedback(incident_id, body.verdict, f"api:{p.name}", body.reason)

    @app.get("/v1/incidents/{incident_id}/report", tags=["incidents"],
             summary="Root-cause report: JSON (default), Markdown (format=md) or a self-contained HTML page",
             responses={404: {"model": ApiError}, 200: {"content": {"text/markdown": {}, "text/html": {}}}})
    async def report(incident_id: str, _p: Reader, format: Literal["json", "md", "html"] = "json") -> Response:
        from anyio import to_thread

        from opsradar.alerting.rootcause import report_for

        _incident(incident_id)
        rep = await to_thread.run_sync(lambda: report_for(incident_id, store, graph))
        if format == "md":
            return PlainTextResponse(rep.to_markdown(), media_type="text/markdown; charset=utf-8")
        if format == "html":
            return HTMLResponse(rep.to_html())
        return Response(rep.to_json(), media_type="application/json")

    # ------------------------------------------------------------------ silences, rules, models, sources

    @app.get("/v1/silences", tags=["silences"])
    async def list_silences(_p: Reader) -> dict[str, Any]:
        return {"silences": await ops.list_silences()}

    @app.post("/v1/silences", tags=["silences"], status_code=201, responses={422: {"model": ApiError}})
    async def add_silence(body: SilenceBody, p: Operator) -> dict[str, Any]:
        try:
            return await ops.add_silence(body.model_dump(mode="json"), f"api:{p.name}")
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.delete("/v1/silences/{silence_id}", tags=["silences"], summary="Expire a silence now",
                responses={404: {"model": ApiError}})
    async def expire_silence(silence_id: str, p: Operator) -> dict[str, Any]:
        """End an API or Slack silence now (it stays listed until it is older than the retention);
        a silence from a rule file is removed by editing the file (404 here)."""
        if len(silence_id) > 64:
            raise HTTPException(404, f"no silence {silence_id[:40]!r}…")
        try:
            return await ops.expire_silence(silence_id, f"api:{p.name}")
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/v1/rules", tags=["rules"])
    async def rules(_p: Reader) -> dict[str, Any]:
        return await ops.rules_status()

    @app.post("/v1/rules/reload", tags=["rules"], responses={422: {"model": ApiError}})
    async def reload_rules(p: RuleAuthor) -> JSONResponse:
        result = await ops.reload_rules(f"api:{p.name}")
        return JSONResponse(result, status_code=200 if result.get("ok") else 422)

    @app.post("/v1/rules/backtest", tags=["rules"], responses={422: {"model": ApiError}, 503: {"model": ApiError}},
              summary="Replay stored history through candidate rules and the rules in force")
    async def backtest_rules(body: BacktestBody, _p: RuleAuthor) -> JSONResponse:
        """What the candidate rules (``files``, or the rule files on disk) would have done with the
        events and anomalies stored between ``since`` and ``until`` (at most 31 days), against what the
        rules in force did: alerts raised, dropped and notified, per rule, routing, severity, incidents
        merged or split. Invalid files get 422 with every problem (file, line, YAML path)."""
        from anyio import to_thread

        from opsradar.alerting.rules.loader import read_texts
        from opsradar.errors import RuleError
        from opsradar.models import utcnow

        until = body.until or utcnow()
        since = body.since or until - timedelta(hours=24)
        if since >= until:
            raise HTTPException(422, f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
        if until - since > MAX_BACKTEST_WINDOW:
            raise HTTPException(422, f"the window is {until - since}; replay at most {MAX_BACKTEST_WINDOW.days} "
                                     "days per request")
        try:  # the rule files of this node, read here; the replay runs where ops runs it (a Ray task on Serve)
            texts = body.files if body.files is not None else await to_thread.run_sync(
                read_texts, backtest_cfg.rules.paths)
        except RuleError as exc:
            return JSONResponse({"detail": "invalid rules", "errors": [str(p) for p in exc.problems]}, status_code=422)
        try:
            doc = await ops.backtest(texts, since, until)
        except Unavailable as exc:
            raise HTTPException(503, f"{exc}: try again, or replay a shorter window",
                                headers={"Retry-After": "30"}) from None
        if "problems" in doc:
            return JSONResponse({"detail": "invalid rules", "errors": doc["problems"]}, status_code=422)
        return JSONResponse(doc)

    @app.get("/v1/models", tags=["models"])
    async def models(_p: Reader) -> dict[str, Any]:
        return {"models": await ops.list_models()}

    @app.post("/v1/models/{model_id}/promote", tags=["models"], responses={404: {"model": ApiError}})
    async def promote(model_id: str, p: Admin) -> dict[str, Any]:
        return await _model(model_id, "promote", p)

    @app.post("/v1/models/{model_id}/rollback", tags=["models"], responses={404: {"model": ApiError}})
    async def rollback(model_id: str, p: Admin) -> dict[str, Any]:
        return await _model(model_id, "rollback", p)

    async def _model(model_id: str, action: str, p: Principal) -> dict[str, Any]:
        try:
            return await ops.model_action(model_id, action, f"api:{p.name}")
        except (KeyError, LookupError) as exc:
            raise HTTPException(404, str(exc).strip("'\"")) from None
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get("/v1/sources", tags=["sources"], summary="Collector health per source")
    async def sources(_p: Reader) -> dict[str, Any]:
        return await ops.sources()

    # ------------------------------------------------------------------ slack

    @app.post("/v1/slack/interactions", tags=["slack"], summary="Slack interactive callbacks (signed by Slack)",
              responses={401: {"model": ApiError}})
    async def slack_interactions(request: Request) -> JSONResponse:
        body = await _body(request)
        status, payload = await ops.slack_interaction(body, dict(request.headers))
        return JSONResponse(payload, status_code=status)

    app.state.public_url = public_url
    return app

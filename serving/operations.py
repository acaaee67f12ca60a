"""What the HTTP API asks of the application: the operations that change owned state.

The API (``serving/api.py``) talks to an :class:`Operations` object. Locally (tests, ``opsradar
demo`` in-process) that is :class:`LocalOperations`, which calls a :class:`~opsradar.serving.pipeline.Pipeline`
in a worker thread; on Ray Serve it is the ingress deployment, which calls the owning deployments
through their handles. Reads that need no owner (incidents, reports) go straight to the store.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from opsradar.models import Event

if TYPE_CHECKING:
    from opsradar.config import Config
    from opsradar.store import Store

__all__ = ["LocalOperations", "Operations", "Unavailable", "backtest_document"]


class Unavailable(RuntimeError):
    """A part of the application is down or restarting (HTTP 503); the message says what."""


class Operations(Protocol):
    async def ingest(self, events: list[Event]) -> dict[str, Any]: ...
    async def incident_action(self, incident_id: str, action: str, actor: str) -> dict[str, Any]: ...
    async def feedback(self, incident_id: str, verdict: str, actor: str, reason: str) -> dict[str, Any]: ...
    async def list_silences(self) -> list[dict[str, Any]]: ...
    async def add_silence(self, spec: dict[str, Any], actor: str) -> dict[str, Any]: ...
    async def expire_silence(self, silence_id: str, actor: str) -> dict[str, Any]: ...
    async def rules_status(self) -> dict[str, Any]: ...
    async def reload_rules(self, actor: str) -> dict[str, Any]: ...
    async def list_models(self) -> list[dict[str, Any]]: ...
    async def model_action(self, model_id: str, action: str, actor: str) -> dict[str, Any]: ...
    async def sources(self) -> dict[str, Any]: ...
    async def slack_interaction(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]: ...
    async def ready(self) -> dict[str, Any]: ...
    async def metrics_text(self) -> bytes: ...
    async def backtest(self, texts: dict[str, str], since: datetime, until: datetime) -> dict[str, Any]: ...


def backtest_document(store: Store | str, texts: dict[str, str], since: datetime, until: datetime,
                      cfg: Config) -> dict[str, Any]:
    """What ``POST /v1/rules/backtest`` answers: the report of the candidate rule files ``texts``
    against the rules in force over ``since``–``until`` (the window, then the report's fields), or
    ``{"problems": [...]}`` when the files are invalid. ``store``: a store, or its URL (in a Ray task)."""
    from opsradar.alerting.rules.commands import run_backtest
    from opsradar.errors import RuleError
    from opsradar.store import Store

    db = Store(store) if isinstance(store, str) else store
    try:
        report = run_backtest(db, texts, since=since, until=until, cfg=cfg)
    except RuleError as exc:
        return {"problems": [str(p) for p in exc.problems]}
    finally:
        if db is not store:  # opened here
            db.close()
    return {"since": since.isoformat(), "until": until.isoformat(), **report.as_dict()}


class LocalOperations:
    """:class:`Operations` on an in-process pipeline (its blocking calls run in a worker thread)."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    async def _run(self, name: str, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(getattr(self.pipeline, name), *args)

    async def ingest(self, events: list[Event]) -> dict[str, Any]:
        return await self._run("ingest_summary", events)  # type: ignore[no-any-return]

    async def incident_action(self, incident_id: str, action: str, actor: str) -> dict[str, Any]:
        return await self._run("incident_action", incident_id, action, actor)  # type: ignore[no-any-return]

    async def feedback(self, incident_id: str, verdict: str, actor: str, reason: str) -> dict[str, Any]:
        return await self._run("feedback", incident_id, verdict, actor, reason)  # type: ignore[no-any-return]

    async def list_silences(self) -> list[dict[str, Any]]:
        return await self._run("list_silences")  # type: ignore[no-any-return]

    async def add_silence(self, spec: dict[str, Any], actor: str) -> dict[str, Any]:
        return await self._run("add_silence", spec, actor)  # type: ignore[no-any-return]

    async def expire_silence(self, silence_id: str, actor: str) -> dict[str, Any]:
        return await self._run("expire_silence", silence_id, actor)  # type: ignore[no-any-return]

    async def rules_status(self) -> dict[str, Any]:
        return await self._run("rules_status")  # type: ignore[no-any-return]

    async def reload_rules(self, actor: str) -> dict[str, Any]:
        return await self._run("reload_rules", actor)  # type: ignore[no-any-return]

    async def list_models(self) -> list[dict[str, Any]]:
        return await self._run("list_models")  # type: ignore[no-any-return]

    async def model_action(self, model_id: str, action: str, actor: str) -> dict[str, Any]:
        return await self._run("model_action", model_id, action, actor)  # type: ignore[no-any-return]

    async def sources(self) -> dict[str, Any]:
        return await self._run("sources")  # type: ignore[no-any-return]

    async def slack_interaction(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return await self._run("slack_interaction", body, headers)  # type: ignore[no-any-return]

    async def ready(self) -> dict[str, Any]:
        return await self._run("ready")  # type: ignore[no-any-return]

    async def metrics_text(self) -> bytes:
        return await self._run("metrics_text")  # type: ignore[no-any-return]

    async def backtest(self, texts: dict[str, str], since: datetime, until: datetime) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(backtest_document, self.pipeline.store, texts, since, until,
                                              self.pipeline.cfg)

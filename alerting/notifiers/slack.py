"""Slack: the transport that delivers outbox rows, and the handler of interactive buttons.

:class:`SlackTransport` sends one outbox row through ``slack_sdk.WebClient(base_url=…)``:
``post`` → ``chat.postMessage`` (Block Kit, with message metadata naming the row's dedup key),
``update`` → ``chat.update`` of the parent, ``reply`` → ``chat.postMessage`` in the parent's thread,
``digest``/``digest_update`` → the storm digest. Slack errors become :class:`~opsradar.errors.NotifyError`
with ``retryable`` and ``retry_after`` (HTTP 429 ``Retry-After``).

**The delivery guarantee**, precisely. Every (incident, state change, channel) is enqueued once
(unique dedup key). A row is marked *in flight* in the store before a message is posted. If the
process dies after Slack accepted the message but before the row was marked delivered, the next
attempt sees the in-flight mark and first looks for the message: ``conversations.history`` (or
``conversations.replies`` for a thread reply) with ``include_all_metadata``, matching the dedup key
in the message metadata, over the messages since the row was created. If found, its ``ts`` is
adopted and nothing is posted again. Updates are idempotent (``chat.update`` renders the current
state). So no message is lost (the row stays pending until delivered, or goes ``dead`` on a
permanent error such as ``channel_not_found``), and none is duplicated **unless** the lookup cannot
see the message (history older than ``lookup_limit`` messages in a very busy channel, or a missing
``channels:history`` scope): then the at-least-once fallback posts again.

:class:`InteractionHandler` handles ``POST /v1/slack/interactions``: it verifies Slack's signature
(``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the signing secret, timestamp within five
minutes, via ``slack_sdk.signature.SignatureVerifier``) and raises :class:`InvalidSignature` for
anything else; then it acknowledges, resolves, silences for an hour or marks the incident a false
positive, auditing the Slack user.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.error import URLError
from urllib.parse import parse_qs

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import Clock, SignatureVerifier
from sqlalchemy import select

from opsradar import schema as t
from opsradar.alerting.correlation import Correlator, IncidentUpdate
from opsradar.alerting.incidents import common_labels, incident_lock, load_incident, revision, save_incident
from opsradar.alerting.notifiers.outbox import Deferred, Destination, Notifier, OutboxWorker, digest_post_key, post_key
from opsradar.alerting.notifiers.render import Renderer, evidence_lines
from opsradar.config import SlackConfig, resolve_secret
from opsradar.errors import NotifyError, OpsradarError
from opsradar.models import Incident, IncidentStatus
from opsradar.store import Store

__all__ = [
    "METADATA_EVENT",
    "InteractionHandler",
    "InteractionResult",
    "InvalidSignature",
    "SlackTransport",
    "destinations_from_receivers",
    "make_slack_worker",
    "record_message_ts",
]

log = logging.getLogger(__name__)

METADATA_EVENT = "opsradar_notification"
#: Slack error codes worth retrying (the rest are permanent: bad token, unknown channel, …).
RETRYABLE_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                              "request_timeout"})


class InvalidSignature(OpsradarError):
    """A Slack request whose signature or timestamp does not verify (the HTTP layer answers 401)."""


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for k, v in dict(headers).items():
        if k.lower() == name.lower():
            return str(v[0] if isinstance(v, list) else v)
    return None


def _translate(method: str, exc: Exception) -> NotifyError:
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if status == 429:
            ra = _header(exc.response.headers, "Retry-After")
            try:
                retry_after = float(ra) if ra else 1.0
            except ValueError:
                retry_after = 1.0
            return NotifyError(f"slack {method}: rate limited (Retry-After {retry_after:g}s)", retryable=True,
                               retry_after=retry_after)
        retryable = status >= 500 or (error in RETRYABLE_ERRORS)
        return NotifyError(f"slack {method} failed: {error or 'no error code'} (HTTP {status})", retryable=retryable)
    return NotifyError(f"slack {method}: {type(exc).__name__}: {exc}", retryable=True)


class SlackTransport:
    """Delivers outbox rows to Slack (see the module docstring for the guarantee)."""

    def __init__(self, client: WebClient, store: Store, renderer: Renderer | None = None, *,
                 lookup_limit: int = 1000) -> None:
        client.retry_handlers = []  # the outbox owns retries
        self.client = client
        self.store = store
        self.renderer = renderer or Renderer()
        self.lookup_limit = lookup_limit
        self._ids: dict[str, str] = {}

    # ------------------------------------------------------------------ Slack calls

    def _call(self, method: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except (SlackApiError, SlackClientError, URLError, OSError, TimeoutError) as exc:
            raise _translate(method, exc) from exc

    def channel_id(self, channel: str) -> str:
        """The id of ``#name`` (``conversations.list``), cached; ids are returned as they are."""
        if not channel.startswith("#") and channel[:1] in ("C", "G", "D") and channel.isupper():
            return channel
        if channel in self._ids:
            return self._ids[channel]
        name, cursor = channel.lstrip("#"), None
        while True:
            resp = self._call("conversations.list", self.client.conversations_list, limit=200,
                              types="public_channel,private_channel", **({"cursor": cursor} if cursor else {}))
            for ch in resp.get("channels", []):
                if ch.get("name") == name:
                    self._ids[channel] = ch["id"]
                    return str(ch["id"])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                raise NotifyError(f"slack: channel {channel!r} not found (is the app in it?)", retryable=False)

    def _find(self, method: str, fn: Callable[..., Any], dedup_key: str, **kwargs: Any) -> str | None:
        """The ts of the message carrying ``dedup_key`` in its metadata, if Slack has it."""
        cursor, seen = None, 0
        while seen < self.lookup_limit:
            resp = self._call(method, fn, include_all_metadata=True, limit=200,
                              **kwargs, **({"cursor": cursor} if cursor else {}))
            for msg in resp.get("messages", []):
                meta = msg.get("metadata") or {}
                if meta.get("event_type") == METADATA_EVENT and (meta.get("event_payload") or {}).get("dedup_key") == dedup_key:
                    return str(msg["ts"])
            seen += len(resp.get("messages", []))
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None

    @staticmethod
    def _metadata(row: Mapping[str, Any]) -> dict[str, Any]:
        return {"event_type": METADATA_EVENT,
                "event_payload": {"dedup_key": row["dedup_key"], "incident_id": row["incident_id"] or ""}}

    def _oldest(self, row: Mapping[str, Any]) -> str:
        created: datetime = row["created_at"]
        return f"{(created - timedelta(minutes=10)).timestamp():.6f}"

    # ------------------------------------------------------------------ rows

    def _incident(self, incident_id: str) -> Incident:
        doc = self.store.get_incident(incident_id)
        if doc is None:
            raise NotifyError(f"no incident {incident_id!r} to notify about", retryable=False)
        return Incident.model_validate(doc)

    def _parent(self, dedup_key: str) -> dict[str, Any]:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(t.outbox.c.status, t.outbox.c.result).where(t.outbox.c.dedup_key == dedup_key)).first()
        if row is None or row.status == "dead":
            raise NotifyError(f"the parent message {dedup_key} {'failed' if row else 'was never queued'}", retryable=False)
        if row.status != "done" or not row.result:
            raise Deferred(f"waiting for the parent message {dedup_key}")
        return dict(row.result)

    def deliver(self, row: Mapping[str, Any], *, maybe_sent: bool, before_send: Callable[[], None]) -> dict[str, Any]:
        action = row["action"]
        payload = row["payload"]
        if action == "post":
            inc = self._incident(payload["incident_id"])
            mentions = self._mentions_for(inc, payload)
            evidence, more = self._evidence(inc)
            text = self.renderer.incident_text(inc, mentions=mentions, evidence=evidence, more=more)
            blocks = self.renderer.incident_blocks(inc, mentions=mentions, evidence=evidence, more=more)
            result = self._post(row, maybe_sent, before_send, text=text, blocks=blocks)
            if result.get("recovered"):  # bring the recovered message up to date
                self._call("chat.update", self.client.chat_update, channel=result["channel"], ts=result["ts"],
                           text=text, blocks=blocks)
            return {**result, "rev": revision(inc), "source": (inc.sources or [""])[0], "rule": inc.title[:64]}
        if action == "update":
            parent = self._parent(post_key(row["incident_id"], row["channel"]))
            inc = self._incident(row["incident_id"])
            mentions = self._post_mentions(row, inc)
            evidence, more = self._evidence(inc)
            self._call("chat.update", self.client.chat_update, channel=parent["channel"], ts=parent["ts"],
                       text=self.renderer.incident_text(inc, mentions=mentions, evidence=evidence, more=more),
                       blocks=self.renderer.incident_blocks(inc, mentions=mentions, evidence=evidence, more=more))
            return {"channel": parent["channel"], "ts": parent["ts"], "rev": revision(inc)}
        if action == "reply":
            parent = self._parent(post_key(row["incident_id"], row["channel"]))
            inc = self._incident(row["incident_id"])
            if payload.get("change") == "reminder" and inc.status != IncidentStatus.open:
                return {"skipped": f"the incident is {inc.status.value}: no reminder"}
            text = self.renderer.reply_text(payload["change"], detail=payload.get("detail", ""),
                                            actor=payload.get("actor"), mentions=payload.get("mentions") or [])
            blocks = self.renderer.reminder_blocks(inc, text) if payload.get("change") == "reminder" else None
            result = self._post(row, maybe_sent, before_send, text=text, blocks=blocks, thread_ts=parent["ts"],
                                channel_id=parent["channel"])
            return {**result, "source": (inc.sources or [""])[0], "rule": inc.title[:64]}
        if action == "digest_reminder":
            parent = self._parent(digest_post_key(row["channel"], payload["digest_id"]))
            still = [inc for inc in map(self._incident, payload["members"]) if inc.status == IncidentStatus.open]
            if not still:
                return {"skipped": "every incident of the digest is acknowledged or resolved: no reminder"}
            text = self.renderer.digest_reminder_text(still, detail=payload.get("detail", ""),
                                                      mentions=payload.get("mentions") or [])
            result = self._post(row, maybe_sent, before_send, text=text,
                                blocks=self.renderer.section_blocks(text),
                                thread_ts=parent["ts"], channel_id=parent["channel"])
            return {**result, "source": (still[0].sources or [""])[0], "rule": "storm digest"}
        if action in ("digest", "digest_update"):
            members = [self._incident(i) for i in payload["members"]]
            started = datetime.fromisoformat(payload["started"])
            text = self.renderer.digest_text(members, started=started)
            blocks = self.renderer.digest_blocks(members, started=started)
            if action == "digest":
                return self._post(row, maybe_sent, before_send, text=text, blocks=blocks)
            parent = self._parent(digest_post_key(row["channel"], payload["digest_id"]))
            self._call("chat.update", self.client.chat_update, channel=parent["channel"], ts=parent["ts"],
                       text=text, blocks=blocks)
            return {"channel": parent["channel"], "ts": parent["ts"]}
        raise NotifyError(f"unknown outbox action {action!r}", retryable=False)

    def _evidence(self, inc: Incident) -> tuple[list[str], int]:
        """What the incident's alerts saw, as the message shows it (read when the row is delivered,
        so an update shows the incident's alerts as they are then)."""
        return evidence_lines(self.store.alerts_of(inc.id))

    @staticmethod
    def _mentions_for(inc: Incident, post_payload: Mapping[str, Any]) -> list[str]:
        """The channel's mentions when the incident's *current* severity calls for them."""
        if inc.severity.value not in (post_payload.get("mention_on") or []):
            return []
        return list(post_payload.get("mentions") or [])

    def _post_mentions(self, row: Mapping[str, Any], inc: Incident) -> list[str]:
        with self.store.engine.connect() as conn:
            payload = conn.execute(select(t.outbox.c.payload).where(
                t.outbox.c.dedup_key == post_key(row["incident_id"], row["channel"]))).scalar()
        return self._mentions_for(inc, payload or {})

    def _post(self, row: Mapping[str, Any], maybe_sent: bool, before_send: Callable[[], None], *, text: str,
              blocks: list[dict[str, Any]] | None = None, thread_ts: str | None = None,
              channel_id: str | None = None) -> dict[str, Any]:
        if maybe_sent:
            cid = channel_id or self.channel_id(row["channel"])
            if thread_ts:
                found = self._find("conversations.replies", self.client.conversations_replies, row["dedup_key"],
                                   channel=cid, ts=thread_ts)
            else:
                found = self._find("conversations.history", self.client.conversations_history, row["dedup_key"],
                                   channel=cid, oldest=self._oldest(row))
            if found:
                log.info("outbox row %s was already delivered (ts %s); not posting again", row["dedup_key"], found)
                return {"channel": cid, "ts": found, "recovered": True}
        kwargs: dict[str, Any] = {"channel": channel_id or row["channel"], "text": text, "metadata": self._metadata(row)}
        if blocks:
            kwargs["blocks"] = blocks
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        before_send()
        resp = self._call("chat.postMessage", self.client.chat_postMessage, **kwargs)
        return {"channel": resp["channel"], "ts": resp["ts"]}


def record_message_ts(store: Store) -> Callable[[Mapping[str, Any], dict[str, Any]], None]:
    """An ``on_delivered`` hook: store the parent message's channel and ts with the incident."""

    def hook(row: Mapping[str, Any], result: dict[str, Any]) -> None:
        if row["action"] != "post" or not row["incident_id"] or "ts" not in result:
            return
        with incident_lock(store) as conn:
            inc = load_incident(conn, row["incident_id"])
            if inc.slack_ts is None:
                inc.slack_channel, inc.slack_ts = result["channel"], result["ts"]
                save_incident(store, conn, inc)

    return hook


def make_slack_worker(store: Store, cfg: SlackConfig, *, token: str | None = None, public_url: str | None = None,
                      **worker_kwargs: Any) -> OutboxWorker:
    """The outbox worker wired to Slack (token from ``cfg.token_env`` unless given)."""
    if token is None:
        secret = resolve_secret(cfg.token_env)
        if secret is None:
            raise NotifyError(f"the Slack token variable {cfg.token_env} is not set", retryable=False)
        token = secret.get_secret_value()
    client = WebClient(token=token, base_url=cfg.base_url, timeout=10)
    transport = SlackTransport(client, store, Renderer(cfg.templates_dir, public_url=public_url))
    worker_kwargs.setdefault("on_delivered", record_message_ts(store))
    return OutboxWorker(store, transport, **worker_kwargs)


# ------------------------------------------------------------------------------------ interactions


@dataclass(frozen=True)
class InteractionResult:
    """What a button did; ``message`` is shown back to the user (and ``proposed_rule``, if any)."""

    action: str
    incident_id: str
    actor: str
    message: str
    proposed_rule: str | None = None
    silences: list[str] = field(default_factory=list)


class _FixedClock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


SilenceHook = Callable[[list[str], datetime, str, str], Any]


class InteractionHandler:
    """Verifies and executes Slack button clicks (``handle_interaction(body, headers)``)."""

    def __init__(self, *, signing_secret: str, correlator: Correlator, notifier: Notifier | None = None,
                 silencer: Any = None, clock: Callable[[], float] = time.time) -> None:
        if not signing_secret:
            raise ValueError("a Slack signing secret is required to accept interactions")
        self.verifier = SignatureVerifier(signing_secret, clock=_FixedClock(clock))
        self.correlator = correlator
        self.notifier = notifier
        self.silencer = silencer
        self.clock = clock

    def handle_interaction(self, body: bytes, headers: Mapping[str, str]) -> InteractionResult:
        """Verify the request, then run its action. Raises :class:`InvalidSignature` or ``ValueError``."""
        if not self.verifier.is_valid_request(body, dict(headers)):
            raise InvalidSignature("invalid Slack signature or a stale timestamp")
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=False)
            payload = json.loads(form["payload"][0])
        except (KeyError, IndexError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a Slack interaction payload: {exc}") from exc
        if payload.get("type") != "block_actions" or not payload.get("actions"):
            raise ValueError(f"unsupported interaction type {payload.get('type')!r}")
        action = payload["actions"][0]
        user = payload.get("user") or {}
        actor = f"slack:{user.get('username') or user.get('name') or user.get('id') or 'unknown'}"
        return self.run(str(action.get("action_id")), str(action.get("value") or ""), actor,
                        {"user_id": user.get("id"), "team_id": (payload.get("team") or {}).get("id")})

    __call__ = handle_interaction

    def run(self, action_id: str, incident_id: str, actor: str, detail: dict[str, Any] | None = None) -> InteractionResult:
        now = datetime.fromtimestamp(self.clock(), UTC)
        store = self.correlator.store
        inc = self.correlator.get(incident_id)
        update: IncidentUpdate | None = None
        if action_id == "opsradar_ack":
            update = self.correlator.ack(incident_id, actor, now)
            result = InteractionResult("ack", incident_id, actor, f"Acknowledged by {actor}")
        elif action_id == "opsradar_resolve":
            update = self.correlator.resolve(incident_id, actor, now)
            result = InteractionResult("resolve", incident_id, actor, f"Resolved by {actor}")
        elif action_id == "opsradar_silence_1h":
            ids = self._silence(inc, actor, now)
            result = InteractionResult("silence_1h", incident_id, actor,
                                       f"Silenced for 1h by {actor} ({len(ids)} silence(s))", silences=ids)
        elif action_id == "opsradar_false_positive":
            fb = self.correlator.feedback("incident", incident_id, "false_positive", actor, "marked in Slack", now)
            msg = "Marked as a false positive."
            if fb.proposed_rule:
                msg += " A rule that would drop such alerts (not applied):\n" + fb.proposed_rule
            result = InteractionResult("false_positive", incident_id, actor, msg, proposed_rule=fb.proposed_rule)
        else:
            raise ValueError(f"unknown action {action_id!r}")
        store.audit(actor, f"slack.{result.action}", f"incident:{incident_id}",
                    {**(detail or {}), **({"silences": result.silences} if result.silences else {})})
        if update is not None and self.notifier is not None:
            self.notifier.notify(update, now)
        return result

    def _silence(self, inc: Incident, actor: str, now: datetime) -> list[str]:
        if self.silencer is None:
            raise ValueError("no silence hook is configured")
        if inc.services:
            groups = [[f'service="{s}"'] for s in inc.services]
        else:
            labels = common_labels([d.get("labels", {}) for d in self.correlator.store.alerts_of(inc.id)])
            groups = [[f'{k}="{v}"' for k, v in sorted(labels.items()) if k in ("alertname", "source", "entity")]]
        ends = now + timedelta(hours=1)
        comment = f"silenced from Slack for incident {inc.id}"
        ids = []
        for matchers in groups:
            if not matchers:
                continue
            if hasattr(self.silencer, "add"):
                got = self.silencer.add(matchers, starts_at=now, ends_at=ends, created_by=actor, comment=comment, now=now)
            else:
                got = self.silencer(matchers, ends, actor, comment)
            ids.append(str(getattr(got, "id", got)))
        return ids


def destinations_from_receivers(receivers: Any) -> dict[str, Destination | None]:
    """``{receiver name: Destination}`` from the rule engine's receivers (objects with ``.name`` and
    ``.slack.channel`` / ``.slack.mentions``); a receiver without Slack maps to None (a sink)."""
    out: dict[str, Destination | None] = {}
    for r in receivers or []:
        slack = getattr(r, "slack", None)
        out[r.name] = Destination(slack.channel, tuple(slack.mentions)) if slack is not None else None
    return out

"""A loopback fake of the Slack Web API methods the notifier uses.

Methods: ``chat.postMessage``, ``chat.update``, ``conversations.history``, ``conversations.replies``,
``conversations.list`` and ``auth.test``, reached by ``slack_sdk.WebClient(base_url=fake.url + "/api/")``.
Shapes follow Slack's documentation: every answer is HTTP 200 with ``{"ok": true, …}`` or
``{"ok": false, "error": "invalid_auth" | "not_authed" | "channel_not_found" | "message_not_found" |
"thread_not_found" | "no_text" | "invalid_arguments"}``; rate limiting is HTTP 429 with ``Retry-After``
and ``{"ok": false, "error": "ratelimited"}`` (:meth:`SlackFake.rate_limit_next`). Message metadata
is stored and returned by the history methods when ``include_all_metadata`` is set.

The fake records every message, every edit and every thread reply, so tests read what a Slack user
would see with :meth:`SlackFake.channel_messages`.

>>> from slack_sdk import WebClient
>>> with SlackFake(token="xoxb-test", channels=["ops"]) as fake:
...     client = WebClient(token="xoxb-test", base_url=fake.url + "/api/")
...     ts = client.chat_postMessage(channel="#ops", text="hello")["ts"]
...     _ = client.chat_update(channel=fake.channel_id("ops"), ts=ts, text="hello, world")
...     [(m["text"], len(m["edits"])) for m in fake.channel_messages("ops")]
[('hello, world', 1)]
"""

from __future__ import annotations

import copy
import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from opsradar.demo.fakes.base import FakeRequest, FakeServer, Response

__all__ = ["SlackFake"]

BOT_USER = "U0OPSRADAR"
BOT_ID = "B0OPSRADAR"


class SlackFake(FakeServer):
    """The fake workspace: channels by id and name, messages with edits and threads."""

    name = "slack"

    def __init__(self, *, token: str = "xoxb-test-token", channels: list[str] | None = None,  # noqa: S107
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.token = token
        self._channels: dict[str, str] = {}  # id -> name
        self._messages: dict[str, list[dict[str, Any]]] = {}  # channel id -> messages (incl. replies)
        self._last_ts = 0.0
        self._data_lock = threading.RLock()
        self._holds: dict[str, list[tuple[int, threading.Event]]] = {}
        self.held = threading.Event()
        for name in channels or ["opsradar"]:
            self.add_channel(name)
        for method, handler in {
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.list": self._list,
            "auth.test": self._auth_test,
        }.items():
            self.route("POST", rf"/api/{method}", handler)
            self.route("GET", rf"/api/{method}", handler)

    # ------------------------------------------------------------------ test helpers

    def add_channel(self, name: str) -> str:
        """Create a public channel; returns its id (``C`` + 8 characters)."""
        name = name.lstrip("#")
        with self._data_lock:
            for cid, n in self._channels.items():
                if n == name:
                    return cid
            cid = f"C{len(self._channels) + 1:08d}"
            self._channels[cid] = name
            self._messages[cid] = []
            return cid

    def channel_id(self, channel: str) -> str:
        cid = self._resolve(channel)
        if cid is None:
            raise KeyError(f"no channel {channel!r} in the fake workspace")
        return cid

    def rate_limit_next(self, *, retry_after: float = 1, times: int = 1, method: str | None = None) -> None:
        """Answer the next ``times`` calls (of ``method``) with HTTP 429, ``Retry-After`` and ``ratelimited``."""
        self.fail_next(429, times=times, retry_after=retry_after, body={"ok": False, "error": "ratelimited"},
                       path=f"/api/{method}" if method else "/api/")

    def hold_after_accept(self, method: str = "chat.postMessage", *, skip: int = 0) -> threading.Event:
        """Make a ``method`` call (the next one, after ``skip`` more) record its effect, then block before answering.

        ``self.held`` is set once a call is held; set the returned event to let it answer. This is how a
        test kills a client after Slack accepted a message but before the client heard back.
        """
        release = threading.Event()
        with self._data_lock:
            self._holds.setdefault(method, []).append((skip, release))
        return release

    def channel_messages(self, channel: str) -> list[dict[str, Any]]:
        """Top-level messages of a channel, oldest first, as a user sees them now.

        Each: ``ts``, ``text``, ``blocks``, ``metadata``, ``edits`` (earlier versions, oldest first) and
        ``replies`` (thread replies, each with the same fields).
        """
        cid = self.channel_id(channel)
        with self._data_lock:
            msgs = copy.deepcopy(self._messages[cid])
        top = [m for m in msgs if m.get("thread_ts") in (None, m["ts"])]
        for m in top:
            m["replies"] = [r for r in msgs if r.get("thread_ts") == m["ts"] and r["ts"] != m["ts"]]
        return top

    def all_messages(self) -> dict[str, list[dict[str, Any]]]:
        """Every channel's messages, by channel name."""
        return {name: self.channel_messages(cid) for cid, name in list(self._channels.items())}

    def calls(self, method: str) -> int:
        return sum(1 for r in self.requests if r.path == f"/api/{method}")

    # ------------------------------------------------------------------ plumbing

    def authorized(self, request: FakeRequest) -> bool:
        return True  # Slack answers auth problems with HTTP 200 and ok=false; see _auth_error

    def _auth_error(self, req: FakeRequest, args: dict[str, Any]) -> Response | None:
        token = req.bearer() or args.get("token")
        if not token:
            return 200, {"ok": False, "error": "not_authed"}
        if token != self.token:
            return 200, {"ok": False, "error": "invalid_auth"}
        return None

    @staticmethod
    def _args(req: FakeRequest) -> dict[str, Any]:
        args: dict[str, Any] = {k: v[0] for k, v in req.query.items()}
        ctype = req.header("content-type") or ""
        if req.body:
            if "json" in ctype:
                args.update(json.loads(req.body))
            else:
                args.update({k: v[0] for k, v in parse_qs(req.body.decode(), keep_blank_values=True).items()})
        for key in ("blocks", "metadata"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        return args

    def _resolve(self, channel: str | None) -> str | None:
        if not channel:
            return None
        with self._data_lock:
            if channel in self._channels:
                return channel
            name = channel.lstrip("#")
            for cid, n in self._channels.items():
                if n == name:
                    return cid
        return None

    def _next_ts(self) -> str:
        with self._data_lock:  # like Slack: the epoch time in microseconds, unique per workspace here
            self._last_ts = max(time.time(), self._last_ts + 0.000001)
            return f"{self._last_ts:.6f}"

    def _hold(self, method: str) -> None:
        release = None
        with self._data_lock:
            queue = self._holds.get(method)
            if queue:
                skip, ev = queue[0]
                if skip > 0:
                    queue[0] = (skip - 1, ev)
                else:
                    queue.pop(0)
                    release = ev
        if release is not None:
            self.held.set()
            release.wait(60)

    @staticmethod
    def _public(msg: dict[str, Any], *, metadata: bool) -> dict[str, Any]:
        out = {k: v for k, v in msg.items() if k not in ("edits", "channel") and (metadata or k != "metadata")}
        return out

    def _handle(self, req: FakeRequest, method: str) -> tuple[dict[str, Any], Response | None]:
        args = self._args(req)
        return args, self._auth_error(req, args)

    # ------------------------------------------------------------------ methods

    def _auth_test(self, req: FakeRequest) -> Response:
        _args, err = self._handle(req, "auth.test")
        if err:
            return err
        return 200, {"ok": True, "url": "https://fake.slack.com/", "team": "Fake", "user": "opsradar",
                     "team_id": "T0FAKE", "user_id": BOT_USER, "bot_id": BOT_ID}

    def _post_message(self, req: FakeRequest) -> Response:
        args, err = self._handle(req, "chat.postMessage")
        if err:
            return err
        cid = self._resolve(args.get("channel"))
        if cid is None:
            return 200, {"ok": False, "error": "channel_not_found"}
        if not args.get("text") and not args.get("blocks"):
            return 200, {"ok": False, "error": "no_text"}
        thread_ts = args.get("thread_ts")
        with self._data_lock:
            if thread_ts and not any(m["ts"] == thread_ts for m in self._messages[cid]):
                return 200, {"ok": False, "error": "thread_not_found"}
            ts = self._next_ts()
            msg: dict[str, Any] = {"type": "message", "subtype": "bot_message", "text": args.get("text", ""),
                                   "user": BOT_USER, "bot_id": BOT_ID, "ts": ts, "blocks": args.get("blocks") or [],
                                   "edits": []}
            if thread_ts:
                msg["thread_ts"] = thread_ts
            if args.get("metadata"):
                msg["metadata"] = args["metadata"]
            self._messages[cid].append(msg)
            public = self._public(msg, metadata=False)
        self._hold("chat.postMessage")
        return 200, {"ok": True, "channel": cid, "ts": ts, "message": public}

    def _update(self, req: FakeRequest) -> Response:
        args, err = self._handle(req, "chat.update")
        if err:
            return err
        cid = self._resolve(args.get("channel"))
        if cid is None:
            return 200, {"ok": False, "error": "channel_not_found"}
        if not args.get("ts"):
            return 200, {"ok": False, "error": "invalid_arguments"}
        with self._data_lock:
            msg = next((m for m in self._messages[cid] if m["ts"] == args["ts"]), None)
            if msg is None:
                return 200, {"ok": False, "error": "message_not_found"}
            msg["edits"].append({"text": msg["text"], "blocks": msg["blocks"]})
            if "text" in args:
                msg["text"] = args["text"]
            if "blocks" in args:
                msg["blocks"] = args["blocks"] or []
            if args.get("metadata"):
                msg["metadata"] = args["metadata"]
            msg["edited"] = {"user": BOT_USER, "ts": self._next_ts()}
            text = msg["text"]
            public = self._public(msg, metadata=False)
        self._hold("chat.update")
        return 200, {"ok": True, "channel": cid, "ts": args["ts"], "text": text, "message": public}

    def _page(self, items: list[dict[str, Any]], args: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        limit = int(args.get("limit") or 100)
        start = int(args.get("cursor") or 0)
        page = items[start:start + limit]
        nxt = str(start + limit) if start + limit < len(items) else ""
        return page, nxt

    def _history(self, req: FakeRequest) -> Response:
        args, err = self._handle(req, "conversations.history")
        if err:
            return err
        cid = self._resolve(args.get("channel"))
        if cid is None:
            return 200, {"ok": False, "error": "channel_not_found"}
        meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        oldest = float(args.get("oldest") or 0)
        with self._data_lock:
            top = [self._public(m, metadata=meta) for m in reversed(self._messages[cid])
                   if m.get("thread_ts") in (None, m["ts"]) and float(m["ts"]) >= oldest]
        page, nxt = self._page(top, args)
        return 200, {"ok": True, "messages": page, "has_more": bool(nxt), "pin_count": 0,
                     "response_metadata": {"next_cursor": nxt}}

    def _replies(self, req: FakeRequest) -> Response:
        args, err = self._handle(req, "conversations.replies")
        if err:
            return err
        cid = self._resolve(args.get("channel"))
        if cid is None:
            return 200, {"ok": False, "error": "channel_not_found"}
        ts = args.get("ts")
        meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        with self._data_lock:
            parent = next((m for m in self._messages[cid] if m["ts"] == ts), None)
            if parent is None:
                return 200, {"ok": False, "error": "thread_not_found"}
            thread = [parent] + [m for m in self._messages[cid] if m.get("thread_ts") == ts and m["ts"] != ts]
            msgs = [self._public(m, metadata=meta) for m in thread]
        page, nxt = self._page(msgs, args)
        return 200, {"ok": True, "messages": page, "has_more": bool(nxt),
                     "response_metadata": {"next_cursor": nxt}}

    def _list(self, req: FakeRequest) -> Response:
        args, err = self._handle(req, "conversations.list")
        if err:
            return err
        with self._data_lock:
            chans = [{"id": cid, "name": name, "is_channel": True, "is_private": False, "is_archived": False,
                      "is_member": True} for cid, name in self._channels.items()]
        page, nxt = self._page(chans, args)
        return 200, {"ok": True, "channels": page, "response_metadata": {"next_cursor": nxt}}

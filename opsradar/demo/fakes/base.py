"""A small threaded HTTP server for the vendor fakes: routing, auth, fault injection, a request log.

Each fake subclasses :class:`FakeServer`, registers routes with :meth:`FakeServer.route`, and
implements :meth:`FakeServer.authorized`. Tests and the demo can make the next requests fail
(``fail_next(503, retry_after=2)``) to exercise retries.

>>> class Hello(FakeServer):
...     def __init__(self) -> None:
...         super().__init__()
...         self.route("GET", r"/hello/(?P<name>\\w+)", lambda req, name: (200, {"hi": name}))
>>> import httpx
>>> with Hello() as srv:
...     httpx.get(srv.url + "/hello/ana").json()
{'hi': 'ana'}
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeRequest", "FakeServer", "Fault", "Handler", "Response"]

log = logging.getLogger(__name__)

#: How often an idle ``serve_forever`` looks for a shutdown request. :meth:`FakeServer.stop` does not
#: wait for it: a connection wakes the server's select at once.
_POLL_INTERVAL = 0.5

#: What a handler returns: (status, body) or (status, body, headers). A dict or list body is JSON.
Response = tuple[int, Any] | tuple[int, Any, dict[str, str]]
Handler = Callable[..., Response]


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def basic_auth(self) -> tuple[str, str] | None:
        auth = self.header("authorization") or ""
        if not auth.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return None
        return user, password

    def bearer(self) -> str | None:
        auth = self.header("authorization") or ""
        return auth[7:] if auth.lower().startswith("bearer ") else None


@dataclass
class Fault:
    status: int
    times: int = 1
    retry_after: float | None = None
    body: Any = None
    path: str | None = None  # only requests whose path starts with this
    delay: float = 0.0  # seconds to sleep before answering (timeouts)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # the client went away (gave up waiting)
            log.debug("fake: client %s closed the connection", client_address)
            return
        super().handle_error(request, client_address)


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


@dataclass
class _State:
    routes: list[_Route] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    requests: list[FakeRequest] = field(default_factory=list)


class FakeServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 (an ephemeral port unless one is given)."""

    name = "fake"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._state = _State()
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ setup

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Serve ``method`` on paths fully matching ``pattern``; named groups become kwargs."""
        self._state.routes.append(_Route(method.upper(), re.compile(pattern), handler))

    def authorized(self, request: FakeRequest) -> bool:
        """Whether the request carries valid credentials. Fakes override this."""
        return True

    def unauthorized(self, request: FakeRequest) -> Response:
        return 401, {"error": "unauthorized"}

    def fail_next(self, status: int, *, times: int = 1, retry_after: float | None = None,
                  body: Any = None, path: str | None = None, delay: float = 0.0) -> None:
        """Answer the next ``times`` matching requests with ``status`` (and ``Retry-After``)."""
        with self._lock:
            self._state.faults.append(Fault(status, times, retry_after, body, path, delay))

    @property
    def requests(self) -> list[FakeRequest]:
        with self._lock:
            return list(self._state.requests)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{self.name} fake is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeServer:
        if self._httpd is not None:
            return self
        server = self

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Answer at once: headers and body are written separately, and with Nagle's algorithm
            # the body of a keep-alive response waits ~40 ms for the client's delayed ACK.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s fake: " + format, server.name, *args)

            def _handle(self) -> None:
                server._dispatch(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self._httpd = _Server((self._host, self._port), _RequestHandler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": _POLL_INTERVAL},
                                        name=f"fake-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket, at once; idempotent."""
        httpd = self._httpd
        if httpd is not None:
            # shutdown() waits until serve_forever sees the request; a connection wakes it up now
            waiter = threading.Thread(target=httpd.shutdown, name=f"stop-{self.name}", daemon=True)
            waiter.start()
            host, port = httpd.server_address[:2]
            deadline = time.monotonic() + 5
            while waiter.is_alive() and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    socket.create_connection((str(host), int(port)), timeout=0.5).close()
                waiter.join(0.01)
            httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ dispatch

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._state.faults:
                if fault.path is None or path.startswith(fault.path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._state.faults.remove(fault)
                    return fault
        return None

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        req = FakeRequest(h.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                          {k.lower(): v for k, v in h.headers.items()}, body)
        with self._lock:
            self._state.requests.append(req)
        try:
            response = self._respond(req)
        except Exception as exc:
            log.exception("%s fake: handler failed", self.name)
            response = (500, {"error": f"fake handler failed: {exc}"})
        status, payload = response[0], response[1]
        headers = dict(response[2]) if len(response) > 2 else {}  # type: ignore[misc]
        if isinstance(payload, bytes):
            data = payload
        elif isinstance(payload, str):
            data = payload.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            data = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _respond(self, req: FakeRequest) -> Response:
        fault = self._take_fault(req.path)
        if fault is not None:
            if fault.delay:
                threading.Event().wait(fault.delay)
            headers = {"Retry-After": str(int(fault.retry_after) if float(fault.retry_after).is_integer() else fault.retry_after)} if fault.retry_after is not None else {}
            return fault.status, fault.body if fault.body is not None else {"error": f"injected {fault.status}"}, headers
        if not self.authorized(req):
            return self.unauthorized(req)
        allowed = False
        for r in self._state.routes:
            m = r.pattern.fullmatch(req.path)
            if m:
                if r.method == req.method or (r.method == "GET" and req.method == "HEAD"):
                    return r.handler(req, **m.groupdict())
                allowed = True
        return (405, {"error": "method not allowed"}) if allowed else (404, {"error": f"no route for {req.path}"})

"""A small threaded HTTP server on 127.0.0.1 that tests register canned answers on.

Tests of code that talks to a web API point that code at this server instead of the internet.
Register a route with ``server.route(path, answer)``: ``path`` is matched exactly, or as a
prefix when it ends with ``/``  (``"/v8/finance/chart/"`` answers every ticker). ``answer``
is one of

* a :class:`Reply` (status, headers, body, optional ``delay`` to provoke client timeouts,
  ``drop=True`` to close the connection without answering, like a reset);
* a list of replies, served in order, the last one repeating (``[Reply(429), Reply(200, ...)]``
  for "rate limited once, then fine");
* a callable ``(Request) -> Reply`` for answers that depend on the query.

Every request is recorded (:attr:`LocalHTTPServer.requests`, :meth:`LocalHTTPServer.count`),
with its arrival time, so tests can assert on how many requests were made and how fast.
Unrouted paths get 404 with a body that says so.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Reply:
    """One canned HTTP answer."""

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (client timeouts)
    drop: bool = False  # close the socket without any answer (connection reset)

    @classmethod
    def json(cls, payload: object, status: int = 200, **kwargs: object) -> Reply:
        headers = {"Content-Type": "application/json;charset=utf-8"}
        return cls(status, json.dumps(payload), headers, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain", **kw) -> Reply:
        return cls(status, text, {"Content-Type": f"{content_type}; charset=utf-8"}, **kw)


@dataclass(frozen=True)
class Request:
    """What the server saw: used by callable routes and kept in the request log."""

    method: str
    path: str
    query: dict[str, str]  # first value of each query parameter
    headers: dict[str, str]
    body: bytes
    time: float  # time.time() at arrival

    @property
    def original_host(self) -> str | None:
        """The host the client meant (set by sessions that rewrite URLs to this server)."""
        return self.headers.get("x-original-host")


Answer = Reply | Sequence[Reply] | Callable[[Request], Reply]


class _Route:
    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._served = 0
        self._lock = threading.Lock()

    def reply(self, request: Request) -> Reply:
        if isinstance(self._answer, Reply):
            return self._answer
        if callable(self._answer):
            return self._answer(request)
        with self._lock:
            index = min(self._served, len(self._answer) - 1)
            self._served += 1
        return self._answer[index]


class LocalHTTPServer:
    """A threaded HTTP/1.1 server on a free 127.0.0.1 port; use as a context manager."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}
        self._prefix_routes: list[tuple[str, _Route]] = []
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query={k: v[0] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    time=time.time(),
                )
                reply = owner._dispatch(request)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    return
                payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (timeout test)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # keep test output clean

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, path: str, answer: Answer) -> None:
        """Answer requests for ``path`` (a prefix if it ends with ``/``) with ``answer``."""
        with self._lock:
            if path.endswith("/") and path != "/":
                self._prefix_routes = [(p, r) for p, r in self._prefix_routes if p != path]
                self._prefix_routes.append((path, _Route(answer)))
                self._prefix_routes.sort(key=lambda item: -len(item[0]))
            else:
                self._routes[path] = _Route(answer)

    def count(self, path_pattern: str | None = None) -> int:
        """Requests seen so far, all or those whose path matches a regular expression."""
        with self._lock:
            if path_pattern is None:
                return len(self.requests)
            return sum(1 for r in self.requests if re.search(path_pattern, r.path))

    def requests_to(self, path_pattern: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if re.search(path_pattern, r.path)]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def _dispatch(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            route = self._routes.get(request.path)
            if route is None:
                route = next(
                    (r for p, r in self._prefix_routes if request.path.startswith(p)), None
                )
        if route is None:
            return Reply.text(f"no route for {request.path} on the test server", status=404)
        return route.reply(request)

    def start(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LocalHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

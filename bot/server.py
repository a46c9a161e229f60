"""Serving the Bolt app: over HTTP (Events API, slash commands and interactivity on one path, plus
a health check and the Prometheus metrics) or over Socket Mode.

The HTTP server is the standard library's threading server in front of ``App.dispatch``: Bolt's
own development server has no request-size limit and no health check, and lorebot needs both.
Every request still goes through Bolt's signature check (forged or stale: 401, nothing runs).
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from slack_bolt import App, BoltRequest, BoltResponse

from bot.metrics import METRICS_PATH, Metrics

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


class SlackHTTPServer(ThreadingHTTPServer):
    """One request per thread; Bolt acks within milliseconds and answers run on worker threads."""

    daemon_threads = True
    # The standard library's default backlog is 5: a burst of 20 events overflowed it, the kernel
    # dropped connections and the acks came a second late, or never (measured by the benchmark).
    request_queue_size = 128

    def __init__(self, app: App, *, host: str, port: int, max_request_bytes: int, metrics: Metrics | None = None):
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.metrics = metrics
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def serve_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="lorebot-http", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: SlackHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that stops sending mid-request does not hold a thread forever

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == HEALTH_PATH:
            self._send(HTTPStatus.OK, json.dumps({"status": "ok"}).encode(), {"Content-Type": ["application/json"]})
        elif path == METRICS_PATH and self.server.metrics is not None:
            body, content_type = self.server.metrics.exposition()
            self._send(HTTPStatus.OK, body, {"Content-Type": [content_type]})
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found")

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        if path != EVENTS_PATH:
            self._send(HTTPStatus.NOT_FOUND, b"not found")
            return
        length = self._content_length()
        if length is None:
            return
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        response: BoltResponse = self.server.app.dispatch(BoltRequest(body=body, query=query, headers=self._headers()))
        self._send(response.status, (response.body or "").encode(), response.headers)

    def _content_length(self) -> int | None:
        """The body's length, or None once the request was refused (too big, or of unknown size)."""
        raw = self.headers.get("Content-Length")
        if raw is None or not raw.isdigit():
            self._send(HTTPStatus.LENGTH_REQUIRED, b"Content-Length required", close=True)
            return None
        if int(raw) > self.server.max_request_bytes:
            # Refused before reading: a huge body never reaches memory or the signature check.
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"request too large", close=True)
            return None
        return int(raw)

    def _headers(self) -> dict[str, list[str]]:
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        return headers

    def _send(self, status: int, body: bytes, headers: dict | None = None, *, close: bool = False) -> None:
        self.send_response(status)
        for name, values in (headers or {}).items():
            if name.lower() in ("content-length", "connection"):
                continue
            for value in values if isinstance(values, (list, tuple)) else [values]:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

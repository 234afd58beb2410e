"""The HTTP plumbing every scripted model server shares: a threaded server on a free
loopback port, JSON bodies in, server-sent events or JSON out, a request log."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[["Request"], "Reply"]


class Request:
    def __init__(self, method: str, path: str, body: Any, headers: dict[str, str]) -> None:
        self.method, self.path, self.body, self.headers = method, path, body, headers


class Reply:
    """JSON (``json_body``), server-sent events (``events``: (name or None, data) pairs),
    or ``hang`` (keep the connection open, say nothing, until the server stops)."""

    def __init__(self, status: int = 200, json_body: Any = None,
                 events: Iterable[tuple[str | None, Any]] | None = None,
                 hang: bool = False, done_marker: bool = False,
                 event_delay_s: float = 0.0) -> None:
        self.status, self.json_body, self.events = status, json_body, events
        self.hang, self.done_marker, self.event_delay_s = hang, done_marker, event_delay_s


class ScriptedServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._stop = threading.Event()
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                request = Request(self.command, self.path, body, dict(self.headers))
                outer.requests.append(request)
                reply = outer.handler(request)
                outer._write(self, reply)

            do_POST = do_GET = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _write(self, h: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.hang:
            self._stop.wait()
            return
        if reply.events is None:
            data = json.dumps(reply.json_body if reply.json_body is not None else {}).encode()
            h.send_response(reply.status)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            return
        h.send_response(reply.status)
        h.send_header("content-type", "text/event-stream")
        h.send_header("cache-control", "no-cache")
        h.send_header("connection", "close")
        h.end_headers()
        h.close_connection = True
        try:
            for name, data in reply.events:
                if reply.event_delay_s:
                    self._stop.wait(reply.event_delay_s)
                chunk = (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
                h.wfile.write(chunk.encode())
                h.wfile.flush()
            if reply.done_marker:
                h.wfile.write(b"data: [DONE]\n\n")
                h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

"""A real HTTP server in this process that records what arrives: an SMS gateway, a webhook's receiver.

``HttpSite().start()`` listens on 127.0.0.1 (a free port) in a thread; every request is kept in
``requests`` (method, path, query, headers, body, and the body read as JSON when it is JSON), and
answered 200 unless told otherwise:

  - ``refuse[number] = 400``: a request whose body or query names that number is answered 400 (an
    SMS provider refusing a number), any status may be given;
  - ``status = 503``: every request answered so (a provider in trouble);
  - ``stop()``: nobody listens any more (connection refused), ``start()`` listens again on the same port.

Used by tests/test_sms_webhook.py and the channel contract; reusable by any test that needs an
HTTP endpoint (a 30-day simulation sending its SMS there): the fixture ``http_site`` in conftest.py.
"""
from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HttpSite", "Request"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0          # what it was answered

    @property
    def status_ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class HttpSite:
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    refuse: dict[str, int] = field(default_factory=dict)
    status: int = 200
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, scheme: str = "json", path: str = "/") -> str:
        return f"{scheme}://{self.base}{path}"

    def start(self) -> HttpSite:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):      # quiet
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()), body)
                status = site.answer(request)
                with site._lock:
                    site.requests.append(dataclasses.replace(request, status=status))
                payload = json.dumps({"status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PUT = do_GET = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-site", daemon=True)
        self._thread.start()
        return self

    def answer(self, request: Request) -> int:
        seen = unquote(request.text) + " " + " ".join(v for values in request.query.values() for v in values)
        for number, status in self.refuse.items():
            if number in seen:
                return status
        return self.status

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def received(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

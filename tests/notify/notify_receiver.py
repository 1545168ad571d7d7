"""A local HTTP receiver on 127.0.0.1 (port 0): records every request (path, query, headers,
JSON or form body) and answers with a status the test sets — what an Apprise ``json://`` /
``form://`` target or an Alertmanager webhook posts to."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw: bytes
    body: Any  # parsed JSON, a dict of form fields, or the text


@dataclass
class Receiver:
    status: int = 200
    requests: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests]

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)


def _handler(rx: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            ctype = self.headers.get("Content-Type", "")
            body: Any
            if "json" in ctype:
                body = json.loads(raw or b"null")
            elif "form" in ctype:
                body = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
            else:
                body = raw.decode(errors="replace")
            split = urllib.parse.urlsplit(self.path)
            rx.record(
                Request(
                    "POST",
                    split.path,
                    urllib.parse.parse_qs(split.query),
                    dict(self.headers.items()),
                    raw,
                    body,
                )
            )
            self.send_response(rx.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def start_receiver() -> Receiver:
    rx = Receiver()
    rx.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rx))
    rx.server.daemon_threads = True
    threading.Thread(target=rx.server.serve_forever, daemon=True).start()
    return rx


def stop_receiver(rx: Receiver) -> None:
    if rx.server is not None:
        rx.server.shutdown()
        rx.server.server_close()


def serve() -> Iterator[Receiver]:
    rx = start_receiver()
    try:
        yield rx
    finally:
        stop_receiver(rx)


async def wait_until(what: str, check: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Poll ``check`` every 20 ms until it is true; fail naming ``what`` after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)

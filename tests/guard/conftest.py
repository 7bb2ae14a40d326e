"""Fixtures for the guard: a real gateway on a loopback port, and a canned-document server.

The gateway runs under uvicorn in a thread of the test process (same database and keys as the
``client`` fixture's app), so a downstream validator reaches it over real HTTP.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.security.keys import SigningKey
from tests.helpers import Forger, user_claims
from tests.live_server import free_port, serve_in_thread


@pytest.fixture
def gateway_port() -> int:
    return free_port()


@pytest.fixture
def settings(make_settings: Callable[..., Settings], gateway_port: int) -> Settings:
    """The gateway's issuer is its own loopback URL, so discovery finds it."""
    return make_settings(issuer=f"http://127.0.0.1:{gateway_port}")


@pytest.fixture
def forger(signing_key: SigningKey, user: dict[str, Any], settings: Settings) -> Forger:
    """The conftest forger, with the ``iss`` of this directory's gateway (its loopback URL)."""
    return Forger(signing_key, lambda: user_claims(user) | {"iss": settings.issuer})


@pytest.fixture
def live_gateway(settings: Settings, migrated: None, gateway_port: int) -> Iterator[str]:
    """The gateway's base URL (== ``settings.issuer``), served over real HTTP.

    A second app on the test's database: tests change things through ``client`` and watch the
    guard see them. It reads the database on every request (``auth_cache_ttl=0``), so the
    only cache in play is the guard's own, which these tests are about.
    """
    uncached = settings.model_copy(update={"auth_cache_ttl": 0})
    running = serve_in_thread(create_app(uncached), gateway_port)
    yield settings.issuer
    running.stop()


@dataclass
class DocumentServer:
    """Serves canned responses over real HTTP and counts every request by path."""

    base_url: str
    routes: dict[str, tuple[int, bytes, dict[str, str]]] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set_json(
        self,
        path: str,
        document: Any,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> str:
        body = json.dumps(document).encode()
        self.routes[path] = (status, body, {"Content-Type": "application/json", **(headers or {})})
        return self.base_url + path

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def total_hits(self) -> int:
        with self.lock:
            return sum(self.hits.values())


@pytest.fixture
def document_server() -> Iterator[DocumentServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    documents = DocumentServer(f"http://127.0.0.1:{server.server_address[1]}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            with documents.lock:
                documents.hits[path] += 1
            status, body, headers = documents.routes.get(path, (404, b"{}", {}))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    # A short poll interval: shutdown() waits for the next poll (0.5 s by default).
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield documents
    server.shutdown()
    server.server_close()
    thread.join(10)

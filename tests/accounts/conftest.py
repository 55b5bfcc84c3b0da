"""Fixtures for the accounts suite: keys, a real JWKS server, the HTTP and socket clients."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.auth_fixtures import clerk_private_key, clerk_signing_key, token_for  # noqa: F401
from tests.tokens import (
    TEST_KID,
    TEST_SECRET_KEY,
    configure_jwks,
    configure_static_key,
    jwks_document,
    public_pem,
    shared_private_key,
)


class JwksServer:
    """Clerk's ``GET /v1/jwks`` on 127.0.0.1 (real HTTP, in a thread); counts requests.

    Answers 401 without ``Authorization: Bearer <secret>``; ``status`` forces another status and
    ``delay`` slows every answer down (to make concurrent fetches overlap).
    """

    def __init__(self, secret: str = TEST_SECRET_KEY) -> None:
        self.secret = secret
        self.keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.status = 200
        self.delay = 0.0
        self.requests = 0
        self.unauthorized = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(server.delay)
                authorized = self.headers.get("Authorization") == f"Bearer {server.secret}"
                with server._lock:
                    server.requests += 1
                    server.unauthorized += not authorized
                if self.path != "/v1/jwks":
                    self._reply(404, {"errors": [{"code": "resource_not_found"}]})
                elif not authorized:
                    self._reply(401, {"errors": [{"code": "authentication_invalid"}]})
                elif server.status != 200:
                    self._reply(server.status, {"errors": [{"code": "internal"}]})
                else:
                    self._reply(200, jwks_document(server.keys))

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> JwksServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server(settings: Any) -> Iterator[JwksServer]:
    """A running JWKS server listing the shared test key as ``TEST_KID``; settings point at it."""
    server = JwksServer().start()
    server.keys.append((TEST_KID, shared_private_key()))
    configure_jwks(settings, server.url)
    yield server
    server.stop()


@pytest.fixture
def other_private_key() -> rsa.RSAPrivateKey:
    """A second RSA key that the server does not trust."""
    return shared_private_key("other")


@pytest.fixture
def static_key(settings: Any) -> Callable[..., None]:
    """``static_key(authorized_parties=...)``: configure the shared test key with options."""

    def _configure(**options: Any) -> None:
        configure_static_key(settings, public_pem(shared_private_key()), **options)

    return _configure


@pytest.fixture(autouse=True)
def _channels_may_touch_the_database(db: None) -> None:
    """Channels closes stale database connections around every consumer event
    (``aclose_old_connections``); once an earlier test opened a connection in the shared sync
    thread, that check needs database access even though these consumers run no query."""

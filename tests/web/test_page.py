"""The playground page as served (policy, markup, sign-in modes), the development sign-in
endpoint (refused in production), and same-origin sockets. No browser needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.verification import token_verify
from playground.origin import origin_validator
from tests.tokens import TEST_PUBLISHABLE_KEY, public_pem, shared_private_key


@pytest.fixture
def dev_settings(settings, tmp_path: Path):
    settings.DEBUG = True
    settings.DATA_DIR = tmp_path
    settings.CLERK_JWT_KEY = settings.CLERK_SECRET_KEY = ""
    settings.CLERK_PUBLISHABLE_KEY = settings.CLERK_ISSUER = ""
    settings.CLERK_AUTHORIZED_PARTIES = []
    return settings


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in header.split("; ")}


def csrf_client() -> tuple[Client, str]:
    """A client that enforces CSRF like a browser, with the cookie the page sets."""
    client = Client(enforce_csrf_checks=True)
    response = client.get("/playground/")
    assert response.status_code == 200
    return client, response.cookies["csrftoken"].value


def test_page_is_served_under_a_strict_policy_with_no_inline_code(dev_settings) -> None:
    response = Client().get("/playground/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    csp = policy(response)
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'", "ws://testserver"]
    assert csp["frame-ancestors"] == ["'none'"]
    html = response.content.decode()
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all(" src=" in tag for tag in scripts), scripts
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    assert 'data-auth="dev"' in html
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_with_clerk_the_page_loads_clerk_js_from_the_instances_frontend_api(settings) -> None:
    settings.DEBUG = False
    settings.CLERK_PUBLISHABLE_KEY = TEST_PUBLISHABLE_KEY
    settings.CLERK_JWT_KEY = public_pem(shared_private_key())
    response = Client().get("/playground/", secure=True)
    html = response.content.decode()
    assert 'data-auth="clerk"' in html
    assert (
        'data-clerk-script="https://clerk.playground.test/npm/@clerk/clerk-js@5/dist/clerk.browser.js"'
        in html
    )
    csp = policy(response)
    assert csp["script-src"] == ["'self'", "https://clerk.playground.test"]
    assert csp["connect-src"] == ["'self'", "wss://testserver", "https://clerk.playground.test"]
    assert csp["style-src"] == ["'self'"]


def test_production_without_a_publishable_key_says_sign_in_is_not_configured(settings) -> None:
    settings.DEBUG = False
    settings.CLERK_PUBLISHABLE_KEY = ""
    settings.CLERK_JWT_KEY = public_pem(shared_private_key())
    html = Client().get("/playground/", secure=True).content.decode()
    assert 'data-auth="none"' in html


def test_dev_token_is_a_short_lived_token_of_the_dev_user(dev_settings) -> None:
    client, csrf = csrf_client()
    response = client.post("/playground/dev-token", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["userId"] == "user_dev" and body["expiresInSeconds"] == 300
    principal = async_to_sync(token_verify)(token=body["token"])
    assert principal.user_id == "user_dev"
    assert principal.claims["exp"] - principal.claims["iat"] == 300
    assert "no-store" in response["Cache-Control"]


def test_dev_token_needs_the_csrf_token(dev_settings) -> None:
    client, _csrf = csrf_client()
    assert client.post("/playground/dev-token").status_code == 403


def test_dev_token_is_post_only(dev_settings) -> None:
    assert Client().get("/playground/dev-token").status_code == 405


def test_dev_token_is_refused_in_production(dev_settings) -> None:
    client, csrf = csrf_client()
    dev_settings.DEBUG = False
    response = client.post(
        "/playground/dev-token",
        HTTP_X_CSRFTOKEN=csrf,
        HTTP_REFERER="https://testserver/playground/",
        secure=True,
    )
    assert response.status_code == 404
    assert "DJANGO_DEBUG=1" in response.json()["message"]
    assert "token" not in response.json()


def test_dev_token_is_refused_when_a_clerk_key_is_set(dev_settings) -> None:
    client, csrf = csrf_client()
    dev_settings.CLERK_JWT_KEY = public_pem(shared_private_key())
    response = client.post("/playground/dev-token", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 404
    assert "token" not in response.json()


def test_health_root_keeps_the_seeds_answer_and_the_docs_link_the_page(dev_settings) -> None:
    assert set(Client().get("/").json()) == {"status", "timestamp", "service"}
    spec = Client().get("/openapi.json").json()
    assert "/playground/" in spec["info"]["description"]


class _Accept(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()


# Channels closes stale database connections around each consumer event.
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("origin", "host", "accepted"),
    [
        (b"http://127.0.0.1:3001", b"127.0.0.1:3001", True),  # the page this server served
        (b"http://localhost:3000", b"127.0.0.1:3001", True),  # listed in CORS_ORIGIN
        (None, b"127.0.0.1:3001", True),  # not a browser
        (b"http://evil.example", b"127.0.0.1:3001", False),
        (b"http://127.0.0.1:9999", b"127.0.0.1:3001", False),  # another port is another origin
        (b"http://evil.example", b"evil.example", False),  # same-origin, host not allowed
    ],
)
async def test_sockets_from_the_servers_own_pages_are_accepted(
    settings, origin: bytes | None, host: bytes, accepted: bool
) -> None:
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    app = origin_validator(_Accept.as_asgi(), ["http://localhost:3000"])
    headers = [(b"host", host)] + ([(b"origin", origin)] if origin else [])
    communicator = WebsocketCommunicator(app, "/ws", headers=headers)
    connected, _ = await communicator.connect()
    assert connected is accepted
    await communicator.disconnect()

"""Valid tokens from the header, the cookie and the first frame; key and issuer configuration."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from accounts.keys import issuer_from_publishable_key, pem_normalize
from accounts.principal import TokenError
from accounts.verification import token_verify
from tests.accounts.clients import Socket, http_get, socket_outcome
from tests.tokens import (
    TEST_ISSUER,
    configure_static_key,
    mint_token,
    public_pem,
    shared_private_key,
)


def key() -> Any:
    return shared_private_key()


async def test_header_token_over_http(static_key) -> None:
    static_key()
    token = mint_token(key(), sub="user_hdr", sid="sess_hdr")
    response = await http_get("/me", token=token)
    assert response.status_code == 200
    assert response.json() == {"userId": "user_hdr", "sessionId": "sess_hdr", "orgId": None}


async def test_cookie_token_over_http(static_key) -> None:
    static_key()
    response = await http_get("/me", cookie=mint_token(key(), sub="user_cookie"))
    assert response.status_code == 200 and response.json()["userId"] == "user_cookie"


async def test_header_wins_over_cookie(static_key) -> None:
    static_key()
    response = await http_get(
        "/me", token=mint_token(key(), sub="user_header"), cookie=mint_token(key(), sub="user_c")
    )
    assert response.json()["userId"] == "user_header"


async def test_other_scheme_is_no_token_and_falls_back_to_the_cookie(static_key) -> None:
    static_key()
    token = mint_token(key(), sub="user_basic")
    response = await http_get("/me", Authorization=f"Basic {token}")
    assert (response.status_code, response.json()["reason"]) == (401, "token-missing")
    response = await http_get("/me", Authorization="Basic abc", cookie=token)
    assert response.json()["userId"] == "user_basic"


async def test_no_token_is_401_token_missing(static_key) -> None:
    static_key()
    response = await http_get("/me")
    assert response.status_code == 401
    assert response.json() == {
        "statusCode": 401,
        "message": "Unauthorized",
        "reason": "token-missing",
    }
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("via", ["header", "cookie", "frame"])
async def test_valid_token_on_the_socket(static_key, via: str) -> None:
    static_key()
    token = mint_token(key(), sub=f"user_{via}")
    assert await socket_outcome(token, via) == ("authenticated", f"user_{via}")


async def test_organization_claims_v2(static_key) -> None:
    static_key()
    token = mint_token(key(), o={"id": "org_1", "rol": "admin", "slg": "acme"})
    principal = await token_verify(token=token)
    assert (principal.org_id, principal.org_role, principal.org_slug) == ("org_1", "admin", "acme")
    assert principal.claims["o"]["id"] == "org_1"


@pytest.mark.parametrize("form", ["multi-line", "one-line", "one-line-spaces", "escaped-newlines"])
async def test_pem_with_and_without_newlines(settings, form: str) -> None:
    pem = public_pem(key())
    body = "".join(pem.strip().splitlines()[1:-1])
    variants = {
        "multi-line": pem,
        "one-line": f"-----BEGIN PUBLIC KEY-----{body}-----END PUBLIC KEY-----",
        "one-line-spaces": f"-----BEGIN PUBLIC KEY----- {body} -----END PUBLIC KEY-----",
        "escaped-newlines": pem.replace("\n", "\\n"),
    }
    configure_static_key(settings, variants[form])
    assert (await token_verify(token=mint_token(key(), sub="user_pem"))).user_id == "user_pem"
    assert pem_normalize(variants[form]) == pem


def test_issuer_from_publishable_key() -> None:
    for prefix in ("pk_test_", "pk_live_"):
        encoded = base64.b64encode(b"clerk.example.com$").decode().rstrip("=")
        assert issuer_from_publishable_key(prefix + encoded) == "https://clerk.example.com"
    dev = base64.b64encode(b"happy-cat-12.clerk.accounts.dev$").decode()
    assert (
        issuer_from_publishable_key(f"pk_test_{dev}") == "https://happy-cat-12.clerk.accounts.dev"
    )
    for bad in (
        "sk_test_" + base64.b64encode(b"clerk.example.com$").decode(),
        "pk_test_" + base64.b64encode(b"clerk.example.com").decode(),
        "pk_test_!!!",
        "pk_test_" + base64.b64encode(b"evil.com/path$").decode(),
    ):
        with pytest.raises(ValueError):
            issuer_from_publishable_key(bad)


async def test_explicit_issuer_overrides_the_publishable_key(static_key, settings) -> None:
    static_key()
    settings.CLERK_ISSUER = "https://clerk.custom.example"
    with pytest.raises(TokenError) as caught:
        await token_verify(token=mint_token(key()))
    assert caught.value.code == "token-invalid-issuer"
    token = mint_token(key(), iss="https://clerk.custom.example", sub="user_iss")
    assert (await token_verify(token=token)).user_id == "user_iss"


async def test_test_issuer_is_derived(static_key) -> None:
    static_key()
    principal = await token_verify(token=mint_token(key()))
    assert principal.claims["iss"] == TEST_ISSUER


async def test_no_key_and_not_debug_is_auth_not_configured(settings) -> None:
    settings.DEBUG = False
    settings.CLERK_JWT_KEY = settings.CLERK_SECRET_KEY = ""
    response = await http_get("/me", token=mint_token(key()))
    assert (response.status_code, response.json()["reason"]) == (401, "auth-not-configured")
    socket = await Socket(token=mint_token(key())).open()
    assert await socket.refusal() == ("auth-not-configured", 4401)

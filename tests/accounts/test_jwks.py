"""Keys from a real JWKS endpoint: Bearer secret, cache, one refetch per unknown kid, outages."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from accounts.principal import TokenError
from accounts.verification import token_verify
from tests.accounts.clients import http_get, socket_outcome
from tests.accounts.conftest import JwksServer
from tests.tokens import configure_jwks, mint_token, shared_private_key


def key() -> Any:
    return shared_private_key()


async def test_valid_token_fetches_with_the_secret_and_caches(jwks_server: JwksServer) -> None:
    for _ in range(10):
        principal = await token_verify(token=mint_token(key(), sub="user_jwks"))
        assert principal.user_id == "user_jwks"
    response = await http_get("/me", token=mint_token(key(), sub="user_jwks"))
    assert response.status_code == 200 and response.json()["userId"] == "user_jwks"
    assert (jwks_server.requests, jwks_server.unauthorized) == (1, 0)


async def test_concurrent_verifications_with_a_cold_cache_fetch_once(
    jwks_server: JwksServer,
) -> None:
    jwks_server.delay = 0.2
    tokens = [mint_token(key(), sub=f"user_{i}") for i in range(25)]
    principals = await asyncio.gather(*(token_verify(token=t) for t in tokens))
    assert [p.user_id for p in principals] == [f"user_{i}" for i in range(25)]
    assert jwks_server.requests == 1


async def test_expired_cache_is_refetched(settings, jwks_server: JwksServer) -> None:
    settings.CLERK_JWKS_CACHE_SECONDS = 0
    for _ in range(3):
        await token_verify(token=mint_token(key()))
    assert jwks_server.requests == 3


async def test_unknown_kid_is_refused_after_one_refetch(jwks_server: JwksServer) -> None:
    await token_verify(token=mint_token(key()))
    assert jwks_server.requests == 1
    with pytest.raises(TokenError) as caught:
        await token_verify(token=mint_token(key(), kid="ins_unknown"))
    assert caught.value.code == "token-unknown-kid"
    assert jwks_server.requests == 2


@pytest.mark.parametrize("transport", ["http", "socket"])
async def test_unknown_kid_over_http_and_socket(jwks_server: JwksServer, transport: str) -> None:
    token = mint_token(key(), kid="ins_unknown")
    if transport == "http":
        response = await http_get("/me", token=token)
        assert (response.status_code, response.json()["reason"]) == (401, "token-unknown-kid")
    else:
        assert await socket_outcome(token, "header") == ("refused", ("token-unknown-kid", 4401))


async def test_key_rotation_is_picked_up_with_one_refetch(jwks_server: JwksServer) -> None:
    await token_verify(token=mint_token(key()))
    rotated = shared_private_key("rotated")
    jwks_server.keys.append(("ins_rotated", rotated))
    principal = await token_verify(token=mint_token(rotated, kid="ins_rotated", sub="user_new"))
    assert principal.user_id == "user_new"
    assert jwks_server.requests == 2
    await token_verify(token=mint_token(rotated, kid="ins_rotated"))
    assert jwks_server.requests == 2


async def test_token_without_kid_is_malformed_for_jwks(jwks_server: JwksServer) -> None:
    with pytest.raises(TokenError) as caught:
        await token_verify(token=mint_token(key(), kid=None))
    assert caught.value.code == "token-malformed"


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize("outage", ["connection-refused", "http-500", "wrong-secret"])
@pytest.mark.parametrize("transport", ["http", "socket-header", "socket-frame"])
async def test_jwks_outage_is_a_401_with_a_clear_reason(
    settings, jwks_server: JwksServer, outage: str, transport: str
) -> None:
    if outage == "connection-refused":
        configure_jwks(settings, _closed_port_url())
    elif outage == "http-500":
        jwks_server.status = 500
    else:
        configure_jwks(settings, jwks_server.url, secret_key="sk_test_wrong")
    token = mint_token(key())
    if transport == "http":
        response = await http_get("/me", token=token)
        assert response.status_code == 401
        assert response.json() == {
            "statusCode": 401,
            "message": "Unauthorized",
            "reason": "jwks-unavailable",
        }
    else:
        outcome = await socket_outcome(token, transport.removeprefix("socket-"))
        assert outcome == ("refused", ("jwks-unavailable", 4401))


async def test_recovers_after_an_outage(jwks_server: JwksServer) -> None:
    jwks_server.status = 503
    with pytest.raises(TokenError):
        await token_verify(token=mint_token(key()))
    jwks_server.status = 200
    assert (await token_verify(token=mint_token(key(), sub="user_back"))).user_id == "user_back"

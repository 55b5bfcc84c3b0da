"""Every bad token is refused with its reason: 401 over HTTP, error + 4401 on the socket."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from tests.accounts.clients import http_get, socket_outcome
from tests.tokens import (
    OMIT,
    TEST_KID,
    b64url,
    claims_default,
    mint_token,
    public_pem,
    shared_private_key,
)

PARTIES = ["https://app.playground.test"]


def key() -> Any:
    return shared_private_key()


def now() -> int:
    return int(time.time())


def signed(header: dict[str, Any], payload: bytes) -> str:
    """A token with arbitrary header and payload bytes, really signed RS256 by the trusted key."""
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    signature = key().sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def alg_none() -> str:
    return f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims_default())}."


def hs256_with_public_pem() -> str:
    """Algorithm confusion: HMAC-SHA256 keyed with the server's public PEM."""
    signing_input = (
        f"{b64url({'alg': 'HS256', 'typ': 'JWT', 'kid': TEST_KID})}.{b64url(claims_default())}"
    )
    mac = hmac.new(public_pem(key()).encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def payload_edited() -> str:
    header, payload, signature = mint_token(key()).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "user_admin"
    return f"{header}.{b64url(claims)}.{signature}"


def signature_stripped() -> str:
    header, payload, _ = mint_token(key()).split(".")
    return f"{header}.{payload}."


def two_segments() -> str:
    return ".".join(mint_token(key()).split(".")[:2])


@dataclass
class Case:
    id: str
    token: Callable[[], str]
    reason: str
    parties: list[str] = field(default_factory=list)


CASES = [
    Case("alg-none", alg_none, "token-invalid-algorithm"),
    Case("hs256-public-pem", hs256_with_public_pem, "token-invalid-algorithm"),
    Case("other-key", lambda: mint_token(shared_private_key("other")), "token-invalid-signature"),
    Case("payload-edited", payload_edited, "token-invalid-signature"),
    Case("signature-stripped", signature_stripped, "token-invalid-signature"),
    Case("two-segments", two_segments, "token-malformed"),
    Case("bad-base64", lambda: "%%%.&&&.***", "token-malformed"),
    Case(
        "header-not-json",
        lambda: f"{b64url('not json')}.{mint_token(key()).split('.', 1)[1]}",
        "token-malformed",
    ),
    Case(
        "payload-not-json",
        lambda: signed({"alg": "RS256", "typ": "JWT", "kid": TEST_KID}, b"not json"),
        "token-malformed",
    ),
    Case("expired-10s", lambda: mint_token(key(), exp=now() - 10), "token-expired"),
    Case("nbf-60s-ahead", lambda: mint_token(key(), nbf=now() + 60), "token-not-active-yet"),
    Case(
        "iat-60s-ahead",
        lambda: mint_token(key(), iat=now() + 60, nbf=OMIT, exp=now() + 120),
        "token-iat-in-future",
    ),
    Case("no-exp", lambda: mint_token(key(), exp=OMIT), "token-missing-claim"),
    Case("exp-string", lambda: mint_token(key(), exp=str(now() + 60)), "token-invalid-claim"),
    Case("exp-float", lambda: mint_token(key(), exp=now() + 60.5), "token-invalid-claim"),
    Case("exp-not-a-number", lambda: mint_token(key(), exp="soon"), "token-invalid-claim"),
    Case("nbf-string", lambda: mint_token(key(), nbf=str(now())), "token-invalid-claim"),
    Case("iat-bool", lambda: mint_token(key(), iat=True), "token-invalid-claim"),
    Case("iat-null", lambda: mint_token(key(), iat=None), "token-missing-claim"),
    Case("no-iat", lambda: mint_token(key(), iat=OMIT), "token-missing-claim"),
    Case("no-sub", lambda: mint_token(key(), sub=OMIT), "token-missing-claim"),
    Case("sub-not-string", lambda: mint_token(key(), sub=12345), "token-invalid-claim"),
    Case("sub-empty", lambda: mint_token(key(), sub=""), "token-invalid-claim"),
    Case("no-sid", lambda: mint_token(key(), sid=OMIT), "token-missing-claim"),
    Case(
        "azp-missing",
        lambda: mint_token(key(), azp=OMIT),
        "token-invalid-authorized-party",
        PARTIES,
    ),
    Case(
        "azp-not-listed",
        lambda: mint_token(key(), azp="https://evil.example"),
        "token-invalid-authorized-party",
        PARTIES,
    ),
    Case(
        "wrong-iss",
        lambda: mint_token(key(), iss="https://clerk.evil.example"),
        "token-invalid-issuer",
    ),
    Case("no-iss", lambda: mint_token(key(), iss=OMIT), "token-invalid-issuer"),
    Case(
        "iss-not-string",  # PyJWT will not encode it: sign the bytes ourselves
        lambda: signed(
            {"alg": "RS256", "typ": "JWT", "kid": TEST_KID},
            json.dumps(claims_default(iss=123)).encode(),
        ),
        "token-invalid-issuer",
    ),
    Case("rs512", lambda: mint_token(key(), algorithm="RS512"), "token-invalid-algorithm"),
    Case(
        "es256",
        lambda: mint_token(ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"),
        "token-invalid-algorithm",
    ),
    Case("typ-at-jwt", lambda: mint_token(key(), headers={"typ": "at+jwt"}), "token-invalid-type"),
    Case("sts-pending", lambda: mint_token(key(), sts="pending"), "token-session-pending"),
    Case("100kb", lambda: mint_token(key(), padding="x" * 100_000), "token-too-large"),
]

TRANSPORTS = ["http", "socket-header", "socket-frame"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_bad_token_is_refused_with_its_reason(static_key, case: Case, transport: str) -> None:
    static_key(authorized_parties=case.parties)
    token = case.token()
    if transport == "http":
        response = await http_get("/me", token=token)
        assert response.status_code == 401
        assert response.json() == {
            "statusCode": 401,
            "message": "Unauthorized",
            "reason": case.reason,
        }
        assert token not in response.text
    else:
        outcome = await socket_outcome(token, transport.removeprefix("socket-"))
        assert outcome == ("refused", (case.reason, 4401))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_expired_within_clock_skew_is_accepted(static_key, transport: str) -> None:
    static_key()
    token = mint_token(key(), sub="user_skew", exp=now() - 3)
    if transport == "http":
        response = await http_get("/me", token=token)
        assert response.status_code == 200 and response.json()["userId"] == "user_skew"
    else:
        assert await socket_outcome(token, transport.removeprefix("socket-")) == (
            "authenticated",
            "user_skew",
        )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_listed_azp_is_accepted(static_key, transport: str) -> None:
    static_key(authorized_parties=PARTIES)
    token = mint_token(key(), sub="user_azp", azp=PARTIES[0])
    if transport == "http":
        assert (await http_get("/me", token=token)).json()["userId"] == "user_azp"
    else:
        assert await socket_outcome(token, transport.removeprefix("socket-")) == (
            "authenticated",
            "user_azp",
        )

"""Real Clerk-like session tokens for tests: keys, minting, JWKS documents, settings.

Other suites::

    from tests.tokens import configure_static_key, mint_token, private_key_new, public_pem

    key = private_key_new()
    configure_static_key(settings, public_pem(key))   # pytest-django ``settings`` fixture
    token = mint_token(key, sub="user_alice")

or the fixtures of :mod:`tests.auth_fixtures` (``clerk_signing_key``, ``token_for``).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

TEST_FRONTEND_API = "clerk.playground.test"
TEST_PUBLISHABLE_KEY = "pk_test_" + base64.b64encode(f"{TEST_FRONTEND_API}$".encode()).decode()
TEST_ISSUER = f"https://{TEST_FRONTEND_API}"
TEST_SECRET_KEY = "sk_test_playground_jwks_secret"
TEST_KID = "ins_test_key_1"
TEST_AZP = "http://localhost:3000"

#: Pass as a claim value to ``mint_token`` to leave that claim out.
OMIT: Any = object()


def private_key_new() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA private key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def shared_private_key(name: str = "default") -> rsa.RSAPrivateKey:
    """A key generated once per test process and ``name`` (key generation is slow-ish)."""
    return private_key_new()


def public_pem(private_key: rsa.RSAPrivateKey) -> str:
    """The SubjectPublicKeyInfo PEM of a key, as Clerk's dashboard shows it (multi-line)."""
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims_default(**overrides: Any) -> dict[str, Any]:
    """Valid session-token claims (now, +60 s) with ``overrides``; ``OMIT`` removes a claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": TEST_ISSUER,
        "sub": "user_test",
        "sid": f"sess_{uuid.uuid4().hex[:24]}",
        "iat": now,
        "nbf": now - 1,
        "exp": now + 60,
        "azp": TEST_AZP,
        "v": 2,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not OMIT}


def mint_token(
    private_key: Any,
    *,
    algorithm: str = "RS256",
    kid: str | None = TEST_KID,
    headers: Mapping[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A real signed JWT: ``claims_default(**claims)`` signed with ``private_key``."""
    extra: dict[str, Any] = {"kid": kid} if kid is not None else {}
    extra.update(headers or {})
    return jwt.encode(claims_default(**claims), private_key, algorithm=algorithm, headers=extra)


def b64url(data: bytes | str | Mapping[str, Any]) -> str:
    """Base64url without padding of bytes, text or a JSON object."""
    if isinstance(data, Mapping):
        data = json.dumps(data, separators=(",", ":"))
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_public(private_key: rsa.RSAPrivateKey, kid: str = TEST_KID) -> dict[str, Any]:
    """The public JWK of a key, as Clerk's JWKS lists it."""
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return jwk


def jwks_document(keys: Iterable[tuple[str, rsa.RSAPrivateKey]]) -> dict[str, Any]:
    """A JWKS document of ``(kid, private_key)`` pairs (public parts only)."""
    return {"keys": [jwk_public(key, kid) for kid, key in keys]}


def configure_static_key(
    settings: Any, public_key_pem: str, *, authorized_parties: Iterable[str] = ()
) -> None:
    """Networkless verification with ``public_key_pem`` and the test publishable key."""
    settings.CLERK_JWT_KEY = public_key_pem
    settings.CLERK_SECRET_KEY = ""
    settings.CLERK_PUBLISHABLE_KEY = TEST_PUBLISHABLE_KEY
    settings.CLERK_ISSUER = ""
    settings.CLERK_AUTHORIZED_PARTIES = list(authorized_parties)


def configure_jwks(
    settings: Any, api_url: str, *, secret_key: str = TEST_SECRET_KEY, cache_seconds: int = 300
) -> None:
    """Verification with the JWKS of a (test) Backend API at ``api_url``."""
    settings.CLERK_JWT_KEY = ""
    settings.CLERK_SECRET_KEY = secret_key
    settings.CLERK_API_URL = api_url
    settings.CLERK_JWKS_CACHE_SECONDS = cache_seconds
    settings.CLERK_PUBLISHABLE_KEY = TEST_PUBLISHABLE_KEY
    settings.CLERK_ISSUER = ""
    settings.CLERK_AUTHORIZED_PARTIES = []

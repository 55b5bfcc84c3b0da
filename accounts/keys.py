"""Where verification keys come from: a static PEM, Clerk's JWKS endpoint, or the development key.

Every source answers ``key(kid)`` (async, never blocks the event loop) with an RSA public key, or
raises :class:`~accounts.principal.TokenError`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import re
import textwrap
import time
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from accounts.principal import (
    JWKS_UNAVAILABLE,
    TOKEN_MALFORMED,
    TOKEN_UNKNOWN_KID,
    TokenError,
)

#: Issuer and key id of tokens signed by the local development key (``manage.py devtoken``).
DEV_ISSUER = "https://playground.dev.invalid"
DEV_KID = "playground-dev"
DEV_KEY_FILENAME = "dev-jwt-key.pem"

_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


# --- PEM and publishable keys -------------------------------------------------------------------
def pem_normalize(text: str) -> str:
    """A PEM block with its base64 body wrapped at 64 columns.

    Accepts the dashboard's multi-line form, the one-line form (``-----BEGIN PUBLIC KEY-----MIIB...
    -----END PUBLIC KEY-----``, possibly with spaces) and literal ``\\n`` escapes from ``.env`` files.
    """
    text = text.strip().replace("\\n", "\n")
    match = _PEM_RE.search(text)
    if match is None:
        raise ValueError("not a PEM block (-----BEGIN ...----- ... -----END ...-----)")
    label, body = match.group(1), "".join(match.group(2).split())
    lines = "\n".join(textwrap.wrap(body, 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"


def rsa_public_key_load(text: str) -> rsa.RSAPublicKey:
    """The RSA public key of a PEM (see :func:`pem_normalize`); ``ValueError`` otherwise."""
    key = serialization.load_pem_public_key(pem_normalize(text).encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the PEM key is not an RSA public key")
    return key


def issuer_from_publishable_key(publishable_key: str) -> str:
    """Clerk's Frontend API URL: ``pk_test_``/``pk_live_`` + base64 of ``<host>$`` -> ``https://<host>``."""
    for prefix in ("pk_test_", "pk_live_"):
        if publishable_key.startswith(prefix):
            encoded = publishable_key[len(prefix) :]
            break
    else:
        raise ValueError("a publishable key starts with pk_test_ or pk_live_")
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("the publishable key is not valid base64") from exc
    if not decoded.endswith("$"):
        raise ValueError("the publishable key does not encode a Frontend API host")
    host = decoded[:-1]
    if not _HOST_RE.match(host):
        raise ValueError("the publishable key encodes an invalid host")
    return f"https://{host}"


# --- Key sources --------------------------------------------------------------------------------
class KeySource(Protocol):
    """Gives the RSA public key a token's ``kid`` names."""

    async def key(self, kid: str | None) -> rsa.RSAPublicKey: ...


class StaticKeySource:
    """One configured public key (``CLERK_JWT_KEY`` or the development key): no network, any kid."""

    def __init__(self, public_key: rsa.RSAPublicKey) -> None:
        self.public_key = public_key

    @classmethod
    def from_pem(cls, text: str) -> StaticKeySource:
        return cls(rsa_public_key_load(text))

    async def key(self, kid: str | None) -> rsa.RSAPublicKey:
        return self.public_key


def jwks_keys(document: Any) -> dict[str, rsa.RSAPublicKey]:
    """The RS256 signing keys of a JWKS document by ``kid`` (parsed by PyJWT's ``PyJWKSet``)."""
    try:
        jwk_set = jwt.PyJWKSet.from_dict(document)
    except (jwt.PyJWKSetError, jwt.InvalidKeyError, TypeError, AttributeError) as exc:
        raise TokenError(JWKS_UNAVAILABLE, "The JWKS document has no usable keys") from exc
    keys: dict[str, rsa.RSAPublicKey] = {}
    for jwk in jwk_set.keys:
        usable = (
            jwk.key_type == "RSA"
            and jwk.key_id
            and jwk.algorithm_name == "RS256"
            and jwk.public_key_use in (None, "sig")
            and isinstance(jwk.key, rsa.RSAPublicKey)
        )
        if usable:
            keys[str(jwk.key_id)] = jwk.key
    if not keys:
        raise TokenError(JWKS_UNAVAILABLE, "The JWKS document has no RS256 signing keys")
    return keys


class JwksKeySource:
    """Keys from Clerk's Backend API ``GET {api_url}/v1/jwks``, cached for ``cache_seconds``.

    An unknown ``kid`` triggers one refetch (key rotation). Concurrent fetches collapse into one:
    coroutines on the same event loop await a single in-flight task.
    """

    def __init__(
        self, *, api_url: str, secret_key: str, cache_seconds: float, timeout: float = 5.0
    ) -> None:
        self.url = api_url.rstrip("/") + "/v1/jwks"
        self._secret_key = secret_key
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._fetched_at: float | None = None
        self._generation = 0
        self._inflight: tuple[asyncio.AbstractEventLoop, asyncio.Task[None]] | None = None

    def __repr__(self) -> str:  # never shows the secret
        return f"JwksKeySource(url={self.url!r})"

    # -- public ----------------------------------------------------------------------------------
    async def key(self, kid: str | None) -> rsa.RSAPublicKey:
        kid = self._require_kid(kid)
        if self._fresh() and (key := self._keys.get(kid)) is not None:
            return key
        await self._refresh(self._generation)
        return self._lookup(kid)

    # -- internals -------------------------------------------------------------------------------
    @staticmethod
    def _require_kid(kid: str | None) -> str:
        if not kid:
            raise TokenError(TOKEN_MALFORMED, "The token header has no kid")
        return kid

    def _fresh(self) -> bool:
        return (
            self._fetched_at is not None
            and time.monotonic() - self._fetched_at < self.cache_seconds
        )

    def _lookup(self, kid: str) -> rsa.RSAPublicKey:
        key = self._keys.get(kid)
        if key is None:
            raise TokenError(TOKEN_UNKNOWN_KID, "The token was signed by an unknown key (kid)")
        return key

    def _store(self, keys: dict[str, rsa.RSAPublicKey]) -> None:
        self._keys = keys
        self._fetched_at = time.monotonic()
        self._generation += 1

    async def _refresh(self, seen: int) -> None:
        if self._generation != seen:
            return  # another caller fetched since we looked
        loop = asyncio.get_running_loop()
        inflight = self._inflight
        if inflight is None or inflight[0] is not loop or inflight[1].done():
            task = loop.create_task(self._fetch_and_store())
            self._inflight = (loop, task)
        else:
            task = inflight[1]
        await asyncio.shield(task)

    async def _fetch_and_store(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(self.url, headers=self._headers())
            self._store(self._parse(response))
        except httpx.HTTPError as exc:
            raise TokenError(JWKS_UNAVAILABLE, _http_failure(exc)) from None
        finally:
            self._inflight = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._secret_key}", "Accept": "application/json"}

    @staticmethod
    def _parse(response: httpx.Response) -> dict[str, rsa.RSAPublicKey]:
        if response.status_code != 200:
            raise TokenError(
                JWKS_UNAVAILABLE, f"Fetching the JWKS failed with HTTP {response.status_code}"
            )
        try:
            document = response.json()
        except ValueError:
            raise TokenError(JWKS_UNAVAILABLE, "The JWKS response is not JSON") from None
        return jwks_keys(document)


def _http_failure(exc: httpx.HTTPError) -> str:
    return f"Fetching the JWKS failed: {type(exc).__name__}"


# --- Development key ----------------------------------------------------------------------------
def dev_private_key(data_dir: Path) -> rsa.RSAPrivateKey:
    """The local development signing key in ``data_dir``, generated (mode 600) on first use."""
    path = data_dir / DEV_KEY_FILENAME
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process won the race: use its key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return loaded

"""Pytest fixtures for suites that need signed-in users.

Enable them with ``pytest_plugins = ["tests.auth_fixtures"]`` in the root ``tests/conftest.py``
(or import the fixtures into a conftest: ``from tests.auth_fixtures import token_for  # noqa``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.tokens import configure_static_key, mint_token, public_pem, shared_private_key


@pytest.fixture
def clerk_private_key() -> rsa.RSAPrivateKey:
    """The RSA key test tokens are signed with (one per test process)."""
    return shared_private_key()


@pytest.fixture
def clerk_signing_key(settings: Any, clerk_private_key: rsa.RSAPrivateKey) -> Callable[..., str]:
    """Configure the static test key; returns ``mint(**claims) -> token`` (see ``mint_token``)."""
    configure_static_key(settings, public_pem(clerk_private_key))
    return partial(mint_token, clerk_private_key)


@pytest.fixture
def token_for(clerk_signing_key: Callable[..., str]) -> Callable[[str], str]:
    """``token_for("user_alice")``: a valid session token for that user (valid 10 minutes)."""

    def _token_for(user_id: str) -> str:
        return clerk_signing_key(sub=user_id, exp=int(time.time()) + 600)

    return _token_for

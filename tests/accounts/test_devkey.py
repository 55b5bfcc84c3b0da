"""Development without Clerk: ``devtoken``, the dev key, and the production system check."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.checks import clerk_configured
from accounts.principal import TokenError
from accounts.verification import token_verify
from tests.accounts.clients import http_get
from tests.tokens import TEST_PUBLISHABLE_KEY, mint_token, shared_private_key

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dev_settings(settings, tmp_path: Path):
    settings.DEBUG = True
    settings.DATA_DIR = tmp_path
    settings.CLERK_JWT_KEY = settings.CLERK_SECRET_KEY = ""
    settings.CLERK_PUBLISHABLE_KEY = settings.CLERK_ISSUER = ""
    settings.CLERK_AUTHORIZED_PARTIES = []
    return settings


def devtoken(**options: object) -> str:
    out = io.StringIO()
    call_command("devtoken", stdout=out, **options)
    return out.getvalue().strip()


async def test_devtoken_output_verifies(dev_settings, tmp_path: Path) -> None:
    token = devtoken(user="user_cli", ttl=120)
    principal = await token_verify(token=token)
    assert principal.user_id == "user_cli" and principal.session_id.startswith("sess_")
    assert principal.claims["exp"] - principal.claims["iat"] == 120
    key_file = tmp_path / "dev-jwt-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # The same key is reused: a second token verifies too.
    assert (await token_verify(token=devtoken())).user_id == "user_dev"


async def test_devtoken_works_over_http(dev_settings) -> None:
    token = devtoken(user="user_http")
    response = await http_get("/me", token=token)
    assert response.status_code == 200 and response.json()["userId"] == "user_http"


async def test_tokens_of_other_keys_are_refused_by_the_dev_verifier(dev_settings) -> None:
    devtoken()
    with pytest.raises(TokenError) as caught:
        await token_verify(
            token=mint_token(shared_private_key(), iss="https://playground.dev.invalid")
        )
    assert caught.value.code == "token-invalid-signature"


def test_devtoken_refuses_with_a_clerk_key_or_without_debug(dev_settings) -> None:
    dev_settings.DEBUG = False
    with pytest.raises(CommandError):
        devtoken()
    dev_settings.DEBUG = True
    dev_settings.CLERK_SECRET_KEY = "sk_test_x"
    with pytest.raises(CommandError):
        devtoken()


async def test_dev_key_is_not_used_in_production(dev_settings) -> None:
    token = devtoken()
    dev_settings.DEBUG = False
    with pytest.raises(TokenError) as caught:
        await token_verify(token=token)
    assert caught.value.code == "auth-not-configured"


def test_system_check_errors(settings) -> None:
    settings.DEBUG = False
    settings.CLERK_JWT_KEY = settings.CLERK_SECRET_KEY = ""
    assert [e.id for e in clerk_configured()] == ["accounts.E001"]
    settings.DEBUG = True
    assert clerk_configured() == []
    settings.CLERK_SECRET_KEY = "sk_test_x"
    settings.CLERK_PUBLISHABLE_KEY = settings.CLERK_ISSUER = ""
    assert [e.id for e in clerk_configured()] == ["accounts.E002"]
    settings.CLERK_PUBLISHABLE_KEY = "pk_test_bm90IGEgaG9zdA"
    assert [e.id for e in clerk_configured()] == ["accounts.E003"]
    settings.CLERK_PUBLISHABLE_KEY = TEST_PUBLISHABLE_KEY
    settings.CLERK_JWT_KEY = "not a pem"
    assert [e.id for e in clerk_configured()] == ["accounts.E004"]


def _manage(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CLERK_"))}
    clean.update(
        {
            "DJANGO_SETTINGS_MODULE": "playground.settings",
            "DATA_DIR": str(tmp_path),
            "DJANGO_SECRET_KEY": "k3J9-vQ2_mZ8pL5xW1nR7tY4bH6cF0dS9aE2gU8iO3-Lr5Tq7Wz1Xc4Vb8Nm2",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_manage_check_refuses_the_dev_key_when_debug_is_off(tmp_path: Path) -> None:
    result = _manage(["check"], {"DJANGO_DEBUG": "0"}, tmp_path)
    assert result.returncode != 0
    assert "accounts.E001" in result.stderr and "CLERK_JWT_KEY" in result.stderr
    assert not (tmp_path / "dev-jwt-key.pem").exists()


def test_manage_check_passes_with_a_clerk_key(tmp_path: Path) -> None:
    env = {
        "DJANGO_DEBUG": "0",
        "CLERK_SECRET_KEY": "sk_live_not_a_real_key",
        "CLERK_PUBLISHABLE_KEY": TEST_PUBLISHABLE_KEY,
    }
    result = _manage(["check"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "accounts." not in result.stderr

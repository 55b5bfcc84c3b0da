"""Vendor error text that echoes a key reaches neither the user nor the database verbatim."""

from __future__ import annotations

import pytest

from providers.registry import providers
from providers.types import REDACTED, StreamRequest, redact_secrets
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.fixtures import TEST_API_KEY

from .helpers import collect

MODELS = {"anthropic": "claude-haiku-4-5-20251001", "google": "gemini-2.5-flash"}
ANTHROPIC_KEY = "sk-ant-api03-" + "Xy9_" * 20
GOOGLE_KEY = "AIzaSyD" + "a1B2c3D4e5" * 3 + "xyzw"
BEARER = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl"


@pytest.mark.parametrize("alias", list(MODELS))
@pytest.mark.parametrize("status", [400, 403, 404])
async def test_a_vendor_error_echoing_keys_is_redacted(
    alias: str, status: int, upstream_providers: FakeUpstream
) -> None:
    echoed = (
        f"Invalid header x-api-key: {TEST_API_KEY}; also saw {ANTHROPIC_KEY}, "
        f"url ?key={GOOGLE_KEY}&alt=sse and Authorization: Bearer {BEARER}. Check max_tokens."
    )
    marker = upstream_providers.script("leak", status=status, error_message=echoed)
    out = await collect(providers[alias], StreamRequest(model=MODELS[alias], prompt=marker))
    assert out.error is not None
    message = str(out.error)
    for secret in (TEST_API_KEY, ANTHROPIC_KEY, GOOGLE_KEY, BEARER, "AIza", "sk-ant"):
        assert secret not in message
    if status != 403 or alias == "anthropic":  # Google's 403 message carries no vendor detail
        assert REDACTED in message
        assert "Invalid header x-api-key:" in message and "Check max_tokens." in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model claude-haiku-4-5-20251001 not found", "model claude-haiku-4-5-20251001 not found"),
        ("max_tokens: 200000 > 64000", "max_tokens: 200000 > 64000"),
        ("request_id req_011CSHoEeqs5C35K2UUqR7Fy", "request_id req_011CSHoEeqs5C35K2UUqR7Fy"),
        (f"key {ANTHROPIC_KEY}.", f"key {REDACTED}."),
        (f"x?key={GOOGLE_KEY}&y=1", f"x?key={REDACTED}&y=1"),
    ],
)
def test_redaction_keeps_ordinary_vendor_text(text: str, expected: str) -> None:
    assert redact_secrets(text) == expected

"""Bad input on the socket gets a named ``error`` event, never a dropped connection (1011)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from comparisons.models import Comparison

pytestmark = [pytest.mark.django_db(transaction=True)]

NUL = "\x00"

NUL_FRAMES: list[tuple[str, str, Any, str]] = [
    ("prompt", "startComparison", {"prompt": f"hi{NUL}", "providers": ["demo"]}, "prompt"),
    (
        "system",
        "startComparison",
        {"prompt": "hi", "system": f"be{NUL}brief", "providers": ["demo"]},
        "system",
    ),
    (
        "model",
        "startComparison",
        {"prompt": "hi", "models": [{"provider": "demo", "model": f"x{NUL}"}]},
        "models.0.model",
    ),
    ("watch-sessionId", "watchSession", {"sessionId": f"abc{NUL}"}, "sessionId"),
    ("cancel-sessionId", "cancelComparison", {"sessionId": f"abc{NUL}"}, "sessionId"),
    ("cancelModel-sessionId", "cancelModel", {"sessionId": f"a{NUL}", "model": "m"}, "sessionId"),
]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("case", "event", "data", "field"), NUL_FRAMES, ids=[c[0] for c in NUL_FRAMES]
)
async def test_nul_in_a_string_is_a_named_error_on_postgres(
    upstream_providers, connect, case: str, event: str, data: Any, field: str
) -> None:
    client = await connect()
    await client.send(event, data)
    error = await client.receive()
    assert error["event"] == "error", error
    assert f"{field}: must not contain NUL characters" in error["data"]["message"]
    assert await sync_to_async(Comparison.objects.count)() == 0
    # The socket stays open and usable.
    await client.send("startComparison", {"prompt": "hi", "providers": ["demo"]})
    assert (await client.receive())["event"] == "sessionCreated"
    await client.until_event("comparisonComplete")


@pytest.mark.parametrize(
    ("event", "data", "field"),
    [
        ("startComparison", {"prompt": "hi \ud800", "providers": ["demo"]}, "prompt"),
        ("startComparison", {"prompt": "hi", "system": "\udfff", "providers": ["demo"]}, "system"),
        ("watchSession", {"sessionId": "abc\udc00"}, "sessionId"),
    ],
)
async def test_a_lone_surrogate_is_a_named_error(
    upstream_providers, connect, event: str, data: Any, field: str
) -> None:
    """JSON can carry "\\ud800", which no database or UTF-8 encoder can store."""
    client = await connect()
    await client.send(event, data)
    error = await client.receive()
    assert error["event"] == "error", error
    assert f"{field}: must not contain lone surrogates" in error["data"]["message"]
    assert await sync_to_async(Comparison.objects.count)() == 0
    await client.send("startComparison", {"prompt": "hi ✓ 日本", "providers": ["demo"]})
    assert (await client.receive())["event"] == "sessionCreated"
    await client.until_event("comparisonComplete")

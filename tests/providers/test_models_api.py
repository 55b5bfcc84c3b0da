"""``GET /models`` over the ASGI application (the router: no process start-up in the test
process), with the vendors' lists from the fake."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from channels.testing import HttpCommunicator

from playground.asgi import router as application
from tests.fake_upstream import FakeUpstream


async def get(path: str, token: str | None) -> tuple[int, Any]:
    headers = [(b"host", b"testserver")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    communicator = HttpCommunicator(application, "GET", path, headers=headers)
    # The first /models of a test builds every provider's client (a TLS context each) and asks
    # each vendor: 5.3 s with a busy core beside, over 10 s with three test workers too.
    response = await communicator.get_response(timeout=25)
    return response["status"], json.loads(response["body"] or b"null")


async def test_models_lists_every_provider(
    upstream_providers: FakeUpstream, token_for: Callable[[str], str], settings: Any
) -> None:
    upstream_providers.catalogue = {
        "anthropic": [{"id": "claude-opus-5", "label": "Claude Opus 5", "context": 400000}],
        "openai": [{"id": "gpt-4.1-mini"}, {"id": "gpt-6"}],
        "local": [{"id": "qwen3:8b"}],
        "hosted": [{"id": "deepseek/deepseek-chat"}],
    }
    upstream_providers.catalogue_status["google"] = 503
    settings.AI_PROVIDERS["hosted"]["OPTIONS"]["api_key"] = ""  # a hosted alias without its key
    settings.AI_PROVIDERS["hosted"]["OPTIONS"]["requires_api_key"] = True
    status, body = await get("/models", token_for("user_alice"))
    assert status == 200, body
    assert body["priceVersion"] == "2026-11-25"
    by_alias = {p["provider"]: p for p in body["providers"]}
    assert list(by_alias) == ["anthropic", "google", "openai", "local", "hosted", "demo"]

    anthropic = by_alias["anthropic"]
    assert anthropic["label"] == "Anthropic" and anthropic["configured"] and anthropic["live"]
    assert anthropic["restricted"] is False
    opus = anthropic["models"][0]
    assert opus == {
        "name": "claude-opus-5",
        "label": "Claude Opus 5",
        "contextWindow": 400000,
        "maxOutputTokens": None,
        "pricing": None,  # a new model without a price: unknown, not 0
    }

    google = by_alias["google"]  # its list is down: the configured models, and why
    assert google["live"] is False and google["catalogueError"] == "HTTP 503"
    flash = next(m for m in google["models"] if m["name"] == "gemini-2.5-flash")
    assert flash["pricing"] == {"input": 0.3, "output": 2.5, "cachedInput": 0.075}

    openai = by_alias["openai"]
    assert [m["name"] for m in openai["models"]] == ["gpt-4.1-mini", "gpt-6"]
    assert openai["models"][0]["label"] == "GPT-4.1 mini"
    assert openai["models"][0]["pricing"]["input"] == 0.4

    local = by_alias["local"]
    assert local["label"] == "Local LLM" and local["configured"] and local["live"]
    assert [m["name"] for m in local["models"]] == ["qwen3:8b", "llama3.2"]

    hosted = by_alias["hosted"]
    assert hosted["configured"] is False and hosted["catalogueError"] == "not configured"
    demo = by_alias["demo"]
    assert demo["restricted"] is True and demo["live"] is False
    assert [m["name"] for m in demo["models"]] == ["demo-echo", "demo-fast"]
    assert demo["models"][0]["pricing"] == {"input": 0.0, "output": 0.0, "cachedInput": None}
    # Keys never leave the server.
    assert "test-key-not-secret" not in json.dumps(body)


async def test_models_needs_a_token(upstream_providers: FakeUpstream) -> None:
    status, body = await get("/models", None)
    assert status == 401 and body["message"] == "Unauthorized"
    assert upstream_providers.requests == []


async def test_models_is_in_the_openapi_schema() -> None:
    status, schema = await get("/openapi.json", None)
    assert status == 200
    operation = schema["paths"]["/models"]["get"]
    assert operation["security"]  # authenticated
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/ModelsOut")
    props = schema["components"]["schemas"]["ProviderOut"]["properties"]
    assert {"provider", "label", "configured", "models", "live", "restricted"} <= set(props)

"""The live model catalogue: each vendor's own models API, cached, with a fallback."""

from __future__ import annotations

from typing import Any

import pytest

from providers.registry import providers
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.fixtures import upstream_provider_settings

LISTS: dict[str, list[dict[str, Any]]] = {
    "anthropic": [
        {"id": "claude-opus-5", "label": "Claude Opus 5", "context": 400000, "max_output": 64000},
        {"id": "claude-haiku-4-5-20251001", "label": "Claude Haiku 4.5 (API)"},
    ],
    "google": [
        {
            "id": "gemini-3-flash",
            "label": "Gemini 3 Flash",
            "context": 1048576,
            "max_output": 65536,
        },
        {"id": "gemini-2.5-flash", "label": "Gemini 2.5 Flash (API)"},
        {"id": "text-embedding-004", "methods": ["embedContent"]},
    ],
    "openai": [
        {"id": "gpt-6"},
        {"id": "gpt-4.1-mini"},
        {"id": "text-embedding-3-small"},
        {"id": "whisper-1"},
    ],
    "local": [{"id": "llama3.2"}, {"id": "qwen3:8b"}],
    "hosted": [{"id": "deepseek/deepseek-chat", "context": 163840}],
}
DEFAULTS = {
    "anthropic": "claude-haiku-4-5-20251001",
    "google": "gemini-2.5-flash",
    "openai": "gpt-4.1-mini",
    "local": "llama3.2",
    "hosted": "meta-llama/llama-3.3-70b-instruct",
}


@pytest.mark.parametrize("alias", list(LISTS))
async def test_live_list_from_the_vendor(alias: str, upstream_providers: FakeUpstream) -> None:
    upstream_providers.catalogue = LISTS
    catalogue = await providers[alias].catalogue()
    assert catalogue.live and catalogue.error is None
    names = [m.name for m in catalogue.models]
    listed = {
        "anthropic": ["claude-opus-5", "claude-haiku-4-5-20251001"],
        "google": ["gemini-3-flash", "gemini-2.5-flash"],  # only models that generate content
        "openai": ["gpt-6", "gpt-4.1-mini"],  # no embeddings, no speech
        "local": ["llama3.2", "qwen3:8b"],
        # the configured default is offered even when the server does not list it
        "hosted": ["deepseek/deepseek-chat", "meta-llama/llama-3.3-70b-instruct"],
    }[alias]
    assert names == listed
    [request] = [r for r in upstream_providers.requests if r.vendor == alias]
    assert request.method == "GET" and request.path.endswith("/models")
    by_name = {m.name: m for m in catalogue.models}
    default = by_name[DEFAULTS[alias]]
    if alias in ("anthropic", "google", "openai"):  # prices and labels from the price book
        assert default.price is not None and default.price.input > 0
        assert "(API)" not in default.label
    else:
        assert all(m.price is None for m in catalogue.models)
    if alias == "anthropic":
        assert by_name["claude-opus-5"].label == "Claude Opus 5"
        assert by_name["claude-opus-5"].context_window == 400000
        assert by_name["claude-opus-5"].max_output_tokens == 64000
    if alias == "google":
        assert by_name["gemini-3-flash"].context_window == 1048576
        assert by_name["gemini-3-flash"].max_output_tokens == 65536
    if alias == "hosted":
        assert by_name["deepseek/deepseek-chat"].context_window == 163840


async def test_cached_until_the_ttl(settings: Any, fake_upstream: FakeUpstream) -> None:
    fake_upstream.catalogue = LISTS
    settings.AI_PROVIDERS = upstream_provider_settings(fake_upstream.url)
    provider = providers["openai"]
    first = await provider.catalogue()
    assert await provider.catalogue() is first
    assert len(fake_upstream.requests) == 1
    settings.AI_PROVIDERS = upstream_provider_settings(
        fake_upstream.url, openai={"models_cache_seconds": 0}
    )
    provider = providers["openai"]
    await provider.catalogue()
    await provider.catalogue()
    assert len(fake_upstream.requests) == 3


@pytest.mark.parametrize("alias", ["anthropic", "google", "openai", "local"])
async def test_unreachable_list_falls_back_to_the_configured_models(
    alias: str, upstream_providers: FakeUpstream
) -> None:
    upstream_providers.catalogue_status[alias] = 500
    provider = providers[alias]
    catalogue = await provider.catalogue()
    assert not catalogue.live and catalogue.error == "HTTP 500"
    assert [m.name for m in catalogue.models] == list(provider.models())
    assert DEFAULTS[alias] in provider.models()
    # The fallback is cached too (a minute at most): no request per call while it is down.
    count = len(upstream_providers.requests)
    await provider.catalogue()
    assert len(upstream_providers.requests) == count


async def test_not_configured_provider_is_not_asked(
    settings: Any, fake_upstream: FakeUpstream
) -> None:
    settings.AI_PROVIDERS = upstream_provider_settings(fake_upstream.url, openai={"api_key": ""})
    catalogue = await providers["openai"].catalogue()
    assert not catalogue.live and catalogue.error == "not configured"
    assert "gpt-4.1-mini" in [m.name for m in catalogue.models]
    demo = await providers["demo"].catalogue()  # no models API: its own list, no error
    assert [m.name for m in demo.models] == ["demo-echo", "demo-fast"] and demo.error is None
    assert fake_upstream.requests == []


async def test_allowlist_filters_the_live_list(settings: Any, fake_upstream: FakeUpstream) -> None:
    fake_upstream.catalogue = LISTS
    settings.AI_PROVIDERS = upstream_provider_settings(
        fake_upstream.url, local={"allowed_models": ["qwen3:8b", "llama3.2"]}
    )
    catalogue = await providers["local"].catalogue()
    assert sorted(m.name for m in catalogue.models) == ["llama3.2", "qwen3:8b"]

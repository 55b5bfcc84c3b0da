"""The provider registry (settings.AI_PROVIDERS) and the model / configuration checks."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from providers.backends.demo import DemoProvider
from providers.base import BaseProvider
from providers.registry import InvalidProviderAlias, ProviderHandler, providers
from providers.types import (
    ModelInfo,
    ModelPrice,
    ProviderNotConfigured,
    StreamRequest,
    UnknownModel,
    Usage,
)
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.fixtures import upstream_provider_settings

from .helpers import collect


def test_default_settings_load_every_backend() -> None:
    assert providers.aliases()[:4] == ["anthropic", "google", "openai", "demo"]
    names = {p.alias: p.display_name for p in providers.all()}
    assert names == {
        "anthropic": "Anthropic",
        "google": "Google Gemini",
        "openai": "OpenAI",
        "demo": "Demo",
    }
    assert "demo" in providers and "nope" not in providers
    for provider in providers.all():
        assert provider.default_model in provider.models()


def test_unknown_alias() -> None:
    with pytest.raises(InvalidProviderAlias, match="Unknown provider 'nope'") as info:
        providers["nope"]
    assert isinstance(info.value, ImproperlyConfigured)


def test_bad_backend_path(settings: object) -> None:
    settings.AI_PROVIDERS = {  # type: ignore[attr-defined]
        "broken": {"BACKEND": "providers.backends.nowhere.Provider", "OPTIONS": {}},
        "wrong": {"BACKEND": "providers.types.Usage"},
    }
    with pytest.raises(InvalidProviderAlias, match=r"'broken'.*providers.backends.nowhere"):
        providers["broken"]
    with pytest.raises(InvalidProviderAlias, match=r"'wrong'.*not a BaseProvider"):
        providers["wrong"]


def test_instances_are_cached_and_reset_on_settings_change(settings: object) -> None:
    first = providers["demo"]
    assert providers["demo"] is first
    settings.PROVIDER_IDLE_TIMEOUT = 7.0  # type: ignore[attr-defined]
    second = providers["demo"]
    assert second is not first and second.idle_timeout == 7.0
    with override_settings(AI_PROVIDERS={"x": {"BACKEND": "providers.backends.demo.DemoProvider"}}):
        assert providers.aliases() == ["x"]
        assert providers["x"].alias == "x"
    assert providers["demo"] is not second


def test_preload_loads_every_provider_and_reports_the_ones_that_cannot(settings: object) -> None:
    settings.PRELOAD_PROVIDERS = {  # type: ignore[attr-defined]
        "d": {"BACKEND": "providers.backends.demo.DemoProvider"},
        "broken": {"BACKEND": "providers.backends.nowhere.Provider"},
    }
    handler = ProviderHandler("PRELOAD_PROVIDERS")
    errors = handler.preload()
    assert len(errors) == 1 and "'broken'" in errors[0] and "nowhere" in errors[0]
    assert handler._instances.keys() == {"d"}  # loaded and cached: the first use imports nothing


class SlowToLoad(DemoProvider):
    """A backend whose construction takes as long as the event loop takes to release it: it
    stands in for one whose SDK import takes seconds."""

    release = threading.Event()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        assert SlowToLoad.release.wait(10), "the event loop was blocked while the provider loaded"
        super().__init__(*args, **kwargs)


async def test_aget_loads_a_provider_while_the_event_loop_keeps_running(settings: object) -> None:
    settings.SLOW_PROVIDERS = {"slow": {"BACKEND": f"{__name__}.SlowToLoad"}}  # type: ignore[attr-defined]
    handler = ProviderHandler("SLOW_PROVIDERS")
    SlowToLoad.release.clear()
    # Only a running loop releases the load: loaded on the loop's thread, it would wait in vain.
    asyncio.get_running_loop().call_soon(SlowToLoad.release.set)
    provider = await handler.aget("slow")
    assert isinstance(provider, SlowToLoad)
    assert await handler.aget("slow") is provider and handler["slow"] is provider


def test_separate_handler_reads_another_setting(settings: object) -> None:
    settings.OTHER_PROVIDERS = {"d": {"BACKEND": "providers.backends.demo.DemoProvider"}}  # type: ignore[attr-defined]
    handler = ProviderHandler("OTHER_PROVIDERS")
    assert isinstance(handler["d"], BaseProvider)


async def test_missing_key_fails_that_model_only(
    settings: object, fake_upstream: FakeUpstream
) -> None:
    config = upstream_provider_settings(fake_upstream.url, anthropic={"api_key": ""})
    settings.AI_PROVIDERS = config  # type: ignore[attr-defined]
    anthropic = providers["anthropic"]
    assert not anthropic.is_configured and providers["google"].is_configured
    with pytest.raises(ProviderNotConfigured) as info:
        anthropic.check_available("claude-haiku-4-5-20251001")
    assert str(info.value) == "Anthropic is not configured: set ANTHROPIC_API_KEY"
    out = await collect(anthropic, StreamRequest("claude-haiku-4-5-20251001", "hi"))
    assert isinstance(out.error, ProviderNotConfigured)
    ok = await collect(providers["google"], StreamRequest("gemini-2.5-flash", "hi"))
    assert ok.error is None and ok.text == "Hello, world!"
    assert [r.vendor for r in fake_upstream.requests] == ["google"]


async def test_any_model_name_the_vendor_may_accept(upstream_providers: FakeUpstream) -> None:
    """A brand-new model name needs no code change: it is offered to the vendor as it is."""
    marker = upstream_providers.script("new", deltas=["fresh"])
    for alias, model in (
        ("anthropic", "claude-opus-9-20300101"),
        ("google", "gemini-4.0-ultra"),
        ("openai", "gpt-7o"),
        ("local", "qwen3:30b-a3b"),
        ("hosted", "meta-llama/llama-5-400b"),
    ):
        provider = providers[alias]
        assert provider.model_info(model).price is None
        out = await collect(provider, StreamRequest(model, f"hi {marker}"))
        assert out.error is None and out.text == "fresh", (alias, out.error)
    assert len(upstream_providers.requests_for("new")) == 5


async def test_malformed_model_names_are_refused(upstream_providers: FakeUpstream) -> None:
    for name in ("../v1/messages", "gpt x", "model?alt=json", "a/../b", "-flag", "x" * 201):
        with pytest.raises(UnknownModel, match="is not a valid model name"):
            providers["google"].model_info(name)
    out = await collect(providers["google"], StreamRequest("../admin", "hi"))
    assert isinstance(out.error, UnknownModel)
    assert upstream_providers.requests == []


async def test_allowlist_and_closed_catalogues_refuse_unknown_names(
    settings: object, fake_upstream: FakeUpstream
) -> None:
    config = upstream_provider_settings(
        fake_upstream.url, openai={"allowed_models": ["gpt-4.1-mini", "gpt-5"]}
    )
    settings.AI_PROVIDERS = config  # type: ignore[attr-defined]
    openai = providers["openai"]
    assert list(openai.models()) == ["gpt-4.1-mini", "gpt-5"]
    with pytest.raises(UnknownModel) as info:
        openai.model_info("gpt-4o")
    assert str(info.value) == "OpenAI has no model 'gpt-4o'; known: gpt-4.1-mini, gpt-5"
    out = await collect(openai, StreamRequest("gpt-4o", "hi"))
    assert isinstance(out.error, UnknownModel)
    with pytest.raises(UnknownModel, match="Demo has no model 'demo-9'; known: demo-echo"):
        providers["demo"].model_info("demo-9")
    assert fake_upstream.requests == []


def test_prices_from_options_and_file(settings: object, tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps(
            {
                "anthropic": {
                    "claude-sonnet-4-5-20250929": {"input": 1.0},
                    "claude-new": {"input": 2.0, "output": 4.0, "label": "New"},
                }
            }
        )
    )
    config = upstream_provider_settings(
        "http://127.0.0.1:9", anthropic={"models": {"claude-new": {"output": 8.0}}}
    )
    settings.AI_PROVIDERS = config  # type: ignore[attr-defined]
    settings.AI_MODEL_PRICES_FILE = str(prices)  # type: ignore[attr-defined]
    provider = providers["anthropic"]
    models = provider.models()
    assert models["claude-sonnet-4-5-20250929"] == ModelInfo(
        "claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", ModelPrice(1.0, 15.0, 0.3)
    )
    assert models["claude-new"] == ModelInfo("claude-new", "New", ModelPrice(2.0, 8.0))
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000)
    assert provider.estimate_cost(usage, "claude-new") == pytest.approx(2.0 + 4.0)
    assert provider.estimate_cost(usage, "unpriced") is None

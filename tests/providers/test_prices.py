"""The price book: shipped prices as data, an operator's override file, honest unknowns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from providers.prices import SHIPPED_PRICES
from providers.registry import providers
from providers.types import ModelPrice, Usage
from tests.fake_upstream.fixtures import upstream_provider_settings


def test_shipped_book_prices_every_default_model(settings: Any) -> None:
    book = json.loads(SHIPPED_PRICES.read_text())
    assert book["version"] and set(book["providers"]) >= {"anthropic", "google", "openai"}
    for alias in ("anthropic", "google", "openai", "demo"):
        provider = providers[alias]
        assert provider.price_version == book["version"]
        assert provider.model_info(provider.default_model).price is not None, alias


def test_cached_and_reasoning_tokens_are_priced() -> None:
    provider = providers["openai"]
    assert provider.model_info("gpt-4.1-mini").price == ModelPrice(0.4, 1.6, 0.1)
    usage = Usage(
        input_tokens=1_000_000, cached_input_tokens=250_000, output_tokens=100_000,
        reasoning_tokens=40_000,
    )  # fmt: skip
    # 750k at $0.40 + 250k cached at $0.10 + 100k output (reasoning included) at $1.60
    assert provider.estimate_cost(usage, "gpt-4.1-mini") == pytest.approx(0.3 + 0.025 + 0.16)
    assert provider.estimate_cost(usage, "gpt-9") is None


def test_override_file_sets_the_version_and_prices_an_alias(settings: Any, tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "version": "2026-12-01-acme",
                "providers": {
                    "hosted": {"deepseek/deepseek-chat": {"input": 0.27, "output": 1.1}},
                    "openai": {"gpt-4.1-mini": {"output": 2.0}},
                },
            }
        )
    )
    settings.AI_PROVIDERS = upstream_provider_settings("http://127.0.0.1:9")
    settings.AI_MODEL_PRICES_FILE = str(path)
    hosted = providers["hosted"]
    assert hosted.price_version == "2026-12-01-acme"
    assert hosted.model_info("deepseek/deepseek-chat").price == ModelPrice(0.27, 1.1)
    assert providers["openai"].model_info("gpt-4.1-mini").price == ModelPrice(0.4, 2.0, 0.1)
    # An alias can read another table (an OpenAI proxy that charges OpenAI's prices).
    settings.AI_PROVIDERS = upstream_provider_settings(
        "http://127.0.0.1:9", local={"prices": "openai"}
    )
    assert providers["local"].model_info("gpt-4.1-mini").price == ModelPrice(0.4, 2.0, 0.1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is unreadable"),
        ('["a"]', "must hold a JSON object"),
        ('{"version": "x"}', "'providers' must map"),
        ('{"anthropic": {"claude-x": {"input": -1, "output": 2}}}', "input = -1"),
        ('{"anthropic": {"claude-x": {"input": "cheap", "output": 2}}}', "input = 'cheap'"),
    ],
)
def test_bad_override_files_are_named(
    settings: Any, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    settings.AI_MODEL_PRICES_FILE = str(path)
    with pytest.raises(ImproperlyConfigured, match=message):
        providers["anthropic"]

"""Pytest fixtures for the fake upstream; import them into a conftest::

from tests.fake_upstream.fixtures import fake_upstream, providers_closed, upstream_providers  # noqa: F401
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from providers.registry import providers

from .server import FakeUpstream

TEST_API_KEY = "test-key-not-secret"
#: The SDKs' HTTP timeouts (connect, gap between reads) and the first-token and idle deadlines:
#: bounds only a hang reaches (pytest-timeout then reports it with every thread's stack). At 5 s
#: they tripped on a slow machine: 120 streams opened at once took 3 s of set-up before the fake's
#: 3 s first delay. Tests that measure a deadline set their own.
PROVIDER_TEST_TIMEOUT = 30.0


@pytest.fixture
async def providers_closed(settings: Any) -> AsyncIterator[None]:
    """At the end of the test, in its loop, close the HTTP clients its providers opened (those
    forgotten by settings changes included). After ``settings``: its restore forgets them."""
    yield
    await providers.aclose()


@pytest.fixture
async def fake_upstream(providers_closed: None) -> AsyncIterator[FakeUpstream]:
    """A started :class:`FakeUpstream` on a random port of 127.0.0.1 (the providers' clients
    are closed before it stops)."""
    async with FakeUpstream() as upstream:
        yield upstream


def upstream_provider_settings(url: str, **overrides: Any) -> dict[str, dict[str, Any]]:
    """``AI_PROVIDERS`` pointing every vendor at ``url`` with a key, few retries, tiny delays:
    anthropic, google, openai, two OpenAI-compatible aliases (``local``, keyless, at
    ``/local/v1``; ``hosted`` at ``/hosted/v1``) and demo."""
    common = {
        "api_key": TEST_API_KEY,
        "base_url": url,
        "timeout": PROVIDER_TEST_TIMEOUT,
        "max_retries": 1,
    }
    config: dict[str, dict[str, Any]] = {
        "anthropic": {
            "BACKEND": "providers.backends.anthropic.AnthropicProvider",
            "OPTIONS": {**common, "default_model": "claude-haiku-4-5-20251001"},
        },
        "google": {
            "BACKEND": "providers.backends.google.GeminiProvider",
            "OPTIONS": {
                **common,
                "default_model": "gemini-2.5-flash",
                "retry_initial_delay": 0.001,
                "retry_max_delay": 0.01,
            },
        },
        "openai": {
            "BACKEND": "providers.backends.openai.OpenAIProvider",
            "OPTIONS": {**common, "base_url": f"{url}/v1", "default_model": "gpt-4.1-mini"},
        },
        # Two OpenAI-compatible servers at their own base URLs (the fake's path prefixes).
        "local": {
            "BACKEND": "providers.backends.openai.OpenAIProvider",
            "OPTIONS": {
                **common,
                "api_key": "",
                "requires_api_key": False,
                "base_url": f"{url}/local/v1",
                "label": "Local LLM",
                "default_model": "llama3.2",
                "max_tokens_field": "max_tokens",
            },
        },
        "hosted": {
            "BACKEND": "providers.backends.openai.OpenAIProvider",
            "OPTIONS": {
                **common,
                "base_url": f"{url}/hosted/v1",
                "label": "Hosted LLMs",
                "api_key_env": "HOSTED_API_KEY",
                "default_model": "meta-llama/llama-3.3-70b-instruct",
            },
        },
        "demo": {
            "BACKEND": "providers.backends.demo.DemoProvider",
            "OPTIONS": {"tokens_per_second": 2000.0, "first_token_delay": 0.0},
        },
    }
    for alias, options in overrides.items():
        config[alias]["OPTIONS"].update(options)
    return config


@pytest.fixture
def upstream_providers(settings: Any, fake_upstream: FakeUpstream) -> FakeUpstream:
    """Point ``settings.AI_PROVIDERS`` (every alias of :func:`upstream_provider_settings`) at
    the fake upstream."""
    settings.AI_PROVIDERS = upstream_provider_settings(fake_upstream.url)
    settings.PROVIDER_FIRST_TOKEN_TIMEOUT = PROVIDER_TEST_TIMEOUT
    settings.PROVIDER_IDLE_TIMEOUT = PROVIDER_TEST_TIMEOUT
    return fake_upstream

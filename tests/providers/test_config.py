"""Operators' own provider aliases, from environment variables or a TOML file, no code change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from providers.backends.openai import OpenAIProvider
from providers.config import openai_compatible_from_env, providers_from_file
from providers.registry import providers
from providers.types import ProviderNotConfigured, StreamRequest
from tests.fake_upstream import FakeUpstream

from .helpers import collect

ROOT = Path(__file__).resolve().parents[2]


def test_env_declares_openai_compatible_aliases() -> None:
    env = {
        "OPENAI_COMPATIBLE": "ollama, openrouter",
        "OLLAMA_BASE_URL": "http://127.0.0.1:11434/v1",
        "OLLAMA_MODEL": "llama3.2",
        "OLLAMA_MODELS": "llama3.2,qwen2.5:7b",
        "OLLAMA_MAX_TOKENS_FIELD": "max_tokens",
        "OPENROUTER_BASE_URL": "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY": "sk-or-test",
        "OPENROUTER_LABEL": "OpenRouter",
        "OPENROUTER_ALLOWED_MODELS": "deepseek/deepseek-chat",
        "OPENROUTER_TIMEOUT": "30",
    }
    config = openai_compatible_from_env(env)
    assert list(config) == ["ollama", "openrouter"]
    ollama = config["ollama"]
    assert ollama["BACKEND"] == "providers.backends.openai.OpenAIProvider"
    assert ollama["OPTIONS"]["base_url"] == "http://127.0.0.1:11434/v1"
    assert ollama["OPTIONS"]["api_key"] == "" and ollama["OPTIONS"]["label"] == "ollama"
    assert ollama["OPTIONS"]["default_model"] == "llama3.2"
    assert list(ollama["OPTIONS"]["models"]) == ["llama3.2", "qwen2.5:7b"]
    assert ollama["OPTIONS"]["max_tokens_field"] == "max_tokens"
    router = config["openrouter"]["OPTIONS"]
    assert router["api_key"] == "sk-or-test" and router["label"] == "OpenRouter"
    assert router["allowed_models"] == ["deepseek/deepseek-chat"]
    assert router["timeout"] == 30.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OPENAI_COMPATIBLE": "ollama"}, "OLLAMA_BASE_URL is not set"),
        ({"OPENAI_COMPATIBLE": "Bad Alias"}, "must be lower-case"),
        ({"OPENAI_COMPATIBLE": "openai", "OPENAI_BASE_URL": "x"}, "already configured"),
        (
            {"OPENAI_COMPATIBLE": "x", "X_BASE_URL": "http://h/v1", "X_TIMEOUT": "soon"},
            "X_TIMEOUT",
        ),
    ],
)
def test_env_mistakes_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        openai_compatible_from_env(env, taken={"openai": {}})


def test_example_providers_file_loads() -> None:
    """The shipped example (README) is valid: every alias builds a working provider."""
    env = {"OPENROUTER_API_KEY": "sk-or-test"}
    config = providers_from_file(str(ROOT / "providers.example.toml"), env)
    assert list(config) == ["ollama", "vllm", "openrouter"]
    ollama = OpenAIProvider("ollama", config["ollama"]["OPTIONS"])
    assert ollama.display_name == "Ollama (local)" and ollama.is_configured
    assert ollama.default_model == "llama3.2"
    vllm = OpenAIProvider("vllm", config["vllm"]["OPTIONS"])
    assert not vllm.is_configured  # VLLM_API_KEY named but not set
    with pytest.raises(ProviderNotConfigured, match="vLLM is not configured: set VLLM_API_KEY"):
        vllm.check_available("Qwen/Qwen2.5-7B-Instruct")
    router = OpenAIProvider("openrouter", config["openrouter"]["OPTIONS"])
    assert router.is_configured and router.options["api_key"] == "sk-or-test"
    assert router.options["headers"] == {"X-Title": "AI Playground"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[x]\nlabel = 'no url'\n", r"\[x\] needs a base_url"),
        ("[x]\nbackend = 'nope'\n", "backend 'nope' is not one of"),
        ("x = 1\n", r"\[x\] must be a table"),
        ("[x\n", "is unreadable"),
        ("[anthropic]\nbase_url = 'http://h'\n", "already configured"),
    ],
)
def test_file_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "providers.toml"
    path.write_text(text)
    with pytest.raises(ImproperlyConfigured, match=message):
        providers_from_file(str(path), {}, taken={"anthropic": {}})


async def test_env_alias_streams_from_its_own_server(
    settings: Any, fake_upstream: FakeUpstream
) -> None:
    """An alias declared only by environment variables answers from its base URL, keyless."""
    env = {
        "OPENAI_COMPATIBLE": "ollama",
        "OLLAMA_BASE_URL": f"{fake_upstream.url}/ollama/v1",
        "OLLAMA_LABEL": "Ollama",
        "OLLAMA_MODEL": "llama3.2",
    }
    settings.AI_PROVIDERS = openai_compatible_from_env(env)
    marker = fake_upstream.script("env", deltas=["from ", "ollama"])
    provider = providers["ollama"]
    assert provider.display_name == "Ollama" and provider.default_model == "llama3.2"
    out = await collect(provider, StreamRequest("llama3.2", marker))
    assert out.error is None and out.text == "from ollama"
    [recorded] = fake_upstream.requests_for("env")
    assert recorded.vendor == "ollama" and recorded.path == "/ollama/v1/chat/completions"


# A fresh interpreter setting Django up: 30 s measured on a slow, busy machine.
@pytest.mark.timeout(300)
def test_settings_read_the_env_and_the_file(tmp_path: Path) -> None:
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(' '.join(settings.AI_PROVIDERS))"
    )
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "OPENAI_COMPATIBLE": "groq",
        "GROQ_BASE_URL": "https://api.groq.com/openai/v1",
        "AI_PROVIDERS_FILE": str(ROOT / "providers.example.toml"),
        "DJANGO_SETTINGS_MODULE": "playground.settings",
    }
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    aliases = done.stdout.split()
    assert aliases[-4:] == ["groq", "ollama", "vllm", "openrouter"]
    assert {"anthropic", "google", "openai", "demo"} <= set(aliases)

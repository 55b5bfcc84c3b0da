"""Provider aliases declared by operators, read once by ``settings.py`` into ``AI_PROVIDERS``.

Two readable ways, both without code changes:

- environment variables for the common case, an OpenAI-compatible server::

      OPENAI_COMPATIBLE=ollama,openrouter
      OLLAMA_BASE_URL=http://127.0.0.1:11434/v1
      OPENROUTER_BASE_URL=https://openrouter.ai/api/v1
      OPENROUTER_API_KEY=sk-or-…

  and per alias (``<ALIAS>`` is the alias upper-cased, ``-``/``.`` as ``_``): ``_API_KEY``,
  ``_LABEL``, ``_MODEL`` (default model), ``_MODELS`` (models to list when the server's own list
  is unreachable), ``_ALLOWED_MODELS`` (only these may be asked for), ``_MAX_TOKENS_FIELD``,
  ``_TIMEOUT``, ``_MAX_RETRIES``;
- a TOML file named by ``AI_PROVIDERS_FILE``, one table per alias (see
  ``providers.example.toml``); keys are the backend's OPTIONS, plus ``backend`` (``openai``,
  ``anthropic``, ``google``, ``demo`` or a dotted path; default ``openai``) and ``api_key_env``
  (the environment variable holding the key, so no key need be written in the file).

Nothing here imports Django settings: this runs while they are being built.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = ["BACKENDS", "env_prefix", "openai_compatible_from_env", "providers_from_file"]

#: Short names of the shipped backends.
BACKENDS = {
    "openai": "providers.backends.openai.OpenAIProvider",
    "anthropic": "providers.backends.anthropic.AnthropicProvider",
    "google": "providers.backends.google.GeminiProvider",
    "demo": "providers.backends.demo.DemoProvider",
}
_ALIAS = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def env_prefix(alias: str) -> str:
    """The environment variable prefix of ``alias``: ``my-vllm`` -> ``MY_VLLM``."""
    return re.sub(r"[^A-Z0-9]", "_", alias.upper())


def _check_alias(alias: str, source: str, taken: Mapping[str, Any]) -> None:
    if not _ALIAS.match(alias):
        raise ImproperlyConfigured(
            f"{source}: provider alias {alias!r} must be lower-case letters, digits, '-', '_' or "
            "'.', starting with a letter"
        )
    if alias in taken:
        raise ImproperlyConfigured(f"{source}: provider alias {alias!r} is already configured")


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def openai_compatible_from_env(
    env: Mapping[str, str], *, taken: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """``AI_PROVIDERS`` entries for the aliases listed in ``OPENAI_COMPATIBLE``."""
    result: dict[str, dict[str, Any]] = {}
    taken = dict(taken or {})
    for alias in _names(env.get("OPENAI_COMPATIBLE", "")):
        _check_alias(alias, "OPENAI_COMPATIBLE", {**taken, **result})
        prefix = env_prefix(alias)

        def get(name: str, prefix: str = prefix) -> str:
            return env.get(f"{prefix}_{name}", "").strip()

        base_url = get("BASE_URL")
        if not base_url:
            raise ImproperlyConfigured(
                f"OPENAI_COMPATIBLE lists {alias!r} but {prefix}_BASE_URL is not set "
                "(e.g. http://127.0.0.1:11434/v1 for Ollama)"
            )
        options: dict[str, Any] = {
            "base_url": base_url,
            "api_key": get("API_KEY"),
            "api_key_env": f"{prefix}_API_KEY",
            # A local server needs no key; one that does answers 401, named as such.
            "requires_api_key": False,
            "label": get("LABEL") or alias,
        }
        if model := get("MODEL"):
            options["default_model"] = model
        if models := _names(get("MODELS")):
            options["models"] = {name: {} for name in models}
        if allowed := _names(get("ALLOWED_MODELS")):
            options["allowed_models"] = allowed
        if field := get("MAX_TOKENS_FIELD"):
            options["max_tokens_field"] = field
        try:
            if timeout := get("TIMEOUT"):
                options["timeout"] = float(timeout)
            if retries := get("MAX_RETRIES"):
                options["max_retries"] = int(retries)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{prefix}_TIMEOUT / {prefix}_MAX_RETRIES: {exc}") from None
        result[alias] = {"BACKEND": BACKENDS["openai"], "OPTIONS": options}
    return result


def providers_from_file(
    path: str, env: Mapping[str, str], *, taken: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """``AI_PROVIDERS`` entries from the TOML file ``path`` (one table per alias)."""
    source = f"AI_PROVIDERS_FILE {path!r}"
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ImproperlyConfigured(f"{source} is unreadable: {exc}") from None
    result: dict[str, dict[str, Any]] = {}
    taken = dict(taken or {})
    for alias, table in data.items():
        _check_alias(alias, source, {**taken, **result})
        if not isinstance(table, dict):
            raise ImproperlyConfigured(f"{source}: [{alias}] must be a table of options")
        options = dict(table)
        backend = str(options.pop("backend", "openai"))
        path_ = BACKENDS.get(backend, backend)
        if "." not in path_:
            known = ", ".join(BACKENDS)
            raise ImproperlyConfigured(
                f"{source}: [{alias}] backend {backend!r} is not one of {known} or a dotted path"
            )
        if path_ == BACKENDS["openai"] and not options.get("base_url"):
            raise ImproperlyConfigured(f"{source}: [{alias}] needs a base_url")
        key_env = options.get("api_key_env")
        if key_env and not options.get("api_key"):
            options["api_key"] = env.get(str(key_env), "")
        if path_ == BACKENDS["openai"]:
            options.setdefault("requires_api_key", bool(key_env))
        options.setdefault("label", alias)
        models = options.get("models")
        if isinstance(models, list):  # a plain list of names is the common case
            options["models"] = {str(name): {} for name in models}
        result[alias] = {"BACKEND": path_, "OPTIONS": options}
    return result

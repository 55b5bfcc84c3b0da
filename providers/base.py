"""The provider interface: every backend subclasses :class:`BaseProvider`.

A backend implements :meth:`BaseProvider._stream` (the raw vendor stream) and ships its default
price list as data (``default_models``). Everything shared lives here once: model and price
lookup (with operator overrides), the "not configured" check, cost estimation, and the
first-token / idle-gap deadlines around the raw stream.
"""

from __future__ import annotations

import abc
import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .types import (
    ModelInfo,
    ProviderError,
    ProviderNotConfigured,
    ProviderTimeout,
    StreamBroken,
    StreamEnd,
    StreamEvent,
    StreamRequest,
    TextDelta,
    UnknownModel,
    Usage,
)

__all__ = ["BaseProvider", "load_price_file"]


@lru_cache(maxsize=8)
def _read_price_file(path: str, mtime: float) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"AI_MODEL_PRICES_FILE {path!r} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise ImproperlyConfigured(f"AI_MODEL_PRICES_FILE {path!r} must hold a JSON object")
    return data


def load_price_file() -> dict[str, Any]:
    """The operator's ``AI_MODEL_PRICES_FILE`` as ``{alias: {model: {...}}}`` (``{}`` if unset)."""
    path = getattr(settings, "AI_MODEL_PRICES_FILE", "") or ""
    if not path:
        return {}
    try:
        mtime = Path(path).stat().st_mtime
    except OSError as exc:
        raise ImproperlyConfigured(f"AI_MODEL_PRICES_FILE {path!r} is unreadable: {exc}") from None
    return _read_price_file(path, mtime)


def _model_info(name: str, spec: Mapping[str, Any], base: ModelInfo | None) -> ModelInfo:
    try:
        return ModelInfo(
            name=name,
            input_price_per_million=float(
                spec.get("input", base.input_price_per_million if base else 0.0)
            ),
            output_price_per_million=float(
                spec.get("output", base.output_price_per_million if base else 0.0)
            ),
            label=str(spec.get("label", base.label if base else name)),
        )
    except (TypeError, ValueError, AttributeError):
        raise ImproperlyConfigured(f"Bad price entry for model {name!r}: {spec!r}") from None


class BaseProvider(abc.ABC):
    """One configured provider alias (an entry of ``settings.AI_PROVIDERS``).

    Subclasses set ``display_name``, ``default_models`` (``{model: {"input": usd_per_million,
    "output": usd_per_million, "label": str}}``), ``fallback_default_model`` and, if they need
    a key, ``api_key_env`` (named in the "not configured" message); and implement
    :meth:`_stream`.
    """

    #: The vendor's name in messages; an alias's ``label`` option replaces it.
    display_name: str = ""
    default_models: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    fallback_default_model: ClassVar[str] = ""
    requires_api_key: bool = True
    api_key_env: str = "an API key"

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        self.alias = alias
        self.options: dict[str, Any] = dict(options)
        self.display_name = str(self.options.get("label") or type(self).display_name or alias)
        self.api_key_env = str(self.options.get("api_key_env") or type(self).api_key_env)
        self.requires_api_key = bool(
            self.options.get("requires_api_key", type(self).requires_api_key)
        )
        self.default_model: str = str(
            self.options.get("default_model") or self.fallback_default_model
        )
        self.first_token_timeout = float(
            self.options.get("first_token_timeout", settings.PROVIDER_FIRST_TOKEN_TIMEOUT)
        )
        self.idle_timeout = float(self.options.get("idle_timeout", settings.PROVIDER_IDLE_TIMEOUT))
        self._models = self._load_models()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} alias={self.alias!r}>"

    # --- models and prices ----------------------------------------------------------------

    def _load_models(self) -> dict[str, ModelInfo]:
        """Built-in prices, then ``AI_MODEL_PRICES_FILE[alias]``, then ``OPTIONS["models"]``."""
        models: dict[str, ModelInfo] = {}
        layers: list[Mapping[str, Any]] = [
            self.default_models,
            load_price_file().get(self.alias) or {},
            self.options.get("models") or {},
        ]
        for layer in layers:
            for name, spec in layer.items():
                models[name] = _model_info(name, spec or {}, models.get(name))
        if self.default_model and self.default_model not in models:
            # The operator chose a default we have no price for: offer it, priced at 0.
            models[self.default_model] = ModelInfo(self.default_model, 0.0, 0.0, self.default_model)
        return models

    def models(self) -> dict[str, ModelInfo]:
        """The models this provider offers, by name."""
        return dict(self._models)

    def model_info(self, model: str) -> ModelInfo:
        """The model's info, or :class:`UnknownModel` naming the known ones."""
        info = self._models.get(model)
        if info is None:
            known = ", ".join(sorted(self._models)) or "none"
            raise UnknownModel(f"{self.display_name} has no model '{model}'; known: {known}")
        return info

    def estimate_cost(self, usage: Usage, model: str) -> float:
        """Estimated USD cost of ``usage`` on ``model`` (0.0 for a model without a price)."""
        info = self._models.get(model)
        if info is None:
            return 0.0
        cost = (
            usage.input_tokens * info.input_price_per_million
            + usage.output_tokens * info.output_price_per_million
        ) / 1_000_000
        return round(cost, 8)

    # --- configuration ----------------------------------------------------------------------

    @property
    def is_configured(self) -> bool:
        """Whether the provider has what it needs to call its API (e.g. an API key)."""
        return not self.requires_api_key or bool(self.options.get("api_key"))

    def check_available(self, model: str) -> ModelInfo:
        """Raise :class:`UnknownModel` or :class:`ProviderNotConfigured` before any call."""
        info = self.model_info(model)
        if not self.is_configured:
            raise ProviderNotConfigured(
                f"{self.display_name} is not configured: set {self.api_key_env}"
            )
        return info

    # --- streaming --------------------------------------------------------------------------

    async def stream(self, request: StreamRequest) -> AsyncIterator[StreamEvent]:
        """Text deltas then exactly one :class:`StreamEnd`, or one :class:`ProviderError`.

        Wraps :meth:`_stream` with the first-token and idle-gap deadlines. The deadline is
        only armed while waiting on the upstream, never while the consumer holds a delta.
        Close the iterator (``contextlib.aclosing``) to release the upstream connection at once.
        """
        self.check_available(request.model)
        loop = asyncio.get_running_loop()
        idle = self.idle_timeout
        raw = self._stream(request)
        next_event = raw.__anext__
        parts: list[str] = []
        append = parts.append
        end: StreamEvent | None = None
        waiting_first = True
        try:
            async with asyncio.timeout_at(loop.time() + self.first_token_timeout) as deadline:
                while True:
                    try:
                        event = await next_event()
                    except StopAsyncIteration:
                        break
                    if type(event) is TextDelta:
                        waiting_first = False
                        append(event.text)
                        deadline.reschedule(None)
                        yield event
                        deadline.reschedule(loop.time() + idle)
                    else:
                        end = event
                        break
        except TimeoutError:
            if waiting_first:
                message = (
                    f"{self.display_name} did not start answering within "
                    f"{self.first_token_timeout:g} s"
                )
            else:
                message = f"{self.display_name} stopped sending for {idle:g} s"
            raise ProviderTimeout(message, partial_text="".join(parts)) from None
        except ProviderError as exc:
            if parts and not exc.partial_text:
                exc.partial_text = "".join(parts)
            raise
        finally:
            await raw.aclose()
        if end is None:
            raise StreamBroken(
                f"{self.display_name} ended the stream without finishing the answer",
                partial_text="".join(parts),
            )
        yield end

    @abc.abstractmethod
    def _stream(self, request: StreamRequest) -> AsyncGenerator[TextDelta | StreamEnd, None]:
        """The vendor's raw stream: text deltas then one StreamEnd, or a ProviderError.

        Implementations are async generators that close their HTTP response in ``finally``
        (``async with``), map vendor errors to :class:`ProviderError` subclasses and never log
        per delta.
        """


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative ints."""
    return -(-a // b) if a > 0 else 0

"""The provider interface: every backend subclasses :class:`BaseProvider`.

A backend implements :meth:`BaseProvider._stream` (the raw vendor stream) and, where the vendor
has one, :meth:`BaseProvider._list_models` (its models API). Everything shared lives here once:
model validation (any name the vendor may accept, unless the operator set an allowlist), the live
catalogue with its cache and fallback, prices from the price book (:mod:`providers.prices`) and
cost estimation, the "not configured" check, and the first-token / idle-gap deadlines around the
raw stream.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, ClassVar

from django.conf import settings

from .prices import model_entry, price_book
from .types import (
    Catalogue,
    InvalidOutput,
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

__all__ = ["BaseProvider"]

logger = logging.getLogger(__name__)


#: A model name as vendors spell them (``gpt-4.1``, ``qwen2.5:7b``, ``meta-llama/llama-3.3-70b``,
#: ``models/gemini-2.5-flash``); anything else is refused before it reaches a URL or a request.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")

#: What no database text column can store: lone UTF-16 surrogates (a JSON ``"\ud800"`` decodes to
#: one, and no UTF-8 encoder accepts it).
_SURROGATE = re.compile("[\ud800-\udfff]")

#: How long a failed models-list call keeps the configured defaults before trying again (s).
CATALOGUE_RETRY_SECONDS = 60.0


class BaseProvider(abc.ABC):
    """One configured provider alias (an entry of ``settings.AI_PROVIDERS``).

    Subclasses set ``display_name``, ``fallback_default_model`` and, if they need a key,
    ``api_key_env`` (named in the "not configured" message); implement :meth:`_stream` and,
    if the vendor lists its models, :meth:`_list_models`. Their default models and prices are
    data: the price-book table named by the ``prices`` option (default: the alias).

    Shared OPTIONS: ``label``, ``default_model``, ``models`` (extra entries or overrides:
    ``{model: {label, input, output, cached_input, …}}``), ``allowed_models`` (only these may be
    asked for), ``prices`` (the price-book table), ``models_cache_seconds``, ``api_key_env``,
    ``requires_api_key``, ``first_token_timeout``, ``idle_timeout``.
    """

    #: The vendor's name in messages; an alias's ``label`` option replaces it.
    display_name: str = ""
    fallback_default_model: ClassVar[str] = ""
    requires_api_key: bool = True
    api_key_env: str = "an API key"
    #: Whether a model outside the configured list may be asked for (the vendor decides).
    open_catalogue: ClassVar[bool] = True

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
        allowed = self.options.get("allowed_models")
        if isinstance(allowed, str):
            allowed = [name.strip() for name in allowed.split(",") if name.strip()]
        self.allowed_models: frozenset[str] | None = frozenset(allowed) if allowed else None
        self.catalogue_ttl = float(
            self.options.get("models_cache_seconds", settings.AI_MODELS_CACHE_SECONDS)
        )
        book = price_book()
        self.price_version = book.version
        self._models = self._load_models(book.table(str(self.options.get("prices") or alias)))
        self._catalogue: Catalogue | None = None
        self._catalogue_expires = 0.0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} alias={self.alias!r}>"

    # --- models and prices ----------------------------------------------------------------

    def _load_models(self, table: Mapping[str, Mapping[str, Any]]) -> dict[str, ModelInfo]:
        """The price-book table, then ``OPTIONS["models"]`` over it, field by field."""
        specs: dict[str, dict[str, Any]] = {name: dict(spec) for name, spec in table.items()}
        for name, spec in (self.options.get("models") or {}).items():
            specs[name] = {**specs.get(name, {}), **(spec or {})}
        if self.default_model and self.default_model not in specs:
            specs[self.default_model] = {}  # offered, its price unknown
        models = {name: model_entry(name, spec) for name, spec in specs.items()}
        if self.allowed_models is not None:
            models = {n: models.get(n) or ModelInfo(n, n) for n in sorted(self.allowed_models)}
        return models

    def models(self) -> dict[str, ModelInfo]:
        """The configured models (the catalogue's fallback), by name."""
        return dict(self._models)

    def model_info(self, model: str) -> ModelInfo:
        """The model's info (``price`` ``None`` when unknown), or :class:`UnknownModel`.

        Any well-formed name is accepted (the vendor decides whether it exists), unless the
        operator set ``allowed_models`` or the backend's catalogue is closed (demo)."""
        info = self._models.get(model)
        if info is not None:
            return info
        if not _MODEL_NAME.match(model) or "/../" in f"/{model}/":
            raise UnknownModel(
                f"'{model[:80]}' is not a valid model name (letters, digits and . _ : / @ + -)"
            )
        if self.allowed_models is not None or not self.open_catalogue:
            known = ", ".join(sorted(self._models)) or "none"
            raise UnknownModel(f"{self.display_name} has no model '{model}'; known: {known}")
        return ModelInfo(model, model)

    def estimate_cost(self, usage: Usage, model: str) -> float | None:
        """Estimated USD cost of ``usage`` on ``model``; ``None`` when its price is unknown.

        Cached input tokens (part of ``input_tokens``) cost the cache-read price; reasoning
        tokens are part of ``output_tokens`` and cost the output price, as vendors bill them."""
        info = self._models.get(model)
        price = info.price if info is not None else None
        if price is None:
            return None
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_price = price.input if price.cached_input is None else price.cached_input
        cost = (
            (usage.input_tokens - cached) * price.input
            + cached * cached_price
            + usage.output_tokens * price.output
        ) / 1_000_000
        return round(cost, 8)

    # --- live catalogue ---------------------------------------------------------------------

    async def catalogue(self) -> Catalogue:
        """The models the vendor offers now (its models API, cached ``models_cache_seconds``),
        with labels and prices from the price book; the configured models when the provider is
        not configured, has no models API, or the API fails (retried after a minute)."""
        now = time.monotonic()
        if self._catalogue is not None and now < self._catalogue_expires:
            return self._catalogue
        catalogue, ttl = await self._fetch_catalogue()
        self._catalogue, self._catalogue_expires = catalogue, time.monotonic() + ttl
        return catalogue

    async def _fetch_catalogue(self) -> tuple[Catalogue, float]:
        configured = tuple(self._models.values())
        if not self.is_configured:
            return Catalogue(configured, live=False, error="not configured"), self.catalogue_ttl
        try:
            listed = await asyncio.wait_for(self._list_models(), self.catalogue_timeout)
        except NotImplementedError:
            return Catalogue(configured, live=False), self.catalogue_ttl
        except Exception as exc:  # any failure of the vendor's API: fall back, say why
            reason = _failure(exc)
            logger.warning("%s: models list unavailable (%s)", self.alias, reason)
            retry = min(self.catalogue_ttl, CATALOGUE_RETRY_SECONDS)
            return Catalogue(configured, live=False, error=reason), retry
        models: dict[str, ModelInfo] = {}
        for found in listed:
            if self.allowed_models is not None and found.name not in self.allowed_models:
                continue
            known = self._models.get(found.name)
            models[found.name] = ModelInfo(
                name=found.name,
                label=known.label if known and known.label != known.name else found.label,
                price=known.price if known else found.price,
                context_window=found.context_window or (known.context_window if known else None),
                max_output_tokens=(
                    found.max_output_tokens or (known.max_output_tokens if known else None)
                ),
            )
        if self.default_model and self.default_model not in models:
            models[self.default_model] = self._models[self.default_model]
        return Catalogue(tuple(models.values()), live=True), self.catalogue_ttl

    @property
    def catalogue_timeout(self) -> float:
        return float(self.options.get("models_timeout") or 10.0)

    async def _list_models(self) -> list[ModelInfo]:
        """The vendor's own models list (one request or its pages); raise on any failure.
        Backends without a models API leave this unimplemented."""
        raise NotImplementedError

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

    async def aclose(self) -> None:
        """Close this provider's HTTP client if the running loop owns one (its pooled
        connections); a later call opens a new one. Backends without a client of their own
        need nothing."""
        return None

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
                        text = event.text
                        if type(text) is not str:
                            raise InvalidOutput(
                                f"{self.display_name} sent a part of its answer that is not text"
                            )
                        # Model output is untrusted: NUL (PostgreSQL text refuses it) and lone
                        # surrogates (UTF-8 refuses them) become U+FFFD, so what is shown is
                        # what can be saved. ASCII text costs a memchr and a flag check.
                        if "\x00" in text:
                            text = text.replace("\x00", "\ufffd")
                            event = TextDelta(text)
                        if not text.isascii():
                            try:
                                text.encode()
                            except UnicodeEncodeError:
                                event = TextDelta(_SURROGATE.sub("\ufffd", text))
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
            exc.redact(str(self.options.get("api_key") or ""))
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


def _failure(exc: BaseException) -> str:
    """A short, key-free reason for a failed models-list call."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    response = getattr(exc, "response", None)  # httpx's HTTPStatusError
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    if isinstance(status, int):
        return f"HTTP {status}"
    return type(exc).__name__


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative ints."""
    return -(-a // b) if a > 0 else 0

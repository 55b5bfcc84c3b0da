"""The provider contract: what a comparison asks of a model and what streams back.

A backend turns a :class:`StreamRequest` into an async iterator of :class:`TextDelta` events
followed by exactly one :class:`StreamEnd`, or raises a :class:`ProviderError` subclass whose
message a user can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: What stands in for a secret in an error message.
REDACTED = "[redacted]"

# Vendors echo credentials in error text ("invalid x-api-key: sk-ant-...", "?key=AIza..."); these
# are the shapes of API keys and bearer credentials worth hiding from users and the database.
_SECRET_PATTERNS = re.compile(
    r"""
      \bsk-[A-Za-z0-9_-]{8,}                            # Anthropic sk-ant-..., OpenAI sk-...
    | \bAIza[0-9A-Za-z_-]{20,}                          # Google API keys
    | \bey[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*  # JWTs
    | (?<=[Bb]earer\ )[^\s"',;]+                        # Authorization: Bearer <token>
    | (?<=[?&]key=)[^\s&"',;]+                           # ...?key=<key> in echoed URLs
    | (?<=[?&]api_key=)[^\s&"',;]+
    """,
    re.VERBOSE,
)


def redact_secrets(text: str, *secrets: str) -> str:
    """``text`` with key-like strings and each of ``secrets`` (8+ characters) replaced."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, REDACTED)
    return _SECRET_PATTERNS.sub(REDACTED, text)


@dataclass(frozen=True, slots=True)
class Message:
    """One earlier message of a conversation: ``role`` is ``user`` or ``assistant``."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """One model call: the model, the prompt and the optional generation parameters.

    ``history``: the conversation before ``prompt`` (a follow-up turn), alternating ``user`` and
    ``assistant`` messages from a ``user`` one; each backend sends it in its vendor's form."""

    model: str
    prompt: str
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    history: tuple[Message, ...] = ()

    def messages(self) -> list[Message]:
        """The whole conversation, ending with ``prompt``."""
        return [*self.history, Message("user", self.prompt)]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of generated text, in order."""

    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reported them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The final event of a successful stream."""

    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    #: The model name the vendor reported in its stream (e.g. the dated version of an alias).
    model: str | None = None


StreamEvent = TextDelta | StreamEnd


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """A model's price in USD per million tokens (``cached_input``: a cache read; ``None`` when
    the vendor has no cache price, then cached input costs ``input``)."""

    input: float
    output: float
    cached_input: float | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model a provider offers: its label, its price (``None``: unknown) and, where the vendor
    reports them, its context and output limits in tokens."""

    name: str
    label: str = ""
    price: ModelPrice | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Catalogue:
    """What a provider offers now: from the vendor's models API (``live``) or, when that is
    unreachable or the provider is not configured, the configured defaults (``error`` says why)."""

    models: tuple[ModelInfo, ...]
    live: bool
    error: str | None = None


class ProviderError(Exception):
    """Base of every provider failure. ``str(error)`` is safe to show to the user and to save:
    key-like strings in it (vendors echo them) are redacted (:func:`redact_secrets`)."""

    code = "provider-error"

    def __init__(self, message: str, *, status: int | None = None, partial_text: str = "") -> None:
        message = redact_secrets(message)
        super().__init__(message)
        self.message = message
        self.status = status
        self.partial_text = partial_text

    def redact(self, *secrets: str) -> None:
        """Also hide these exact strings (e.g. the configured key, whatever its shape)."""
        message = redact_secrets(self.message, *secrets)
        if message != self.message:
            self.message = message
            self.args = (message,)


class ProviderNotConfigured(ProviderError):
    code = "not-configured"


class UnknownModel(ProviderError):
    code = "unknown-model"


class AuthenticationFailed(ProviderError):
    code = "authentication"


class RateLimited(ProviderError):
    code = "rate-limited"


class Overloaded(ProviderError):
    code = "overloaded"


class BadRequest(ProviderError):
    code = "bad-request"


class ContextTooLong(BadRequest):
    """The conversation (history + prompt) is longer than the model's context window."""

    code = "context-length"


#: What vendors say when the input does not fit the model's context window (Anthropic "prompt is
#: too long: N tokens > M maximum"; OpenAI / compatible servers ``context_length_exceeded``,
#: "maximum context length is N tokens"; Gemini "input token count (N) exceeds the maximum
#: number of tokens allowed (M)").
CONTEXT_TOO_LONG = re.compile(
    r"context_length_exceeded|prompt is too long|maximum context length|context length"
    r"|context window|exceeds the maximum number of tokens|input token count",
    re.IGNORECASE,
)


def context_too_long(vendor: str, detail: str, *, status: int | None) -> ContextTooLong:
    """The clear error for a conversation that no longer fits (``detail``: the vendor's words)."""
    detail = detail.strip().rstrip(".")
    return ContextTooLong(
        f"The conversation is too long for this model's context window ({vendor}: {detail}); "
        "start a new comparison or continue a shorter thread",
        status=status,
    )


class ProviderTimeout(ProviderError):
    code = "timeout"


class UpstreamUnavailable(ProviderError):
    code = "upstream-unavailable"


class StreamBroken(ProviderError):
    code = "stream-broken"


class InvalidOutput(ProviderError):
    """The upstream sent a part of the answer that is not text (a number, a list, …)."""

    code = "invalid-output"

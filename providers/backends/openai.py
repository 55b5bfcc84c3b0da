"""OpenAI and every OpenAI-compatible server (Ollama, vLLM, LM Studio, llama.cpp, OpenRouter, Groq,
Together, Mistral, DeepSeek…): the official ``openai`` SDK sends the streaming Chat Completions
request, retries and maps HTTP errors; the event stream is read by :mod:`providers.sse`.

The SDK's own stream reader costs several times the CPU per chunk of :mod:`providers.sse` plus one
``json.loads`` (it builds a typed ``ChatCompletionChunk`` per event; ``docs/benchmarks.md``,
"OpenAI stream parsing"), so the hot path reads the raw body as the Anthropic backend does.

One backend, many aliases: each alias of ``settings.AI_PROVIDERS`` using this class has its own
``base_url``, key (optional for local servers), ``label`` and models.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

import httpx2
import openai

from ..base import BaseProvider
from ..sse import event_json, sse_data
from ..tls import httpx2_context
from ..types import (
    CONTEXT_TOO_LONG,
    AuthenticationFailed,
    BadRequest,
    ModelInfo,
    Overloaded,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    StreamBroken,
    StreamEnd,
    StreamRequest,
    TextDelta,
    UpstreamUnavailable,
    Usage,
    context_too_long,
)

#: Models in a models list that cannot answer a chat (OpenAI lists them with the rest).
_NOT_CHAT = re.compile(
    r"embed|whisper|tts|dall-e|davinci|babbage|moderation|image|transcribe|realtime|audio|sora",
    re.IGNORECASE,
)

#: Sent when a local server needs no key: the SDK refuses to start without one.
NO_KEY = "no-key"


class OpenAIProvider(BaseProvider):
    """OPTIONS: api_key, base_url, label, default_model, timeout (s), max_retries, headers,
    max_tokens_field (``max_completion_tokens``, OpenAI's, or ``max_tokens`` for servers that
    only know the older name), stream_usage (ask for the usage chunk; default true),
    requires_api_key, api_key_env, allowed_models, models, prices, first_token_timeout,
    idle_timeout."""

    display_name = "OpenAI"
    api_key_env = "OPENAI_API_KEY"
    fallback_default_model = "gpt-4.1-mini"

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        options = self.options
        self.max_tokens_field = str(options.get("max_tokens_field") or "max_completion_tokens")
        self.stream_usage = bool(options.get("stream_usage", True))
        self._client: openai.AsyncOpenAI | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> openai.AsyncOpenAI:
        """The SDK client, created once per provider instance (and event loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = openai.AsyncOpenAI(
                api_key=str(self.options.get("api_key") or NO_KEY),
                base_url=self.options.get("base_url") or None,
                timeout=float(self.options.get("timeout") or 60.0),
                max_retries=int(self.options.get("max_retries", 2)),
                default_headers=dict(self.options.get("headers") or {}),
                # The SDK's own client, with the process's TLS context (providers/tls.py).
                http_client=openai.DefaultAsyncHttpxClient(
                    timeout=float(self.options.get("timeout") or 60.0), verify=httpx2_context()
                ),
            )
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        # The SDK's pooled connections, closed while their loop runs.
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.close()

    async def _list_models(self) -> list[ModelInfo]:
        """``GET {base_url}/models`` through the SDK, without the models that do not chat
        (embeddings, speech, images…); OpenRouter's names and context lengths, and vLLM's
        ``max_model_len``, where the server reports them."""
        found = []
        async for model in self.client().models.list():
            if _NOT_CHAT.search(model.id):
                continue
            extra = model.model_extra or {}
            context = extra.get("context_length") or extra.get("max_model_len")
            found.append(
                ModelInfo(
                    model.id,
                    str(extra.get("name") or model.id),
                    context_window=context if isinstance(context, int) else None,
                )
            )
        return found

    def request_body(self, request: StreamRequest) -> dict[str, Any]:
        """The Chat Completions JSON for the conversation (``stream`` is added by the SDK call)."""
        messages = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages += [{"role": m.role, "content": m.content} for m in request.messages()]
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        if self.stream_usage:
            body["stream_options"] = {"include_usage": True}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens:
            body[self.max_tokens_field] = request.max_tokens
        return body

    async def _stream(self, request: StreamRequest) -> AsyncGenerator[TextDelta | StreamEnd, None]:
        body = self.request_body(request)
        name = self.display_name
        usage: dict[str, Any] | None = None
        finish: str | None = None
        model: str | None = None
        done = False
        try:
            # ``extra_body`` carries every field as-is: the SDK's typed arguments would reject
            # ``max_completion_tokens`` / ``max_tokens`` choices some servers need.
            async with (
                self.client().chat.completions.with_streaming_response.create(
                    model=request.model,
                    messages=body.pop("messages"),
                    stream=True,
                    extra_body={k: v for k, v in body.items() if k != "model"},
                ) as response,
                aclosing(sse_data(response.iter_bytes())) as events,
            ):
                async for data in events:
                    if data == b"[DONE]":
                        done = True
                        break
                    chunk = event_json(data)
                    choices = chunk.get("choices")
                    if choices:
                        choice = choices[0]
                        delta = choice.get("delta")
                        if delta:
                            text = delta.get("content")
                            if text:
                                yield TextDelta(text)
                        reason = choice.get("finish_reason")
                        if reason:
                            finish = reason
                    elif chunk.get("error"):
                        raise self._stream_error(chunk["error"])
                    if model is None:
                        model = chunk.get("model")
                    if chunk.get("usage"):
                        usage = chunk["usage"]
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APITimeoutError:
            raise ProviderTimeout(f"{name} did not answer in time") from None
        except openai.APIConnectionError:
            raise UpstreamUnavailable(f"Could not reach {name} (connection failed)") from None
        except httpx2.TimeoutException:
            raise ProviderTimeout(f"{name} stopped sending (read timeout)") from None
        except httpx2.HTTPError:
            raise StreamBroken(f"The connection to {name} broke mid-answer") from None
        except (ValueError, LookupError, TypeError, AttributeError):
            raise StreamBroken(f"{name} sent a malformed stream event") from None
        if not done and finish is None:
            raise StreamBroken(f"{name} ended the stream before the answer was complete")
        yield StreamEnd(self._usage(usage), finish or "stop", model)

    @staticmethod
    def _usage(usage: Mapping[str, Any] | None) -> Usage:
        if not usage:
            return Usage()
        prompt_details = usage.get("prompt_tokens_details") or {}
        output_details = usage.get("completion_tokens_details") or {}
        return Usage(
            input_tokens=usage.get("prompt_tokens") or 0,
            # completion_tokens already include the reasoning tokens (billed as output).
            output_tokens=usage.get("completion_tokens") or 0,
            cached_input_tokens=prompt_details.get("cached_tokens") or 0,
            reasoning_tokens=output_details.get("reasoning_tokens") or 0,
        )

    def _stream_error(self, error: object) -> ProviderError:
        """The outcome of a ``data: {"error": …}`` event in a 200 stream."""
        message = str(error.get("message") or "") if isinstance(error, dict) else ""
        kind = error.get("type") if isinstance(error, dict) else None
        if "overload" in message.lower():
            return Overloaded(f"{self.display_name} is overloaded; try again shortly", status=503)
        return StreamBroken(f"{self.display_name} reported an error mid-answer ({kind or 'error'})")

    def _status_error(self, exc: openai.APIStatusError) -> ProviderError:
        """The outcome of an HTTP error status (the SDK raises these before any text)."""
        name = self.display_name
        status = exc.status_code
        body = exc.body
        error = body.get("error", body) if isinstance(body, dict) else None
        detail = error.get("message") if isinstance(error, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if status in (400, 413) and (
            code == "context_length_exceeded"
            or (isinstance(detail, str) and CONTEXT_TOO_LONG.search(detail))
        ):
            return context_too_long(name, str(detail or code), status=status)
        detail = f": {detail}" if isinstance(detail, str) and detail else ""
        if status in (503, 529) and "overload" in detail.lower():
            return Overloaded(f"{name} is overloaded; try again shortly", status=status)
        if isinstance(exc, openai.AuthenticationError):
            return AuthenticationFailed(f"{name} rejected the API key ({status})", status=status)
        if isinstance(exc, openai.PermissionDeniedError):
            return AuthenticationFailed(
                f"The {name} API key may not use this model ({status}){detail}", status=status
            )
        if isinstance(exc, openai.RateLimitError):
            if code == "insufficient_quota":
                return RateLimited(f"{name} quota exhausted ({status}){detail}", status=status)
            return RateLimited(
                f"{name} rate limit reached ({status}); try again shortly", status=status
            )
        if status >= 500:
            return UpstreamUnavailable(
                f"{name} is unavailable ({status}); try again shortly", status=status
            )
        if status == 404:
            return BadRequest(f"{name} does not know this model (404){detail}", status=status)
        return BadRequest(f"{name} refused the request ({status}){detail}", status=status)

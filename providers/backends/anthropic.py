"""Anthropic (Claude): the official ``anthropic`` SDK sends the streaming Messages request and maps
its HTTP errors; the event stream itself is read by :mod:`providers.sse`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

import anthropic
import httpx2

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

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class AnthropicProvider(BaseProvider):
    """OPTIONS: api_key, base_url, default_model, timeout (s), max_retries, max_tokens,
    first_token_timeout, idle_timeout, models (price overrides)."""

    display_name = "Anthropic"
    api_key_env = "ANTHROPIC_API_KEY"
    fallback_default_model = "claude-sonnet-4-6"

    async def _list_models(self) -> list[ModelInfo]:
        """``GET /v1/models`` (every page), through the SDK."""
        found = []
        async for model in self.client().models.list(limit=1000):
            found.append(
                ModelInfo(
                    model.id,
                    model.display_name or model.id,
                    context_window=_int(getattr(model, "max_input_tokens", None)),
                    max_output_tokens=_int(getattr(model, "max_tokens", None)),
                )
            )
        return found

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.max_tokens = int(self.options.get("max_tokens") or 4096)
        self._client: anthropic.AsyncAnthropic | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> anthropic.AsyncAnthropic:
        """The SDK client, created once per provider instance (and event loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            timeout = float(self.options.get("timeout") or 60.0)
            self._client = anthropic.AsyncAnthropic(
                api_key=self.options.get("api_key"),
                base_url=self.options.get("base_url") or None,
                timeout=timeout,
                max_retries=int(self.options.get("max_retries", 2)),
                # The SDK's aiohttp transport: less than half the instructions per streamed event
                # of httpcore + h11 + anyio (docs/benchmarks.md, "CPU per relayed chunk, counted").
                http_client=anthropic.DefaultAioHttpClient(
                    timeout=timeout, verify=httpx2_context()
                ),
            )
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        # aiohttp logs "Unclosed client session" for a session dropped open.
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.close()

    async def _stream(self, request: StreamRequest) -> AsyncGenerator[TextDelta | StreamEnd, None]:
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or self.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages()],
        }
        if request.system:
            params["system"] = request.system
        if request.temperature is not None:
            # SDK 2.x dropped the ``temperature`` argument; the API field is sent as-is.
            params["extra_body"] = {"temperature": request.temperature}
        input_tokens = cached = output_tokens = 0
        stop_reason: str | None = None
        model: str | None = None
        finished = False
        try:
            # The SDK builds and sends the request, retries and maps HTTP errors; the body is
            # read here (providers/sse.py), one JSON parse per event, no typed models.
            async with (
                self.client().messages.with_streaming_response.create(
                    stream=True, **params
                ) as response,
                aclosing(sse_data(response.iter_bytes())) as events,
            ):
                async for data in events:
                    event = event_json(data)
                    kind = event["type"]
                    if kind == "content_block_delta":
                        delta = event["delta"]
                        if delta["type"] == "text_delta":
                            yield TextDelta(delta["text"])
                    elif kind == "message_start":
                        message = event["message"]
                        model = message.get("model")
                        usage = message["usage"]
                        cached = usage.get("cache_read_input_tokens") or 0
                        input_tokens = (
                            usage["input_tokens"]
                            + cached
                            + (usage.get("cache_creation_input_tokens") or 0)
                        )
                        output_tokens = usage.get("output_tokens") or 0
                    elif kind == "message_delta":
                        output_tokens = (event.get("usage") or {}).get(
                            "output_tokens"
                        ) or output_tokens
                        stop_reason = event["delta"].get("stop_reason")
                    elif kind == "message_stop":
                        finished = True
                        break
                    elif kind == "error":
                        raise self._stream_error(event.get("error"))
        except anthropic.APIStatusError as exc:
            raise self._status_error(exc) from None
        except anthropic.APITimeoutError:
            raise ProviderTimeout("Anthropic did not answer in time") from None
        except anthropic.APIConnectionError:
            raise UpstreamUnavailable("Could not reach Anthropic (connection failed)") from None
        except httpx2.TimeoutException:
            raise ProviderTimeout("Anthropic stopped sending (read timeout)") from None
        except httpx2.HTTPError:
            raise StreamBroken("The connection to Anthropic broke mid-answer") from None
        except (ValueError, LookupError, TypeError, AttributeError):
            raise StreamBroken("Anthropic sent a malformed stream event") from None
        if not finished:
            raise StreamBroken("Anthropic ended the stream before the answer was complete")
        yield StreamEnd(
            Usage(
                input_tokens=input_tokens, output_tokens=output_tokens, cached_input_tokens=cached
            ),
            _FINISH.get(stop_reason or "", stop_reason),
            model,
        )

    @staticmethod
    def _stream_error(error: object) -> ProviderError:
        """The outcome of an ``event: error`` in the middle of a 200 stream."""
        kind = error.get("type") if isinstance(error, dict) else None
        if kind == "overloaded_error":
            return Overloaded("Anthropic is overloaded; try again shortly", status=529)
        return StreamBroken(f"Anthropic reported an error mid-answer ({kind or 'error'})")

    def _status_error(self, exc: anthropic.APIStatusError) -> ProviderError:
        """The outcome of an HTTP error status (the SDK raises these before any text)."""
        status = exc.status_code
        body = exc.body
        error = body.get("error") if isinstance(body, dict) else None
        kind = error.get("type") if isinstance(error, dict) else None
        detail = error.get("message") if isinstance(error, dict) else None
        if status in (400, 413) and isinstance(detail, str) and CONTEXT_TOO_LONG.search(detail):
            return context_too_long("Anthropic", detail, status=status)
        detail = f": {detail}" if isinstance(detail, str) and detail and detail != kind else ""
        if kind == "overloaded_error" or status == 529:
            return Overloaded("Anthropic is overloaded; try again shortly", status=529)
        if isinstance(exc, anthropic.AuthenticationError):
            return AuthenticationFailed(f"Anthropic rejected the API key ({status})", status=status)
        if isinstance(exc, anthropic.PermissionDeniedError):
            return AuthenticationFailed(
                f"The Anthropic API key may not use this model ({status}){detail}", status=status
            )
        if isinstance(exc, anthropic.RateLimitError):
            return RateLimited(
                f"Anthropic rate limit reached ({status}); try again shortly", status=status
            )
        if status >= 500:
            return UpstreamUnavailable(
                f"Anthropic is unavailable ({status}); try again shortly", status=status
            )
        if status == 404:
            return BadRequest(f"Anthropic does not know this model (404){detail}", status=status)
        return BadRequest(f"Anthropic refused the request ({status}){detail}", status=status)

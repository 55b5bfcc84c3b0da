"""Google Gemini through the official ``google-genai`` SDK (``generate_content_stream``).

The SDK is given its own ``httpx.AsyncClient`` so it always uses httpx (per-read timeouts) and
never its aiohttp path (whose timeout covers the whole stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, ClassVar

import httpx
from google import genai
from google.genai import errors, types

from ..base import BaseProvider
from ..types import (
    AuthenticationFailed,
    BadRequest,
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
)

#: Built-in prices (USD per million tokens, prompts up to 200k tokens); overridable.
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "gemini-2.5-pro": {"input": 1.25, "output": 10.0, "label": "Gemini 2.5 Pro"},
    "gemini-2.5-flash": {"input": 0.30, "output": 2.50, "label": "Gemini 2.5 Flash"},
    "gemini-2.5-flash-lite": {"input": 0.10, "output": 0.40, "label": "Gemini 2.5 Flash-Lite"},
    "gemini-2.0-flash": {"input": 0.10, "output": 0.40, "label": "Gemini 2.0 Flash"},
}

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}
_NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)


class GeminiProvider(BaseProvider):
    """OPTIONS: api_key, base_url, api_version, default_model, timeout (s), max_retries,
    retry_initial_delay / retry_max_delay (s), first_token_timeout, idle_timeout, models."""

    display_name = "Google Gemini"
    api_key_env = "GOOGLE_GEMINI_API_KEY"
    fallback_default_model = "gemini-2.5-flash"
    default_models: ClassVar[Mapping[str, Mapping[str, Any]]] = DEFAULT_MODELS

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self._client: genai.Client | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> genai.Client:
        """The SDK client, created once per provider instance (and event loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            options = self.options
            timeout = float(options.get("timeout") or 60.0)
            retries = int(options.get("max_retries", 2))
            http_options = types.HttpOptions(
                base_url=options.get("base_url") or None,
                api_version=options.get("api_version") or None,
                timeout=int(timeout * 1000),
                retry_options=types.HttpRetryOptions(
                    attempts=retries + 1,
                    initial_delay=float(options.get("retry_initial_delay", 1.0)),
                    max_delay=float(options.get("retry_max_delay", 20.0)),
                    jitter=0.2,
                ),
                httpx_async_client=httpx.AsyncClient(timeout=timeout),
            )
            self._client = genai.Client(api_key=options.get("api_key"), http_options=http_options)
            self._client_loop = loop
        return self._client

    def _config(self, request: StreamRequest) -> types.GenerateContentConfig:
        return types.GenerateContentConfig(
            system_instruction=request.system or None,
            temperature=request.temperature,
            max_output_tokens=request.max_tokens,
            automatic_function_calling=_NO_AFC,
        )

    async def _stream(self, request: StreamRequest) -> AsyncGenerator[TextDelta | StreamEnd, None]:
        usage: Any = None
        finish: Any = None
        streamed = False
        chunks: AsyncIterator[types.GenerateContentResponse] | None = None
        try:
            chunks = await self.client().aio.models.generate_content_stream(
                model=request.model, contents=request.prompt, config=self._config(request)
            )
            async for chunk in chunks:
                if chunk.usage_metadata is not None:
                    usage = chunk.usage_metadata
                candidates = chunk.candidates
                if not candidates:
                    continue
                candidate = candidates[0]
                if candidate.finish_reason is not None:
                    finish = candidate.finish_reason
                content = candidate.content
                if content is None or not content.parts:
                    continue
                for part in content.parts:
                    text = part.text
                    if text and not part.thought:
                        streamed = True
                        yield TextDelta(text)
        except errors.APIError as exc:
            raise self._api_error(exc, streamed) from None
        except httpx.TimeoutException:
            raise ProviderTimeout("Google Gemini did not answer in time") from None
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise UpstreamUnavailable("Could not reach Google Gemini (connection failed)") from None
        except httpx.HTTPError:
            if streamed:
                raise StreamBroken("The connection to Google Gemini broke mid-answer") from None
            raise UpstreamUnavailable("Could not reach Google Gemini (connection failed)") from None
        except ValueError:  # errors.UnknownApiResponseError, JSON or validation errors
            raise StreamBroken("Google Gemini sent a malformed stream event") from None
        finally:
            if chunks is not None:
                await chunks.aclose()  # type: ignore[attr-defined]
        if finish is None:
            raise StreamBroken("Google Gemini ended the stream before the answer was complete")
        yield StreamEnd(self._usage(usage), self._finish(finish))

    @staticmethod
    def _finish(reason: Any) -> str:
        value = str(getattr(reason, "value", reason))
        return _FINISH.get(value, value.lower())

    @staticmethod
    def _usage(meta: Any) -> Usage:
        if meta is None:
            return Usage()
        thoughts = meta.thoughts_token_count or 0
        return Usage(
            input_tokens=meta.prompt_token_count or 0,
            output_tokens=(meta.candidates_token_count or 0) + thoughts,
            cached_input_tokens=meta.cached_content_token_count or 0,
            reasoning_tokens=thoughts,
        )

    def _api_error(self, exc: errors.APIError, streamed: bool) -> ProviderError:
        code = int(exc.code or 0)
        status = exc.status or ""
        message = exc.message or ""
        detail = f": {message}" if message and code in (400, 404) else ""
        if code == 503 and "overload" in message.lower():
            return Overloaded("Google Gemini is overloaded; try again shortly", status=code)
        if streamed:
            return StreamBroken(
                f"Google Gemini reported an error mid-answer ({code} {status})".rstrip(),
                status=code,
            )
        if code == 401 or "API_KEY_INVALID" in str(exc.details) or "API key not valid" in message:
            return AuthenticationFailed(f"Google Gemini rejected the API key ({code})", status=code)
        if code == 403:
            return AuthenticationFailed(
                f"The Google Gemini API key may not use this model ({code})", status=code
            )
        if code == 429:
            return RateLimited(
                f"Google Gemini rate limit or quota reached ({code}); try again shortly",
                status=code,
            )
        if code == 504:
            return ProviderTimeout(f"Google Gemini timed out ({code})", status=code)
        if code >= 500:
            return UpstreamUnavailable(
                f"Google Gemini is unavailable ({code}); try again shortly", status=code
            )
        if code == 404:
            return BadRequest(f"Google Gemini does not know this model (404){detail}", status=code)
        return BadRequest(f"Google Gemini refused the request ({code}){detail}", status=code)

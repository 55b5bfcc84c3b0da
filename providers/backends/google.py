"""Google Gemini: the ``streamGenerateContent?alt=sse`` REST call, read by :mod:`providers.sse`.

The request is the Gemini API's documented JSON body, sent on this provider's own
``httpx.AsyncClient`` on aiohttp's transport (``httpx-aiohttp``); HTTP and mid-stream errors become
the ``google-genai`` SDK's own
``errors.APIError`` classes (``raise_for_async_response`` / ``raise_error_async``), so they are
classified exactly as the SDK classifies them. The SDK's streaming method is not used on the hot
path: it validates every streamed chunk into pydantic models (about 140 µs of CPU per chunk on
the benchmark machine against 14 µs here; ``docs/benchmarks.md``), and it exposes no raw stream.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

import httpx
from google.genai import errors
from httpx_aiohttp import HttpxAiohttpClient

from ..base import BaseProvider
from ..sse import event_json, sse_data
from ..tls import httpx_context
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

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_API_VERSION = "v1beta"
#: Statuses retried before any text, as the SDK retries them (408, 429 and 5xx gateways).
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


_FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}


class GeminiProvider(BaseProvider):
    """OPTIONS: api_key, base_url, api_version, default_model, timeout (s), max_retries,
    retry_initial_delay / retry_max_delay (s), max_connections, first_token_timeout,
    idle_timeout, models."""

    display_name = "Google Gemini"
    api_key_env = "GOOGLE_GEMINI_API_KEY"
    fallback_default_model = "gemini-2.5-flash"

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        options = self.options
        base_url = str(options.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        version = str(options.get("api_version") or DEFAULT_API_VERSION).strip("/")
        self.endpoint = f"{base_url}/{version}/"
        self.timeout = float(options.get("timeout") or 60.0)
        self.attempts = int(options.get("max_retries", 2)) + 1
        self.retry_initial_delay = float(options.get("retry_initial_delay", 1.0))
        self.retry_max_delay = float(options.get("retry_max_delay", 20.0))
        self.max_connections = int(options.get("max_connections") or 1000)
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> httpx.AsyncClient:
        """The HTTP client, created once per provider instance (and event loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # httpx's API on aiohttp's transport: its C HTTP parser, no anyio cancel scope per
            # read; the backends' instructions per chunk fell from 275k to 129k
            # (docs/benchmarks.md, "CPU per relayed chunk, counted").
            self._client = HttpxAiohttpClient(
                timeout=self.timeout,
                limits=httpx.Limits(
                    max_connections=self.max_connections,
                    max_keepalive_connections=min(self.max_connections, 100),
                ),
                verify=httpx_context(),  # the process's (providers/tls.py)
                headers={
                    "x-goog-api-key": str(self.options.get("api_key") or ""),
                    "user-agent": "playground",
                },
            )
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        # aiohttp logs "Unclosed client session" for a session dropped open.
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.aclose()

    async def _list_models(self) -> list[ModelInfo]:
        """``GET {version}/models`` (``models.list``, every page): the models that generate
        content, with their token limits."""
        client = self.client()
        found = []
        token = ""
        for _page in range(50):
            params = {"pageSize": "1000", **({"pageToken": token} if token else {})}
            response = await client.get(f"{self.endpoint}models", params=params)
            response.raise_for_status()
            data = response.json()
            for model in data.get("models") or []:
                if "generateContent" not in (model.get("supportedGenerationMethods") or ()):
                    continue
                name = str(model["name"]).removeprefix("models/")
                found.append(
                    ModelInfo(
                        name,
                        str(model.get("displayName") or name),
                        context_window=model.get("inputTokenLimit"),
                        max_output_tokens=model.get("outputTokenLimit"),
                    )
                )
            token = data.get("nextPageToken") or ""
            if not token:
                break
        return found

    def request_url(self, model: str) -> str:
        """The streaming endpoint of ``model`` (a bare name or a ``models/…`` resource)."""
        resource = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
        return f"{self.endpoint}{resource}:streamGenerateContent?alt=sse"

    @staticmethod
    def request_body(request: StreamRequest) -> dict[str, Any]:
        """The ``GenerateContentRequest`` JSON for the conversation (Gemini calls the assistant
        ``model``)."""
        body: dict[str, Any] = {
            "contents": [
                {
                    "role": "model" if m.role == "assistant" else "user",
                    "parts": [{"text": m.content}],
                }
                for m in request.messages()
            ]
        }
        if request.system:
            body["systemInstruction"] = {"parts": [{"text": request.system}]}
        config: dict[str, Any] = {}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.max_tokens:
            config["maxOutputTokens"] = request.max_tokens
        if config:
            body["generationConfig"] = config
        return body

    def _retry_delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(max(float(retry_after), 0.0), self.retry_max_delay)
            except ValueError:
                pass
        delay = min(self.retry_initial_delay * 2 ** (attempt - 1), self.retry_max_delay)
        return delay + random.uniform(0, delay * 0.2)

    async def _open(self, request: StreamRequest) -> httpx.Response:
        """Send the request, retrying retryable statuses and failed connects; a 200 response."""
        client = self.client()
        content = json.dumps(self.request_body(request)).encode()
        url = self.request_url(request.model)
        headers = {"content-type": "application/json"}
        attempt = 1
        while True:
            retry_after = None
            try:
                response = await client.send(
                    client.build_request("POST", url, content=content, headers=headers),
                    stream=True,
                )
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if attempt >= self.attempts:
                    raise
            else:
                if response.status_code == 200:
                    return response
                try:
                    await errors.APIError.raise_for_async_response(response)
                    return response  # pragma: no cover - only 200 returns
                except errors.APIError as exc:
                    await response.aclose()
                    if exc.code not in RETRY_STATUSES or attempt >= self.attempts:
                        raise
                    retry_after = response.headers.get("retry-after")
            await asyncio.sleep(self._retry_delay(attempt, retry_after))
            attempt += 1

    async def _stream(self, request: StreamRequest) -> AsyncGenerator[TextDelta | StreamEnd, None]:
        usage: dict[str, Any] | None = None
        finish: str | None = None
        model: str | None = None
        streamed = False
        response: httpx.Response | None = None
        try:
            response = await self._open(request)
            async with aclosing(sse_data(response.aiter_bytes())) as events:
                async for data in events:
                    chunk = event_json(data)
                    if "error" in chunk:
                        error = chunk["error"]
                        code = error.get("code") if isinstance(error, dict) else None
                        await errors.APIError.raise_error_async(int(code or 500), chunk, response)
                    usage = chunk.get("usageMetadata") or usage
                    if model is None:
                        model = chunk.get("modelVersion")
                    candidates = chunk.get("candidates")
                    if not candidates:
                        continue
                    candidate = candidates[0]
                    finish = candidate.get("finishReason") or finish
                    content = candidate.get("content")
                    parts = content.get("parts") if content else None
                    if not parts:
                        continue
                    for part in parts:
                        text = part.get("text")
                        if text and not part.get("thought"):
                            streamed = True
                            yield TextDelta(text)
        except errors.APIError as exc:
            raise self._api_error(exc, streamed) from None
        except (httpx.ConnectError, httpx.ConnectTimeout):
            # Before TimeoutException: aiohttp's refused connection arrives as a ConnectTimeout.
            raise UpstreamUnavailable("Could not reach Google Gemini (connection failed)") from None
        except httpx.TimeoutException:
            raise ProviderTimeout("Google Gemini did not answer in time") from None
        except httpx.HTTPError:
            if streamed:
                raise StreamBroken("The connection to Google Gemini broke mid-answer") from None
            raise UpstreamUnavailable("Could not reach Google Gemini (connection failed)") from None
        except (ValueError, LookupError, TypeError, AttributeError):
            raise StreamBroken("Google Gemini sent a malformed stream event") from None
        finally:
            if response is not None:
                await response.aclose()
        if finish is None:
            raise StreamBroken("Google Gemini ended the stream before the answer was complete")
        yield StreamEnd(self._usage(usage), self._finish(finish), model)

    @staticmethod
    def _finish(reason: str) -> str:
        return _FINISH.get(reason, reason.lower())

    @staticmethod
    def _usage(meta: Mapping[str, Any] | None) -> Usage:
        if not meta:
            return Usage()
        thoughts = meta.get("thoughtsTokenCount") or 0
        return Usage(
            input_tokens=meta.get("promptTokenCount") or 0,
            output_tokens=(meta.get("candidatesTokenCount") or 0) + thoughts,
            cached_input_tokens=meta.get("cachedContentTokenCount") or 0,
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
        if code == 400 and CONTEXT_TOO_LONG.search(message):
            return context_too_long("Google Gemini", message, status=code)
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

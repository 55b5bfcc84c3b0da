"""A real HTTP server speaking the Anthropic Messages, Gemini and OpenAI Chat Completions streaming
wire formats, and each vendor's models-list endpoint.

Point the real SDKs at it by base URL (``upstream.url``); no HTTP mocking is involved.

Choosing a scenario: register one with :meth:`FakeUpstream.script`, which returns a marker
(``"scenario:<id>"``); put the marker anywhere in the prompt (or system prompt). A request whose
body holds no known marker gets :attr:`FakeUpstream.default` (a short fixed answer).

Routes: ``POST /v1/messages`` (Anthropic SSE with ``event:`` lines),
``POST /{version}/models/{model}:streamGenerateContent?alt=sse`` (Gemini ``data:`` lines),
``POST /v1/chat/completions`` (OpenAI ``data:`` lines, a usage chunk, ``data: [DONE]``) and the same
under any one-segment prefix, ``POST /<prefix>/v1/chat/completions``: a second OpenAI-compatible
server at its own base URL, recorded with vendor ``<prefix>``. Models lists: ``GET /v1/models``
(Anthropic's shape when the request carries ``anthropic-version``, else OpenAI's),
``GET /<prefix>/v1/models`` and ``GET /{version}/models`` (Gemini), answered from
:attr:`FakeUpstream.catalogue` (or :attr:`FakeUpstream.catalogue_status` as an error). Error
replies use each vendor's JSON error body. Every request is recorded
(:class:`RecordedRequest`: path, redacted headers, JSON body, per-delta monotonic write times,
and ``client_closed``, set when the client hangs up before the reply was complete).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeUpstream", "RecordedRequest", "Scenario", "bench_deltas", "run_in_thread"]

_MARKER = re.compile(rb"scenario:([A-Za-z0-9_.-]+)")
_TAG = re.compile(rb"bench:([A-Za-z0-9_.-]+)")


def bench_deltas(count: int, size: int) -> tuple[str, ...]:
    """Deterministic benchmark deltas: ``count`` ASCII texts of ``size`` bytes each
    (``"<index>|"`` then filler), so a client can check every chunk's text and order."""
    texts = []
    for index in range(count):
        head = f"{index}|"
        texts.append((head + "abcdefghijklmnopqrstuvwxyz" * (size // 26 + 1))[: max(size, 1)])
    return tuple(texts)


_SECRET_HEADERS = frozenset({"x-api-key", "x-goog-api-key", "authorization"})

_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_OPENAI_ERRORS = {
    400: ("invalid_request_error", "invalid_value"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
_OPENAI_MID_ERRORS = {
    "overloaded_error": ("server_error", "The model is overloaded. Please try again later."),
    "api_error": ("server_error", "The server had an error while processing your request."),
}
_GEMINI_MID_ERRORS = {
    "overloaded_error": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "api_error": (500, "INTERNAL", "An internal error has occurred."),
}


@dataclass
class Scenario:
    """How the fake answers one request.

    ``status``: reply with that HTTP error (vendor error body) instead of a stream, for the
    first ``fail_times`` matching requests (``None`` = always), then stream normally.
    ``retry_after`` sets the ``Retry-After`` header (seconds, as a string) on error replies.
    ``error_after`` / ``stall_after`` / ``disconnect_after`` / ``malformed_after``: after that
    many deltas, send a mid-stream error event (``stream_error``: an Anthropic error type),
    go silent until the client hangs up, drop the connection, or send a malformed event.
    A delta is sent as the vendor's text field whatever its JSON value (a number, a list, …):
    a misbehaving upstream.
    """

    deltas: Sequence[Any] = ("Hello", ", ", "world", "!")
    delay: float = 0.0
    first_delay: float = 0.0
    status: int | None = None
    error_message: str = ""
    #: OpenAI: the error body's ``code`` (default: the usual one for the status).
    error_code: str | None = None
    fail_times: int | None = None
    retry_after: str | None = None
    error_after: int | None = None
    stream_error: str = "overloaded_error"
    stall_after: int | None = None
    disconnect_after: int | None = None
    malformed_after: int | None = None
    input_tokens: int = 12
    output_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str | None = None
    #: The model name the vendor reports in its stream (default: the one requested).
    served_model: str | None = None
    #: OpenAI: send the usage chunk (only when the request asked for it, as OpenAI does).
    usage_chunk: bool = True
    hits: int = 0

    def next_status(self) -> int | None:
        """The error status for this request, or ``None`` to stream (counts the request)."""
        self.hits += 1
        if self.status is None:
            return None
        if self.fail_times is not None and self.hits > self.fail_times:
            return None
        return self.status


@dataclass
class RecordedRequest:
    """One request the fake received."""

    vendor: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    scenario_id: str | None
    started_at: float = field(default_factory=time.monotonic)
    tag: str | None = None
    status: int = 200
    delta_times: list[float] = field(default_factory=list)
    completed: bool = False
    closed: bool = False
    client_closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def api_key(self) -> str | None:
        """Whether a key was sent is visible; the key itself is redacted to ``"***"``."""
        for name in ("x-api-key", "x-goog-api-key", "authorization"):
            if name in self.headers:
                return self.headers[name]
        return None


class _ClientGone(Exception):
    pass


class FakeUpstream:
    """The fake server. ``async with FakeUpstream() as upstream: ...`` (random port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.default = Scenario()
        self.scenarios: dict[str, Scenario] = {}
        self.requests: list[RecordedRequest] = []
        #: What each vendor's models list answers, by vendor (``anthropic``, ``google``,
        #: ``openai`` or a prefix): ``{"id", "label"?, "context"?, "max_output"?}`` entries.
        self.catalogue: dict[str, list[dict[str, Any]]] = {}
        #: Vendors whose models list answers this HTTP error status instead.
        self.catalogue_status: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/{prefix}/v1/chat/completions", self._openai)
        app.router.add_get("/{prefix}/v1/models", self._models)
        app.router.add_get("/{version}/models", self._models)
        app.router.add_post(r"/{version}/models/{model}:streamGenerateContent", self._gemini)
        app.router.add_post(r"/{version}/models/{model}:generateContent", self._gemini)
        app.router.add_get("/_bench/requests", self._bench_requests)
        app.router.add_post("/_bench/reset", self._bench_reset)
        app.router.add_post("/_bench/scenario", self._bench_scenario)
        self.app = app

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL for both SDKs (``ANTHROPIC_BASE_URL`` / ``GOOGLE_GEMINI_BASE_URL``)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- scripting ----------------------------------------------------------------------

    def script(self, scenario_id: str, **options: Any) -> str:
        """Register a :class:`Scenario`; returns the marker to put in the prompt."""
        if "deltas" in options:
            options["deltas"] = tuple(options["deltas"])
        self.scenarios[scenario_id] = Scenario(**options)
        return f"scenario:{scenario_id}"

    def requests_for(self, scenario_id: str | None) -> list[RecordedRequest]:
        """The recorded requests that carried ``scenario_id``'s marker."""
        return [r for r in self.requests if r.scenario_id == scenario_id]

    async def wait_closed(self, scenario_id: str, within: float = 2.0) -> RecordedRequest:
        """Wait until the (last) request of ``scenario_id`` saw its client hang up early."""
        async with asyncio.timeout(within):
            while not self.requests_for(scenario_id):  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            request = self.requests_for(scenario_id)[-1]
            await request.client_closed.wait()
        return request

    def _match(self, raw: bytes, vendor: str) -> tuple[str | None, Scenario]:
        """The scenario named in the prompt; ``<id>.<vendor>`` wins over ``<id>``, so one
        prompt sent to several vendors (a comparison) can script each vendor differently."""
        for match in _MARKER.finditer(raw):
            base = match.group(1).decode()
            for scenario_id in (f"{base}.{vendor}", base):
                if scenario_id in self.scenarios:
                    return scenario_id, self.scenarios[scenario_id]
        return None, self.default

    async def _record(self, request: web.Request, vendor: str) -> tuple[RecordedRequest, Scenario]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        scenario_id, scenario = self._match(raw, vendor)
        headers = {
            k.lower(): ("***" if k.lower() in _SECRET_HEADERS else v)
            for k, v in request.headers.items()
        }
        record = RecordedRequest(
            vendor=vendor,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=headers,
            body=body,
            scenario_id=scenario_id,
        )
        if (tag := _TAG.search(raw)) is not None:
            record.tag = tag.group(1).decode()
        self.requests.append(record)
        return record, scenario

    # --- benchmark admin ----------------------------------------------------------------

    def configure_default(
        self, *, deltas: int, delta_bytes: int = 16, rate: float = 20.0, first_delay: float = 0.0
    ) -> None:
        """Make the default scenario a paced benchmark stream (:func:`bench_deltas`)."""
        self.default = Scenario(
            deltas=bench_deltas(deltas, delta_bytes),
            delay=1.0 / rate if rate > 0 else 0.0,
            first_delay=first_delay,
            output_tokens=deltas,
        )

    async def _bench_requests(self, request: web.Request) -> web.Response:
        """``GET /_bench/requests``: every recorded request's tag, vendor and delta write times
        (``time.monotonic``, system-wide on Linux); ``?tag_prefix=`` filters by tag."""
        prefix = request.query.get("tag_prefix")
        rows = [
            {
                "vendor": r.vendor,
                "path": r.path,
                "tag": r.tag,
                "scenario": r.scenario_id,
                "status": r.status,
                "started_at": r.started_at,
                "delta_times": r.delta_times,
                "completed": r.completed,
                "closed": r.closed,
            }
            for r in self.requests
            if prefix is None or (r.tag or "").startswith(prefix)
        ]
        return web.json_response(rows)

    async def _bench_scenario(self, request: web.Request) -> web.Response:
        """``POST /_bench/scenario`` ``{"id", "deltas", "delta_bytes", "rate"}``: register a paced
        benchmark scenario, chosen by ``scenario:<id>`` in the prompt."""
        spec = await request.json()
        count = int(spec["deltas"])
        rate = float(spec.get("rate", 20.0))
        self.scenarios[str(spec["id"])] = Scenario(
            deltas=bench_deltas(count, int(spec.get("delta_bytes", 16))),
            delay=1.0 / rate if rate > 0 else 0.0,
            output_tokens=count,
        )
        return web.json_response({"marker": f"scenario:{spec['id']}"})

    async def _bench_reset(self, request: web.Request) -> web.Response:
        """``POST /_bench/reset``: forget the recorded requests."""
        count = len(self.requests)
        self.requests.clear()
        return web.json_response({"cleared": count})

    # --- shared streaming machinery -----------------------------------------------------

    @staticmethod
    def _gone(request: web.Request) -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    async def _pause(self, request: web.Request, seconds: float) -> None:
        """Sleep, noticing a client hang-up within ~5 ms."""
        if seconds <= 0:
            if self._gone(request):
                raise _ClientGone
            return
        deadline = time.monotonic() + seconds
        while True:
            if self._gone(request):
                raise _ClientGone
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.005))

    async def _serve(
        self,
        request: web.Request,
        record: RecordedRequest,
        scenario: Scenario,
        frames: AsyncIterator[tuple[str, bytes]],
    ) -> web.StreamResponse:
        """Write ``frames`` (kind, bytes); kinds: delta, frame, stall, disconnect, end."""
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        )
        await response.prepare(request)
        try:
            async for kind, payload in frames:
                if kind == "stall":
                    while True:
                        await self._pause(request, 3600)
                if kind == "disconnect":
                    assert request.transport is not None
                    request.transport.abort()
                    record.closed = True
                    return response
                if self._gone(request):
                    raise _ClientGone
                await response.write(payload)
                if kind == "delta":
                    record.delta_times.append(time.monotonic())
            # Marked before the end is sent: a client that has read the whole answer must find
            # it recorded as complete.
            record.completed = True
            await response.write_eof()
        except (_ClientGone, ConnectionError):
            record.closed = True
            record.client_closed.set()
        return response

    def _error(
        self, record: RecordedRequest, status: int, body: Any, scenario: Scenario
    ) -> web.Response:
        record.status = status
        headers = {"Retry-After": scenario.retry_after} if scenario.retry_after is not None else {}
        return web.json_response(body, status=status, headers=headers)

    # --- Anthropic ----------------------------------------------------------------------

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        record, scenario = await self._record(request, "anthropic")
        status = scenario.next_status()
        if status is not None:
            kind = _ANTHROPIC_ERRORS.get(status, "api_error")
            body = {
                "type": "error",
                "error": {"type": kind, "message": scenario.error_message or kind},
                "request_id": "req_fake",
            }
            return self._error(record, status, body, scenario)
        model = (
            (record.body or {}).get("model", "claude-fake")
            if isinstance(record.body, dict)
            else "claude-fake"
        )
        model = scenario.served_model or model
        return await self._serve(request, record, scenario, self._anthropic_frames(scenario, model))

    async def _anthropic_frames(
        self, scenario: Scenario, model: str
    ) -> AsyncIterator[tuple[str, bytes]]:
        def sse(event: str, data: dict[str, Any]) -> bytes:
            return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()

        yield (
            "frame",
            sse(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_fake",
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": scenario.input_tokens,
                            "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": scenario.cached_tokens,
                            "output_tokens": 1,
                        },
                    },
                },
            ),
        )
        yield (
            "frame",
            sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
        )
        yield "frame", sse("ping", {"type": "ping"})
        if scenario.first_delay:
            await asyncio.sleep(scenario.first_delay)
        async for kind, _index, text in _deltas(scenario):
            if kind == "error":
                yield (
                    "frame",
                    sse(
                        "error",
                        {
                            "type": "error",
                            "error": {
                                "type": scenario.stream_error,
                                "message": scenario.error_message or scenario.stream_error,
                            },
                        },
                    ),
                )
                return
            if kind == "malformed":
                yield (
                    "frame",
                    b'event: content_block_delta\ndata: {"type": "content_block_delta", "index\n\n',
                )
                return
            if kind in ("stall", "disconnect"):
                yield kind, b""
                return
            yield (
                "delta",
                sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": text},
                    },
                ),
            )
        yield "frame", sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        output = (
            scenario.output_tokens if scenario.output_tokens is not None else len(scenario.deltas)
        )
        yield (
            "frame",
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": scenario.finish_reason or "end_turn",
                        "stop_sequence": None,
                    },
                    "usage": {"output_tokens": output},
                },
            ),
        )
        yield "frame", sse("message_stop", {"type": "message_stop"})

    # --- Gemini -------------------------------------------------------------------------

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        record, scenario = await self._record(request, "google")
        status = scenario.next_status()
        if status is not None:
            text = _GEMINI_STATUS.get(status, "UNKNOWN")
            body = {
                "error": {"code": status, "message": scenario.error_message or text, "status": text}
            }
            return self._error(record, status, body, scenario)
        model = scenario.served_model or request.match_info["model"]
        return await self._serve(request, record, scenario, self._gemini_frames(scenario, model))

    async def _gemini_frames(
        self, scenario: Scenario, model: str
    ) -> AsyncIterator[tuple[str, bytes]]:
        total = len(scenario.deltas)
        output = scenario.output_tokens if scenario.output_tokens is not None else total

        def usage(done: int, final: bool) -> dict[str, Any]:
            candidates = output if final else done
            meta: dict[str, Any] = {
                "promptTokenCount": scenario.input_tokens,
                "candidatesTokenCount": candidates,
                "totalTokenCount": scenario.input_tokens + candidates + scenario.reasoning_tokens,
            }
            if scenario.cached_tokens:
                meta["cachedContentTokenCount"] = scenario.cached_tokens
            if scenario.reasoning_tokens:
                meta["thoughtsTokenCount"] = scenario.reasoning_tokens
            return meta

        def chunk(text: Any, done: int, final: bool) -> bytes:
            candidate: dict[str, Any] = {
                "content": {"parts": [{"text": text}], "role": "model"},
                "index": 0,
            }
            if final:
                candidate["finishReason"] = scenario.finish_reason or "STOP"
            data = {
                "candidates": [candidate],
                "usageMetadata": usage(done, final),
                "modelVersion": model,
                "responseId": "fake-response",
            }
            return b"data: " + json.dumps(data).encode() + b"\r\n\r\n"

        if scenario.first_delay:
            await asyncio.sleep(scenario.first_delay)
        async for kind, index, text in _deltas(scenario):
            if kind == "error":
                code, status, text = _GEMINI_MID_ERRORS.get(
                    scenario.stream_error, (500, "INTERNAL", "Internal error")
                )
                body = {
                    "error": {
                        "code": code,
                        "message": scenario.error_message or text,
                        "status": status,
                    }
                }
                yield "frame", b"data: " + json.dumps(body).encode() + b"\r\n\r\n"
                return
            if kind == "malformed":
                yield "frame", b'data: {"candidates": [{"content": \r\n\r\n'
                return
            if kind in ("stall", "disconnect"):
                yield kind, b""
                return
            yield "delta", chunk(text, index + 1, index + 1 == total)
        if total == 0:
            yield "frame", chunk("", 0, True)

    # --- OpenAI Chat Completions (and OpenAI-compatible servers) --------------------------

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        vendor = request.match_info.get("prefix") or "openai"
        record, scenario = await self._record(request, vendor)
        status = scenario.next_status()
        if status is not None:
            kind, code = _OPENAI_ERRORS.get(status, ("server_error", None))
            code = scenario.error_code or code
            message = scenario.error_message or f"Fake OpenAI error {status}"
            body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
            return self._error(record, status, body, scenario)
        body = record.body if isinstance(record.body, dict) else {}
        model = scenario.served_model or str(body.get("model") or "gpt-fake")
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        frames = self._openai_frames(scenario, model, usage and scenario.usage_chunk)
        return await self._serve(request, record, scenario, frames)

    async def _openai_frames(
        self, scenario: Scenario, model: str, send_usage: bool
    ) -> AsyncIterator[tuple[str, bytes]]:
        head = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1764100000}

        def sse(data: dict[str, Any]) -> bytes:
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**head, "model": model, "choices": [choice], "usage": None})

        yield "frame", chunk({"role": "assistant", "content": "", "refusal": None})
        if scenario.first_delay:
            await asyncio.sleep(scenario.first_delay)
        async for kind, _index, text in _deltas(scenario):
            if kind == "error":
                error_type, message = _OPENAI_MID_ERRORS.get(
                    scenario.stream_error, ("server_error", "Internal error")
                )
                error = {"message": scenario.error_message or message, "type": error_type}
                yield "frame", sse({"error": {**error, "param": None, "code": None}})
                return
            if kind == "malformed":
                yield "frame", b'data: {"id": "chatcmpl-fake", "choices": [{"delta\n\n'
                return
            if kind in ("stall", "disconnect"):
                yield kind, b""
                return
            yield "delta", chunk({"content": text})
        yield "frame", chunk({}, scenario.finish_reason or "stop")
        if send_usage:
            output = (
                scenario.output_tokens
                if scenario.output_tokens is not None
                else len(scenario.deltas)
            ) + scenario.reasoning_tokens
            usage = {
                "prompt_tokens": scenario.input_tokens,
                "completion_tokens": output,
                "total_tokens": scenario.input_tokens + output,
                "prompt_tokens_details": {"cached_tokens": scenario.cached_tokens},
                "completion_tokens_details": {"reasoning_tokens": scenario.reasoning_tokens},
            }
            yield "frame", sse({**head, "model": model, "choices": [], "usage": usage})
        yield "frame", b"data: [DONE]\n\n"

    # --- models lists -------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        if "version" in request.match_info:
            vendor = "google"
        elif "anthropic-version" in request.headers:
            vendor = "anthropic"
        else:
            vendor = request.match_info.get("prefix") or "openai"
        record, _scenario = await self._record(request, vendor)
        entries = self.catalogue.get(vendor, [])
        status = self.catalogue_status.get(vendor)
        if status is not None:
            record.status = status
            return web.json_response(
                {"error": {"message": "unavailable", "code": status}}, status=status
            )
        if vendor == "anthropic":
            data = [
                {
                    "type": "model",
                    "id": e["id"],
                    "display_name": e.get("label", e["id"]),
                    "created_at": "2026-01-01T00:00:00Z",
                    **({"max_input_tokens": e["context"]} if "context" in e else {}),
                    **({"max_tokens": e["max_output"]} if "max_output" in e else {}),
                }
                for e in entries
            ]
            first = data[0]["id"] if data else None
            last = data[-1]["id"] if data else None
            return web.json_response(
                {"data": data, "has_more": False, "first_id": first, "last_id": last}
            )
        if vendor == "google":
            models = [
                {
                    "name": f"models/{e['id']}",
                    "displayName": e.get("label", e["id"]),
                    "inputTokenLimit": e.get("context", 1048576),
                    "outputTokenLimit": e.get("max_output", 65536),
                    "supportedGenerationMethods": e.get(
                        "methods", ["generateContent", "countTokens"]
                    ),
                }
                for e in entries
            ]
            return web.json_response({"models": models})
        data = []
        for e in entries:
            row: dict[str, Any] = {
                "id": e["id"],
                "object": "model",
                "created": 1764100000,
                "owned_by": vendor,
            }
            if "context" in e:  # as OpenRouter reports it
                row["context_length"] = e["context"]
            data.append(row)
        return web.json_response({"object": "list", "data": data})


async def _deltas(scenario: Scenario) -> AsyncIterator[tuple[str, int, Any]]:
    """(kind, index, text) with the scenario's pacing; kind is delta or a failure."""
    triggers = (
        ("error", scenario.error_after),
        ("malformed", scenario.malformed_after),
        ("stall", scenario.stall_after),
        ("disconnect", scenario.disconnect_after),
    )
    count = len(scenario.deltas)
    for index, text in enumerate([*scenario.deltas, None]):
        for kind, after in triggers:
            if after is not None and after == index:
                yield kind, index, ""
                return
        if index == count:
            return
        if index and scenario.delay:
            await asyncio.sleep(scenario.delay)
        yield "delta", index, text


@contextlib.contextmanager
def run_in_thread(host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeUpstream]:
    """Run a :class:`FakeUpstream` on its own event loop in a daemon thread (for sync code).

    Script scenarios before the requests; ``RecordedRequest.client_closed`` belongs to the
    server's loop there, so read ``RecordedRequest.closed`` instead.
    """
    loop = asyncio.new_event_loop()
    upstream = FakeUpstream(host, port)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(upstream.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(upstream.stop())
        loop.close()

    thread = threading.Thread(target=serve, name="fake-upstream", daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield upstream
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

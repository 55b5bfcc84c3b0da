"""Arena tests: comparisons made with the real services, requests through the real ASGI app."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from channels.testing import HttpCommunicator

from comparisons import services
from comparisons.models import Comparison

#: Slots of a typical blind battle and what each one "answered" (text, finish reason, error).
SLOTS = [
    services.SlotSpec("anthropic", "claude-haiku-4-5-20251001"),
    services.SlotSpec("google", "gemini-2.5-flash"),
]
IDENTITY_WORDS = ("anthropic", "claude", "google", "gemini", "openai", "gpt")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def text(self) -> str:
        return self.body.decode()


async def call(
    method: str, path: str, token: str | None = None, body: Any = None, query: str = ""
) -> Reply:
    """One request through the real ASGI application (routing, middleware, Ninja, auth)."""
    from playground.asgi import router as application

    headers = [(b"host", b"testserver")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    payload = b""
    if body is not None:
        payload = json.dumps(body).encode()
        headers.append((b"content-type", b"application/json"))
    communicator = HttpCommunicator(
        application, method, path + (f"?{query}" if query else ""), body=payload, headers=headers
    )
    response = await communicator.get_response(timeout=10)
    head = {k.decode().lower(): v.decode() for k, v in response["headers"]}
    return Reply(response["status"], head, response["body"])


def make_comparison(
    *,
    user_id: str,
    blind: bool = True,
    slots: Sequence[services.SlotSpec] = SLOTS,
    prompt: str = "Explain recursion",
    contents: Sequence[str] | None = None,
) -> Comparison:
    """A finished comparison as a run leaves it: every slot complete (the last one failed)."""
    comparison = services.comparison_create(
        user_id=user_id,
        prompt=prompt,
        slots=services.slots_shuffle(slots=slots) if blind else slots,
        blind=blind,
        enforce_limits=False,
    )
    rows = list(comparison.responses.order_by("position"))
    progress = []
    for n, row in enumerate(rows):
        failed = n == len(rows) - 1 and len(rows) > 2
        progress.append(
            services.ResponseProgress(
                key=row.key,
                status="error" if failed else "complete",
                content=(contents[n] if contents else f"Answer {n}: a function calling itself."),
                chunk_count=3,
                error=f"{row.provider} {row.model_name} is overloaded (503)" if failed else "",
                finish_reason=""
                if failed
                else ("end_turn" if row.provider == "anthropic" else "STOP"),
                duration_ms=800.0 + n,
                time_to_first_token_ms=100.0,
                input_tokens=9,
                output_tokens=40,
                total_tokens=49,
                tokens_per_second=50.0,
                estimated_cost=0.0001 * (n + 1),
                price_version="2026-11-25",
                response_model=f"{row.model_name}-dated",
            )
        )
    services.comparison_save_progress(
        comparison_id=comparison.id, progress=progress, status="complete"
    )
    return comparison


@pytest.fixture
def tokens(token_for: Callable[[str], str]) -> Callable[[str], str]:
    return token_for

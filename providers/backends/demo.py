"""The offline demo provider: no network, no key, a clearly labelled deterministic answer.

It is only ever used when asked for by its alias (``demo``); nothing substitutes it for a
vendor the user chose.

Token counts are honest about what they are: *input tokens* = ``ceil(characters / 4)`` of the
prompt plus the system prompt and the earlier messages of a follow-up (the usual rule of thumb for English text); *output tokens* = the
number of pieces streamed, where a piece is a word with its trailing whitespace.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Mapping
from typing import Any, ClassVar

from ..base import BaseProvider, ceil_div
from ..types import StreamEnd, StreamRequest, TextDelta, Usage

_PIECE = re.compile(r"\S+\s*|\s+")
_MAX_ECHO_CHARS = 400


def demo_answer(request: StreamRequest) -> str:
    """The deterministic text the demo streams for ``request``."""
    prompt = " ".join(request.prompt.split())
    if len(prompt) > _MAX_ECHO_CHARS:
        prompt = prompt[:_MAX_ECHO_CHARS].rstrip() + " …"
    lines = [
        # Not naming its model: a blind battle of two demo models must not give away which
        # is which (a real model that names itself is flagged by its user).
        "This is the offline demo of AI Playground, not a real language model.",
        f'You asked: "{prompt}"',
    ]
    if request.system:
        lines.append("A system prompt was given as well.")
    if request.history:
        turns = sum(1 for m in request.history if m.role == "user")
        lines.append(f"This follows {turns} earlier exchange(s) of the conversation.")
    lines.append(
        "With an API key configured, real models answer here side by side, streamed as they "
        "are generated, with their token usage and estimated cost."
    )
    return "\n\n".join(lines)


def split_pieces(text: str) -> list[str]:
    """``text`` cut into word-ish pieces (a word with its trailing whitespace)."""
    return _PIECE.findall(text)


class DemoProvider(BaseProvider):
    """Streams :func:`demo_answer` at ``tokens_per_second`` after ``first_token_delay`` s."""

    display_name = "Demo"
    requires_api_key = False
    fallback_default_model = "demo-echo"
    #: Only its own models (``demo-echo``, ``demo-fast``, in the price book) exist.
    open_catalogue = False
    #: Pace multiplier per model.
    speedups: ClassVar[Mapping[str, float]] = {"demo-fast": 4.0}

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        super().__init__(alias, options)
        self.tokens_per_second = float(self.options.get("tokens_per_second", 40.0))
        self.first_token_delay = float(self.options.get("first_token_delay", 0.35))

    async def _stream(self, request: StreamRequest) -> AsyncGenerator[TextDelta | StreamEnd, None]:
        pieces = split_pieces(demo_answer(request))
        speedup = self.speedups.get(request.model, 1.0)
        rate = self.tokens_per_second * speedup
        gap = 1.0 / rate if rate > 0 else 0.0
        first = self.first_token_delay / speedup
        if first > 0:
            await asyncio.sleep(first)
        sleep = asyncio.sleep
        for index, piece in enumerate(pieces):
            if index and gap:
                await sleep(gap)
            yield TextDelta(piece)
        earlier = sum(len(m.content) for m in request.history)
        input_tokens = ceil_div(len(request.prompt) + len(request.system or "") + earlier, 4)
        yield StreamEnd(Usage(input_tokens=input_tokens, output_tokens=len(pieces)), "stop")

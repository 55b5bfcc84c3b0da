"""Helpers shared by the provider tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from providers.base import BaseProvider
from providers.types import ProviderError, StreamEnd, StreamRequest, TextDelta


@dataclass
class Outcome:
    """What one stream produced."""

    deltas: list[str] = field(default_factory=list)
    end: StreamEnd | None = None
    error: ProviderError | None = None
    events_after_end: int = 0

    @property
    def text(self) -> str:
        return "".join(self.deltas)


async def collect(provider: BaseProvider, request: StreamRequest) -> Outcome:
    """Run a stream to its end, capturing the deltas, the end event or the ProviderError."""
    outcome = Outcome()
    try:
        async for event in provider.stream(request):
            if outcome.end is not None:
                outcome.events_after_end += 1
            elif isinstance(event, TextDelta):
                outcome.deltas.append(event.text)
            else:
                outcome.end = event
    except ProviderError as exc:
        outcome.error = exc
    return outcome

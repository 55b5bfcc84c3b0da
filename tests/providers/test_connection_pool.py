"""Connection pools: one per backend (the OpenAI-compatible aliases share the openai backend)."""

from __future__ import annotations

import asyncio

import pytest

from providers.registry import providers
from tests.fake_upstream import FakeUpstream

from .helpers import collect
from .test_vendors import _request


@pytest.mark.parametrize("alias", ["anthropic", "google", "openai"])
async def test_many_concurrent_streams(alias: str, upstream_providers: FakeUpstream) -> None:
    """120 answers at once from one provider are all open at the same time (no 100-connection
    pool holding the rest back until the first ones end), and each arrives whole."""
    marker = upstream_providers.script("many", deltas=["x", "y"], first_delay=3.0)
    outcomes = await asyncio.gather(
        *(collect(providers[alias], _request(alias, marker)) for _ in range(120))
    )
    assert [out.text for out in outcomes] == ["xy"] * 120
    recorded = upstream_providers.requests_for("many")
    assert len(recorded) == 120
    # Held back by a pool, a request would only have started after an earlier answer began.
    last_request = max(r.started_at for r in recorded)
    first_answer = min(r.delta_times[0] for r in recorded)
    assert last_request < first_answer

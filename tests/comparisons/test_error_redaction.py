"""A vendor error echoing the API key reaches the socket and the database redacted."""

from __future__ import annotations

import pytest

from comparisons.models import ModelResponse
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.fixtures import TEST_API_KEY

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_echoed_key_is_redacted_in_the_event_and_the_saved_row(
    upstream_providers: FakeUpstream, connect
) -> None:
    marker = upstream_providers.script(
        "leak", status=400, error_message=f"invalid x-api-key {TEST_API_KEY} for this model"
    )
    client = await connect()
    await client.send("startComparison", {"prompt": f"hi {marker}", "providers": ["anthropic"]})
    events = await client.until_event("comparisonComplete")
    [error] = [e for e in events if e["event"] == "modelError"]
    assert TEST_API_KEY not in error["data"]["error"]
    assert "invalid x-api-key [redacted] for this model" in error["data"]["error"]
    row = await ModelResponse.objects.aget(comparison_id=events[0]["data"]["sessionId"])
    assert TEST_API_KEY not in row.error and "[redacted]" in row.error

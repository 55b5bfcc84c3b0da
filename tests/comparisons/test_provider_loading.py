"""A start that asks for a provider still loading (the start-up preload imports the SDKs in a
thread: seconds, tens of seconds on a busy machine) waits for it off the event loop: every other
socket of the process is answered meanwhile, and the start then runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from providers.backends.demo import DemoProvider
from providers.registry import providers

# Failing, the test waits out its own bounds (up to ~60 s) before the assertion says why.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

#: Set by the test: until then the provider's construction (its "SDK import") does not return.
LOADED = threading.Event()
#: Set once the construction has begun (the preload holds the registry's lock from then on).
LOADING = threading.Event()


class SlowLoadingProvider(DemoProvider):
    """The demo provider, whose construction waits for :data:`LOADED` (a slow SDK import)."""

    def __init__(self, alias: str, options: Mapping[str, Any]) -> None:
        LOADING.set()
        LOADED.wait(60)
        super().__init__(alias, options)


@pytest.fixture
def slow_provider(settings: Any) -> Iterator[None]:
    settings.AI_PROVIDERS = {
        "slow": {
            "BACKEND": f"{__name__}.SlowLoadingProvider",
            "OPTIONS": {"tokens_per_second": 5000, "first_token_delay": 0},
        }
    }
    LOADED.clear()
    LOADING.clear()
    yield
    LOADED.set()


async def test_a_start_waiting_for_its_provider_leaves_the_other_sockets_served(
    slow_provider: None, connect: Any
) -> None:
    waiting, other = await connect("user_waiting"), await connect("user_other")
    # The start-up's preload thread (playground/startup.py), caught while it loads the provider.
    preload = threading.Thread(target=providers.preload, name="provider-preload", daemon=True)
    preload.start()
    assert LOADING.wait(10)
    # Before the fix the loop blocked on the registry's lock: this releases it eventually, so
    # that the test fails on its assertion instead of hanging.
    release = threading.Timer(20, LOADED.set)
    release.start()
    try:
        await waiting.send("startComparison", {"prompt": "hello", "providers": ["slow"]})
        await other.send("probe.loop", None)
        answer = await other.receive(timeout=15)
        # Answered while the provider was still loading: the start's wait left the loop free.
        answered_while_loading = not LOADED.is_set()
        assert answer == {"event": "error", "data": {"message": "Unknown event: probe.loop"}}
        assert answered_while_loading
        LOADED.set()
        events = await waiting.until_event("comparisonComplete", timeout=30)
        assert events[0]["event"] == "sessionCreated"
        assert events[-1]["data"]["status"] == "complete"
    finally:
        LOADED.set()
        release.cancel()
        preload.join(10)

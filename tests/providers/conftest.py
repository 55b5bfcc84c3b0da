"""Fixtures of the provider tests (the fake upstream and settings pointing at it)."""

from __future__ import annotations

# The vendor SDKs load with the test modules, as a serving process loads them before it serves
# (playground/startup.py): loaded on first use, they took 15-20 s of a busy machine within a
# test's waits, deadlines and time limit.
import providers.backends.anthropic
import providers.backends.google
import providers.backends.openai  # noqa: F401
from tests.fake_upstream.fixtures import fake_upstream, providers_closed, upstream_providers

__all__ = ["fake_upstream", "providers_closed", "upstream_providers"]

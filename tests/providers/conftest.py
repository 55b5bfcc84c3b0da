"""Fixtures of the provider tests (the fake upstream and settings pointing at it)."""

from __future__ import annotations

from tests.fake_upstream.fixtures import fake_upstream, upstream_providers

__all__ = ["fake_upstream", "upstream_providers"]

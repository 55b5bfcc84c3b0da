"""A fake Anthropic + Gemini + OpenAI (and OpenAI-compatible) HTTP server for tests and benchmarks
(see :mod:`.server`)."""

from .server import FakeUpstream, RecordedRequest, Scenario, run_in_thread

__all__ = ["FakeUpstream", "RecordedRequest", "Scenario", "run_in_thread"]

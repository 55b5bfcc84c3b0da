"""The health endpoints, through the real ASGI application."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from channels.testing import HttpCommunicator

from playground.asgi import router as application

pytestmark = pytest.mark.django_db(transaction=True)


async def _get(
    path: str, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict, dict]:
    communicator = HttpCommunicator(
        application, "GET", path, headers=[(b"host", b"testserver"), *(headers or [])]
    )
    response = await communicator.get_response(timeout=10)
    return (
        response["status"],
        {k.decode().lower(): v.decode() for k, v in response["headers"]},
        json.loads(response["body"]),
    )


async def test_root_answers_like_the_seed() -> None:
    status, headers, body = await _get("/")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert set(body) == {"status", "timestamp", "service"}
    assert body["status"] == "ok"
    assert body["service"] == "AI Playground API"
    stamp = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert stamp.tzinfo is not None
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 5


async def test_root_sends_cors_headers_for_the_configured_origin(settings) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["http://localhost:3000"]
    _, headers, _ = await _get("/", [(b"origin", b"http://localhost:3000")])
    assert headers["access-control-allow-origin"] == "http://localhost:3000"
    _, headers, _ = await _get("/", [(b"origin", b"http://evil.example")])
    assert "access-control-allow-origin" not in headers


async def test_readiness_ok_with_database_only(settings) -> None:
    settings.REDIS_URL = ""
    status, _, body = await _get("/health/ready")
    assert status == 200
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok"}


async def test_readiness_names_unreachable_redis_and_logs_why(settings, caplog) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    with caplog.at_level(logging.WARNING, logger="playground.health"):
        status, _, body = await _get("/health/ready")
    assert status == 503
    # Public: names and ok/fail, no hosts, ports or exception text.
    assert set(body) == {"status", "timestamp", "service", "checks"}
    assert body["status"] == "error"
    assert body["checks"] == {"database": "ok", "redis": "fail"}
    [record] = [r for r in caplog.records if r.name == "playground.health"]
    assert "redis unreachable" in record.getMessage() and "127.0.0.1" in record.getMessage()


@pytest.mark.redis
async def test_readiness_ok_with_real_redis(settings, redis_url: str) -> None:
    settings.REDIS_URL = redis_url
    status, _, body = await _get("/health/ready")
    assert status == 200, body
    assert body["checks"] == {"database": "ok", "redis": "ok"}

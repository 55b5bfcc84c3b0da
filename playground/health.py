"""Public health endpoints: liveness (the seed's ``GET /``) and readiness.

Both are public, so readiness names each dependency with ``ok`` or ``fail`` only; why a check
failed (exception text with hosts and ports) goes to the log.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)

SERVICE_NAME = "AI Playground API"
READINESS_TIMEOUT_SECONDS = 2.0


def _utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def health(request: HttpRequest) -> JsonResponse:
    """Liveness, exactly as the seed: status, timestamp and service name."""
    return JsonResponse({"status": "ok", "timestamp": _utc_now_iso(), "service": SERVICE_NAME})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _check_redis(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_connect_timeout=READINESS_TIMEOUT_SECONDS)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _probe(name: str, check: Any) -> tuple[str, str | None]:
    try:
        await asyncio.wait_for(check, timeout=READINESS_TIMEOUT_SECONDS)
    except TimeoutError:
        return name, f"{name} did not answer within {READINESS_TIMEOUT_SECONDS:g} s"
    except Exception as exc:  # any failure of a dependency is reported, not raised
        return name, f"{name} unreachable: {type(exc).__name__}: {exc}"
    return name, None


async def readiness(request: HttpRequest) -> JsonResponse:
    """Readiness: the database and, when configured, Redis answer. 200, or 503 naming the failed
    dependency (the reason is logged, not shown)."""
    probes = [_probe("database", sync_to_async(_check_database, thread_sensitive=True)())]
    if settings.REDIS_URL:
        probes.append(_probe("redis", _check_redis(settings.REDIS_URL)))
    results = await asyncio.gather(*probes)
    checks = {name: ("ok" if error is None else "fail") for name, error in results}
    errors = [error for _, error in results if error is not None]
    for error in errors:
        logger.warning("Readiness check failed: %s", error)
    body: dict[str, Any] = {
        "status": "ok" if not errors else "error",
        "timestamp": _utc_now_iso(),
        "service": SERVICE_NAME,
        "checks": checks,
    }
    return JsonResponse(body, status=200 if not errors else 503)

"""REST endpoints for saved comparisons: ``GET /sessions`` and ``GET /sessions/{id}``."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema, Status
from pydantic import Field

from accounts.http import user_id
from comparisons import selectors
from comparisons.models import Comparison
from comparisons.schemas import InvalidOut, NotFoundOut, SessionOut

router = Router(tags=["sessions"])


class ListParams(Schema):
    limit: int = Field(50, ge=1, le=200, description="Page size (max 200).")
    cursor: str | None = Field(None, description="Opaque cursor from the Link rel=next header.")


def _encode_cursor(comparison: Comparison) -> str:
    raw = f"{comparison.created_at.isoformat()}|{comparison.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class InvalidCursor(ValueError):
    pass


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """``(created_at in UTC, id)`` of a cursor :func:`_encode_cursor` made; else InvalidCursor.

    Anything else is refused here rather than in the database: NUL (PostgreSQL text cannot hold
    it), naive or unconvertible dates (years 1 and 9999 overflow when moved to UTC), long ids.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, comparison_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("naive date")
        created_at = created_at.astimezone(UTC)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise InvalidCursor from exc
    if "\x00" in raw or not 0 < len(comparison_id) <= Comparison.ID_MAX_LENGTH:
        raise InvalidCursor
    return created_at, comparison_id


@router.get(
    "/sessions",
    response={200: list[SessionOut], 422: InvalidOut},
    by_alias=True,
    summary="List my comparisons",
)
async def list_sessions(
    request: HttpRequest, response: HttpResponse, params: Query[ListParams]
) -> list[Comparison] | Status:
    """The caller's comparisons, newest first; ``Link: <...>; rel="next"`` when more exist."""
    try:
        before = _decode_cursor(params.cursor) if params.cursor else None
    except InvalidCursor:
        return Status(422, {"statusCode": 422, "message": "Invalid cursor"})
    rows = await sync_to_async(selectors.comparison_list)(
        user_id=user_id(request), limit=params.limit, before=before
    )
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        query = request.GET.copy()
        query["limit"] = str(params.limit)
        query["cursor"] = _encode_cursor(rows[-1])
        response["Link"] = (
            f'<{request.build_absolute_uri(request.path)}?{query.urlencode()}>; rel="next"'
        )
    return rows


@router.get(
    "/sessions/{session_id}",
    response={200: SessionOut, 404: NotFoundOut},
    by_alias=True,
    summary="One of my comparisons",
)
async def get_session(request: HttpRequest, session_id: str) -> Comparison | Status:
    """One comparison; 404 when it does not exist or belongs to someone else."""
    comparison = await sync_to_async(selectors.comparison_get)(
        user_id=user_id(request), comparison_id=session_id
    )
    if comparison is None:
        return Status(404, {"statusCode": 404, "message": f"Session {session_id} not found"})
    return comparison

"""``GET /me``: who the token says the caller is."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema

from accounts.http import principal

router = Router(tags=["accounts"])


class MeOut(Schema):
    userId: str
    sessionId: str
    orgId: str | None = None


@router.get("/me", response=MeOut, summary="The signed-in user")
async def me(request: HttpRequest) -> MeOut:
    """The Clerk user and session of the request's token."""
    who = principal(request)
    return MeOut(userId=who.user_id, sessionId=who.session_id, orgId=who.org_id)

"""Arena REST endpoints: votes, reveal, flags, tags, share links, export, leaderboard.

Thin: each view validates its input with a schema, makes one service/selector call and shapes
the answer. Refusals are :class:`~arena.errors.ArenaError`s, answered by the API's handler.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema, Status
from pydantic import AfterValidator, Field, StrictBool, StrictStr

from accounts.http import user_id
from arena import exports, selectors, services
from arena.errors import NotFound
from comparisons.live.core import run_reveal_announce
from comparisons.schemas import NotFoundOut, SessionOut

router = Router(tags=["arena"])
public = Router(tags=["arena"], auth=None)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (U+0000)")
    return value


Text = Annotated[StrictStr, AfterValidator(_no_nul)]


class ErrorOut(Schema):
    statusCode: int
    message: str


class VoteIn(Schema):
    winner: Annotated[Text, Field(min_length=1, max_length=255)] = Field(
        ..., description="A slot key (A, B, … in a blind comparison), 'tie' or 'bothBad'."
    )
    reveal: StrictBool = Field(False, description="Also reveal the models, after voting.")


class VoteOut(Schema):
    turn: int
    winner: str
    counted: bool = Field(..., description="Counts in ratings: cast blind, not void.")
    void: bool = Field(..., description="An answer of this turn was flagged as naming its model.")
    models: dict[str, str] | None = Field(
        ..., description="{key: 'provider:model'}; null while the models are hidden."
    )
    createdAt: datetime
    updatedAt: datetime


class FlagOut(Schema):
    turn: int
    key: str


class ShareStateOut(Schema):
    createdAt: datetime


class ArenaOut(Schema):
    sessionId: str
    blind: bool
    revealed: bool
    revealedAt: datetime | None
    turns: int
    votes: list[VoteOut]
    flags: list[FlagOut]
    tags: list[str]
    share: ShareStateOut | None


class TagsIn(Schema):
    tags: list[Annotated[Text, Field(max_length=200)]] = Field(..., max_length=50)


class TagsOut(Schema):
    tags: list[str]


class ShareOut(Schema):
    token: str = Field(..., description="Shown once; only its hash is stored.")
    url: str
    createdAt: datetime


class ExportParams(Schema):
    format: Literal["json", "md", "csv"] = "json"


class LeaderboardParams(Schema):
    scope: Literal["me", "all"] = Field("me", description="'me': my votes; 'all': everyone's.")
    since: datetime | None = Field(
        None,
        description="Only votes cast on or after this UTC day: an ISO 8601 date, or a date-time "
        "(naive = UTC) rounded down to the start of its UTC day.",
    )
    tag: Annotated[Text, Field(max_length=200)] | None = Field(None, description="Prompt tag.")


class RatingOut(Schema):
    rank: int
    model: str
    provider: str
    rating: float = Field(..., description="Bradley-Terry, Elo-like scale (1000 = average).")
    lower: float = Field(..., description="Bootstrap 95 % interval, lower end.")
    upper: float = Field(..., description="Bootstrap 95 % interval, upper end.")
    battles: int
    wins: int
    losses: int
    ties: int
    winRate: float = Field(..., description="wins / battles (ties are not wins).")


class LeaderboardOut(Schema):
    scope: str
    tag: str | None
    since: str | None
    votes: int
    battles: int
    computedAt: str
    models: list[RatingOut]


Refusals: dict[int, Any] = {404: NotFoundOut, 409: ErrorOut, 422: ErrorOut}


def _vote(vote: Any, hidden: bool) -> dict[str, Any]:
    return exports.vote_out(vote, hidden=hidden)


@router.get(
    "/sessions/{session_id}/arena",
    response={200: ArenaOut, 404: NotFoundOut},
    summary="Blind/reveal state, my votes, flags, tags and share of a comparison",
)
async def arena_state(request: HttpRequest, session_id: str) -> dict[str, Any]:
    state = await sync_to_async(selectors.arena_state_get)(
        user_id=user_id(request), comparison_id=session_id
    )
    comparison = state.comparison
    hidden = comparison.identity_hidden
    return {
        "sessionId": comparison.id,
        "blind": comparison.blind,
        "revealed": not hidden,
        "revealedAt": comparison.revealed_at,
        "turns": selectors.comparison_turn_count(comparison=comparison),
        "votes": [_vote(v, hidden) for v in state.votes],
        "flags": [{"turn": f.turn, "key": f.key} for f in state.flags],
        "tags": state.tags,
        "share": {"createdAt": state.share.created_at} if state.share else None,
    }


@router.put(
    "/sessions/{session_id}/votes/{turn}",
    response={200: VoteOut, **Refusals},
    summary="Vote on a turn (or change my vote)",
)
async def vote_put(request: HttpRequest, session_id: str, turn: int, body: VoteIn) -> Any:
    """One vote per user and turn: a slot key, ``tie`` or ``bothBad``. A blind vote can change
    until the reveal (409 after)."""
    vote = await sync_to_async(services.vote_cast)(
        user_id=user_id(request),
        comparison_id=session_id,
        turn=turn,
        winner=body.winner,
        reveal=body.reveal,
    )
    if body.reveal:
        await run_reveal_announce(comparison_id=session_id, user_id=user_id(request))
    return _vote(vote, hidden=vote.comparison.identity_hidden)


@router.delete(
    "/sessions/{session_id}/votes/{turn}",
    response={204: None, **Refusals},
    summary="Undo my vote on a turn",
)
async def vote_delete(request: HttpRequest, session_id: str, turn: int) -> Status:
    await sync_to_async(services.vote_retract)(
        user_id=user_id(request), comparison_id=session_id, turn=turn
    )
    return Status(204, None)


@router.post(
    "/sessions/{session_id}/reveal",
    response={200: SessionOut, 404: NotFoundOut},
    by_alias=True,
    summary="Reveal a blind comparison's models",
)
async def reveal(request: HttpRequest, session_id: str) -> Any:
    await sync_to_async(services.comparison_reveal)(
        user_id=user_id(request), comparison_id=session_id
    )
    await run_reveal_announce(comparison_id=session_id, user_id=user_id(request))
    return await sync_to_async(selectors.comparison_owned)(
        user_id=user_id(request), comparison_id=session_id
    )


@router.put(
    "/sessions/{session_id}/flags/{turn}/{key}",
    response={200: FlagOut, **Refusals},
    summary="Flag an answer that names its own model (that turn's vote stops counting)",
)
async def flag_put(request: HttpRequest, session_id: str, turn: int, key: str) -> Any:
    flag = await sync_to_async(services.flag_set)(
        user_id=user_id(request), comparison_id=session_id, turn=turn, key=key
    )
    return {"turn": flag.turn, "key": flag.key}


@router.delete(
    "/sessions/{session_id}/flags/{turn}/{key}",
    response={204: None, **Refusals},
    summary="Withdraw a flag",
)
async def flag_delete(request: HttpRequest, session_id: str, turn: int, key: str) -> Status:
    await sync_to_async(services.flag_clear)(
        user_id=user_id(request), comparison_id=session_id, turn=turn, key=key
    )
    return Status(204, None)


@router.put(
    "/sessions/{session_id}/tags",
    response={200: TagsOut, **Refusals},
    summary="Set a comparison's tags (topics for the leaderboard)",
)
async def tags_put(request: HttpRequest, session_id: str, body: TagsIn) -> dict[str, Any]:
    tags = await sync_to_async(services.tags_set)(
        user_id=user_id(request), comparison_id=session_id, tags=body.tags
    )
    return {"tags": tags}


@router.post(
    "/sessions/{session_id}/share",
    response={201: ShareOut, 404: NotFoundOut},
    summary="Create a read-only share link (replaces the previous one)",
)
async def share_post(request: HttpRequest, response: HttpResponse, session_id: str) -> Status:
    share, token = await sync_to_async(services.share_create)(
        user_id=user_id(request), comparison_id=session_id
    )
    response["Cache-Control"] = "no-store"
    url = request.build_absolute_uri(f"/shared/{token}")
    return Status(201, {"token": token, "url": url, "createdAt": share.created_at})


@router.delete(
    "/sessions/{session_id}/share",
    response={204: None, 404: NotFoundOut},
    summary="Revoke the comparison's share link",
)
async def share_delete(request: HttpRequest, session_id: str) -> Status:
    await sync_to_async(services.share_revoke)(user_id=user_id(request), comparison_id=session_id)
    return Status(204, None)


def _export_document(user: str, comparison_id: str) -> dict[str, Any]:
    comparison = selectors.comparison_owned(user_id=user, comparison_id=comparison_id)
    votes = selectors.comparison_votes(comparison=comparison)
    return exports.comparison_document(comparison=comparison, votes=votes)


@router.get(
    "/sessions/{session_id}/export",
    response={200: None, 404: NotFoundOut},
    summary="Download a comparison as JSON, Markdown or CSV",
)
async def export(
    request: HttpRequest, session_id: str, params: Query[ExportParams]
) -> HttpResponse:
    document = await sync_to_async(_export_document)(user_id(request), session_id)
    body = exports.comparison_export(document=document, format=params.format)
    response = HttpResponse(body, content_type=exports.FORMATS[params.format])
    response["Content-Disposition"] = (
        f'attachment; filename="comparison-{document["id"]}.{params.format}"'
    )
    return response


@router.get(
    "/leaderboard",
    response={200: LeaderboardOut, 422: ErrorOut},
    summary="Bradley-Terry ratings with 95 % intervals from blind votes",
)
async def leaderboard(request: HttpRequest, params: Query[LeaderboardParams]) -> Any:
    tag = services.tag_normalise(name=params.tag) if params.tag is not None else ""
    return await sync_to_async(services.leaderboard_current)(
        user_id=user_id(request) if params.scope == "me" else None, tag=tag, since=params.since
    )


def _shared_document(token: str) -> dict[str, Any]:
    comparison = selectors.shared_comparison_get(token=token)
    if comparison is None:
        raise NotFound("This link does not exist or was revoked")
    votes = selectors.comparison_votes(comparison=comparison)
    return exports.comparison_document(comparison=comparison, votes=votes, owner=False)


@public.get(
    "/shared/{token}",
    response={200: None, 404: NotFoundOut},
    summary="A shared comparison (read-only, no sign-in)",
)
async def shared(request: HttpRequest, token: str) -> HttpResponse:
    """The comparison behind an active share link, as JSON without its owner's id; models
    hidden while a blind comparison is unrevealed. 404 once the link is revoked."""
    document = await sync_to_async(_shared_document)(token)
    response = HttpResponse(
        exports.comparison_export(document=document, format="json"),
        content_type="application/json",
    )
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex"
    return response

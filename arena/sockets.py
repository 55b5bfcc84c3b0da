"""The arena's socket events (``vote``, ``unvote``, ``reveal``, ``flag``, ``unflag``,
``setTags``): thin calls of the arena services, answered with one event each. Both transports
(``/ws``, Socket.IO) use these; refusals raise :class:`~arena.errors.ArenaError` (or
``ValueError`` for a malformed frame), which they send as ``error`` with its message (another
user's comparison is "not found", as over REST)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async

from arena import services
from comparisons import events
from comparisons.frames import FlagRef, SessionRef, TagsReplace, VoteCast, VoteRetract, parse
from comparisons.live.core import Connection, LiveError


async def vote_record(*, user_id: str, frame: VoteCast) -> events.Frame:
    vote = await database_sync_to_async(services.vote_cast)(
        user_id=user_id, comparison_id=frame.sessionId, winner=frame.winner, turn=frame.turn
    )
    return events.vote_recorded(session_id=frame.sessionId, turn=vote.turn, winner=vote.winner)


async def vote_stop_rest(*, connection: Connection, frame: VoteCast) -> None:
    """``vote {…, stop: true}``: stop the models still streaming, in whichever process (their
    ``modelStatus`` ``cancelled`` follows). Nothing to stop is not an error: the vote stands."""
    with contextlib.suppress(LiveError):
        await connection.cancel(frame.sessionId)


async def vote_undo(*, user_id: str, frame: VoteRetract) -> events.Frame:
    await database_sync_to_async(services.vote_retract)(
        user_id=user_id, comparison_id=frame.sessionId, turn=frame.turn
    )
    return events.vote_retracted(session_id=frame.sessionId, turn=frame.turn)


async def comparison_reveal(*, user_id: str, frame: SessionRef) -> events.Frame:
    comparison = await database_sync_to_async(services.comparison_reveal)(
        user_id=user_id, comparison_id=frame.sessionId
    )
    models = [
        {"key": row.key, "provider": row.provider, "modelName": row.model_name}
        for row in comparison.responses.all()
    ]
    return events.revealed(session_id=comparison.id, models=models)


async def _flag(user_id: str, data: Any) -> events.Frame:
    frame = parse(FlagRef, "flag", data)
    await database_sync_to_async(services.flag_set)(
        user_id=user_id, comparison_id=frame.sessionId, key=frame.key, turn=frame.turn
    )
    return events.flagged(session_id=frame.sessionId, turn=frame.turn, key=frame.key)


async def _unflag(user_id: str, data: Any) -> events.Frame:
    frame = parse(FlagRef, "unflag", data)
    await database_sync_to_async(services.flag_clear)(
        user_id=user_id, comparison_id=frame.sessionId, key=frame.key, turn=frame.turn
    )
    return events.unflagged(session_id=frame.sessionId, turn=frame.turn, key=frame.key)


async def _tags(user_id: str, data: Any) -> events.Frame:
    frame = parse(TagsReplace, "setTags", data)
    tags = await database_sync_to_async(services.tags_set)(
        user_id=user_id, comparison_id=frame.sessionId, tags=frame.tags
    )
    return events.tags_set(session_id=frame.sessionId, tags=tags)


#: Arena events that need nothing of the socket but its user: event -> handler(user_id, data).
EVENTS: dict[str, Callable[[str, Any], Awaitable[events.Frame]]] = {
    "flag": _flag,
    "unflag": _unflag,
    "setTags": _tags,
}


async def arena_event(*, event: str, user_id: str, data: Any) -> events.Frame:
    """Validate and run one of :data:`EVENTS`; its answer. Raises ``ValueError`` (malformed
    frame) or :class:`~arena.errors.ArenaError` (refused)."""
    return await EVENTS[event](user_id, data)

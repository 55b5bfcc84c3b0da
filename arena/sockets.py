"""The arena's socket events (``vote``, ``unvote``, ``reveal``): thin calls of the arena
services, answered with one event each. Both transports (``/ws``, Socket.IO) use these; refusals
raise :class:`~arena.errors.ArenaError`, which they send as ``error`` with its message (another
user's comparison is "not found", as over REST)."""

from __future__ import annotations

from channels.db import database_sync_to_async

from arena import services
from comparisons import events
from comparisons.frames import SessionRef, VoteCast, VoteRetract


async def vote_record(*, user_id: str, frame: VoteCast) -> events.Frame:
    vote = await database_sync_to_async(services.vote_cast)(
        user_id=user_id, comparison_id=frame.sessionId, winner=frame.winner, turn=frame.turn
    )
    return events.vote_recorded(session_id=frame.sessionId, turn=vote.turn, winner=vote.winner)


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

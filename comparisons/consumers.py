"""The ``/ws`` consumer: a thin transport over the live core (:mod:`comparisons.live`).

It parses frames (:mod:`comparisons.frames`), calls the socket's
:class:`~comparisons.live.core.Connection` and sends; runs, watching and cancels live in the core.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from accounts.consumers import AuthenticatedJsonConsumer
from accounts.principal import Principal
from arena import sockets as arena_sockets
from arena.errors import ArenaError
from comparisons import events
from comparisons.events import Frame
from comparisons.frames import (
    ContinueFrom,
    ModelRef,
    SendFollowUp,
    SessionRef,
    StartComparison,
    VoteCast,
    VoteRetract,
    parse,
)
from comparisons.live.core import Connection, LiveComparisons, LiveError
from comparisons.live.subscribers import Subscriber
from playground.daphne_server import daphne_text_sender


class WsSubscriber(Subscriber):
    """A ``/ws`` socket as a subscriber: each frame is one text frame."""

    def __init__(self, consumer: ComparisonConsumer, name: str) -> None:
        self.name = name
        self._send = consumer.send
        # Under daphne, frames are written to the socket directly (per relayed chunk: no ASGI
        # message, no three coroutines); the ordinary send when it declines (socket not open).
        self._send_now = daphne_text_sender(consumer.base_send)

    async def send(self, frame: Frame) -> None:
        send_now = self._send_now
        if send_now is None or not send_now(frame.ws):
            await self._send(text_data=frame.ws)

    async def send_many(self, frames: Sequence[Frame]) -> None:
        for frame in frames:
            await self.send(frame)


class ComparisonConsumer(AuthenticatedJsonConsumer):
    """One browser tab (or CLI) connected to ``/ws``."""

    live_connection: Connection | None = None

    def __init__(self, *args: Any, live: LiveComparisons, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.live = live

    async def user_authenticated(self, principal: Principal, *, first: bool) -> None:
        if first:
            # No channel-layer channel yet: the connection makes one (with the task that
            # receives from it) when the socket first watches through the layer.
            self.live_connection = self.live.connect(
                user_id=principal.user_id,
                subscriber=WsSubscriber(self, f"ws:{secrets.token_hex(8)}"),
            )

    async def disconnect(self, code: int) -> None:
        if self.live_connection is not None:
            await self.live_connection.close()
        await super().disconnect(code)

    @property
    def connection(self) -> Connection:
        """Only read inside event handlers, which run authenticated."""
        assert self.live_connection is not None
        return self.live_connection

    # --- client events -----------------------------------------------------------------------
    async def on_startComparison(self, data: Any) -> None:
        request_id = data.get("requestId") if isinstance(data, dict) else None
        request_id = request_id if isinstance(request_id, str) else None
        try:
            await self.connection.start(parse(StartComparison, "startComparison", data))
        except LiveError as exc:
            await self.send_frame(
                events.error(
                    message=str(exc),
                    request_id=request_id,
                    reason=exc.reason,
                    retry_after=exc.retry_after,
                )
            )
        except ValueError as exc:
            await self.send_error(str(exc), request_id=request_id)

    async def on_cancelComparison(self, data: Any) -> None:
        try:
            frame = parse(SessionRef, "cancelComparison", data)
            await self.connection.cancel(frame.sessionId)
        except (ValueError, LiveError) as exc:
            await self.send_error(str(exc))

    async def on_cancelModel(self, data: Any) -> None:
        try:
            frame = parse(ModelRef, "cancelModel", data)
            await self.connection.cancel(frame.sessionId, frame.model)
        except (ValueError, LiveError) as exc:
            await self.send_error(str(exc))

    async def on_watchSession(self, data: Any) -> None:
        try:
            frame = parse(SessionRef, "watchSession", data)
            await self.connection.watch(frame.sessionId)
        except (ValueError, LiveError) as exc:
            await self.send_error(str(exc))

    async def on_sendFollowUp(self, data: Any) -> None:
        try:
            frame = parse(SendFollowUp, "sendFollowUp", data)
            await self.connection.follow_up(
                frame.sessionId, prompt=frame.prompt, mode="followUp", keys=frame.models
            )
        except LiveError as exc:
            await self.send_frame(events.error(message=str(exc), reason=exc.reason))
        except ValueError as exc:
            await self.send_error(str(exc))

    async def on_continueFrom(self, data: Any) -> None:
        try:
            frame = parse(ContinueFrom, "continueFrom", data)
            await self.connection.follow_up(
                frame.sessionId, prompt=frame.prompt, mode="continueFrom", source_key=frame.model
            )
        except LiveError as exc:
            await self.send_frame(events.error(message=str(exc), reason=exc.reason))
        except ValueError as exc:
            await self.send_error(str(exc))

    # --- arena events *(new)* -----------------------------------------------------------------
    async def on_vote(self, data: Any) -> None:
        try:
            frame = parse(VoteCast, "vote", data)
            answer = await arena_sockets.vote_record(user_id=self.connection.user_id, frame=frame)
        except (ValueError, ArenaError) as exc:
            await self.send_error(str(exc))
        else:
            await self.send(text_data=answer.ws)
            if frame.stop:
                await arena_sockets.vote_stop_rest(connection=self.connection, frame=frame)

    async def on_unvote(self, data: Any) -> None:
        try:
            frame = parse(VoteRetract, "unvote", data)
            answer = await arena_sockets.vote_undo(user_id=self.connection.user_id, frame=frame)
        except (ValueError, ArenaError) as exc:
            await self.send_error(str(exc))
        else:
            await self.send(text_data=answer.ws)

    async def on_reveal(self, data: Any) -> None:
        try:
            frame = parse(SessionRef, "reveal", data)
            user_id = self.connection.user_id
            answer = await arena_sockets.comparison_reveal(user_id=user_id, frame=frame)
        except (ValueError, ArenaError) as exc:
            await self.send_error(str(exc))
        else:
            await self.connection.revealed(frame.sessionId)
            await self.send(text_data=answer.ws)

    async def on_flag(self, data: Any) -> None:
        await self._arena("flag", data)

    async def on_unflag(self, data: Any) -> None:
        await self._arena("unflag", data)

    async def on_setTags(self, data: Any) -> None:
        await self._arena("setTags", data)

    async def _arena(self, event: str, data: Any) -> None:
        try:
            user_id = self.connection.user_id
            answer = await arena_sockets.arena_event(event=event, user_id=user_id, data=data)
        except (ValueError, ArenaError) as exc:
            await self.send_error(str(exc))
        else:
            await self.send(text_data=answer.ws)

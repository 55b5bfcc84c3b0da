"""The base WebSocket consumer: authentication and JSON event frames for ``/ws``.

Subclass :class:`AuthenticatedJsonConsumer` and implement one coroutine per client event, named
``on_<event>``::

    class ComparisonConsumer(AuthenticatedJsonConsumer):
        async def on_startComparison(self, data: Any) -> None:
            ...  # self.user_id is the signed-in Clerk user here, never None
            await self.send_event("sessionCreated", {...})

Protocol (docs/protocol.md): every frame is ``{"event": "<name>", "data": ...}``. The socket is
accepted, then authenticated by the handshake token (``ClerkAuthMiddleware`` put
``scope["principal"]``/``scope["auth_error"]``) or by an ``authenticate`` frame
``{"token": "<jwt>"}`` within ``WS_AUTH_TIMEOUT_SECONDS``. Success sends ``authenticated``
``{"userId"}``; a bad token, a token for another user or no token in time sends ``error``
``{"message", "reason"}`` and closes with 4401. Before authentication every other event gets
``error`` "Not authenticated: send authenticate first". Afterwards ``on_<event>(data)`` runs;
unknown events, invalid JSON and frames that are not ``{"event": str, ...}`` get an ``error`` event
and the socket stays open.

The socket lives no longer than its token: at the token's ``exp`` plus ``CLERK_CLOCK_SKEW_SECONDS``
(the leeway REST gives the same token) it gets ``error`` ``token-expired`` and is closed with 4401,
unless an ``authenticate`` refresh with a fresh token arrived first; an event that arrives after
that instant is refused the same way rather than run.

Open sockets are capped by the :class:`~accounts.limits.ConnectionLimiter` passed in
(``as_asgi(connection_limiter=...)``): over a limit the socket gets ``error``
``{message, reason: "too-many-connections"}`` and is closed with 4429.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts.limits import (
    CLOSE_TOO_MANY_CONNECTIONS,
    ConnectionLease,
    ConnectionLimiter,
    TooManyConnections,
)
from accounts.principal import TOKEN_EXPIRED, TOKEN_MISSING, Principal, TokenError
from accounts.verification import token_verify
from comparisons import events

logger = logging.getLogger(__name__)

#: Close code for a frame over ``WS_MAX_FRAME_BYTES``.
CLOSE_MESSAGE_TOO_BIG = 1009
#: Close code for authentication failures.
CLOSE_UNAUTHORIZED = 4401
NOT_AUTHENTICATED = "Not authenticated: send authenticate first"
AUTH_TIMED_OUT = "Authentication timed out"
TOKEN_LAPSED = "The token has expired: send authenticate with a fresh token before it does"

Handler = Callable[[Any], Awaitable[None]]


class AuthenticatedJsonConsumer(AsyncWebsocketConsumer):
    """Authenticates the socket and dispatches JSON event frames to ``on_<event>`` methods.

    For subclasses:

    - ``self.user_id`` (``str | None``) and ``self.principal`` (``Principal | None``): the signed-in
      user; always set when an ``on_<event>`` handler runs.
    - ``async def on_<event>(self, data: Any) -> None``: one per client event; ``data`` is the
      frame's ``data`` as sent (any JSON value, ``None`` when absent): validate it.
      ``event_handlers = {"event": "method_name"}`` maps names that are not Python identifiers.
    - ``await self.send_event(event, data)``: send one frame; ``await self.send_error(message,
      request_id=None)``: send an ``error`` frame (the socket stays open).
    - ``async def user_authenticated(self, principal, *, first)``: hook after each successful
      authentication (``first`` is False for a token refresh).
    - Overriding ``connect``/``disconnect``: call ``super()``. ``connect`` accepts the socket.
    - ``connection_limiter`` (an ``as_asgi`` keyword): the process's shared counts; ``None``
      counts nothing.
    """

    #: Extra event name -> method name routes (besides ``on_<event>``).
    event_handlers: ClassVar[dict[str, str]] = {}
    #: Seconds to wait for authentication; ``None`` means ``settings.WS_AUTH_TIMEOUT_SECONDS``.
    auth_timeout_seconds: ClassVar[float | None] = None

    user_id: str | None = None
    principal: Principal | None = None
    # Timer handles, not tasks: an idle socket waits for its token's expiry, and a task with its
    # coroutine frames costs several KiB per socket where a handle costs ~0.2 KiB.
    _auth_timer: asyncio.TimerHandle | None = None
    _expiry_timer: asyncio.TimerHandle | None = None
    #: Unix time after which the socket's token no longer counts (its ``exp`` plus the skew).
    _valid_until: float | None = None
    _closing: bool = False
    _lease: ConnectionLease | None = None
    _refusal: asyncio.Task[None] | None = None

    def __init__(
        self, *args: Any, connection_limiter: ConnectionLimiter | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.connection_limiter = connection_limiter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Channels' own __call__ gives every socket a channel-layer channel, a task receiving
        # from it and another receiving from the server, whether the socket ever uses the layer
        # or not (several KiB per idle socket): this consumer has no channel of its own and
        # dispatches the server's messages in its own task. (A subclass that needs the layer
        # makes a channel when it first does, as comparisons.live's Connection.)
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:  # also when the task is cancelled (server shutdown) without a disconnect
            self._release()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # By message type, as Channels' own, without its hop to the database thread before each
        # message (to close stale connections): every frame, a start's included, waited for
        # that thread and whatever it was doing. Queries here go through
        # ``database_sync_to_async``, which closes stale connections around each call itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    @property
    def owner(self) -> str:
        """The signed-in user id; only valid inside event handlers (which run authenticated)."""
        if self.user_id is None:
            raise RuntimeError("owner read before authentication")
        return self.user_id

    # --- connection lifecycle ------------------------------------------------------------------
    async def connect(self) -> None:
        """Accept, then authenticate from the handshake or start the authentication timer."""
        self.user_id = None
        self.principal = None
        self._closing = False
        await self.accept()
        if self.connection_limiter is not None:
            client = self.scope.get("client") or ("unknown", 0)
            try:
                self._lease = self.connection_limiter.open(client=str(client[0]))
            except TooManyConnections as exc:
                await self._refuse_over_limit(exc)
                return
        principal: Principal | None = self.scope.get("principal")
        error: TokenError | None = self.scope.get("auth_error")
        if principal is not None:
            await self._authenticated(principal)
        elif error is not None:
            await self.auth_refuse(error)
        else:
            timeout = self.auth_timeout_seconds
            if timeout is None:
                timeout = float(settings.WS_AUTH_TIMEOUT_SECONDS)
            self._auth_timer = asyncio.get_running_loop().call_later(timeout, self._auth_expire)

    async def disconnect(self, code: int) -> None:
        self._cancel_timer()

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        self._cancel_timer()  # even if a subclass's disconnect() forgets super()
        self._release()
        await super().websocket_disconnect(message)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self._release()  # a socket the server closes no longer counts, whenever the peer notices
        await super().close(code, reason)

    def _release(self) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    async def _refuse_over_limit(self, error: TooManyConnections) -> None:
        self._closing = True
        self._cancel_timer()
        await self.send_frame(events.error(message=str(error), reason=error.code))
        await self.close(code=CLOSE_TOO_MANY_CONNECTIONS)

    def _cancel_timer(self) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self._cancel_expiry_timer()

    def _cancel_expiry_timer(self) -> None:
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None

    def _auth_expire(self) -> None:
        self._auth_timer = None
        if self.user_id is None:
            self._refuse_later(TokenError("auth-timeout", AUTH_TIMED_OUT))

    def _token_lapsed(self) -> bool:
        return self._valid_until is not None and time.time() >= self._valid_until

    def _token_expire(self) -> None:
        # A refresh cancels this handle and arms another with the new token's deadline.
        self._expiry_timer = None
        self._refuse_later(TokenError(TOKEN_EXPIRED, TOKEN_LAPSED))

    def _refuse_later(self, error: TokenError) -> None:
        """From a timer: refuse in a task of its own (sending needs one); it ends with the socket."""
        task = asyncio.get_running_loop().create_task(self.auth_refuse(error))
        self._refusal = task  # held: the loop keeps only a weak reference to a task

    # --- sending -------------------------------------------------------------------------------
    async def send_frame(self, frame: events.Frame) -> None:
        """Send one event (built by :mod:`comparisons.events`)."""
        await self.send(text_data=frame.ws)

    async def send_event(self, event: str, data: dict[str, Any]) -> None:
        """Send one ``{"event", "data"}`` frame (JSON-encoded once)."""
        await self.send_frame(events.encode(event, data))

    async def send_error(self, message: str, *, request_id: str | None = None) -> None:
        """Send an ``error`` event ``{message, requestId?}``; the socket stays open."""
        await self.send_frame(events.error(message=message, request_id=request_id))

    async def auth_refuse(self, error: TokenError) -> None:
        """Send ``error`` ``{message, reason}`` and close with 4401."""
        if self._closing:
            return
        self._closing = True
        self._cancel_timer()
        await self.send_frame(events.error(message=error.message, reason=error.code))
        await self.close(code=CLOSE_UNAUTHORIZED)

    # --- receiving -----------------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._closing:
            return
        if text_data is None:
            await self.send_error("Frames must be JSON text, not binary")
            return
        limit = settings.WS_MAX_FRAME_BYTES
        if len(text_data) * 4 > limit and len(text_data.encode()) > limit:
            # `manage.py serve` (daphne) enforces this before the frame arrives; this guard
            # covers other ASGI servers and the test communicator.
            self._closing = True
            await self.close(code=CLOSE_MESSAGE_TOO_BIG)
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self.send_error("Frame is not valid JSON")
            return
        except RecursionError:
            await self.send_error("Frame is not valid JSON: nested too deeply")
            return
        event = frame.get("event") if isinstance(frame, dict) else None
        if not isinstance(event, str):
            await self.send_error('Frame must be a JSON object with a string "event"')
            return
        data = frame.get("data")
        if event == "authenticate":
            await self._on_authenticate(data)
            return
        if self.user_id is None:
            await self.send_error(NOT_AUTHENTICATED)
            return
        if self._token_lapsed():  # the expiry timer may lag behind on a busy loop
            await self.auth_refuse(TokenError(TOKEN_EXPIRED, TOKEN_LAPSED))
            return
        handler = self._handler(event)
        if handler is None:
            await self.send_error(f"Unknown event: {event[:64]}")
            return
        await handler(data)

    def _handler(self, event: str) -> Handler | None:
        name = self.event_handlers.get(event)
        if name is None:
            if not event.isidentifier():
                return None
            name = f"on_{event}"
        handler = getattr(self, name, None)
        return handler if callable(handler) else None

    # --- authentication ------------------------------------------------------------------------
    async def _on_authenticate(self, data: Any) -> None:
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            await self.auth_refuse(TokenError(TOKEN_MISSING, "authenticate needs data.token"))
            return
        try:
            principal = await token_verify(token=token)
        except TokenError as exc:
            logger.info("WebSocket authenticate refused: %s", exc.code)
            await self.auth_refuse(exc)
            return
        if self.user_id is not None and principal.user_id != self.user_id:
            await self.auth_refuse(
                TokenError("token-user-mismatch", "The token belongs to a different user")
            )
            return
        await self._authenticated(principal)

    async def _authenticated(self, principal: Principal) -> None:
        first = self.user_id is None
        if first and self._lease is not None:
            try:
                self._lease.authenticate(principal.user_id)
            except TooManyConnections as exc:
                await self._refuse_over_limit(exc)
                return
        self._cancel_timer()
        self.principal = principal
        self.user_id = principal.user_id
        self._track_expiry(principal)
        await self.send_frame(events.authenticated(user_id=principal.user_id))
        await self.user_authenticated(principal, first=first)

    def _track_expiry(self, principal: Principal) -> None:
        """(Re)arm the timer that closes the socket when this token lapses."""
        self._cancel_expiry_timer()
        exp = principal.claims.get("exp")
        if type(exp) is not int:  # the verifier guarantees it; be safe with hand-made principals
            self._valid_until = None
            return
        self._valid_until = valid_until = exp + float(settings.CLERK_CLOCK_SKEW_SECONDS)
        delay = max(0.0, valid_until - time.time())  # the deadline is wall-clock (the token's)
        self._expiry_timer = asyncio.get_running_loop().call_later(delay, self._token_expire)

    async def user_authenticated(self, principal: Principal, *, first: bool) -> None:
        """Hook: runs after each successful authentication (``first``: not a refresh)."""


__all__ = [
    "AUTH_TIMED_OUT",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_TOO_MANY_CONNECTIONS",
    "CLOSE_UNAUTHORIZED",
    "NOT_AUTHENTICATED",
    "AuthenticatedJsonConsumer",
]

"""Socket.IO at ``/socket.io/``: the seed's own frontend (socket.io-client v4) connects unchanged.

A thin transport over the live core, beside ``/ws`` on the same ASGI application: python-socketio
(``AsyncServer(async_mode="asgi")``) speaks Socket.IO 5 / Engine.IO 4 on every transport
(long-polling then upgrade, WebSocket only, polling only). A Socket.IO event name is our
``event``, its single argument our ``data`` (docs/protocol.md, "Socket.IO").

- Authentication happens at the handshake: ``auth.token`` (the seed's way), else the
  ``Authorization`` header, else the ``__session`` cookie. Without a valid one the client gets
  ``connect_error`` with ``err.message`` and ``err.data = {code}`` (REST's 401 reason codes).
  An ``authenticate`` event refreshes the token for the same user; when the token lapses the
  socket gets ``error`` ``token-expired`` and is disconnected, as on ``/ws``.
- Open sockets count against the process's one :class:`~accounts.limits.ConnectionLimiter`.
- Outbound events skip ``sio.emit`` (one task per recipient): each is encoded once
  (:attr:`comparisons.events.Frame.sio`, tested equal to python-socketio's own encoding) and
  queued on the client's Engine.IO socket with the public ``AsyncServer.eio.send``.
- Cross-process watching and cancelling go through the Channels layer (the live core), not
  python-socketio's Redis manager, which would publish every emit.
- A long-polling answer carries at most :data:`MAX_PACKETS_PER_POLL` packets
  (:class:`BoundedPollSocket`): python-engineio's client refuses a bigger payload and drops the
  connection, which a client polling behind a comparison's chunks (a slow machine) would get.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import engineio.async_socket
import engineio.exceptions
import socketio
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from accounts.extract import token_from_scope
from accounts.limits import ConnectionLease, ConnectionLimiter, TooManyConnections
from accounts.principal import TOKEN_EXPIRED, TOKEN_MISSING, Principal, TokenError
from accounts.verification import token_verify
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

logger = logging.getLogger(__name__)

SOCKETIO_PATH = "socket.io"
#: The event an undecodable packet becomes (see :class:`InboundJson`); clients cannot name it.
INVALID_JSON_EVENT = "\x00invalid-json"
TOKEN_LAPSED = "The token has expired: send authenticate with a fresh token before it does"
TOO_SLOW = "Client too slow: too much unread data"
#: Packets per long-polling answer: python-engineio's client (``Payload.max_decode_packets``)
#: refuses a payload of more ("Unexpected packet from server") and disconnects.
MAX_PACKETS_PER_POLL = 16


class InboundJson:
    """JSON for inbound Socket.IO packets: the standard module, except that a packet whose JSON
    cannot be decoded becomes the event :data:`INVALID_JSON_EVENT`, which is answered with a
    named ``error`` (as ``/ws`` answers it) instead of an exception engineio logs and drops."""

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(text: Any, **kwargs: Any) -> Any:
        try:
            return json.loads(text, **kwargs)
        except RecursionError:
            return [INVALID_JSON_EVENT, "Frame is not valid JSON: nested too deeply"]
        except ValueError:
            return [INVALID_JSON_EVENT, "Frame is not valid JSON"]


class InboundPacket(socketio.packet.Packet):
    """Socket.IO packets decoded with :class:`InboundJson` (Engine.IO's own packets keep the
    standard module: it relies on ``ValueError`` to tell JSON from text)."""

    json = InboundJson


class BoundedPollSocket(engineio.async_socket.AsyncSocket):
    """An Engine.IO socket whose ``poll`` takes at most :data:`MAX_PACKETS_PER_POLL` packets;
    the rest stay queued for the client's next request, which it sends at once. (Engine.IO's
    own ``poll`` takes the whole queue: a polling client that fell behind by more than 16
    events got them in one payload, refused it and was disconnected, its comparison's end
    marker never delivered.) The WebSocket writer polls too: there it only means one more
    turn of its loop per 16 packets."""

    async def poll(self) -> list[Any]:
        queue = self.queue
        timeout = self.server.ping_interval + self.server.ping_timeout
        try:
            packets = [await asyncio.wait_for(queue.get(), timeout)]
            queue.task_done()
        except (TimeoutError, asyncio.CancelledError):  # as Engine.IO's own poll
            raise engineio.exceptions.QueueEmpty() from None
        if packets == [None]:
            return []
        while len(packets) < MAX_PACKETS_PER_POLL:
            try:
                packet = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            queue.task_done()
            if packet is None:  # closing: the marker stays for the next poll, as Engine.IO's
                queue.put_nowait(None)
                break
            packets.append(packet)
        return packets


class SioSubscriber(Subscriber):
    """A Socket.IO client as a subscriber: each frame is queued on its Engine.IO socket as one
    MESSAGE whose text is the pre-encoded Socket.IO EVENT packet (no task per send).

    Engine.IO's queue has no bound: a polling client that stops polling would grow it with
    every frame. Characters queued since the queue was last empty are counted; once more than
    ``limit`` were already waiting, ``on_overflow`` runs (once) and later frames are dropped.
    Over WebSocket the queue empties as fast as it fills (the server's own bound applies there).
    """

    def __init__(
        self,
        eio: Any,
        eio_sid: str,
        name: str,
        *,
        limit: int = 0,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._eio = eio
        self._eio_send = eio.send
        self._eio_sid = eio_sid
        self._limit = limit
        self._on_overflow = on_overflow
        self._queue: Any = None
        self._queued = 0
        self.overflowed = False

    def _over(self, size: int) -> bool:
        if self.overflowed:
            return True
        queue = self._queue
        if queue is None:
            eio_socket = self._eio.sockets.get(self._eio_sid)
            queue = self._queue = getattr(eio_socket, "queue", None)
        if queue is None or queue.empty():
            self._queued = size
            return False
        if self._queued > self._limit:
            self.overflowed = True
            if self._on_overflow is not None:
                self._on_overflow()
            return True
        self._queued += size
        return False

    async def send(self, frame: Frame) -> None:
        text = frame.sio
        if self._limit and self._over(len(text)):
            return
        await self._eio_send(self._eio_sid, text)

    async def send_many(self, frames: Sequence[Frame]) -> None:
        for frame in frames:
            await self.send(frame)


class SioSocket:
    """One connected Socket.IO client."""

    def __init__(
        self,
        *,
        sid: str,
        client: str,
        principal: Principal,
        subscriber: SioSubscriber,
        connection: Connection,
        lease: ConnectionLease | None,
    ) -> None:
        self.sid = sid
        self.client = client
        self.principal = principal
        self.subscriber = subscriber
        self.connection = connection
        self.lease = lease
        self.valid_until: float | None = None
        self.expiry: asyncio.Task[None] | None = None
        self.greeting: asyncio.Task[None] | None = None
        self.closing = False


class SocketIOTransport:
    """The Socket.IO handlers of one server process (built by :func:`socketio_application`)."""

    def __init__(self, *, live: LiveComparisons, connection_limiter: ConnectionLimiter) -> None:
        self.live = live
        self.limiter = connection_limiter
        origins: Any = settings.CORS_ORIGIN
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            # Browsers' origins, as for /ws and REST ("/socket.io/" never reaches Django's
            # middleware); requests without an Origin header (not a browser) are let through.
            cors_allowed_origins="*" if "*" in origins else list(origins),
            # Per-socket order, as on /ws: a cancel is never handled before the start it follows.
            async_handlers=False,
            max_http_buffer_size=int(settings.WS_MAX_FRAME_BYTES),
            logger=False,
            engineio_logger=False,
            serializer=InboundPacket,
        )
        self.sockets: dict[str, SioSocket] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("*", self.on_event)

    # --- connection ----------------------------------------------------------------------------
    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        scope = environ.get("asgi.scope") or {}
        client = str((scope.get("client") or ("unknown", 0))[0])  # engineio says 127.0.0.1
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            token = token_from_scope(scope)
        lease: ConnectionLease | None = None
        try:
            lease = self.limiter.open(client=client)
            if not token:
                raise TokenError(TOKEN_MISSING, "A session token is required")
            principal = await token_verify(token=token)
            lease.authenticate(principal.user_id)
        except (TokenError, TooManyConnections) as exc:
            if lease is not None:
                lease.release()
            code = exc.code
            logger.info("Socket.IO connection from %s refused: %s", client, code)
            raise socketio.exceptions.ConnectionRefusedError(str(exc), {"code": code}) from None
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        eio_socket = self.sio.eio.sockets.get(eio_sid)
        if type(eio_socket) is engineio.async_socket.AsyncSocket:
            # Engine.IO makes its sockets itself: the class adds behaviour, no state.
            eio_socket.__class__ = BoundedPollSocket
        subscriber = SioSubscriber(
            self.sio.eio,
            eio_sid,
            f"sio:{sid}",
            limit=int(settings.WS_MAX_OUTBOUND_BUFFER_BYTES),
            on_overflow=lambda: self._too_slow(sid),
        )
        socket = SioSocket(
            sid=sid,
            client=client,
            principal=principal,
            subscriber=subscriber,
            connection=self.live.connect(user_id=principal.user_id, subscriber=subscriber),
            lease=lease,
        )
        self.sockets[sid] = socket
        self._track_expiry(socket, principal)
        logger.info("Socket.IO connection from %s for %s", client, principal.user_id)
        # As on /ws; this task runs after python-socketio queued the CONNECT packet (it does so
        # as soon as this handler returns, without yielding to the loop).
        socket.greeting = asyncio.create_task(
            self._send(socket, events.authenticated(user_id=principal.user_id))
        )

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        socket = self.sockets.pop(sid, None)
        if socket is None:
            return
        socket.closing = True
        if socket.expiry is not None:
            socket.expiry.cancel()
        if socket.lease is not None:
            socket.lease.release()
        await socket.connection.close()

    # --- events --------------------------------------------------------------------------------
    async def on_event(self, event: str, sid: str, *args: Any) -> Any:
        """Every client event (python-socketio's catch-all); the return value is the ack."""
        socket = self.sockets.get(sid)
        if socket is None or socket.closing:
            return None
        data = args[0] if args else None
        if event == INVALID_JSON_EVENT:
            await self._send(socket, events.error(message=str(data)))
            return {"error": str(data)}
        if event == "authenticate":
            await self._authenticate(socket, data)
            return None
        if socket.valid_until is not None and time.time() >= socket.valid_until:
            await self._refuse(socket, TokenError(TOKEN_EXPIRED, TOKEN_LAPSED))
            return None
        connection = socket.connection
        try:
            if event == "startComparison":
                run = await connection.start(parse(StartComparison, "startComparison", data))
                return {"sessionId": run.comparison_id}
            if event == "cancelComparison":
                ref = parse(SessionRef, "cancelComparison", data)
                await connection.cancel(ref.sessionId)
            elif event == "cancelModel":
                model = parse(ModelRef, "cancelModel", data)
                await connection.cancel(model.sessionId, model.model)
            elif event == "watchSession":
                ref = parse(SessionRef, "watchSession", data)
                await connection.watch(ref.sessionId)
            elif event == "sendFollowUp":
                follow = parse(SendFollowUp, "sendFollowUp", data)
                run = await connection.follow_up(
                    follow.sessionId, prompt=follow.prompt, mode="followUp", keys=follow.models
                )
                return {"sessionId": run.comparison_id, "turn": run.turn}
            elif event == "continueFrom":
                cont = parse(ContinueFrom, "continueFrom", data)
                run = await connection.follow_up(
                    cont.sessionId, prompt=cont.prompt, mode="continueFrom", source_key=cont.model
                )
                return {"sessionId": run.comparison_id, "turn": run.turn}
            elif event == "vote":
                vote = parse(VoteCast, "vote", data)
                user = connection.user_id
                await self._send(socket, await arena_sockets.vote_record(user_id=user, frame=vote))
                if vote.stop:
                    await arena_sockets.vote_stop_rest(connection=connection, frame=vote)
            elif event == "unvote":
                undo = parse(VoteRetract, "unvote", data)
                user = connection.user_id
                await self._send(socket, await arena_sockets.vote_undo(user_id=user, frame=undo))
            elif event == "reveal":
                ref = parse(SessionRef, "reveal", data)
                answer = await arena_sockets.comparison_reveal(
                    user_id=connection.user_id, frame=ref
                )
                await connection.revealed(ref.sessionId)
                await self._send(socket, answer)
            elif event in arena_sockets.EVENTS:
                answer = await arena_sockets.arena_event(
                    event=event, user_id=connection.user_id, data=data
                )
                await self._send(socket, answer)
            else:
                raise LiveError(f"Unknown event: {str(event)[:64]}")
        except (ValueError, LiveError, ArenaError) as exc:
            request_id = data.get("requestId") if isinstance(data, dict) else None
            request_id = request_id if isinstance(request_id, str) else None
            if event != "startComparison":
                request_id = None
            error = events.error(
                message=str(exc),
                request_id=request_id,
                reason=exc.reason if isinstance(exc, LiveError) else None,
                retry_after=exc.retry_after if isinstance(exc, LiveError) else None,
            )
            await self._send(socket, error)
            return {"error": str(exc)}
        return None

    async def _authenticate(self, socket: SioSocket, data: Any) -> None:
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            await self._refuse(socket, TokenError(TOKEN_MISSING, "authenticate needs data.token"))
            return
        try:
            principal = await token_verify(token=token)
        except TokenError as exc:
            logger.info("Socket.IO authenticate refused: %s", exc.code)
            await self._refuse(socket, exc)
            return
        if principal.user_id != socket.principal.user_id:
            await self._refuse(
                socket, TokenError("token-user-mismatch", "The token belongs to a different user")
            )
            return
        socket.principal = principal
        self._track_expiry(socket, principal)
        await self._send(socket, events.authenticated(user_id=principal.user_id))

    # --- token lifetime --------------------------------------------------------------------------
    def _track_expiry(self, socket: SioSocket, principal: Principal) -> None:
        if socket.expiry is not None:
            socket.expiry.cancel()
            socket.expiry = None
        exp = principal.claims.get("exp")
        if type(exp) is not int:
            socket.valid_until = None
            return
        socket.valid_until = valid_until = exp + float(settings.CLERK_CLOCK_SKEW_SECONDS)
        socket.expiry = asyncio.get_running_loop().create_task(self._expire(socket, valid_until))

    async def _expire(self, socket: SioSocket, valid_until: float) -> None:
        await asyncio.sleep(max(0.0, valid_until - time.time()))
        socket.expiry = None
        await self._refuse(socket, TokenError(TOKEN_EXPIRED, TOKEN_LAPSED))

    async def _refuse(self, socket: SioSocket, error: TokenError) -> None:
        """``error`` ``{message, reason}``, then disconnect (``/ws`` closes with 4401)."""
        if socket.closing:
            return
        socket.closing = True
        await self._send(socket, events.error(message=error.message, reason=error.code))
        await self.sio.disconnect(socket.sid)

    async def _send(self, socket: SioSocket, frame: Frame) -> None:
        await socket.subscriber.send(frame)

    def _too_slow(self, sid: str) -> None:
        """Its queue passed the bound: say why (after what is queued), then disconnect."""
        socket = self.sockets.get(sid)
        if socket is None or socket.closing:
            return
        socket.closing = True
        self._tasks.add(task := asyncio.create_task(self._drop(socket)))
        task.add_done_callback(self._tasks.discard)

    async def _drop(self, socket: SioSocket) -> None:
        eio_sid = self.sio.manager.eio_sid_from_sid(socket.sid, "/")
        if eio_sid is not None:
            frame = events.error(message=TOO_SLOW, reason="too-slow")
            await self.sio.eio.send(eio_sid, frame.sio)
        await self.sio.disconnect(socket.sid)


def _host_allowed(scope: dict[str, Any]) -> bool:
    """Django's ``ALLOWED_HOSTS`` check, for requests that never reach Django."""
    host = next(
        (v.decode("latin-1") for k, v in scope.get("headers") or () if k.lower() == b"host"), ""
    )
    domain, _port = split_domain_port(host)
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


class _SocketIOApp:
    """``socketio.ASGIApp`` in front of the rest of the application, behind the host check."""

    def __init__(self, app: Any, transport: SocketIOTransport) -> None:
        self.transport = transport
        self._prefix = f"/{SOCKETIO_PATH}/"
        self._inner = socketio.ASGIApp(
            transport.sio, other_asgi_app=app, socketio_path=SOCKETIO_PATH
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] in ("http", "websocket")
            and scope.get("path", "").startswith(self._prefix)
            and not _host_allowed(scope)
        ):
            if scope["type"] == "http":
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [(b"content-type", b"text/plain")],
                    }
                )
                await send({"type": "http.response.body", "body": b"Invalid Host header"})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] == "websocket" and scope.get("path", "").startswith(self._prefix):
            send = _direct_text(send)  # Engine.IO's socket only: /ws finds daphne's send itself
        await self._inner(scope, receive, send)


def _direct_text(send: Any) -> Any:
    """``send`` with Engine.IO's text messages written by daphne's protocol directly (see
    ``daphne_text_sender``: per relayed chunk, no daphne ``handle_reply`` coroutine and checks,
    no autobahn generic framing); every other message, and all under other servers, as before."""
    send_now = daphne_text_sender(send)
    if send_now is None:
        return send

    async def send_direct(message: dict[str, Any]) -> None:
        # daphne sends nothing for an empty text and refuses text with bytes: those go its way.
        text = message.get("text")
        if (
            message["type"] == "websocket.send"
            and text
            and not message.get("bytes")
            and send_now(text)
        ):
            return
        await send(message)

    return send_direct


def socketio_application(
    app: Any, *, live: LiveComparisons, connection_limiter: ConnectionLimiter
) -> Any:
    """``app`` with Socket.IO served beside it at ``/socket.io/``."""
    return _SocketIOApp(app, SocketIOTransport(live=live, connection_limiter=connection_limiter))

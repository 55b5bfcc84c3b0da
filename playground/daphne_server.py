"""daphne's protocol-level limits, answered the way the rest of the API answers errors.

Two limits are enforced by daphne's protocol libraries before any application sees the request:

- WebSocket messages (autobahn): over the limit, autobahn's default ``failByDrop`` ends the TCP
  connection without a close frame, so clients saw 1006 and could not tell why. With it off,
  autobahn sends ``1009 message too big`` first. The limit is set to ``WS_MAX_FRAME_BYTES``
  (applications cannot send 1009 under daphne: autobahn only lets them close with 1000 or
  3000-4999, so the consumer's own guard ended in 1011). autobahn also refuses to *send* a
  message over ``maxMessagePayloadSize`` (the send raised, and a watcher of a large comparison
  got 1011 or nothing), so the limit applies to what clients send only
  (:class:`InboundLimitedWebSocketProtocol`).
- Request heads (twisted): a line over 16 KiB (a long bearer token) dropped the connection with
  no status, and a head over 16 KiB in total got a bare ``400`` with no body. Both now get a JSON
  error (``{"statusCode", "message"}``): 431, or 414 for a request line (the URL) too long.

:func:`daphne_configure` applies both to a running daphne ``Server``; the application calls it
on its first connection (``playground.startup``), ``manage.py serve`` before it accepts any.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import types
from collections import deque
from collections.abc import Callable
from typing import Any

from autobahn.websocket.protocol import WebSocketServerProtocol
from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings
from twisted.internet import tcp
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol

logger = logging.getLogger(__name__)

_CONFIGURED = "_playground_configured"


def daphne_server_of(send: Any) -> Any | None:
    """The daphne ``Server`` behind an application instance's ``send``, or None.

    daphne hands every application instance ``send=partial(server.handle_reply, protocol)``.
    """
    if not isinstance(send, functools.partial):
        return None
    from daphne.server import Server

    server = getattr(send.func, "__self__", None)
    return server if isinstance(server, Server) else None


#: Close code for a socket whose unsent data passed ``WS_MAX_OUTBOUND_BUFFER_BYTES``.
CLOSE_TOO_SLOW = 4008
#: Seconds such a socket has to take what is queued (and read why it closes) before it is
#: dropped; its buffer no longer grows meanwhile.
TOO_SLOW_CLOSE_SECONDS = 10.0


def daphne_text_sender(send: Any) -> Callable[[str], bool] | None:
    """The direct sender (:meth:`InboundLimitedWebSocketProtocol.send_text`) of the daphne
    WebSocket behind an application instance's ``send``; None under another server."""
    if daphne_server_of(send) is None:
        return None
    protocol = send.args[0]
    if isinstance(protocol, InboundLimitedWebSocketProtocol):
        return protocol.send_text
    return None


def unsent_bytes(transport: Any) -> int:
    """Bytes twisted holds for ``transport`` that the peer has not taken yet (0 if unknown)."""
    buffered = getattr(transport, "dataBuffer", b"")
    offset = getattr(transport, "offset", 0)
    pending = getattr(transport, "_tempDataLen", 0)
    return len(buffered) - offset + pending


def write_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, but sent to the socket at once when nothing is queued.

    twisted's ``write`` only buffers: it registers the socket for writing (an ``epoll_ctl``),
    sends when the loop next sees it writable, then unregisters it (another ``epoll_ctl``):
    three syscalls, a loop wake-up and twisted's Python write path for every relayed chunk.
    A socket with an empty buffer can almost always take a chunk now, as asyncio's transports
    assume. What the kernel does not take, any error, TLS, or data already queued (order) goes
    the ordinary way; twisted then reports a broken connection as it always does.
    """
    if (
        type(transport) is not tcp.Server
        or transport.TLS
        or transport._tempDataLen
        or len(transport.dataBuffer) > transport.offset
        or not transport.connected
        or transport.disconnecting
        or transport._writeDisconnected
    ):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        transport.write(data)
        return
    if sent < len(data):
        transport.write(data[sent:])


#: A text frame's first two bytes (FIN + text opcode, unmasked length) for each short length.
_TEXT_HEADS = tuple(bytes((0x81, size)) for size in range(126))


class InboundLimitedWebSocketProtocol(WebSocketProtocol):
    """daphne's WebSocket protocol with ``maxMessagePayloadSize`` limiting received messages
    only: a message the server sends goes out whatever its size.

    It also bounds what a socket may have queued but unsent: twisted buffers writes without
    limit, so a client that does not read would grow the process's memory with every frame.
    Past ``WS_MAX_OUTBOUND_BUFFER_BYTES`` the socket is closed with 4008; later sends are
    dropped (autobahn sends nothing once closing) and the connection is dropped when the close
    handshake times out. The application sees an ordinary disconnect (code 4008) at once; other
    sockets, and the runs this one watched, go on.
    """

    outbound_limit: int = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        # daphne upgrades an HTTP request to this protocol on the same transport, and the HTTP
        # channel stays registered as the transport's producer, holding its request (headers,
        # body buffer: ~4 KiB) for the socket's life. That request never ends, so the channel
        # pauses nothing meanwhile: unregistered, both are freed.
        transport: Any = self.transport
        if isinstance(getattr(transport, "producer", None), HTTPChannel):
            transport.unregisterProducer()

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # autobahn's own formats a debug line's arguments (click styling) on every call, logged
        # or not, and leaves the socket to twisted's deferred write (see write_now).
        if sync or chopsize or self.send_queue or self.logOctets:
            super().sendData(data, sync, chopsize)
            return
        write_now(self.transport, data)
        if self.state == self.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)

    def sendMessage(
        self,
        payload: bytes,
        isBinary: bool = False,
        fragmentSize: int | None = None,
        sync: bool = False,
        doNotCompress: bool = False,
    ) -> None:
        # autobahn checks this attribute when it sends, and when it receives a frame; the
        # reactor thread runs one at a time, so lifting it for this call lifts it for the send.
        limit: int = self.maxMessagePayloadSize  # type: ignore[has-type]
        self.maxMessagePayloadSize = 0
        try:
            super().sendMessage(payload, isBinary, fragmentSize, sync, doNotCompress)
        finally:
            self.maxMessagePayloadSize = limit
        self._bound_outbound(len(payload))

    def send_text(self, text: str) -> bool:
        """Send ``text`` as one text message now, as daphne does for an application's
        ``websocket.send``, without its way there: the ASGI message dict, three coroutines,
        daphne's and autobahn's checks and autobahn's generic framing (per relayed chunk). An
        unmasked, uncompressed, unfragmented frame, as autobahn's defaults make it.

        False (nothing sent) when the socket is not open or an option this path does not
        implement is on: the caller then sends the ordinary way, which raises or ignores as
        daphne does.
        """
        if (
            self.state != self.STATE_OPEN
            or self._perMessageCompress is not None
            or self.maskServerFrames
            or self.autoFragmentSize
            or self.trackedTimings
            or self.logFrames
        ):
            return False
        payload = text.encode()
        size = len(payload)
        if size <= 125:
            head = _TEXT_HEADS[size]
        elif size <= 0xFFFF:
            head = b"\x81\x7e" + size.to_bytes(2, "big")
        else:
            head = b"\x81\x7f" + size.to_bytes(8, "big")
        self.sendData(head + payload)
        self._bound_outbound(size)
        return True

    def _bound_outbound(self, size: int) -> None:
        """Close the socket with 4008 when more than ``outbound_limit`` bytes were unsent before
        the message of ``size`` bytes just written."""
        outbound = self.outbound_limit
        # What was unsent before this message: one large snapshot alone never closes a socket.
        if (
            outbound
            and self.state == self.STATE_OPEN
            and unsent_bytes(self.transport) - size > outbound
        ):
            self.closeHandshakeTimeout = TOO_SLOW_CLOSE_SECONDS
            self.sendClose(code=CLOSE_TOO_SLOW, reason="Client too slow: too much unread data")
            # The application hears the disconnect now, not when the close handshake times out:
            # it stops watching and building frames that would only be dropped (each a CPU cost
            # to every other socket on this loop), and later frames from this client are ignored.
            if not self.muted and hasattr(self, "application_queue"):  # type: ignore[has-type]
                self.muted = True
                self.application_queue.put_nowait(
                    {"type": "websocket.disconnect", "code": CLOSE_TOO_SLOW}
                )
            # Once per socket (it is closing now): operators see who is dropped and why.
            logger.warning(
                "WebSocket from %s closed with %d: %d bytes unread",
                self.peer,
                CLOSE_TOO_SLOW,
                unsent_bytes(self.transport),
            )


class InboxQueue:
    """What daphne needs of an application instance's input queue (``put_nowait``; ``get`` by
    its one reader, the application), for a fraction of ``asyncio.Queue``'s memory: that one
    holds three deques and an Event from the start (~3 KiB per idle socket); this one holds a
    deque only while messages wait, and a future while the application waits for one."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        # A cancelled get takes nothing: the message stays for the next one, as asyncio.Queue's.
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item


def _create_application(server: Any, protocol: Any, scope: dict[str, Any]) -> InboxQueue | None:
    """daphne's ``Server.create_application``, with an :class:`InboxQueue` as the input queue."""
    assert "application_instance" not in server.connections[protocol]
    input_queue = InboxQueue()
    scope.setdefault("asgi", {"version": "3.0"})
    instance = server.application(
        scope=scope, receive=input_queue.get, send=functools.partial(server.handle_reply, protocol)
    )
    if protocol not in server.connections:
        return None
    server.connections[protocol]["application_instance"] = asyncio.ensure_future(instance)
    return input_queue


def _class_value(value: Any) -> Any:
    # A function as a class attribute would be bound to each protocol (perMessageCompressionAccept).
    return staticmethod(value) if isinstance(value, types.FunctionType) else value


def daphne_configure(server: Any) -> None:
    """Give a running daphne ``Server`` the limits above (once; later calls do nothing)."""
    if getattr(server, _CONFIGURED, False):
        return
    setattr(server, _CONFIGURED, True)
    limit = settings.WS_MAX_FRAME_BYTES
    options = {"failByDrop": False, "maxMessagePayloadSize": limit, "maxFramePayloadSize": limit}
    factory = server.ws_factory
    factory.setProtocolOptions(**options)
    # autobahn copies its ~30 options from the factory into every protocol's __dict__ when it
    # connects, unless the protocol's class has them: a class of this server's own holds them
    # once (the dict of an idle socket's protocol shrinks by about 1.6 KiB).
    own = {
        name: _class_value(getattr(factory, name)) for name in WebSocketServerProtocol.CONFIG_ATTRS
    }
    own["outbound_limit"] = int(settings.WS_MAX_OUTBOUND_BUFFER_BYTES)
    protocol_class = type("ServerWebSocketProtocol", (InboundLimitedWebSocketProtocol,), own)
    factory.protocol = protocol_class
    # Sockets that connected before: a protocol copies the factory's options when it connects.
    for protocol in list(server.connections):
        if type(protocol) is WebSocketProtocol:
            protocol.__class__ = protocol_class  # adds behaviour, no state
            for name, value in options.items():
                setattr(protocol, name, value)
    server.http_factory.protocol = _json_error_channel
    # Connections made from now on (an instance attribute: the protocols call
    # ``server.create_application``).
    server.create_application = functools.partial(_create_application, server)
    from twisted.internet import reactor

    # Before the loop stops, as daphne's own shutdown does: aiohttp logs "Unclosed client
    # session" for every provider session dropped open.
    # (zope interface methods have no self: mypy reads the arguments one place off)
    reactor.addSystemEventTrigger("before", "shutdown", _close_providers)  # type: ignore[arg-type]


def _close_providers() -> Any:
    from twisted.internet import defer

    from providers.registry import providers

    return defer.Deferred.fromFuture(asyncio.ensure_future(providers.aclose()))


def _json_error_channel() -> _GenericHTTPChannelProtocol:
    # What twisted's HTTPFactory builds by default, around the channel below.
    return _GenericHTTPChannelProtocol(JsonErrorHTTPChannel())


def error_response(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 response carrying the API's JSON error body; the connection closes."""
    body = json.dumps({"statusCode": status, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class JsonErrorHTTPChannel(HTTPChannel):
    """twisted's HTTP channel, answering requests it refuses before parsing with JSON errors."""

    def lineLengthExceeded(self, line: bytes) -> None:
        # Called before lineReceived counts the line: nothing counted yet means the request line.
        if self._receivedHeaderSize == 0:
            response = error_response(414, "URI Too Long", "Request line too long")
        else:
            response = self._headers_too_large()
        self._refuse(response)

    def _respondToBadRequestAndDisconnect(self) -> None:
        if self._receivedHeaderSize > self.totalHeadersSize:
            response = self._headers_too_large()
        else:
            response = error_response(400, "Bad Request", "Malformed HTTP request")
        self._refuse(response)

    def _refuse(self, response: bytes) -> None:
        transport: Any = self.transport  # typed as zope's ITransport, whose write mypy misreads
        transport.write(response)
        self.loseConnection()

    def _headers_too_large(self) -> bytes:
        return error_response(
            431,
            "Request Header Fields Too Large",
            f"Request headers too large (limit {self.totalHeadersSize} bytes in total, "
            f"{self.MAX_LENGTH} per line)",
        )

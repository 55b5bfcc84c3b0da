"""Cross-process messages of the live core, over the Channels layer: one class per message.

Each class is used by both its sender (:meth:`message`) and its receiver (:meth:`from_message`);
the ``type`` key routes it (a socket's listener, ``Connection._listen``, takes :class:`WatchEvent`).

- :class:`WatchRequest`, :class:`WatchStop`, :class:`RunCancel`, :class:`RunReveal`: to the group
  :func:`run_group` of a comparison, which the process running it listens on;
- :class:`WatchEvent`: frames for one watching socket (its reply channel), or for every socket
  in :func:`watch_group` (a recorded replay).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from comparisons.events import Frame


def watch_group(comparison_id: str) -> str:
    """The group every socket watching ``comparison_id`` joins (any server process)."""
    return f"watch.{comparison_id}"


def run_group(comparison_id: str) -> str:
    """The group the process running ``comparison_id`` listens on for control messages."""
    return f"run.{comparison_id}"


@dataclass(frozen=True, slots=True)
class _SocketMessage:
    """A message about ``session`` from the socket of ``user_id`` listening on ``reply``."""

    type: ClassVar[str]
    session: str
    reply: str
    user_id: str

    def message(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "session": self.session,
            "reply": self.reply,
            "user_id": self.user_id,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Self:
        return cls(
            session=str(message.get("session", "")),
            reply=str(message.get("reply", "")),
            user_id=str(message.get("user_id", "")),
        )


@dataclass(frozen=True, slots=True)
class WatchRequest(_SocketMessage):
    """A socket of ``user_id`` asks for ``session``'s snapshot and live events on ``reply``."""

    type: ClassVar[str] = "watch.request"


@dataclass(frozen=True, slots=True)
class WatchStop(_SocketMessage):
    """The socket on ``reply`` stops watching ``session`` (it closed)."""

    type: ClassVar[str] = "watch.stop"


@dataclass(frozen=True, slots=True)
class RunCancel:
    """Stop ``session`` (every unfinished model, or only ``model``)."""

    type: ClassVar[str] = "run.cancel"
    session: str
    user_id: str
    model: str | None = None

    def message(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "session": self.session,
            "user_id": self.user_id,
            "model": self.model,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> RunCancel:
        model = message.get("model")
        return cls(
            session=str(message.get("session", "")),
            user_id=str(message.get("user_id", "")),
            model=None if model is None else str(model),
        )


@dataclass(frozen=True, slots=True)
class RunReveal:
    """Its owner revealed blind ``session``: the run names its models from now on and sends
    ``revealed`` to its watchers, except the socket on ``reply`` (which got it as its answer;
    ``""`` from REST: no one is skipped)."""

    type: ClassVar[str] = "run.reveal"
    session: str
    user_id: str
    reply: str = ""

    def message(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "session": self.session,
            "user_id": self.user_id,
            "reply": self.reply,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> RunReveal:
        return cls(
            session=str(message.get("session", "")),
            user_id=str(message.get("user_id", "")),
            reply=str(message.get("reply") or ""),
        )


@dataclass(frozen=True, slots=True)
class InboxStop:
    """Ends the task receiving on a channel of this process (:class:`~comparisons.live.layer.
    LayerInbox`): a process sends it to its own channel."""

    type: ClassVar[str] = "inbox.stop"

    def message(self) -> dict[str, Any]:
        return {"type": self.type}


ControlMessage = WatchRequest | WatchStop | RunCancel | RunReveal

_CONTROL: dict[str, Any] = {
    cls.type: cls for cls in (WatchRequest, WatchStop, RunCancel, RunReveal)
}


def control_from_message(message: dict[str, Any]) -> ControlMessage | None:
    """The control message a run's process received, or ``None`` for anything else."""
    cls = _CONTROL.get(str(message.get("type")))
    return None if cls is None else cls.from_message(message)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """Frames of comparison ``session`` for a watching socket (a run's answer to its watch
    request, or a recorded replay's frames).

    ``replay`` names the recorded replay the frames belong to; ``opens`` marks its first
    message (the replay's own ``sessionSnapshot``). A socket forwards a replay's frames only
    when it saw that first message, so its watcher never gets chunks without their snapshot.
    """

    type: ClassVar[str] = "watch.event"
    session: str
    frames: list[Frame]
    replay: str | None = None
    opens: bool = False
    #: The server process that sent it (a follow-up turn's frames to every watcher): that
    #: process's own sockets got them directly.
    origin: str | None = None

    def message(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "session": self.session,
            "frames": [frame.wire() for frame in self.frames],
            "replay": self.replay,
            "opens": self.opens,
            "origin": self.origin,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> WatchEvent:
        origin = message.get("origin")
        return cls(
            session=str(message.get("session", "")),
            frames=[Frame.from_wire(pair) for pair in message.get("frames") or ()],
            replay=message.get("replay"),
            opens=bool(message.get("opens", False)),
            origin=None if origin is None else str(origin),
        )


def turn_stream(session: str, turn: int) -> str:
    """The ``replay`` name of a follow-up turn's frames sent to the watch group."""
    return f"{session}#turn{turn}"

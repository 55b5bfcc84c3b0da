"""Channel-layer names shared by the consumer, the runner and the commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def watch_group(comparison_id: str) -> str:
    """The group every socket watching ``comparison_id`` joins (any server process)."""
    return f"watch.{comparison_id}"


def run_group(comparison_id: str) -> str:
    """The group the process running ``comparison_id`` listens on for watch requests."""
    return f"run.{comparison_id}"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """The ``watch.event`` channel-layer message: frames of comparison ``session`` for a
    watching socket (a run's answer to its watch request, or a recorded replay's frames).

    ``replay`` names the recorded replay the frames belong to; ``opens`` marks its first
    message (the replay's own ``sessionSnapshot``). A socket forwards a replay's frames only
    when it saw that first message, so its watcher never gets chunks without their snapshot.
    """

    session: str
    texts: list[str]
    replay: str | None = None
    opens: bool = False

    def message(self) -> dict[str, Any]:
        return {
            "type": "watch.event",
            "session": self.session,
            "texts": self.texts,
            "replay": self.replay,
            "opens": self.opens,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> WatchEvent:
        return cls(
            session=str(message.get("session", "")),
            texts=list(message.get("texts") or ()),
            replay=message.get("replay"),
            opens=bool(message.get("opens", False)),
        )

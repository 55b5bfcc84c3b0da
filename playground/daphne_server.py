"""daphne, with oversized WebSocket frames answered by a close frame (1009) instead of a drop.

daphne caps message size through autobahn, whose default ``failByDrop`` ends the TCP connection
without a close frame, so clients see 1006 and cannot tell why. Turning ``failByDrop`` off makes
autobahn send ``1009 message too big`` first. Applications cannot send 1009 themselves under
daphne: autobahn only lets them close with 1000 or 3000-4999.
"""

from __future__ import annotations

from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server


class PlaygroundServer(Server):
    """A daphne ``Server`` whose WebSocket factory closes protocol violations cleanly."""

    @property
    def ws_factory(self) -> Any:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: Any) -> None:
        factory.setProtocolOptions(failByDrop=False)
        self._ws_factory = factory


class PlaygroundCommandLine(CommandLineInterface):
    server_class = PlaygroundServer

"""``manage.py replay <session-id>``: run a saved comparison again, or play its recording."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, TextIO, cast

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.management.base import BaseCommand, CommandError

from comparisons import selectors
from comparisons.cli import comparison_result, parse_model_args, run_in_terminal
from comparisons.events import Frame
from comparisons.live.messages import WatchEvent, watch_group
from comparisons.playback import Playback, PlaybackSlot, comparison_play_recorded
from comparisons.services import SlotSpec
from comparisons.terminal import display_live


class Command(BaseCommand):
    help = (
        "Run a saved comparison's prompt again as a new comparison linked to it, streaming "
        "progress live; or, with --recorded, re-emit its saved events at the recorded pace."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("session_id", help="Id of the saved comparison.")
        parser.add_argument(
            "--models", nargs="+", metavar="PROVIDER[:MODEL]", help="Other models to run it on."
        )
        parser.add_argument("--user", help="Owner of the new comparison (default: the original's).")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
        parser.add_argument(
            "--recorded", action="store_true", help="Play the saved events; call no provider."
        )
        parser.add_argument("--speed", type=float, default=1.0, help="Playback speed (--recorded).")

    def handle(self, *args: Any, **options: Any) -> None:
        original = selectors.comparison_get_any(comparison_id=options["session_id"])
        if original is None:
            raise CommandError(f"Comparison {options['session_id']} not found.")
        if options["recorded"]:
            self._play(original, options)
            return
        if options["models"]:
            slots = parse_model_args(options["models"])
        else:
            slots = [
                SlotSpec(
                    provider=r.provider,
                    model=r.model_name,
                    temperature=r.temperature,
                    max_tokens=r.max_tokens,
                )
                for r in original.responses.all()
            ]
        before = comparison_result(original.id)["responses"]
        result = asyncio.run(
            run_in_terminal(
                user_id=options["user"] or original.user_id,
                prompt=original.prompt,
                system=original.system,
                slots=slots,
                out=None if options["json"] else cast(TextIO, self.stdout._out),
                replay_of_id=original.id,
                original=before,
            )
        )
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))

    def _play(self, original: Any, options: dict[str, Any]) -> None:
        if options["speed"] <= 0:
            raise CommandError("--speed must be positive.")
        layer = get_channel_layer()
        group = watch_group(original.id)
        out = cast(TextIO, self.stdout._out)
        events: list[dict[str, Any]] = []
        replay = uuid.uuid4().hex
        opened = False

        async def publish(frame: Frame) -> None:
            nonlocal opened
            if layer is not None:
                message = WatchEvent(
                    session=original.id, frames=[frame], replay=replay, opens=not opened
                )
                opened = True
                await layer.group_send(group, message.message())
            if options["json"]:
                events.append({"event": frame.event, "data": frame.data()})

        async def play() -> None:
            playback = Playback(
                original.id, [PlaybackSlot(r.key) for r in original.responses.all()]
            )
            job = comparison_play_recorded(
                comparison=original, speed=options["speed"], publish=publish, playback=playback
            )
            if options["json"]:
                await job
            else:
                await asyncio.gather(job, display_live(playback, out))

        async_to_sync(play)()
        if options["json"]:
            self.stdout.write(json.dumps(events, indent=2))

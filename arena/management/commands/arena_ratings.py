"""``manage.py arena_ratings``: refit the leaderboards from the votes and print the team board."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from arena import services


class Command(BaseCommand):
    help = (
        "Refit every stored leaderboard (and the team-wide one) from the battles; with "
        "--rebuild, first recreate the battles from the votes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--rebuild", action="store_true", help="Recreate battle rows from the votes first."
        )
        parser.add_argument(
            "--prune-days",
            type=int,
            metavar="DAYS",
            help="First drop stored boards not refitted for DAYS days (they are refitted in "
            "full when asked for again): each distinct since-day (UTC) stores a board.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["prune_days"] is not None:
            dropped = services.leaderboards_prune(days=options["prune_days"])
            self.stdout.write(f"Dropped {dropped} stored leaderboard(s).")
        if options["rebuild"]:
            count = services.battles_rebuild()
            self.stdout.write(f"Rebuilt {count} battles from the votes.")
        boards = services.leaderboards_refresh_all()
        self.stdout.write(f"Refitted {len(boards)} leaderboard(s).")
        team = next(b for b in boards if b.scope == services.ALL and not b.tag and not b.since)
        result = team.result
        self.stdout.write(f"All users: {result['votes']} votes, {result['battles']} battles")
        for row in result["models"]:
            self.stdout.write(
                f"{row['rank']:>3}  {row['provider']}:{row['model']:<40} {row['rating']:7.1f}"
                f"  [{row['lower']:7.1f}, {row['upper']:7.1f}]  {row['battles']:>6} battles"
                f"  {row['winRate']:.1%} won"
            )

"""Channel-layer names shared by the consumer, the runner and the commands."""

from __future__ import annotations


def watch_group(comparison_id: str) -> str:
    """The group every socket watching ``comparison_id`` joins (any server process)."""
    return f"watch.{comparison_id}"


def run_group(comparison_id: str) -> str:
    """The group the process running ``comparison_id`` listens on for watch requests."""
    return f"run.{comparison_id}"

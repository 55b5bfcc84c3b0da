"""Modes of ``python -m bench`` outside the ≤ 15-minute matrix: idle memory, scaling across
processes, the soak. Each lives in its own module, imported only when asked for."""

from __future__ import annotations

import argparse
import signal
import sys


def extra_modes(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("outside the matrix")
    group.add_argument(
        "--soak",
        metavar="DURATION",
        help="moderate load for DURATION (e.g. 30m), resources sampled and judged flat",
    )
    group.add_argument(
        "--soak-interval", type=float, default=15.0, help="seconds between soak samples"
    )
    group.add_argument(
        "--memory",
        action="store_true",
        help="idle-socket USS slope (0/500/1,000/2,000) on daphne, uvicorn and the Redis layer",
    )
    group.add_argument(
        "--scale",
        action="store_true",
        help="streams held at p99 ≤ 5 ms added by 1 and 2 server processes (SO_REUSEPORT)",
    )
    group.add_argument(
        "--db",
        action="store_true",
        help="rows and WAL bytes per comparison, read after the server's sessions closed",
    )
    group.add_argument("--scale-levels", help="streams per level, e.g. 20,50,100 (with --scale)")


def run_extra_mode(args: argparse.Namespace) -> bool:
    """Run the mode asked for, if any; whether one ran."""
    if args.soak or args.memory or args.scale or args.db:
        # SIGTERM (``timeout``, a CI cancel) unwinds like Ctrl-C: the servers started are stopped.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.soak:
        from bench import soak

        soak.main(args)
        return True
    if args.memory:
        from bench import memory

        memory.main(args)
        return True
    if args.db:
        from bench import dbcost

        dbcost.main(args)
        return True
    if args.scale:
        from bench import scale

        scale.main(args)
        return True
    return False

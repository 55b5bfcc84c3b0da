"""``python -m tests.fake_upstream --port N``: serve the fake upstream until interrupted.

``--deltas 64 --delta-bytes 16 --rate 20`` makes the default scenario (requests without a
``scenario:<id>`` marker) a paced benchmark stream; ``GET /_bench/requests`` returns the recorded
per-delta write times and ``POST /_bench/reset`` clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from .server import FakeUpstream


async def _main(args: argparse.Namespace) -> None:
    async with FakeUpstream(host=args.host, port=args.port) as upstream:
        if args.deltas is not None:
            upstream.configure_default(
                deltas=args.deltas,
                delta_bytes=args.delta_bytes,
                rate=args.rate,
                first_delay=args.first_delay,
            )
        print(f"fake upstream listening on {upstream.url}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--deltas", type=int, default=None, help="default scenario: number of deltas"
    )
    parser.add_argument("--delta-bytes", type=int, default=16, help="bytes per delta")
    parser.add_argument("--rate", type=float, default=20.0, help="deltas per second")
    parser.add_argument(
        "--first-delay", type=float, default=0.0, help="seconds before the first delta"
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop if installed")
    args = parser.parse_args()
    if args.uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.install()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()

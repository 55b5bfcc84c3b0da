"""The lean SSE reader used on the streaming hot path (providers/sse.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest

from providers.sse import sse_data


async def _read(chunks: Iterable[bytes]) -> list[bytes]:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return [data async for data in sse_data(source())]


def _splits(stream: bytes) -> Iterable[list[bytes]]:
    """The stream whole, byte by byte, and cut in two at every position."""
    yield [stream]
    yield [stream[i : i + 1] for i in range(len(stream))]
    for cut in range(1, len(stream)):
        yield [stream[:cut], stream[cut:]]


ANTHROPIC = (
    b"event: message_start\n"
    b'data: {"type": "message_start"}\n'
    b"\n"
    b"event: ping\n"
    b'data: {"type": "ping"}\n'
    b"\n"
    b": a comment line\n"
    b"id: 7\n"
    b"retry: 1000\n"
    b'data: {"type": "content_block_delta", "delta": {"text": "a\\nb"}}\n'
    b"\n"
)
GEMINI = b'data: {"candidates": [1]}\r\n\r\ndata: {"candidates": [2]}\r\n\r\n'


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (
            ANTHROPIC,
            [
                b'{"type": "message_start"}',
                b'{"type": "ping"}',
                b'{"type": "content_block_delta", "delta": {"text": "a\\nb"}}',
            ],
        ),
        (GEMINI, [b'{"candidates": [1]}', b'{"candidates": [2]}']),
        # Several data lines make one value joined by LF; "data:" without a space; CR line ends.
        (
            b"data: one\r\ndata:two\r\n\r\ndata: three\r\rdata: four\r\r",
            [b"one\ntwo", b"three", b"four"],
        ),
        # An event without data is skipped; extra blank lines are not events.
        (b"event: ping\n\n\n\ndata: x\n\n", [b"x"]),
        # An event cut off by the end of the stream is dropped.
        (b"data: whole\n\ndata: cut", [b"whole"]),
        (b"", []),
    ],
)
async def test_events_whatever_the_chunking(stream: bytes, expected: list[bytes]) -> None:
    for chunks in _splits(stream):
        assert await _read(chunks) == expected, chunks

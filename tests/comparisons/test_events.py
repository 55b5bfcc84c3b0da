"""Every outbound event has one definition; the fast paths equal the general encoder."""

from __future__ import annotations

import json

import pytest
from socketio import packet

from comparisons import events

TRICKY = [
    "",
    "plain",
    'quote " and \\ backslash',
    "line\nbreak\ttab",
    "é ✓ 中文 😀",
    "\u2028\x00</script>",
]


@pytest.mark.parametrize("chunk", TRICKY)
def test_the_chunk_fast_path_equals_the_general_encoder(chunk: str) -> None:
    fast = events.ChunkEncoder(session_id="abc123", model='claude-"x"')(chunk, 7)
    general = events.model_chunk(session_id="abc123", model='claude-"x"', chunk=chunk, index=7)
    assert (fast.event, fast.data_json) == (general.event, general.data_json)
    assert json.loads(fast.ws) == {
        "event": "modelChunk",
        "data": {"sessionId": "abc123", "model": 'claude-"x"', "chunk": chunk, "index": 7},
    }


@pytest.mark.parametrize("chunk", TRICKY)
def test_a_follow_up_turns_chunk_fast_path_equals_the_general_encoder(chunk: str) -> None:
    fast = events.ChunkEncoder(session_id="abc123", model="m", turn=3)(chunk, 7)
    general = events.model_chunk(session_id="abc123", model="m", chunk=chunk, index=7, turn=3)
    assert (fast.event, fast.data_json) == (general.event, general.data_json)
    assert json.loads(fast.ws)["data"] == {
        "sessionId": "abc123",
        "model": "m",
        "chunk": chunk,
        "index": 7,
        "turn": 3,
    }


@pytest.mark.parametrize("chunk", TRICKY)
def test_the_socketio_frame_is_what_python_socketio_itself_would_send(chunk: str) -> None:
    """``Frame.sio`` is written straight to the Engine.IO socket (the Socket.IO fast path): it
    must be byte for byte the EVENT packet ``sio.emit`` would have encoded."""
    frame = events.ChunkEncoder(session_id="s", model="m")(chunk, 0)
    data = {"sessionId": "s", "model": "m", "chunk": chunk, "index": 0}
    expected = packet.Packet(packet.EVENT, data=["modelChunk", data], namespace="/").encode()
    if chunk.isascii():
        assert frame.sio == expected
    else:  # ours carries the text as UTF-8, python-socketio's as \u escapes: the same packet
        decoded = packet.Packet(encoded_packet=frame.sio)
        assert (decoded.packet_type, decoded.data) == (packet.EVENT, ["modelChunk", data])
        assert decoded.namespace in (None, "/")  # no namespace in the packet: the default one


def test_model_text_goes_out_as_utf8_not_escapes() -> None:
    """CJK text costs 3 bytes a character on the wire, not 6 (\\uXXXX)."""
    text = "中文" * 1000
    frame = events.ChunkEncoder(session_id="s", model="m")(text, 0)
    assert text in frame.ws and len(frame.ws.encode()) < 3 * len(text) + 100
    snapshot = events.session_snapshot(
        {"sessionId": "s", "status": "complete", "models": [{"key": "m", "content": text}]}
    )
    assert text in snapshot.ws and json.loads(snapshot.ws)["data"]["models"][0]["content"] == text


def test_ws_frames_have_the_documented_shape() -> None:
    frame = events.error(message="Session x not found", request_id="r1")
    assert json.loads(frame.ws) == {
        "event": "error",
        "data": {"message": "Session x not found", "requestId": "r1"},
    }
    metrics = events.Metrics(
        duration_ms=1.5,
        tokens_used=3,
        estimated_cost=None,
        time_to_first_token_ms=0.5,
        input_tokens=1,
        output_tokens=2,
        tokens_per_second=4.0,
        cached_input_tokens=0,
        reasoning_tokens=0,
        price_version=None,
        response_model=None,
    )
    done = events.model_complete(session_id="s", model="m", metrics=metrics).data()
    assert list(done["metrics"])[:4] == [
        "durationInMilliseconds",
        "tokensUsed",
        "estimatedCost",
        "timeToFirstTokenInMilliseconds",
    ]
    assert done["metrics"]["estimatedCost"] is None


def test_frames_cross_processes_intact() -> None:
    frame = events.model_status(session_id="s", model="m", status="streaming")
    again = events.Frame.from_wire(list(frame.wire()))  # msgpack turns tuples into lists
    assert again.ws == frame.ws and again.sio == frame.sio

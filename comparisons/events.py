"""Every server -> client event, defined once, and its wire forms.

A :class:`Frame` is one event whose ``data`` is JSON-encoded once; each transport frames it in
its own way, from that one encoding, at most once per event:

- ``/ws``: ``{"event":"<name>","data":<data>}`` (:attr:`Frame.ws`);
- Socket.IO (default namespace): the EVENT packet ``2["<name>",<data>]`` (:attr:`Frame.sio`).

One builder per event below; :class:`ChunkEncoder` is the fast path for ``modelChunk`` (a
precomputed prefix plus the JSON-escaped text), which must equal :func:`model_chunk`'s encoding
(tests/comparisons/test_events.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

_dumps = json.dumps
# Model text as UTF-8, not \uXXXX escapes (6 bytes per CJK character instead of 3). Only for
# text checked at the boundary (providers/base.py, comparisons/frames.py: no lone surrogate, which
# could not be sent as UTF-8); other events keep the escaping default. One encoder instance: a
# json.dumps call with non-default options would build a new encoder each time.
_text_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_dumps_text = _text_encoder.encode


def _encode(value: Any) -> str:
    return _dumps(value, separators=(",", ":"))


class Frame:
    """One outbound event: its name and its ``data`` as JSON, framed per transport on demand."""

    __slots__ = ("_sio", "_ws", "data_json", "event")

    def __init__(self, event: str, data_json: str) -> None:
        self.event = event
        self.data_json = data_json
        self._ws: str | None = None
        self._sio: str | None = None

    @property
    def ws(self) -> str:
        """The ``/ws`` text frame."""
        text = self._ws
        if text is None:
            text = self._ws = '{"event":"' + self.event + '","data":' + self.data_json + "}"
        return text

    @property
    def sio(self) -> str:
        """The Socket.IO EVENT packet on the default namespace (an Engine.IO message's text)."""
        text = self._sio
        if text is None:
            text = self._sio = '2["' + self.event + '",' + self.data_json + "]"
        return text

    def data(self) -> Any:
        return json.loads(self.data_json)

    def wire(self) -> tuple[str, str]:
        """The pair a cross-process message carries (see :meth:`from_wire`)."""
        return (self.event, self.data_json)

    @classmethod
    def from_wire(cls, pair: Any) -> Frame:
        event, data_json = pair
        return cls(str(event), str(data_json))

    def __repr__(self) -> str:
        return f"Frame({self.event!r}, {self.data_json[:60]!r})"


def encode(event: str, data: Mapping[str, Any]) -> Frame:
    """The general encoder: any event name (a fixed identifier of ours) and its data."""
    return Frame(event, _encode(data))


@dataclass(frozen=True, slots=True)
class Metrics:
    """A finished model's metrics: the seed's four fields and ours *(new)*.

    ``estimatedCost`` is ``None`` when the model's price is unknown, never a made-up 0.
    """

    duration_ms: float
    tokens_used: int
    estimated_cost: float | None
    time_to_first_token_ms: float | None
    input_tokens: int
    output_tokens: int
    tokens_per_second: float
    cached_input_tokens: int
    reasoning_tokens: int
    price_version: str | None
    response_model: str | None

    _WIRE = (
        ("duration_ms", "durationInMilliseconds"),
        ("tokens_used", "tokensUsed"),
        ("estimated_cost", "estimatedCost"),
        ("time_to_first_token_ms", "timeToFirstTokenInMilliseconds"),
        ("input_tokens", "inputTokens"),
        ("output_tokens", "outputTokens"),
        ("tokens_per_second", "tokensPerSecond"),
        ("cached_input_tokens", "cachedInputTokens"),
        ("reasoning_tokens", "reasoningTokens"),
        ("price_version", "priceVersion"),
        ("response_model", "responseModel"),
    )

    def wire(self) -> dict[str, Any]:
        """The ``metrics`` object of ``modelComplete`` and of snapshots."""
        values = asdict(self)
        return {name: values[attr] for attr, name in self._WIRE}

    def hidden(self) -> Metrics:
        """These metrics without what betrays the model (:func:`metrics_hidden`)."""
        return replace(self, estimated_cost=None, price_version=None, response_model=None)


#: A blind comparison's model error before the reveal: the vendor's wording would betray it.
HIDDEN_ERROR = "The model failed (the reason is shown once the models are revealed)."


def metrics_hidden(wire: Mapping[str, Any]) -> dict[str, Any]:
    """Saved ``metrics`` of a blind comparison before its reveal: the price-derived cost, its
    price list and the model the vendor says answered are withheld (REST masks the same)."""
    return {**wire, "estimatedCost": None, "priceVersion": None, "responseModel": None}


def session_created(
    *,
    session_id: str,
    models: list[dict[str, str | None]],
    request_id: str | None = None,
    blind: bool = False,
) -> Frame:
    """``blind`` *(new)*: the models' ``provider`` and ``modelName`` are null until revealed."""
    data: dict[str, Any] = {"sessionId": session_id, "models": models}
    if request_id is not None:
        data["requestId"] = request_id
    if blind:
        data["blind"] = True
    return encode("sessionCreated", data)


def _with_turn(data: dict[str, Any], turn: int) -> dict[str, Any]:
    """A follow-up turn's events carry ``turn`` *(new)*; the first turn's stay as they were."""
    if turn:
        data["turn"] = turn
    return data


def model_status(*, session_id: str, model: str, status: str, turn: int = 0) -> Frame:
    data = {"sessionId": session_id, "model": model, "status": status}
    return encode("modelStatus", _with_turn(data, turn))


def model_chunk(*, session_id: str, model: str, chunk: str, index: int, turn: int = 0) -> Frame:
    data: dict[str, Any] = {"sessionId": session_id, "model": model, "chunk": chunk, "index": index}
    return Frame("modelChunk", _dumps_text(_with_turn(data, turn)))


class ChunkEncoder:
    """``modelChunk`` of one model slot, the hot path: the constant part is encoded once."""

    __slots__ = ("_prefix", "_suffix")

    def __init__(self, *, session_id: str, model: str, turn: int = 0) -> None:
        self._prefix = (
            '{"sessionId":' + _dumps(session_id) + ',"model":' + _dumps(model) + ',"chunk":'
        )
        self._suffix = f',"turn":{turn}}}' if turn else "}"

    def __call__(self, chunk: str, index: int) -> Frame:
        return Frame(
            "modelChunk", f'{self._prefix}{_dumps_text(chunk)},"index":{index}{self._suffix}'
        )


def model_complete(
    *, session_id: str, model: str, metrics: Metrics | Mapping[str, Any] | None, turn: int = 0
) -> Frame:
    """``metrics``: a live run's :class:`Metrics`, or their saved wire form (a replay)."""
    wire = metrics.wire() if isinstance(metrics, Metrics) else metrics
    data = {"sessionId": session_id, "model": model, "metrics": wire}
    return encode("modelComplete", _with_turn(data, turn))


def model_error(*, session_id: str, model: str, error: str, turn: int = 0) -> Frame:
    data = {"sessionId": session_id, "model": model, "error": error}
    return encode("modelError", _with_turn(data, turn))


def turn_started(
    *,
    session_id: str,
    turn: int,
    prompt: str,
    mode: str,
    source: str | None,
    models: list[dict[str, str | None]],
) -> Frame:
    """``turnStarted`` *(new)*: a follow-up turn was admitted; its model events follow, then its
    ``comparisonComplete``. ``from``: the slot a ``continueFrom`` continues."""
    data = {
        "sessionId": session_id,
        "turn": turn,
        "prompt": prompt,
        "mode": mode,
        "from": source,
        "models": models,
    }
    return Frame("turnStarted", _dumps_text(data))


def session_snapshot(snapshot: Mapping[str, Any]) -> Frame:
    """``{sessionId, status, models: [...], replay?}`` (built by the run, the database or a
    recorded replay)."""
    return Frame("sessionSnapshot", _dumps_text(snapshot))


def comparison_complete(
    *, session_id: str, status: str, saved: bool = True, turn: int = 0
) -> Frame:
    """``comparisonComplete``: ``{sessionId, status, saved?, turn?}``; ``saved: false`` only when
    the final state could not be stored (the status is then the run's, not the database's)."""
    data: dict[str, Any] = {"sessionId": session_id, "status": status}
    if not saved:
        data["saved"] = False
    return encode("comparisonComplete", _with_turn(data, turn))


def vote_recorded(*, session_id: str, turn: int, winner: str) -> Frame:
    """``voteRecorded`` *(new)*: the answer to ``vote``."""
    return encode("voteRecorded", {"sessionId": session_id, "turn": turn, "winner": winner})


def vote_retracted(*, session_id: str, turn: int) -> Frame:
    """``voteRetracted`` *(new)*: the answer to ``unvote``."""
    return encode("voteRetracted", {"sessionId": session_id, "turn": turn})


def flagged(*, session_id: str, turn: int, key: str) -> Frame:
    """``flagged`` *(new)*: the answer to ``flag`` (that turn's vote no longer counts)."""
    return encode("flagged", {"sessionId": session_id, "turn": turn, "key": key})


def unflagged(*, session_id: str, turn: int, key: str) -> Frame:
    """``unflagged`` *(new)*: the answer to ``unflag``."""
    return encode("unflagged", {"sessionId": session_id, "turn": turn, "key": key})


def tags_set(*, session_id: str, tags: list[str]) -> Frame:
    """``tagsSet`` *(new)*: the answer to ``setTags``, the tags as stored."""
    return encode("tagsSet", {"sessionId": session_id, "tags": tags})


def revealed(*, session_id: str, models: list[dict[str, str]]) -> Frame:
    """``revealed`` *(new)*: a blind comparison's ``[{key, provider, modelName}]``."""
    return encode("revealed", {"sessionId": session_id, "models": models})


def authenticated(*, user_id: str) -> Frame:
    return encode("authenticated", {"userId": user_id})


def error(
    *,
    message: str,
    request_id: str | None = None,
    reason: str | None = None,
    retry_after: int | None = None,
) -> Frame:
    """``error``: ``{message, requestId?, reason?, retryAfter?}``."""
    data: dict[str, Any] = {"message": message}
    if request_id is not None:
        data["requestId"] = request_id
    if reason is not None:
        data["reason"] = reason
    if retry_after is not None:
        data["retryAfter"] = retry_after
    return encode("error", data)

"""REST output schemas: the seed's session shape, extended."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Field, Schema

from comparisons.events import HIDDEN_ERROR, metrics_hidden
from comparisons.models import RESPONSE_FINISHED, Comparison, ModelResponse
from comparisons.selectors import comparison_turns
from comparisons.services import comparison_overall_status


class MetricsOut(Schema):
    durationInMilliseconds: float
    tokensUsed: int
    estimatedCost: float | None = Field(..., description="USD; null when the price is unknown.")
    timeToFirstTokenInMilliseconds: float | None
    inputTokens: int
    outputTokens: int
    tokensPerSecond: float
    cachedInputTokens: int = Field(0, description="Part of inputTokens, read from a cache.")
    reasoningTokens: int = Field(0, description="Part of outputTokens, spent thinking.")
    priceVersion: str | None = Field(None, description="The price list estimatedCost uses.")
    responseModel: str | None = Field(
        None, description="The model the vendor says answered, when not the one asked for."
    )


class ModelSlotOut(Schema):
    key: str
    provider: str | None = Field(..., description="null while a blind comparison is unrevealed.")
    modelName: str | None = Field(..., description="null while a blind comparison is unrevealed.")
    temperature: float | None = None
    maxTokens: int | None = None


class ResponseOut(Schema):
    provider: str | None
    modelName: str | None
    status: str
    content: str
    error: str | None
    finishReason: str | None
    metrics: MetricsOut | None


def slot_out(row: ModelResponse, *, hidden: bool) -> dict[str, Any]:
    """One entry of ``models``; with ``hidden`` nothing that names the model."""
    return {
        "key": row.key,
        "provider": None if hidden else row.provider,
        "modelName": None if hidden else row.model_name,
        "temperature": row.temperature,
        "maxTokens": row.max_tokens,
    }


def response_out(row: ModelResponse, *, hidden: bool) -> dict[str, Any]:
    """One entry of ``responses``. With ``hidden`` (a blind comparison before its reveal) every
    field that names or betrays the model is withheld: provider, model, the vendor's error text
    and finish reason (their wording is the vendor's), the price-derived cost and the model the
    vendor says answered. Text, status, timings and token counts stay: they are what is judged."""
    metrics = row.metrics
    if hidden and metrics is not None:
        metrics = metrics_hidden(metrics)
    return {
        "provider": None if hidden else row.provider,
        "modelName": None if hidden else row.model_name,
        "status": row.status,
        "content": row.content,
        "error": (HIDDEN_ERROR if hidden else row.error) if row.error else None,
        "finishReason": None if hidden else (row.finish_reason or None),
        "metrics": metrics,
    }


class TurnOut(Schema):
    turn: int = Field(..., description="0: the comparison's prompt; 1, 2, …: follow-ups.")
    prompt: str
    mode: str | None = Field(..., description="followUp or continueFrom; null for turn 0.")
    from_: str | None = Field(
        ..., alias="from", description="continueFrom: the slot key continued from."
    )
    status: str
    responses: dict[str, ResponseOut]


def turns_out(comparison: Comparison) -> list[dict[str, Any]]:
    """Every turn with its answers (masked as ``responses`` are while blind)."""
    hidden = comparison.identity_hidden
    out = []
    for turn in comparison_turns(comparison=comparison):
        statuses = [row.status for row in turn.rows]
        if all(status in RESPONSE_FINISHED for status in statuses):
            status = comparison_overall_status(statuses)
        else:
            status = "streaming"
        out.append(
            {
                "turn": turn.index,
                "prompt": turn.prompt,
                "mode": turn.mode,
                "from": turn.source,
                "status": status,
                "responses": {row.key: response_out(row, hidden=hidden) for row in turn.rows},
            }
        )
    return out


class SessionOut(Schema):
    """A saved comparison, as the seed's ``GET /sessions`` returned it (plus new fields)."""

    # The seed's clients read MongoDB's ``_id``; Django's attribute lookup refuses leading
    # underscores, so the value is read from ``id`` and only *written* as ``_id``.
    mongo_id: str = Field(..., validation_alias="id", serialization_alias="_id")
    id: str
    prompt: str
    system: str | None
    models: list[ModelSlotOut]
    responses: dict[str, ResponseOut]
    turns: list[TurnOut] = Field(
        ..., description="Every turn (the first prompt, then follow-ups) with its answers."
    )
    status: str
    blind: bool = Field(False, description="A blind battle (keys A, B, …).")
    revealed: bool = Field(True, description="false while a blind comparison's models are hidden.")
    userId: str
    replayOf: str | None
    createdAt: datetime
    updatedAt: datetime

    @staticmethod
    def resolve_system(obj: Comparison) -> str | None:
        return obj.system or None

    @staticmethod
    def resolve_models(obj: Comparison) -> list[dict[str, Any]]:
        return [slot_out(row, hidden=obj.identity_hidden) for row in obj.responses.all()]

    @staticmethod
    def resolve_responses(obj: Comparison) -> dict[str, dict[str, Any]]:
        hidden = obj.identity_hidden
        return {row.key: response_out(row, hidden=hidden) for row in obj.responses.all()}

    @staticmethod
    def resolve_turns(obj: Comparison) -> list[dict[str, Any]]:
        return turns_out(obj)

    @staticmethod
    def resolve_revealed(obj: Comparison) -> bool:
        return not obj.identity_hidden

    @staticmethod
    def resolve_userId(obj: Comparison) -> str:
        return obj.user_id

    @staticmethod
    def resolve_replayOf(obj: Comparison) -> str | None:
        return obj.replay_of_id

    @staticmethod
    def resolve_createdAt(obj: Comparison) -> datetime:
        return obj.created_at

    @staticmethod
    def resolve_updatedAt(obj: Comparison) -> datetime:
        return obj.updated_at


class NotFoundOut(Schema):
    statusCode: int = 404
    message: str


class InvalidOut(Schema):
    statusCode: int = 422
    message: str

"""REST output schemas: the seed's session shape, extended."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Field, Schema

from comparisons.models import Comparison, ModelResponse


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
    provider: str
    modelName: str = Field(..., validation_alias="model_name")
    temperature: float | None = None
    maxTokens: int | None = Field(None, validation_alias="max_tokens")


class ResponseOut(Schema):
    provider: str
    modelName: str
    status: str
    content: str
    error: str | None
    finishReason: str | None
    metrics: MetricsOut | None


def _response_out(row: ModelResponse) -> dict[str, Any]:
    return {
        "provider": row.provider,
        "modelName": row.model_name,
        "status": row.status,
        "content": row.content,
        "error": row.error or None,
        "finishReason": row.finish_reason or None,
        "metrics": row.metrics,
    }


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
    status: str
    userId: str
    replayOf: str | None
    createdAt: datetime
    updatedAt: datetime

    @staticmethod
    def resolve_system(obj: Comparison) -> str | None:
        return obj.system or None

    @staticmethod
    def resolve_models(obj: Comparison) -> list[ModelResponse]:
        return list(obj.responses.all())

    @staticmethod
    def resolve_responses(obj: Comparison) -> dict[str, dict[str, Any]]:
        return {row.key: _response_out(row) for row in obj.responses.all()}

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

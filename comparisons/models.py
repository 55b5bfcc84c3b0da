"""A comparison (the seed's "session") and one response per model slot."""

from __future__ import annotations

import secrets
from typing import Any

from django.db import models

from comparisons.events import Metrics


def new_comparison_id() -> str:
    """An opaque 24-hex-character id, the same shape as the seed's MongoDB ObjectIds."""
    return secrets.token_hex(12)


class ComparisonStatus(models.TextChoices):
    STREAMING = "streaming"
    COMPLETE = "complete"
    PARTIAL = "partial"  # some models failed
    ERROR = "error"  # every model failed
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the server process died mid-stream


class ResponseStatus(models.TextChoices):
    PENDING = "pending"
    STREAMING = "streaming"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


RESPONSE_FINISHED = frozenset(
    {
        ResponseStatus.COMPLETE,
        ResponseStatus.ERROR,
        ResponseStatus.CANCELLED,
        ResponseStatus.INTERRUPTED,
    }
)


class Comparison(models.Model):
    ID_MAX_LENGTH = 32

    id = models.CharField(
        primary_key=True, max_length=ID_MAX_LENGTH, default=new_comparison_id, editable=False
    )
    user_id = models.CharField(max_length=255, help_text="Clerk user id (the owner).")
    prompt = models.TextField()
    system = models.TextField(blank=True, default="")
    status = models.CharField(
        max_length=16, choices=ComparisonStatus.choices, default=ComparisonStatus.STREAMING
    )
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays"
    )
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of the process running it."
    )
    blind = models.BooleanField(
        default=False,
        help_text="Blind battle: slots keyed A, B, … in random order, models hidden until revealed.",
    )
    revealed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the owner revealed a blind comparison's models."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            models.Index(fields=["user_id", "-created_at", "-id"], name="comparison_user_created"),
            models.Index(fields=["status", "heartbeat_at"], name="comparison_status_heartbeat"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def identity_hidden(self) -> bool:
        """Whether the models behind the slots must not be shown (blind and not yet revealed)."""
        return self.blind and self.revealed_at is None

    @property
    def total_cost(self) -> float:
        rows = ModelResponse.all_turns.filter(comparison=self)
        return sum(r.estimated_cost or 0.0 for r in rows)


class TurnMode(models.TextChoices):
    FOLLOW_UP = "followUp"  # every model continues its own thread
    CONTINUE_FROM = "continueFrom"  # every model continues the chosen model's thread


class Turn(models.Model):
    """A follow-up prompt of a comparison (turn 1, 2, …; turn 0 is the comparison's own prompt,
    kept on :class:`Comparison`). Its answers are the :class:`ModelResponse` rows of its index."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveSmallIntegerField()
    #: The owner, denormalised: the per-minute start limit counts turns per user.
    user_id = models.CharField(max_length=255)
    prompt = models.TextField()
    mode = models.CharField(max_length=16, choices=TurnMode.choices, default=TurnMode.FOLLOW_UP)
    source_key = models.CharField(
        max_length=255, blank=True, default="", help_text="continueFrom: the slot continued from."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("comparison", "index")
        constraints = [
            models.UniqueConstraint(fields=["comparison", "index"], name="turn_comparison_index")
        ]
        indexes = [models.Index(fields=["user_id", "created_at"], name="turn_user_created")]

    def __str__(self) -> str:
        return f"{self.comparison_id} turn {self.index}"


class FirstTurnManager(models.Manager["ModelResponse"]):
    """The first turn's responses only: ``comparison.responses`` keeps meaning what it meant
    before follow-ups existed (the seed's ``responses``, votes' slots, replays). Every turn:
    ``ModelResponse.all_turns``."""

    def get_queryset(self) -> models.QuerySet[ModelResponse]:
        return super().get_queryset().filter(turn=0)


class ModelResponse(models.Model):
    """One model slot of a comparison in one turn: what was asked of it and what it answered."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="responses")
    turn = models.PositiveSmallIntegerField(default=0, help_text="0: the first prompt.")
    position = models.PositiveSmallIntegerField()
    key = models.CharField(max_length=255, help_text="Slot key: model name, #2/#3 on repeats.")
    provider = models.CharField(max_length=64)
    model_name = models.CharField(max_length=255)
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)

    status = models.CharField(
        max_length=16, choices=ResponseStatus.choices, default=ResponseStatus.PENDING
    )
    content = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    finish_reason = models.CharField(max_length=64, blank=True, default="")
    chunk_count = models.PositiveIntegerField(default=0)
    # Recorded pacing for `replay --recorded`: [[offset_ms, chunk_length], ...] from stream start.
    timeline = models.JSONField(default=list, blank=True)

    duration_ms = models.FloatField(null=True, blank=True)
    time_to_first_token_ms = models.FloatField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    cached_input_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Part of the input tokens, read from the vendor's cache."
    )
    reasoning_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Part of the output tokens, spent thinking."
    )
    estimated_cost = models.FloatField(
        null=True, blank=True, help_text="USD; empty when the model's price is unknown."
    )
    price_version = models.CharField(
        max_length=64, blank=True, default="", help_text="The price list the cost comes from."
    )
    response_model = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="The model the vendor says answered, when it differs from model_name.",
    )

    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = FirstTurnManager()
    all_turns = models.Manager["ModelResponse"]()

    class Meta:
        ordering = ("comparison", "turn", "position")
        base_manager_name = "all_turns"
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "turn", "position"], name="response_turn_slot_position"
            ),
            models.UniqueConstraint(
                fields=["comparison", "turn", "key"], name="response_turn_slot_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"

    @property
    def metrics(self) -> dict[str, Any] | None:
        """The seed's metrics object (plus the new fields), or None before the model finished.
        ``estimatedCost`` is ``None`` when the model's price is unknown."""
        if self.duration_ms is None:
            return None
        return Metrics(
            duration_ms=self.duration_ms,
            tokens_used=self.total_tokens or 0,
            estimated_cost=self.estimated_cost,
            time_to_first_token_ms=self.time_to_first_token_ms,
            input_tokens=self.input_tokens or 0,
            output_tokens=self.output_tokens or 0,
            tokens_per_second=self.tokens_per_second or 0.0,
            cached_input_tokens=self.cached_input_tokens or 0,
            reasoning_tokens=self.reasoning_tokens or 0,
            price_version=self.price_version or None,
            response_model=self.response_model or None,
        ).wire()

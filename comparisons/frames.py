"""Client -> server WebSocket payloads, validated with pydantic (one schema per event)."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from django.conf import settings
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)


def _storable(value: str) -> str:
    # Neither PostgreSQL text nor UTF-8 can hold U+0000 or a lone surrogate (JSON "\ud800"
    # decodes to one): refuse them here rather than fail in the database or the encoder.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (U+0000)")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("must not contain lone surrogates (U+D800-U+DFFF)") from None
    return value


#: Every inbound string: strict (no coercion), NUL-free and valid Unicode.
Text = Annotated[StrictStr, AfterValidator(_storable)]
RequestId = Annotated[Text, Field(min_length=1, max_length=128)]


class Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ModelChoice(Frame):
    provider: Annotated[Text, Field(min_length=1, max_length=64)]
    model: Annotated[Text, Field(min_length=1, max_length=255)] | None = None
    temperature: Annotated[StrictFloat | StrictInt, Field(ge=0, le=2)] | None = None
    maxTokens: Annotated[StrictInt, Field(ge=1, le=200_000)] | None = None


class StartComparison(Frame):
    """``startComparison``: the seed's ``{prompt, providers}`` or ``{prompt, models, ...}``."""

    prompt: Text
    providers: list[Annotated[Text, Field(min_length=1, max_length=64)]] | None = None
    models: list[ModelChoice] | None = None
    system: Annotated[Text, Field(max_length=32_000)] | None = None
    requestId: RequestId | None = None
    #: *(new)* A blind battle: keys ``A``, ``B``, … in random order, models hidden until revealed.
    blind: StrictBool = False

    @field_validator("prompt")
    @classmethod
    def _prompt_size(cls, value: str, info: ValidationInfo) -> str:
        return _prompt_checked(value)

    @model_validator(mode="after")
    def _model_count(self) -> StartComparison:
        if self.providers is not None and self.models is not None:
            raise ValueError("give either providers or models, not both")
        choices = self.choices()
        if not choices:
            raise ValueError("choose at least one model (providers or models)")
        limit = settings.PLAYGROUND_MAX_MODELS
        if len(choices) > limit:
            raise ValueError(f"{len(choices)} models requested; the limit is {limit}")
        if self.blind and len(choices) < 2:
            raise ValueError("a blind comparison needs at least two models")
        return self

    def choices(self) -> list[ModelChoice]:
        if self.models is not None:
            return list(self.models)
        return [ModelChoice(provider=p) for p in self.providers or []]


class SessionRef(Frame):
    sessionId: Annotated[Text, Field(min_length=1, max_length=64)]


class ModelRef(SessionRef):
    model: Annotated[Text, Field(min_length=1, max_length=255)]


def _prompt_checked(value: str) -> str:
    if not value.strip():
        raise ValueError("prompt must not be empty")
    limit = settings.PLAYGROUND_MAX_PROMPT_CHARS
    if len(value) > limit:
        raise ValueError(f"prompt is {len(value)} characters; the limit is {limit}")
    return value


Prompt = Annotated[Text, AfterValidator(_prompt_checked)]
SlotKey = Annotated[Text, Field(min_length=1, max_length=255)]


class SendFollowUp(SessionRef):
    """``sendFollowUp`` *(new)*: the next turn; each model (or only ``models``, slot keys)
    continues its own conversation."""

    prompt: Prompt
    models: Annotated[list[SlotKey], Field(min_length=1, max_length=26)] | None = None

    @field_validator("models")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each model may be named once")
        return value


class ContinueFrom(SessionRef):
    """``continueFrom`` *(new)*: the next turn; every model continues the conversation of
    ``model`` (a slot key), whose last answer becomes their shared context."""

    model: SlotKey
    prompt: Prompt


Turn = Annotated[StrictInt, Field(ge=0, le=10_000)]


class VoteCast(SessionRef):
    """``vote`` *(new)*: a slot key (``A``, ``B``, … in a blind comparison), ``tie`` or
    ``bothBad``, on ``turn`` (default 0)."""

    winner: Annotated[Text, Field(min_length=1, max_length=255)]
    turn: Turn = 0
    #: Also stop the models still streaming (a verdict reached mid-stream).
    stop: StrictBool = False


class VoteRetract(SessionRef):
    """``unvote`` *(new)*: undo the vote on ``turn`` (default 0)."""

    turn: Turn = 0


class FlagRef(SessionRef):
    """``flag`` / ``unflag`` *(new)*: slot ``key``'s answer on ``turn`` (default 0) names (or
    no longer names) its own model."""

    key: Annotated[Text, Field(min_length=1, max_length=255)]
    turn: Turn = 0


class TagsReplace(SessionRef):
    """``setTags`` *(new)*: the comparison's tags from now on (the service normalises them and
    refuses more than ten distinct ones; this bound only keeps a frame small)."""

    tags: Annotated[list[Annotated[Text, Field(max_length=200)]], Field(max_length=50)]


def describe_error(event: str, error: ValidationError) -> str:
    """A one-line, user-facing summary of what is wrong with a payload."""
    parts = []
    for item in error.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return f"Invalid {event}: " + "; ".join(parts)


F = TypeVar("F", bound=Frame)


def parse(schema: type[F], event: str, data: Any) -> F:
    """Validate ``data`` for ``event``; raises ``ValueError`` with a readable message."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise ValueError(describe_error(event, exc)) from None

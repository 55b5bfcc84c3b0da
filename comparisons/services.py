"""Write-side business logic for comparisons (HackSoft style: ``<entity>_<action>``).

Every function here is synchronous and does one unit of database work; async callers cross the
boundary once per call with ``sync_to_async``.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    InterfaceError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.db.models import Count, Field, Model, Q
from django.utils import timezone

from comparisons import selectors
from comparisons.models import (
    RESPONSE_FINISHED,
    Comparison,
    ComparisonStatus,
    ModelResponse,
    ResponseStatus,
    Turn,
    TurnMode,
)
from comparisons.selectors import TurnView
from providers.types import Message

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """One model slot requested for a comparison."""

    provider: str
    model: str
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(slots=True)
class ResponseProgress:
    """The state of one slot to persist (a flush while streaming, or its final state)."""

    key: str
    status: str
    content: str
    chunk_count: int
    timeline: list[list[float]] = field(default_factory=list)
    #: The comparison's turn this slot answers (0: the first prompt).
    turn: int = 0
    error: str = ""
    finish_reason: str = ""
    duration_ms: float | None = None
    time_to_first_token_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    tokens_per_second: float | None = None
    cached_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    estimated_cost: float | None = None
    price_version: str = ""
    response_model: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


PROGRESS_FIELDS = [
    "status",
    "content",
    "chunk_count",
    "timeline",
    "error",
    "finish_reason",
    "duration_ms",
    "time_to_first_token_ms",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "tokens_per_second",
    "cached_input_tokens",
    "reasoning_tokens",
    "estimated_cost",
    "price_version",
    "response_model",
    "started_at",
    "finished_at",
]


def slot_keys(model_names: Sequence[str]) -> list[str]:
    """Slot keys: the model name, suffixed ``#2``, ``#3`` when it appears again."""
    seen: dict[str, int] = {}
    keys = []
    for name in model_names:
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


BLIND_KEYS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def blind_keys(count: int) -> list[str]:
    """Slot keys of a blind comparison: ``A``, ``B``, … (they say nothing about the model)."""
    if count > len(BLIND_KEYS):
        raise ValueError(f"A blind comparison has at most {len(BLIND_KEYS)} models")
    return list(BLIND_KEYS[:count])


def slots_shuffle(*, slots: Sequence[SlotSpec]) -> list[SlotSpec]:
    """The slots in a random order (OS randomness), for a blind comparison's columns."""
    shuffled = list(slots)
    secrets.SystemRandom().shuffle(shuffled)
    return shuffled


class BlindNeedsTwoModels(ValueError):
    """A blind comparison was asked for with fewer than two models."""


class LimitExceeded(Exception):
    """The user may not start another comparison now; the message says why."""


def _lock_user(user_id: str) -> None:
    """Serialise concurrent starts of one user (PostgreSQL advisory lock; SQLite's IMMEDIATE
    transactions already serialise writers)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_SQL, [f"comparison:{user_id}"])


_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext(%s))"


def _usage_sql(user_id: str) -> tuple[str, list[Any]]:
    """PostgreSQL: the user's running comparisons and starts in the last minute, one query."""
    since = timezone.now() - timedelta(minutes=1)
    # A follow-up turn is a start too (``turn_user_created`` serves its count).
    sql = (
        "SELECT count(*) FILTER (WHERE status = %s), count(*) FILTER (WHERE created_at >= %s)"
        f" + (SELECT count(*) FROM {Turn._meta.db_table} WHERE user_id = %s AND created_at >= %s)"
        f" FROM {Comparison._meta.db_table} WHERE user_id = %s"
    )
    return sql, [ComparisonStatus.STREAMING.value, since, user_id, since, user_id]


def _refusal(running: int, recent: int) -> LimitExceeded | None:
    running_limit = settings.PLAYGROUND_MAX_RUNNING_PER_USER
    rate_limit = settings.PLAYGROUND_MAX_STARTS_PER_MINUTE
    if running >= running_limit:
        return LimitExceeded(
            f"You already have {running} comparisons running (limit {running_limit}); "
            "wait for one to finish or cancel it."
        )
    if recent >= rate_limit:
        return LimitExceeded(
            f"You started {recent} comparisons in the last minute (limit {rate_limit}); "
            "try again shortly."
        )
    return None


def _check_limits(user_id: str) -> None:
    since = timezone.now() - timedelta(minutes=1)
    row = Comparison.objects.filter(user_id=user_id).aggregate(
        running=Count("pk", filter=Q(status=ComparisonStatus.STREAMING)),
        recent=Count("pk", filter=Q(created_at__gte=since)),
    )
    turns = Turn.objects.filter(user_id=user_id, created_at__gte=since).count()
    refusal = _refusal(row["running"], row["recent"] + turns)
    if refusal is not None:
        raise refusal


def _new_rows(
    *,
    comparison_id: str | None,
    user_id: str,
    prompt: str,
    system: str,
    slots: Sequence[SlotSpec],
    replay_of_id: str | None,
    blind: bool = False,
) -> tuple[Comparison, list[ModelResponse]]:
    comparison = Comparison(
        **({"id": comparison_id} if comparison_id else {}),
        user_id=user_id,
        prompt=prompt,
        system=system,
        status=ComparisonStatus.STREAMING,
        replay_of_id=replay_of_id,
        heartbeat_at=timezone.now(),
        blind=blind,
    )
    keys = blind_keys(len(slots)) if blind else slot_keys([slot.model for slot in slots])
    responses = [
        ModelResponse(
            comparison=comparison,
            position=position,
            key=key,
            provider=slot.provider,
            model_name=slot.model,
            temperature=slot.temperature,
            max_tokens=slot.max_tokens,
        )
        for position, (key, slot) in enumerate(zip(keys, slots, strict=True))
    ]
    return comparison, responses


def _insert_sql(model: type[Model], objs: list[Model]) -> list[tuple[str, Sequence[Any]]]:
    """One multi-row ``INSERT`` of ``objs``, the values prepared as ``bulk_create`` prepares
    them (``pre_save``, ``get_db_prep_save``), without its SQL compiler on the start path."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each access through the proxy costs
    quote = db.ops.quote_name
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and f.auto_created)]
    columns = ", ".join(quote(f.column or f.attname) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns})"
        f" VALUES {', '.join([row] * len(objs))}"
    )
    params = [f.get_db_prep_save(f.pre_save(obj, True), db) for obj in objs for f in fields]
    return [(sql, params)]


def _create_pipelined(comparison: Comparison, responses: list[ModelResponse]) -> None:
    """PostgreSQL, outside any transaction: lock, count, insert and commit (or roll back) in
    two network round trips instead of seven (``BEGIN`` … ``COMMIT`` pipelined)."""
    connection.ensure_connection()
    raw = connection.connection
    count_sql, count_params = _usage_sql(comparison.user_id)
    inserts = _insert_sql(Comparison, [comparison]) + _insert_sql(ModelResponse, list(responses))
    with raw.cursor() as cursor, raw.cursor() as usage:
        try:
            with raw.pipeline():
                cursor.execute("BEGIN")
                # The commit does not wait for the WAL flush (2.5-3.6 ms here), which every
                # start's provider call and sessionCreated waited for. Other sessions see the
                # rows and the lock is released at commit as before; only a crash of PostgreSQL
                # itself within ~0.6 s (3 x wal_writer_delay) can lose them.
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
                cursor.execute(_LOCK_SQL, [f"comparison:{comparison.user_id}"])
                usage.execute(count_sql, count_params)
                for sql, params in inserts:
                    cursor.execute(sql, params)
            row = usage.fetchone() or (0, 0)
            refusal = _refusal(int(row[0]), int(row[1]))
        except BaseException:
            raw.rollback()
            raise
        if refusal is not None:
            cursor.execute("ROLLBACK")
            raise refusal
        cursor.execute("COMMIT")


def comparison_create(
    *,
    user_id: str,
    prompt: str,
    system: str = "",
    slots: Sequence[SlotSpec],
    replay_of_id: str | None = None,
    enforce_limits: bool = True,
    comparison_id: str | None = None,
    blind: bool = False,
) -> Comparison:
    """Create a streaming comparison and one pending response per slot, in one transaction.

    ``comparison_id`` is the id its run already uses (a new one when omitted).

    ``blind``: keys ``A``, ``B``, … in the order given (callers shuffle with
    :func:`slots_shuffle`); needs two or more slots, else :class:`BlindNeedsTwoModels`.

    With ``enforce_limits`` the per-user running and per-minute limits are checked under a
    per-user lock in the same transaction, so they hold across server instances sharing the
    database. Raises :class:`LimitExceeded`.
    """
    if blind and len(slots) < 2:
        raise BlindNeedsTwoModels("A blind comparison needs at least two models")
    comparison, responses = _new_rows(
        comparison_id=comparison_id,
        user_id=user_id,
        prompt=prompt,
        system=system,
        slots=slots,
        replay_of_id=replay_of_id,
        blind=blind,
    )
    if enforce_limits and connection.vendor == "postgresql" and not connection.in_atomic_block:
        _create_pipelined(comparison, responses)
        comparison._state.adding = False
        comparison._state.db = connection.alias
        return comparison
    with transaction.atomic():
        if enforce_limits:
            _lock_user(user_id)
            _check_limits(user_id)
        comparison.save(force_insert=True)
        ModelResponse.objects.bulk_create(responses)
    return comparison


def _progress_fields() -> list[Field[Any, Any]]:
    by_name = {field.name: field for field in ModelResponse._meta.concrete_fields}
    return [by_name[name] for name in PROGRESS_FIELDS]


def _progress_statement() -> str:
    quote = connection.ops.quote_name
    assignments = ", ".join(
        f"{quote(f.get_attname_column()[1] or f.name)} = %s" for f in _progress_fields()
    )
    return (
        f"UPDATE {quote(ModelResponse._meta.db_table)} SET {assignments}"
        f" WHERE {quote('comparison_id')} = %s AND {quote('key')} = %s AND {quote('turn')} = %s"
    )


def _progress_statement_values(count: int) -> str:
    """PostgreSQL: one ``UPDATE … FROM (VALUES …)`` for ``count`` slots (each value cast to its
    column's type, so NULLs and JSON keep their types)."""
    head, row, tail = _progress_statement_parts(connection.vendor)
    return f"{head}{', '.join([row] * count)}{tail}"


@functools.cache
def _progress_statement_parts(vendor: str) -> tuple[str, str, str]:
    # The same for every flush of this process (built per call, its casts were ~12 % of a
    # save's CPU); ``vendor`` keys it to the one database it was built for.
    quote = connection.ops.quote_name
    fields = _progress_fields()
    columns = [quote(f.get_attname_column()[1] or f.name) for f in fields]
    casts = [f"%s::{f.cast_db_type(connection)}" for f in fields]
    casts += ["%s::varchar", "%s::varchar", "%s::integer"]
    row = f"({', '.join(casts)})"
    names = [*columns, quote("_comparison_id"), quote("_key"), quote("_turn")]
    assignments = ", ".join(f"{c} = v.{c}" for c in columns)
    table = quote(ModelResponse._meta.db_table)
    head = f"UPDATE {table} AS t SET {assignments} FROM (VALUES "
    tail = (
        f") AS v({', '.join(names)})"
        f" WHERE t.{quote('comparison_id')} = v.{quote('_comparison_id')}"
        f" AND t.{quote('key')} = v.{quote('_key')}"
        f" AND t.{quote('turn')} = v.{quote('_turn')}"
    )
    return head, row, tail


def _progress_write(
    *,
    progress: Sequence[tuple[str, ResponseProgress]],
    alive: Sequence[str],
    status: str | None,
) -> None:
    if progress:
        fields = _progress_fields()
        # The thread's connection itself: each attribute read through the ``connection`` proxy
        # costs ~1.3 µs (two asgiref locals), and the fields read it ~40 times per slot.
        wrapper = connections[DEFAULT_DB_ALIAS]
        rows = [
            [field.get_db_prep_save(getattr(item, field.name), wrapper) for field in fields]
            + [comparison_id, item.key, item.turn]
            for comparison_id, item in progress
        ]
        with wrapper.cursor() as cursor:
            if wrapper.vendor == "postgresql":
                cursor.execute(_progress_statement_values(len(rows)), [v for r in rows for v in r])
            else:
                cursor.executemany(_progress_statement(), rows)
    if alive:
        now = timezone.now()
        updates: dict[str, object] = {"heartbeat_at": now, "updated_at": now}
        if status is not None:
            updates["status"] = status
        Comparison.objects.filter(pk__in=list(alive)).update(**updates)


#: The database itself is unusable: trying each comparison on its own would fail alike.
CONNECTION_ERRORS = (OperationalError, InterfaceError)


def connection_drop() -> None:
    """Close this thread's database connection, so the next query opens a fresh one (after a
    connection error; a persistent connection would otherwise be reused broken)."""
    connection.close()


def comparison_progress_save(
    *,
    progress: Sequence[tuple[str, ResponseProgress]],
    alive: Sequence[str] = (),
    status: str | None = None,
) -> list[str]:
    """Persist model slots' progress (``(comparison id, progress)`` pairs) and the heartbeat of
    the ``alive`` comparisons (and set their final ``status``); returns the ids of the
    comparisons whose progress could not be saved.

    On PostgreSQL one ``UPDATE … FROM (VALUES …)`` for all the slots (elsewhere one per slot,
    sent together) and one for the heartbeats, in one transaction, however many comparisons are
    in the batch. When that fails (a value no column can hold), each comparison is saved in a
    transaction of its own, so one bad row never blocks the others; a comparison that fails
    keeps its heartbeat (its run is alive) but not its new progress or status. Connection
    failures raise.
    """
    try:
        with transaction.atomic():
            _progress_write(progress=progress, alive=alive, status=status)
        return []
    except CONNECTION_ERRORS:
        raise
    except Exception:  # isolated below, comparison by comparison, and logged there
        pass
    return _progress_save_each(progress=progress, alive=alive, status=status)


def _progress_save_each(
    *,
    progress: Sequence[tuple[str, ResponseProgress]],
    alive: Sequence[str],
    status: str | None,
) -> list[str]:
    by_comparison: dict[str, list[tuple[str, ResponseProgress]]] = {}
    for pair in progress:
        by_comparison.setdefault(pair[0], []).append(pair)
    living = set(alive)
    failed: list[str] = []
    for comparison_id, pairs in by_comparison.items():
        try:
            with transaction.atomic():
                _progress_write(
                    progress=pairs,
                    alive=[comparison_id] if comparison_id in living else [],
                    status=status,
                )
        except CONNECTION_ERRORS:
            raise
        except Exception as exc:
            # Model output is in the values (and may be in the error's text): never logged.
            logger.error(
                "Could not save the progress of comparison %s (%s)",
                comparison_id,
                type(exc).__name__,
            )
            failed.append(comparison_id)
    others = [comparison_id for comparison_id in alive if comparison_id not in by_comparison]
    with transaction.atomic():
        if others:
            _progress_write(progress=(), alive=others, status=status)
        stalled = [comparison_id for comparison_id in failed if comparison_id in living]
        if stalled:
            comparison_heartbeat(comparison_ids=stalled)
    return failed


class ProgressNotSaved(Exception):
    """A comparison's progress holds a value the database cannot store (see the log)."""


def comparison_save_progress(
    *, comparison_id: str, progress: Sequence[ResponseProgress], status: str | None = None
) -> None:
    """Persist one comparison's slots' progress and heartbeat (and a final status), atomically.

    Raises :class:`ProgressNotSaved` when its progress cannot be stored (its heartbeat still
    moves)."""
    if comparison_progress_save(
        progress=[(comparison_id, item) for item in progress], alive=[comparison_id], status=status
    ):
        raise ProgressNotSaved(f"The progress of comparison {comparison_id} was not saved")


def comparison_overall_status(statuses: Sequence[str], *, cancelled: bool = False) -> str:
    """The comparison's final status from its slots' final statuses."""
    if cancelled:
        return ComparisonStatus.CANCELLED
    if any(s == ResponseStatus.INTERRUPTED for s in statuses):
        return ComparisonStatus.INTERRUPTED
    failed = sum(1 for s in statuses if s in (ResponseStatus.ERROR, ResponseStatus.CANCELLED))
    if failed == 0:
        return ComparisonStatus.COMPLETE
    if failed == len(statuses):
        return ComparisonStatus.ERROR
    return ComparisonStatus.PARTIAL


def comparison_heartbeat(*, comparison_ids: Sequence[str]) -> None:
    """Mark the given running comparisons as alive now."""
    Comparison.objects.filter(pk__in=list(comparison_ids)).update(heartbeat_at=timezone.now())


@transaction.atomic
def comparison_sweep_stale(*, stale_before: datetime) -> list[str]:
    """Mark comparisons whose process stopped beating ``interrupted``, keeping saved text."""
    stale = list(
        Comparison.objects.select_for_update()
        .filter(status=ComparisonStatus.STREAMING)
        .filter(Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True))
        .values_list("id", flat=True)
    )
    if not stale:
        return []
    now = timezone.now()
    ModelResponse.all_turns.filter(comparison_id__in=stale).exclude(
        status__in=list(RESPONSE_FINISHED)
    ).update(
        status=ResponseStatus.INTERRUPTED,
        error="The server stopped while streaming.",
        finished_at=now,
    )
    Comparison.objects.filter(pk__in=stale).update(
        status=ComparisonStatus.INTERRUPTED, updated_at=now
    )
    return stale


class PlanError(ValueError):
    """A requested model slot cannot be run (unknown provider or model)."""


def comparison_plan(*, choices: Sequence[Any]) -> list[SlotSpec]:
    """Resolve requested ``{provider, model?, temperature?, maxTokens?}`` choices into slots.

    Unknown providers and models are refused here, before anything is created or called.
    A provider without a key is *not* refused: that model alone fails with "not configured".
    """
    from providers.registry import providers
    from providers.types import UnknownModel

    slots = []
    for choice in choices:
        if choice.provider not in providers:
            known = ", ".join(sorted(providers.aliases()))
            raise PlanError(f"Unknown provider '{choice.provider}'; available: {known}")
        provider = providers[choice.provider]
        model = choice.model or provider.default_model
        try:
            provider.model_info(model)
        except UnknownModel as exc:
            raise PlanError(exc.message) from None
        slots.append(
            SlotSpec(
                provider=choice.provider,
                model=model,
                temperature=choice.temperature,
                max_tokens=choice.maxTokens,
            )
        )
    return slots


# --- follow-up turns ---------------------------------------------------------------------------


class TurnRefused(ValueError):
    """A follow-up turn cannot start (``str()`` says why)."""


class SessionNotFound(TurnRefused):
    """No comparison of this user has that id (another user's answers the same)."""


@dataclass(frozen=True, slots=True)
class TurnSlot:
    """One model slot of a follow-up turn, with the conversation it continues."""

    key: str
    provider: str
    model: str
    temperature: float | None
    max_tokens: int | None
    history: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class TurnPlan:
    """A follow-up turn as planned from the saved comparison (admitted by
    :func:`comparison_turn_create`)."""

    comparison_id: str
    index: int
    prompt: str
    system: str
    mode: str
    source_key: str
    hidden: bool
    slots: list[TurnSlot]
    #: The turns before this one (for snapshots).
    earlier: list[TurnView]


def turn_threads(*, turns: Sequence[TurnView]) -> dict[str, list[Message]]:
    """Each slot's conversation so far (user prompt, its answer, …), after the last turn.

    A turn a slot did not answer (not chosen, or failed without text) adds nothing to its
    thread; a ``continueFrom`` turn first replaces every thread with the chosen slot's."""
    keys = [row.key for row in turns[0].rows] if turns else []
    threads: dict[str, list[Message]] = {key: [] for key in keys}
    for turn in turns:
        if turn.mode == TurnMode.CONTINUE_FROM and turn.source is not None:
            shared = threads.get(turn.source, [])
            threads = {key: list(shared) for key in keys}
        for row in turn.rows:
            if row.content:
                threads[row.key] += [
                    Message("user", turn.prompt),
                    Message("assistant", row.content),
                ]
    return threads


def comparison_turn_plan(
    *,
    user_id: str,
    comparison_id: str,
    prompt: str,
    mode: str = TurnMode.FOLLOW_UP,
    keys: Sequence[str] | None = None,
    source_key: str = "",
) -> TurnPlan:
    """Plan the next turn of the caller's comparison: ``followUp`` continues each chosen slot
    (``keys``, default all) with its own thread; ``continueFrom`` continues every slot with the
    thread of ``source_key``, whose answer in the last turn must have text.

    Raises :class:`SessionNotFound` (missing or another user's), :class:`TurnRefused`."""
    comparison = selectors.comparison_get(user_id=user_id, comparison_id=comparison_id)
    if comparison is None:
        raise SessionNotFound(f"Session {comparison_id} not found")
    if comparison.status == ComparisonStatus.STREAMING:
        raise TurnRefused(
            f"Session {comparison_id} is still answering; wait for comparisonComplete "
            "(or cancel it) before sending a follow-up"
        )
    turns = selectors.comparison_turns(comparison=comparison)
    first = turns[0].rows
    known = [row.key for row in first]
    last = turns[-1].index
    threads = turn_threads(turns=turns)
    chosen = list(known)
    if mode == TurnMode.CONTINUE_FROM:
        if source_key not in known:
            raise TurnRefused(f"Session {comparison_id} has no model '{source_key}'")
        answer = next((r for r in turns[-1].rows if r.key == source_key), None)
        if answer is None or not answer.content:
            raise TurnRefused(
                f"Model '{source_key}' has no answer in turn {last} of session "
                f"{comparison_id} to continue from"
            )
        shared = tuple(threads[source_key])
        histories = {key: shared for key in known}
    else:
        if keys:
            unknown = [key for key in keys if key not in known]
            if unknown:
                raise TurnRefused(f"Session {comparison_id} has no model '{unknown[0]}'")
            chosen = [key for key in known if key in set(keys)]
        histories = {key: tuple(threads[key]) for key in chosen}
    return TurnPlan(
        comparison_id=comparison.id,
        index=last + 1,
        prompt=prompt,
        system=comparison.system,
        mode=str(mode),
        source_key=source_key if mode == TurnMode.CONTINUE_FROM else "",
        hidden=comparison.identity_hidden,
        slots=[
            TurnSlot(
                key=row.key,
                provider=row.provider,
                model=row.model_name,
                temperature=row.temperature,
                max_tokens=row.max_tokens,
                history=histories[row.key],
            )
            for row in first
            if row.key in histories
        ],
        earlier=turns,
    )


def comparison_turn_create(*, user_id: str, plan: TurnPlan, enforce_limits: bool = True) -> Turn:
    """Admit and save a planned turn: its prompt and one pending response per slot, the
    comparison ``streaming`` again. Under the per-user lock, in one transaction, as a start:
    the same running and per-minute limits (:class:`LimitExceeded`), and a turn that another
    request started meanwhile refuses this one (:class:`TurnRefused`)."""
    with transaction.atomic():
        if enforce_limits:
            _lock_user(user_id)
        comparison = (
            Comparison.objects.select_for_update()
            .filter(pk=plan.comparison_id, user_id=user_id)
            .first()
        )
        if comparison is None:
            raise SessionNotFound(f"Session {plan.comparison_id} not found")
        latest = comparison.turns.order_by("-index").values_list("index", flat=True).first()
        if comparison.status == ComparisonStatus.STREAMING or (latest or 0) + 1 != plan.index:
            raise TurnRefused(
                f"Session {plan.comparison_id} is still answering; wait for comparisonComplete "
                "(or cancel it) before sending a follow-up"
            )
        if enforce_limits:
            _check_limits(user_id)
        turn = Turn.objects.create(
            comparison=comparison,
            index=plan.index,
            user_id=user_id,
            prompt=plan.prompt,
            mode=plan.mode,
            source_key=plan.source_key,
        )
        positions = {
            row.key: row.position for row in ModelResponse.objects.filter(comparison=comparison)
        }
        ModelResponse.all_turns.bulk_create(
            [
                ModelResponse(
                    comparison=comparison,
                    turn=plan.index,
                    position=positions[slot.key],
                    key=slot.key,
                    provider=slot.provider,
                    model_name=slot.model,
                    temperature=slot.temperature,
                    max_tokens=slot.max_tokens,
                )
                for slot in plan.slots
            ]
        )
        now = timezone.now()
        Comparison.objects.filter(pk=comparison.pk).update(
            status=ComparisonStatus.STREAMING, heartbeat_at=now, updated_at=now
        )
    return turn

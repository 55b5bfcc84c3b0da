"""Votes on comparisons, the battles they count as, flags, tags, share links, cached boards.

A vote belongs to a comparison *turn* (0 = the first prompt; follow-up turns add 1, 2, …), so
follow-ups can be judged one by one.
"""

from __future__ import annotations

from django.db import models

from comparisons.models import Comparison

TAG_MAX_LENGTH = 40


class Outcome(models.TextChoices):
    """What a vote says besides naming a winning slot key."""

    TIE = "tie"
    BOTH_BAD = "bothBad"


class Vote(models.Model):
    """One user's verdict on one turn of a comparison (one per user, comparison and turn)."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="votes")
    turn = models.PositiveSmallIntegerField(default=0)
    user_id = models.CharField(max_length=255, help_text="Clerk user id of the voter.")
    winner = models.CharField(max_length=255, help_text="A slot key, 'tie' or 'bothBad'.")
    blind = models.BooleanField(
        help_text="Cast while the models were hidden: only such votes count in ratings."
    )
    void = models.BooleanField(
        default=False, help_text="An answer of this turn named its own model: not counted."
    )
    slot_models = models.JSONField(
        default=dict, help_text="The models behind each key when cast: {key: 'provider:model'}."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("comparison", "turn", "user_id")
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "turn", "user_id"], name="vote_one_per_user_turn"
            )
        ]
        indexes = [models.Index(fields=["user_id", "-updated_at"], name="vote_user_updated")]

    def __str__(self) -> str:
        return f"{self.comparison_id}/{self.turn}: {self.winner}"

    @property
    def counted(self) -> bool:
        return self.blind and not self.void


class Battle(models.Model):
    """One pairwise result a counted vote stands for (a vote over N models is N-1 or
    N(N-1)/2 of them), in an append-only ledger: a changed, undone or voided vote adds a
    ``delta = -1`` copy of each of its rows instead of deleting them. The rating fit sums
    ``delta``; the same writes keep its sums per scope, tag and day (:class:`PairTally`).
    ``model_a < model_b``. Rows are never deleted outside ``arena_ratings --rebuild`` (which also
    drops the stored boards): anything that deletes comparisons must rebuild afterwards."""

    class Result(models.TextChoices):
        A = "a"
        B = "b"
        TIE = "tie"
        BOTH_BAD = "bothBad"

    vote = models.ForeignKey(
        Vote, null=True, blank=True, on_delete=models.SET_NULL, related_name="battles"
    )
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="+")
    user_id = models.CharField(max_length=255)
    cast_at = models.DateTimeField()
    model_a = models.CharField(max_length=320)
    model_b = models.CharField(max_length=320)
    result = models.CharField(max_length=8, choices=Result.choices)
    delta = models.SmallIntegerField(default=1, help_text="+1 counted, -1 withdrawn.")
    votes = models.SmallIntegerField(
        default=0, help_text="±1 on the first battle of a vote (to count votes), else 0."
    )
    withdrawn = models.BooleanField(
        default=False, help_text="A +1 row a later -1 row cancels (bookkeeping only)."
    )

    class Meta:
        indexes = [
            models.Index(fields=["user_id", "cast_at"], name="battle_user_cast"),
            models.Index(fields=["cast_at"], name="battle_cast"),
        ]

    def __str__(self) -> str:
        return f"{self.model_a} vs {self.model_b}: {self.result} ({self.delta:+d})"


class PairTally(models.Model):
    """The ledger's sums per board scope, tag and ``(model_a, model_b, result)``, kept by the
    writes that add ledger rows and by tag changes: a board without period is fitted from these
    few rows (pairs by results) instead of a ``GROUP BY`` over every battle (docs/benchmarks.md).
    ``tag = ''`` holds every battle of the scope; a tag's rows hold the battles of the
    comparisons that carry it now."""

    scope = models.CharField(max_length=300, help_text="'*' (all users) or 'u:<user id>'.")
    tag = models.CharField(
        max_length=TAG_MAX_LENGTH, blank=True, default="", help_text="'' for any."
    )
    model_a = models.CharField(max_length=320)
    model_b = models.CharField(max_length=320)
    result = models.CharField(max_length=8, choices=Battle.Result.choices)
    battles = models.BigIntegerField(default=0)
    votes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "tag", "model_a", "model_b", "result"], name="pair_tally_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.tag} {self.model_a} vs {self.model_b}: {self.result}"


class DailyPairTally(models.Model):
    """:class:`PairTally` per UTC day of the battles' ``cast_at``: a ``since`` board sums the
    days from the since-day onward (docs/protocol.md, "Leaderboard")."""

    scope = models.CharField(max_length=300)
    tag = models.CharField(max_length=TAG_MAX_LENGTH, blank=True, default="")
    day = models.DateField(help_text="The UTC date of the battles' cast_at.")
    model_a = models.CharField(max_length=320)
    model_b = models.CharField(max_length=320)
    result = models.CharField(max_length=8, choices=Battle.Result.choices)
    battles = models.BigIntegerField(default=0)
    votes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "tag", "day", "model_a", "model_b", "result"],
                name="daily_pair_tally_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.tag} {self.day} {self.model_a} vs {self.model_b}: {self.result}"


class SelfNamedFlag(models.Model):
    """The owner's flag on an answer that names its own model: that turn's vote does not count."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="flags")
    turn = models.PositiveSmallIntegerField(default=0)
    key = models.CharField(max_length=255)
    user_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("comparison", "turn", "key")
        constraints = [
            models.UniqueConstraint(fields=["comparison", "turn", "key"], name="flag_one_per_slot")
        ]

    def __str__(self) -> str:
        return f"{self.comparison_id}/{self.turn}/{self.key}"


class Tag(models.Model):
    """A topic the owner gave a comparison's prompt, to re-rank the leaderboard by topic."""

    MAX_LENGTH = TAG_MAX_LENGTH

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=MAX_LENGTH)

    class Meta:
        ordering = ("comparison", "name")
        constraints = [models.UniqueConstraint(fields=["comparison", "name"], name="tag_unique")]
        indexes = [models.Index(fields=["name"], name="tag_name")]

    def __str__(self) -> str:
        return self.name


class Share(models.Model):
    """A read-only link to a comparison. Only the SHA-256 of its token is stored: the token
    itself is shown once, to the owner who made it."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="shares")
    token_digest = models.CharField(max_length=64, unique=True)
    created_by = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"share of {self.comparison_id} ({state})"


class Counter(models.Model):
    """A version number bumped by every change that can move a leaderboard: ``*`` for the
    team-wide board, ``u:<user id>`` for that user's own."""

    key = models.CharField(primary_key=True, max_length=300)
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key}@{self.version}"


class Leaderboard(models.Model):
    """A computed board (materialised): served as is while ``version`` (and, for a tag board,
    ``tags_version``) is its counter's; when stale, refitted from the kept pair sums.
    ``since`` is the board's UTC since-day (``YYYY-MM-DD``) or ''."""

    scope = models.CharField(max_length=300, help_text="'*' (all users) or 'u:<user id>'.")
    tag = models.CharField(max_length=Tag.MAX_LENGTH, blank=True, default="")
    since = models.CharField(max_length=TAG_MAX_LENGTH, blank=True, default="")
    version = models.BigIntegerField()
    tags_version = models.BigIntegerField(default=0)
    result = models.JSONField()
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "tag", "since"], name="leaderboard_key")
        ]

    def __str__(self) -> str:
        return f"{self.scope} tag={self.tag or '-'} since={self.since or '-'} @{self.version}"

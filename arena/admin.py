"""Votes and share links in the admin: searchable, read-only (they are the users' own acts)."""

from __future__ import annotations

from django.contrib import admin

from arena.models import Battle, Leaderboard, SelfNamedFlag, Share, Vote
from comparisons.admin import ReadOnlyMixin


class BattleInline(ReadOnlyMixin, admin.TabularInline):
    model = Battle
    extra = 0
    fields = ("model_a", "model_b", "result", "cast_at")
    readonly_fields = fields


@admin.register(Vote)
class VoteAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "comparison",
        "turn",
        "user_id",
        "winner",
        "blind",
        "void",
        "created_at",
        "updated_at",
    )
    list_filter = ("blind", "void", ("updated_at", admin.DateFieldListFilter))
    search_fields = ("comparison__id", "user_id", "winner", "comparison__prompt")
    date_hierarchy = "updated_at"
    readonly_fields = (
        "comparison",
        "turn",
        "user_id",
        "winner",
        "blind",
        "void",
        "slot_models",
        "created_at",
        "updated_at",
    )
    fields = readonly_fields
    inlines = (BattleInline,)
    list_select_related = ("comparison",)


@admin.register(Share)
class ShareAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("comparison", "created_by", "created_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("comparison__id", "created_by", "comparison__prompt")
    date_hierarchy = "created_at"
    # The token is never stored; its digest identifies a link without letting anyone use it.
    readonly_fields = ("comparison", "created_by", "created_at", "revoked_at", "token_digest")
    fields = readonly_fields


@admin.register(SelfNamedFlag)
class SelfNamedFlagAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("comparison", "turn", "key", "user_id", "created_at")
    search_fields = ("comparison__id", "user_id")


@admin.register(Leaderboard)
class LeaderboardAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("scope", "tag", "since", "version", "computed_at")
    search_fields = ("scope", "tag")

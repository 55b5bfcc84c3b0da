"""Read-only admin for inspecting comparisons and every model's response."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet, Sum
from django.http import HttpRequest

from comparisons.models import Comparison, ModelResponse, Turn


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ModelResponseInline(ReadOnlyMixin, admin.StackedInline):
    model = ModelResponse
    extra = 0
    can_delete = False
    fields = (
        ("turn", "key", "provider", "model_name", "response_model", "status"),
        ("temperature", "max_tokens", "finish_reason"),
        "content",
        "error",
        ("duration_ms", "time_to_first_token_ms", "tokens_per_second"),
        ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens"),
        ("total_tokens", "estimated_cost", "price_version"),
        ("chunk_count", "started_at", "finished_at"),
    )
    readonly_fields = tuple(
        name for group in fields for name in (group if isinstance(group, tuple) else (group,))
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelResponse]:
        # Every turn's answers, not only the first prompt's (the default manager's).
        return ModelResponse.all_turns.order_by("turn", "position")


class TurnInline(ReadOnlyMixin, admin.TabularInline):
    model = Turn
    extra = 0
    can_delete = False
    fields = ("index", "prompt", "mode", "source_key", "created_at")
    readonly_fields = fields


class ProviderFilter(admin.SimpleListFilter):
    title = "provider"
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        providers = (
            ModelResponse.objects.order_by("provider").values_list("provider", flat=True).distinct()
        )
        return [(p, p) for p in providers]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value():
            return queryset.filter(responses__provider=self.value()).distinct()
        return queryset


@admin.register(Comparison)
class ComparisonAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "user_id",
        "prompt_excerpt",
        "model_names",
        "status",
        "cost",
        "created_at",
    )
    list_filter = (
        "status",
        "blind",
        ProviderFilter,
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("id", "user_id", "prompt")
    date_hierarchy = "created_at"
    readonly_fields = (
        "id",
        "user_id",
        "status",
        "prompt",
        "system",
        "replay_of",
        "blind",
        "revealed_at",
        "heartbeat_at",
        "created_at",
        "updated_at",
    )
    fields = readonly_fields
    inlines = (TurnInline, ModelResponseInline)
    list_per_page = 50

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Comparison | None:
        # PostgreSQL refuses NUL in a query (a 500); no row can have it: "does not exist".
        if "\x00" in object_id:
            return None
        return super().get_object(request, object_id, from_field)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Comparison]:
        return (
            super()
            .get_queryset(request)
            .annotate(cost_total=Sum("responses__estimated_cost"))
            .prefetch_related("responses")
        )

    @admin.display(description="prompt")
    def prompt_excerpt(self, obj: Comparison) -> str:
        return obj.prompt if len(obj.prompt) <= 80 else obj.prompt[:79] + "…"

    @admin.display(description="models")
    def model_names(self, obj: Comparison) -> str:
        return ", ".join(f"{r.provider}:{r.model_name}" for r in obj.responses.all())

    @admin.display(description="total cost (USD)", ordering="cost_total")
    def cost(self, obj: Comparison) -> str:
        total = getattr(obj, "cost_total", None)
        return f"{total:.6f}" if total is not None else "—"

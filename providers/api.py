"""``GET /models``: every provider alias and its models, for a client's model picker."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Field, Router, Schema

from .selectors import provider_catalogue_list
from .types import ModelInfo

router = Router(tags=["models"])


class PricingOut(Schema):
    """USD per million tokens."""

    input: float
    output: float
    cachedInput: float | None = Field(
        None, description="A cache read; null: cached input costs the input price."
    )


class ModelOut(Schema):
    name: str = Field(..., description="What to send as `model` in startComparison.")
    label: str
    contextWindow: int | None = Field(None, description="Input tokens, where the vendor says.")
    maxOutputTokens: int | None = Field(None, description="Where the vendor says.")
    pricing: PricingOut | None = Field(
        None, description="null: the price is unknown (costs are then reported as null)."
    )


class ProviderOut(Schema):
    provider: str = Field(..., description="The alias to send as `provider`.")
    label: str
    configured: bool = Field(..., description="false: it has no API key; its models will fail.")
    defaultModel: str = Field(..., description="Used when a request names no model.")
    live: bool = Field(
        ..., description="true: the vendor's own models list; false: the configured models."
    )
    catalogueError: str | None = Field(
        None, description="Why the vendor's list is not shown (e.g. `HTTP 503`, `not configured`)."
    )
    restricted: bool = Field(
        ...,
        description="true: only the listed models may be asked for; false: any model name "
        "the vendor accepts.",
    )
    models: list[ModelOut]


class ModelsOut(Schema):
    priceVersion: str = Field(..., description="The price list that `pricing` comes from.")
    providers: list[ProviderOut]


def _model_out(model: ModelInfo) -> ModelOut:
    price = model.price
    return ModelOut(
        name=model.name,
        label=model.label or model.name,
        contextWindow=model.context_window,
        maxOutputTokens=model.max_output_tokens,
        pricing=(
            PricingOut(input=price.input, output=price.output, cachedInput=price.cached_input)
            if price is not None
            else None
        ),
    )


@router.get("/models", response=ModelsOut, summary="Providers and their models")
async def list_models(request: HttpRequest) -> ModelsOut:
    """Every provider alias with its models: the vendor's live list (cached) where it has one
    and is reachable, else the configured models; labels, limits and prices where known."""
    version, listings = await provider_catalogue_list()
    return ModelsOut(
        priceVersion=version,
        providers=[
            ProviderOut(
                provider=item.alias,
                label=item.label,
                configured=item.configured,
                defaultModel=item.default_model,
                live=item.catalogue.live,
                catalogueError=item.catalogue.error,
                restricted=item.restricted,
                models=[_model_out(model) for model in item.catalogue.models],
            )
            for item in listings
        ],
    )

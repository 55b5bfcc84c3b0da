"""Reads of the provider registry: what a client needs to build a model picker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

from .prices import price_book
from .registry import ProviderHandler, providers
from .types import Catalogue

__all__ = ["ProviderListing", "provider_catalogue_list"]


@dataclass(frozen=True)
class ProviderListing:
    """One provider alias with its catalogue (empty, with an error, when it cannot be loaded)."""

    alias: str
    label: str
    configured: bool
    default_model: str
    restricted: bool
    catalogue: Catalogue


async def provider_catalogue_list(
    *, handler: ProviderHandler | None = None
) -> tuple[str, list[ProviderListing]]:
    """The price book's version and every configured alias with its models, in settings order.

    The vendors' models lists are fetched concurrently (each cached by its provider); an alias
    whose backend cannot be loaded is listed as not configured, with no models."""
    handler = handler or providers
    loaded = []
    listings: dict[str, ProviderListing] = {}
    for alias in handler.aliases():
        try:
            loaded.append(await handler.aget(alias))
        except ImproperlyConfigured:
            listings[alias] = ProviderListing(
                alias, alias, False, "", False, Catalogue((), live=False, error="cannot be loaded")
            )
    catalogues = await asyncio.gather(*(provider.catalogue() for provider in loaded))
    for provider, catalogue in zip(loaded, catalogues, strict=True):
        listings[provider.alias] = ProviderListing(
            alias=provider.alias,
            label=provider.display_name,
            configured=provider.is_configured,
            default_model=provider.default_model,
            restricted=provider.allowed_models is not None or not provider.open_catalogue,
            catalogue=catalogue,
        )
    return price_book().version, [listings[alias] for alias in handler.aliases()]

"""The price book: model prices as data, shipped in ``providers/prices.json``.

``{"version": "<date>", "providers": {<price table>: {<model>: {"label", "input", "output",
"cached_input", "context_window", "max_output_tokens"}}}}``, prices in USD per million tokens.
A provider alias reads the table named by its ``prices`` option (default: its alias).
``AI_MODEL_PRICES_FILE`` names a file of the same shape whose entries override or extend the
shipped ones field by field; the book's version is then that file's ``version`` (or the shipped
version + ``+local``), so every saved cost says which prices it used. The older shape of that file,
``{<alias>: {<model>: {...}}}`` without ``providers``, is still read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .types import ModelInfo, ModelPrice

__all__ = ["SHIPPED_PRICES", "PriceBook", "model_entry", "price_book"]

SHIPPED_PRICES = Path(__file__).with_name("prices.json")


@dataclass(frozen=True)
class PriceBook:
    version: str
    tables: Mapping[str, Mapping[str, Mapping[str, Any]]]

    def table(self, name: str) -> Mapping[str, Mapping[str, Any]]:
        return self.tables.get(name) or {}


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"{what} {str(path)!r} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise ImproperlyConfigured(f"{what} {str(path)!r} must hold a JSON object")
    return data


def _tables(data: Mapping[str, Any], what: str) -> dict[str, dict[str, dict[str, Any]]]:
    tables = data.get("providers", None if "version" in data else data)
    if not isinstance(tables, dict) or not all(
        isinstance(t, dict) and all(isinstance(e, dict) for e in t.values())
        for t in tables.values()
    ):
        raise ImproperlyConfigured(f"{what}: 'providers' must map tables to {{model: {{...}}}}")
    return {name: {m: dict(e) for m, e in table.items()} for name, table in tables.items()}


@lru_cache(maxsize=8)
def _book(override: str, mtime: float) -> PriceBook:
    shipped = _read(SHIPPED_PRICES, "The shipped price list")
    tables = _tables(shipped, "providers/prices.json")
    version = str(shipped.get("version") or "unversioned")
    if override:
        data = _read(Path(override), "AI_MODEL_PRICES_FILE")
        for name, table in _tables(data, f"AI_MODEL_PRICES_FILE {override!r}").items():
            merged = tables.setdefault(name, {})
            for model, entry in table.items():
                merged[model] = {**merged.get(model, {}), **entry}
        version = str(data.get("version") or f"{version}+local")
    return PriceBook(version=version, tables=tables)


def price_book() -> PriceBook:
    """The shipped prices with ``AI_MODEL_PRICES_FILE`` applied (re-read when it changes)."""
    override = getattr(settings, "AI_MODEL_PRICES_FILE", "") or ""
    mtime = 0.0
    if override:
        try:
            mtime = Path(override).stat().st_mtime
        except OSError as exc:
            raise ImproperlyConfigured(
                f"AI_MODEL_PRICES_FILE {override!r} is unreadable: {exc}"
            ) from None
    return _book(override, mtime)


def _number(spec: Mapping[str, Any], key: str, name: str) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ImproperlyConfigured(f"Bad price entry for model {name!r}: {key} = {value!r}")
    return float(value)


def model_entry(name: str, spec: Mapping[str, Any]) -> ModelInfo:
    """A price-book (or ``OPTIONS["models"]``) entry as a :class:`ModelInfo`; the price is
    known only when both the input and the output price are given."""
    if not isinstance(spec, Mapping):
        raise ImproperlyConfigured(f"Bad price entry for model {name!r}: {spec!r}")
    input_price = _number(spec, "input", name)
    output_price = _number(spec, "output", name)
    price = None
    if input_price is not None and output_price is not None:
        price = ModelPrice(input_price, output_price, _number(spec, "cached_input", name))
    context = _number(spec, "context_window", name)
    max_output = _number(spec, "max_output_tokens", name)
    return ModelInfo(
        name=name,
        label=str(spec.get("label") or name),
        price=price,
        context_window=int(context) if context is not None else None,
        max_output_tokens=int(max_output) if max_output is not None else None,
    )

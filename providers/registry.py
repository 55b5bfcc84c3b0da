"""``providers``: the configured provider instances, one per alias of ``settings.AI_PROVIDERS``.

Configured like Django's ``CACHES``::

    AI_PROVIDERS = {"anthropic": {"BACKEND": "providers.backends.anthropic.AnthropicProvider",
                                  "OPTIONS": {"api_key": "...", "default_model": "..."}}}

Adding a provider is a new backend module plus a settings entry; nothing here changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from .base import BaseProvider

__all__ = ["InvalidProviderAlias", "ProviderHandler", "providers"]

#: Settings whose change drops the cached provider instances.
RELOAD_SETTINGS = frozenset(
    {
        "AI_PROVIDERS",
        "AI_MODEL_PRICES_FILE",
        "AI_MODELS_CACHE_SECONDS",
        "PROVIDER_FIRST_TOKEN_TIMEOUT",
        "PROVIDER_IDLE_TIMEOUT",
    }
)


class InvalidProviderAlias(ImproperlyConfigured, KeyError):
    """The alias is not in ``settings.AI_PROVIDERS`` or its entry cannot be loaded."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ProviderHandler:
    """Loads and caches one :class:`BaseProvider` per alias (thread-safe, lazy)."""

    def __init__(self, settings_name: str = "AI_PROVIDERS") -> None:
        self.settings_name = settings_name
        self._instances: dict[str, BaseProvider] = {}
        self._forgotten: list[BaseProvider] = []  # reset, their clients not closed yet
        self._lock = threading.Lock()

    @property
    def configs(self) -> Mapping[str, Mapping[str, Any]]:
        return getattr(settings, self.settings_name, None) or {}

    def aliases(self) -> list[str]:
        """The configured aliases, in settings order."""
        return list(self.configs)

    def __contains__(self, alias: object) -> bool:
        return alias in self.configs

    def __getitem__(self, alias: str) -> BaseProvider:
        instance = self._instances.get(alias)
        if instance is not None:
            return instance
        with self._lock:
            instance = self._instances.get(alias)
            if instance is None:
                instance = self.create(alias)
                self._instances[alias] = instance
        return instance

    async def aload(self, aliases: Iterable[str]) -> None:
        """Load the providers of ``aliases`` without blocking the event loop.

        One still loading (the start-up preload holds the lock while it imports the SDKs:
        seconds, tens of seconds on a busy machine) is waited for in a thread; taken on the
        loop, the lock stalled every socket of the process meanwhile (keepalive pings
        unanswered). A provider that cannot load is left to fail where it is used.
        """
        missing = [a for a in aliases if a not in self._instances and a in self.configs]
        if missing:
            await asyncio.to_thread(self._load_quietly, missing)

    def _load_quietly(self, aliases: list[str]) -> None:
        for alias in aliases:
            with contextlib.suppress(ImproperlyConfigured):  # raised again where it is used
                self[alias]

    async def aget(self, alias: str) -> BaseProvider:
        """``self[alias]`` for the event loop: a provider not loaded yet loads in a worker thread.
        Its SDK import takes seconds (13 s measured on a slow, busy machine), and the preload
        thread may hold the lock meanwhile: either way on the loop's thread it stalled every
        socket and request of the process, not only the caller."""
        instance = self._instances.get(alias)
        if instance is not None:
            return instance
        return await asyncio.to_thread(self.__getitem__, alias)

    def all(self) -> list[BaseProvider]:
        """Every configured provider, in settings order."""
        return [self[alias] for alias in self.aliases()]

    def create(self, alias: str) -> BaseProvider:
        """A new, uncached instance for ``alias``."""
        configs = self.configs
        if alias not in configs:
            known = ", ".join(configs) or "none"
            raise InvalidProviderAlias(
                f"Unknown provider '{alias}' (not in settings.{self.settings_name}); "
                f"configured: {known}"
            )
        config = configs[alias] or {}
        path = config.get("BACKEND")
        if not path:
            raise InvalidProviderAlias(f"settings.{self.settings_name}['{alias}'] has no BACKEND")
        try:
            backend = import_string(path)
        except ImportError as exc:
            raise InvalidProviderAlias(
                f"Could not load provider '{alias}': BACKEND {path!r} cannot be imported ({exc})"
            ) from exc
        if not (isinstance(backend, type) and issubclass(backend, BaseProvider)):
            raise InvalidProviderAlias(
                f"Provider '{alias}': BACKEND {path!r} is not a BaseProvider subclass"
            )
        return backend(alias, config.get("OPTIONS") or {})

    def preload(self) -> list[str]:
        """Load every configured provider now; returns the errors of those that cannot load.

        Called when the server starts: the SDKs take about two seconds to import, and imported on
        first use they stalled the event loop, every socket of the process included, while the
        first comparison after a start waited. A provider that cannot load is reported and left
        to fail the way it would on use (a named error for the comparison that asks for it).
        """
        errors = []
        for alias in self.aliases():
            try:
                self[alias]
            except ImproperlyConfigured as exc:
                errors.append(str(exc))
        return errors

    async def aclose(self) -> None:
        """Close the HTTP clients of the loaded providers (a command's loop is about to end),
        and of those a :meth:`reset` forgot since the last call."""
        with self._lock:
            loaded = [*self._forgotten, *self._instances.values()]
            self._forgotten = []
        for provider in loaded:
            await provider.aclose()

    def reset(self) -> None:
        """Forget the cached instances (they are rebuilt from settings on next use). Their
        clients stay open until :meth:`aclose` (this runs in a settings change, outside any
        loop): dropped open, aiohttp logs each of their sessions as unclosed."""
        with self._lock:
            self._forgotten.extend(self._instances.values())
            self._instances = {}


providers = ProviderHandler()


@receiver(setting_changed)
def _reset_providers(*, setting: str, **kwargs: Any) -> None:
    if setting in RELOAD_SETTINGS:
        providers.reset()

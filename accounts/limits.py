"""Caps on open sockets: unauthenticated ones per client address and in total, signed-in ones per
user.

One :class:`ConnectionLimiter` is owned by each server process (built in ``playground.asgi``) and
passed to every transport that holds sockets, so they all count against the same limits. It is
only touched from the event loop's thread, so plain counters suffice.

A socket takes a :class:`ConnectionLease` when it opens (:meth:`ConnectionLimiter.open`), moves it
to its user when it authenticates (:meth:`ConnectionLease.authenticate`) and releases it when it
closes (:meth:`ConnectionLease.release`, idempotent). Each step that would exceed a limit raises
:class:`TooManyConnections` and counts nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from django.conf import settings

#: Close code for a socket over a connection limit (4000 + HTTP 429).
CLOSE_TOO_MANY_CONNECTIONS = 4429
TOO_MANY_CONNECTIONS = "too-many-connections"


class TooManyConnections(Exception):
    """A connection limit was reached; ``str()`` says which, for the client."""

    code = TOO_MANY_CONNECTIONS


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    unauthenticated_per_client: int
    unauthenticated_total: int
    per_user: int

    @classmethod
    def from_settings(cls) -> ConnectionLimits:
        return cls(
            unauthenticated_per_client=int(settings.WS_MAX_UNAUTHENTICATED_PER_CLIENT),
            unauthenticated_total=int(settings.WS_MAX_UNAUTHENTICATED),
            per_user=int(settings.WS_MAX_SOCKETS_PER_USER),
        )


class ConnectionLimiter:
    """Counts open sockets of one process against :class:`ConnectionLimits`.

    ``limits`` fixed at construction, or ``None`` to read the settings at every check (they are
    three attribute reads; tests may then change them with the ``settings`` fixture).
    """

    def __init__(self, limits: ConnectionLimits | None = None) -> None:
        self._limits = limits
        self._unauthenticated: Counter[str] = Counter()
        self._unauthenticated_total = 0
        self._users: Counter[str] = Counter()

    @property
    def limits(self) -> ConnectionLimits:
        return self._limits or ConnectionLimits.from_settings()

    def open(self, *, client: str) -> ConnectionLease:
        """Count a new, not yet authenticated socket from ``client`` (its address)."""
        limits = self.limits
        if self._unauthenticated_total >= limits.unauthenticated_total:
            raise TooManyConnections("Too many connections waiting to authenticate; retry shortly")
        if self._unauthenticated[client] >= limits.unauthenticated_per_client:
            raise TooManyConnections(
                "Too many connections from this address waiting to authenticate"
            )
        self._unauthenticated[client] += 1
        self._unauthenticated_total += 1
        return ConnectionLease(self, client)

    def unauthenticated_count(self, client: str | None = None) -> int:
        if client is None:
            return self._unauthenticated_total
        return self._unauthenticated[client]

    def user_count(self, user_id: str) -> int:
        return self._users[user_id]

    # --- used by ConnectionLease ----------------------------------------------------------------
    def _drop_unauthenticated(self, client: str) -> None:
        self._unauthenticated_total -= 1
        self._unauthenticated[client] -= 1
        if self._unauthenticated[client] <= 0:
            del self._unauthenticated[client]

    def _add_user(self, user_id: str) -> None:
        if self._users[user_id] >= self.limits.per_user:
            raise TooManyConnections(
                f"Too many open connections for this user (limit {self.limits.per_user})"
            )
        self._users[user_id] += 1

    def _drop_user(self, user_id: str) -> None:
        self._users[user_id] -= 1
        if self._users[user_id] <= 0:
            del self._users[user_id]


class ConnectionLease:
    """One socket's place in the counts: unauthenticated, then its user's, then released."""

    __slots__ = ("_client", "_limiter", "_released", "user_id")

    def __init__(self, limiter: ConnectionLimiter, client: str) -> None:
        self._limiter = limiter
        self._client = client
        self._released = False
        self.user_id: str | None = None

    def authenticate(self, user_id: str) -> None:
        """Move the socket to ``user_id``'s count (no-op for the same user's token refresh)."""
        if self._released or self.user_id == user_id:
            return
        if self.user_id is not None:
            raise ValueError("a socket's user does not change")
        self._limiter._add_user(user_id)  # raises before anything moved
        self._limiter._drop_unauthenticated(self._client)
        self.user_id = user_id

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self.user_id is None:
            self._limiter._drop_unauthenticated(self._client)
        else:
            self._limiter._drop_user(self.user_id)

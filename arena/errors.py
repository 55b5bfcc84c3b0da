"""Refusals of arena operations; the API answers ``{"statusCode", "message"}`` with the status."""

from __future__ import annotations


class ArenaError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ArenaError):
    """No such comparison, vote or link — or it belongs to someone else (never 403)."""

    status = 404


class Invalid(ArenaError):
    """A request naming a turn, key, winner, tag or date that cannot be."""

    status = 422


class Conflict(ArenaError):
    """Valid, but not in the comparison's present state (e.g. changing a vote after the reveal)."""

    status = 409

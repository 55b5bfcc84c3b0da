"""The admin login is throttled: repeated wrong passwords lock the client address out."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = [pytest.mark.django_db]

LOGIN = "/admin/login/?next=/admin/"


def attempt(password: str, *, address: str = "203.0.113.7") -> tuple[int, bool]:
    """(status, signed in afterwards) of one admin login from ``address``."""
    client = Client(REMOTE_ADDR=address)
    response = client.post(LOGIN, {"username": "admin", "password": password})
    signed_in = client.get("/admin/").status_code == 200
    return response.status_code, signed_in


def test_wrong_passwords_lock_the_address_out_even_for_the_right_one(settings) -> None:
    get_user_model().objects.create_superuser("admin", password="correct-horse-battery")
    limit = settings.AXES_FAILURE_LIMIT
    statuses = [attempt("wrong")[0] for _ in range(limit - 1)]
    assert statuses == [200] * (limit - 1)  # the form again, with its error
    assert attempt("wrong")[0] == 429  # the limit-th failure locks the address
    assert attempt("correct-horse-battery") == (429, False)
    # Another address is not locked out.
    assert attempt("correct-horse-battery", address="198.51.100.9") == (302, True)


def test_a_successful_login_resets_the_count(settings) -> None:
    get_user_model().objects.create_superuser("admin", password="correct-horse-battery")
    for _ in range(2):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            assert attempt("wrong")[0] == 200
        assert attempt("correct-horse-battery") == (302, True)

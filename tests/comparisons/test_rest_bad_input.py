"""Bad identifiers and cursors answer 404/422 with a readable body, never a 500."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth import get_user_model
from django.test import Client as DjangoClient

from tests.comparisons.test_rest import get

pytestmark = [pytest.mark.django_db(transaction=True)]


def cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


BAD_CURSORS = [
    ("not-base64", "%%%"),
    ("no-separator", cursor("2026-01-01T00:00:00+00:00")),
    ("not-a-date", cursor("yesterday|abc")),
    ("nul-in-id", cursor("2026-01-01T00:00:00+00:00|ab\x00c")),
    ("nul-in-date", cursor("2026-01-01T00:00:00\x00|abc")),
    ("year-1-east", cursor("0001-01-01T00:00:00+14:00|abc")),
    ("year-9999-west", cursor("9999-12-31T23:59:59-14:00|abc")),
    ("year-1-naive", cursor("0001-01-01T00:00:00|abc")),
    ("year-9999-naive", cursor("9999-12-31T23:59:59.999999|abc")),
]


@pytest.mark.parametrize("value", [c[1] for c in BAD_CURSORS], ids=[c[0] for c in BAD_CURSORS])
async def test_a_bad_cursor_is_422(token_for, value: str) -> None:
    status, _, body = await get("/sessions", token_for("user_cursor"), query=f"cursor={value}")
    assert status == 422, body
    assert body == {"statusCode": 422, "message": "Invalid cursor"}


@pytest.mark.postgres
@pytest.mark.parametrize("value", [c[1] for c in BAD_CURSORS], ids=[c[0] for c in BAD_CURSORS])
async def test_a_bad_cursor_is_422_on_postgres(token_for, value: str) -> None:
    status, _, body = await get("/sessions", token_for("user_cursor"), query=f"cursor={value}")
    assert (status, body) == (422, {"statusCode": 422, "message": "Invalid cursor"})


@pytest.mark.parametrize("session_id", ["%00", "ab%00cd", "%00" * 40])
async def test_a_nul_session_id_is_404(token_for, session_id: str) -> None:
    status, _, body = await get(f"/sessions/{session_id}", token_for("user_nul"))
    assert status == 404, body
    assert body["statusCode"] == 404


@pytest.mark.postgres
async def test_a_nul_session_id_is_404_on_postgres(token_for) -> None:
    status, _, body = await get("/sessions/ab%00cd", token_for("user_nul"))
    assert status == 404 and body["statusCode"] == 404


def _admin_get(path: str) -> int:
    staff = get_user_model().objects.create_user(
        "staff_nul", password="pw-123456!", is_staff=True, is_superuser=True
    )
    client = DjangoClient(raise_request_exception=False)
    client.force_login(staff)
    return client.get(path).status_code


@pytest.mark.postgres
def test_the_admin_change_view_with_a_nul_id_is_not_a_500_on_postgres() -> None:
    status = _admin_get("/admin/comparisons/comparison/ab%00cd/change/")
    assert status in (302, 404)


def test_the_admin_change_view_with_a_nul_id_is_not_a_500() -> None:
    status = _admin_get("/admin/comparisons/comparison/ab%00cd/change/")
    assert status in (302, 404)

"""REST over the real ASGI application after real runs; the admin pages for staff."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.contrib.auth import get_user_model
from django.test import Client as DjangoClient

from comparisons import services
from comparisons.models import Comparison
from playground.asgi import router as application

pytestmark = [pytest.mark.django_db(transaction=True)]


async def get(path: str, token: str | None, *, query: str = "") -> tuple[int, dict[str, str], Any]:
    headers = [(b"host", b"testserver")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    communicator = HttpCommunicator(
        application, "GET", path + (f"?{query}" if query else ""), headers=headers
    )
    response = await communicator.get_response(timeout=10)
    head = {k.decode().lower(): v.decode() for k, v in response["headers"]}
    return response["status"], head, json.loads(response["body"] or b"null")


async def run_comparison(connect, user: str, prompt: str) -> str:
    client = await connect(user)
    await client.send("startComparison", {"prompt": prompt, "providers": ["google", "anthropic"]})
    events = await client.until_event("comparisonComplete")
    return events[0]["data"]["sessionId"]


async def test_list_and_detail_after_a_run(upstream_providers, connect, token_for) -> None:
    upstream_providers.script("rest", deltas=["Hello ", "REST"])
    sid = await run_comparison(connect, "user_alice", "scenario:rest")
    status, _, body = await get("/sessions", token_for("user_alice"))
    assert status == 200 and isinstance(body, list) and len(body) == 1
    session = body[0]
    assert session["_id"] == session["id"] == sid
    assert session["prompt"] == "scenario:rest"
    assert session["userId"] == "user_alice"
    assert session["status"] == "complete"
    assert [(m["provider"], m["modelName"]) for m in session["models"]] == [
        ("google", "gemini-2.5-flash"),
        ("anthropic", "claude-haiku-4-5-20251001"),
    ]
    response = session["responses"]["claude-haiku-4-5-20251001"]
    assert response["content"] == "Hello REST" and response["status"] == "complete"
    assert set(response["metrics"]) >= {
        "durationInMilliseconds",
        "tokensUsed",
        "estimatedCost",
        "timeToFirstTokenInMilliseconds",
    }
    assert {"createdAt", "updatedAt", "replayOf"} <= set(session)

    status, _, detail = await get(f"/sessions/{sid}", token_for("user_alice"))
    assert status == 200 and detail == session


async def test_other_users_session_is_404_and_list_is_scoped(
    upstream_providers, connect, token_for
) -> None:
    sid = await run_comparison(connect, "user_alice", "mine")
    status, _, body = await get(f"/sessions/{sid}", token_for("user_bob"))
    assert status == 404 and body["statusCode"] == 404
    status, _, body = await get("/sessions/doesnotexist", token_for("user_alice"))
    assert status == 404
    status, _, body = await get("/sessions", token_for("user_bob"))
    assert status == 200 and body == []


async def test_rest_needs_a_valid_token(upstream_providers) -> None:
    for path in ("/sessions", "/sessions/abc"):
        status, _, body = await get(path, None)
        assert status == 401
        assert body["statusCode"] == 401 and body["message"] == "Unauthorized" and body["reason"]
        status, _, body = await get(path, "not.a.jwt")
        assert status == 401 and body["reason"]


async def test_pagination_with_link_header(token_for) -> None:
    def make() -> list[str]:
        return [
            services.comparison_create(
                user_id="user_pages",
                prompt=f"p{i}",
                slots=[services.SlotSpec("demo", "demo-echo")],
                enforce_limits=False,
            ).id
            for i in range(5)
        ]

    ids = await sync_to_async(make)()
    token = token_for("user_pages")
    status, head, page1 = await get("/sessions", token, query="limit=2")
    assert status == 200 and [s["prompt"] for s in page1] == ["p4", "p3"]
    link = head["link"]
    assert link.endswith('; rel="next"')
    next_url = link[1 : link.index(">")]
    _path, _, query = next_url.partition("?")
    status, head, page2 = await get("/sessions", token, query=query)
    assert [s["prompt"] for s in page2] == ["p2", "p1"]
    _path, _, query = head["link"][1 : head["link"].index(">")].partition("?")
    status, head, page3 = await get("/sessions", token, query=query)
    assert [s["prompt"] for s in page3] == ["p0"] and "link" not in head
    assert {s["id"] for s in page1 + page2 + page3} == set(ids)
    assert (await get("/sessions", token, query="limit=201"))[0] == 422
    assert (await get("/sessions", token, query="limit=0"))[0] == 422
    assert (await get("/sessions", token, query="cursor=%%%"))[0] == 422


def test_admin_list_and_detail_render_for_staff(db) -> None:
    comparison = services.comparison_create(
        user_id="user_admin_view",
        prompt="Explain quicksort " * 10,
        slots=[
            services.SlotSpec("anthropic", "claude-haiku-4-5-20251001"),
            services.SlotSpec("google", "gemini-2.5-flash"),
        ],
    )
    services.comparison_save_progress(
        comparison_id=comparison.id,
        progress=[
            services.ResponseProgress(
                key="claude-haiku-4-5-20251001",
                status="complete",
                content="Pivot <b>first</b>",
                chunk_count=2,
                estimated_cost=0.0012,
                duration_ms=900.0,
                output_tokens=12,
            ),
            services.ResponseProgress(
                key="gemini-2.5-flash",
                status="error",
                content="Partial",
                chunk_count=1,
                error="Gemini is overloaded (503)",
            ),
        ],
        status="partial",
    )
    staff = get_user_model().objects.create_user(
        "staff", password="pw-123456!", is_staff=True, is_superuser=True
    )
    client = DjangoClient()
    client.force_login(staff)
    listing = client.get("/admin/comparisons/comparison/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert comparison.id in page and "user_admin_view" in page and "partial" in page
    assert "anthropic:claude-haiku-4-5-20251001" in page and "0.001200" in page
    assert (
        client.get(
            "/admin/comparisons/comparison/?status__exact=partial&provider=google"
        ).status_code
        == 200
    )
    assert (
        comparison.id in client.get("/admin/comparisons/comparison/?q=quicksort").content.decode()
    )
    detail = client.get(f"/admin/comparisons/comparison/{comparison.id}/change/")
    assert detail.status_code == 200
    text = detail.content.decode()
    assert "Pivot &lt;b&gt;first&lt;/b&gt;" in text and "Gemini is overloaded (503)" in text
    assert Comparison.objects.count() == 1
    anonymous = DjangoClient().get("/admin/comparisons/comparison/")
    assert anonymous.status_code == 302

"""Unsafe production settings are reported by ``check --deploy``; /docs loads nothing from a CDN."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command

from playground.asgi import router


def deploy_check_output() -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("check", deploy=True, fail_level="CRITICAL", stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def test_check_deploy_warns_about_any_origin_and_any_authorized_party(settings) -> None:
    settings.CORS_ORIGIN = ["*"]
    settings.CLERK_AUTHORIZED_PARTIES = []
    output = deploy_check_output()
    assert "accounts.W001" in output and "CORS_ORIGIN allows every origin" in output
    assert "accounts.W002" in output and "CLERK_AUTHORIZED_PARTIES is not set" in output

    settings.CORS_ORIGIN = ["https://app.example.com"]
    settings.CLERK_AUTHORIZED_PARTIES = ["https://app.example.com"]
    output = deploy_check_output()
    assert "accounts.W001" not in output and "accounts.W002" not in output


async def get(path: str) -> tuple[int, bytes]:
    transport = httpx.ASGITransport(app=router)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get(path)
    return response.status_code, response.content


@pytest.mark.django_db
# Served under ASGI as an asynchronous stream: Django warns when it has to read a file whole.
@pytest.mark.filterwarnings("error:StreamingHttpResponse must consume synchronous iterators")
async def test_docs_load_swagger_ui_from_our_own_static_files() -> None:
    status, page = await get("/docs")
    assert status == 200
    html = page.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert any("swagger-ui-bundle" in a for a in assets) and any(".css" in a for a in assets)
    assert "cdn" not in html.lower() and "//" not in "".join(assets)
    for asset in assets:
        asset_status, body = await get(asset)
        assert asset_status == 200 and body, asset
        source = finders.find(asset.removeprefix(settings.STATIC_URL))
        assert source, asset
        assert body == await asyncio.to_thread(Path(source).read_bytes), asset  # whole, in order

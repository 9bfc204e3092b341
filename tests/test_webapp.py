"""GET /app/: the reference page's files, only when enabled, under a strict policy; and its
bundle is exactly what web/build.mjs makes from the pinned lock file."""

import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.app import create_app

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_bundle_is_what_the_lock_file_builds():
    if not (ROOT / "web" / "node_modules").exists() or shutil.which("node") is None:
        pytest.fail("make setup installs web/node_modules (npm ci from web/package-lock.json)")
    check = subprocess.run(
        ["node", str(ROOT / "web" / "build.mjs"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


async def test_the_page_is_off_unless_enabled(aiohttp_client, make_settings):
    client = await aiohttp_client(create_app(make_settings()))
    response = await client.get("/app/")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


@pytest.fixture(name="app_client")
async def _app_client(aiohttp_client, make_settings):
    return await aiohttp_client(create_app(make_settings(GATEWAY_WEBAPP__ENABLED="true")))


async def test_the_page_and_its_files(app_client):
    page = await app_client.get("/app/")
    assert page.status == 200
    assert page.content_type == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    script = await app_client.get("/app/app.js")
    assert script.content_type == "text/javascript"
    assert await script.read() == (ROOT / "gateway/webapp/static/app.js").read_bytes()
    redirect = await app_client.get("/app", allow_redirects=False)
    assert redirect.status == 308
    assert redirect.headers["Location"] == "/app/"


@pytest.mark.parametrize(
    "path", ["/app/secret.py", "/app/..%2f__init__.py", "/app/routes.py", "/app/APP.JS"]
)
async def test_nothing_else_is_served(app_client, path):
    response = await app_client.get(path)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"

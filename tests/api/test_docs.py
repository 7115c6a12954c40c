"""Swagger UI at /docs needs nothing but this service: every asset is same-origin."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.live.test_browser import CHROMIUM, FLAGS, needs_browser
from tests.support.servers import running_servers

# What each kind of reference must be served as.
CONTENT_TYPES = {
    "script": ("text/javascript", "application/javascript"),
    "stylesheet": ("text/css",),
    "icon": ("image/png", "image/x-icon", "image/svg+xml"),
    "spec": ("application/json",),
}
# The page needs no database; one backend is enough.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


class References(HTMLParser):
    """The URLs a page loads: scripts, stylesheets and icons, and any other src/href."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        rel = (values.get("rel") or "").lower()
        url = values.get("src") or values.get("href")
        if url is None:
            return
        if tag == "script":
            kind = "script"
        elif "stylesheet" in rel or "icon" in rel:
            kind = "stylesheet" if "stylesheet" in rel else "icon"
        else:
            kind = tag  # not an asset kind: the test fails on it
        self.found.append((kind, url))


def page_references(html: str) -> list[tuple[str, str]]:
    parser = References()
    parser.feed(html)
    # The inline script hands Swagger UI the document's URL: `url: '/openapi.json'`.
    specs = re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", html)
    return parser.found + [("spec", url) for url in specs]


async def test_every_asset_of_docs_is_same_origin_and_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    references = page_references(page.text)
    assert {kind for kind, _ in references} == set(CONTENT_TYPES), references
    for kind, url in references:
        absolute = urljoin(str(page.url), url)
        assert urlsplit(absolute).netloc == urlsplit(str(page.url)).netloc, url
        response = await client.get(absolute)
        assert response.status_code == 200, url
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in CONTENT_TYPES[kind], (url, media_type)
        assert response.content, url


async def test_an_unknown_asset_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/index.html")
    assert response.status_code == 404
    assert response.json()["type"] == "/problems/not-found"


@needs_browser
@pytest.mark.slow
async def test_swagger_ui_renders_offline_in_chromium(database_url: str, tmp_path: Path) -> None:
    from playwright.async_api import Route, async_playwright

    blocked: list[str] = []

    async def loopback_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort()

    with running_servers(database_url, tmp_path) as (server,):
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = await browser.new_page()
                await page.route("**/*", loopback_only)
                await page.goto(f"{server.url}/docs")
                # Swagger UI gives each operation an element with its operationId.
                append = page.locator("[id$='-appendToStream']")
                await append.wait_for(state="visible", timeout=30_000)
                assert "/streams/{stream_id}" in await append.inner_text()
                operations = await page.locator(".opblock").count()
            finally:
                await browser.close()
    assert blocked == []
    assert operations >= 20

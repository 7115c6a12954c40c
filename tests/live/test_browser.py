"""A real browser follows the log with EventSource (headless Debian Chromium)."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest

from tests.live.conftest import ServerFactory

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

needs_browser = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("EVSTORE_REQUIRE_BROWSER"),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)


@needs_browser
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_eventsource_in_chromium_sees_appended_events(servers: ServerFactory) -> None:
    from playwright.async_api import async_playwright

    server = servers()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{server.url}/health")
            await page.evaluate(
                """() => {
                    window.received = []; window.caughtUp = null;
                    const source = new EventSource('/events/live');
                    source.onmessage = (m) => window.received.push(
                        {id: m.lastEventId, event: JSON.parse(m.data)});
                    source.addEventListener('caught-up', (m) => {
                        window.caughtUp = JSON.parse(m.data); });
                }"""
            )
            await page.wait_for_function("window.caughtUp !== null", timeout=30_000)
            async with httpx.AsyncClient() as client:
                for n in range(3):
                    response = await client.post(
                        f"{server.url}/streams/Dashboard-1",
                        json={"events": [{"type": "Clicked", "data": {"n": n}}]},
                    )
                    assert response.status_code == 201
            await page.wait_for_function("window.received.length === 3", timeout=30_000)
            received = await page.evaluate("window.received")
        finally:
            await browser.close()
    assert [r["id"] for r in received] == ["1", "2", "3"]
    assert [r["event"]["data"] for r in received] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(r["event"]["stream_id"] == "Dashboard-1" for r in received)

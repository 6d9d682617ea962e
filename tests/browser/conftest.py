"""Browser tests: Debian's chromium driven by Playwright against the real app on a loopback port.

    async def test_page(live: Live, page_at: PageAt) -> None:
        page = await page_at(PHONE)                       # or DESKTOP
        await page.goto(live.url + "/docs")
        await assert_no_horizontal_scroll(page)
        assert_only_host(requests_made(page), live.url)   # nothing fetched from any other host
        await screenshot(page, "docs")                    # test-artifacts/screenshots/docs-390.png

The browser is /usr/bin/chromium (`scripts/test` installs it with apt), launched by path: Playwright's
own browser downloads are never used. Without it the tests are skipped, except in CI, where they fail.
Playwright's async API runs on one event loop for the whole session (the browser lives that long), so
every test in this folder runs on the session loop; the app runs in its own thread with its own loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, Request, async_playwright

from entitle.context import build_context
from entitle.providers.stripe.catalog_push import push_catalog
from entitle.services.identity.tokens import SigningKey
from entitle.services.setup.first_run import announce_first_run
from entitle.settings import Settings
from tests.conftest import LiveServer, _empty_all_tables, make_settings
from tests.factories import DEFAULT_PASSWORD, bearer
from tests.providers.stripe.conftest import stripe_settings
from tests.standins.stripe import StripeStandin

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (containers run as root), no GPU, and none of chromium's own traffic to Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PHONE = 390
DESKTOP = 1280
VIEWPORTS: dict[int, dict[str, Any]] = {
    PHONE: {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 3,
        "is_mobile": True,
        "has_touch": True,
    },
    DESKTOP: {"viewport": {"width": 1280, "height": 800}, "device_scale_factor": 1},
}

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
_saved: list[Path] = []

PageAt = Callable[[int], Awaitable[Page]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            # Before the marker auto mode gave it, so this one is the closest.
            item.add_marker(pytest.mark.asyncio(loop_scope="session"), append=False)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _saved:
        terminalreporter.write_line(f"browser screenshots ({len(_saved)}) in {SCREENSHOTS}")


# --- the browser ---------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Chromium, headless, once for the session."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: `apt-get install -y chromium` (scripts/test does it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


_requests: dict[Page, list[str]] = {}


@pytest_asyncio.fixture(loop_scope="session")
async def page_at(browser: Browser) -> AsyncIterator[PageAt]:
    """`await page_at(PHONE)` or `page_at(DESKTOP)`: a fresh page (own cookies and storage) at that
    width, whose every request is recorded for `requests_made`; closed after the test."""
    contexts: list[BrowserContext] = []

    async def open_page(width: int) -> Page:
        if width not in VIEWPORTS:
            raise ValueError(f"no viewport for width {width}: use PHONE ({PHONE}) or DESKTOP ({DESKTOP})")
        context = await browser.new_context(**VIEWPORTS[width])
        contexts.append(context)
        page = await context.new_page()
        seen = _requests.setdefault(page, [])

        def record(request: Request) -> None:
            seen.append(request.url)

        # On the context, so requests from popups and workers the page starts are seen too.
        context.on("request", record)
        return page

    try:
        yield open_page
    finally:
        for context in contexts:
            for page in context.pages:
                _requests.pop(page, None)
            await context.close()


def requests_made(page: Page) -> list[str]:
    """Every URL the page (and its popups and workers) asked for, in order."""
    return list(_requests[page])


def assert_only_host(requests: list[str], *base_urls: str) -> None:
    """Fail on any request to a host (scheme, host and port) other than `base_urls`' own; `data:` and
    `blob:` URLs stay inside the page."""
    allowed = {_origin(url) for url in base_urls}
    elsewhere = [url for url in requests if not _inside(url) and _origin(url) not in allowed]
    assert not elsewhere, f"requests to other hosts than {sorted(allowed)}: {elsewhere}"


def _inside(url: str) -> bool:
    return urlsplit(url).scheme in ("data", "blob")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


async def assert_no_horizontal_scroll(page: Page) -> None:
    """The page fits its viewport's width: nothing to scroll sideways."""
    scroll_width, client_width = await page.evaluate(
        "() => [document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]"
    )
    assert scroll_width <= client_width, (
        f"{page.url} scrolls sideways at {client_width}px: {scroll_width}px wide"
    )


async def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Save what the page shows to test-artifacts/screenshots/<name>-<width>.png."""
    width = (page.viewport_size or {"width": 0})["width"]
    path = SCREENSHOTS / f"{name}-{width}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=full_page)
    _saved.append(path)
    return path


# --- the app -------------------------------------------------------------------------------------------


@dataclass
class Live:
    """The app under uvicorn on a loopback port, on the suite's test database (emptied first), with
    Stripe configured against a running stand-in that delivers its webhooks to `/webhooks/stripe`."""

    url: str
    standin: StripeStandin
    http: httpx.AsyncClient
    server: LiveServer = field(repr=False)

    async def sign_up(self, email: str, password: str = DEFAULT_PASSWORD) -> dict[str, Any]:
        """Register a password account; returns the session (`account`, `access_token`, ...)."""
        response = await self.http.post("/v1/auth/register", json={"email": email, "password": password})
        assert response.status_code == 201, response.text
        session: dict[str, Any] = response.json()
        return session

    async def entitlements(self, session: dict[str, Any]) -> dict[str, Any]:
        """GET /v1/me/entitlements for a signed-in session."""
        response = await self.http.get("/v1/me/entitlements", headers=bearer(session))
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


@pytest.fixture
def standin() -> Iterator[StripeStandin]:
    with StripeStandin() as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def live(
    database_url: str, signing_key: SigningKey, standin: StripeStandin, settings_overrides: dict[str, Any]
) -> AsyncIterator[Live]:
    """The real app over HTTP; override `settings_overrides` in a test module to change settings."""
    settings = make_settings(database_url, **(stripe_settings(standin) | settings_overrides))
    # The database is emptied and the catalog pushed to the stand-in from this loop, with a context of
    # its own: the server builds its context in its own thread and loop.
    setup = build_context(settings, signing_key=signing_key)
    try:
        await _empty_all_tables(setup.database)
        await push_catalog(setup.providers["stripe"].gateway, setup.catalog)
    finally:
        await setup.aclose()
    server = LiveServer(settings, signing_key)
    await asyncio.to_thread(server.start)
    standin.deliver_to(server.url + "/webhooks/stripe")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            yield Live(url=server.url, standin=standin, http=http, server=server)
    finally:
        standin.stop()  # no deliveries to a server that is going away
        await asyncio.to_thread(server.stop)


@asynccontextmanager
async def fresh_install(
    settings: Settings, signing_key: SigningKey, *, before_stop: Callable[[], None] | None = None
) -> AsyncIterator[LiveServer]:
    """A server on an emptied database (no operator, nothing saved); `before_stop` runs first at the end
    (e.g. stopping a stand-in so nothing is delivered to a server that is going away)."""
    setup = build_context(settings, signing_key=signing_key)
    try:
        await _empty_all_tables(setup.database)
    finally:
        await setup.aclose()
    server = LiveServer(settings, signing_key)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        if before_stop is not None:
            before_stop()
        await asyncio.to_thread(server.stop)


async def first_run_link(server: LiveServer) -> str:
    """The one-time link a server with no operator prints at start (a second one, as another process
    would print)."""
    context = build_context(server.settings, signing_key=server.signing_key)
    try:
        link = await announce_first_run(context)
    finally:
        await context.aclose()
    assert link is not None
    return link

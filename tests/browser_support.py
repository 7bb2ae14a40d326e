"""What the browser tests share: headless Chromium, a time budget, what pages did, screenshots.

Headless Debian Chromium (``/usr/bin/chromium``) driven by Playwright; nothing is downloaded.
Without Playwright or that browser the tests skip, unless ``AUTHSVC_REQUIRE_BROWSER=1``, which
turns the skip into a failure (for CI images that are meant to have the browser).

Plain helpers, no fixtures: each test module declares its own thin fixtures around them
(:func:`launch_browser`, :func:`browser_context`, :func:`observe`, :class:`Budget`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request

# Read at import: the conftest's autouse fixture removes AUTHSVC_* variables during tests.
REQUIRE_BROWSER = os.environ.get("AUTHSVC_REQUIRE_BROWSER") == "1"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"


def browser_unavailable(reason: str) -> NoReturn:
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason}, and AUTHSVC_REQUIRE_BROWSER=1 requires the browser tests")
    pytest.skip(f"{reason}; set AUTHSVC_REQUIRE_BROWSER=1 to make this a failure")


@contextmanager
def launch_browser() -> Iterator[Browser]:
    """Headless Chromium, closed on exit; skips (or fails, see module doc) without it."""
    if not CHROMIUM.exists():
        browser_unavailable(f"{CHROMIUM} does not exist")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        browser_unavailable(f"playwright is not importable ({exc})")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def browser_context(browser: Browser, **options: Any) -> Iterator[BrowserContext]:
    """A fresh context (no cookies, no storage), closed on exit; ``options`` as Playwright's."""
    context = browser.new_context(**options)
    try:
        yield context
    finally:
        context.close()


class Budget:
    """What is left of the test's time, given to each Playwright wait in turn."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def ms(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            pytest.fail(f"the browser steps took longer than {self.seconds} s")
        return left * 1000


@dataclass
class Observed:
    """Every URL the browser requested and every error a page reported."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} at {message.location}")

    def on_page_error(self, error: Exception) -> None:
        self.page_errors.append(str(error))

    def foreign_requests(self, base_url: str) -> list[str]:
        own = origin(base_url)
        # data: URLs never reach the network; blob: URLs carry the origin that created them.
        return [url for url in self.requests if not url.startswith("data:") and origin(url) != own]


def origin(url: str) -> str:
    if url.startswith("blob:"):
        url = url.removeprefix("blob:")
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def observe(context: BrowserContext) -> Observed:
    """Start recording what every page of ``context`` requests and reports."""
    record = Observed()
    # On the context, not one page: popups and workers a page starts are seen too.
    context.on("request", record.on_request)
    context.on("console", record.on_console)
    context.on("weberror", lambda web_error: record.on_page_error(web_error.error))
    return record


def open_page(page: Page, url: str, budget: Budget) -> None:
    """Navigate and require a 200 for the document itself."""
    response = page.goto(url, timeout=budget.ms())
    assert response is not None and response.status == 200, f"GET {url}: {response}"


def save_screenshot(
    page: Page, name: str, *, full_page: bool = False, timeout: float | None = None
) -> Path:
    """Write ``artifacts/screenshots/<name>.png`` at the repository root; return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled", timeout=timeout)
    return path

"""Swagger UI and ReDoc in a real browser, against a real ``authsvc serve``.

A new user's path: read the admin password ``authsvc serve`` printed on first start, open
``/docs``, sign in with **Authorize** (the OAuth2 password flow), then call ``GET /users/me``
with "Try it out". Every request the browser makes must go to the server's own origin, and the
pages must log no console errors.

Headless Debian Chromium (``/usr/bin/chromium``) driven by Playwright; nothing is downloaded.
Without Playwright or that browser the tests skip, unless ``AUTHSVC_REQUIRE_BROWSER=1``, which
turns the skip into a failure (for CI images that are meant to have the browser).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

import pytest

from tests.live_server import Server, generated_admin_password, server_factory

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
# The whole browser part of one test, every wait included.
TEST_BUDGET_SECONDS = 30.0


def _browser_unavailable(reason: str) -> NoReturn:
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason}, and AUTHSVC_REQUIRE_BROWSER=1 requires the browser tests")
    pytest.skip(f"{reason}; set AUTHSVC_REQUIRE_BROWSER=1 to make this a failure")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        _browser_unavailable(f"{CHROMIUM} does not exist")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _browser_unavailable(f"playwright is not importable ({exc})")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server on the default SQLite file in an empty directory, as a new user starts it."""
    with server_factory(tmp_path_factory.mktemp("docs") / "srv", {}) as factory:
        yield factory.start()


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
        own = _origin(base_url)
        # data: URLs never reach the network; blob: URLs carry the origin that created them.
        return [url for url in self.requests if not url.startswith("data:") and _origin(url) != own]


def _origin(url: str) -> str:
    if url.startswith("blob:"):
        url = url.removeprefix("blob:")
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def observed(context: BrowserContext) -> Observed:
    record = Observed()
    # On the context, not one page: popups and workers a page starts are seen too.
    context.on("request", record.on_request)
    context.on("console", record.on_console)
    context.on("weberror", lambda web_error: record.on_page_error(web_error.error))
    return record


@pytest.fixture
def budget() -> Budget:
    return Budget(TEST_BUDGET_SECONDS)


def _open(page: Page, url: str, budget: Budget) -> None:
    response = page.goto(url, timeout=budget.ms())
    assert response is not None and response.status == 200, f"GET {url}: {response}"


def _redacted(form: str | None, secret: str) -> str:
    return (form or "").replace(secret, "<password>")


def test_swagger_ui_login_then_try_users_me(
    server: Server, context: BrowserContext, observed: Observed, budget: Budget
) -> None:
    from playwright.sync_api import expect

    password = generated_admin_password(server)
    page = context.new_page()
    _open(page, f"{server.base_url}/docs", budget)

    # Sign in through the password-flow form of the Authorize dialog.
    authorize = page.locator(".auth-wrapper").get_by_role("button", name="Authorize")
    authorize.click(timeout=budget.ms())
    dialog = page.locator(".dialog-ux .modal-ux")
    expect(dialog).to_be_visible(timeout=budget.ms())
    dialog.get_by_label("username:").fill("admin", timeout=budget.ms())
    dialog.get_by_label("password:", exact=True).fill(password, timeout=budget.ms())
    with page.expect_response(f"{server.base_url}/oauth2/token", timeout=budget.ms()) as issued:
        dialog.get_by_role("button", name="Apply given OAuth2 credentials").click(
            timeout=budget.ms()
        )
    token_response = issued.value
    token_request = token_response.request
    assert token_response.status == 200, (
        f"Swagger UI sent {token_request.method} {token_request.url}\n"
        f"headers: {token_request.headers}\n"
        f"body: {_redacted(token_request.post_data, password)}\n"
        f"and got {token_response.status}: {token_response.text()}"
    )

    # The dialog says so, offers Logout instead, and the page's button shows a closed lock.
    expect(dialog.get_by_role("heading", name="Authorized", exact=True)).to_be_visible(
        timeout=budget.ms()
    )
    expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible(
        timeout=budget.ms()
    )
    dialog.get_by_role("button", name="Close", exact=True).click(timeout=budget.ms())
    expect(dialog).to_have_count(0, timeout=budget.ms())
    expect(authorize).to_have_class(re.compile(r"\blocked\b"), timeout=budget.ms())

    # GET /users/me: expand, Try it out, Execute.
    operation = page.locator(".opblock.opblock-get").filter(
        has=page.locator('.opblock-summary-path[data-path="/users/me"]')
    )
    expect(operation).to_have_count(1, timeout=budget.ms())
    operation.locator(".opblock-summary-control").click(timeout=budget.ms())
    operation.get_by_role("button", name="Try it out").click(timeout=budget.ms())
    with page.expect_response(f"{server.base_url}/users/me", timeout=budget.ms()) as called:
        operation.get_by_role("button", name="Execute").click(timeout=budget.ms())
    me_request = called.value.request
    assert (me_request.headers.get("authorization") or "").startswith("Bearer "), (
        f"Swagger UI called /users/me without a bearer token: {me_request.headers}"
    )

    result = operation.locator(".live-responses-table tr.response")
    expect(result.locator(".response-col_status")).to_have_text("200", timeout=budget.ms())
    body = result.locator(".response-col_description .highlight-code code")
    expect(body).to_contain_text('"admin"', timeout=budget.ms())
    me = json.loads(body.inner_text(timeout=budget.ms()))
    assert me["username"] == "admin"
    assert me["scopes"] == ["admin"]

    assert observed.foreign_requests(server.base_url) == []
    assert observed.console_errors == []
    assert observed.page_errors == []


def test_redoc_renders_the_api(
    server: Server, context: BrowserContext, observed: Observed, budget: Budget
) -> None:
    from playwright.sync_api import expect

    page = context.new_page()
    _open(page, f"{server.base_url}/redoc", budget)

    # ReDoc renders the title as "authsvc (0.1.0)" once it has fetched /openapi.json.
    title = page.get_by_role("heading", level=1)
    expect(title).to_have_text(re.compile(r"^authsvc\b"), timeout=budget.ms())
    expect(page.get_by_role("heading", name="Issue an access token")).to_be_visible(
        timeout=budget.ms()
    )
    assert observed.page_errors == []


def test_redoc_loads_nothing_from_other_origins(
    server: Server, context: BrowserContext, observed: Observed, budget: Budget
) -> None:
    from playwright.sync_api import expect

    page = context.new_page()
    _open(page, f"{server.base_url}/redoc", budget)
    expect(page.get_by_role("heading", level=1)).to_have_text(
        re.compile(r"^authsvc\b"), timeout=budget.ms()
    )
    # Everything ReDoc requests is started by the time it has rendered; let it settle.
    page.wait_for_load_state("networkidle", timeout=budget.ms())

    assert observed.foreign_requests(server.base_url) == []
    assert observed.console_errors == []
    assert observed.page_errors == []

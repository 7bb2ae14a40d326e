"""Swagger UI and ReDoc in a real browser, against a real ``authsvc serve``.

A new user's path: read the admin password ``authsvc serve`` printed on first start, open
``/docs``, sign in with **Authorize** (the OAuth2 password flow), then call ``GET /users/me``
with "Try it out". Every request the browser makes must go to the server's own origin, and the
pages must log no console errors.

Headless Debian Chromium driven by Playwright (``tests/browser_support.py``); without it the
tests skip, unless ``AUTHSVC_REQUIRE_BROWSER=1``. The Swagger UI test leaves a screenshot of
its end state in ``artifacts/screenshots/docs-users-me.png``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser_support import (
    Budget,
    Observed,
    browser_context,
    launch_browser,
    observe,
    open_page,
    save_screenshot,
)
from tests.live_server import Server, generated_admin_password, server_factory

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

# The whole browser part of one test, every wait included.
TEST_BUDGET_SECONDS = 30.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server on the default SQLite file in an empty directory, as a new user starts it."""
    with server_factory(tmp_path_factory.mktemp("docs") / "srv", {}) as factory:
        yield factory.start()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    with browser_context(browser) as context:
        yield context


@pytest.fixture
def observed(context: BrowserContext) -> Observed:
    return observe(context)


@pytest.fixture
def budget() -> Budget:
    return Budget(TEST_BUDGET_SECONDS)


def _redacted(form: str | None, secret: str) -> str:
    return (form or "").replace(secret, "<password>")


def test_swagger_ui_login_then_try_users_me(
    server: Server, context: BrowserContext, observed: Observed, budget: Budget
) -> None:
    from playwright.sync_api import expect

    password = generated_admin_password(server)
    page = context.new_page()
    open_page(page, f"{server.base_url}/docs", budget)

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
    # The picture starts at the request URL: the curl line above it shows the bearer token.
    operation.locator(".request-url").evaluate(
        "element => element.scrollIntoView()", timeout=budget.ms()
    )
    save_screenshot(page, "docs-users-me", timeout=budget.ms())

    assert observed.foreign_requests(server.base_url) == []
    assert observed.console_errors == []
    assert observed.page_errors == []


def test_redoc_renders_the_api(
    server: Server, context: BrowserContext, observed: Observed, budget: Budget
) -> None:
    from playwright.sync_api import expect

    page = context.new_page()
    open_page(page, f"{server.base_url}/redoc", budget)

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
    open_page(page, f"{server.base_url}/redoc", budget)
    expect(page.get_by_role("heading", level=1)).to_have_text(
        re.compile(r"^authsvc\b"), timeout=budget.ms()
    )
    # Everything ReDoc requests is started by the time it has rendered; let it settle.
    page.wait_for_load_state("networkidle", timeout=budget.ms())

    assert observed.foreign_requests(server.base_url) == []
    assert observed.console_errors == []
    assert observed.page_errors == []

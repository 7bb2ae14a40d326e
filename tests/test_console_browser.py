"""The admin console (``/console``) in a real browser, against a real ``authsvc serve``.

An admin signs in with the password ``authsvc serve`` printed on first start, creates a scope
and a user holding it, disables the user, and finds both changes in the audit trail; a wrong
password leaves the browser on the sign-in screen with the service's reason; a new client's
secret is shown once and gone when dismissed; a token the API refuses (401) sends the admin back
to the sign-in screen. All the while the page requests nothing from another origin, logs no
error, and keeps the access token out of storage and the URL. Plain HTTP tests check the page's
policy, that nothing inline could need an exception to it, and that ``/console/<name>`` serves
its fixed list of files only.

Browser helpers are in ``tests/browser_support.py`` (skips without Chromium unless
``AUTHSVC_REQUIRE_BROWSER=1``). Screenshots land in ``artifacts/screenshots/console-*.png``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi.testclient import TestClient

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
    from playwright.sync_api import Browser, BrowserContext, Locator, Page, Request, Response

# The whole browser part of one test, every wait included.
TEST_BUDGET_SECONDS = 45.0
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SCOPE = "reports:read"
CAROL_PASSWORD = "carol-password-1"
DAVE_PASSWORD = "dave-password-1"
ERIN_PASSWORD = "erin-password-1"
CAROL_FULL_NAME = "Carol Example"
# Markup in a field an attacker controls must show as text, never become elements.
CLIENT_NAME = "Nightly <i>export</i>"
# How long one look at the audit table waits before clicking Refresh again.
AUDIT_POLL_MS = 1000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server on the default SQLite file in an empty directory, as a new user starts it."""
    with server_factory(tmp_path_factory.mktemp("console") / "srv", {}) as factory:
        yield factory.start()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # Wide enough for the users table without a scrollbar: the screenshots go in the README.
    with browser_context(browser, viewport={"width": 1360, "height": 900}) as context:
        yield context


@pytest.fixture
def observed(context: BrowserContext) -> Observed:
    return observe(context)


@pytest.fixture
def budget() -> Budget:
    return Budget(TEST_BUDGET_SECONDS)


def _is_call(method: str, url: str) -> Callable[[Response], bool]:
    return lambda response: response.request.method == method and response.url == url


def _submit_sign_in(page: Page, username: str, password: str, budget: Budget) -> Response:
    """Fill the sign-in form, submit it, and return the token endpoint's answer."""
    form = page.get_by_role("form", name="Sign in")
    form.get_by_label("Username").fill(username, timeout=budget.ms())
    form.get_by_label("Password").fill(password, timeout=budget.ms())
    with page.expect_response(
        lambda response: response.url.endswith("/oauth2/token"), timeout=budget.ms()
    ) as issued:
        form.get_by_role("button", name="Sign in").click(timeout=budget.ms())
    return issued.value


def _user_row(page: Page, username: str) -> Locator:
    table = page.get_by_role("table", name="Users", exact=True)
    # The row header is the username, then a "you" badge on the signed-in admin's own row.
    name = re.compile(rf"^{re.escape(username)}(?: you)?$")
    return table.get_by_role("row").filter(has=page.get_by_role("rowheader", name=name))


def test_console_sign_in_create_user_with_scope_disable_and_see_it_in_list_and_audit(
    server: Server, context: BrowserContext, observed: Observed, budget: Budget
) -> None:
    from playwright.sync_api import expect

    base = server.base_url
    password = generated_admin_password(server)
    page = context.new_page()
    admin_calls: list[tuple[str, str, str | None]] = []

    def record_admin_call(request: Request) -> None:
        if request.url.startswith(f"{base}/admin/"):
            admin_calls.append((request.method, request.url, request.headers.get("authorization")))

    page.on("request", record_admin_call)
    open_page(page, f"{base}/console", budget)

    # Sign in: a form post of the password grant asking for the admin scope.
    token_response = _submit_sign_in(page, "admin", password, budget)
    assert token_response.status == 200, token_response.text()
    form = parse_qs(token_response.request.post_data or "")
    # Compared apart, so a failure does not print the password.
    sent_the_password = form.pop("password", None) == [password]
    assert sent_the_password, "the token request does not carry the typed password"
    assert form == {"grant_type": ["password"], "username": ["admin"], "scope": ["admin"]}
    assert token_response.request.headers["content-type"].startswith(
        "application/x-www-form-urlencoded"
    )
    tokens = token_response.json()
    access_token = tokens["access_token"]
    expect(page.get_by_role("tab", name="Users")).to_have_attribute(
        "aria-selected", "true", timeout=budget.ms()
    )
    expect(page.locator("#sign-in-password")).to_have_value("", timeout=budget.ms())
    expect(_user_row(page, "admin")).to_have_count(1, timeout=budget.ms())

    # A scope first: only an existing scope can be granted.
    scope_form = page.get_by_role("form", name="Create scope")
    scope_form.get_by_label("Scope name").fill(SCOPE, timeout=budget.ms())
    scope_form.get_by_label("Description").fill("Read the reports", timeout=budget.ms())
    with page.expect_response(_is_call("POST", f"{base}/admin/scopes"), timeout=budget.ms()) as sc:
        scope_form.get_by_role("button", name="Create scope").click(timeout=budget.ms())
    assert sc.value.status == 201, sc.value.text()
    assert sc.value.request.post_data_json == {"name": SCOPE, "description": "Read the reports"}
    expect(page.get_by_role("list", name="Existing scopes")).to_contain_text(
        SCOPE, timeout=budget.ms()
    )

    # Then carol, holding it.
    user_form = page.get_by_role("form", name="Create user")
    user_form.get_by_label("Username").fill("carol", timeout=budget.ms())
    user_form.get_by_label("Password").fill(CAROL_PASSWORD, timeout=budget.ms())
    user_form.get_by_label("E-mail").fill("carol@example.com", timeout=budget.ms())
    user_form.get_by_label("Full name").fill(CAROL_FULL_NAME, timeout=budget.ms())
    user_form.get_by_label(SCOPE, exact=True).check(timeout=budget.ms())
    expect(user_form.get_by_label("Active")).to_be_checked(timeout=budget.ms())
    with page.expect_response(_is_call("POST", f"{base}/admin/users"), timeout=budget.ms()) as uc:
        user_form.get_by_role("button", name="Create user").click(timeout=budget.ms())
    assert uc.value.status == 201, uc.value.text()
    assert uc.value.request.post_data_json == {
        "username": "carol",
        "password": CAROL_PASSWORD,
        "email": "carol@example.com",
        "full_name": CAROL_FULL_NAME,
        "scopes": [SCOPE],
        "is_active": True,
    }
    carol_id = uc.value.json()["id"]
    expect(user_form.get_by_label("Password")).to_have_value("", timeout=budget.ms())

    # The list shows her: active, with the scope.
    carol = _user_row(page, "carol")
    expect(carol).to_have_count(1, timeout=budget.ms())
    cells = carol.get_by_role("cell")
    expect(cells).to_have_text(
        [
            "carol@example.com",
            CAROL_FULL_NAME,
            "Active",
            SCOPE,
            re.compile(r"^\d{4}-"),
            re.compile(r"."),
        ],
        timeout=budget.ms(),
    )

    # Disable her: a PATCH of is_active alone, and the row says so.
    with page.expect_response(
        _is_call("PATCH", f"{base}/admin/users/{carol_id}"), timeout=budget.ms()
    ) as patched:
        carol.get_by_role("button", name="Disable carol").click(timeout=budget.ms())
    assert patched.value.status == 200, patched.value.text()
    assert patched.value.request.post_data_json == {"is_active": False}
    assert patched.value.json()["is_active"] is False
    expect(cells.nth(2)).to_have_text("Disabled", timeout=budget.ms())
    expect(carol.get_by_role("button", name="Enable carol")).to_be_visible(timeout=budget.ms())
    expect(page.get_by_role("status")).to_have_text("carol is now disabled.", timeout=budget.ms())
    save_screenshot(page, "console-users", timeout=budget.ms())

    # The audit trail has both events; the writer flushes in the background, so look again
    # (Refresh) until they are there.
    page.get_by_role("tab", name="Audit").click(timeout=budget.ms())
    audit = page.get_by_role("tabpanel", name="Audit")
    audit.get_by_label("User", exact=True).fill("carol", timeout=budget.ms())
    audit.get_by_role("button", name="Apply").click(timeout=budget.ms())
    rows = audit.get_by_role("table").get_by_role("row")
    created = rows.filter(has_text="user.created").filter(has_text="carol")
    updated = rows.filter(has_text="user.updated").filter(has_text="carol")
    while True:
        try:
            expect(created).to_have_count(1, timeout=min(AUDIT_POLL_MS, budget.ms()))
            expect(updated).to_have_count(1, timeout=min(AUDIT_POLL_MS, budget.ms()))
            break
        except AssertionError:
            audit.get_by_role("button", name="Refresh").click(timeout=budget.ms())
    expect(created).to_contain_text("success", timeout=budget.ms())
    expect(created).to_contain_text(f'"scopes":["{SCOPE}"]', timeout=budget.ms())
    expect(updated).to_contain_text('"is_active":false', timeout=budget.ms())
    # Newest first: the update above the creation.
    expect(rows.filter(has_text="carol").first).to_contain_text("user.updated", timeout=budget.ms())
    save_screenshot(page, "console-audit", timeout=budget.ms())

    # Every admin call carried the token, in the header only.
    assert admin_calls, "the console made no admin API call"
    for method, url, authorization in admin_calls:
        assert authorization == f"Bearer {access_token}", f"{method} {url}: {authorization}"
    secrets = [access_token, tokens.get("refresh_token") or access_token]
    stored = page.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage),"
        " document.cookie])"
    )
    for secret in secrets:
        assert secret not in stored
        assert secret not in page.url
        assert not any(secret in url for url in observed.requests)
    assert context.cookies() == []

    assert observed.foreign_requests(base) == []
    assert observed.console_errors == []
    assert observed.page_errors == []


def test_console_sign_in_with_a_wrong_password_shows_an_error(
    server: Server, context: BrowserContext, observed: Observed, budget: Budget
) -> None:
    from playwright.sync_api import expect

    page = context.new_page()
    open_page(page, f"{server.base_url}/console", budget)

    refused = _submit_sign_in(page, "admin", "not-the-admin-password", budget)
    assert refused.status == 400
    assert refused.json()["error"] == "invalid_grant"

    alert = page.get_by_role("alert")
    expect(alert).to_have_text("Sign-in failed: Invalid username or password", timeout=budget.ms())
    form = page.get_by_role("form", name="Sign in")
    expect(form).to_be_visible(timeout=budget.ms())
    expect(form.get_by_label("Password")).to_have_value("", timeout=budget.ms())
    expect(page.get_by_role("tablist")).to_have_count(0, timeout=budget.ms())
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0, timeout=budget.ms())
    save_screenshot(page, "console-sign-in-error", timeout=budget.ms())

    assert observed.foreign_requests(server.base_url) == []
    # Chromium reports the refused token request itself; nothing else may go wrong.
    assert _other_than_refused(observed.console_errors, "/oauth2/token") == []
    assert observed.page_errors == []


def test_console_shows_a_new_client_secret_once_until_it_is_dismissed(
    server: Server, context: BrowserContext, observed: Observed, budget: Budget
) -> None:
    from playwright.sync_api import expect

    base = server.base_url
    page = context.new_page()
    open_page(page, f"{base}/console", budget)
    signed_in = _submit_sign_in(page, "admin", generated_admin_password(server), budget)
    assert signed_in.status == 200, signed_in.text()

    page.get_by_role("tab", name="Clients").click(timeout=budget.ms())
    form = page.get_by_role("form", name="Create client")
    form.get_by_label("Client name").fill(CLIENT_NAME, timeout=budget.ms())
    expect(form.get_by_label("client_credentials")).to_be_checked(timeout=budget.ms())
    expect(form.get_by_label("Confidential")).to_be_checked(timeout=budget.ms())
    with page.expect_response(_is_call("POST", f"{base}/admin/clients"), timeout=budget.ms()) as cc:
        form.get_by_role("button", name="Create client").click(timeout=budget.ms())
    assert cc.value.status == 201, cc.value.text()
    created = cc.value.json()
    secret = created["client_secret"]
    assert secret

    box = page.get_by_role("region", name="Client secret — shown once")
    expect(box).to_be_visible(timeout=budget.ms())
    expect(box.locator("code").filter(has_text=secret)).to_have_text(secret, timeout=budget.ms())
    row = (
        page.get_by_role("table", name="Clients")
        .get_by_role("row")
        .filter(has_text=created["client_id"])
    )
    expect(row.get_by_role("rowheader")).to_have_text(CLIENT_NAME, timeout=budget.ms())
    expect(row.locator("i")).to_have_count(0, timeout=budget.ms())
    expect(row).to_contain_text("Confidential", timeout=budget.ms())
    expect(row).not_to_contain_text(secret, timeout=budget.ms())

    box.get_by_role("button", name="I have copied it").click(timeout=budget.ms())
    expect(box).to_have_count(0, timeout=budget.ms())
    assert secret not in page.content()
    assert secret not in page.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
    )

    assert observed.foreign_requests(base) == []
    assert observed.console_errors == []
    assert observed.page_errors == []


def test_console_returns_to_sign_in_when_the_api_refuses_the_token(
    server: Server, context: BrowserContext, observed: Observed, budget: Budget
) -> None:
    from playwright.sync_api import expect

    base = server.base_url
    # An admin of its own, so ending its sessions touches no other test.
    admin = server.login("admin", generated_admin_password(server))["access_token"]
    dave = httpx.post(
        f"{base}/admin/users",
        json={"username": "dave", "password": DAVE_PASSWORD, "scopes": ["admin"]},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert dave.status_code == 201, dave.text
    page = context.new_page()
    open_page(page, f"{base}/console", budget)
    signed_in = _submit_sign_in(page, "dave", DAVE_PASSWORD, budget)
    assert signed_in.status == 200, signed_in.text()
    expect(_user_row(page, "dave")).to_have_count(1, timeout=budget.ms())

    deleted = httpx.delete(
        f"{base}/admin/users/{dave.json()['id']}",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert deleted.status_code == 204, deleted.text
    # A write: no read cache stands between it and the token check.
    scope_form = page.get_by_role("form", name="Create scope")
    scope_form.get_by_label("Scope name").fill("never:created", timeout=budget.ms())
    with page.expect_response(_is_call("POST", f"{base}/admin/scopes"), timeout=budget.ms()) as sc:
        scope_form.get_by_role("button", name="Create scope").click(timeout=budget.ms())
    assert sc.value.status == 401

    expect(page.get_by_role("status")).to_have_text(
        "Your session expired. Sign in again.", timeout=budget.ms()
    )
    expect(page.get_by_role("form", name="Sign in")).to_be_visible(timeout=budget.ms())
    expect(page.get_by_role("tablist")).to_have_count(0, timeout=budget.ms())
    # What the session showed is gone from the page, not just hidden.
    expect(page.locator("#users-body tr")).to_have_count(0, timeout=budget.ms())

    assert observed.foreign_requests(base) == []
    assert _other_than_refused(observed.console_errors, "/admin/scopes") == []
    assert observed.page_errors == []


def test_console_signs_in_as_a_named_client_and_sign_out_ends_the_session(
    server: Server, context: BrowserContext, observed: Observed, budget: Budget
) -> None:
    """Where only registered clients may get tokens, the console names one; signing out
    revokes what it was given, so no session outlives the page."""
    from playwright.sync_api import expect

    base = server.base_url
    admin_token = server.login("admin", generated_admin_password(server))["access_token"]
    admin = {"Authorization": f"Bearer {admin_token}"}
    registered = httpx.post(
        f"{base}/admin/clients",
        json={
            "name": "admin console",
            "grant_types": ["password", "refresh_token"],
            "scopes": ["admin"],
            "confidential": False,
        },
        headers=admin,
        timeout=10,
    )
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]
    erin = httpx.post(
        f"{base}/admin/users",
        json={"username": "erin", "password": ERIN_PASSWORD, "scopes": ["admin"]},
        headers=admin,
        timeout=10,
    )
    assert erin.status_code == 201, erin.text
    sessions_url = f"{base}/admin/users/{erin.json()['id']}/sessions"

    page = context.new_page()
    open_page(page, f"{base}/console", budget)
    form = page.get_by_role("form", name="Sign in")
    form.get_by_text("Client", exact=True).click(timeout=budget.ms())
    form.get_by_label("Client ID").fill(client_id, timeout=budget.ms())
    signed_in = _submit_sign_in(page, "erin", ERIN_PASSWORD, budget)
    assert signed_in.status == 200, signed_in.text()
    assert parse_qs(signed_in.request.post_data or "")["client_id"] == [client_id]
    expect(_user_row(page, "erin")).to_have_count(1, timeout=budget.ms())
    sessions = httpx.get(sessions_url, headers=admin, timeout=10).json()
    assert [session["client_id"] for session in sessions] == [client_id]

    with page.expect_response(
        lambda response: response.url == f"{base}/oauth2/revoke", timeout=budget.ms()
    ) as revoked:
        page.get_by_role("button", name="Sign out").click(timeout=budget.ms())
    assert revoked.value.status == 200
    expect(page.get_by_role("form", name="Sign in")).to_be_visible(timeout=budget.ms())
    # Both revocations are on their way (keepalive); the session ends within the budget
    # (budget.ms() fails the test once it is spent).
    while httpx.get(sessions_url, headers=admin, timeout=10).json() != []:
        page.wait_for_timeout(min(100, budget.ms()))

    assert observed.foreign_requests(base) == []
    assert observed.console_errors == []
    assert observed.page_errors == []


def _other_than_refused(console_errors: list[str], path: str) -> list[str]:
    """The console errors besides Chromium's own report of a refused request to ``path``."""
    return [
        error
        for error in console_errors
        if not (error.startswith("Failed to load resource") and f"{path}'" in error)
    ]


class _Markup(HTMLParser):
    """Every start tag with its attributes, and the text inside each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_bodies: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.script_bodies.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_bodies[-1] += data


def test_console_page_has_the_strict_policy_and_nothing_inline(client: TestClient) -> None:
    response = client.get("/console")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers.get_list("content-security-policy") == [CONSOLE_CSP]

    html = response.text
    markup = _Markup()
    markup.feed(html)
    markup.close()
    scripts = [attrs for tag, attrs in markup.tags if tag == "script"]
    assert scripts, "the console page loads no script"
    assert all(attrs.get("src") for attrs in scripts), scripts
    assert [body for body in markup.script_bodies if body.strip()] == []
    assert [tag for tag, _ in markup.tags if tag == "style"] == []
    handlers = [
        (tag, name) for tag, attrs in markup.tags for name in attrs if name.startswith("on")
    ]
    assert handlers == []
    assert [tag for tag, attrs in markup.tags if "style" in attrs] == []
    assert re.findall(r"https?://", html, re.IGNORECASE) == []
    assert "javascript:" not in html.lower()

    for asset, media_type in (("console.js", "text/javascript"), ("console.css", "text/css")):
        served = client.get(f"/console/{asset}")
        assert served.status_code == 200, asset
        assert served.headers["content-type"].startswith(media_type)
        assert re.findall(r"https?://", served.text, re.IGNORECASE) == [], asset
    icon = client.get("/console/favicon.svg")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/svg+xml"


def test_console_script_builds_the_page_without_html_strings_or_storage(
    client: TestClient,
) -> None:
    script = client.get("/console/console.js").text
    assert re.findall(r"\.(?:inner|outer)HTML\b|insertAdjacentHTML|document\.write", script) == []
    assert re.findall(r"localStorage|sessionStorage|document\.cookie|indexedDB", script) == []
    assert re.findall(r"\beval\(|new Function\(|setTimeout\(\s*['\"`]", script) == []


@pytest.mark.parametrize(
    "path",
    [
        "/console/nope.js",
        "/console/index.html",
        "/console/..%2Fpyproject.toml",
        "/console/%2e%2e%2fpyproject.toml",
        "/console/..%2F..%2Fpyproject.toml",
        "/console/..%5Cpyproject.toml",
        "/console/console.js%00.txt",
    ],
    ids=["unknown", "page-as-asset", "dotdot", "encoded-dots", "two-up", "backslash", "nul"],
)
def test_console_serves_no_file_outside_its_fixed_list(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404, response.text
    assert "[project]" not in response.text

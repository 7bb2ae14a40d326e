"""No secret ever reaches a log line, and no error body carries a trace, SQL or a secret.

One full flow (login, refresh, ``/users/me``, a password change, client registration and
secret rotation, client_credentials, introspection, revocation, admin resets, disables and
grants, and the usual failures) runs with every log record captured at DEBUG. Every secret
the flow saw is collected: passwords (right and wrong), access and refresh tokens and their
signature segments, client secrets and their Basic credentials, a username that is really a
password, and the hashes read straight from the database. None may occur in any record,
however it is formatted (the text and JSON formatters operators use, the raw record). The
scanner itself is checked first, on secrets logged on purpose.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from authsvc.config import Settings
from authsvc.db.models import Client, RefreshToken, User
from authsvc.observability.logs import ACCESS_LOGGER, JsonFormatter, TextFormatter
from authsvc.security.keys import SigningKey
from tests.helpers import (
    ADMIN_PASSWORD,
    EXPIRED_TOKEN,
    TOKEN_URL,
    UNKNOWN_USER,
    Forger,
    assert_invalid_token,
    assert_oauth_error,
    basic,
    bearer,
    user_claims,
)

INTROSPECT_URL = "/oauth2/introspect"
REVOKE_URL = "/oauth2/revoke"
BASIC_CHALLENGE = 'Basic realm="authsvc"'
BAD_CREDENTIALS = "Invalid username or password"

BOB_FIRST_PASSWORD = "Bob-first-Passw0rd-1"
BOB_CHANGED_PASSWORD = "Bob-changed-Passw0rd-2"
BOB_RESET_PASSWORD = "Bob-reset-by-admin-Passw0rd-3"
BOB_WRONG_PASSWORD = "Bob-wrong-guess-Passw0rd-9"
PASSWORD_AS_USERNAME = "Hunter2-secret-typed-as-username"
GARBAGE_BEARER = "garbage-bearer-token-aGVsbG8td29ybGQ"
PASSWORD_IN_URL = "Password-sent-in-the-URL-7"

# What an error body must never show: a Python trace, SQL, or the name of a database driver.
TRACE_OR_SQL = (
    "Traceback",
    'File "',
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    "DELETE FROM",
    " WHERE ",
    "sqlite3.",
    "psycopg",
    "sqlalchemy",
    "IntegrityError",
    "OperationalError",
)

# The test's own HTTP client logs each URL it requests; it is not part of the service.
TEST_CLIENT_LOGGERS = frozenset({"httpx", "httpx2", "httpcore", "httpcore2"})


# --- capturing every record ----------------------------------------------------------------


class _Collector(logging.Handler):
    """Keeps every record it sees, once, whichever logger it was attached to."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._seen: set[int] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if id(record) not in self._seen:
            self._seen.add(id(record))
            self.records.append(record)


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[_Collector]:
    """Every record at DEBUG from every logger, for the whole test.

    The root logger goes to DEBUG (through caplog, which restores it), and so do ``authsvc``
    and its request log. A collector of our own hangs on the root and on every logger that
    does not propagate (``logging_config`` makes ``authsvc`` and ``uvicorn`` so, and a test
    that applied it earlier in this process may have left them so), so no record escapes.
    SQLAlchemy keeps the WARNING level it sets for itself: below that is its statement echo,
    which is off in production and stays off here.
    """
    caplog.set_level(logging.DEBUG)
    ours = ["authsvc", ACCESS_LOGGER, "authsvc.audit", "authsvc.guard", "uvicorn", "uvicorn.error"]
    ours += [name for name in logging.Logger.manager.loggerDict if name.startswith("authsvc.")]
    for name in dict.fromkeys(ours):
        caplog.set_level(logging.DEBUG, logger=name)
    collector = _Collector()
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in ours)]
    for existing in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(existing, logging.Logger) and not existing.propagate:
            loggers.append(existing)
    attached = list(dict.fromkeys(loggers))
    # A dictConfig run earlier in this process may have disabled existing loggers.
    disabled = [logger for logger in attached if logger.disabled]
    for logger in attached:
        logger.disabled = False
        logger.addHandler(collector)
    try:
        yield collector
    finally:
        for logger in attached:
            logger.removeHandler(collector)
        for logger in disabled:
            logger.disabled = True


def _renderings(record: logging.LogRecord) -> Iterator[tuple[str, str]]:
    """Every way a record may end up written: the formatters operators run, and the raw record
    (a third-party formatter may dump any attribute of it)."""
    yield "text", TextFormatter().format(record)
    yield "json", JsonFormatter().format(record)
    yield "message", record.getMessage()
    yield "record", str(record.__dict__)
    yield "default", logging.Formatter("%(message)s %(args)s").format(record)


def _leaks(
    records: Iterable[logging.LogRecord], secrets: dict[str, str]
) -> list[tuple[str, str, str]]:
    """(secret's label, logger name, rendering) for each secret found in a rendered record."""
    found: list[tuple[str, str, str]] = []
    for record in records:
        if record.name.split(".")[0] in TEST_CLIENT_LOGGERS:
            continue
        for how, text in _renderings(record):
            found.extend(
                (label, record.name, how) for label, secret in secrets.items() if secret in text
            )
    return found


def _body_problems(response: httpx2.Response, secrets: dict[str, str]) -> list[str]:
    text = response.text
    problems = [f"{marker!r} in the body" for marker in TRACE_OR_SQL if marker in text]
    problems.extend(f"secret {label} in the body" for label, s in secrets.items() if s in text)
    return problems


# --- the scanner finds what it must ----------------------------------------------------------

PLANTED = "planted-secret-0123456789abcdef"
_HTTP_FIELDS = {
    "request_id": "r1",
    "method": "GET",
    "route": "/users/me",
    "status": 200,
    "duration_ms": 1.0,
    "client_id": None,
    "sub": None,
}


@pytest.mark.parametrize(
    "log",
    [
        lambda logger: logger.info("client secret %s", PLANTED),
        lambda logger: logger.info("message only " + PLANTED),
        lambda logger: logger.debug("extra field", extra={"detail": PLANTED}),
        lambda logger: logger.warning("dict arg %s", {"password": PLANTED}),
        lambda logger: logger.error("failed", exc_info=ValueError(PLANTED)),
    ],
    ids=["argument", "message", "extra", "nested", "exception"],
)
def test_scanner_finds_a_secret_logged_on_purpose(captured: _Collector, log: Any) -> None:
    """Self-check: the scan below would fail if a secret were logged, however it was logged."""
    log(logging.getLogger("authsvc.leak-check"))

    assert _leaks(captured.records, {"planted": PLANTED})
    assert not _leaks(captured.records, {"absent": "never-logged-" + PLANTED[::-1]})


def test_collector_sees_loggers_that_do_not_propagate(captured: _Collector) -> None:
    """Self-check: a request line on a logger cut off from the root is still scanned, and the
    secret is found in the text, JSON and raw renderings of it."""
    logger = logging.getLogger(ACCESS_LOGGER)
    propagate = logger.propagate
    logger.propagate = False
    try:
        logger.info("request", extra={"http": {**_HTTP_FIELDS, "sub": PLANTED}})
    finally:
        logger.propagate = propagate

    assert [label for label, _, _ in _leaks(captured.records, {"p": PLANTED})] == ["p"] * 3


# --- the flow --------------------------------------------------------------------------------


@dataclass
class _Flow:
    """Runs requests, remembering every response and every secret it saw."""

    http: TestClient
    database_url: str
    secrets: dict[str, str] = field(default_factory=dict)
    responses: list[tuple[str, httpx2.Response]] = field(default_factory=list)

    def call(self, step: str, method: str, url: str, **kwargs: Any) -> httpx2.Response:
        response = self.http.request(method, url, **kwargs)
        self.responses.append((step, response))
        return response

    def secret(self, label: str, value: str) -> str:
        self.secrets[label] = value
        # Forms carry it percent-encoded, Basic credentials and some logs base64'd.
        for variant, text in (
            ("form", quote_plus(value)),
            ("url", quote(value, safe="")),
            ("b64", base64.b64encode(value.encode()).decode()),
        ):
            if text != value:
                self.secrets[f"{label}/{variant}"] = text
        return value

    def token(self, label: str, value: str) -> str:
        """An access or refresh token: the whole of it, and a JWT's signature segment alone
        (a log could print only part of a token; the other parts are not secret)."""
        self.secret(label, value)
        if value.count(".") == 2:
            self.secrets[f"{label}/signature"] = value.rsplit(".", 1)[1]
        return value

    def tokens(self, label: str, body: dict[str, Any]) -> dict[str, Any]:
        self.token(f"{label}/access", body["access_token"])
        if "refresh_token" in body:
            self.token(f"{label}/refresh", body["refresh_token"])
        return body

    def client_secret(self, label: str, client_id: str, secret: str) -> None:
        self.secret(label, secret)
        self.secrets[f"{label}/basic"] = basic(client_id, secret)["Authorization"].split()[1]

    def login(self, step: str, username: str, password: str) -> dict[str, Any]:
        response = self.call(
            step,
            "POST",
            TOKEN_URL,
            data={"grant_type": "password", "username": username, "password": password},
        )
        assert response.status_code == 200, response.text
        return self.tokens(step, response.json())

    def stored_hashes(self, step: str) -> None:
        """Read every hash the database holds now (password hashes change along the way)."""
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                for username, password_hash in connection.execute(
                    select(User.username, User.password_hash)
                ):
                    self._hash(f"{step}/users.password_hash/{username}", password_hash)
                for (token_hash,) in connection.execute(select(RefreshToken.token_hash)):
                    self._hash(f"refresh_tokens.token_hash/{token_hash[:8]}", token_hash)
                for client_id, secret_hash in connection.execute(
                    select(Client.client_id, Client.secret_hash)
                ):
                    if secret_hash is not None:
                        self._hash(f"{step}/clients.secret_hash/{client_id}", secret_hash)
        finally:
            engine.dispose()

    def _hash(self, label: str, value: str) -> None:
        self.secrets[label] = value
        # The digest alone, without the scheme and cost that every bcrypt hash shares.
        digest = value.rsplit("$", 1)[-1]
        if digest != value and len(digest) >= 16:
            self.secrets[f"{label}/digest"] = digest


def _expired_token(signing_key: SigningKey, user_id: str, username: str) -> str:
    past = int(time.time()) - 3600
    forger = Forger(signing_key, lambda: user_claims({"id": user_id, "username": username}))
    return forger.token(payload=forger.claims(iat=past - 600, nbf=past - 600, exp=past))


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    return f"{header}.{flipped}.{signature}"


def _run_flow(flow: _Flow, admin: dict[str, Any], signing_key: SigningKey) -> None:
    call = flow.call
    flow.secret("admin password", ADMIN_PASSWORD)
    for label, value in (
        ("bob first password", BOB_FIRST_PASSWORD),
        ("bob changed password", BOB_CHANGED_PASSWORD),
        ("bob reset password", BOB_RESET_PASSWORD),
        ("wrong password", BOB_WRONG_PASSWORD),
        ("password typed as username", PASSWORD_AS_USERNAME),
        ("garbage bearer token", GARBAGE_BEARER),
        ("password in URL", PASSWORD_IN_URL),
    ):
        flow.secret(label, value)
    flow.stored_hashes("start")

    admin_tokens = flow.login("admin login", admin["username"], ADMIN_PASSWORD)
    admin_headers = bearer(admin_tokens["access_token"])

    # The admin creates bob, with a password.
    created = call(
        "create bob",
        "POST",
        "/admin/users",
        headers=admin_headers,
        json={"username": "bob", "password": BOB_FIRST_PASSWORD, "email": "bob@example.com"},
    )
    assert created.status_code == 201, created.text
    bob_id = created.json()["id"]
    flow.stored_hashes("bob created")

    # bob logs in, refreshes, reads his profile.
    first = flow.login("bob login", "bob", BOB_FIRST_PASSWORD)
    refreshed = call(
        "bob refresh",
        "POST",
        TOKEN_URL,
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert refreshed.status_code == 200, refreshed.text
    second = flow.tokens("bob refresh", refreshed.json())
    bob_headers = bearer(second["access_token"])
    me = call("bob me", "GET", "/users/me", headers=bob_headers)
    assert me.status_code == 200, me.text
    flow.stored_hashes("bob signed in")

    # bob changes his password: once with a wrong current password, then properly.
    wrong_current = call(
        "bob password change, wrong current",
        "POST",
        "/users/me/password",
        headers=bob_headers,
        json={"current_password": BOB_WRONG_PASSWORD, "new_password": BOB_CHANGED_PASSWORD},
    )
    assert wrong_current.status_code == 400, wrong_current.text
    changed = call(
        "bob password change",
        "POST",
        "/users/me/password",
        headers=bob_headers,
        json={"current_password": BOB_FIRST_PASSWORD, "new_password": BOB_CHANGED_PASSWORD},
    )
    assert changed.status_code == 204, changed.text
    flow.stored_hashes("bob changed password")
    third = flow.login("bob login after change", "bob", BOB_CHANGED_PASSWORD)

    # The admin registers a confidential client (its secret is shown once), then rotates it.
    registered = call(
        "register client",
        "POST",
        "/admin/clients",
        headers=admin_headers,
        json={"name": "rs", "grant_types": ["client_credentials"]},
    )
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]
    old_secret = registered.json()["client_secret"]
    flow.client_secret("client secret (first)", client_id, old_secret)
    flow.stored_hashes("client registered")
    rotated = call(
        "rotate client secret", "POST", f"/admin/clients/{client_id}/secret", headers=admin_headers
    )
    assert rotated.status_code == 200, rotated.text
    client_secret = rotated.json()["client_secret"]
    flow.client_secret("client secret", client_id, client_secret)
    flow.stored_hashes("client secret rotated")
    credentials = basic(client_id, client_secret)

    # client_credentials, with Basic credentials and with the secret in the form.
    for step, kwargs in (
        ("client_credentials basic", {"headers": credentials}),
        (
            "client_credentials post",
            {"data": {"client_id": client_id, "client_secret": client_secret}},
        ),
    ):
        data = {"grant_type": "client_credentials", **kwargs.pop("data", {})}
        issued = call(step, "POST", TOKEN_URL, data=data, **kwargs)
        assert issued.status_code == 200, issued.text
        flow.tokens(step, issued.json())

    # The client introspects bob's access and refresh tokens.
    for step, token in (
        ("introspect access", third["access_token"]),
        ("introspect refresh", third["refresh_token"]),
    ):
        answer = call(step, "POST", INTROSPECT_URL, data={"token": token}, headers=credentials)
        assert answer.status_code == 200, answer.text
        assert answer.json()["active"] is True

    # bob's latest refresh token is revoked (by the public client it was issued to).
    revoked = call("revoke refresh", "POST", REVOKE_URL, data={"token": third["refresh_token"]})
    assert revoked.status_code == 200, revoked.text

    # The admin grants a scope, resets bob's password, then disables him.
    scope = call(
        "create scope", "POST", "/admin/scopes", headers=admin_headers, json={"name": "reports"}
    )
    assert scope.status_code == 201, scope.text
    for step, body in (
        ("grant scope", {"scopes": ["reports"]}),
        ("reset password", {"password": BOB_RESET_PASSWORD}),
    ):
        patched = call(step, "PATCH", f"/admin/users/{bob_id}", headers=admin_headers, json=body)
        assert patched.status_code == 200, patched.text
    flow.stored_hashes("bob password reset")
    fourth = flow.login("bob login after reset", "bob", BOB_RESET_PASSWORD)
    disabled = call(
        "disable bob",
        "PATCH",
        f"/admin/users/{bob_id}",
        headers=admin_headers,
        json={"is_active": False},
    )
    assert disabled.status_code == 200, disabled.text

    # --- failures, each with the exact refusal it gets ---
    assert_oauth_error(
        call(
            "wrong password",
            "POST",
            TOKEN_URL,
            data={
                "grant_type": "password",
                "username": admin["username"],
                "password": BOB_WRONG_PASSWORD,
            },
        ),
        400,
        "invalid_grant",
        BAD_CREDENTIALS,
    )
    assert_oauth_error(
        call(
            "disabled user login",
            "POST",
            TOKEN_URL,
            data={"grant_type": "password", "username": "bob", "password": BOB_RESET_PASSWORD},
        ),
        400,
        "invalid_grant",
        BAD_CREDENTIALS,
    )
    assert_oauth_error(
        call(
            "password typed as username",
            "POST",
            TOKEN_URL,
            data={
                "grant_type": "password",
                "username": PASSWORD_AS_USERNAME,
                "password": BOB_WRONG_PASSWORD,
            },
        ),
        400,
        "invalid_grant",
        BAD_CREDENTIALS,
    )
    in_url = call(
        "credentials in the URL",
        "POST",
        f"{TOKEN_URL}?grant_type=password&username=bob&password={PASSWORD_IN_URL}",
        data={"grant_type": "password"},
    )
    assert_oauth_error(in_url, 400, "invalid_request")
    wrong_secret = flow.secret("wrong client secret", "Wrong-client-secret-" + client_secret[:4])
    for step, url, data in (
        ("wrong client secret, token", TOKEN_URL, {"grant_type": "client_credentials"}),
        ("wrong client secret, introspect", INTROSPECT_URL, {"token": third["access_token"]}),
    ):
        refused = call(step, "POST", url, data=data, headers=basic(client_id, wrong_secret))
        assert_oauth_error(refused, 401, "invalid_client")
        assert refused.headers["www-authenticate"] == BASIC_CHALLENGE
    flow.secrets["wrong client secret/basic"] = basic(client_id, wrong_secret)[
        "Authorization"
    ].split()[1]
    old_secret_refused = call(
        "rotated-away client secret",
        "POST",
        TOKEN_URL,
        data={"grant_type": "client_credentials"},
        headers=basic(client_id, old_secret),
    )
    assert_oauth_error(old_secret_refused, 401, "invalid_client")
    for step, refresh_token in (
        ("reused refresh token", first["refresh_token"]),
        ("revoked refresh token", third["refresh_token"]),
    ):
        reused = call(
            step,
            "POST",
            TOKEN_URL,
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        )
        assert_oauth_error(reused, 400, "invalid_grant")
        assert "www-authenticate" not in reused.headers

    expired = flow.token("expired token", _expired_token(signing_key, bob_id, "bob"))
    tampered = flow.token("tampered token", _tampered(fourth["access_token"]))
    assert_invalid_token(call("garbage bearer", "GET", "/users/me", headers=bearer(GARBAGE_BEARER)))
    assert_invalid_token(call("tampered token", "GET", "/users/me", headers=bearer(tampered)))
    assert_invalid_token(
        call("expired token", "GET", "/users/me", headers=bearer(expired)), EXPIRED_TOKEN
    )
    assert_invalid_token(
        call("refresh token as bearer", "GET", "/users/me", headers=bearer(fourth["refresh_token"]))
    )
    assert_invalid_token(
        call("disabled user's token", "GET", "/users/me", headers=bearer(fourth["access_token"])),
        UNKNOWN_USER,
    )
    flow.stored_hashes("end")


def test_full_flow_logs_no_password_token_secret_or_hash(
    captured: _Collector,
    caplog: pytest.LogCaptureFixture,
    app: FastAPI,
    settings: Settings,
    admin: dict[str, Any],
    signing_key: SigningKey,
) -> None:
    """Logs of a full flow (login, refresh, introspect, revoke, admin changes, failures) carry
    no password, token, refresh token, client secret or hash."""
    # A client of our own rather than the ``client`` fixture: its startup and shutdown (the
    # audit flush) then happen inside the capture too.
    with TestClient(app) as http:
        flow = _Flow(http, settings.database_url)
        _run_flow(flow, admin, signing_key)
    flow.stored_hashes("after shutdown")

    records = list(dict.fromkeys([*captured.records, *caplog.records]))
    # The capture works: every request left its line in the request log.
    access = [record for record in records if record.name == ACCESS_LOGGER]
    assert len(access) >= len(flow.responses)
    # Every kind of secret was collected (else the scan below would prove little).
    labels = " ".join(flow.secrets)
    for kind in ("password", "access", "refresh", "signature", "client secret", "password_hash"):
        assert kind in labels, kind
    assert "refresh_tokens.token_hash" in labels
    assert "clients.secret_hash" in labels
    short = {label: secret for label, secret in flow.secrets.items() if len(secret) < 12}
    assert not short, short  # a short "secret" could match by chance

    assert _leaks(records, flow.secrets) == []


def test_error_bodies_of_the_flow_carry_no_trace_sql_or_secret(
    client: TestClient,
    settings: Settings,
    admin: dict[str, Any],
    signing_key: SigningKey,
) -> None:
    """Every 4xx answer of the flow: no stack trace, no SQL, no driver name, no secret."""
    flow = _Flow(client, settings.database_url)
    _run_flow(flow, admin, signing_key)

    errors = [(step, r) for step, r in flow.responses if 400 <= r.status_code < 500]
    assert len(errors) >= 15
    problems = {
        f"{step} ({response.status_code})": found
        for step, response in errors
        if (found := _body_problems(response, flow.secrets))
    }
    assert problems == {}


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/users/me/password", {"current_password": "x", "new_password": "Short-7"}),
        ("POST", "/admin/users", {"username": "carol", "password": "Short-7"}),
        ("PATCH", "/admin/users/{user_id}", {"password": "Short-7"}),
        # A missing field is reported with the whole body as its input.
        ("POST", "/admin/users", {"password": "Short-7"}),
        ("POST", "/admin/users", {"usernme": "carol", "password": "Short-7"}),
        ("POST", "/admin/users", ["Short-7"]),
    ],
    ids=["own-change", "admin-create", "admin-reset", "missing-field", "misspelt", "not-object"],
)
def test_password_refused_by_the_policy_is_not_echoed_in_the_422_body(
    client: TestClient,
    admin: dict[str, Any],
    user: dict[str, Any],
    captured: _Collector,
    method: str,
    url: str,
    body: Any,
) -> None:
    """A refused body (a password too short for the policy, a missing or misspelt field, not
    an object) is answered 422 without its password repeated back."""
    login = client.post(
        TOKEN_URL,
        data={"grant_type": "password", "username": admin["username"], "password": ADMIN_PASSWORD},
    )
    headers = bearer(login.json()["access_token"])

    response = client.request(method, url.format(user_id=user["id"]), headers=headers, json=body)

    assert response.status_code == 422, response.text
    secrets = {"refused password": "Short-7", "admin password": ADMIN_PASSWORD}
    assert _body_problems(response, secrets) == []
    assert _leaks(captured.records, secrets) == []
    if isinstance(body, dict):
        # The body still says which field is wrong (the short password), just not its value.
        assert re.search(r"password", response.text)

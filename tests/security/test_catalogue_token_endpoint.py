"""Security catalogue, rows O06-O13: attacks on and bad input to the OAuth2 endpoints.

The token endpoint (RFC 6749 §2.3, §3.2, §5.2) must refuse a wrong client secret, a missing or
unknown grant type, a JSON body, a repeated parameter and credentials in the URL, and no
password or secret sent in such a request may reach a log record. Successful token responses
are never cached; revocation (RFC 7009) answers 200 whatever the token; introspection (RFC 7662)
requires client authentication and answers exactly ``{"active": false}`` for any junk token.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from authsvc.observability.logs import ACCESS_LOGGER, JsonFormatter, TextFormatter
from tests.helpers import (
    TOKEN_URL,
    USER_PASSWORD,
    alice_tokens,
    assert_no_store,
    assert_oauth_error,
    b64url,
    basic,
    bearer,
    client_credentials_token,
    create_client,
    encode_segment,
    refresh_grant,
)

REVOKE_URL = "/oauth2/revoke"
INTROSPECT_URL = "/oauth2/introspect"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
BASIC_CHALLENGE = 'Basic realm="authsvc"'
CLIENT_AUTH_FAILED = "Client authentication failed"
CLIENT_AUTH_REQUIRED = "Client authentication required"
NOT_A_FORM = "The request body must be application/x-www-form-urlencoded"
PARAMS_IN_URL = "Parameters must be sent in the request body, not the URL"
INACTIVE = {"active": False}
# A client secret that is nobody's: what an attacker guesses.
WRONG_SECRET = "wrong-secret-" + secrets.token_urlsafe(16)
# The loggers a record could reach an operator through, whatever their propagate settings
# (``authsvc serve`` gives "authsvc" and "uvicorn" handlers of their own, propagate off).
WATCHED_LOGGERS = ("", "authsvc", ACCESS_LOGGER, "authsvc.audit", "uvicorn", "uvicorn.error")
# The test's own HTTP client logs the URL it requested: that is the caller's log, not ours.
CLIENT_SIDE_LOGGERS = ("httpx", "httpx2", "httpcore")


# --- helpers -------------------------------------------------------------------------------


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log_records(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Every log record emitted at any level while the test runs, on any watched logger."""
    for name in WATCHED_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    recorder = _Recorder()
    loggers = [logging.getLogger(name or None) for name in WATCHED_LOGGERS]
    for logger in loggers:
        logger.addHandler(recorder)
    try:
        yield recorder.records
    finally:
        for logger in loggers:
            logger.removeHandler(recorder)


def _assert_not_logged(records: list[logging.LogRecord], *values: str) -> None:
    """No record (message, args, ``extra`` fields, or either of our formats) holds ``values``."""
    # The request line proves the capture works: a test that saw no records proves nothing.
    assert any(record.name == ACCESS_LOGGER for record in records)
    formatters: list[logging.Formatter] = [TextFormatter(), JsonFormatter()]
    for record in {id(record): record for record in records}.values():
        if record.name.split(".")[0] in CLIENT_SIDE_LOGGERS:
            continue
        rendered = [str(record.__dict__), record.getMessage()]
        rendered += [formatter.format(record) for formatter in formatters]
        for value in values:
            for text in rendered:
                assert value not in text, f"{value!r} logged by {record.name}: {text}"


def _assert_invalid_client(response: httpx2.Response, description: str) -> None:
    """RFC 6749 §5.2: 401 invalid_client with the Basic challenge, and no token."""
    assert_oauth_error(response, 401, "invalid_client", description)
    assert response.headers["www-authenticate"] == BASIC_CHALLENGE


def _assert_bad_request(response: httpx2.Response, error: str, description: str) -> None:
    """A 400 from the token endpoint: not an authentication failure, so no challenge."""
    assert_oauth_error(response, 400, error, description)
    assert "www-authenticate" not in response.headers


def _post_form(
    client: TestClient, url: str, body: str, headers: dict[str, str] | None = None
) -> httpx2.Response:
    """POST a raw form body, exactly as given (repeats and odd encodings survive)."""
    return client.post(url, content=body.encode(), headers={**FORM, **(headers or {})})


def _revoke(
    client: TestClient, token: str, headers: dict[str, str] | None = None, **extra: str
) -> httpx2.Response:
    return client.post(REVOKE_URL, data={"token": token, **extra}, headers=headers)


def _assert_revocation_ok(response: httpx2.Response) -> None:
    """RFC 7009 §2.2: 200 with an empty body, whether or not the token existed."""
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert "www-authenticate" not in response.headers
    assert_no_store(response)


def _introspect(client: TestClient, rs: dict[str, Any], token: str) -> httpx2.Response:
    return client.post(
        INTROSPECT_URL, data={"token": token}, headers=basic(rs["client_id"], rs["client_secret"])
    )


def _is_active(client: TestClient, rs: dict[str, Any], token: str) -> bool:
    response = _introspect(client, rs, token)
    assert response.status_code == 200, response.text
    active: bool = response.json()["active"]
    return active


def _me_status(client: TestClient, access_token: str) -> int:
    return client.get("/users/me", headers=bearer(access_token)).status_code


def _jwe_shaped() -> str:
    """RFC 7516 compact serialization: five segments, an encryption header, random parts."""
    header = encode_segment({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "x"})
    parts = [b64url(secrets.token_bytes(size)) for size in (256, 12, 64, 16)]
    return ".".join([header, *parts])


@pytest.fixture
def rs(client: TestClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    """A registered confidential client allowed the client_credentials grant."""
    return create_client(client, admin_headers)


# --- O06: wrong client secret ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_o06_wrong_client_secret_is_401_invalid_client_with_basic_challenge(
    client: TestClient,
    rs: dict[str, Any],
    log_records: list[logging.LogRecord],
    method: str,
) -> None:
    """O06: client_credentials with a wrong secret → 401 invalid_client + WWW-Authenticate:
    Basic (also for client_secret_post); neither secret is logged."""
    if method == "client_secret_basic":
        response = client.post(
            TOKEN_URL,
            data={"grant_type": "client_credentials"},
            headers=basic(rs["client_id"], WRONG_SECRET),
        )
    else:
        response = client.post(
            TOKEN_URL,
            data={
                "grant_type": "client_credentials",
                "client_id": rs["client_id"],
                "client_secret": WRONG_SECRET,
            },
        )

    _assert_invalid_client(response, CLIENT_AUTH_FAILED)
    assert WRONG_SECRET not in response.text
    _assert_not_logged(log_records, WRONG_SECRET, rs["client_secret"])


def test_o06_secret_of_another_client_is_401_invalid_client(
    client: TestClient,
    admin_headers: dict[str, str],
    rs: dict[str, Any],
    log_records: list[logging.LogRecord],
) -> None:
    """O06: a valid secret, but another client's, authenticates nobody."""
    other = create_client(client, admin_headers, name="billing")

    response = client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials"},
        headers=basic(rs["client_id"], other["client_secret"]),
    )

    _assert_invalid_client(response, CLIENT_AUTH_FAILED)
    _assert_not_logged(log_records, rs["client_secret"], other["client_secret"])


# --- O07: missing or unknown grant_type ------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        f"username=alice&password={USER_PASSWORD}",
        f"grant_type=&username=alice&password={USER_PASSWORD}",
    ],
    ids=["absent", "empty"],
)
def test_o07_missing_grant_type_is_400_invalid_request(
    client: TestClient,
    user: dict[str, Any],
    log_records: list[logging.LogRecord],
    body: str,
) -> None:
    """O07: no grant_type (RFC 6749 §3.2: an empty value counts as omitted) → 400
    invalid_request."""
    response = _post_form(client, TOKEN_URL, body)

    _assert_bad_request(response, "invalid_request", "Missing parameter: grant_type")
    _assert_not_logged(log_records, USER_PASSWORD)


@pytest.mark.parametrize(
    "grant_type",
    [
        "implicit",
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "PASSWORD",
        " password",
    ],
    ids=["implicit", "code", "jwt-bearer", "device-code", "token-exchange", "upper-case", "space"],
)
def test_o07_unknown_grant_type_is_400_unsupported_grant_type(
    client: TestClient,
    user: dict[str, Any],
    log_records: list[logging.LogRecord],
    grant_type: str,
) -> None:
    """O07: a grant_type the server does not implement → 400 unsupported_grant_type."""
    response = client.post(
        TOKEN_URL,
        data={"grant_type": grant_type, "username": "alice", "password": USER_PASSWORD},
    )

    _assert_bad_request(response, "unsupported_grant_type", f"Unsupported grant_type: {grant_type}")
    _assert_not_logged(log_records, USER_PASSWORD)


# --- O08: a body that is not a form ------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (
            "application/json",
            json.dumps({"grant_type": "password", "username": "alice", "password": USER_PASSWORD}),
        ),
        (
            "application/json; charset=utf-8",
            json.dumps({"grant_type": "password", "username": "alice", "password": USER_PASSWORD}),
        ),
        ("text/plain", f"grant_type=password&username=alice&password={USER_PASSWORD}"),
        (
            "multipart/form-data; boundary=b",
            "--b\r\nContent-Disposition: form-data; name=grant_type\r\n\r\npassword\r\n"
            "--b\r\nContent-Disposition: form-data; name=username\r\n\r\nalice\r\n"
            f"--b\r\nContent-Disposition: form-data; name=password\r\n\r\n{USER_PASSWORD}\r\n"
            "--b--\r\n",
        ),
        (None, f"grant_type=password&username=alice&password={USER_PASSWORD}"),
    ],
    ids=["json", "json-charset", "text-plain", "multipart", "no-content-type"],
)
def test_o08_body_that_is_not_form_encoded_is_400_invalid_request(
    client: TestClient,
    user: dict[str, Any],
    log_records: list[logging.LogRecord],
    content_type: str | None,
    body: str,
) -> None:
    """O08: a JSON (or any non-form) body at /oauth2/token → 400 invalid_request, no token,
    even when it carries good credentials."""
    headers = {"Content-Type": content_type} if content_type is not None else {}

    response = client.post(TOKEN_URL, content=body.encode(), headers=headers)

    _assert_bad_request(response, "invalid_request", NOT_A_FORM)
    _assert_not_logged(log_records, USER_PASSWORD)


# --- O09: a repeated parameter -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "repeated"),
    [
        (
            f"grant_type=password&grant_type=password&username=alice&password={USER_PASSWORD}",
            "grant_type",
        ),
        (
            f"grant_type=password&username=alice&username=root-admin&password={USER_PASSWORD}",
            "username",
        ),
        (
            f"grant_type=password&username=alice&password=guess&password={USER_PASSWORD}",
            "password",
        ),
        (
            f"grant_type=password&username=alice&password={USER_PASSWORD}&scope=&scope=admin",
            "scope",
        ),
        (
            f"grant_type=password&grant_type=&username=alice&password={USER_PASSWORD}",
            "grant_type",
        ),
        (
            f"grant%5Ftype=client_credentials&grant_type=password&username=alice"
            f"&password={USER_PASSWORD}",
            "grant_type",
        ),
    ],
    ids=[
        "grant-type",
        "username-differs",
        "password-differs",
        "scope-empty-then-admin",
        "grant-type-then-empty",
        "percent-encoded-name",
    ],
)
def test_o09_repeated_parameter_is_400_invalid_request(
    client: TestClient,
    admin: dict[str, Any],
    user: dict[str, Any],
    log_records: list[logging.LogRecord],
    body: str,
    repeated: str,
) -> None:
    """O09: RFC 6749 §3.2, parameters MUST NOT be included more than once → 400
    invalid_request, whichever copy a lenient parser would have kept."""
    response = _post_form(client, TOKEN_URL, body)

    _assert_bad_request(response, "invalid_request", f"Parameter repeated: {repeated}")
    _assert_not_logged(log_records, USER_PASSWORD)


def test_o09_repeated_client_secret_is_400_invalid_request(
    client: TestClient, rs: dict[str, Any], log_records: list[logging.LogRecord]
) -> None:
    """O09: a second client_secret (a guess beside the real one) is refused, not tried."""
    body = (
        f"grant_type=client_credentials&client_id={rs['client_id']}"
        f"&client_secret={WRONG_SECRET}&client_secret={rs['client_secret']}"
    )

    response = _post_form(client, TOKEN_URL, body)

    _assert_bad_request(response, "invalid_request", "Parameter repeated: client_secret")
    _assert_not_logged(log_records, WRONG_SECRET, rs["client_secret"])


# --- O10: credentials in the query string ------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "body"),
    [
        (f"grant_type=password&username=alice&password={USER_PASSWORD}", ""),
        (
            f"grant_type=password&username=alice&password={USER_PASSWORD}",
            f"grant_type=password&username=alice&password={USER_PASSWORD}",
        ),
        (f"password={USER_PASSWORD}", "grant_type=password&username=alice"),
    ],
    ids=["all-in-url-empty-body", "url-and-body", "password-only-in-url"],
)
def test_o10_password_in_the_query_string_is_400_and_never_logged(
    client: TestClient,
    user: dict[str, Any],
    log_records: list[logging.LogRecord],
    query: str,
    body: str,
) -> None:
    """O10: /oauth2/token?username=..&password=.. → 400 invalid_request, no token, and the
    password is in no log record."""
    response = _post_form(client, f"{TOKEN_URL}?{query}", body)

    _assert_bad_request(response, "invalid_request", PARAMS_IN_URL)
    assert USER_PASSWORD not in response.text
    _assert_not_logged(log_records, USER_PASSWORD)


@pytest.mark.parametrize("in_url", ["client_secret", "client_id-and-client_secret"])
def test_o10_client_secret_in_the_query_string_is_400_and_never_logged(
    client: TestClient,
    rs: dict[str, Any],
    log_records: list[logging.LogRecord],
    in_url: str,
) -> None:
    """O10: /oauth2/token?client_secret=.. → 400 invalid_request, no token, and the secret is
    in no log record."""
    if in_url == "client_secret":
        query = f"client_secret={rs['client_secret']}"
        body = f"grant_type=client_credentials&client_id={rs['client_id']}"
    else:
        query = f"client_id={rs['client_id']}&client_secret={rs['client_secret']}"
        body = "grant_type=client_credentials"

    response = _post_form(client, f"{TOKEN_URL}?{query}", body)

    _assert_bad_request(response, "invalid_request", PARAMS_IN_URL)
    assert rs["client_secret"] not in response.text
    _assert_not_logged(log_records, rs["client_secret"])


# --- O11: token response headers ---------------------------------------------------------------


@pytest.mark.parametrize("grant", ["password", "client_credentials", "refresh_token"])
def test_o11_token_response_is_json_and_never_cached(
    client: TestClient, user: dict[str, Any], rs: dict[str, Any], grant: str
) -> None:
    """O11: every successful token response carries Cache-Control: no-store and
    Pragma: no-cache (RFC 6749 §5.1) and is application/json."""
    if grant == "password":
        response = client.post(
            TOKEN_URL,
            data={"grant_type": "password", "username": "alice", "password": USER_PASSWORD},
        )
    elif grant == "client_credentials":
        response = client.post(
            TOKEN_URL,
            data={"grant_type": "client_credentials"},
            headers=basic(rs["client_id"], rs["client_secret"]),
        )
    else:
        response = refresh_grant(client, alice_tokens(client)["refresh_token"])

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert_no_store(response)
    assert response.json()["token_type"] == "Bearer"


# --- O12: revocation edge cases ----------------------------------------------------------------


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"], ids=str)
@pytest.mark.parametrize(
    "token",
    [
        secrets.token_urlsafe(32),
        "garbage",
        "a.b.c",
        _jwe_shaped(),
        secrets.token_hex(512),
        "x" * 9000,
    ],
    ids=["unknown-refresh-token", "word", "jwt-shaped", "jwe-shaped", "1kib-junk", "oversized"],
)
def test_o12_revoking_an_unknown_or_garbage_token_is_200(
    client: TestClient, token: str, hint: str | None
) -> None:
    """O12: RFC 7009 §2.2, an invalid token is no error: 200, empty body, any valid hint."""
    extra = {"token_type_hint": hint} if hint is not None else {}

    _assert_revocation_ok(_revoke(client, token, **extra))


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_o12_revoking_an_already_revoked_token_is_200_again(
    client: TestClient, user: dict[str, Any], kind: str
) -> None:
    """O12: revoking a revoked token is 200 both times, and it stays revoked."""
    tokens = alice_tokens(client)

    _assert_revocation_ok(_revoke(client, tokens[kind]))
    _assert_revocation_ok(_revoke(client, tokens[kind]))

    if kind == "access_token":
        assert _me_status(client, tokens[kind]) == 401
    else:
        assert refresh_grant(client, tokens[kind]).status_code == 400


@pytest.mark.parametrize(
    ("kind", "hint"),
    [("access_token", "refresh_token"), ("refresh_token", "access_token")],
    ids=["access-hinted-refresh", "refresh-hinted-access"],
)
def test_o12_a_wrong_token_type_hint_still_revokes_the_token(
    client: TestClient, user: dict[str, Any], kind: str, hint: str
) -> None:
    """O12: RFC 7009 §2.1, a hint that misleads widens the search; the token is revoked."""
    tokens = alice_tokens(client)

    _assert_revocation_ok(_revoke(client, tokens[kind], token_type_hint=hint))

    if kind == "access_token":
        assert _me_status(client, tokens[kind]) == 401
    else:
        assert refresh_grant(client, tokens[kind]).status_code == 400


def test_o12_an_empty_token_type_hint_counts_as_none(
    client: TestClient, user: dict[str, Any]
) -> None:
    """O12: RFC 6749 §3.2 (an empty value is omitted): ``token_type_hint=`` is no hint."""
    token = alice_tokens(client)["access_token"]

    _assert_revocation_ok(_post_form(client, REVOKE_URL, f"token={token}&token_type_hint="))

    assert _me_status(client, token) == 401


@pytest.mark.parametrize(
    "hint", ["id_token", "urn:ietf:params:oauth:token-type:saml2", "garbage", "ACCESS_TOKEN"]
)
def test_o12_an_unknown_token_type_hint_is_400_unsupported_token_type(
    client: TestClient, user: dict[str, Any], hint: str
) -> None:
    """O12: RFC 7009 §2.2.1, a token type the server does not revoke is
    unsupported_token_type; nothing is revoked."""
    tokens = alice_tokens(client)

    for kind in ("access_token", "refresh_token"):
        response = _revoke(client, tokens[kind], token_type_hint=hint)
        _assert_bad_request(response, "unsupported_token_type", f"Unknown token_type_hint: {hint}")

    assert _me_status(client, tokens["access_token"]) == 200
    assert refresh_grant(client, tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"], ids=str)
@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_o12_revoking_another_clients_token_is_200_and_revokes_nothing(
    client: TestClient, user: dict[str, Any], rs: dict[str, Any], kind: str, hint: str | None
) -> None:
    """O12: RFC 7009 §2.1, a client may only revoke its own tokens; the answer is still 200."""
    tokens = alice_tokens(client, client_id="web-app")
    extra = {"token_type_hint": hint} if hint is not None else {}

    _assert_revocation_ok(
        _revoke(client, tokens[kind], basic(rs["client_id"], rs["client_secret"]), **extra)
    )
    _assert_revocation_ok(_revoke(client, tokens[kind], client_id="mobile-app", **extra))

    assert _me_status(client, tokens["access_token"]) == 200
    assert refresh_grant(client, tokens["refresh_token"], client_id="web-app").status_code == 200


def test_o12_revoking_another_confidential_clients_token_is_200_and_revokes_nothing(
    client: TestClient, admin_headers: dict[str, str], rs: dict[str, Any]
) -> None:
    """O12: one confidential client cannot revoke another's client_credentials token."""
    other = create_client(client, admin_headers, name="billing")
    token = client_credentials_token(client, other)

    _assert_revocation_ok(_revoke(client, token, basic(rs["client_id"], rs["client_secret"])))

    assert _is_active(client, other, token)


@pytest.mark.parametrize(
    ("credentials", "description"),
    [
        ("wrong-secret", CLIENT_AUTH_FAILED),
        ("post-wrong-secret", CLIENT_AUTH_FAILED),
        ("secret-without-client", "client_secret without client_id"),
        ("malformed-basic", "Malformed Basic credentials"),
    ],
)
def test_o12_revocation_with_failed_client_authentication_is_401_invalid_client(
    client: TestClient,
    rs: dict[str, Any],
    log_records: list[logging.LogRecord],
    credentials: str,
    description: str,
) -> None:
    """O12: RFC 7009 §2.2.1, invalid_client when client authentication fails; the token
    survives and the guessed secret is not logged."""
    token = client_credentials_token(client, rs)
    if credentials == "wrong-secret":
        response = _revoke(client, token, basic(rs["client_id"], WRONG_SECRET))
    elif credentials == "post-wrong-secret":
        response = _revoke(client, token, client_id=rs["client_id"], client_secret=WRONG_SECRET)
    elif credentials == "secret-without-client":
        response = _revoke(client, token, client_secret=WRONG_SECRET)
    else:
        response = _revoke(client, token, {"Authorization": "Basic !!not-base64!!"})

    _assert_invalid_client(response, description)
    assert _is_active(client, rs, token)
    _assert_not_logged(log_records, WRONG_SECRET, rs["client_secret"])


# --- O13: introspection without auth or with garbage ---------------------------------------


def test_o13_introspection_without_client_authentication_is_401_invalid_client(
    client: TestClient, user: dict[str, Any]
) -> None:
    """O13: RFC 7662 §2.1, the endpoint is protected: no credentials → 401 invalid_client with
    the Basic challenge, and nothing about the token."""
    token = alice_tokens(client)["access_token"]

    response = client.post(INTROSPECT_URL, data={"token": token})

    _assert_invalid_client(response, CLIENT_AUTH_REQUIRED)
    assert "active" not in response.text


@pytest.mark.parametrize(
    ("authorization", "form", "description"),
    [
        ("Basic !!not-base64!!", {}, "Malformed Basic credentials"),
        ("Basic " + base64.b64encode(b"no-colon-here").decode(), {}, "Malformed Basic credentials"),
        ("Basic Og==", {}, CLIENT_AUTH_REQUIRED),
        (None, {"client_id": "no-such-client", "client_secret": WRONG_SECRET}, CLIENT_AUTH_FAILED),
        ("Bearer garbage", {}, "Unsupported client authentication scheme"),
        ("Digest username=x", {}, "Unsupported client authentication scheme"),
        ("RS-WRONG-SECRET", {}, CLIENT_AUTH_FAILED),
        ("UNKNOWN-CLIENT", {}, CLIENT_AUTH_FAILED),
    ],
    ids=[
        "basic-not-base64",
        "basic-without-colon",
        "basic-empty-id",
        "post-unknown-client",
        "bearer-garbage",
        "digest",
        "basic-wrong-secret",
        "basic-unknown-client",
    ],
)
def test_o13_introspection_with_garbage_credentials_is_401_invalid_client(
    client: TestClient,
    rs: dict[str, Any],
    user: dict[str, Any],
    log_records: list[logging.LogRecord],
    authorization: str | None,
    form: dict[str, str],
    description: str,
) -> None:
    """O13: garbage client credentials → 401 invalid_client with the Basic challenge; the
    guessed secret is not logged."""
    token = alice_tokens(client)["access_token"]
    if authorization == "RS-WRONG-SECRET":
        headers = basic(rs["client_id"], WRONG_SECRET)
    elif authorization == "UNKNOWN-CLIENT":
        headers = basic("no-such-client", WRONG_SECRET)
    elif authorization is not None:
        headers = {"Authorization": authorization}
    else:
        headers = {}

    response = client.post(INTROSPECT_URL, data={"token": token, **form}, headers=headers)

    _assert_invalid_client(response, description)
    assert "active" not in response.text
    _assert_not_logged(log_records, WRONG_SECRET, rs["client_secret"], USER_PASSWORD)


@pytest.mark.parametrize(
    "token",
    [
        "random text with spaces",
        " ",
        secrets.token_urlsafe(32),
        secrets.token_hex(512),
        _jwe_shaped(),
        "a.b.c",
        "....",
        "\x00\x01\x02",
        "x" * 9000,
    ],
    ids=[
        "random-text",
        "blank",
        "random-refresh-shaped",
        "1kib-junk",
        "jwe-shaped",
        "jwt-shaped",
        "dots",
        "control-chars",
        "oversized",
    ],
)
def test_o13_introspecting_a_garbage_token_is_exactly_active_false(
    client: TestClient, rs: dict[str, Any], token: str
) -> None:
    """O13: RFC 7662 §2.2, an authorized caller introspecting junk gets 200 and exactly
    ``{"active": false}``, never cached."""
    response = _introspect(client, rs, token)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == INACTIVE
    assert_no_store(response)


def test_o13_introspecting_an_empty_token_is_400_invalid_request(
    client: TestClient, rs: dict[str, Any]
) -> None:
    """O13: ``token=`` is an omitted token (RFC 6749 §3.2; RFC 7662 §2.1 makes it REQUIRED):
    400 invalid_request, not an answer about a token."""
    response = _introspect(client, rs, "")

    _assert_bad_request(response, "invalid_request", "Missing parameter: token")

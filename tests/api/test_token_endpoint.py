"""POST /oauth2/token: the password grant's success path and every RFC 6749 §5.2 error."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest
from fastapi.testclient import TestClient
from jose import jwt
from sqlalchemy.orm import Session, sessionmaker

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.services.users import ScopeService
from tests.helpers import (
    AUDIENCE,
    ISSUER,
    TOKEN_URL,
    USER_PASSWORD,
    assert_insufficient_scope,
    assert_no_store,
    assert_oauth_error,
    bearer,
    password_login,
    stable_headers,
)

FORM = "application/x-www-form-urlencoded"
INVALID_CREDENTIALS = "Invalid username or password"


def login_form(
    username: str = "alice", password: str = USER_PASSWORD, **extra: str
) -> dict[str, str]:
    return {"grant_type": "password", "username": username, "password": password, **extra}


def post_raw(
    client: TestClient, body: bytes, content_type: str = FORM, url: str = TOKEN_URL
) -> httpx2.Response:
    return client.post(url, content=body, headers={"Content-Type": content_type})


def basic(client_id: str, secret: str = "") -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii")


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.get_unverified_claims(token)
    return claims


@pytest.fixture
def sessions(settings: Settings, migrated: None) -> Iterator[sessionmaker[Session]]:
    engine = build_engine(settings)
    yield build_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def make_scopes(sessions: sessionmaker[Session]) -> Callable[..., None]:
    def factory(*names: str) -> None:
        with sessions() as session:
            for name in names:
                ScopeService(session).create(name)

    return factory


@pytest.fixture
def reader(
    make_user: Callable[..., dict[str, Any]], make_scopes: Callable[..., None]
) -> dict[str, Any]:
    make_scopes("read", "write")
    return make_user("reader", "reader-password-1", scopes=("read", "write"))


# --- success ------------------------------------------------------------------------------


def test_password_grant_returns_bearer_token_response(
    client: TestClient, user: dict[str, Any], settings: Settings
) -> None:
    response = client.post(TOKEN_URL, data=login_form())

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.access_token_ttl
    assert body["scope"] == ""
    assert body["access_token"].count(".") == 2


def test_token_response_is_not_cacheable(client: TestClient, user: dict[str, Any]) -> None:
    response = client.post(TOKEN_URL, data=login_form())

    assert response.status_code == 200
    assert_no_store(response)


def test_access_token_names_issuer_audience_and_user_id(
    client: TestClient, user: dict[str, Any]
) -> None:
    claims = claims_of(password_login(client, "alice", USER_PASSWORD)["access_token"])

    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["sub"] == user["id"]


def test_access_token_lifetime_equals_configured_ttl(
    make_settings: Callable[..., Settings], user: dict[str, Any]
) -> None:
    settings = make_settings(access_token_ttl=123)
    with TestClient(create_app(settings)) as client:
        body = password_login(client, "alice", USER_PASSWORD)

    claims = claims_of(body["access_token"])
    assert body["expires_in"] == 123
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl == 123


def test_access_token_is_valid_from_its_issue_time(
    client: TestClient, user: dict[str, Any]
) -> None:
    claims = claims_of(password_login(client, "alice", USER_PASSWORD)["access_token"])

    assert isinstance(claims["iat"], int)
    assert claims["nbf"] == claims["iat"]


def test_access_token_carries_preferred_username(client: TestClient, user: dict[str, Any]) -> None:
    claims = claims_of(password_login(client, "alice", USER_PASSWORD)["access_token"])

    assert claims["preferred_username"] == "alice"


def test_access_token_has_exactly_the_documented_claims(
    client: TestClient, user: dict[str, Any]
) -> None:
    claims = claims_of(password_login(client, "alice", USER_PASSWORD)["access_token"])

    assert set(claims) == {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "client_id",
        "scope",
        "preferred_username",
    }


def test_access_token_header_is_typed_at_jwt_with_published_kid(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = password_login(client, "alice", USER_PASSWORD)["access_token"]

    header = jwt.get_unverified_header(token)
    published = [key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]]
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"] in published


def test_each_login_gets_a_distinct_jti(client: TestClient, user: dict[str, Any]) -> None:
    first = claims_of(password_login(client, "alice", USER_PASSWORD)["access_token"])
    second = claims_of(password_login(client, "alice", USER_PASSWORD)["access_token"])

    assert isinstance(first["jti"], str)
    assert first["jti"]
    assert first["jti"] != second["jti"]


def test_issued_token_is_accepted_by_users_me(client: TestClient, user: dict[str, Any]) -> None:
    token = password_login(client, "alice", USER_PASSWORD)["access_token"]

    response = client.get("/users/me", headers=bearer(token))

    assert response.status_code == 200
    assert response.json()["username"] == "alice"


def test_username_is_case_insensitive(client: TestClient, user: dict[str, Any]) -> None:
    body = password_login(client, "ALICE", USER_PASSWORD)

    claims = claims_of(body["access_token"])
    assert claims["sub"] == user["id"]
    assert claims["preferred_username"] == "alice"


def test_password_typed_in_nfd_matches_password_set_in_nfc(
    client: TestClient, make_user: Callable[..., dict[str, Any]]
) -> None:
    make_user("bob", "caf\u00e9-cr\u00e8me")

    body = password_login(client, "bob", "cafe\u0301-cre\u0300me")

    assert body["token_type"] == "Bearer"


# --- client_id ----------------------------------------------------------------------------


def test_client_id_defaults_to_public(client: TestClient, user: dict[str, Any]) -> None:
    claims = claims_of(password_login(client, "alice", USER_PASSWORD)["access_token"])

    assert claims["client_id"] == "public"


def test_form_client_id_is_recorded_in_token(client: TestClient, user: dict[str, Any]) -> None:
    body = password_login(client, "alice", USER_PASSWORD, client_id="my-spa")

    assert claims_of(body["access_token"])["client_id"] == "my-spa"


@pytest.mark.parametrize(
    ("form", "authorization"),
    [
        pytest.param(login_form(), basic("cli"), id="no-form-client-id"),
        pytest.param(login_form(client_id="cli"), basic("cli"), id="matching-form"),
    ],
)
def test_basic_auth_user_part_is_the_client_id(
    client: TestClient, user: dict[str, Any], form: dict[str, str], authorization: str
) -> None:
    response = client.post(TOKEN_URL, data=form, headers={"Authorization": authorization})

    assert response.status_code == 200
    assert claims_of(response.json()["access_token"])["client_id"] == "cli"


def test_basic_auth_differing_from_form_client_id_is_invalid_request(
    client: TestClient, user: dict[str, Any]
) -> None:
    response = client.post(
        TOKEN_URL, data=login_form(client_id="one"), headers={"Authorization": basic("two")}
    )

    assert_oauth_error(
        response,
        400,
        "invalid_request",
        "client_id in the body differs from the authenticated client",
    )


@pytest.mark.parametrize(
    "authorization",
    ["Basic !!!not-base64!!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Digest abc"],
    ids=["bad-base64", "no-colon", "other-scheme"],
)
def test_malformed_client_authentication_is_invalid_client(
    client: TestClient, user: dict[str, Any], authorization: str
) -> None:
    response = client.post(TOKEN_URL, data=login_form(), headers={"Authorization": authorization})

    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="authsvc"'


def test_two_authorization_headers_are_invalid_request(
    client: TestClient, user: dict[str, Any]
) -> None:
    response = client.post(
        TOKEN_URL,
        content=urlencode(login_form()).encode(),
        headers=[
            ("Content-Type", FORM),
            ("Authorization", basic("a")),
            ("Authorization", basic("b")),
        ],
    )

    assert_oauth_error(response, 400, "invalid_request", "More than one Authorization header")


@pytest.mark.parametrize("client_id", ["tab\there", "x" * 129, "caf\u00e9"])
def test_malformed_client_id_is_invalid_request(
    client: TestClient, user: dict[str, Any], client_id: str
) -> None:
    response = client.post(TOKEN_URL, data=login_form(client_id=client_id))

    assert_oauth_error(response, 400, "invalid_request", "Malformed client_id")


# --- scope --------------------------------------------------------------------------------


def test_omitted_scope_grants_all_of_the_users_scopes(
    client: TestClient, reader: dict[str, Any]
) -> None:
    body = password_login(client, "reader", "reader-password-1")

    assert body["scope"] == "read write"
    assert claims_of(body["access_token"])["scope"] == "read write"


def test_empty_scope_is_treated_as_omitted(client: TestClient, reader: dict[str, Any]) -> None:
    body = password_login(client, "reader", "reader-password-1", scope="")

    assert body["scope"] == "read write"
    assert claims_of(body["access_token"])["scope"] == "read write"


def test_requested_subset_narrows_the_granted_scope(
    client: TestClient, reader: dict[str, Any]
) -> None:
    body = password_login(client, "reader", "reader-password-1", scope="read")

    assert body["scope"] == "read"
    assert claims_of(body["access_token"])["scope"] == "read"


def test_token_narrowed_away_from_admin_is_refused_by_admin_api(
    client: TestClient,
    make_user: Callable[..., dict[str, Any]],
    make_scopes: Callable[..., None],
) -> None:
    make_scopes("read")
    make_user("boss", "boss-password-1", scopes=("admin", "read"))
    body = password_login(client, "boss", "boss-password-1", scope="read")

    response = client.get("/admin/users", headers=bearer(body["access_token"]))

    assert body["scope"] == "read"
    assert_insufficient_scope(response)


def test_user_without_scopes_gets_an_empty_scope(client: TestClient, user: dict[str, Any]) -> None:
    body = password_login(client, "alice", USER_PASSWORD)

    assert body["scope"] == ""
    assert claims_of(body["access_token"])["scope"] == ""


def test_scope_not_held_by_user_is_invalid_scope(
    client: TestClient, reader: dict[str, Any]
) -> None:
    response = client.post(
        TOKEN_URL, data=login_form("reader", "reader-password-1", scope="read admin")
    )

    assert_oauth_error(response, 400, "invalid_scope", "Scope not allowed: admin")


def test_unknown_scope_is_invalid_scope(client: TestClient, user: dict[str, Any]) -> None:
    response = client.post(TOKEN_URL, data=login_form(scope="no-such-scope"))

    assert_oauth_error(response, 400, "invalid_scope", "Scope not allowed: no-such-scope")


@pytest.mark.parametrize("scope", ["read  write", 'bad"quote', "back\\slash", " read"])
def test_malformed_scope_is_invalid_scope(
    client: TestClient, reader: dict[str, Any], scope: str
) -> None:
    response = client.post(TOKEN_URL, data=login_form("reader", "reader-password-1", scope=scope))

    assert_oauth_error(response, 400, "invalid_scope", "The scope parameter is malformed")


# --- invalid_request ----------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["grant_type", "username", "password"])
def test_missing_parameter_is_invalid_request(
    client: TestClient, user: dict[str, Any], missing: str
) -> None:
    form = login_form()
    del form[missing]

    response = client.post(TOKEN_URL, data=form)

    assert_oauth_error(response, 400, "invalid_request", f"Missing parameter: {missing}")


@pytest.mark.parametrize("empty", ["grant_type", "username", "password"])
def test_empty_parameter_is_treated_as_missing(
    client: TestClient, user: dict[str, Any], empty: str
) -> None:
    response = client.post(TOKEN_URL, data={**login_form(), empty: ""})

    assert_oauth_error(response, 400, "invalid_request", f"Missing parameter: {empty}")


@pytest.mark.parametrize("repeated", ["grant_type", "username", "password", "scope", "client_id"])
def test_repeated_parameter_is_invalid_request(
    client: TestClient, user: dict[str, Any], repeated: str
) -> None:
    body = f"grant_type=password&username=alice&password={USER_PASSWORD}&{repeated}=x"
    if repeated in ("scope", "client_id"):
        body += f"&{repeated}=x"

    response = post_raw(client, body.encode())

    assert_oauth_error(response, 400, "invalid_request", f"Parameter repeated: {repeated}")


def test_repeated_parameter_with_empty_value_is_invalid_request(
    client: TestClient, user: dict[str, Any]
) -> None:
    body = f"grant_type=password&username=alice&password={USER_PASSWORD}&scope=&scope="

    response = post_raw(client, body.encode())

    assert_oauth_error(response, 400, "invalid_request", "Parameter repeated: scope")


def test_json_body_is_invalid_request(client: TestClient, user: dict[str, Any]) -> None:
    response = client.post(TOKEN_URL, json=login_form())

    assert_oauth_error(response, 400, "invalid_request", f"The request body must be {FORM}")


def test_missing_content_type_is_invalid_request(client: TestClient, user: dict[str, Any]) -> None:
    body = f"grant_type=password&username=alice&password={USER_PASSWORD}".encode()

    response = client.post(TOKEN_URL, content=body)

    assert_oauth_error(response, 400, "invalid_request", f"The request body must be {FORM}")


def test_multipart_body_is_invalid_request(client: TestClient, user: dict[str, Any]) -> None:
    response = client.post(TOKEN_URL, data=login_form(), files={"f": ("f.txt", b"x")})

    assert_oauth_error(response, 400, "invalid_request", f"The request body must be {FORM}")


def test_form_content_type_with_charset_is_accepted(
    client: TestClient, user: dict[str, Any]
) -> None:
    body = f"grant_type=password&username=alice&password={USER_PASSWORD}".encode()

    response = post_raw(client, body, content_type=f"{FORM.upper()}; charset=UTF-8")

    assert response.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"grant_type=password&username=\xffalice&password=x",
        b"grant_type=password&username=alice&password=%FF",
        b"grant_type=password&username=alice&password=%C3%28",
        b"grant_type=password&username=alice&password=%ED%A0%80",
    ],
    ids=["raw-invalid-utf8", "percent-ff", "percent-truncated-sequence", "percent-surrogate"],
)
def test_undecodable_body_is_invalid_request(
    client: TestClient, user: dict[str, Any], body: bytes
) -> None:
    response = post_raw(client, body)

    assert_oauth_error(
        response, 400, "invalid_request", "The request body is not valid form-encoded UTF-8"
    )


@pytest.mark.parametrize("query", ["grant_type=password", "username=alice", "foo=bar"])
def test_query_string_parameter_is_invalid_request(
    client: TestClient, user: dict[str, Any], query: str
) -> None:
    response = client.post(f"{TOKEN_URL}?{query}", data=login_form())

    assert_oauth_error(
        response,
        400,
        "invalid_request",
        "Parameters must be sent in the request body, not the URL",
    )


def _padded_body(total: int) -> bytes:
    prefix = f"grant_type=password&username=alice&password={USER_PASSWORD}&pad=".encode()
    return prefix + b"x" * (total - len(prefix))


def test_body_of_exactly_16_kib_is_accepted(client: TestClient, user: dict[str, Any]) -> None:
    body = _padded_body(16 * 1024)
    assert len(body) == 16384

    response = post_raw(client, body)

    assert response.status_code == 200


def test_body_over_16_kib_is_413_invalid_request(client: TestClient, user: dict[str, Any]) -> None:
    response = post_raw(client, _padded_body(16 * 1024 + 1))

    assert_oauth_error(
        response, 413, "invalid_request", "The request body is larger than 16384 bytes"
    )
    assert response.headers["connection"] == "close"


def test_more_than_64_form_fields_is_invalid_request(
    client: TestClient, user: dict[str, Any]
) -> None:
    extra = "&".join(f"f{i}=1" for i in range(62))
    body = f"grant_type=password&username=alice&password={USER_PASSWORD}&{extra}"

    response = post_raw(client, body.encode())

    assert_oauth_error(
        response, 400, "invalid_request", "The request body is not valid form-encoded UTF-8"
    )


def test_unknown_parameters_are_ignored(client: TestClient, user: dict[str, Any]) -> None:
    response = client.post(TOKEN_URL, data=login_form(state="xyz", redirect_uri="http://x"))

    assert response.status_code == 200


# --- unsupported_grant_type ---------------------------------------------------------------


@pytest.mark.parametrize(
    "grant_type",
    [
        "authorization_code",
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
        "PASSWORD",
        "urn:x:custom",
    ],
)
def test_unknown_grant_type_is_unsupported_grant_type(
    client: TestClient, user: dict[str, Any], grant_type: str
) -> None:
    response = client.post(TOKEN_URL, data={**login_form(), "grant_type": grant_type})

    assert_oauth_error(
        response, 400, "unsupported_grant_type", f"Unsupported grant_type: {grant_type}"
    )


def test_unsupported_grant_type_needs_no_other_parameters(client: TestClient) -> None:
    response = client.post(TOKEN_URL, data={"grant_type": "authorization_code"})

    assert_oauth_error(response, 400, "unsupported_grant_type")


# --- invalid_grant ------------------------------------------------------------------------


def test_wrong_password_is_invalid_grant(client: TestClient, user: dict[str, Any]) -> None:
    response = client.post(TOKEN_URL, data=login_form(password="wrong-password"))

    assert_oauth_error(response, 400, "invalid_grant", INVALID_CREDENTIALS)


def test_unknown_user_is_invalid_grant(client: TestClient, user: dict[str, Any]) -> None:
    response = client.post(TOKEN_URL, data=login_form(username="nobody"))

    assert_oauth_error(response, 400, "invalid_grant", INVALID_CREDENTIALS)


def test_disabled_user_with_right_password_is_invalid_grant(
    client: TestClient, make_user: Callable[..., dict[str, Any]]
) -> None:
    make_user("carol", "carol-password-1", is_active=False)

    response = client.post(TOKEN_URL, data=login_form("carol", "carol-password-1"))

    assert_oauth_error(response, 400, "invalid_grant", INVALID_CREDENTIALS)


def test_wrong_password_unknown_user_and_disabled_user_are_indistinguishable(
    client: TestClient, make_user: Callable[..., dict[str, Any]]
) -> None:
    make_user("alice", USER_PASSWORD)
    make_user("carol", "carol-password-1", is_active=False)

    responses = [
        client.post(TOKEN_URL, data=login_form("alice", "wrong-password")),
        client.post(TOKEN_URL, data=login_form("nobody", "wrong-password")),
        client.post(TOKEN_URL, data=login_form("carol", "carol-password-1")),
    ]

    shapes = [(r.status_code, r.content, stable_headers(r)) for r in responses]
    assert shapes[0] == shapes[1] == shapes[2]
    assert_oauth_error(responses[0], 400, "invalid_grant", INVALID_CREDENTIALS)


def test_password_is_case_sensitive(client: TestClient, user: dict[str, Any]) -> None:
    response = client.post(TOKEN_URL, data=login_form(password=USER_PASSWORD.upper()))

    assert_oauth_error(response, 400, "invalid_grant", INVALID_CREDENTIALS)


@pytest.mark.parametrize(
    "stored_hash",
    [
        "not-a-hash",
        "*",
        "$2b$04$short",
        "$bcrypt-sha256$v=2,t=2b,r=04$bad$bad",
        "$argon2id$v=19$m=65536,t=3,p=4$abc$def",
    ],
)
def test_malformed_stored_hash_is_invalid_grant(
    client: TestClient, make_user: Callable[..., dict[str, Any]], stored_hash: str
) -> None:
    make_user("dave", "dave-password-1", password_hash=stored_hash)

    response = client.post(TOKEN_URL, data=login_form("dave", "dave-password-1"))

    assert_oauth_error(response, 400, "invalid_grant", INVALID_CREDENTIALS)


def test_overlong_username_is_invalid_grant(client: TestClient, user: dict[str, Any]) -> None:
    response = client.post(TOKEN_URL, data=login_form(username="a" * 2000))

    assert_oauth_error(response, 400, "invalid_grant", INVALID_CREDENTIALS)


@pytest.mark.parametrize("username", ["ali\x00ce", "\x00"], ids=["embedded-nul", "only-nul"])
def test_username_with_nul_byte_is_invalid_grant(
    client: TestClient, user: dict[str, Any], username: str
) -> None:
    response = client.post(TOKEN_URL, data=login_form(username=username))

    assert_oauth_error(response, 400, "invalid_grant", INVALID_CREDENTIALS)


# --- database unavailable -----------------------------------------------------------------


def test_token_request_with_database_down_is_temporarily_unavailable(
    unreachable_settings: Settings,
) -> None:
    with TestClient(create_app(unreachable_settings), raise_server_exceptions=False) as client:
        response = client.post(TOKEN_URL, data=login_form())

    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert response.headers["retry-after"] == "5"
    assert "127.0.0.1" not in response.text
    assert "no-such-dir" not in response.text

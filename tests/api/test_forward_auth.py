"""``/auth/verify``: forward-auth for nginx ``auth_request``, Traefik ForwardAuth and Envoy
``ext_authz``.

A proxy treats any status but 200, 401 and 403 as its own failure, so the endpoint answers only
200, 401, 403 or 503. It consults the database (denylist, disabled or deleted users, the
revoke-all cutoff, deleted clients) and checks the scopes the token still holds *now*. On 200
the identity travels in four ``X-Auth-*`` headers, always all four.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.oauth2.token_checks import REVOKED
from authsvc.security.keys import SigningKey, generate_private_key
from tests.helpers import (
    EXPIRED_TOKEN,
    UNKNOWN_USER,
    Forger,
    access_token_for,
    assert_insufficient_scope,
    assert_invalid_token,
    assert_no_store,
    assert_not_authenticated,
    assert_oauth_error,
    basic,
    bearer,
    client_credentials_token,
    create_client,
    token_request,
    user_claims,
)

VERIFY = "/auth/verify"
ANSWERS = {200, 401, 403, 503}
# Envoy's ext_authz repeats whatever method the client used: WebDAV's, TRACE, or made up.
METHODS = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "OPTIONS",
    "PROPFIND",
    "TRACE",
    "MKCOL",
    "FOO",
]
IDENTITY_HEADERS = ("x-auth-subject", "x-auth-username", "x-auth-scopes", "x-auth-client-id")
READ = "reports:read"
WRITE = "reports:write"
COOKIE = "at"
TWO_HEADERS = "More than one Authorization header"
HeaderList = list[tuple[str, str | bytes]]
# RFC 9110 §5.5 field-value: no CR, LF, NUL or other controls, no leading or trailing blanks.
# The TestClient passes on whatever the app produced; uvicorn refuses to send a control
# character (h11 also a leading or trailing blank) and drops the connection without an answer,
# which a proxy turns into a 5xx.
_VCHAR = rb"[\x21-\x7e\x80-\xff]"
FIELD_VALUE = re.compile(rb"(?:%b(?:[ \t\x21-\x7e\x80-\xff]*%b)?)?" % (_VCHAR, _VCHAR))


# --- helpers ---------------------------------------------------------------------------------


def verify(
    client: TestClient,
    headers: dict[str, str] | HeaderList | None = None,
    *,
    params: dict[str, str] | list[tuple[str, str]] | None = None,
    method: str = "GET",
    path: str = VERIFY,
) -> httpx2.Response:
    return client.request(method, path, headers=headers, params=params)


def assert_valid_header_values(response: httpx2.Response) -> None:
    for name, value in response.headers.raw:
        assert FIELD_VALUE.fullmatch(value), (name, value)


def identity(response: httpx2.Response) -> dict[str, str | None]:
    return {name: response.headers.get(name) for name in IDENTITY_HEADERS}


def assert_allowed(
    response: httpx2.Response, *, subject: str, username: str, scopes: str, client_id: str
) -> None:
    """200, nothing in the body, never cached, and exactly the identity given."""
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert_no_store(response)
    assert_valid_header_values(response)
    assert identity(response) == {
        "x-auth-subject": subject,
        "x-auth-username": username,
        "x-auth-scopes": scopes,
        "x-auth-client-id": client_id,
    }


def assert_no_identity(response: httpx2.Response) -> None:
    assert all(name not in response.headers for name in IDENTITY_HEADERS), response.headers


def assert_refused(response: httpx2.Response) -> None:
    """401 invalid_token, the same description in body and challenge, never cached, no identity.

    The description is pinned by the test on the gateway's reasons below."""
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "invalid_token"
    assert response.headers["www-authenticate"] == (
        f'Bearer error="invalid_token", error_description="{body["error_description"]}"'
    )
    assert_no_store(response)
    assert_no_identity(response)


def assert_allowed_user(response: httpx2.Response, account: dict[str, Any], scopes: str) -> None:
    assert_allowed(
        response,
        subject=account["id"],
        username=account["username"],
        scopes=scopes,
        client_id="public",
    )


def cookie(token: str, name: str = COOKIE) -> dict[str, str]:
    return {"Cookie": f"{name}={token}"}


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def report_scopes(client: TestClient, admin_headers: dict[str, str]) -> tuple[str, str]:
    """The scopes ``reports:read`` and ``reports:write``, created through the admin API."""
    for name in (READ, WRITE):
        response = client.post("/admin/scopes", headers=admin_headers, json={"name": name})
        assert response.status_code == 201, response.text
    return READ, WRITE


@pytest.fixture
def reader(
    make_user: Callable[..., dict[str, Any]], report_scopes: tuple[str, str]
) -> dict[str, Any]:
    """A user holding ``reports:read`` only."""
    return make_user("rita", scopes=(READ,))


@pytest.fixture
def writer(
    make_user: Callable[..., dict[str, Any]], report_scopes: tuple[str, str]
) -> dict[str, Any]:
    """A user holding ``reports:read`` and ``reports:write``."""
    return make_user("walt", scopes=(READ, WRITE))


@pytest.fixture
def reader_token(client: TestClient, reader: dict[str, Any]) -> str:
    return access_token_for(client, reader)


@pytest.fixture
def user_token(client: TestClient, user: dict[str, Any]) -> str:
    return access_token_for(client, user)


@pytest.fixture
def cookie_client(make_settings: Callable[..., Settings], migrated: None) -> Iterator[TestClient]:
    """The gateway with ``forward_auth_cookie="at"``, on the same database as ``client``."""
    with TestClient(create_app(make_settings(forward_auth_cookie=COOKIE))) as test_client:
        yield test_client


@pytest.fixture
def service(
    client: TestClient, admin_headers: dict[str, str], report_scopes: tuple[str, str]
) -> dict[str, Any]:
    """A confidential client_credentials client holding ``reports:read``."""
    return create_client(client, admin_headers, name="svc", scopes=[READ])


# --- allowed ---------------------------------------------------------------------------------


def test_good_user_token_is_200_with_the_four_identity_headers(
    client: TestClient, writer: dict[str, Any]
) -> None:
    response = verify(client, bearer(access_token_for(client, writer)))

    assert_allowed_user(response, writer, f"{READ} {WRITE}")


def test_user_without_scopes_gets_an_empty_scopes_header(
    client: TestClient, user: dict[str, Any], user_token: str
) -> None:
    assert_allowed_user(verify(client, bearer(user_token)), user, "")


@pytest.mark.parametrize("path", [VERIFY, f"{VERIFY}/api/orders/7", f"{VERIFY}/"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_and_sub_path_is_200(
    client: TestClient, reader: dict[str, Any], reader_token: str, method: str, path: str
) -> None:
    response = verify(client, bearer(reader_token), method=method, path=path)

    assert_allowed_user(response, reader, READ)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "GET"])
def test_every_method_gets_the_answers_get_gets(
    client: TestClient, reader_token: str, method: str
) -> None:
    """No token, a bad token, a missing scope, a held scope: the same status, body, challenge
    and identity whatever the method, on the endpoint and on a sub-path."""
    cases: list[tuple[dict[str, str], dict[str, str] | None]] = [
        ({}, None),
        (bearer("a.b.c"), None),
        (bearer(reader_token), {"scope": "admin"}),
        (bearer(reader_token), {"scope": READ}),
    ]
    statuses: set[int] = set()
    for path in (VERIFY, f"{VERIFY}/dav/reports/q1.ods"):
        for headers, params in cases:
            expected = verify(client, headers, params=params, path=path)
            response = verify(client, headers, params=params, method=method, path=path)

            assert response.status_code == expected.status_code, (path, headers, params)
            if method != "HEAD":
                assert response.content == expected.content
            for name in ("www-authenticate", "cache-control", "pragma", *IDENTITY_HEADERS):
                assert response.headers.get(name) == expected.headers.get(name), name
            statuses.add(response.status_code)
    assert statuses == {200, 401, 403}


def test_lowercase_bearer_scheme_is_accepted(
    client: TestClient, reader: dict[str, Any], reader_token: str
) -> None:
    response = verify(client, {"Authorization": f"bearer {reader_token}"})

    assert_allowed_user(response, reader, READ)


# --- required scopes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"scope": READ},
        {"scope": f"{READ} {READ}"},
        {"scope": f" {READ}  "},
        {"scope": ""},
        [("scope", READ), ("scope", "")],
    ],
    ids=["one", "twice", "padded", "empty", "repeated-with-empty"],
)
def test_required_scope_held_is_200(
    client: TestClient,
    reader: dict[str, Any],
    reader_token: str,
    params: dict[str, str] | list[tuple[str, str]],
) -> None:
    response = verify(client, bearer(reader_token), params=params)

    assert_allowed_user(response, reader, READ)


def test_required_scope_not_held_is_403_naming_every_required_scope(
    client: TestClient, reader_token: str
) -> None:
    response = verify(client, bearer(reader_token), params={"scope": f"{READ} admin"})

    assert_insufficient_scope(response, scope=f"{READ} admin")
    assert_no_identity(response)


def test_repeated_scope_params_are_all_required(client: TestClient, reader_token: str) -> None:
    response = verify(client, bearer(reader_token), params=[("scope", READ), ("scope", WRITE)])

    assert_insufficient_scope(response, scope=f"{READ} {WRITE}")


def test_repeated_scope_params_all_held_is_200(client: TestClient, writer: dict[str, Any]) -> None:
    token = access_token_for(client, writer)

    response = verify(client, bearer(token), params=[("scope", WRITE), ("scope", READ)])

    assert_allowed_user(response, writer, f"{READ} {WRITE}")


def test_duplicate_required_scopes_are_named_once(client: TestClient, reader_token: str) -> None:
    response = verify(
        client, bearer(reader_token), params=[("scope", f"admin {READ}"), ("scope", "admin")]
    )

    assert_insufficient_scope(response, scope=f"admin {READ}")


def test_scope_removed_from_the_user_after_issue_is_403(
    client: TestClient, admin_headers: dict[str, str], writer: dict[str, Any]
) -> None:
    token = access_token_for(client, writer)
    assert verify(client, bearer(token), params={"scope": WRITE}).status_code == 200
    response = client.patch(
        f"/admin/users/{writer['id']}", headers=admin_headers, json={"scopes": [READ]}
    )
    assert response.status_code == 200, response.text

    assert_insufficient_scope(verify(client, bearer(token), params={"scope": WRITE}), WRITE)


def test_scope_removed_from_the_user_after_issue_leaves_the_scopes_header(
    client: TestClient, admin_headers: dict[str, str], writer: dict[str, Any]
) -> None:
    token = access_token_for(client, writer)
    response = client.patch(
        f"/admin/users/{writer['id']}", headers=admin_headers, json={"scopes": [READ]}
    )
    assert response.status_code == 200, response.text

    assert_allowed_user(verify(client, bearer(token)), writer, READ)


def test_scope_granted_after_issue_is_not_added_to_the_token(
    client: TestClient, admin_headers: dict[str, str], reader: dict[str, Any], reader_token: str
) -> None:
    response = client.patch(
        f"/admin/users/{reader['id']}", headers=admin_headers, json={"scopes": [READ, WRITE]}
    )
    assert response.status_code == 200, response.text

    assert_insufficient_scope(verify(client, bearer(reader_token), params={"scope": WRITE}), WRITE)
    assert_allowed_user(verify(client, bearer(reader_token)), reader, READ)


@pytest.mark.parametrize("malformed", ['a"b', "a\\b", "zoë", "a\tb", "\x00", "x" * 65])
def test_malformed_required_scope_is_403_even_for_a_token_holding_the_rest(
    client: TestClient, reader_token: str, malformed: str
) -> None:
    response = verify(client, bearer(reader_token), params={"scope": f"{READ} {malformed}"})

    # The malformed scope cannot be quoted in a challenge; the well-formed ones are named.
    assert_insufficient_scope(response, scope=READ)
    assert_no_identity(response)


def test_required_scope_with_a_trailing_newline_is_malformed(
    client: TestClient, reader_token: str
) -> None:
    response = verify(client, bearer(reader_token), params={"scope": f"{READ} {WRITE}\n"})

    assert_valid_header_values(response)
    assert_insufficient_scope(response, scope=READ)


def test_only_malformed_required_scopes_is_403(client: TestClient, reader_token: str) -> None:
    response = verify(client, bearer(reader_token), params={"scope": 'a"b'})

    assert response.status_code == 403, response.text
    assert response.json()["error"] == "insufficient_scope"
    assert '"b' not in response.headers["www-authenticate"]
    assert response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    assert_no_store(response)
    assert_no_identity(response)


def test_malformed_required_scope_without_token_is_still_a_bare_challenge(
    client: TestClient,
) -> None:
    assert_not_authenticated(verify(client, params={"scope": 'a"b'}))


# --- no token, bad tokens --------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        {"Authorization": 'Digest username="alice"'},
        {"Authorization": "Bearer\tabc"},
        {"Authorization": ""},
    ],
    ids=["none", "basic", "digest", "tab-not-space", "empty-header"],
)
def test_no_bearer_token_is_a_bare_challenge(client: TestClient, headers: dict[str, str]) -> None:
    response = verify(client, headers)

    assert_not_authenticated(response)
    assert_no_identity(response)


@pytest.mark.parametrize(
    "value",
    [
        "Bearer",
        "Bearer    ",
        "Bearer not a token",
        "Bearer a!b",
        'Bearer "abc"',
        "Bearer =abc",
        "Bearer abc,def",
        "Bearer t\u00f6ken".encode(),
        "Bearer a.b.c",
        "Bearer abc",
    ],
    ids=[
        "empty",
        "spaces",
        "spaces-inside",
        "bang",
        "quoted",
        "leading-padding",
        "comma",
        "non-ascii",
        "three-junk-segments",
        "one-segment",
    ],
)
def test_malformed_token_is_invalid_token(client: TestClient, value: str | bytes) -> None:
    assert_invalid_token(verify(client, [("Authorization", value)]))


def test_token_with_another_keys_signature_is_invalid_token(
    client: TestClient, forger: Forger
) -> None:
    other = generate_private_key("RS256")
    assert isinstance(other, rsa.RSAPrivateKey)

    token = forger.token(private_key=other)

    assert_invalid_token(verify(client, bearer(token)))


def test_token_with_tampered_payload_is_invalid_token(
    client: TestClient, forger: Forger, user_token: str
) -> None:
    header, _, signature = user_token.split(".")
    forged = forger.token(payload=forger.claims(scope="admin")).split(".")[1]

    assert_invalid_token(verify(client, bearer(f"{header}.{forged}.{signature}")))


def test_expired_token_says_it_expired(client: TestClient, forger: Forger) -> None:
    now = int(time.time())
    token = forger.token(payload=forger.claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600))

    assert_invalid_token(verify(client, bearer(token)), EXPIRED_TOKEN)


def test_forged_token_for_an_unknown_user_is_invalid_token(
    client: TestClient, forger: Forger
) -> None:
    token = forger.token(payload=forger.claims(sub=str(uuid.uuid4())))

    assert_refused(verify(client, bearer(token)))


def test_forged_token_whose_subject_is_neither_user_nor_client_is_invalid_token(
    client: TestClient, forger: Forger
) -> None:
    token = forger.token(payload=forger.claims(sub="not-a-uuid", client_id="other"))

    assert_refused(verify(client, bearer(token)))


def test_forged_client_token_for_an_unregistered_client_is_invalid_token(
    client: TestClient, forger: Forger
) -> None:
    token = forger.token(payload=forger.claims(sub="ghost", client_id="ghost"))

    assert_refused(verify(client, bearer(token)))


@pytest.mark.parametrize(
    "second",
    ["same", "Bearer abc", "Basic YWxpY2U6c2VjcmV0", ""],
    ids=["same-token-twice", "another-token", "basic", "empty"],
)
def test_two_authorization_headers_are_invalid_token_not_400(
    client: TestClient, user_token: str, second: str
) -> None:
    first = f"Bearer {user_token}"
    headers: HeaderList = [
        ("Authorization", first),
        ("Authorization", first if second == "same" else second),
    ]

    response = verify(client, headers)

    assert_invalid_token(response, TWO_HEADERS)
    assert_no_identity(response)


# --- tokens taken back -----------------------------------------------------------------------


def _revoke_token(
    client: TestClient, admin_headers: dict[str, str], account: dict[str, Any], token: str
) -> None:
    # RFC 7009: the public client the password grant defaults to revokes its own token.
    response = client.post("/oauth2/revoke", data={"token": token})
    assert response.status_code == 200, response.text


def _disable_user(
    client: TestClient, admin_headers: dict[str, str], account: dict[str, Any], token: str
) -> None:
    response = client.patch(
        f"/admin/users/{account['id']}", headers=admin_headers, json={"is_active": False}
    )
    assert response.status_code == 200, response.text


def _delete_user(
    client: TestClient, admin_headers: dict[str, str], account: dict[str, Any], token: str
) -> None:
    response = client.delete(f"/admin/users/{account['id']}", headers=admin_headers)
    assert response.status_code == 204, response.text


def _revoke_sessions(
    client: TestClient, admin_headers: dict[str, str], account: dict[str, Any], token: str
) -> None:
    # The cutoff rounds up to the next second: a token issued this second is refused too.
    response = client.post(f"/admin/users/{account['id']}/revoke-sessions", headers=admin_headers)
    assert response.status_code == 204, response.text


TakeBack = Callable[[TestClient, dict[str, str], dict[str, Any], str], None]
TAKE_BACKS: dict[str, tuple[TakeBack, str]] = {
    "revoked": (_revoke_token, REVOKED),
    "disabled": (_disable_user, UNKNOWN_USER),
    "deleted": (_delete_user, UNKNOWN_USER),
    "revoke-sessions": (_revoke_sessions, REVOKED),
}


@pytest.mark.parametrize("how", list(TAKE_BACKS))
def test_token_taken_back_is_refused(
    client: TestClient,
    admin_headers: dict[str, str],
    reader: dict[str, Any],
    reader_token: str,
    how: str,
) -> None:
    assert_allowed_user(verify(client, bearer(reader_token)), reader, READ)
    take_back, _ = TAKE_BACKS[how]

    take_back(client, admin_headers, reader, reader_token)

    assert_refused(verify(client, bearer(reader_token)))


@pytest.mark.parametrize("how", list(TAKE_BACKS))
def test_token_taken_back_is_refused_with_the_gateways_reason(
    client: TestClient,
    admin_headers: dict[str, str],
    reader: dict[str, Any],
    reader_token: str,
    how: str,
) -> None:
    take_back, description = TAKE_BACKS[how]
    take_back(client, admin_headers, reader, reader_token)
    # What a protected route of the gateway says about the same token.
    assert_invalid_token(client.get("/users/me", headers=bearer(reader_token)), description)

    assert_invalid_token(verify(client, bearer(reader_token)), description)


def test_revoking_one_access_token_leaves_another_allowed(
    client: TestClient, reader: dict[str, Any], reader_token: str
) -> None:
    other = access_token_for(client, reader)

    _revoke_token(client, {}, reader, reader_token)

    assert_allowed_user(verify(client, bearer(other)), reader, READ)


def test_token_issued_after_the_revoke_sessions_cutoff_is_allowed(
    client: TestClient, admin_headers: dict[str, str], reader: dict[str, Any]
) -> None:
    _revoke_sessions(client, admin_headers, reader, "")
    revoked_at = time.time()
    # iat has whole seconds and the cutoff rounds up: wait for the next second to start.
    time.sleep(math.ceil(revoked_at) - revoked_at + 0.05)

    token = access_token_for(client, reader)

    assert_allowed_user(verify(client, bearer(token)), reader, READ)


def test_reenabled_user_is_allowed_again(
    client: TestClient, admin_headers: dict[str, str], reader: dict[str, Any], reader_token: str
) -> None:
    _disable_user(client, admin_headers, reader, reader_token)
    assert_refused(verify(client, bearer(reader_token)))
    response = client.patch(
        f"/admin/users/{reader['id']}", headers=admin_headers, json={"is_active": True}
    )
    assert response.status_code == 200, response.text

    assert_allowed_user(verify(client, bearer(reader_token)), reader, READ)


# --- client_credentials tokens ---------------------------------------------------------------


def test_client_credentials_token_is_200_with_the_client_as_subject(
    client: TestClient, service: dict[str, Any]
) -> None:
    token = client_credentials_token(client, service)

    response = verify(client, bearer(token), params={"scope": READ})

    assert_allowed(
        response,
        subject=service["client_id"],
        username="",
        scopes=READ,
        client_id=service["client_id"],
    )


def test_client_credentials_token_of_a_deleted_client_is_refused(
    client: TestClient, admin_headers: dict[str, str], service: dict[str, Any]
) -> None:
    token = client_credentials_token(client, service)
    assert verify(client, bearer(token)).status_code == 200

    response = client.delete(f"/admin/clients/{service['client_id']}", headers=admin_headers)
    assert response.status_code == 204, response.text

    assert_refused(verify(client, bearer(token)))


def test_revoked_client_credentials_token_is_refused(
    client: TestClient, service: dict[str, Any]
) -> None:
    token = client_credentials_token(client, service)
    response = client.post(
        "/oauth2/revoke",
        data={"token": token},
        headers=basic(service["client_id"], service["client_secret"]),
    )
    assert response.status_code == 200, response.text

    assert_refused(verify(client, bearer(token)))


def test_scope_removed_from_the_client_after_issue_is_403(
    client: TestClient, admin_headers: dict[str, str], service: dict[str, Any]
) -> None:
    token = client_credentials_token(client, service)
    response = client.patch(
        f"/admin/clients/{service['client_id']}", headers=admin_headers, json={"scopes": []}
    )
    assert response.status_code == 200, response.text

    assert_insufficient_scope(verify(client, bearer(token), params={"scope": READ}), READ)
    assert_allowed(
        verify(client, bearer(token)),
        subject=service["client_id"],
        username="",
        scopes="",
        client_id=service["client_id"],
    )


@pytest.mark.parametrize("client_id", [" padded", "trailing ", "two  spaces  "])
def test_client_id_header_is_a_valid_field_value_for_any_issued_client_id(
    client: TestClient, user: dict[str, Any], client_id: str
) -> None:
    issued = token_request(client, user["username"], user["password"], client_id=client_id)
    assert issued.status_code == 200, issued.text

    response = verify(client, bearer(issued.json()["access_token"]))

    assert response.status_code in ANSWERS
    assert_valid_header_values(response)


# --- the cookie ------------------------------------------------------------------------------


def test_token_in_the_configured_cookie_is_200(
    cookie_client: TestClient, reader: dict[str, Any]
) -> None:
    token = access_token_for(cookie_client, reader)

    assert_allowed_user(verify(cookie_client, cookie(token)), reader, READ)


def test_good_authorization_header_wins_over_a_garbage_cookie(
    cookie_client: TestClient, reader: dict[str, Any]
) -> None:
    token = access_token_for(cookie_client, reader)

    response = verify(cookie_client, {**bearer(token), **cookie("garbage!")})

    assert_allowed_user(response, reader, READ)


def test_garbage_authorization_header_wins_over_a_good_cookie(
    cookie_client: TestClient, reader: dict[str, Any]
) -> None:
    token = access_token_for(cookie_client, reader)

    response = verify(cookie_client, {"Authorization": "Bearer a!b", **cookie(token)})

    assert_invalid_token(response)


def test_two_authorization_headers_win_over_a_good_cookie(
    cookie_client: TestClient, reader: dict[str, Any]
) -> None:
    token = access_token_for(cookie_client, reader)
    headers: HeaderList = [
        ("Authorization", f"Bearer {token}"),
        ("Authorization", f"Bearer {token}"),
        ("Cookie", f"{COOKIE}={token}"),
    ]

    assert_invalid_token(verify(cookie_client, headers), TWO_HEADERS)


def test_cookie_is_ignored_when_an_authorization_header_of_another_scheme_is_sent(
    cookie_client: TestClient, reader: dict[str, Any]
) -> None:
    token = access_token_for(cookie_client, reader)

    response = verify(cookie_client, {"Authorization": "Basic YWxpY2U6c2VjcmV0", **cookie(token)})

    assert_not_authenticated(response)


def test_cookie_is_ignored_without_the_setting(
    client: TestClient, reader: dict[str, Any], reader_token: str
) -> None:
    assert_not_authenticated(verify(client, cookie(reader_token)))


def test_cookie_of_another_name_is_ignored(
    cookie_client: TestClient, reader: dict[str, Any]
) -> None:
    token = access_token_for(cookie_client, reader)

    assert_not_authenticated(verify(cookie_client, cookie(token, name="access_token")))


@pytest.mark.parametrize(
    "value",
    ["", "garbage!", "a.b.c", '"not a token"', "%41%42"],
    ids=["empty", "bang", "three-junk-segments", "quoted-with-spaces", "percent"],
)
def test_garbage_cookie_is_invalid_token(cookie_client: TestClient, value: str) -> None:
    assert_invalid_token(verify(cookie_client, cookie(value)))


def test_expired_token_in_the_cookie_says_it_expired(
    cookie_client: TestClient, forger: Forger
) -> None:
    now = int(time.time())
    token = forger.token(payload=forger.claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600))

    assert_invalid_token(verify(cookie_client, cookie(token)), EXPIRED_TOKEN)


def test_cookie_token_lacking_a_required_scope_is_403(
    cookie_client: TestClient, reader: dict[str, Any]
) -> None:
    token = access_token_for(cookie_client, reader)

    response = verify(cookie_client, cookie(token), params={"scope": WRITE})

    assert_insufficient_scope(response, WRITE)


def test_cookie_name_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    make_settings: Callable[..., Settings],
    migrated: None,
    reader: dict[str, Any],
) -> None:
    monkeypatch.setenv("AUTHSVC_FORWARD_AUTH_COOKIE", "sso")
    settings = make_settings()
    assert settings.forward_auth_cookie == "sso"

    with TestClient(create_app(settings)) as test_client:
        token = access_token_for(test_client, reader)
        response = verify(test_client, cookie(token, name="sso"))

    assert_allowed_user(response, reader, READ)


# --- usernames in a header -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "header"),
    [
        ("zoë", "zo%C3%AB"),
        ("дмитрий", "%D0%B4%D0%BC%D0%B8%D1%82%D1%80%D0%B8%D0%B9"),
        ("山田", "%E5%B1%B1%E7%94%B0"),
        ("a.b+c@x-y_z", "a.b+c@x-y_z"),
    ],
)
def test_username_header_is_percent_encoded_utf8(
    client: TestClient, make_user: Callable[..., dict[str, Any]], username: str, header: str
) -> None:
    account = make_user(username)

    response = verify(client, bearer(access_token_for(client, account)))

    assert_allowed_user(response, {**account, "username": header}, "")
    assert unquote(response.headers["x-auth-username"]) == username


# --- the database is down --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["user", "client"])
def test_database_unreachable_is_503_temporarily_unavailable(
    unreachable_settings: Settings, signing_key: SigningKey, kind: str
) -> None:
    account = {"id": str(uuid.uuid4()), "username": "alice"}
    forger = Forger(signing_key, lambda: user_claims(account))
    claims = forger.claims() if kind == "user" else forger.claims(sub="svc", client_id="svc")

    with TestClient(create_app(unreachable_settings)) as test_client:
        response = verify(test_client, bearer(forger.token(payload=claims)))

    assert_oauth_error(response, 503, "temporarily_unavailable")
    assert response.headers["retry-after"] == "5"
    assert "www-authenticate" not in response.headers
    assert_no_identity(response)
    for leak in ("127.0.0.1", "nobody", "no-such-dir"):
        assert leak not in response.text


def test_database_unreachable_still_answers_a_missing_token_with_401(
    unreachable_settings: Settings,
) -> None:
    with TestClient(create_app(unreachable_settings)) as test_client:
        assert_not_authenticated(verify(test_client))


# --- never anything but 200, 401, 403 or 503 -------------------------------------------------

GOOD = "<good token>"
# (method, url, headers); GOOD in a header value is replaced by a valid token.
ODD_REQUESTS: dict[str, tuple[str, str, HeaderList]] = {
    "huge-unrelated-header": ("GET", VERIFY, [("X-Junk", "x" * 60_000)]),
    "huge-header-with-good-token": (
        "GET",
        VERIFY,
        [("Authorization", f"Bearer {GOOD}"), ("X-Junk", "x" * 60_000)],
    ),
    "9kb-token": ("GET", VERIFY, [("Authorization", "Bearer " + "a" * 9 * 1024)]),
    "9kb-token-of-segments": ("GET", VERIFY, [("Authorization", "Bearer " + "ab." * 3 * 1024)]),
    "empty-scope": ("GET", f"{VERIFY}?scope=", [("Authorization", f"Bearer {GOOD}")]),
    "nul-scope": ("GET", f"{VERIFY}?scope=%00", [("Authorization", f"Bearer {GOOD}")]),
    "invalid-utf8-scope": ("GET", f"{VERIFY}?scope=%FF%FE", [("Authorization", f"Bearer {GOOD}")]),
    "bad-percent-scope": ("GET", f"{VERIFY}?scope=%ZZ", [("Authorization", f"Bearer {GOOD}")]),
    "query-junk": ("GET", f"{VERIFY}?scope&&=&scope[]=x&%%", [("Authorization", f"Bearer {GOOD}")]),
    "thousand-scopes": (
        "GET",
        VERIFY + "?" + "&".join(f"scope=s{i}" for i in range(1000)),
        [("Authorization", f"Bearer {GOOD}")],
    ),
    "long-scope": ("GET", f"{VERIFY}?scope={'a' * 5000}", [("Authorization", f"Bearer {GOOD}")]),
    "unicode-path": (
        "GET",
        f"{VERIFY}/%C3%BC/%E2%80%AE/%00",
        [("Authorization", f"Bearer {GOOD}")],
    ),
    "dot-dot-path": ("GET", f"{VERIFY}/%2e%2e/%2e%2e/admin", []),
    "many-slashes": ("GET", f"{VERIFY}/////", [("Authorization", f"Bearer {GOOD}")]),
    "empty-bearer": ("GET", VERIFY, [("Authorization", "Bearer ")]),
    "bearer-and-spaces": ("GET", VERIFY, [("Authorization", "Bearer      ")]),
    "latin1-token": ("GET", VERIFY, [("Authorization", b"Bearer \xe9\xe8\xff")]),
    "utf8-scheme": ("GET", VERIFY, [("Authorization", "B\u00e9arer abc".encode())]),
    "alg-none": ("GET", VERIFY, [("Authorization", "Bearer eyJhbGciOiJub25lIn0.e30.")]),
    "json-garbage-body": (
        "POST",
        VERIFY,
        [("Authorization", f"Bearer {GOOD}"), ("Content-Type", "application/json")],
    ),
    "cors-preflight": (
        "OPTIONS",
        VERIFY,
        [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "DELETE")],
    ),
    "junk-cookie-header": ("GET", VERIFY, [("Cookie", ";;;=;a=b=c; at; =at")]),
    "put-with-a-text-body": ("PUT", VERIFY, [("Content-Type", "text/plain")]),
    "crlf-in-scope": (
        "GET",
        f"{VERIFY}?scope=x%0D%0ASet-Cookie:%20a=b",
        [("Authorization", f"Bearer {GOOD}")],
    ),
    "newline-scope": ("GET", f"{VERIFY}?scope=x%0A", [("Authorization", f"Bearer {GOOD}")]),
}


@pytest.mark.parametrize("case", list(ODD_REQUESTS))
def test_odd_request_gets_only_200_401_403_or_503(
    client: TestClient, forger: Forger, case: str
) -> None:
    method, url, headers = ODD_REQUESTS[case]
    good = forger.token()
    resolved: HeaderList = [
        (name, value.replace(GOOD, good) if isinstance(value, str) else value)
        for name, value in headers
    ]

    response = client.request(method, url, headers=resolved, content=b"{not json")

    assert response.status_code in ANSWERS, (response.status_code, response.text)
    assert_no_store(response)
    assert_valid_header_values(response)
    if response.status_code == 200:
        assert response.content == b""
        assert set(identity(response)) == set(IDENTITY_HEADERS)
    else:
        assert_no_identity(response)
    if response.status_code in (401, 403):
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("depth", [2_000, 5_000])
def test_deeply_nested_token_payload_is_invalid_token(
    client: TestClient, forger: Forger, depth: int
) -> None:
    token = forger.token(payload="[" * depth + "]" * depth)

    assert_invalid_token(verify(client, bearer(token)))


def test_token_with_a_big_claim_over_8kib_is_invalid_token(
    client: TestClient, forger: Forger
) -> None:
    token = forger.token(payload=forger.claims(padding="x" * 9 * 1024))

    assert_invalid_token(verify(client, bearer(token)))


# --- the OpenAPI document --------------------------------------------------------------------


def test_verify_route_is_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    operation = paths[VERIFY]["get"]
    assert {"200", "401", "403", "503"} <= set(operation["responses"])
    assert [p["name"] for p in operation["parameters"]] == ["scope"]
    # The catch-all sub-path route (for Envoy) is not documented separately.
    assert not [path for path in paths if path.startswith(f"{VERIFY}/")]


def test_openapi_documents_only_the_answers_the_endpoint_gives(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"][VERIFY]["get"]

    assert set(operation["responses"]) == {"200", "401", "403", "503"}

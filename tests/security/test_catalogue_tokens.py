"""Security catalogue, token-type and grant rows: tokens used for what they are not
(T01-T03), tokens taken back (T04-T06), and attacks on the password and refresh_token grants
(O01-O05).

Each test is named after its catalogue row. Every refusal is checked in full: status, error
code, description where the service documents one, and the ``WWW-Authenticate`` challenge on
bearer-protected routes or its absence on ``/oauth2/token``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.helpers import (
    TOKEN_URL,
    UNKNOWN_USER,
    USER_PASSWORD,
    Forger,
    assert_invalid_token,
    assert_oauth_error,
    basic,
    bearer,
    create_client,
    password_login,
    refresh_grant,
    token_request,
)

INVALID_REFRESH_TOKEN = "Invalid refresh token"
REVOKED = "The access token was revoked"
INACTIVE = {"active": False}
NEW_PASSWORD = "catalogue-password-9"
RACERS = 8
# Bearer-protected resources a misused token is presented to: a route of the service itself
# and the forward-auth endpoint reverse proxies ask.
PROTECTED = pytest.mark.parametrize("path", ["/users/me", "/auth/verify"], ids=["me", "verify"])


# --- helpers and fixtures ----------------------------------------------------------------------


def assert_token_endpoint_error(
    response: httpx2.Response, error: str, description: str | None = None
) -> None:
    """A 400 from /oauth2/token: an RFC 6749 §5.2 error and no bearer or basic challenge."""
    assert_oauth_error(response, 400, error, description)
    assert "www-authenticate" not in response.headers


def assert_invalid_grant(response: httpx2.Response) -> None:
    assert_token_endpoint_error(response, "invalid_grant", INVALID_REFRESH_TOKEN)


def introspect(client: TestClient, rs: dict[str, Any], token: str) -> dict[str, Any]:
    """The introspection answer for ``token``, asked by the confidential client ``rs``."""
    response = client.post(
        "/oauth2/introspect",
        data={"token": token},
        headers=basic(rs["client_id"], rs["client_secret"]),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def revoke(client: TestClient, token: str) -> None:
    """Revoke ``token`` as the default public client it was issued to (RFC 7009)."""
    response = client.post("/oauth2/revoke", data={"token": token, "client_id": "public"})
    assert response.status_code == 200, response.text


def me(client: TestClient, token: str) -> httpx2.Response:
    return client.get("/users/me", headers=bearer(token))


@pytest.fixture
def rs(client: TestClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    """A confidential client that may introspect."""
    return create_client(client, admin_headers, name="resource-server")


@pytest.fixture
def tokens(client: TestClient, user: dict[str, Any]) -> dict[str, Any]:
    """alice's password-grant token response (default public client)."""
    return password_login(client, user["username"], user["password"])


@pytest.fixture
def reader(
    client: TestClient,
    admin_headers: dict[str, str],
    make_user: Callable[..., dict[str, Any]],
) -> dict[str, Any]:
    """A user holding the scopes ``read`` and ``write`` (and not ``admin``)."""
    for name in ("read", "write"):
        created = client.post("/admin/scopes", json={"name": name}, headers=admin_headers)
        assert created.status_code == 201, created.text
    return make_user("reader", "reader-password-1", scopes=("read", "write"))


# --- T01-T03: a token used as another kind of token --------------------------------------------


@PROTECTED
def test_t01_refresh_token_as_bearer_is_invalid_token(
    client: TestClient, tokens: dict[str, Any], path: str
) -> None:
    """T01: a refresh token sent as ``Authorization: Bearer`` → 401 invalid_token."""
    assert client.get(path, headers=bearer(tokens["access_token"])).status_code == 200

    response = client.get(path, headers=bearer(tokens["refresh_token"]))

    assert_invalid_token(response)


def test_t02_control_forged_at_jwt_token_is_accepted(client: TestClient, forger: Forger) -> None:
    """T02 control: the forger's at+jwt token is accepted, so each refusal below is the typ or
    the id-token shape, not the forger."""
    assert me(client, forger.token()).status_code == 200


def _id_token_claims(forger: Forger, audience: str | None) -> dict[str, Any]:
    """An OpenID Connect id token's claims for alice: no scope or client_id, but nonce,
    auth_time and azp, for the client ``audience`` (or our audience when ``None``)."""
    claims = forger.claims(drop=("scope", "client_id"))
    claims.update(nonce="n-0S6_WzA2Mj", auth_time=claims["iat"], azp="mobile-app")
    if audience is not None:
        claims["aud"] = audience
    return claims


@PROTECTED
@pytest.mark.parametrize(
    "shape",
    ["typ-JWT", "typ-jwt-lowercase", "typ-application-jwt", "id-token", "id-token-our-audience"],
)
def test_t02_typ_jwt_or_id_token_as_access_token_is_invalid_token(
    client: TestClient, forger: Forger, shape: str, path: str
) -> None:
    """T02: a token signed by our key but typed JWT, or shaped as an id token → 401."""
    if shape == "typ-JWT":
        token = forger.token(header=forger.header(typ="JWT"))
    elif shape == "typ-jwt-lowercase":
        token = forger.token(header=forger.header(typ="jwt"))
    elif shape == "typ-application-jwt":
        token = forger.token(header=forger.header(typ="application/jwt"))
    elif shape == "id-token":
        token = forger.token(forger.header(typ="JWT"), _id_token_claims(forger, "mobile-app"))
    else:
        token = forger.token(forger.header(typ="JWT"), _id_token_claims(forger, None))

    response = client.get(path, headers=bearer(token))

    assert_invalid_token(response)


def test_t03_access_token_as_refresh_token_is_invalid_grant(
    client: TestClient, tokens: dict[str, Any]
) -> None:
    """T03: an access token sent as ``refresh_token`` → 400 invalid_grant, no challenge."""
    response = refresh_grant(client, tokens["access_token"])

    assert_invalid_grant(response)
    # The refusal consumed nothing: the real refresh token still refreshes.
    assert refresh_grant(client, tokens["refresh_token"]).status_code == 200


# --- T04-T06: tokens taken back ----------------------------------------------------------------


def test_t04_revoked_access_token_is_invalid_token_and_inactive(
    client: TestClient, tokens: dict[str, Any], rs: dict[str, Any]
) -> None:
    """T04: a revoked access token → 401 invalid_token and ``{"active": false}``."""
    access_token = tokens["access_token"]
    assert me(client, access_token).status_code == 200
    assert introspect(client, rs, access_token)["active"] is True

    revoke(client, access_token)

    assert_invalid_token(me(client, access_token), REVOKED)
    assert introspect(client, rs, access_token) == INACTIVE


def test_t04_revoked_refresh_token_is_invalid_grant_and_inactive(
    client: TestClient, tokens: dict[str, Any], rs: dict[str, Any]
) -> None:
    """T04: a revoked refresh token → 400 invalid_grant and ``{"active": false}``."""
    refresh_token = tokens["refresh_token"]
    assert introspect(client, rs, refresh_token)["active"] is True

    revoke(client, refresh_token)

    assert_invalid_grant(refresh_grant(client, refresh_token))
    assert introspect(client, rs, refresh_token) == INACTIVE


@pytest.mark.parametrize(
    ("method", "body", "status"),
    [
        pytest.param("PATCH", {"is_active": False}, 200, id="disabled"),
        pytest.param("DELETE", None, 204, id="deleted"),
    ],
)
def test_t05_tokens_of_a_disabled_or_deleted_user_are_refused(
    client: TestClient,
    user: dict[str, Any],
    tokens: dict[str, Any],
    admin_headers: dict[str, str],
    rs: dict[str, Any],
    method: str,
    body: dict[str, Any] | None,
    status: int,
) -> None:
    """T05: a disabled or deleted user's unexpired access token → 401 invalid_token, refresh
    token → invalid_grant, both ``{"active": false}`` at introspection."""
    assert me(client, tokens["access_token"]).status_code == 200
    assert introspect(client, rs, tokens["access_token"])["active"] is True
    assert introspect(client, rs, tokens["refresh_token"])["active"] is True

    taken = client.request(method, f"/admin/users/{user['id']}", json=body, headers=admin_headers)
    assert taken.status_code == status, taken.text

    assert_invalid_token(me(client, tokens["access_token"]), UNKNOWN_USER)
    assert_invalid_grant(refresh_grant(client, tokens["refresh_token"]))
    assert introspect(client, rs, tokens["access_token"]) == INACTIVE
    assert introspect(client, rs, tokens["refresh_token"]) == INACTIVE


def _change_own_password(
    client: TestClient, user: dict[str, Any], headers: dict[str, str], access_token: str
) -> None:
    response = client.post(
        "/users/me/password",
        json={"current_password": user["password"], "new_password": NEW_PASSWORD},
        headers=bearer(access_token),
    )
    assert response.status_code == 204, response.text


def _reset_by_admin(
    client: TestClient, user: dict[str, Any], headers: dict[str, str], access_token: str
) -> None:
    response = client.patch(
        f"/admin/users/{user['id']}", json={"password": NEW_PASSWORD}, headers=headers
    )
    assert response.status_code == 200, response.text


PASSWORD_CHANGES = pytest.mark.parametrize(
    "change", [_change_own_password, _reset_by_admin], ids=["changed-by-user", "reset-by-admin"]
)


@PASSWORD_CHANGES
def test_t06_refresh_after_a_password_change_is_invalid_grant(
    client: TestClient,
    user: dict[str, Any],
    tokens: dict[str, Any],
    admin_headers: dict[str, str],
    rs: dict[str, Any],
    change: Callable[[TestClient, dict[str, Any], dict[str, str], str], None],
) -> None:
    """T06: every refresh token issued before a password change → invalid_grant, inactive
    (README: changing or resetting a password revokes all of the user's families)."""
    other = password_login(client, user["username"], user["password"])["refresh_token"]

    change(client, user, admin_headers, tokens["access_token"])

    for refresh_token in (tokens["refresh_token"], other):
        assert_invalid_grant(refresh_grant(client, refresh_token))
        assert introspect(client, rs, refresh_token) == INACTIVE
    # The old password no longer logs in; the new one starts a session that refreshes.
    assert_token_endpoint_error(token_request(client, "alice", USER_PASSWORD), "invalid_grant")
    fresh = password_login(client, "alice", NEW_PASSWORD)["refresh_token"]
    assert refresh_grant(client, fresh).status_code == 200


@PASSWORD_CHANGES
def test_t06_access_token_issued_before_a_password_change_lives_until_it_expires(
    client: TestClient,
    user: dict[str, Any],
    tokens: dict[str, Any],
    admin_headers: dict[str, str],
    change: Callable[[TestClient, dict[str, Any], dict[str, str], str], None],
) -> None:
    """T06: the README takes access tokens back only by revocation or revoke-sessions, so a
    password change leaves an unexpired access token working (its TTL bounds the exposure)."""
    change(client, user, admin_headers, tokens["access_token"])

    response = me(client, tokens["access_token"])

    assert response.status_code == 200, response.text
    assert response.json()["id"] == user["id"]


# --- O01-O05: attacks on the grants ------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "scope", "refused"),
    [
        pytest.param("alice", USER_PASSWORD, "admin", "admin", id="no-scopes-asks-admin"),
        pytest.param("reader", "reader-password-1", "read admin", "admin", id="adds-admin"),
        pytest.param("reader", "reader-password-1", "no-such-scope", "no-such-scope", id="unknown"),
    ],
)
def test_o01_password_grant_for_a_scope_the_user_lacks_is_invalid_scope(
    client: TestClient,
    user: dict[str, Any],
    reader: dict[str, Any],
    username: str,
    password: str,
    scope: str,
    refused: str,
) -> None:
    """O01: scope escalation at /token → 400 invalid_scope, and no token is issued."""
    assert password_login(client, username, password)["scope"] != scope

    response = token_request(client, username, password, scope=scope)

    assert_token_endpoint_error(response, "invalid_scope", f"Scope not allowed: {refused}")


@pytest.mark.parametrize(
    ("granted", "requested", "refused"),
    [
        pytest.param("read", "read write", "write", id="adds-a-held-scope"),
        pytest.param("read", "write", "write", id="swaps-for-a-held-scope"),
        pytest.param("read write", "read write admin", "admin", id="adds-an-unheld-scope"),
    ],
)
def test_o02_refresh_for_a_wider_scope_is_invalid_scope_and_not_consumed(
    client: TestClient, reader: dict[str, Any], granted: str, requested: str, refused: str
) -> None:
    """O02: scope escalation on refresh → 400 invalid_scope; the refresh token is not
    consumed and still refreshes to the original grant."""
    first = password_login(client, reader["username"], reader["password"], scope=granted)
    assert first["scope"] == granted

    response = refresh_grant(client, first["refresh_token"], scope=requested)

    assert_token_endpoint_error(response, "invalid_scope", f"Scope not allowed: {refused}")
    again = refresh_grant(client, first["refresh_token"])
    assert again.status_code == 200, again.text
    assert again.json()["scope"] == granted


def test_o03_reused_refresh_token_is_invalid_grant_and_kills_its_successor(
    client: TestClient, tokens: dict[str, Any], rs: dict[str, Any]
) -> None:
    """O03: a rotated refresh token presented again → invalid_grant, and the reuse revokes
    the family, so the successor from the rotation is refused too (RFC 9700 §4.14.2)."""
    rotated = refresh_grant(client, tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    successor = rotated.json()["refresh_token"]
    assert introspect(client, rs, successor)["active"] is True

    assert_invalid_grant(refresh_grant(client, tokens["refresh_token"]))

    assert_invalid_grant(refresh_grant(client, successor))
    assert introspect(client, rs, successor) == INACTIVE


def test_o04_concurrent_refreshes_have_exactly_one_winner(
    client: TestClient, tokens: dict[str, Any]
) -> None:
    """O04: the same refresh token POSTed by ``RACERS`` threads at once → exactly one 200,
    every other an invalid_grant (never a 5xx)."""
    start = threading.Barrier(RACERS)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}

    def race(_: int) -> httpx2.Response:
        start.wait(timeout=10)
        return client.post(TOKEN_URL, data=form)

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        responses = list(pool.map(race, range(RACERS)))

    outcomes = Counter(response.status_code for response in responses)
    assert outcomes == {200: 1, 400: RACERS - 1}, [r.text for r in responses]
    for loser in (response for response in responses if response.status_code != 200):
        assert_invalid_grant(loser)
    [winner] = [response for response in responses if response.status_code == 200]
    assert me(client, winner.json()["access_token"]).status_code == 200


@pytest.fixture
def owner(client: TestClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    """Client A: a registered public client that alice logs in through."""
    return create_client(
        client,
        admin_headers,
        name="client-a",
        grant_types=["password", "refresh_token"],
        confidential=False,
    )


def _present_as_confidential(
    client: TestClient, admin_headers: dict[str, str], token: str
) -> httpx2.Response:
    other = create_client(
        client, admin_headers, name="client-b", grant_types=["password", "refresh_token"]
    )
    form = {"grant_type": "refresh_token", "refresh_token": token}
    return client.post(
        TOKEN_URL, data=form, headers=basic(other["client_id"], other["client_secret"])
    )


def _present_as_registered_public(
    client: TestClient, admin_headers: dict[str, str], token: str
) -> httpx2.Response:
    other = create_client(
        client,
        admin_headers,
        name="client-b",
        grant_types=["password", "refresh_token"],
        confidential=False,
    )
    return refresh_grant(client, token, client_id=other["client_id"])


def _present_as_unregistered_public(
    client: TestClient, admin_headers: dict[str, str], token: str
) -> httpx2.Response:
    return refresh_grant(client, token, client_id="other-app")


def _present_without_client_id(
    client: TestClient, admin_headers: dict[str, str], token: str
) -> httpx2.Response:
    return refresh_grant(client, token)


@pytest.mark.parametrize(
    "present",
    [
        _present_as_confidential,
        _present_as_registered_public,
        _present_as_unregistered_public,
        _present_without_client_id,
    ],
    ids=["confidential", "registered-public", "unregistered-public", "default-public"],
)
def test_o05_another_clients_refresh_token_is_invalid_grant(
    client: TestClient,
    user: dict[str, Any],
    owner: dict[str, Any],
    admin_headers: dict[str, str],
    present: Callable[[TestClient, dict[str, str], str], httpx2.Response],
) -> None:
    """O05: a refresh token issued to client A presented by client B → 400 invalid_grant.
    A's session is left alone (README: another client gets invalid_grant; only the holder's
    own reuse revokes the family), so B cannot end A's session with a stolen token."""
    token = password_login(client, "alice", USER_PASSWORD, client_id=owner["client_id"])[
        "refresh_token"
    ]

    response = present(client, admin_headers, token)

    assert_invalid_grant(response)
    own = refresh_grant(client, token, client_id=owner["client_id"])
    assert own.status_code == 200, own.text

"""POST /oauth2/introspect (RFC 7662): who may ask, what an active token reports, and that every
unusable token is exactly ``{"active": false}``."""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jose import jwt

from authsvc.config import Settings
from tests.helpers import (
    AUDIENCE,
    ISSUER,
    TOKEN_URL,
    Forger,
    alice_tokens,
    assert_no_store,
    assert_oauth_error,
    basic,
    client_credentials_token,
    create_client,
    password_login,
)

INTROSPECT_URL = "/oauth2/introspect"
REVOKE_URL = "/oauth2/revoke"
INACTIVE = {"active": False}
ACCESS_TOKEN_FIELDS = {
    "active",
    "token_type",
    "scope",
    "client_id",
    "exp",
    "iat",
    "nbf",
    "sub",
    "aud",
    "iss",
    "jti",
    "username",
}
REFRESH_TOKEN_FIELDS = {
    "active",
    "token_type",
    "scope",
    "client_id",
    "username",
    "sub",
    "iss",
    "exp",
    "iat",
}


def introspect(client: TestClient, rs: dict[str, Any], token: str, **extra: str) -> httpx2.Response:
    """Introspect ``token`` as the confidential client ``rs`` (client_secret_basic)."""
    return client.post(
        INTROSPECT_URL,
        data={"token": token, **extra},
        headers=basic(rs["client_id"], rs["client_secret"]),
    )


def introspection(client: TestClient, rs: dict[str, Any], token: str) -> dict[str, Any]:
    response = introspect(client, rs, token)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def unverified_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.get_unverified_claims(token)
    return claims


@pytest.fixture
def rs(client: TestClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    """A registered confidential client acting as a resource server."""
    return create_client(client, admin_headers)


# --- who may ask -----------------------------------------------------------------------------


def test_introspection_without_client_authentication_is_401_invalid_client(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = client.post(INTROSPECT_URL, data={"token": token})

    assert_oauth_error(response, 401, "invalid_client", "Client authentication required")
    assert response.headers["www-authenticate"] == 'Basic realm="authsvc"'


def test_introspection_with_a_wrong_client_secret_is_401_invalid_client(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = client.post(
        INTROSPECT_URL, data={"token": token}, headers=basic(rs["client_id"], "wrong-secret")
    )

    assert_oauth_error(response, 401, "invalid_client", "Client authentication failed")
    assert response.headers["www-authenticate"] == 'Basic realm="authsvc"'


def test_introspection_by_an_unregistered_public_client_id_is_401_invalid_client(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = client.post(INTROSPECT_URL, data={"token": token, "client_id": "public"})

    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="authsvc"'


def test_introspection_by_a_registered_public_client_is_401_invalid_client(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any]
) -> None:
    spa = create_client(
        client, admin_headers, name="spa", grant_types=["password"], confidential=False
    )
    token = alice_tokens(client)["access_token"]

    response = client.post(INTROSPECT_URL, data={"token": token, "client_id": spa["client_id"]})

    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="authsvc"'


def test_introspection_with_the_callers_bearer_token_instead_of_client_auth_is_401(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = client.post(
        INTROSPECT_URL, data={"token": token}, headers={"Authorization": f"Bearer {token}"}
    )

    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="authsvc"'


def test_introspection_accepts_client_secret_post(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = client.post(
        INTROSPECT_URL,
        data={"token": token, "client_id": rs["client_id"], "client_secret": rs["client_secret"]},
    )

    assert response.status_code == 200, response.text
    assert response.json()["active"] is True


def test_introspection_with_basic_and_post_credentials_at_once_is_400_invalid_request(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = client.post(
        INTROSPECT_URL,
        data={"token": token, "client_secret": rs["client_secret"]},
        headers=basic(rs["client_id"], rs["client_secret"]),
    )

    assert_oauth_error(response, 400, "invalid_request")


# --- the request -----------------------------------------------------------------------------


def test_introspection_without_token_is_400_invalid_request(
    client: TestClient, rs: dict[str, Any]
) -> None:
    response = client.post(
        INTROSPECT_URL,
        data={"token_type_hint": "access_token"},
        headers=basic(rs["client_id"], rs["client_secret"]),
    )

    assert_oauth_error(response, 400, "invalid_request", "Missing parameter: token")


def test_introspection_with_an_empty_token_is_400_invalid_request(
    client: TestClient, rs: dict[str, Any]
) -> None:
    response = introspect(client, rs, "")

    assert_oauth_error(response, 400, "invalid_request", "Missing parameter: token")


def test_introspection_with_a_json_body_is_400_invalid_request(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = client.post(
        INTROSPECT_URL,
        json={"token": token},
        headers=basic(rs["client_id"], rs["client_secret"]),
    )

    assert_oauth_error(response, 400, "invalid_request")


def test_introspection_with_the_token_in_the_query_string_is_400_invalid_request(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = client.post(
        INTROSPECT_URL,
        params={"token": token},
        data={"token": token},
        headers=basic(rs["client_id"], rs["client_secret"]),
    )

    assert_oauth_error(response, 400, "invalid_request")


def test_introspection_by_get_is_405(client: TestClient) -> None:
    assert client.get(INTROSPECT_URL).status_code == 405


def test_introspection_ignores_an_unknown_token_type_hint(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = introspect(client, rs, token, token_type_hint="id_token")

    assert response.status_code == 200, response.text
    assert response.json()["active"] is True


@pytest.mark.parametrize(
    ("kind", "hint", "token_type"),
    [
        pytest.param("access_token", "refresh_token", "Bearer", id="access-hinted-refresh"),
        pytest.param("refresh_token", "access_token", "refresh_token", id="refresh-hinted-access"),
    ],
)
def test_introspection_of_a_token_with_the_wrong_hint_still_finds_it(
    client: TestClient,
    rs: dict[str, Any],
    user: dict[str, Any],
    kind: str,
    hint: str,
    token_type: str,
) -> None:
    token = alice_tokens(client)[kind]

    response = introspect(client, rs, token, token_type_hint=hint)

    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == token_type


# --- active tokens ---------------------------------------------------------------------------


def test_active_access_token_reports_exactly_its_claims(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]
    claims = unverified_claims(token)

    body = introspection(client, rs, token)

    assert set(body) == ACCESS_TOKEN_FIELDS
    assert body["active"] is True
    assert body["token_type"] == "Bearer"
    assert body["username"] == "alice"
    assert body["sub"] == user["id"]
    assert body["client_id"] == "public"
    assert body["iss"] == ISSUER
    assert body["aud"] == AUDIENCE
    assert body["scope"] == ""
    for name in ("exp", "iat", "nbf", "jti"):
        assert body[name] == claims[name]


def test_active_access_token_reports_its_granted_scope(
    client: TestClient, admin: dict[str, Any], rs: dict[str, Any]
) -> None:
    token = password_login(client, admin["username"], admin["password"])["access_token"]

    body = introspection(client, rs, token)

    assert body["active"] is True
    assert body["scope"] == "admin"
    assert body["username"] == "root-admin"


def test_active_access_token_reports_the_client_it_was_issued_to(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    token = alice_tokens(client, client_id="mobile-app")["access_token"]

    body = introspection(client, rs, token)

    assert body["active"] is True
    assert body["client_id"] == "mobile-app"


def test_introspection_response_is_json_and_never_cached(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = introspect(client, rs, token)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert_no_store(response)


def test_inactive_answer_is_never_cached_either(client: TestClient, rs: dict[str, Any]) -> None:
    response = introspect(client, rs, "garbage")

    assert response.status_code == 200
    assert_no_store(response)


def test_active_refresh_token_reports_exactly_its_fields(
    client: TestClient, rs: dict[str, Any], admin: dict[str, Any], settings: Settings
) -> None:
    before = int(time.time())
    refresh_token = password_login(client, admin["username"], admin["password"])["refresh_token"]
    after = int(time.time())

    body = introspection(client, rs, refresh_token)

    assert set(body) == REFRESH_TOKEN_FIELDS
    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["scope"] == "admin"
    assert body["client_id"] == "public"
    assert body["username"] == "root-admin"
    assert body["sub"] == admin["id"]
    assert body["iss"] == ISSUER
    assert before <= body["iat"] <= after
    assert body["exp"] - body["iat"] == settings.refresh_token_ttl


def test_rotated_refresh_token_successor_is_active(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    first = alice_tokens(client)["refresh_token"]
    response = client.post(TOKEN_URL, data={"grant_type": "refresh_token", "refresh_token": first})
    assert response.status_code == 200, response.text

    body = introspection(client, rs, response.json()["refresh_token"])

    assert body["active"] is True
    assert body["token_type"] == "refresh_token"


def test_client_credentials_token_is_active_and_names_the_client_as_subject(
    client: TestClient, admin_headers: dict[str, str], rs: dict[str, Any]
) -> None:
    service = create_client(client, admin_headers, name="billing")
    token = client_credentials_token(client, service)

    body = introspection(client, rs, token)

    assert body["active"] is True
    assert body["token_type"] == "Bearer"
    assert body["client_id"] == service["client_id"]
    assert body["sub"] == service["client_id"]
    assert "username" not in body
    assert set(body) == ACCESS_TOKEN_FIELDS - {"username"}


def test_client_may_introspect_its_own_client_credentials_token(
    client: TestClient, rs: dict[str, Any]
) -> None:
    token = client_credentials_token(client, rs)

    body = introspection(client, rs, token)

    assert body["active"] is True
    assert body["client_id"] == rs["client_id"]


# --- inactive tokens: exactly {"active": false} ----------------------------------------------


def test_client_credentials_token_is_inactive_once_its_client_is_deleted(
    client: TestClient, admin_headers: dict[str, str], rs: dict[str, Any]
) -> None:
    service = create_client(client, admin_headers, name="billing")
    token = client_credentials_token(client, service)
    deleted = client.delete(f"/admin/clients/{service['client_id']}", headers=admin_headers)
    assert deleted.status_code == 204

    assert introspection(client, rs, token) == INACTIVE


def test_client_credentials_token_revoked_by_its_client_is_inactive(
    client: TestClient, rs: dict[str, Any]
) -> None:
    token = client_credentials_token(client, rs)
    revoked = client.post(
        REVOKE_URL, data={"token": token}, headers=basic(rs["client_id"], rs["client_secret"])
    )
    assert revoked.status_code == 200

    assert introspection(client, rs, token) == INACTIVE


def test_expired_access_token_is_inactive(
    client: TestClient, rs: dict[str, Any], forger: Forger
) -> None:
    now = int(time.time())
    token = forger.token(payload=forger.claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600))

    assert introspection(client, rs, token) == INACTIVE


def test_access_token_within_its_lifetime_forged_with_the_apps_key_is_active(
    client: TestClient, rs: dict[str, Any], forger: Forger
) -> None:
    # The control for the forged-token cases below: the Forger's tokens are otherwise good.
    assert introspection(client, rs, forger.token())["active"] is True


def test_access_token_with_a_forged_signature_is_inactive(
    client: TestClient, rs: dict[str, Any], forger: Forger
) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    token = forger.token(private_key=other_key)

    assert introspection(client, rs, token) == INACTIVE


def test_access_token_with_a_tampered_payload_is_inactive(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]
    header, _, signature = token.split(".")
    claims = unverified_claims(token) | {"scope": "admin"}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode("ascii")

    assert introspection(client, rs, f"{header}.{payload}.{signature}") == INACTIVE


def test_access_token_of_an_unknown_user_is_inactive(
    client: TestClient, rs: dict[str, Any], forger: Forger
) -> None:
    token = forger.token(payload=forger.claims(sub=str(uuid.uuid4())))

    assert introspection(client, rs, token) == INACTIVE


def test_access_token_for_another_audience_is_inactive(
    client: TestClient, rs: dict[str, Any], forger: Forger
) -> None:
    token = forger.token(payload=forger.claims(aud="another-service"))

    assert introspection(client, rs, token) == INACTIVE


@pytest.mark.parametrize(
    "garbage",
    [
        "garbage",
        "a.b.c",
        "...",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "x" * 9000,
        "x.y.z" * 2000,
        "🔑.🔑.🔑",
    ],
    ids=["word", "three-dots-segments", "dots", "alg-none", "huge", "huge-jwt-shaped", "emoji"],
)
def test_malformed_token_is_inactive(client: TestClient, rs: dict[str, Any], garbage: str) -> None:
    assert introspection(client, rs, garbage) == INACTIVE


def test_unknown_refresh_token_is_inactive(client: TestClient, rs: dict[str, Any]) -> None:
    assert introspection(client, rs, secrets.token_urlsafe(32)) == INACTIVE


def test_access_token_revoked_by_its_client_is_inactive(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]
    assert client.post(REVOKE_URL, data={"token": token}).status_code == 200

    assert introspection(client, rs, token) == INACTIVE


def test_refresh_token_revoked_by_its_client_is_inactive(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    refresh_token = alice_tokens(client)["refresh_token"]
    assert client.post(REVOKE_URL, data={"token": refresh_token}).status_code == 200

    assert introspection(client, rs, refresh_token) == INACTIVE


def test_consumed_refresh_token_is_inactive(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    first = alice_tokens(client)["refresh_token"]
    response = client.post(TOKEN_URL, data={"grant_type": "refresh_token", "refresh_token": first})
    assert response.status_code == 200, response.text

    assert introspection(client, rs, first) == INACTIVE


def test_whole_family_is_inactive_after_a_consumed_refresh_token_is_reused(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    first = alice_tokens(client)["refresh_token"]
    rotated = client.post(TOKEN_URL, data={"grant_type": "refresh_token", "refresh_token": first})
    second = rotated.json()["refresh_token"]
    replay = client.post(TOKEN_URL, data={"grant_type": "refresh_token", "refresh_token": first})
    assert replay.status_code == 400

    assert introspection(client, rs, second) == INACTIVE


def test_refresh_token_of_a_session_ended_by_the_user_is_inactive(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    tokens = alice_tokens(client)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    [session] = client.get("/users/me/sessions", headers=headers).json()
    assert client.delete(f"/users/me/sessions/{session['id']}", headers=headers).status_code == 204

    assert introspection(client, rs, tokens["refresh_token"]) == INACTIVE


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_tokens_of_a_disabled_user_are_inactive(
    client: TestClient,
    admin_headers: dict[str, str],
    rs: dict[str, Any],
    user: dict[str, Any],
    kind: str,
) -> None:
    token = alice_tokens(client)[kind]
    disabled = client.patch(
        f"/admin/users/{user['id']}", headers=admin_headers, json={"is_active": False}
    )
    assert disabled.status_code == 200

    assert introspection(client, rs, token) == INACTIVE


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_tokens_of_a_deleted_user_are_inactive(
    client: TestClient,
    admin_headers: dict[str, str],
    rs: dict[str, Any],
    user: dict[str, Any],
    kind: str,
) -> None:
    token = alice_tokens(client)[kind]
    assert client.delete(f"/admin/users/{user['id']}", headers=admin_headers).status_code == 204

    assert introspection(client, rs, token) == INACTIVE


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_tokens_issued_before_the_users_revoke_all_cutoff_are_inactive(
    client: TestClient,
    admin_headers: dict[str, str],
    rs: dict[str, Any],
    user: dict[str, Any],
    kind: str,
) -> None:
    token = alice_tokens(client)[kind]
    response = client.post(f"/admin/users/{user['id']}/revoke-sessions", headers=admin_headers)
    assert response.status_code == 204

    assert introspection(client, rs, token) == INACTIVE

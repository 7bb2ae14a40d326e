"""The client credentials grant (RFC 6749 §4.4): a confidential client acting on its own behalf."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from jose import jwt

from tests.helpers import (
    AUDIENCE,
    ISSUER,
    REQUIRED_CLAIMS,
    TOKEN_URL,
    assert_invalid_token,
    assert_no_store,
    assert_oauth_error,
    bearer,
    create_client,
    pyjwt_decode,
)

BASIC_CHALLENGE = 'Basic realm="authsvc"'
GRANT = {"grant_type": "client_credentials"}


def basic_header(client_id: str, secret: str) -> dict[str, str]:
    value = base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii")
    return {"Authorization": f"Basic {value}"}


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.get_unverified_claims(token)
    return claims


def request_token(client: TestClient, service: dict[str, Any], **extra: str) -> httpx2.Response:
    """client_credentials with client_secret_basic for a client from ``register``."""
    return client.post(
        TOKEN_URL,
        data={**GRANT, **extra},
        headers=basic_header(service["client_id"], service["client_secret"]),
    )


def issued(response: httpx2.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_invalid_client(response: httpx2.Response) -> None:
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == BASIC_CHALLENGE
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert "access_token" not in response.text


@pytest.fixture
def register(client: TestClient, admin_headers: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """Register a client through the admin API, creating the scopes it names first."""

    def factory(
        grant_types: tuple[str, ...] = ("client_credentials",),
        scopes: tuple[str, ...] = (),
        confidential: bool = True,
    ) -> dict[str, Any]:
        existing = {s["name"] for s in client.get("/admin/scopes", headers=admin_headers).json()}
        for name in scopes:
            if name not in existing:
                created = client.post("/admin/scopes", headers=admin_headers, json={"name": name})
                assert created.status_code == 201, created.text
        return create_client(
            client,
            admin_headers,
            "service",
            grant_types=list(grant_types),
            scopes=list(scopes),
            confidential=confidential,
        )

    return factory


@pytest.fixture
def service(register: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """A confidential client allowed client_credentials with scopes ``reports`` and ``metrics``."""
    return register(scopes=("reports", "metrics"))


# --- success ---------------------------------------------------------------------------------


def test_client_credentials_with_basic_auth_issues_bearer_token(
    client: TestClient, service: dict[str, Any]
) -> None:
    response = request_token(client, service)

    body = issued(response)
    assert body["token_type"] == "Bearer"
    assert isinstance(body["access_token"], str)
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0


def test_client_credentials_with_post_auth_issues_token(
    client: TestClient, service: dict[str, Any]
) -> None:
    response = client.post(
        TOKEN_URL,
        data={
            **GRANT,
            "client_id": service["client_id"],
            "client_secret": service["client_secret"],
        },
    )

    assert claims_of(issued(response)["access_token"])["client_id"] == service["client_id"]


def test_client_credentials_response_is_never_cached(
    client: TestClient, service: dict[str, Any]
) -> None:
    assert_no_store(request_token(client, service))


def test_client_credentials_response_has_no_refresh_token(
    client: TestClient, service: dict[str, Any]
) -> None:
    body = issued(request_token(client, service))

    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}


def test_client_credentials_token_subject_is_the_client(
    client: TestClient, service: dict[str, Any]
) -> None:
    claims = claims_of(issued(request_token(client, service))["access_token"])

    assert claims["sub"] == service["client_id"]
    assert claims["client_id"] == service["client_id"]


def test_client_credentials_token_has_no_username_claim(
    client: TestClient, service: dict[str, Any]
) -> None:
    claims = claims_of(issued(request_token(client, service))["access_token"])

    assert "preferred_username" not in claims


def test_client_credentials_token_has_issuer_audience_and_required_claims(
    client: TestClient, service: dict[str, Any]
) -> None:
    claims = claims_of(issued(request_token(client, service))["access_token"])

    assert set(REQUIRED_CLAIMS) <= set(claims)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["exp"] > claims["iat"]


def test_client_credentials_token_verifies_with_published_jwks(
    client: TestClient, service: dict[str, Any]
) -> None:
    token = issued(request_token(client, service))["access_token"]
    jwk = client.get("/.well-known/jwks.json").json()["keys"][0]

    assert pyjwt_decode(token, jwk)["sub"] == service["client_id"]


def test_client_credentials_tokens_have_distinct_jti(
    client: TestClient, service: dict[str, Any]
) -> None:
    first = claims_of(issued(request_token(client, service))["access_token"])
    second = claims_of(issued(request_token(client, service))["access_token"])

    assert first["jti"] != second["jti"]


def test_client_credentials_client_allowed_other_grants_too_gets_no_refresh_token(
    client: TestClient, register: Callable[..., dict[str, Any]]
) -> None:
    versatile = register(grant_types=("client_credentials", "password", "refresh_token"))

    assert "refresh_token" not in issued(request_token(client, versatile))


# --- scopes ----------------------------------------------------------------------------------


def test_client_credentials_without_scope_gets_all_the_client_scopes(
    client: TestClient, service: dict[str, Any]
) -> None:
    body = issued(request_token(client, service))

    assert body["scope"] == "metrics reports"
    assert claims_of(body["access_token"])["scope"] == "metrics reports"


def test_client_credentials_with_requested_subset_gets_only_that(
    client: TestClient, service: dict[str, Any]
) -> None:
    body = issued(request_token(client, service, scope="reports"))

    assert body["scope"] == "reports"
    assert claims_of(body["access_token"])["scope"] == "reports"


def test_client_credentials_with_scope_outside_the_client_is_invalid_scope(
    client: TestClient, service: dict[str, Any]
) -> None:
    response = request_token(client, service, scope="reports admin")

    assert_oauth_error(response, 400, "invalid_scope")
    assert "access_token" not in response.text


def test_client_credentials_with_unknown_scope_is_invalid_scope(
    client: TestClient, service: dict[str, Any]
) -> None:
    assert_oauth_error(request_token(client, service, scope="no-such-scope"), 400, "invalid_scope")


def test_client_credentials_with_malformed_scope_is_invalid_scope(
    client: TestClient, service: dict[str, Any]
) -> None:
    assert_oauth_error(request_token(client, service, scope='bad"scope'), 400, "invalid_scope")


def test_client_credentials_client_without_scopes_gets_empty_scope(
    client: TestClient, register: Callable[..., dict[str, Any]]
) -> None:
    body = issued(request_token(client, register()))

    assert body["scope"] == ""


def test_client_credentials_scope_follows_client_scopes_changed_by_admin(
    client: TestClient, admin_headers: dict[str, str], service: dict[str, Any]
) -> None:
    client.patch(
        f"/admin/clients/{service['client_id']}",
        headers=admin_headers,
        json={"scopes": ["metrics"]},
    )

    assert issued(request_token(client, service))["scope"] == "metrics"


# --- who may use the grant -------------------------------------------------------------------


def test_client_credentials_without_any_client_is_401_invalid_client(client: TestClient) -> None:
    assert_invalid_client(client.post(TOKEN_URL, data=GRANT))


def test_client_credentials_by_unregistered_client_id_is_401_invalid_client(
    client: TestClient,
) -> None:
    assert_invalid_client(client.post(TOKEN_URL, data={**GRANT, "client_id": "my-service"}))


def test_client_credentials_by_unregistered_client_with_secret_is_401_invalid_client(
    client: TestClient,
) -> None:
    response = client.post(
        TOKEN_URL, data=GRANT, headers=basic_header("my-service", "guessed-secret")
    )

    assert_invalid_client(response)


def test_client_credentials_by_registered_public_client_is_401_invalid_client(
    client: TestClient, register: Callable[..., dict[str, Any]]
) -> None:
    public = register(grant_types=("password", "refresh_token"), confidential=False)

    response = client.post(TOKEN_URL, data={**GRANT, "client_id": public["client_id"]})

    assert_invalid_client(response)


def test_client_credentials_with_wrong_secret_is_401_invalid_client(
    client: TestClient, service: dict[str, Any]
) -> None:
    response = client.post(
        TOKEN_URL, data=GRANT, headers=basic_header(service["client_id"], "wrong-secret")
    )

    assert_invalid_client(response)


def test_client_credentials_without_secret_is_401_invalid_client(
    client: TestClient, service: dict[str, Any]
) -> None:
    response = client.post(TOKEN_URL, data={**GRANT, "client_id": service["client_id"]})

    assert_invalid_client(response)


def test_client_credentials_by_confidential_client_without_the_grant_is_unauthorized_client(
    client: TestClient, register: Callable[..., dict[str, Any]]
) -> None:
    password_client = register(grant_types=("password", "refresh_token"))

    response = request_token(client, password_client)

    assert_oauth_error(response, 400, "unauthorized_client")
    assert "access_token" not in response.text


def test_client_credentials_after_grant_removed_by_admin_is_unauthorized_client(
    client: TestClient, admin_headers: dict[str, str], service: dict[str, Any]
) -> None:
    client.patch(
        f"/admin/clients/{service['client_id']}",
        headers=admin_headers,
        json={"grant_types": ["password"]},
    )

    assert_oauth_error(request_token(client, service), 400, "unauthorized_client")


def test_client_credentials_with_basic_and_post_secret_is_invalid_request(
    client: TestClient, service: dict[str, Any]
) -> None:
    response = client.post(
        TOKEN_URL,
        data={**GRANT, "client_secret": service["client_secret"]},
        headers=basic_header(service["client_id"], service["client_secret"]),
    )

    assert_oauth_error(response, 400, "invalid_request")


# --- what the token may be used for ----------------------------------------------------------


def test_client_credentials_token_is_refused_by_users_me(
    client: TestClient, service: dict[str, Any]
) -> None:
    token = issued(request_token(client, service))["access_token"]

    assert_invalid_token(client.get("/users/me", headers=bearer(token)))


def test_client_credentials_token_with_admin_scope_is_refused_by_admin_api(
    client: TestClient, register: Callable[..., dict[str, Any]]
) -> None:
    # A client may be registered with the admin scope, but a token without a user behind it
    # must not pass the admin guard, which acts as a user.
    privileged = register(scopes=("admin",))
    body = issued(request_token(client, privileged))
    assert body["scope"] == "admin"

    assert_invalid_token(client.get("/admin/clients", headers=bearer(body["access_token"])))
    assert_invalid_token(client.get("/admin/users", headers=bearer(body["access_token"])))

"""POST /oauth2/revoke (RFC 7009): who may revoke what, what revoking does, and that the answer
never tells whether a token existed."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jose import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.models import RevokedAccessToken
from authsvc.oauth2.token_checks import REVOKED
from tests.helpers import (
    Forger,
    alice_tokens,
    assert_invalid_token,
    assert_no_store,
    assert_oauth_error,
    basic,
    bearer,
    client_credentials_token,
    create_client,
    refresh_grant,
)

REVOKE_URL = "/oauth2/revoke"
INTROSPECT_URL = "/oauth2/introspect"
INVALID_REFRESH_TOKEN = "Invalid refresh token"


def revoke(
    client: TestClient, token: str, headers: dict[str, str] | None = None, **extra: str
) -> httpx2.Response:
    return client.post(REVOKE_URL, data={"token": token, **extra}, headers=headers)


def me_status(client: TestClient, access_token: str) -> int:
    return client.get("/users/me", headers=bearer(access_token)).status_code


def is_active(client: TestClient, rs: dict[str, Any], token: str) -> bool:
    response = client.post(
        INTROSPECT_URL,
        data={"token": token},
        headers=basic(rs["client_id"], rs["client_secret"]),
    )
    assert response.status_code == 200, response.text
    active: bool = response.json()["active"]
    return active


def assert_revocation_ok(response: httpx2.Response) -> None:
    """RFC 7009 §2.2: 200 with nothing in the body to tell whether the token existed."""
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert_no_store(response)


@pytest.fixture
def rs(client: TestClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    """A registered confidential client."""
    return create_client(client, admin_headers)


@pytest.fixture
def sessions(settings: Settings, migrated: None) -> Iterator[sessionmaker[Session]]:
    engine = build_engine(settings)
    yield build_sessionmaker(engine)
    engine.dispose()


# --- access tokens ---------------------------------------------------------------------------


def test_revoked_access_token_is_refused_by_protected_routes(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]
    assert me_status(client, token) == 200

    assert_revocation_ok(revoke(client, token))

    assert_invalid_token(client.get("/users/me", headers=bearer(token)), REVOKED)


@pytest.mark.parametrize("hint", ["access_token", "refresh_token"])
def test_revoking_an_access_token_with_either_hint_denylists_it(
    client: TestClient, user: dict[str, Any], hint: str
) -> None:
    token = alice_tokens(client)["access_token"]

    assert_revocation_ok(revoke(client, token, token_type_hint=hint))

    assert_invalid_token(client.get("/users/me", headers=bearer(token)), REVOKED)


def test_public_client_naming_itself_public_may_revoke_its_token(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    assert_revocation_ok(revoke(client, token, client_id="public"))

    assert me_status(client, token) == 401


def test_unregistered_public_client_revokes_tokens_issued_to_it(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = alice_tokens(client, client_id="mobile-app")["access_token"]

    assert_revocation_ok(revoke(client, token, client_id="mobile-app"))

    assert me_status(client, token) == 401


def test_revoking_an_access_token_leaves_other_access_tokens_working(
    client: TestClient, user: dict[str, Any]
) -> None:
    revoked = alice_tokens(client)["access_token"]
    other = alice_tokens(client)["access_token"]

    assert_revocation_ok(revoke(client, revoked))

    assert me_status(client, other) == 200


def test_revoking_an_access_token_leaves_its_refresh_token_working(
    client: TestClient, user: dict[str, Any]
) -> None:
    tokens = alice_tokens(client)

    assert_revocation_ok(revoke(client, tokens["access_token"]))

    assert refresh_grant(client, tokens["refresh_token"]).status_code == 200


def test_revoking_an_access_token_twice_is_200_both_times(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    assert_revocation_ok(revoke(client, token))
    assert_revocation_ok(revoke(client, token))

    assert me_status(client, token) == 401


def test_denylist_entry_lasts_at_least_until_the_access_token_expires(
    client: TestClient, user: dict[str, Any], sessions: sessionmaker[Session]
) -> None:
    token = alice_tokens(client)["access_token"]
    claims = jwt.get_unverified_claims(token)

    assert_revocation_ok(revoke(client, token))

    with sessions() as session:
        [entry] = session.scalars(select(RevokedAccessToken)).all()
    assert entry.jti == claims["jti"]
    assert entry.expires_at >= datetime.fromtimestamp(claims["exp"], UTC)


def test_confidential_client_revokes_its_client_credentials_token(
    client: TestClient, rs: dict[str, Any]
) -> None:
    token = client_credentials_token(client, rs)
    assert is_active(client, rs, token)

    assert_revocation_ok(revoke(client, token, basic(rs["client_id"], rs["client_secret"])))

    assert not is_active(client, rs, token)


def test_confidential_client_may_revoke_with_client_secret_post(
    client: TestClient, rs: dict[str, Any]
) -> None:
    token = client_credentials_token(client, rs)

    response = revoke(client, token, client_id=rs["client_id"], client_secret=rs["client_secret"])

    assert_revocation_ok(response)
    assert not is_active(client, rs, token)


def test_revoking_an_expired_access_token_is_200(
    client: TestClient, forger: Forger, user: dict[str, Any]
) -> None:
    now = int(time.time())
    token = forger.token(payload=forger.claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600))

    assert_revocation_ok(revoke(client, token))


def test_revoking_a_forged_access_token_is_200_and_denylists_nothing(
    client: TestClient, forger: Forger, sessions: sessionmaker[Session]
) -> None:
    token = forger.token(private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048))

    assert_revocation_ok(revoke(client, token))

    with sessions() as session:
        assert session.scalars(select(RevokedAccessToken)).all() == []


# --- refresh tokens --------------------------------------------------------------------------


def test_revoked_refresh_token_can_no_longer_be_used(
    client: TestClient, user: dict[str, Any]
) -> None:
    refresh_token = alice_tokens(client)["refresh_token"]

    assert_revocation_ok(revoke(client, refresh_token, token_type_hint="refresh_token"))

    assert_oauth_error(
        refresh_grant(client, refresh_token), 400, "invalid_grant", INVALID_REFRESH_TOKEN
    )


def test_revoking_a_refresh_token_hinted_as_access_token_still_revokes_it(
    client: TestClient, user: dict[str, Any]
) -> None:
    refresh_token = alice_tokens(client)["refresh_token"]

    assert_revocation_ok(revoke(client, refresh_token, token_type_hint="access_token"))

    assert_oauth_error(
        refresh_grant(client, refresh_token), 400, "invalid_grant", INVALID_REFRESH_TOKEN
    )


def test_revoking_a_consumed_refresh_token_ends_its_whole_family(
    client: TestClient, user: dict[str, Any]
) -> None:
    first = alice_tokens(client)["refresh_token"]
    rotated = refresh_grant(client, first)
    assert rotated.status_code == 200, rotated.text

    assert_revocation_ok(revoke(client, first))

    second = rotated.json()["refresh_token"]
    assert_oauth_error(refresh_grant(client, second), 400, "invalid_grant", INVALID_REFRESH_TOKEN)


def test_revoking_a_refresh_token_ends_its_session(
    client: TestClient, user: dict[str, Any]
) -> None:
    tokens = alice_tokens(client)
    headers = bearer(tokens["access_token"])
    assert len(client.get("/users/me/sessions", headers=headers).json()) == 1

    assert_revocation_ok(revoke(client, tokens["refresh_token"]))

    assert client.get("/users/me/sessions", headers=headers).json() == []


def test_revoking_a_refresh_token_leaves_the_users_other_sessions_alone(
    client: TestClient, user: dict[str, Any]
) -> None:
    revoked = alice_tokens(client)["refresh_token"]
    other = alice_tokens(client)["refresh_token"]

    assert_revocation_ok(revoke(client, revoked))

    assert refresh_grant(client, other).status_code == 200


def test_revoking_a_refresh_token_twice_is_200_both_times(
    client: TestClient, user: dict[str, Any]
) -> None:
    refresh_token = alice_tokens(client)["refresh_token"]

    assert_revocation_ok(revoke(client, refresh_token))
    assert_revocation_ok(revoke(client, refresh_token))


# --- another client's tokens -----------------------------------------------------------------


def test_public_client_cannot_revoke_another_clients_access_token(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = alice_tokens(client, client_id="mobile-app")["access_token"]

    assert_revocation_ok(revoke(client, token, client_id="web-app"))

    assert me_status(client, token) == 200


def test_public_client_cannot_revoke_another_clients_refresh_token(
    client: TestClient, user: dict[str, Any]
) -> None:
    refresh_token = alice_tokens(client, client_id="mobile-app")["refresh_token"]

    assert_revocation_ok(revoke(client, refresh_token, client_id="web-app"))

    assert refresh_grant(client, refresh_token, client_id="mobile-app").status_code == 200


def test_request_without_client_id_cannot_revoke_a_named_clients_token(
    client: TestClient, user: dict[str, Any]
) -> None:
    # No client_id means the client "public", which is not "mobile-app".
    tokens = alice_tokens(client, client_id="mobile-app")

    assert_revocation_ok(revoke(client, tokens["access_token"]))
    assert_revocation_ok(revoke(client, tokens["refresh_token"]))

    assert me_status(client, tokens["access_token"]) == 200
    assert refresh_grant(client, tokens["refresh_token"], client_id="mobile-app").status_code == 200


def test_confidential_client_cannot_revoke_a_users_public_tokens(
    client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    tokens = alice_tokens(client)
    credentials = basic(rs["client_id"], rs["client_secret"])

    assert_revocation_ok(revoke(client, tokens["access_token"], credentials))
    assert_revocation_ok(revoke(client, tokens["refresh_token"], credentials))

    assert me_status(client, tokens["access_token"]) == 200
    assert refresh_grant(client, tokens["refresh_token"]).status_code == 200


def test_confidential_client_cannot_revoke_another_clients_client_credentials_token(
    client: TestClient, admin_headers: dict[str, str], rs: dict[str, Any]
) -> None:
    other = create_client(client, admin_headers, name="billing")
    token = client_credentials_token(client, other)

    assert_revocation_ok(revoke(client, token, basic(rs["client_id"], rs["client_secret"])))

    assert is_active(client, rs, token)


def test_public_client_cannot_revoke_a_confidential_clients_token(
    client: TestClient, rs: dict[str, Any]
) -> None:
    token = client_credentials_token(client, rs)

    assert_revocation_ok(revoke(client, token))

    assert is_active(client, rs, token)


# --- unknown tokens and bad requests ---------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [secrets.token_urlsafe(32), "garbage", "a.b.c", "x" * 9000],
    ids=["random-refresh-token", "word", "jwt-shaped", "huge"],
)
def test_revoking_an_unknown_token_is_200(client: TestClient, token: str) -> None:
    assert_revocation_ok(revoke(client, token))


def test_revocation_without_token_is_400_invalid_request(client: TestClient) -> None:
    response = client.post(REVOKE_URL, data={"token_type_hint": "access_token"})

    assert_oauth_error(response, 400, "invalid_request", "Missing parameter: token")


def test_revocation_with_an_unknown_token_type_hint_is_400_unsupported_token_type(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = revoke(client, token, token_type_hint="id_token")

    assert_oauth_error(response, 400, "unsupported_token_type", "Unknown token_type_hint: id_token")


def test_revocation_with_an_unknown_token_type_hint_revokes_nothing(
    client: TestClient, user: dict[str, Any]
) -> None:
    tokens = alice_tokens(client)

    assert revoke(client, tokens["access_token"], token_type_hint="id_token").status_code == 400
    assert revoke(client, tokens["refresh_token"], token_type_hint="id_token").status_code == 400

    assert me_status(client, tokens["access_token"]) == 200
    assert refresh_grant(client, tokens["refresh_token"]).status_code == 200


def test_revocation_with_a_json_body_is_400_invalid_request(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = client.post(REVOKE_URL, json={"token": token})

    assert_oauth_error(response, 400, "invalid_request")
    assert me_status(client, token) == 200


def test_revocation_with_the_token_in_the_query_string_is_400_invalid_request(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = client.post(REVOKE_URL, params={"token": token}, data={"token": token})

    assert_oauth_error(response, 400, "invalid_request")
    assert me_status(client, token) == 200


def test_revocation_by_get_is_405(client: TestClient) -> None:
    assert client.get(REVOKE_URL).status_code == 405


def test_revocation_with_a_wrong_client_secret_is_401_invalid_client(
    client: TestClient, rs: dict[str, Any]
) -> None:
    token = client_credentials_token(client, rs)

    response = revoke(client, token, basic(rs["client_id"], "wrong-secret"))

    assert_oauth_error(response, 401, "invalid_client", "Client authentication failed")
    assert response.headers["www-authenticate"] == 'Basic realm="authsvc"'
    assert is_active(client, rs, token)


def test_confidential_client_naming_itself_without_its_secret_is_401_invalid_client(
    client: TestClient, rs: dict[str, Any]
) -> None:
    token = client_credentials_token(client, rs)

    response = revoke(client, token, client_id=rs["client_id"])

    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="authsvc"'
    assert is_active(client, rs, token)


def test_unregistered_client_sending_a_secret_is_401_invalid_client(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = alice_tokens(client)["access_token"]

    response = revoke(client, token, client_id="public", client_secret="anything")

    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="authsvc"'
    assert me_status(client, token) == 200


def test_revocation_with_basic_and_post_credentials_at_once_is_400_invalid_request(
    client: TestClient, rs: dict[str, Any]
) -> None:
    token = client_credentials_token(client, rs)

    response = revoke(
        client,
        token,
        basic(rs["client_id"], rs["client_secret"]),
        client_secret=rs["client_secret"],
    )

    assert_oauth_error(response, 400, "invalid_request")
    assert is_active(client, rs, token)

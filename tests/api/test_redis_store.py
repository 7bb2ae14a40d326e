"""AUTHSVC_REDIS_URL: the denylist and the rate-limit counters live in Redis.

Redis down while configured fails closed: every request that needs a revocation check or a
counter answers 503 ``temporarily_unavailable`` (never a silent accept), WebSockets close with
1013, and ``/readyz`` says which dependency is missing. The "up" half needs the Redis on
127.0.0.1:6379; it is skipped where none answers, unless ``AUTHSVC_REQUIRE_REDIS=1``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.security.keys import SigningKey
from authsvc.security.tokens import AccessTokenSigner, build_access_token_claims
from tests.helpers import (
    ADMIN_PASSWORD,
    AUDIENCE,
    ISSUER,
    USER_PASSWORD,
    access_token_for,
    assert_invalid_token,
    bearer,
    eventually,
    within_one_window,
)
from tests.live_server import REQUIRE_REDIS, redis_answers

DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def live_redis_url() -> str:
    if not redis_answers():
        if REQUIRE_REDIS:
            pytest.fail("AUTHSVC_REQUIRE_REDIS=1 but no Redis answers on 127.0.0.1:6379")
        pytest.skip("no Redis on 127.0.0.1:6379")
    return f"redis://127.0.0.1:6379/{random.randint(1, 15)}"


@pytest.fixture
def dead_redis_client(
    make_settings: Callable[..., Settings], migrated: None
) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(redis_url=DEAD_REDIS))) as client:
        yield client


def signed_token(signing_key: SigningKey, user: dict[str, Any], scopes: list[str]) -> str:
    claims = build_access_token_claims(
        issuer=ISSUER,
        audience=AUDIENCE,
        subject=user["id"],
        client_id="public",
        scopes=scopes,
        ttl=300,
        extra={"preferred_username": user["username"]},
    )
    return AccessTokenSigner(signing_key).sign(claims)


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"] == "5"


def test_dead_redis_makes_a_protected_route_503_not_an_accept(
    dead_redis_client: TestClient, user: dict[str, Any], signing_key: SigningKey
) -> None:
    token = signed_token(signing_key, user, [])
    assert_unavailable(dead_redis_client.get("/users/me", headers=bearer(token)))


def test_dead_redis_makes_forward_auth_503(
    dead_redis_client: TestClient, user: dict[str, Any], signing_key: SigningKey
) -> None:
    token = signed_token(signing_key, user, [])
    assert_unavailable(dead_redis_client.get("/auth/verify", headers=bearer(token)))


def test_dead_redis_makes_the_token_endpoint_503(
    dead_redis_client: TestClient, user: dict[str, Any]
) -> None:
    response = dead_redis_client.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": "alice", "password": USER_PASSWORD},
    )
    assert_unavailable(response)


def test_dead_redis_is_reported_by_readyz(dead_redis_client: TestClient) -> None:
    response = dead_redis_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == "unavailable"


def test_dead_redis_closes_the_audit_stream_with_1013(
    dead_redis_client: TestClient, admin: dict[str, Any], signing_key: SigningKey
) -> None:
    token = signed_token(signing_key, admin, ["admin"])
    with (
        dead_redis_client.websocket_connect(
            "/admin/audit/stream", headers=bearer(token)
        ) as websocket,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        websocket.receive_json()
    assert closed.value.code == 1013


def test_revocation_in_redis_is_seen_by_another_app_on_the_same_redis(
    make_settings: Callable[..., Settings],
    migrated: None,
    user: dict[str, Any],
    live_redis_url: str,
) -> None:
    settings = make_settings(redis_url=live_redis_url)
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        token = access_token_for(first, user)
        assert second.get("/users/me", headers=bearer(token)).status_code == 200
        revoked = first.post("/oauth2/revoke", data={"token": token, "client_id": "public"})
        assert revoked.status_code == 200
        # The second app keeps its answer for auth_cache_ttl (0.5 s), inside the 1 s bound.
        assert eventually(lambda: second.get("/users/me", headers=bearer(token)).status_code == 401)
        assert_invalid_token(
            second.get("/users/me", headers=bearer(token)), "The access token was revoked"
        )


def test_failure_counts_in_redis_are_shared_by_apps(
    make_settings: Callable[..., Settings],
    migrated: None,
    admin: dict[str, Any],
    live_redis_url: str,
) -> None:
    # A client address of this test alone, so runs sharing the Redis do not add up.
    address = f"2001:db8:{random.randint(1, 0xFFFF):x}::1"
    settings = make_settings(redis_url=live_redis_url, rate_limit_failures=2)
    within_one_window(settings.rate_limit_window, needed=3)
    with (
        TestClient(create_app(settings), client=(address, 40000)) as first,
        TestClient(create_app(settings), client=(address, 40001)) as second,
    ):
        wrong = {"grant_type": "password", "username": "nobody", "password": "x" * 9}
        assert first.post("/oauth2/token", data=wrong).status_code == 400
        assert second.post("/oauth2/token", data=wrong).status_code == 400
        right = {
            "grant_type": "password",
            "username": admin["username"],
            "password": ADMIN_PASSWORD,
        }
        limited = first.post("/oauth2/token", data=right)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60

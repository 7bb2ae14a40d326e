"""Concurrent refreshes of one refresh token: exactly one wins (RFC 6749 §6, RFC 9700 §4.14.2).

The others are reuse by definition and get ``invalid_grant`` (and revoke the family, by design);
none may get a 500 or a 503. Raced against a real ``authsvc serve`` over HTTP, and straight
through ``SessionService.rotate`` from threads, on SQLite and, when
``AUTHSVC_TEST_DATABASE_URL`` is set, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.models import User
from authsvc.services.sessions import RefreshTokenError, Rotation, SessionService
from tests.live_server import (
    SERVER_DATABASES,
    Server,
    database_environment,
    generated_admin_password,
    server_factory,
)

# Read at import: the conftest's autouse fixture removes AUTHSVC_* variables during tests.
TEST_DATABASE_URL = os.environ.get("AUTHSVC_TEST_DATABASE_URL")
RACERS = 20
CLIENT_ID = "public"
INVALID_REFRESH_TOKEN = {"error": "invalid_grant", "error_description": "Invalid refresh token"}

DATABASES = SERVER_DATABASES


# --- against a real server ---------------------------------------------------------------------


@pytest.fixture(scope="module", params=DATABASES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server per database for the module; each test races a refresh token of its own."""
    with (
        database_environment(request.param, "race_") as database_env,
        server_factory(tmp_path_factory.mktemp("race") / "srv", database_env) as factory,
    ):
        yield factory.start()


async def _race(base_url: str, refresh_token: str) -> list[httpx.Response]:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    limits = httpx.Limits(max_connections=RACERS, max_keepalive_connections=RACERS)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        return list(
            await asyncio.gather(*(client.post("/oauth2/token", data=form) for _ in range(RACERS)))
        )


def race_refreshes(server: Server, refresh_token: str) -> list[httpx.Response]:
    """POST the same refresh token ``RACERS`` times at once; the responses, in no order."""
    return asyncio.run(_race(server.base_url, refresh_token))


def admin_refresh_token(server: Server) -> str:
    token: str = server.login("admin", generated_admin_password(server))["refresh_token"]
    return token


def describe(responses: list[httpx.Response]) -> str:
    return "\n".join(f"{response.status_code} {response.text}" for response in responses)


def test_concurrent_refreshes_over_http_have_exactly_one_winner(server: Server) -> None:
    responses = race_refreshes(server, admin_refresh_token(server))

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 1, 400: RACERS - 1}, describe(responses) + "\n" + server.stderr


def test_concurrent_refresh_losers_get_invalid_grant(server: Server) -> None:
    responses = race_refreshes(server, admin_refresh_token(server))

    losers = [response for response in responses if response.status_code != 200]
    assert len(losers) == RACERS - 1, describe(responses)
    for response in losers:
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        assert response.json() == INVALID_REFRESH_TOKEN


def test_concurrent_refresh_winner_gets_a_working_access_token(server: Server) -> None:
    responses = race_refreshes(server, admin_refresh_token(server))

    [winner] = [response for response in responses if response.status_code == 200]
    body = winner.json()
    assert body["token_type"] == "Bearer"
    me = server.get("/users/me", body["access_token"])
    assert me.status_code == 200
    assert me.json()["username"] == "admin"


def test_concurrent_refresh_losers_revoke_the_winners_refresh_token(server: Server) -> None:
    responses = race_refreshes(server, admin_refresh_token(server))
    [winner] = [response for response in responses if response.status_code == 200]

    response = httpx.post(
        f"{server.base_url}/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": winner.json()["refresh_token"]},
        timeout=10,
    )

    assert response.status_code == 400
    assert response.json() == INVALID_REFRESH_TOKEN


# --- straight through the service --------------------------------------------------------------


@pytest.fixture
def sessions(settings: Settings, migrated: None) -> Iterator[sessionmaker[Session]]:
    engine = build_engine(settings)
    yield build_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def started(user: dict[str, Any], sessions: sessionmaker[Session], settings: Settings) -> str:
    """A fresh refresh token of ``user`` for the client ``CLIENT_ID``."""
    owner = uuid.UUID(user["id"])
    with sessions() as session:
        stored = session.get(User, owner)
        assert stored is not None
        return SessionService(session, settings.refresh_token_ttl).start(
            owner, CLIENT_ID, [], password_hash=stored.password_hash
        )


def race_rotations(
    sessions: sessionmaker[Session], settings: Settings, token: str
) -> list[Rotation | BaseException]:
    """``RACERS`` threads, each with its own Session, rotate ``token`` at once."""
    barrier = threading.Barrier(RACERS)

    def rotate(_: int) -> Rotation | BaseException:
        barrier.wait(timeout=30)
        try:
            with sessions() as session:
                return SessionService(session, settings.refresh_token_ttl).rotate(
                    token, CLIENT_ID, None
                )
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        return list(pool.map(rotate, range(RACERS)))


def test_concurrent_rotations_have_exactly_one_winner(
    started: str, sessions: sessionmaker[Session], settings: Settings
) -> None:
    outcomes = race_rotations(sessions, settings, started)

    winners = [outcome for outcome in outcomes if isinstance(outcome, Rotation)]
    unexpected = [
        outcome for outcome in outcomes if not isinstance(outcome, Rotation | RefreshTokenError)
    ]
    assert unexpected == []
    assert len(winners) == 1


def test_concurrent_rotation_losers_are_refused_as_refresh_token_errors(
    started: str, sessions: sessionmaker[Session], settings: Settings
) -> None:
    outcomes = race_rotations(sessions, settings, started)

    losers = [outcome for outcome in outcomes if not isinstance(outcome, Rotation)]
    assert len(losers) == RACERS - 1
    assert all(isinstance(outcome, RefreshTokenError) for outcome in losers), losers


def test_concurrent_rotation_winner_returns_the_user_and_a_new_token(
    started: str,
    user: dict[str, Any],
    sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    outcomes = race_rotations(sessions, settings, started)

    [winner] = [outcome for outcome in outcomes if isinstance(outcome, Rotation)]
    assert winner.user_id == uuid.UUID(user["id"])
    assert winner.client_id == CLIENT_ID
    assert winner.refresh_token != started

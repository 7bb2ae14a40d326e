"""Fixtures: every test gets its own database, keys, settings and app.

SQLite by default: a migrated template database is copied into each test's tmp_path. When
``AUTHSVC_TEST_DATABASE_URL`` names a PostgreSQL database, each test gets a schema of its own
(random name, dropped afterwards), so concurrent runs on one server never collide.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.migrate import upgrade
from authsvc.security.keys import SigningKey, generate_private_key, load_keys
from authsvc.security.passwords import PasswordHasher
from authsvc.services.users import NewUser, UserService
from tests.helpers import (
    ADMIN_PASSWORD,
    AUDIENCE,
    ISSUER,
    TEST_BCRYPT_ROUNDS,
    UNREACHABLE_POSTGRES,
    USER_PASSWORD,
    Forger,
    access_token_for,
    bearer,
    private_schema,
    user_claims,
)

# Re-exported: older modules import it from here; new code imports it from tests.helpers.
from tests.helpers import password_login as password_login

TEST_DATABASE_URL = os.environ.get("AUTHSVC_TEST_DATABASE_URL")


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AUTHSVC_* variable or .env file of the developer's may reach a test's settings."""
    for name in list(os.environ):
        if name.startswith("AUTHSVC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "authsvc.db"
    settings = Settings(_env_file=None, database_url=f"sqlite:///{path}")  # type: ignore[call-arg]
    engine = build_engine(settings)
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def _rsa_pem(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """RSA key generation takes ~100 ms; generate once and give each test a copy."""
    from cryptography.hazmat.primitives import serialization

    key = generate_private_key("RS256")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture
def database_url(tmp_path: Path, _sqlite_template: Path) -> Iterator[str]:
    if not TEST_DATABASE_URL:
        path = tmp_path / "authsvc.db"
        shutil.copyfile(_sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    with private_schema(TEST_DATABASE_URL, "t_") as url:
        yield url


@pytest.fixture
def keys_dir(tmp_path: Path, _rsa_pem: bytes) -> Path:
    path = tmp_path / "keys"
    path.mkdir(mode=0o700)
    key_file = path / "20260101T000000000000Z-test.pem"
    key_file.write_bytes(_rsa_pem)
    key_file.chmod(0o600)
    return path


@pytest.fixture
def make_settings(database_url: str, keys_dir: Path) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "keys_dir": keys_dir,
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "bcrypt_rounds": TEST_BCRYPT_ROUNDS,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return factory


@pytest.fixture(params=["postgres-refused", "sqlite-missing-dir"])
def unreachable_settings(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings], tmp_path: Path
) -> Settings:
    """Settings whose database cannot be reached: a refused PostgreSQL port, or a SQLite file
    in a directory that does not exist."""
    if request.param == "postgres-refused":
        return make_settings(database_url=UNREACHABLE_POSTGRES, db_connect_timeout=1)
    return make_settings(database_url=f"sqlite:///{tmp_path}/no-such-dir/authsvc.db")


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def signing_key(keys_dir: Path) -> SigningKey:
    """The one RSA key in ``keys_dir``, which the app under test signs with."""
    keys = load_keys(keys_dir)
    assert len(keys) == 1
    return keys[0]


@pytest.fixture
def migrated(database_url: str, settings: Settings) -> None:
    if TEST_DATABASE_URL:
        engine = build_engine(settings)
        upgrade(engine)
        engine.dispose()


@pytest.fixture
def app(settings: Settings, migrated: None) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def make_user(settings: Settings, migrated: None) -> Iterator[Callable[..., dict[str, Any]]]:
    """Create a user straight through the service layer; returns id, username, password."""
    hasher = PasswordHasher(settings.bcrypt_rounds)
    engine = build_engine(settings)
    sessions = build_sessionmaker(engine)

    def factory(
        username: str = "alice",
        password: str = USER_PASSWORD,
        scopes: tuple[str, ...] = (),
        is_active: bool = True,
        password_hash: str | None = None,
    ) -> dict[str, Any]:
        with sessions() as session:
            user = UserService(session).create(
                NewUser(
                    username=username,
                    password_hash=password_hash or hasher.hash(password),
                    scopes=scopes,
                    is_active=is_active,
                )
            )
            return {"id": str(user.id), "username": user.username, "password": password}

    yield factory
    engine.dispose()


@pytest.fixture
def admin(make_user: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return make_user("root-admin", ADMIN_PASSWORD, scopes=("admin",))


@pytest.fixture
def admin_headers(client: TestClient, admin: dict[str, Any]) -> dict[str, str]:
    return bearer(access_token_for(client, admin))


@pytest.fixture
def user(make_user: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return make_user("alice", USER_PASSWORD)


@pytest.fixture
def user_headers(client: TestClient, user: dict[str, Any]) -> dict[str, str]:
    return bearer(access_token_for(client, user))


@pytest.fixture
def forger(signing_key: SigningKey, user: dict[str, Any]) -> Forger:
    """Forges tokens for ``user`` signed with the app's own key (see ``tests.helpers.Forger``)."""
    return Forger(signing_key, lambda: user_claims(user))

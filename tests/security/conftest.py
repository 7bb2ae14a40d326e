"""Apps configured for the other signing algorithms, shared by the JWT tests here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.security.keys import SigningKey, load_keys
from tests.helpers import HS256_SECRET, access_token_for, bearer


def _working_token(client: TestClient, user: dict[str, Any]) -> str:
    token = access_token_for(client, user)
    assert client.get("/users/me", headers=bearer(token)).status_code == 200
    return token


@pytest.fixture
def es256_keys_dir(tmp_path: Path) -> Path:
    path = tmp_path / "es256-keys"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def es256_client(
    make_settings: Callable[..., Settings], es256_keys_dir: Path, migrated: None
) -> Iterator[TestClient]:
    """An app configured for ES256; it generates its P-256 key in an empty keys directory."""
    settings = make_settings(jwt_algorithm="ES256", keys_dir=es256_keys_dir)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def es256_token(es256_client: TestClient, user: dict[str, Any]) -> str:
    return _working_token(es256_client, user)


@pytest.fixture
def es256_key(es256_client: TestClient, es256_keys_dir: Path) -> SigningKey:
    """The P-256 key the ES256 app generated at startup and signs with."""
    key = load_keys(es256_keys_dir)[0]
    assert isinstance(key.private_key, ec.EllipticCurvePrivateKey)
    return key


@pytest.fixture
def hs256_client(make_settings: Callable[..., Settings], migrated: None) -> Iterator[TestClient]:
    settings = make_settings(jwt_algorithm="HS256", jwt_secret=HS256_SECRET)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def hs256_token(hs256_client: TestClient, user: dict[str, Any]) -> str:
    return _working_token(hs256_client, user)

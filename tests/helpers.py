"""What the test modules share that is not a fixture: settings values, logging in, bearer
headers, a JWT forger, and the assertions for the responses of the token endpoint and of
protected routes. Fixtures that build on these live in ``tests/conftest.py``.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from authsvc.security.keys import SigningKey

# --- the test settings and accounts ------------------------------------------------------------

ISSUER = "http://testserver"
AUDIENCE = "authsvc-test"
TEST_BCRYPT_ROUNDS = 4
ADMIN_PASSWORD = "admin-password-1"
USER_PASSWORD = "user-password-1"
# At least 32 bytes, as RFC 7518 §3.2 asks of an HS256 key.
HS256_SECRET = "x" * 40
UNREACHABLE_POSTGRES = "postgresql+psycopg://nobody@127.0.0.1:1/none"
TOKEN_URL = "/oauth2/token"
# The claims every issued access token must carry, for an independent verifier (PyJWT).
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]
# The public profile of a user, as ``/users/me`` and ``/admin/users`` return it.
USER_FIELDS = {
    "id",
    "username",
    "email",
    "full_name",
    "is_active",
    "scopes",
    "created_at",
    "updated_at",
}


@contextmanager
def private_schema(database_url: str, prefix: str) -> Iterator[str]:
    """A PostgreSQL schema of its own (random name, dropped afterwards), so concurrent runs on
    one server never collide; yields ``database_url`` with its search_path set to the schema."""
    schema = f"{prefix}{uuid.uuid4().hex}"
    admin_engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin_engine.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin_engine.dispose()


# --- logging in ------------------------------------------------------------------------------


def token_request(
    client: TestClient, username: str, password: str, **extra: str
) -> httpx2.Response:
    """POST a password grant and return the response, whatever it is."""
    return client.post(
        TOKEN_URL,
        data={"grant_type": "password", "username": username, "password": password, **extra},
    )


def password_login(
    client: TestClient, username: str, password: str, **extra: str
) -> dict[str, Any]:
    """A password grant that must succeed; returns the token response body."""
    response = token_request(client, username, password, **extra)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def access_token_for(client: TestClient, user: dict[str, Any]) -> str:
    """A fresh access token for a user made by the ``make_user`` fixture."""
    token: str = password_login(client, user["username"], user["password"])["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login_headers(client: TestClient, username: str, password: str, **extra: str) -> dict[str, str]:
    """Bearer headers with a fresh access token for ``username``."""
    return bearer(password_login(client, username, password, **extra)["access_token"])


# --- response assertions ---------------------------------------------------------------------

INVALID_TOKEN = "The access token is invalid"
EXPIRED_TOKEN = "The access token expired"
UNKNOWN_USER = "The user is unknown or disabled"
INSUFFICIENT_SCOPE = "The access token does not grant the required scope"


def assert_no_store(response: httpx2.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


def assert_oauth_error(
    response: httpx2.Response, status: int, error: str, description: str | None = None
) -> None:
    """An RFC 6749 §5.2 error: JSON ``error`` and ``error_description`` only, never cached."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert_no_store(response)
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    if description is not None:
        assert body["error_description"] == description


def assert_not_authenticated(response: httpx2.Response) -> None:
    """RFC 6750 §3.1: a request without a token gets a bare challenge and no error code."""
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Not authenticated"}
    assert response.headers["www-authenticate"] == "Bearer"
    assert_no_store(response)


def assert_invalid_token(response: httpx2.Response, description: str = INVALID_TOKEN) -> None:
    """RFC 6750 §3.1 ``invalid_token``, with the same description in body and challenge."""
    assert_oauth_error(response, 401, "invalid_token", description)
    assert response.headers["www-authenticate"] == (
        f'Bearer error="invalid_token", error_description="{description}"'
    )


def assert_insufficient_scope(response: httpx2.Response, scope: str = "admin") -> None:
    """RFC 6750 §3.1 ``insufficient_scope``, naming the missing ``scope`` in body and challenge."""
    assert response.status_code == 403, response.text
    assert response.json() == {
        "error": "insufficient_scope",
        "error_description": INSUFFICIENT_SCOPE,
        "scope": scope,
    }
    assert response.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", error_description="{INSUFFICIENT_SCOPE}", '
        f'scope="{scope}"'
    )
    assert_no_store(response)


def assert_no_secrets(response: httpx2.Response) -> None:
    assert "password" not in response.text
    assert "$bcrypt" not in response.text


# --- JWTs built by hand ----------------------------------------------------------------------

JsonText = str | bytes | dict[str, Any] | list[Any]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def encode_segment(value: JsonText) -> str:
    """Raw bytes or JSON text are encoded as given; dicts and lists are dumped first."""
    if isinstance(value, bytes):
        return b64url(value)
    if isinstance(value, str):
        return b64url(value.encode("utf-8"))
    return b64url(json.dumps(value).encode("utf-8"))


def rs256_sign(private_key: rsa.RSAPrivateKey, signing_input: str) -> str:
    signature = private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return b64url(signature)


def user_claims(user: dict[str, Any]) -> dict[str, Any]:
    """The claims authsvc issues to ``user`` under the test settings, valid from now."""
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": user["id"],
        "aud": AUDIENCE,
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": uuid.uuid4().hex,
        "client_id": "public",
        "scope": "",
        "preferred_username": user["username"],
    }


class Forger:
    """Builds RS256 tokens from arbitrary header and payload text, signed with an RSA key.

    Nothing in authsvc helps build the tokens it is then asked to refuse: headers and payloads
    are dicts, JSON text or raw bytes, encoded and signed here.
    """

    def __init__(self, key: SigningKey, base_claims: Callable[[], dict[str, Any]]) -> None:
        assert isinstance(key.private_key, rsa.RSAPrivateKey)
        self.private_key: rsa.RSAPrivateKey = key.private_key
        self.kid = key.kid
        self._base_claims = base_claims

    def header(self, *, drop: tuple[str, ...] = (), **overrides: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": "RS256", "kid": self.kid, "typ": "at+jwt"}
        header.update(overrides)
        for name in drop:
            del header[name]
        return header

    def claims(self, *, drop: tuple[str, ...] = (), **overrides: Any) -> dict[str, Any]:
        claims = self._base_claims()
        claims.update(overrides)
        for name in drop:
            del claims[name]
        return claims

    def token(
        self,
        header: JsonText | None = None,
        payload: JsonText | None = None,
        *,
        private_key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        signing_input = (
            encode_segment(self.header() if header is None else header)
            + "."
            + encode_segment(self.claims() if payload is None else payload)
        )
        return signing_input + "." + rs256_sign(private_key or self.private_key, signing_input)

    def with_claim_text(self, name: str, json_text: str) -> str:
        """A signed token whose claim ``name`` is the literal JSON text given."""
        claims = self.claims(drop=(name,))
        payload = json.dumps(claims)[:-1] + f', "{name}": {json_text}' + "}"
        return self.token(payload=payload)


def pyjwt_decode(token: str, jwk: dict[str, Any], algorithm: str = "RS256") -> dict[str, Any]:
    """Verify ``token`` with PyJWT, which shares no code with authsvc, given only the JWK."""
    claims: dict[str, Any] = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=[algorithm],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": REQUIRED_CLAIMS},
    )
    return claims


# --- the console script ------------------------------------------------------------------------


def authsvc_command() -> list[str]:
    """The installed console script beside this interpreter, else on PATH, else the module."""
    sibling = Path(sys.executable).parent / "authsvc"
    if sibling.exists():
        return [str(sibling)]
    found = shutil.which("authsvc")
    if found:
        return [found]
    return [sys.executable, "-c", "from authsvc.cli import main; main()"]


def pem_files(keys_dir: Path) -> list[Path]:
    return sorted(keys_dir.glob("*.pem"))


# --- OAuth2 clients and grants ---------------------------------------------------------------


def basic(client_id: str, secret: str) -> dict[str, str]:
    """A client_secret_basic ``Authorization`` header (parts joined as-is, not form-encoded)."""
    credentials = base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii")
    return {"Authorization": f"Basic {credentials}"}


def create_client(
    client: TestClient, admin_headers: dict[str, str], name: str = "rs", **body: Any
) -> dict[str, Any]:
    """Register a client through POST /admin/clients (client_credentials unless ``grant_types``
    says otherwise); returns its creation response body, secret included."""
    response = client.post(
        "/admin/clients",
        headers=admin_headers,
        json={"name": name, "grant_types": ["client_credentials"], **body},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def client_credentials_token(client: TestClient, registered: dict[str, Any]) -> str:
    """A client_credentials access token for a confidential client from ``create_client``."""
    response = client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials"},
        headers=basic(registered["client_id"], registered["client_secret"]),
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def alice_tokens(client: TestClient, **extra: str) -> dict[str, Any]:
    """The token response of a password grant for the seeded user ``alice``."""
    return password_login(client, "alice", USER_PASSWORD, **extra)


def refresh_grant(client: TestClient, refresh_token: str, **extra: str) -> httpx2.Response:
    """POST a refresh_token grant (no client_id unless given) and return the response."""
    return client.post(
        TOKEN_URL, data={"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    )


def eventually(check: Callable[[], bool], within: float = 1.0) -> bool:
    """Poll ``check`` until it holds or ``within`` seconds pass: what other replicas (or
    other apps on one database) see follows within the 1 s bound, not at once."""
    deadline = time.monotonic() + within
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class FakeClock:
    """A clock that stands still until a test moves ``now``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def within_one_window(window: int, needed: float) -> None:
    """Wait, if need be, until ``needed`` seconds fit before the current fixed window ends.

    Failure counts are per fixed window (``now // window``); failures that straddle a window
    boundary are counted in two windows and never reach the limit, which would make a test
    of the limit fail once in a while for no fault of the code.
    """
    left = window - time.time() % window
    if left < needed:
        time.sleep(left + 0.05)


# Set on every response by the request log; they differ from one response to the next.
PER_REQUEST_HEADERS = frozenset({"x-request-id", "x-process-time"})


def stable_headers(response: httpx2.Response) -> list[tuple[str, str]]:
    """The response's headers, sorted, without those that differ per request by design."""
    return sorted(
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in PER_REQUEST_HEADERS and name.lower() != "date"
    )

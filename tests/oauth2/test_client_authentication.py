"""Client authentication at POST /oauth2/token (RFC 6749 §2.3), seen through the password grant.

Confidential clients authenticate with ``client_secret_basic`` or ``client_secret_post``; an
unregistered ``client_id`` without a secret is a public client unless registration is required;
a registered client is held to its grant types and scopes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote_plus

import httpx2
import pytest
from fastapi.testclient import TestClient
from jose import jwt

from authsvc.app import create_app
from authsvc.config import Settings
from tests.helpers import (
    TOKEN_URL,
    USER_PASSWORD,
    assert_no_store,
    assert_oauth_error,
    create_client,
)

BASIC_CHALLENGE = 'Basic realm="authsvc"'
CLIENT_AUTH_FAILED = "Client authentication failed"


# --- helpers -------------------------------------------------------------------------------


def basic_header(client_id: str, secret: str, *, encode: Callable[[str], str] = quote_plus) -> str:
    """RFC 6749 §2.3.1: each part form-urlencoded, then joined with ':' and base64-encoded."""
    raw = f"{encode(client_id)}:{encode(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def percent_encode_every_byte(value: str) -> str:
    return "".join(f"%{byte:02X}" for byte in value.encode("utf-8"))


def password_form(user: dict[str, Any], **extra: str) -> dict[str, str]:
    return {
        "grant_type": "password",
        "username": user["username"],
        "password": user["password"],
        **extra,
    }


def token_post(
    client: TestClient, data: dict[str, str], authorization: str | None = None
) -> httpx2.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return client.post(TOKEN_URL, data=data, headers=headers)


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.get_unverified_claims(token)
    return claims


def assert_invalid_client(response: httpx2.Response, description: str | None = None) -> None:
    """RFC 6749 §5.2: 401 invalid_client naming the Basic scheme, never cached."""
    assert_oauth_error(response, 401, "invalid_client", description)
    assert response.headers["www-authenticate"] == BASIC_CHALLENGE
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert "access_token" not in response.text


def assert_token_for(response: httpx2.Response, client_id: str) -> dict[str, Any]:
    """A successful token response whose access token names ``client_id``; returns the body."""
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body: dict[str, Any] = response.json()
    assert claims_of(body["access_token"])["client_id"] == client_id
    return body


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def register(client: TestClient, admin_headers: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """Register a client through the admin API; returns its creation response body."""

    def factory(
        grant_types: tuple[str, ...] = ("password", "refresh_token"),
        scopes: tuple[str, ...] = (),
        confidential: bool = True,
    ) -> dict[str, Any]:
        return create_client(
            client,
            admin_headers,
            "app",
            grant_types=list(grant_types),
            scopes=list(scopes),
            confidential=confidential,
        )

    return factory


@pytest.fixture
def confidential(register: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return register()


@pytest.fixture
def public(register: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return register(confidential=False)


@pytest.fixture
def scoped_user(
    client: TestClient,
    admin_headers: dict[str, str],
    make_user: Callable[..., dict[str, Any]],
) -> dict[str, Any]:
    """A user holding ``read`` and ``write``."""
    for name in ("read", "write"):
        response = client.post("/admin/scopes", headers=admin_headers, json={"name": name})
        assert response.status_code == 201, response.text
    return make_user("scoped", USER_PASSWORD, scopes=("read", "write"))


@pytest.fixture
def strict_client(
    make_settings: Callable[..., Settings], migrated: None, client: TestClient
) -> Iterator[TestClient]:
    """An app on the same database that requires registered clients.

    Depends on ``client`` so fixtures that register clients through the default app (whose
    admin can still log in without a client) can run first.
    """
    app = create_app(make_settings(require_registered_clients=True))
    with TestClient(app) as test_client:
        yield test_client


# --- client_secret_basic ---------------------------------------------------------------------


def test_client_secret_basic_authenticates_confidential_client(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(
        client,
        password_form(user),
        basic_header(confidential["client_id"], confidential["client_secret"]),
    )

    assert_token_for(response, confidential["client_id"])


def test_client_secret_basic_with_matching_client_id_in_body_is_accepted(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(
        client,
        password_form(user, client_id=confidential["client_id"]),
        basic_header(confidential["client_id"], confidential["client_secret"]),
    )

    assert_token_for(response, confidential["client_id"])


def test_client_secret_basic_with_different_client_id_in_body_is_invalid_request(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(
        client,
        password_form(user, client_id="someone-else"),
        basic_header(confidential["client_id"], confidential["client_secret"]),
    )

    assert_oauth_error(response, 400, "invalid_request")


def test_client_secret_basic_scheme_name_is_case_insensitive(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    header = basic_header(confidential["client_id"], confidential["client_secret"])

    response = token_post(client, password_form(user), "bAsIc" + header.removeprefix("Basic"))

    assert_token_for(response, confidential["client_id"])


def test_client_secret_basic_with_quote_plus_applied_still_authenticates(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    header = basic_header(
        confidential["client_id"], confidential["client_secret"], encode=quote_plus
    )

    assert_token_for(token_post(client, password_form(user), header), confidential["client_id"])


def test_client_secret_basic_parts_are_form_urldecoded_before_comparison(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    # Every byte percent-encoded: only a server that form-urldecodes both parts can match them.
    header = basic_header(
        confidential["client_id"],
        confidential["client_secret"],
        encode=percent_encode_every_byte,
    )

    assert_token_for(token_post(client, password_form(user), header), confidential["client_id"])


def test_client_secret_basic_percent_encoded_colon_belongs_to_the_client_id(
    client: TestClient, user: dict[str, Any]
) -> None:
    # An unregistered public client whose id holds ':' and ' ' can still use Basic: the
    # separator is the first raw ':', and '%3A' / '+' decode inside the id.
    response = token_post(client, password_form(user), basic_header("my app:v2", ""))

    assert_token_for(response, "my app:v2")


def test_client_secret_basic_plus_decodes_to_space(
    client: TestClient, user: dict[str, Any]
) -> None:
    response = token_post(client, password_form(user), basic_header("my+app", "", encode=str))

    assert_token_for(response, "my app")


def test_client_secret_basic_with_wrong_secret_is_401_invalid_client(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(
        client, password_form(user), basic_header(confidential["client_id"], "wrong-secret")
    )

    assert_invalid_client(response, CLIENT_AUTH_FAILED)


def test_client_secret_basic_with_empty_secret_is_401_invalid_client(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(client, password_form(user), basic_header(confidential["client_id"], ""))

    assert_invalid_client(response, CLIENT_AUTH_FAILED)


def test_client_secret_basic_with_secret_of_another_client_is_401_invalid_client(
    client: TestClient, register: Callable[..., dict[str, Any]], user: dict[str, Any]
) -> None:
    first, second = register(), register()

    response = token_post(
        client, password_form(user), basic_header(first["client_id"], second["client_secret"])
    )

    assert_invalid_client(response, CLIENT_AUTH_FAILED)


def test_client_secret_basic_secret_is_case_sensitive(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    secret: str = confidential["client_secret"]
    flipped = secret.swapcase()
    assert flipped != secret

    response = token_post(
        client, password_form(user), basic_header(confidential["client_id"], flipped)
    )

    assert_invalid_client(response, CLIENT_AUTH_FAILED)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Basic !!!not-base64!!!", id="not-base64"),
        pytest.param("Basic " + base64.b64encode(b"no-colon").decode(), id="no-colon"),
        pytest.param("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), id="not-utf8"),
        pytest.param("Bearer some-token", id="bearer-scheme"),
        pytest.param("Digest username=x", id="digest-scheme"),
    ],
)
def test_malformed_client_authorization_is_401_invalid_client(
    client: TestClient, user: dict[str, Any], authorization: str
) -> None:
    assert_invalid_client(token_post(client, password_form(user), authorization))


# --- client_secret_post ----------------------------------------------------------------------


def test_client_secret_post_authenticates_confidential_client(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(
        client,
        password_form(
            user,
            client_id=confidential["client_id"],
            client_secret=confidential["client_secret"],
        ),
    )

    assert_token_for(response, confidential["client_id"])


def test_client_secret_post_with_wrong_secret_is_401_invalid_client(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(
        client,
        password_form(user, client_id=confidential["client_id"], client_secret="wrong-secret"),
    )

    assert_invalid_client(response, CLIENT_AUTH_FAILED)


def test_client_secret_post_without_client_id_is_401_invalid_client(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(client, password_form(user, client_secret=confidential["client_secret"]))

    assert_invalid_client(response)


def test_confidential_client_without_secret_is_401_invalid_client(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(client, password_form(user, client_id=confidential["client_id"]))

    assert_invalid_client(response, CLIENT_AUTH_FAILED)


def test_confidential_client_with_empty_post_secret_is_401_invalid_client(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    # RFC 6749 §3.1: an empty parameter is an omitted one, so this is a missing secret.
    response = token_post(
        client, password_form(user, client_id=confidential["client_id"], client_secret="")
    )

    assert_invalid_client(response, CLIENT_AUTH_FAILED)


def test_invalid_client_is_refused_before_the_password_is_checked(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    form = password_form(user, client_id=confidential["client_id"], client_secret="wrong")
    form["password"] = "not-the-password"

    assert_invalid_client(token_post(client, form), CLIENT_AUTH_FAILED)


# --- one method per request ------------------------------------------------------------------


def test_basic_and_post_secret_together_is_400_invalid_request(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(
        client,
        password_form(
            user,
            client_id=confidential["client_id"],
            client_secret=confidential["client_secret"],
        ),
        basic_header(confidential["client_id"], confidential["client_secret"]),
    )

    assert_oauth_error(response, 400, "invalid_request")
    assert "access_token" not in response.text


def test_basic_and_post_secret_without_body_client_id_is_400_invalid_request(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(
        client,
        password_form(user, client_secret=confidential["client_secret"]),
        basic_header(confidential["client_id"], confidential["client_secret"]),
    )

    assert_oauth_error(response, 400, "invalid_request")


def test_empty_basic_credentials_fall_back_to_client_secret_post(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    # Swagger UI sends "Basic Og==" (":" with no id and no secret) when no client is filled in.
    response = token_post(
        client,
        password_form(
            user,
            client_id=confidential["client_id"],
            client_secret=confidential["client_secret"],
        ),
        "Basic Og==",
    )

    assert_token_for(response, confidential["client_id"])


def test_two_authorization_headers_is_400_invalid_request(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    header = basic_header(confidential["client_id"], confidential["client_secret"])

    response = client.post(
        TOKEN_URL,
        data=password_form(user),
        headers=[("Authorization", header), ("Authorization", header)],
    )

    assert_oauth_error(response, 400, "invalid_request")


# --- unregistered and public clients ---------------------------------------------------------


def test_no_client_at_all_is_the_public_client(client: TestClient, user: dict[str, Any]) -> None:
    body = assert_token_for(token_post(client, password_form(user)), "public")

    assert "refresh_token" in body


def test_unregistered_client_id_without_secret_is_a_public_client(
    client: TestClient, user: dict[str, Any]
) -> None:
    body = assert_token_for(token_post(client, password_form(user, client_id="my-spa")), "my-spa")

    assert "refresh_token" in body


def test_unregistered_client_may_use_its_refresh_token(
    client: TestClient, user: dict[str, Any]
) -> None:
    login = token_post(client, password_form(user, client_id="my-spa")).json()

    response = token_post(
        client,
        {
            "grant_type": "refresh_token",
            "refresh_token": login["refresh_token"],
            "client_id": "my-spa",
        },
    )

    assert_token_for(response, "my-spa")


def test_unregistered_client_id_with_post_secret_is_401_invalid_client(
    client: TestClient, user: dict[str, Any]
) -> None:
    response = token_post(client, password_form(user, client_id="my-spa", client_secret="anything"))

    assert_invalid_client(response, CLIENT_AUTH_FAILED)


def test_unregistered_client_id_with_basic_secret_is_401_invalid_client(
    client: TestClient, user: dict[str, Any]
) -> None:
    response = token_post(client, password_form(user), basic_header("my-spa", "anything"))

    assert_invalid_client(response, CLIENT_AUTH_FAILED)


def test_unregistered_client_may_not_use_client_credentials(client: TestClient) -> None:
    response = token_post(client, {"grant_type": "client_credentials", "client_id": "my-spa"})

    assert_invalid_client(response)


def test_registered_public_client_authenticates_with_client_id_only(
    client: TestClient, public: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(client, password_form(user, client_id=public["client_id"]))

    assert_token_for(response, public["client_id"])


def test_registered_public_client_sending_a_secret_is_401_invalid_client(
    client: TestClient, public: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(
        client, password_form(user, client_id=public["client_id"], client_secret="anything")
    )

    assert_invalid_client(response)


@pytest.mark.parametrize(
    "client_id",
    [pytest.param("x" * 129, id="too-long"), pytest.param("tab\there", id="control-char")],
)
def test_malformed_client_id_is_400_invalid_request(
    client: TestClient, user: dict[str, Any], client_id: str
) -> None:
    response = token_post(client, password_form(user, client_id=client_id))

    assert_oauth_error(response, 400, "invalid_request")


# --- require_registered_clients --------------------------------------------------------------


def test_required_registration_refuses_unregistered_client_id(
    strict_client: TestClient, user: dict[str, Any]
) -> None:
    response = token_post(strict_client, password_form(user, client_id="my-spa"))

    assert_invalid_client(response)


def test_required_registration_refuses_request_without_client(
    strict_client: TestClient, user: dict[str, Any]
) -> None:
    assert_invalid_client(token_post(strict_client, password_form(user)))


def test_required_registration_refuses_refresh_by_unregistered_client(
    client: TestClient, strict_client: TestClient, user: dict[str, Any]
) -> None:
    refresh_token = token_post(client, password_form(user, client_id="my-spa")).json()[
        "refresh_token"
    ]

    response = token_post(
        strict_client,
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "my-spa"},
    )

    assert_invalid_client(response)


def test_required_registration_accepts_registered_public_client(
    strict_client: TestClient, public: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(strict_client, password_form(user, client_id=public["client_id"]))

    assert_token_for(response, public["client_id"])


def test_required_registration_accepts_authenticated_confidential_client(
    strict_client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(
        strict_client,
        password_form(user),
        basic_header(confidential["client_id"], confidential["client_secret"]),
    )

    assert_token_for(response, confidential["client_id"])


# --- grant types -----------------------------------------------------------------------------


def test_registered_client_without_password_grant_is_400_unauthorized_client(
    client: TestClient, register: Callable[..., dict[str, Any]], user: dict[str, Any]
) -> None:
    service = register(grant_types=("client_credentials",))

    response = token_post(
        client,
        password_form(user),
        basic_header(service["client_id"], service["client_secret"]),
    )

    assert_oauth_error(response, 400, "unauthorized_client")
    assert "access_token" not in response.text


def test_public_client_without_password_grant_is_400_unauthorized_client(
    client: TestClient, register: Callable[..., dict[str, Any]], user: dict[str, Any]
) -> None:
    refresher = register(grant_types=("refresh_token",), confidential=False)

    response = token_post(client, password_form(user, client_id=refresher["client_id"]))

    assert_oauth_error(response, 400, "unauthorized_client")


def test_client_without_refresh_grant_gets_no_refresh_token_from_password_grant(
    client: TestClient, register: Callable[..., dict[str, Any]], user: dict[str, Any]
) -> None:
    password_only = register(grant_types=("password",))

    response = token_post(
        client,
        password_form(user),
        basic_header(password_only["client_id"], password_only["client_secret"]),
    )

    body = assert_token_for(response, password_only["client_id"])
    assert "refresh_token" not in body


def test_client_with_refresh_grant_gets_refresh_token_from_password_grant(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    response = token_post(
        client,
        password_form(user),
        basic_header(confidential["client_id"], confidential["client_secret"]),
    )

    assert isinstance(assert_token_for(response, confidential["client_id"])["refresh_token"], str)


def test_client_that_lost_refresh_grant_cannot_refresh(
    client: TestClient,
    admin_headers: dict[str, str],
    public: dict[str, Any],
    user: dict[str, Any],
) -> None:
    refresh_token = token_post(client, password_form(user, client_id=public["client_id"])).json()[
        "refresh_token"
    ]
    client.patch(
        f"/admin/clients/{public['client_id']}",
        headers=admin_headers,
        json={"grant_types": ["password"]},
    )

    response = token_post(
        client,
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": public["client_id"],
        },
    )

    assert_oauth_error(response, 400, "unauthorized_client")


def test_refresh_token_of_one_client_is_refused_to_another(
    client: TestClient, register: Callable[..., dict[str, Any]], user: dict[str, Any]
) -> None:
    owner = register(confidential=False)
    other = register(confidential=False)
    refresh_token = token_post(client, password_form(user, client_id=owner["client_id"])).json()[
        "refresh_token"
    ]

    response = token_post(
        client,
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": other["client_id"],
        },
    )

    assert_oauth_error(response, 400, "invalid_grant")


def test_refresh_by_confidential_client_requires_its_secret(
    client: TestClient, confidential: dict[str, Any], user: dict[str, Any]
) -> None:
    refresh_token = token_post(
        client,
        password_form(user),
        basic_header(confidential["client_id"], confidential["client_secret"]),
    ).json()["refresh_token"]

    response = token_post(
        client,
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": confidential["client_id"],
        },
    )

    assert_invalid_client(response, CLIENT_AUTH_FAILED)


# --- scopes ----------------------------------------------------------------------------------


def test_client_scopes_limit_the_default_password_grant_scope(
    client: TestClient, register: Callable[..., dict[str, Any]], scoped_user: dict[str, Any]
) -> None:
    reader = register(scopes=("read",), confidential=False)

    response = token_post(client, password_form(scoped_user, client_id=reader["client_id"]))

    body = assert_token_for(response, reader["client_id"])
    assert body["scope"] == "read"
    assert claims_of(body["access_token"])["scope"] == "read"


def test_default_scope_is_intersection_of_user_and_client_scopes(
    client: TestClient,
    admin_headers: dict[str, str],
    register: Callable[..., dict[str, Any]],
    scoped_user: dict[str, Any],
) -> None:
    client.post("/admin/scopes", headers=admin_headers, json={"name": "billing"})
    mixed = register(scopes=("write", "billing"), confidential=False)

    response = token_post(client, password_form(scoped_user, client_id=mixed["client_id"]))

    assert assert_token_for(response, mixed["client_id"])["scope"] == "write"


def test_requesting_scope_outside_the_client_scopes_is_invalid_scope(
    client: TestClient, register: Callable[..., dict[str, Any]], scoped_user: dict[str, Any]
) -> None:
    reader = register(scopes=("read",), confidential=False)

    response = token_post(
        client, password_form(scoped_user, client_id=reader["client_id"], scope="write")
    )

    assert_oauth_error(response, 400, "invalid_scope")
    assert "access_token" not in response.text


def test_requesting_scope_inside_the_client_scopes_is_granted(
    client: TestClient, register: Callable[..., dict[str, Any]], scoped_user: dict[str, Any]
) -> None:
    both = register(scopes=("read", "write"), confidential=False)

    response = token_post(
        client, password_form(scoped_user, client_id=both["client_id"], scope="write")
    )

    assert assert_token_for(response, both["client_id"])["scope"] == "write"


def test_client_with_no_scopes_gets_empty_scope_for_scoped_user(
    client: TestClient, register: Callable[..., dict[str, Any]], scoped_user: dict[str, Any]
) -> None:
    bare = register(confidential=False)

    response = token_post(client, password_form(scoped_user, client_id=bare["client_id"]))

    assert assert_token_for(response, bare["client_id"])["scope"] == ""


def test_client_scope_cannot_grant_what_the_user_lacks(
    client: TestClient,
    register: Callable[..., dict[str, Any]],
    scoped_user: dict[str, Any],
    user: dict[str, Any],
) -> None:
    reader = register(scopes=("read",), confidential=False)

    response = token_post(client, password_form(user, client_id=reader["client_id"], scope="read"))

    assert_oauth_error(response, 400, "invalid_scope")


def test_unregistered_client_gets_all_the_user_scopes(
    client: TestClient, scoped_user: dict[str, Any]
) -> None:
    response = token_post(client, password_form(scoped_user, client_id="my-spa"))

    assert assert_token_for(response, "my-spa")["scope"] == "read write"


def test_refresh_is_limited_by_client_scopes_narrowed_after_login(
    client: TestClient,
    admin_headers: dict[str, str],
    register: Callable[..., dict[str, Any]],
    scoped_user: dict[str, Any],
) -> None:
    both = register(scopes=("read", "write"), confidential=False)
    login = token_post(client, password_form(scoped_user, client_id=both["client_id"])).json()
    client.patch(
        f"/admin/clients/{both['client_id']}", headers=admin_headers, json={"scopes": ["read"]}
    )

    response = token_post(
        client,
        {
            "grant_type": "refresh_token",
            "refresh_token": login["refresh_token"],
            "client_id": both["client_id"],
        },
    )

    assert assert_token_for(response, both["client_id"])["scope"] == "read"

"""``/admin/clients``: the client registry (RFC 6749 §2) behind the ``admin`` scope."""

from __future__ import annotations

import base64
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from authsvc.services.clients import hash_secret
from tests.helpers import (
    TOKEN_URL,
    USER_PASSWORD,
    assert_insufficient_scope,
    assert_no_store,
    assert_not_authenticated,
    assert_oauth_error,
    password_login,
)

CLIENT_FIELDS = {
    "client_id",
    "name",
    "confidential",
    "grant_types",
    "scopes",
    "created_at",
    "updated_at",
}
UNKNOWN_ID = "no-such-client"


def _create(client: TestClient, headers: dict[str, str], **body: Any) -> httpx2.Response:
    body.setdefault("name", "billing")
    body.setdefault("grant_types", ["client_credentials"])
    return client.post("/admin/clients", headers=headers, json=body)


def _created(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = _create(client, headers, **body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _make_scopes(client: TestClient, headers: dict[str, str], *names: str) -> None:
    for name in names:
        response = client.post("/admin/scopes", headers=headers, json={"name": name})
        assert response.status_code == 201, response.text


def _list(client: TestClient, headers: dict[str, str], **params: int) -> dict[str, Any]:
    response = client.get("/admin/clients", headers=headers, params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def _basic(client_id: str, secret: str) -> dict[str, str]:
    value = base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii")
    return {"Authorization": f"Basic {value}"}


def _client_credentials(client: TestClient, client_id: str, secret: str) -> httpx2.Response:
    return client.post(
        TOKEN_URL, data={"grant_type": "client_credentials"}, headers=_basic(client_id, secret)
    )


def _assert_hides_secret(response: httpx2.Response, secret: str) -> None:
    assert secret not in response.text
    assert hash_secret(secret) not in response.text
    assert "secret_hash" not in response.text


# --- authorization: the whole router needs the admin scope ---------------------------------

ROUTES = [
    ("GET", "/admin/clients"),
    ("POST", "/admin/clients"),
    ("GET", f"/admin/clients/{UNKNOWN_ID}"),
    ("PATCH", f"/admin/clients/{UNKNOWN_ID}"),
    ("DELETE", f"/admin/clients/{UNKNOWN_ID}"),
    ("POST", f"/admin/clients/{UNKNOWN_ID}/secret"),
]
NEW_CLIENT = {"name": "billing", "grant_types": ["client_credentials"]}


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_admin_clients_without_token_is_401_with_bare_bearer_challenge(
    client: TestClient, method: str, path: str
) -> None:
    assert_not_authenticated(client.request(method, path, json=NEW_CLIENT))


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_admin_clients_without_admin_scope_is_403_insufficient_scope(
    client: TestClient, user_headers: dict[str, str], method: str, path: str
) -> None:
    assert_insufficient_scope(client.request(method, path, headers=user_headers, json=NEW_CLIENT))


def test_create_client_without_admin_scope_registers_nothing(
    client: TestClient, user_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    _create(client, user_headers)

    assert _list(client, admin_headers) == {"items": [], "total": 0}


def test_existing_client_is_not_readable_without_admin_scope(
    client: TestClient, user_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)

    response = client.get(f"/admin/clients/{created['client_id']}", headers=user_headers)

    assert_insufficient_scope(response)
    assert created["client_secret"] not in response.text


def test_existing_client_secret_cannot_be_rotated_without_admin_scope(
    client: TestClient, user_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)

    response = client.post(f"/admin/clients/{created['client_id']}/secret", headers=user_headers)

    assert_insufficient_scope(response)
    assert _client_credentials(client, created["client_id"], created["client_secret"]).is_success


def test_existing_client_cannot_be_deleted_without_admin_scope(
    client: TestClient, user_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)

    response = client.delete(f"/admin/clients/{created['client_id']}", headers=user_headers)

    assert_insufficient_scope(response)
    assert client.get(f"/admin/clients/{created['client_id']}", headers=admin_headers).is_success


# --- POST /admin/clients ---------------------------------------------------------------------


def test_create_confidential_client_returns_201_with_fields_and_secret(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    _make_scopes(client, admin_headers, "reports")

    response = _create(
        client,
        admin_headers,
        name="billing",
        grant_types=["client_credentials", "password"],
        scopes=["reports"],
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == CLIENT_FIELDS | {"client_secret"}
    assert body["name"] == "billing"
    assert body["confidential"] is True
    assert body["grant_types"] == ["client_credentials", "password"]
    assert body["scopes"] == ["reports"]
    assert isinstance(body["client_id"], str) and body["client_id"]
    assert isinstance(body["client_secret"], str) and len(body["client_secret"]) >= 32


def test_create_client_response_is_never_cached(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert_no_store(_create(client, admin_headers))


def test_create_client_is_confidential_by_default(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert _created(client, admin_headers, grant_types=["password"])["confidential"] is True


def test_create_client_scopes_default_to_none(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert _created(client, admin_headers)["scopes"] == []


def test_create_public_client_has_null_secret(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(
        client, admin_headers, grant_types=["password", "refresh_token"], confidential=False
    )

    assert created["confidential"] is False
    assert created["client_secret"] is None


def test_create_client_response_shows_no_secret_hash(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = _create(client, admin_headers)
    secret = response.json()["client_secret"]

    assert "secret_hash" not in response.text
    assert hash_secret(secret) not in response.text


def test_created_clients_get_distinct_ids_and_secrets(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    first = _created(client, admin_headers)
    second = _created(client, admin_headers)

    assert first["client_id"] != second["client_id"]
    assert first["client_secret"] != second["client_secret"]


def test_created_client_secret_authenticates_at_token_endpoint(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)

    response = _client_credentials(client, created["client_id"], created["client_secret"])

    assert response.status_code == 200, response.text


def test_create_client_deduplicates_grant_types_and_scopes(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    _make_scopes(client, admin_headers, "reports")

    created = _created(
        client,
        admin_headers,
        grant_types=["password", "password"],
        scopes=["reports", "reports"],
    )

    assert created["grant_types"] == ["password"]
    assert created["scopes"] == ["reports"]


def test_create_client_with_unknown_scope_is_422_and_registers_nothing(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = _create(client, admin_headers, scopes=["no-such-scope"])

    assert response.status_code == 422, response.text
    assert _list(client, admin_headers)["total"] == 0


def test_create_public_client_with_client_credentials_is_422_and_registers_nothing(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = _create(
        client, admin_headers, grant_types=["client_credentials"], confidential=False
    )

    assert response.status_code == 422, response.text
    assert _list(client, admin_headers)["total"] == 0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "x", "grant_types": []}, id="no-grant-types"),
        pytest.param({"name": "x"}, id="grant-types-missing"),
        pytest.param({"name": "x", "grant_types": ["authorization_code"]}, id="unknown-grant"),
        pytest.param({"name": "x", "grant_types": ["implicit"]}, id="implicit-grant"),
        pytest.param({"grant_types": ["password"]}, id="name-missing"),
        pytest.param({"name": "", "grant_types": ["password"]}, id="empty-name"),
        pytest.param({"name": "   ", "grant_types": ["password"]}, id="blank-name"),
        pytest.param({"name": "a\x00b", "grant_types": ["password"]}, id="control-char-name"),
        pytest.param({"name": "x" * 256, "grant_types": ["password"]}, id="name-too-long"),
        pytest.param(
            {"name": "x", "grant_types": ["password"], "scopes": ["bad scope"]},
            id="malformed-scope",
        ),
        pytest.param(
            {"name": "x", "grant_types": ["password"], "client_secret": "chosen"},
            id="caller-chosen-secret",
        ),
        pytest.param(
            {"name": "x", "grant_types": ["password"], "client_id": "chosen"},
            id="caller-chosen-id",
        ),
    ],
)
def test_create_client_with_invalid_body_is_422_and_registers_nothing(
    client: TestClient, admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    response = client.post("/admin/clients", headers=admin_headers, json=body)

    assert response.status_code == 422, response.text
    assert _list(client, admin_headers)["total"] == 0


# --- GET /admin/clients ----------------------------------------------------------------------


def test_list_clients_is_empty_before_any_registration(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert _list(client, admin_headers) == {"items": [], "total": 0}


def test_list_clients_items_have_public_fields_only(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)

    response = client.get("/admin/clients", headers=admin_headers)

    assert response.status_code == 200
    assert [set(item) for item in response.json()["items"]] == [CLIENT_FIELDS]
    _assert_hides_secret(response, created["client_secret"])


def test_list_clients_item_matches_the_created_client(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)
    del created["client_secret"]

    assert _list(client, admin_headers)["items"] == [created]


def test_list_clients_pages_with_offset_and_limit_and_reports_total(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    ids = {_created(client, admin_headers, name=f"c{i}")["client_id"] for i in range(5)}

    pages = [_list(client, admin_headers, offset=offset, limit=2) for offset in (0, 2, 4)]

    assert [page["total"] for page in pages] == [5, 5, 5]
    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    paged_ids = [item["client_id"] for page in pages for item in page["items"]]
    assert len(paged_ids) == 5
    assert set(paged_ids) == ids


def test_list_clients_offset_past_the_end_is_empty_with_total(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    _created(client, admin_headers)

    assert _list(client, admin_headers, offset=10) == {"items": [], "total": 1}


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "many"}],
    ids=["limit-0", "limit-501", "offset-negative", "limit-not-int"],
)
def test_list_clients_with_invalid_paging_is_422(
    client: TestClient, admin_headers: dict[str, str], params: dict[str, Any]
) -> None:
    response = client.get("/admin/clients", headers=admin_headers, params=params)

    assert response.status_code == 422


# --- GET /admin/clients/{client_id} ----------------------------------------------------------


def test_read_client_returns_its_fields_without_secret(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)
    secret = created.pop("client_secret")

    response = client.get(f"/admin/clients/{created['client_id']}", headers=admin_headers)

    assert response.status_code == 200
    assert response.json() == created
    _assert_hides_secret(response, secret)


def test_read_unknown_client_is_404(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = client.get(f"/admin/clients/{UNKNOWN_ID}", headers=admin_headers)

    assert response.status_code == 404


# --- PATCH /admin/clients/{client_id} --------------------------------------------------------


def _patch(
    client: TestClient, headers: dict[str, str], client_id: str, body: dict[str, Any]
) -> httpx2.Response:
    return client.patch(f"/admin/clients/{client_id}", headers=headers, json=body)


def test_patch_client_name_changes_only_the_name(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers, grant_types=["password"])
    secret = created.pop("client_secret")

    response = _patch(client, admin_headers, created["client_id"], {"name": "renamed"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "renamed"
    unchanged = {"client_id", "confidential", "grant_types", "scopes", "created_at"}
    assert {k: body[k] for k in unchanged} == {k: created[k] for k in unchanged}
    _assert_hides_secret(response, secret)


def test_patch_client_grant_types_and_scopes_replace_them(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    _make_scopes(client, admin_headers, "a", "b")
    created = _created(client, admin_headers, grant_types=["password"], scopes=["a"])

    response = _patch(
        client,
        admin_headers,
        created["client_id"],
        {"grant_types": ["client_credentials"], "scopes": ["b"]},
    )

    assert response.status_code == 200, response.text
    assert response.json()["grant_types"] == ["client_credentials"]
    assert response.json()["scopes"] == ["b"]


def test_patch_client_is_persisted(client: TestClient, admin_headers: dict[str, str]) -> None:
    created = _created(client, admin_headers)
    _patch(client, admin_headers, created["client_id"], {"name": "renamed"})

    response = client.get(f"/admin/clients/{created['client_id']}", headers=admin_headers)

    assert response.json()["name"] == "renamed"


def test_patch_client_keeps_its_secret(client: TestClient, admin_headers: dict[str, str]) -> None:
    created = _created(client, admin_headers)
    _patch(client, admin_headers, created["client_id"], {"name": "renamed"})

    response = _client_credentials(client, created["client_id"], created["client_secret"])

    assert response.status_code == 200, response.text


def test_patch_unknown_client_is_404(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = _patch(client, admin_headers, UNKNOWN_ID, {"name": "x"})

    assert response.status_code == 404


def test_patch_client_with_unknown_scope_is_422_and_changes_nothing(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)

    response = _patch(
        client, admin_headers, created["client_id"], {"name": "new", "scopes": ["nope"]}
    )

    assert response.status_code == 422, response.text
    after = client.get(f"/admin/clients/{created['client_id']}", headers=admin_headers).json()
    assert after["name"] == "billing"
    assert after["scopes"] == []


def test_patch_public_client_to_client_credentials_is_422_and_changes_nothing(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers, grant_types=["password"], confidential=False)

    response = _patch(
        client, admin_headers, created["client_id"], {"grant_types": ["client_credentials"]}
    )

    assert response.status_code == 422, response.text
    after = client.get(f"/admin/clients/{created['client_id']}", headers=admin_headers).json()
    assert after["grant_types"] == ["password"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"grant_types": []}, id="no-grant-types"),
        pytest.param({"grant_types": ["implicit"]}, id="unknown-grant"),
        pytest.param({"name": ""}, id="empty-name"),
        pytest.param({"name": None}, id="null-name"),
        pytest.param({"confidential": False}, id="confidential-is-not-patchable"),
        pytest.param({"client_id": "chosen"}, id="client-id-is-not-patchable"),
        pytest.param({"client_secret": "chosen"}, id="secret-is-not-patchable"),
    ],
)
def test_patch_client_with_invalid_body_is_422_and_changes_nothing(
    client: TestClient, admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    created = _created(client, admin_headers)
    del created["client_secret"]

    response = _patch(client, admin_headers, created["client_id"], body)

    assert response.status_code == 422, response.text
    after = client.get(f"/admin/clients/{created['client_id']}", headers=admin_headers).json()
    assert after == created


def test_patch_client_removing_password_grant_refuses_password_logins(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any]
) -> None:
    created = _created(
        client, admin_headers, grant_types=["password", "refresh_token"], confidential=False
    )
    login = {"client_id": created["client_id"]}
    password_login(client, user["username"], USER_PASSWORD, **login)

    _patch(client, admin_headers, created["client_id"], {"grant_types": ["refresh_token"]})
    response = client.post(
        TOKEN_URL,
        data={
            "grant_type": "password",
            "username": user["username"],
            "password": USER_PASSWORD,
            **login,
        },
    )

    assert_oauth_error(response, 400, "unauthorized_client")


# --- DELETE /admin/clients/{client_id} -------------------------------------------------------


def test_delete_client_is_204_with_empty_body(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)

    response = client.delete(f"/admin/clients/{created['client_id']}", headers=admin_headers)

    assert response.status_code == 204
    assert response.content == b""


def test_deleted_client_is_404_and_gone_from_the_list(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)
    client.delete(f"/admin/clients/{created['client_id']}", headers=admin_headers)

    response = client.get(f"/admin/clients/{created['client_id']}", headers=admin_headers)

    assert response.status_code == 404
    assert _list(client, admin_headers) == {"items": [], "total": 0}


def test_delete_unknown_client_is_404(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = client.delete(f"/admin/clients/{UNKNOWN_ID}", headers=admin_headers)

    assert response.status_code == 404


def test_delete_client_twice_is_404_the_second_time(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)
    client.delete(f"/admin/clients/{created['client_id']}", headers=admin_headers)

    response = client.delete(f"/admin/clients/{created['client_id']}", headers=admin_headers)

    assert response.status_code == 404


def test_deleted_confidential_client_secret_no_longer_authenticates(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)
    client.delete(f"/admin/clients/{created['client_id']}", headers=admin_headers)

    response = _client_credentials(client, created["client_id"], created["client_secret"])

    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="authsvc"'


def test_delete_client_revokes_its_refresh_tokens(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any]
) -> None:
    created = _created(
        client, admin_headers, grant_types=["password", "refresh_token"], confidential=False
    )
    client_id = created["client_id"]
    refresh_token = password_login(client, user["username"], USER_PASSWORD, client_id=client_id)[
        "refresh_token"
    ]

    client.delete(f"/admin/clients/{client_id}", headers=admin_headers)
    # The id is now unregistered, so it stands for a public client: the session must still end.
    response = client.post(
        TOKEN_URL,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
        },
    )

    assert_oauth_error(response, 400, "invalid_grant")


def test_delete_client_leaves_other_clients_refresh_tokens_working(
    client: TestClient, admin_headers: dict[str, str], user: dict[str, Any]
) -> None:
    grants = ["password", "refresh_token"]
    doomed = _created(client, admin_headers, grant_types=grants, confidential=False)
    kept = _created(client, admin_headers, name="kept", grant_types=grants, confidential=False)
    login = password_login(client, user["username"], USER_PASSWORD, client_id=kept["client_id"])

    client.delete(f"/admin/clients/{doomed['client_id']}", headers=admin_headers)
    response = client.post(
        TOKEN_URL,
        data={
            "grant_type": "refresh_token",
            "refresh_token": login["refresh_token"],
            "client_id": kept["client_id"],
        },
    )

    assert response.status_code == 200, response.text


# --- POST /admin/clients/{client_id}/secret --------------------------------------------------


def test_rotate_secret_returns_only_client_id_and_new_secret_uncached(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)

    response = client.post(f"/admin/clients/{created['client_id']}/secret", headers=admin_headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"client_id", "client_secret"}
    assert body["client_id"] == created["client_id"]
    assert body["client_secret"] != created["client_secret"]
    assert_no_store(response)
    assert "secret_hash" not in response.text
    assert hash_secret(body["client_secret"]) not in response.text


def test_rotate_secret_makes_the_old_secret_fail_with_invalid_client(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)
    client.post(f"/admin/clients/{created['client_id']}/secret", headers=admin_headers)

    response = _client_credentials(client, created["client_id"], created["client_secret"])

    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="authsvc"'


def test_rotate_secret_makes_the_new_secret_work(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)
    rotated = client.post(
        f"/admin/clients/{created['client_id']}/secret", headers=admin_headers
    ).json()

    response = _client_credentials(client, created["client_id"], rotated["client_secret"])

    assert response.status_code == 200, response.text


def test_rotated_secret_is_not_shown_by_read_or_list(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers)
    secret = client.post(
        f"/admin/clients/{created['client_id']}/secret", headers=admin_headers
    ).json()["client_secret"]

    _assert_hides_secret(
        client.get(f"/admin/clients/{created['client_id']}", headers=admin_headers), secret
    )
    _assert_hides_secret(client.get("/admin/clients", headers=admin_headers), secret)


def test_rotate_secret_of_public_client_is_409(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = _created(client, admin_headers, grant_types=["password"], confidential=False)

    response = client.post(f"/admin/clients/{created['client_id']}/secret", headers=admin_headers)

    assert response.status_code == 409, response.text
    assert "client_secret" not in response.json()


def test_rotate_secret_of_unknown_client_is_404(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(f"/admin/clients/{UNKNOWN_ID}/secret", headers=admin_headers)

    assert response.status_code == 404

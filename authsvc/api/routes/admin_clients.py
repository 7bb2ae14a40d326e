"""Admin API for the client registry; the whole router requires the ``admin`` scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError

from authsvc.api.deps import AuditDep, SessionDep, require_scopes
from authsvc.api.responses import SCOPED, Responses, detail, unknown_scopes, unprocessable
from authsvc.db.models import Client
from authsvc.schemas import (
    ClientCreate,
    ClientCreated,
    ClientOut,
    ClientPage,
    ClientSecretOut,
    ClientUpdate,
)
from authsvc.services.audit import AuditType
from authsvc.services.clients import ClientService, InvalidClientConfigError, NewClient
from authsvc.services.sessions import SessionService
from authsvc.services.users import UnknownScopeError

router = APIRouter(
    prefix="/admin/clients",
    tags=["admin"],
    dependencies=[require_scopes("admin")],
    responses=SCOPED,
)
NOT_FOUND: Responses = {404: detail("Client not found")}

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _get_or_404(service: ClientService, client_id: str) -> Client:
    client = service.get(client_id)
    if client is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Client not found")
    return client


def _invalid(exc: Exception) -> RequestValidationError:
    if isinstance(exc, UnknownScopeError):
        return unknown_scopes(exc.names)
    return unprocessable(("body", "grant_types"), str(exc))


@router.get("", response_model=ClientPage)
def list_clients(
    session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ClientPage:
    clients, total = ClientService(session).page(offset=offset, limit=limit)
    return ClientPage(items=[ClientOut.model_validate(client) for client in clients], total=total)


@router.post("", response_model=ClientCreated, status_code=status.HTTP_201_CREATED)
def create_client(
    body: ClientCreate, session: SessionDep, response: Response, audit: AuditDep
) -> ClientCreated:
    new = NewClient(
        name=body.name,
        grant_types=tuple(body.grant_types),
        scopes=tuple(body.scopes),
        confidential=body.confidential,
    )
    try:
        client, secret = ClientService(session).create(new)
    except (InvalidClientConfigError, UnknownScopeError) as exc:
        raise _invalid(exc) from None
    audit(
        AuditType.CLIENT_CREATED,
        subject_id=client.client_id,
        client_id=client.client_id,
        grant_types=list(body.grant_types),
        scopes=list(body.scopes),
        confidential=body.confidential,
    )
    response.headers.update(NO_STORE)
    return ClientCreated(**ClientOut.model_validate(client).model_dump(), client_secret=secret)


@router.get("/{client_id}", response_model=ClientOut, responses=NOT_FOUND)
def read_client(client_id: str, session: SessionDep) -> ClientOut:
    return ClientOut.model_validate(_get_or_404(ClientService(session), client_id))


@router.patch("/{client_id}", response_model=ClientOut, responses=NOT_FOUND)
def update_client(
    client_id: str, body: ClientUpdate, session: SessionDep, audit: AuditDep
) -> ClientOut:
    service = ClientService(session)
    client = _get_or_404(service, client_id)
    changes = body.changes()
    try:
        updated = ClientOut.model_validate(service.update(client, changes))
    except (InvalidClientConfigError, UnknownScopeError) as exc:
        session.rollback()
        raise _invalid(exc) from None
    audit(AuditType.CLIENT_UPDATED, subject_id=client_id, client_id=client_id, **changes)
    return updated


@router.delete("/{client_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_client(client_id: str, session: SessionDep, audit: AuditDep) -> Response:
    service = ClientService(session)
    client = _get_or_404(service, client_id)
    # Its sessions end with it: an unregistered client_id would otherwise be taken for a
    # public client and could keep refreshing them.
    SessionService(session, 0).revoke_for_client(client_id)
    service.delete(client)
    audit(AuditType.CLIENT_DELETED, subject_id=client_id, client_id=client_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{client_id}/secret",
    response_model=ClientSecretOut,
    responses={**NOT_FOUND, 409: detail("A public client has no secret")},
)
def rotate_client_secret(
    client_id: str, session: SessionDep, response: Response, audit: AuditDep
) -> ClientSecretOut:
    service = ClientService(session)
    client = _get_or_404(service, client_id)
    try:
        secret = service.rotate_secret(client)
    except InvalidClientConfigError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    audit(AuditType.CLIENT_SECRET_ROTATED, subject_id=client_id, client_id=client_id)
    response.headers.update(NO_STORE)
    return ClientSecretOut(client_id=client.client_id, client_secret=secret)

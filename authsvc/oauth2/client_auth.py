"""Client authentication (RFC 6749 §2.3).

Confidential clients authenticate with ``client_secret_basic`` (HTTP Basic, the RFC's MUST) or
``client_secret_post`` (form fields); using both at once is refused (§2.3: one method per
request). A ``client_id`` that is not registered stands for a public client allowed the
password and refresh_token grants, unless ``AUTHSVC_REQUIRE_REGISTERED_CLIENTS`` is on. A
request naming no client at all (Swagger UI's Authorize button) is the public client
``public``. Secrets are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote_plus

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from authsvc.oauth2.errors import InvalidClientError, InvalidRequestError, UnauthorizedClientError
from authsvc.observability.request_context import note_principal
from authsvc.services.audit import FAILURE, AuditLog, AuditType
from authsvc.services.cache import Missing, SingleFlight, TtlCache
from authsvc.services.clients import PUBLIC_CLIENT_GRANTS, ClientService, secret_matches

if TYPE_CHECKING:
    from authsvc.oauth2.token_endpoint import TokenRequest

DEFAULT_CLIENT_ID = "public"
SUPPORTED_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
CONFIDENTIAL_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
# RFC 6749 Appendix A.1: client-id = *VSCHAR (%x20-7E); we also refuse empty and over-long ids.
_CLIENT_ID = re.compile(r"[\x20-\x7e]{1,128}")


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str | None
    secret: str | None
    method: str


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    registered: bool
    confidential: bool
    grant_types: frozenset[str]
    # None: an unregistered public client, limited only by what the user holds.
    scopes: frozenset[str] | None

    def require_grant(self, grant_type: str) -> None:
        if grant_type not in self.grant_types:
            raise UnauthorizedClientError(f"This client may not use the {grant_type} grant")

    @property
    def audit_id(self) -> str | None:
        """The client_id to record: only one we issued (or the default public client).

        An unregistered id is whatever the caller typed, sometimes a secret in the wrong
        field, so it is not kept.
        """
        return self.client_id if self.registered or self.client_id == DEFAULT_CLIENT_ID else None

    def restrict(self, scopes: Iterable[str]) -> set[str]:
        held = set(scopes)
        return held if self.scopes is None else held & self.scopes


def parse_basic_credentials(header: str) -> tuple[str, str]:
    """RFC 6749 §2.3.1: Basic credentials whose parts are form-urlencoded before base64."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClientError("Unsupported client authentication scheme")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        # ValueError covers non-ASCII input to b64decode and UnicodeDecodeError alike.
        raise InvalidClientError("Malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClientError("Malformed Basic credentials")
    return unquote_plus(client_id), unquote_plus(secret)


def extract_credentials(authorization: str | None, params: Mapping[str, str]) -> ClientCredentials:
    form_id = params.get("client_id")
    post_secret = params.get("client_secret")
    if authorization:
        basic_id, basic_secret = parse_basic_credentials(authorization)
        # Swagger UI sends "Basic Og==" (no id, no secret) when no client is filled in.
        if basic_id:
            if post_secret is not None:
                raise InvalidRequestError("Use one client authentication method, not two")
            if form_id is not None and form_id != basic_id:
                raise InvalidRequestError(
                    "client_id in the body differs from the authenticated client"
                )
            return _checked(
                ClientCredentials(basic_id, basic_secret or None, "client_secret_basic")
            )
    if post_secret is not None:
        if form_id is None:
            raise InvalidClientError("client_secret without client_id")
        return _checked(ClientCredentials(form_id, post_secret, "client_secret_post"))
    return _checked(ClientCredentials(form_id, None, "none"))


def _checked(credentials: ClientCredentials) -> ClientCredentials:
    if credentials.client_id is not None and not _CLIENT_ID.fullmatch(credentials.client_id):
        raise InvalidRequestError("Malformed client_id")
    return credentials


@dataclass(frozen=True)
class ClientRecord:
    """What authenticating a registered client reads from its row."""

    client_id: str
    confidential: bool
    secret_hash: str | None = field(repr=False)
    grant_types: frozenset[str]
    scopes: frozenset[str]


class ClientAuthenticator:
    """Client rows are read through ``cache`` (the token-state cache, which every commit that
    changes a client empties): a deleted client or a rotated secret stops working here at
    once, and on other replicas within ``auth_cache_ttl``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        audit: AuditLog,
        *,
        require_registered: bool,
        cache: TtlCache[Any] | None = None,
    ) -> None:
        self.sessions = sessions
        self.audit = audit
        self.require_registered = require_registered
        self._cache: TtlCache[Any] = cache if cache is not None else TtlCache(0)
        self._reads: SingleFlight[ClientRecord | None] = SingleFlight()

    async def authenticate_request(
        self, request: TokenRequest, *, require_confidential: bool = False
    ) -> OAuthClient:
        """Authenticate the client of a token, introspection or revocation request."""
        credentials = ClientCredentials(None, None, "none")
        try:
            credentials = extract_credentials(request.authorization, request.params)
            record: ClientRecord | None = None
            if credentials.client_id is not None:
                record = await self._record(credentials.client_id)
            client = self.judge(credentials, record, require_confidential=require_confidential)
        except InvalidClientError as exc:
            self.audit.record(
                AuditType.CLIENT_AUTH_FAILED,
                outcome=FAILURE,
                caller=request.caller,
                client_id=exc.client_id,  # set only for a registered client
            )
            raise
        note_principal(client_id=client.audit_id)
        return client

    async def _record(self, client_id: str) -> ClientRecord | None:
        key = ("client-record", client_id)
        cached = self._cache.get(key)
        if not isinstance(cached, Missing):
            return cast("ClientRecord | None", cached)
        generation = self._cache.generation
        record = await self._reads.run(
            (generation, client_id), lambda: run_in_threadpool(self.read, client_id)
        )
        self._cache.put(key, record, generation)
        return record

    def read(self, client_id: str) -> ClientRecord | None:
        with self.sessions() as session:
            client = ClientService(session).get(client_id)
            if client is None:
                return None
            return ClientRecord(
                client_id=client.client_id,
                confidential=client.confidential,
                secret_hash=client.secret_hash,
                grant_types=frozenset(client.grant_types),
                scopes=frozenset(client.scopes),
            )

    def judge(
        self,
        credentials: ClientCredentials,
        client: ClientRecord | None,
        *,
        require_confidential: bool = False,
    ) -> OAuthClient:
        """Identify the client, or raise ``invalid_client`` (401 with a Basic challenge)."""
        if credentials.client_id is None:
            if require_confidential or self.require_registered:
                raise InvalidClientError("Client authentication required")
            return _public_client(DEFAULT_CLIENT_ID)
        if client is None:
            secret_matches(credentials.secret or "", None)
            if credentials.secret is not None or require_confidential or self.require_registered:
                raise InvalidClientError()
            return _public_client(credentials.client_id)
        if client.confidential:
            if credentials.secret is None or not secret_matches(
                credentials.secret, client.secret_hash
            ):
                raise InvalidClientError(client_id=client.client_id)
        elif credentials.secret is not None or require_confidential:
            raise InvalidClientError("Public clients have no secret", client.client_id)
        return OAuthClient(
            client_id=client.client_id,
            registered=True,
            confidential=client.confidential,
            grant_types=client.grant_types,
            scopes=client.scopes,
        )


def _public_client(client_id: str) -> OAuthClient:
    return OAuthClient(
        client_id=client_id,
        registered=False,
        confidential=False,
        grant_types=PUBLIC_CLIENT_GRANTS,
        scopes=None,
    )

"""Request and response models; input and output types are kept apart.

Input models forbid unknown fields, so a PATCH naming a field it may not change is a 422 that
changes nothing instead of a silent partial update. No output model has a password hash field.
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from authsvc.security.passwords import check_password_policy
from authsvc.services.users import normalize_username, validate_scope_name

# No control characters in query parameters (PostgreSQL refuses NUL in text, and no name has
# them), as a pattern FastAPI checks and OpenAPI documents; _printable is the body's rule.
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f]*$"


def _printable(value: str) -> str:
    # Control characters have no place in names; a NUL is not even valid PostgreSQL text.
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must not contain control characters")
    return value


Username = Annotated[str, StringConstraints(max_length=300), AfterValidator(normalize_username)]
Password = Annotated[str, StringConstraints(max_length=1024), AfterValidator(check_password_policy)]
ScopeName = Annotated[str, AfterValidator(validate_scope_name)]
FullName = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=255), AfterValidator(_printable)
]
Description = Annotated[str, StringConstraints(max_length=255), AfterValidator(_printable)]


# 50 scopes of at most 64 characters keep a token well inside the verifier's 8 KiB limit.
MAX_SCOPES = 50


class InputModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    email: str | None
    full_name: str | None
    is_active: bool
    scopes: list[str] = Field(validation_alias="scope_names")
    created_at: datetime
    updated_at: datetime


class UserPage(BaseModel):
    items: list[UserOut]
    total: int


class UserCreate(InputModel):
    username: Username
    password: Password
    email: EmailStr | None = None
    full_name: FullName | None = None
    scopes: list[ScopeName] = Field(default_factory=list, max_length=MAX_SCOPES)
    is_active: bool = True


class UserSelfUpdate(InputModel):
    """What a user may change about themselves: only contact details."""

    email: EmailStr | None = None
    full_name: FullName | None = None

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class AdminUserUpdate(InputModel):
    """Fields an admin may change; only the ones present in the body are applied."""

    email: EmailStr | None = None
    full_name: FullName | None = None
    is_active: bool = True
    scopes: list[ScopeName] = Field(default_factory=list, max_length=MAX_SCOPES)
    password: Password = ""

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class PasswordChange(InputModel):
    current_password: Annotated[str, StringConstraints(max_length=1024)]
    new_password: Password


class ScopeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    description: str


class ScopeCreate(InputModel):
    name: ScopeName
    description: Description = ""


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - RFC 6750 token type, not a secret
    expires_in: int
    scope: str
    # The password and refresh_token grants only (RFC 6749 §4.4.3: none for a client).
    refresh_token: str | None = None


class IntrospectionResponse(BaseModel):
    """RFC 7662 §2.2; an inactive, unknown or foreign token is ``{"active": false}`` alone."""

    active: bool
    scope: str | None = None
    client_id: str | None = None
    username: str | None = None
    token_type: str | None = None
    exp: int | None = None
    iat: int | None = None
    nbf: int | None = None
    sub: str | None = None
    aud: str | list[str] | None = None
    iss: str | None = None
    jti: str | None = None


class SessionOut(BaseModel):
    """A sign-in session: one refresh token family."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    client_id: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime


GrantType = Literal["password", "refresh_token", "client_credentials"]
ClientName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    AfterValidator(_printable),
]


class ClientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    client_id: str
    name: str
    confidential: bool
    grant_types: list[str]
    scopes: list[str]
    created_at: datetime
    updated_at: datetime


class ClientCreated(ClientOut):
    """Returned once at creation: the only time the secret is shown."""

    client_secret: str | None


class ClientSecretOut(BaseModel):
    client_id: str
    client_secret: str


class ClientPage(BaseModel):
    items: list[ClientOut]
    total: int


class ClientCreate(InputModel):
    name: ClientName
    grant_types: list[GrantType] = Field(min_length=1, max_length=3)
    scopes: list[ScopeName] = Field(default_factory=list, max_length=MAX_SCOPES)
    confidential: bool = True


class ClientUpdate(InputModel):
    name: ClientName = ""
    grant_types: list[GrantType] = Field(default_factory=list, min_length=1, max_length=3)
    scopes: list[ScopeName] = Field(default_factory=list, max_length=MAX_SCOPES)

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class AuditEventOut(BaseModel):
    """One audit event, as GET /admin/audit and the audit stream show it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    occurred_at: datetime
    type: str
    outcome: str
    actor_id: str | None
    subject_id: str | None
    username: str | None
    client_id: str | None
    ip: str | None
    user_agent: str | None
    details: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    # Pass as ?before= to get the next (older) page; null on the last page.
    next_before: int | None

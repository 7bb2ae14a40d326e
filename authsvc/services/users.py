"""Users and scopes: the rules for creating, changing and removing them.

Each public method is one transaction: a user is created together with their scope grants or
not at all, and a failed write leaves nothing behind.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from authsvc.db.engine import affected_rows
from authsvc.db.models import Scope, User, user_scopes, utcnow
from authsvc.oauth2.scope import is_scope_token
from authsvc.services.sessions import revoke_user_families

MAX_USERNAME_LENGTH = 150
_USERNAME_PUNCTUATION = frozenset("._@+-")
# Scripts written together (UTS #39 "highly restrictive"): a Japanese, Chinese or Korean name
# may mix these with each other and with one alphabet; any other mix is refused.
_EAST_ASIAN_SCRIPTS = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO"})
# Letters whose names do not start with a script: the apostrophes and the okina of Ukrainian,
# Uzbek and Hawaiian names ("MODIFIER LETTER ..."), and Japanese marks used with kana and
# kanji alike (the long-vowel mark, the iteration mark).
_NEUTRAL_LETTERS = frozenset({"MODIFIER", "KATAKANA-HIRAGANA", "IDEOGRAPHIC"})
# Digits named after a variant of their script: Arabic and Persian numerals in Arabic names.
_DIGIT_SCRIPTS = {"ARABIC-INDIC": "ARABIC", "EXTENDED": "ARABIC"}


class UserServiceError(Exception):
    """Base for the domain errors of this module."""


class UserExistsError(UserServiceError):
    pass


class ScopeExistsError(UserServiceError):
    pass


class UnknownScopeError(UserServiceError):
    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(names)
        super().__init__(f"unknown scope: {' '.join(self.names)}")


def normalize_username(username: str) -> str:
    """NFKC so look-alike compatibility characters collapse; raises ``ValueError`` if invalid."""
    normalized = unicodedata.normalize("NFKC", username).strip()
    # The casefolded key can be longer than the name ("ß" -> "ss"); both must fit the pattern.
    if not is_username_text(normalized) or not is_username_text(normalized.casefold()):
        raise ValueError("username must be 1 to 150 letters, digits or . @ + - _ characters")
    if _mixes_alphabets(normalized):
        # "\u0430dmin" (Cyrillic "a") is another account that reads as "admin": a name may
        # use one alphabet only (NFKC has already folded full-width and styled letters).
        raise ValueError("username must not mix alphabets, such as Latin and Cyrillic letters")
    return normalized


def _like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards in ``text`` matched literally (escape ``\\``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def is_username_text(text: str) -> bool:
    """Letters (with their combining marks: Devanagari vowel signs are marks), digits and
    ``. @ + - _``; 1 to 150 of them. No space, control character or other symbol."""
    return 0 < len(text) <= MAX_USERNAME_LENGTH and all(
        char.isalnum() or char in _USERNAME_PUNCTUATION or unicodedata.category(char)[0] == "M"
        for char in text
    )


def _script(char: str) -> str | None:
    """The script a letter or a non-ASCII digit is written in, as the first word of its
    Unicode name says; None for what goes with any script (ASCII digits, marks, symbols)."""
    category = unicodedata.category(char)
    if category.startswith("L") or (category == "Nd" and not char.isascii()):
        prefix = unicodedata.name(char, "").split(" ", 1)[0]
        if prefix in _NEUTRAL_LETTERS or not prefix:
            return None
        return _DIGIT_SCRIPTS.get(prefix, prefix)
    return None


def _mixes_alphabets(name: str) -> bool:
    # An e-mail address may have its local part and its domain in different scripts.
    for part in name.split("@"):
        scripts = {script for char in part if (script := _script(char)) is not None}
        if len(scripts - _EAST_ASIAN_SCRIPTS) > 1:
            return True
    return False


def username_key(username: str) -> str:
    return unicodedata.normalize("NFKC", username).strip().casefold()


def validate_scope_name(name: str) -> str:
    if not is_scope_token(name):
        raise ValueError(
            'scope names are 1 to 64 printable ASCII characters without space, " or \\'
        )
    return name


@dataclass(frozen=True)
class NewUser:
    username: str
    password_hash: str
    email: str | None = None
    full_name: str | None = None
    scopes: tuple[str, ...] = ()
    is_active: bool = True


@dataclass(frozen=True)
class Credentials:
    """What a password login needs of a user: no ORM object, nothing it does not read."""

    id: uuid.UUID
    username: str
    password_hash: str
    is_active: bool
    scopes: tuple[str, ...]
    locked_until: datetime | None


def _lookup_key(username: str) -> str | None:
    key = username_key(username)
    # No stored user can have another name; and some inputs (a NUL byte) are not even valid
    # PostgreSQL text, so they must not reach a query.
    return key if is_username_text(key) else None


# Every password login runs this: built once, one round trip (a row per scope held).
_CREDENTIALS = (
    select(
        User.id,
        User.username,
        User.password_hash,
        User.is_active,
        User.locked_until,
        user_scopes.c.scope_name,
    )
    .outerjoin(user_scopes, user_scopes.c.user_id == User.id)
    .where(User.username_key == bindparam("p_key"))
    .order_by(user_scopes.c.scope_name)
)


class UserService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, user_id: uuid.UUID) -> User | None:
        return self.session.get(User, user_id)

    def get_by_username(self, username: str) -> User | None:
        key = _lookup_key(username)
        if key is None:
            return None
        return self.session.scalar(select(User).where(User.username_key == key))

    def credentials(self, username: str) -> Credentials | None:
        """The login's view of ``get_by_username``: the same lookup, without loading a User."""
        key = _lookup_key(username)
        if key is None:
            return None
        rows = self.session.execute(_CREDENTIALS, {"p_key": key}).all()
        if not rows:
            return None
        first = rows[0]
        return Credentials(
            id=first.id,
            username=first.username,
            password_hash=first.password_hash,
            is_active=first.is_active,
            scopes=tuple(row.scope_name for row in rows if row.scope_name is not None),
            locked_until=first.locked_until,
        )

    def count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(User)) or 0

    def page(self, *, offset: int, limit: int, search: str | None = None) -> tuple[list[User], int]:
        """A page of users, oldest first; ``search`` keeps those whose username (compared as
        the login compares it: NFKC, case-folded) or e-mail contains it."""
        query = select(User)
        search = (search or "").strip()
        if search:
            needle = _like_pattern(search)
            query = query.where(
                or_(
                    User.username_key.like(_like_pattern(username_key(search)), escape="\\"),
                    func.lower(User.email).like(needle.lower(), escape="\\"),
                )
            )
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        users = self.session.scalars(
            query.order_by(User.created_at, User.id).offset(offset).limit(limit)
        ).all()
        return list(users), total

    def _resolve_scopes(self, names: Iterable[str]) -> list[Scope]:
        wanted = set(names)
        if not wanted:
            return []
        found = list(self.session.scalars(select(Scope).where(Scope.name.in_(wanted))).all())
        missing = wanted - {scope.name for scope in found}
        if missing:
            raise UnknownScopeError(missing)
        return found

    def create(self, new: NewUser) -> User:
        user = User(
            username=new.username,
            username_key=username_key(new.username),
            email=new.email,
            full_name=new.full_name,
            password_hash=new.password_hash,
            is_active=new.is_active,
        )
        try:
            user.scopes = self._resolve_scopes(new.scopes)
            self.session.add(user)
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
            raise UserExistsError(new.username) from None
        except UnknownScopeError:
            self.session.rollback()
            raise
        return user

    def update(self, user: User, changes: dict[str, Any]) -> User:
        """Apply a partial update; ``scopes`` replaces the grants rather than adding to them.

        A new password or a disabled account ends every refresh token family of the user in
        the same transaction: sessions are bound to the password they were started with.
        The user's row is written first, so its lock orders this against a login starting a
        session: a login that got there first has its family revoked here, a later one finds
        the new password (see ``SessionService.start``).
        """
        try:
            for field, value in changes.items():
                if field == "scopes":
                    user.scopes = self._resolve_scopes(value)
                elif field in {"email", "full_name", "is_active", "password_hash"}:
                    setattr(user, field, value)
                else:  # pragma: no cover - schemas forbid other fields
                    raise ValueError(f"cannot change {field}")
            # A change to the scope grants alone touches no column of the users row.
            user.updated_at = utcnow()
            if "password_hash" in changes or changes.get("is_active") is False:
                self.session.flush()
                revoke_user_families(self.session, user.id, utcnow())
            self.session.commit()
        except UnknownScopeError:
            self.session.rollback()
            raise
        return user

    def set_password_hash(self, user_id: uuid.UUID, password_hash: str, *, expected: str) -> bool:
        """Replace the hash only if it is still ``expected``: a login's upgrade-rehash must not
        overwrite a password reset that landed while bcrypt was running. In the caller's
        transaction (the login's, which also starts the session)."""
        result = self.session.execute(
            update(User)
            .where(User.id == user_id, User.password_hash == expected)
            .values(password_hash=password_hash)
        )
        return affected_rows(result) == 1

    def delete(self, user: User) -> None:
        self.session.delete(user)
        self.session.commit()


class ScopeService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def all(self) -> list[Scope]:
        return list(self.session.scalars(select(Scope).order_by(Scope.name)).all())

    def names(self) -> list[str]:
        return list(self.session.scalars(select(Scope.name).order_by(Scope.name)).all())

    def create(self, name: str, description: str = "") -> Scope:
        # Checked first because the session may already hold this scope (the caller's own
        # grants are loaded in it); the IntegrityError below still settles concurrent creates.
        if self.session.get(Scope, name) is not None:
            raise ScopeExistsError(name)
        scope = Scope(name=name, description=description)
        self.session.add(scope)
        try:
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
            raise ScopeExistsError(name) from None
        return scope

"""First-start work shared by the CLI: keys, migrations and the bootstrap admin."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import Engine

from authsvc.config import Settings
from authsvc.context import load_key_set
from authsvc.db.engine import build_sessionmaker
from authsvc.db.migrate import upgrade
from authsvc.security.keys import KeySet
from authsvc.security.passwords import PasswordHasher, check_password_policy
from authsvc.services.users import NewUser, UserExistsError, UserService, normalize_username

ADMIN_SCOPE = "admin"
DEFAULT_ADMIN_USERNAME = "admin"


@dataclass(frozen=True)
class BootstrapResult:
    username: str
    generated_password: str | None


def prepare_keys(settings: Settings) -> KeySet:
    return load_key_set(settings)


def prepare_database(settings: Settings, engine: Engine) -> None:
    if settings.auto_migrate:
        upgrade(engine)


def bootstrap_admin(settings: Settings, engine: Engine) -> BootstrapResult | None:
    """Create the first admin when there are no users at all; return what was created.

    When no credentials are configured the password is random and returned so the caller can
    show it once; it is never logged or stored in clear.
    """
    with build_sessionmaker(engine)() as session:
        service = UserService(session)
        if service.count() > 0:
            return None
        generated: str | None = None
        if settings.bootstrap_admin_username and settings.bootstrap_admin_password:
            username = normalize_username(settings.bootstrap_admin_username)
            password = check_password_policy(settings.bootstrap_admin_password.get_secret_value())
        else:
            username = DEFAULT_ADMIN_USERNAME
            password = generated = secrets.token_urlsafe(18)
        hasher = PasswordHasher(settings.bcrypt_rounds, warm=False)
        try:
            service.create(
                NewUser(
                    username=username,
                    password_hash=hasher.hash(password),
                    scopes=(ADMIN_SCOPE,),
                )
            )
        except UserExistsError:
            # Another replica won the race to bootstrap; its admin stands.
            return None
        finally:
            hasher.close()
        return BootstrapResult(username=username, generated_password=generated)

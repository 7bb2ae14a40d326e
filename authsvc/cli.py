"""The ``authsvc`` command: serve, create-user, keys, db.

Every command reads settings first and turns an invalid one into a single line naming it,
with exit status 2, instead of a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from authsvc.bootstrap import bootstrap_admin, prepare_database, prepare_keys
from authsvc.config import Settings, SettingsError, load_settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.migrate import current_revision, upgrade
from authsvc.observability.logs import logging_config
from authsvc.observability.metrics import MULTIPROCESS_DIR_ENV
from authsvc.security.keys import (
    KeySet,
    KeyStoreError,
    ensure_signing_key,
    iter_key_summaries,
    load_keys,
    rotate_key,
)
from authsvc.security.passwords import PasswordHasher, check_password_policy
from authsvc.services.audit import AuditLog, AuditType
from authsvc.services.users import (
    NewUser,
    UnknownScopeError,
    UserExistsError,
    UserService,
    normalize_username,
)

app = typer.Typer(help="authsvc: OAuth2/JWT authentication gateway.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage signing keys in AUTHSVC_KEYS_DIR.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"authsvc: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise _fail(str(exc), 2) from None


def _db_error(exc: OperationalError) -> str:
    # Driver messages span lines (psycopg adds hints); the first line says what went wrong.
    lines = str(exc.orig or exc).strip().splitlines()
    return f"cannot use the database: {lines[0] if lines else type(exc).__name__}"


def _database(settings: Settings) -> Engine:
    engine = build_engine(settings)
    try:
        prepare_database(settings, engine)
    except OperationalError as exc:
        raise _fail(_db_error(exc)) from None
    return engine


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Migrate the database, create keys and the first admin if missing, then serve."""
    import uvicorn

    settings = _settings()
    try:
        key_set = prepare_keys(settings)
    except KeyStoreError as exc:
        raise _fail(str(exc)) from None
    engine = _database(settings)
    try:
        result = bootstrap_admin(settings, engine)
    except ValueError as exc:
        raise _fail(f"invalid bootstrap admin: {exc}", 2) from None
    finally:
        engine.dispose()
    if result is not None:
        if result.generated_password is not None:
            typer.echo(
                f"Created admin user '{result.username}' with password: "
                f"{result.generated_password}\n"
                "This password is shown once; change it with POST /users/me/password."
            )
        else:
            typer.echo(f"Created admin user '{result.username}' from the bootstrap settings.")
    typer.echo(f"Signing with {key_set.active.algorithm} key {key_set.active.kid}")
    # uvicorn finishes in-flight requests on SIGTERM, then raises the signal again against
    # the handler that was there before it: make that an exit with status 0, since stopping
    # when asked is a clean exit for a process manager.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    metrics_dir = _shared_metrics_dir(workers, os.environ)
    try:
        uvicorn.run(
            "authsvc.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            proxy_headers=False,
            # Our request log (api.request_log) replaces uvicorn's access log.
            access_log=False,
            log_config=logging_config(settings.log_format),
            timeout_graceful_shutdown=settings.shutdown_timeout or None,  # 0: wait forever
        )
    finally:
        if metrics_dir is not None:
            metrics_dir.cleanup()


def _shared_metrics_dir(
    workers: int, environ: MutableMapping[str, str]
) -> tempfile.TemporaryDirectory[str] | None:
    """Several workers keep their metrics in files one scrape adds up (prometheus-client's
    multiprocess mode). An operator's PROMETHEUS_MULTIPROC_DIR is emptied of a previous run's
    files; without one, a private directory lives as long as this command."""
    configured = environ.get(MULTIPROCESS_DIR_ENV)
    if configured:
        for stale in Path(configured).glob("*.db"):
            stale.unlink()
        return None
    if workers == 1:
        return None
    created = tempfile.TemporaryDirectory(prefix="authsvc-metrics-")
    # Set before uvicorn spawns the workers, which read it when they import prometheus-client.
    environ[MULTIPROCESS_DIR_ENV] = created.name
    return created


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _read_password() -> str:
    if sys.stdin.isatty():
        password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return password
    return sys.stdin.readline().rstrip("\r\n")


@app.command("create-user")
def create_user(
    username: Annotated[str, typer.Argument(help="Login name (case-insensitive).")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", "-s", help="Scope to grant; repeatable.")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Grant the admin scope.")] = False,
) -> None:
    """Create a user; the password is prompted for, or read from stdin when piped."""
    settings = _settings()
    try:
        name = normalize_username(username)
        password = check_password_policy(_read_password())
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    scopes = list(dict.fromkeys([*(scope or []), *(["admin"] if admin else [])]))
    engine = _database(settings)
    hasher = PasswordHasher(settings.bcrypt_rounds, warm=False)
    try:
        with build_sessionmaker(engine)() as session:
            user = UserService(session).create(
                NewUser(
                    username=name,
                    password_hash=hasher.hash(password),
                    scopes=tuple(scopes),
                )
            )
    except UserExistsError:
        raise _fail(f"user {name!r} already exists") from None
    except UnknownScopeError as exc:
        raise _fail(str(exc)) from None
    finally:
        hasher.close()
        engine.dispose()
    typer.echo(f"Created user '{user.username}' ({user.id}) with scopes: {' '.join(scopes) or '-'}")


def _key_algorithm(settings: Settings) -> str:
    if settings.jwt_algorithm == "HS256":
        raise _fail("HS256 signs with AUTHSVC_JWT_SECRET; there are no key files to manage")
    return settings.jwt_algorithm


@keys_app.command("generate")
def keys_generate() -> None:
    """Create a signing key for the configured algorithm if there is none."""
    settings = _settings()
    algorithm = _key_algorithm(settings)
    try:
        key, created = ensure_signing_key(settings.keys_dir, algorithm)
    except KeyStoreError as exc:
        raise _fail(str(exc)) from None
    verb = "Generated" if created else "Already present:"
    typer.echo(f"{verb} {key.algorithm} key {key.kid} ({key.path})")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new signing key; older keys stay published for verification until deleted.

    Running servers verify and publish the new key within a second, and sign with it from
    their next start.
    """
    settings = _settings()
    algorithm = _key_algorithm(settings)
    try:
        key = rotate_key(settings.keys_dir, algorithm)
    except KeyStoreError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Rotated: new {key.algorithm} key {key.kid} ({key.path}) signs from the next start")
    _audit_key_rotation(settings, key.kid, key.algorithm)


def _audit_key_rotation(settings: Settings, kid: str, algorithm: str) -> None:
    engine = build_engine(settings)
    try:
        log = AuditLog(build_sessionmaker(engine))
        log.record(AuditType.KEY_ROTATED, actor_id="cli", kid=kid, algorithm=algorithm)
        log.flush()
    except SQLAlchemyError as exc:
        # The key is in place either way; a database not created yet is not an error here.
        typer.echo(f"note: the rotation is not in the audit trail ({type(exc).__name__})", err=True)
    finally:
        engine.dispose()


@keys_app.command("list")
def keys_list() -> None:
    """Show the keys in AUTHSVC_KEYS_DIR, newest first; * marks the signing key."""
    settings = _settings()
    algorithm = _key_algorithm(settings)
    try:
        key_set = KeySet(algorithm=algorithm, keys=tuple(load_keys(settings.keys_dir)))
    except KeyStoreError as exc:
        raise _fail(str(exc)) from None
    if not key_set.keys:
        typer.echo(f"No keys in {settings.keys_dir}")
        return
    for summary in iter_key_summaries(key_set):
        marker = "*" if summary["active"] else " "
        typer.echo(f"{marker} {summary['kid']}  {summary['alg']}  {summary['created']}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply Alembic migrations up to the newest revision."""
    settings = _settings()
    engine = build_engine(settings)
    try:
        upgrade(engine)
        revision = current_revision(engine)
    except OperationalError as exc:
        raise _fail(_db_error(exc)) from None
    finally:
        engine.dispose()
    typer.echo(f"Database at revision {revision}")


def main() -> None:
    app()

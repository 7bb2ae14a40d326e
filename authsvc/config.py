"""Settings, read from the environment (prefix ``AUTHSVC_``) and an optional ``.env`` file.

Nothing is instantiated at import time: ``create_app`` and the CLI build ``Settings()`` when
they need one, so tests can pass their own.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Algorithm = Literal["RS256", "ES256", "HS256"]
LogFormat = Literal["text", "json"]

ENV_PREFIX = "AUTHSVC_"
# A serialized origin as browsers send it (RFC 6454 §6.2): no path, no trailing slash.
_DEFAULT_PORTS = {"https": ":443", "http": ":80"}
_ORIGIN = re.compile(
    r"https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?", re.IGNORECASE
)


def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(
        ipaddress.ip_network(item.strip(), strict=False) for item in text.split(",") if item.strip()
    )


class SettingsError(Exception):
    """A setting is invalid; the message is one line that names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    database_url: str = "sqlite:///./authsvc.db"
    keys_dir: Path = Path("keys")
    issuer: str = "http://localhost:8000"
    audience: str = "authsvc"
    jwt_algorithm: Algorithm = "RS256"
    jwt_secret: SecretStr | None = None
    jwt_leeway: int = Field(default=30, ge=0, le=300)
    access_token_ttl: int = Field(default=900, ge=30, le=86400)
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)
    refresh_token_ttl: int = Field(default=14 * 86400, ge=60)
    require_registered_clients: bool = False
    purge_interval: int = Field(default=3600, ge=1)
    bootstrap_admin_username: str | None = None
    bootstrap_admin_password: SecretStr | None = None
    auto_migrate: bool = True
    db_pool_timeout: float = Field(default=5.0, gt=0)
    db_connect_timeout: int = Field(default=5, ge=1)
    # On SIGTERM: readiness turns 503 at once, in-flight requests get this long to finish.
    shutdown_timeout: int = Field(default=25, ge=0, le=3600)
    # Seconds between SIGTERM and closing the listener, while /readyz already answers 503.
    shutdown_delay: float = Field(default=0.0, ge=0, le=60)
    # Brute force (RFC 6749 §4.3.2, ASVS V6.3.1): this many consecutive failed logins lock an
    # account for lockout_duration seconds (0 turns lockout off). Per client address, this many
    # failed token, introspection or revocation requests within rate_limit_window seconds
    # answer 429 until the window ends (0 turns it off). Failures count (and logins while in
    # progress), so busy resource servers and client_credentials callers are not throttled.
    lockout_threshold: int = Field(default=5, ge=0, le=1000)
    lockout_duration: int = Field(default=900, ge=1, le=86400)
    rate_limit_failures: int = Field(default=20, ge=0, le=100000)
    rate_limit_window: int = Field(default=60, ge=1, le=86400)
    # Seconds a process keeps what token checks read (denylist, user, client, failure counts)
    # for read requests: another replica's revocation is seen within this. At most 1 s, the
    # bound we promise; 0 keeps nothing (requests in flight at once may still share a read).
    auth_cache_ttl: float = Field(default=0.5, ge=0, le=1)
    # Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For we believe.
    trusted_proxies: str = ""
    # Who may read GET /metrics: client addresses or networks (after trusted_proxies).
    # Empty: /metrics answers 404. With metrics_require_scope, a bearer token with the
    # "metrics" scope is needed as well (Prometheus can fetch one with client_credentials).
    metrics_networks: str = "127.0.0.0/8,::1"
    metrics_require_scope: bool = False
    # Redis for the access-token denylist and the rate-limit counters; unset: the database.
    redis_url: str | None = None
    # One line per request and every other log line: readable text, or one JSON object each.
    log_format: LogFormat = "text"
    # Bodies over this many bytes are refused with 413 before they are read whole.
    max_body_bytes: int = Field(default=1024 * 1024, ge=16 * 1024, le=1024 * 1024 * 1024)
    # Comma-separated browser origins (scheme://host[:port]) allowed to call the API from
    # scripts (CORS). Empty: no cross-origin access at all.
    cors_origins: str = ""
    # A cookie /auth/verify reads the bearer token from when no Authorization header is sent
    # (browsers behind a proxy). RFC 6265 cookie-name: an HTTP token.
    forward_auth_cookie: str | None = Field(
        default=None, pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$"
    )

    @field_validator("issuer")
    @classmethod
    def _issuer_is_http_url(cls, value: str) -> str:
        # RFC 8414 §2: the issuer is an https URL (http allowed here for local use) with no
        # query or fragment; we strip a trailing slash so "iss" and metadata match exactly.
        if not value.startswith(("https://", "http://")) or "?" in value or "#" in value:
            raise ValueError("must be an http(s) URL without query or fragment")
        return value.rstrip("/")

    @field_validator("trusted_proxies", "metrics_networks")
    @classmethod
    def _trusted_proxies_are_networks(cls, value: str) -> str:
        for item in value.split(","):
            if item.strip():
                try:
                    ipaddress.ip_network(item.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"not an address or network: {item.strip()!r}") from None
        return value

    @field_validator("cors_origins")
    @classmethod
    def _cors_origins_are_origins(cls, value: str) -> str:
        for item in value.split(","):
            origin = item.strip()
            if origin and not _ORIGIN.fullmatch(origin):
                # "*" included: with Authorization headers in play, every origin must be named.
                raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("audience")
    @classmethod
    def _audience_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_known(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _hs256_needs_secret(self) -> Settings:
        if self.jwt_algorithm == "HS256":
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            if len(secret.encode()) < 32:
                # RFC 7518 §3.2: the HMAC key must be at least as long as the hash output.
                raise ValueError(
                    "AUTHSVC_JWT_SECRET must be set to at least 32 bytes when "
                    "AUTHSVC_JWT_ALGORITHM is HS256"
                )
        if (self.bootstrap_admin_username is None) != (self.bootstrap_admin_password is None):
            raise ValueError(
                "AUTHSVC_BOOTSTRAP_ADMIN_USERNAME and AUTHSVC_BOOTSTRAP_ADMIN_PASSWORD "
                "must be set together"
            )
        return self

    @property
    def cors_origin_list(self) -> list[str]:
        # Browsers send scheme and host in lower case and leave out a default port; the match
        # is exact string equality.
        origins = [item.strip().lower() for item in self.cors_origins.split(",") if item.strip()]
        return [origin.removesuffix(_DEFAULT_PORTS[origin.split(":", 1)[0]]) for origin in origins]

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return _networks(self.trusted_proxies)

    @property
    def metrics_allowed_networks(
        self,
    ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return _networks(self.metrics_networks)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings() -> Settings:
    """Build settings from the environment, turning a validation error into one clear line."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
    except (UnicodeDecodeError, OSError) as exc:
        # python-dotenv reads .env inside Settings(); an unreadable file is a settings error.
        raise SettingsError(f"cannot read .env: {exc}") from None


def describe_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ())]
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    if loc:
        name = ENV_PREFIX + loc[0].upper()
        return f"invalid setting {name}: {message}"
    return f"invalid settings: {message}"

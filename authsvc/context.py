"""Everything a running app holds, built once in the lifespan and passed to dependencies.

Collaborators live here instead of in module globals, so every test builds its own app with
its own database and keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.oauth2.client_auth import ClientAuthenticator
from authsvc.observability.metrics import Metrics
from authsvc.security.keyring import KeyRing
from authsvc.security.keys import KeySet, build_key_set
from authsvc.security.network import Network
from authsvc.security.passwords import PasswordHasher
from authsvc.security.tokens import AccessTokenSigner, AccessTokenVerifier
from authsvc.services.audit import AuditLog
from authsvc.services.cache import TtlCache
from authsvc.services.counters import CounterStore, FailureLimiter, SqlCounterStore
from authsvc.services.denylist import Denylist, SqlDenylist
from authsvc.services.live_state import LiveState, watch_writes

if TYPE_CHECKING:
    from redis import Redis

    from authsvc.oauth2.rfc7009 import RevocationEndpoint
    from authsvc.oauth2.rfc7662 import IntrospectionEndpoint
    from authsvc.oauth2.token_endpoint import TokenEndpoint


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessionmaker: sessionmaker[Session]
    keys: KeyRing
    signer: AccessTokenSigner
    hasher: PasswordHasher
    client_authenticator: ClientAuthenticator
    failure_limiter: FailureLimiter
    denylist: Denylist
    live: LiveState
    redis: Redis | None
    # What a store that cannot be reached raises: answered 503 temporarily_unavailable.
    # Redis errors only when Redis is configured (the client is imported only then).
    unavailable_errors: tuple[type[Exception], ...]
    audit: AuditLog
    trusted_proxies: tuple[Network, ...]
    metrics: Metrics
    # RFC 8414 members contributed by endpoints beyond the core (revocation, introspection...).
    metadata_extra: dict[str, Any] = field(default_factory=dict)
    # Set by SIGTERM/SIGINT: /readyz answers 503 while in-flight requests finish.
    shutting_down: bool = False
    token_endpoint: TokenEndpoint = field(init=False)
    introspection_endpoint: IntrospectionEndpoint = field(init=False)
    revocation_endpoint: RevocationEndpoint = field(init=False)


DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, PoolTimeoutError)


def build_key_ring(settings: Settings, key_set: KeySet) -> KeyRing:
    verifier = AccessTokenVerifier(
        {},
        algorithms=[settings.jwt_algorithm],
        issuer=settings.issuer,
        audience=settings.audience,
        leeway=settings.jwt_leeway,
    )
    keys_dir = None if settings.jwt_algorithm == "HS256" else settings.keys_dir
    return KeyRing(key_set, verifier, keys_dir)


def load_key_set(settings: Settings) -> KeySet:
    secret = settings.jwt_secret.get_secret_value().encode() if settings.jwt_secret else None
    return build_key_set(settings.keys_dir, settings.jwt_algorithm, secret)


def build_context(settings: Settings, metrics: Metrics | None = None) -> AppContext:
    metrics = metrics if metrics is not None else Metrics()
    key_set = load_key_set(settings)
    engine = build_engine(settings)
    metrics.watch_pool(engine)
    sessions = build_sessionmaker(engine)
    audit = AuditLog(sessions, on_record=metrics.observe_audit)
    keys = build_key_ring(settings, key_set)
    metrics.count_keys(lambda: len(keys.jwks()["keys"]))
    token_state: TtlCache[Any] = TtlCache(settings.auth_cache_ttl)
    watch_writes(sessions, token_state)
    denylist: Denylist = SqlDenylist()
    counters: CounterStore = SqlCounterStore(sessions)
    client = None
    unavailable: tuple[type[Exception], ...] = DATABASE_UNAVAILABLE
    if settings.redis_url is not None:
        from redis.exceptions import RedisError

        from authsvc.services import redis_store

        unavailable = (*DATABASE_UNAVAILABLE, RedisError)
        client = redis_store.connect(settings.redis_url)
        denylist = redis_store.RedisDenylist(client, on_add=token_state.invalidate)
        counters = redis_store.RedisCounterStore(client)
    return AppContext(
        settings=settings,
        engine=engine,
        sessionmaker=sessions,
        keys=keys,
        signer=AccessTokenSigner(key_set.active),
        hasher=PasswordHasher(settings.bcrypt_rounds, timer=metrics.time_hash),
        client_authenticator=ClientAuthenticator(
            sessions,
            audit,
            require_registered=settings.require_registered_clients,
            cache=token_state,
        ),
        denylist=denylist,
        live=LiveState(sessions, denylist, token_state),
        redis=client,
        unavailable_errors=unavailable,
        failure_limiter=FailureLimiter(
            counters,
            limit=settings.rate_limit_failures,
            window=settings.rate_limit_window,
            cache_ttl=settings.auth_cache_ttl,
        ),
        trusted_proxies=settings.trusted_networks,
        audit=audit,
        metrics=metrics,
    )

"""Prometheus metrics, one registry per app (``create_app`` builds it; nothing at import).

What is counted, and where it comes from:
- requests and their latency, by route template and status: the request log's numbers;
- tokens issued, login failures, lockouts, refresh-token reuse, revocations: the audit
  trail's events, so the numbers and the trail cannot disagree;
- password-hash time: the hasher; pool connections in use: the engine's checkout events;
- signing keys published: read from the key ring when scraped.

Labels are bounded: route templates (never raw paths), grant types, the failure reasons the
service names, and registered client ids only (the audit trail's ``client_id``, which is never
the text of an unregistered id: it may be a misplaced secret).

With ``PROMETHEUS_MULTIPROC_DIR`` set (several uvicorn workers), prometheus-client keeps every
value in files there and a scrape of any worker adds them up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder
from sqlalchemy import Engine, event

from authsvc.services.audit import FAILURE, AuditRecord, AuditType

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Requests that matched no route: one label value, not one per path tried.
UNMATCHED_ROUTE = "(unmatched)"
_NO_CLIENT = "(none)"
# The method is the client's text: any other counts as one label value, not one per spelling.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OTHER_METHOD = "(other)"
_COUNTED = "authsvc.metrics.checked_out"
# Event type -> the revocation kind it counts as.
_REVOCATIONS = {
    AuditType.SESSION_REVOKED.value: "session",
    AuditType.USER_SESSIONS_REVOKED.value: "all_sessions",
}
_ISSUED = {AuditType.TOKEN_ISSUED.value, AuditType.TOKEN_REFRESHED.value}


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_DIR_ENV) or None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._multiprocess = multiprocess_dir() is not None
        self._key_count: Callable[[], int] | None = None
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        r = self.registry
        self.requests = Counter(
            "authsvc_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "authsvc_http_request_duration_seconds",
            "Time from request to the end of the answer, by route template and method",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.tokens_issued = Counter(
            "authsvc_tokens_issued",
            "Access tokens issued, by grant type and registered client",
            ["grant_type", "client_id"],
            registry=r,
        )
        self.login_failures = Counter(
            "authsvc_login_failures",
            "Refused password logins, by reason",
            ["reason"],
            registry=r,
        )
        self.lockouts = Counter(
            "authsvc_lockouts", "Accounts locked after repeated failures", registry=r
        )
        self.refresh_reuse = Counter(
            "authsvc_refresh_reuse_detections",
            "Consumed refresh tokens presented again (their family is revoked)",
            registry=r,
        )
        self.revocations = Counter(
            "authsvc_revocations",
            "Tokens and sessions revoked, by kind",
            ["kind"],
            registry=r,
        )
        self.client_auth_failures = Counter(
            "authsvc_client_auth_failures", "Failed client authentications", registry=r
        )
        self.hash_seconds = Histogram(
            "authsvc_password_hash_duration_seconds",
            "bcrypt work per call, by operation (queueing for the hashing pool excluded)",
            ["operation"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2),
            registry=r,
        )
        self.pool_in_use = Gauge(
            "authsvc_db_pool_connections_in_use",
            "Database connections checked out of the pool",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.jwks_keys = Gauge(
            "authsvc_jwks_keys",
            "Keys published in the JWKS",
            registry=r,
            multiprocess_mode="mostrecent",
        )

    # --- sources ---------------------------------------------------------------------------

    def observe_request(self, route: str | None, method: str, status: int, seconds: float) -> None:
        key = (route or UNMATCHED_ROUTE, method if method in _METHODS else _OTHER_METHOD, status)
        # The labelled children, found once per key: labels() costs more than the counting.
        children = self._request_children.get(key)
        if children is None:
            template, verb, _ = key
            children = (
                self.requests.labels(template, verb, str(status)),
                self.latency.labels(template, verb),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_audit(self, record: AuditRecord) -> None:
        """Count what the audit trail records: called for every event as it is queued."""
        kind = record.type
        details = record.details or {}
        if kind in _ISSUED:
            grant_type = str(details.get("grant_type", "unknown"))
            self.tokens_issued.labels(grant_type, record.client_id or _NO_CLIENT).inc()
        elif kind == AuditType.LOGIN_FAILED.value:
            self.login_failures.labels(str(details.get("reason", "unknown"))).inc()
        elif kind == AuditType.ACCOUNT_LOCKED.value:
            self.lockouts.inc()
        elif kind == AuditType.REFRESH_REUSE_DETECTED.value:
            self.refresh_reuse.inc()
        elif kind == AuditType.TOKEN_REVOKED.value:
            self.revocations.labels(str(details.get("token_type", "unknown"))).inc()
        elif kind in _REVOCATIONS and record.outcome != FAILURE:
            self.revocations.labels(_REVOCATIONS[kind]).inc()
        elif kind == AuditType.CLIENT_AUTH_FAILED.value:
            self.client_auth_failures.inc()

    @contextmanager
    def time_hash(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.hash_seconds.labels(operation).observe(time.perf_counter() - started)

    def watch_pool(self, engine: Engine) -> None:
        # Checkout and checkin events rather than a look at the pool when scraped: with
        # several workers, each one's count is kept in the shared files and summed.
        # SQLAlchemy also fires "checkin" for a checkout that failed (its pre-ping and the
        # reconnect both failed): only a connection marked on its way out is counted back in.
        # record_info, unlike info, survives the connection being invalidated.
        def checked_out(_dbapi: Any, record: Any, _proxy: Any) -> None:
            record.record_info[_COUNTED] = True
            self.pool_in_use.inc()

        def checked_in(_dbapi: Any, record: Any) -> None:
            if record is not None and record.record_info.pop(_COUNTED, False):
                self.pool_in_use.dec()

        event.listen(engine, "checkout", checked_out)
        event.listen(engine, "checkin", checked_in)

    def count_keys(self, key_count: Callable[[], int]) -> None:
        self._key_count = key_count

    # --- the scrape ------------------------------------------------------------------------

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The scrape's body and content type, in the format its Accept header asks for
        (text 0.0.4 by default, OpenMetrics when asked)."""
        if self._key_count is not None:
            self.jwks_keys.set(self._key_count())
        encode, content_type = choose_encoder(accept)
        if not self._multiprocess:
            return encode(self.registry), content_type
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return encode(registry), content_type

    def process_exited(self) -> None:
        """A worker stopping: its live gauges stop counting in the shared files."""
        if self._multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

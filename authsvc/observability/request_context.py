"""Who a request turned out to be for, noted where it is learnt, read when it is logged.

The request log is written by a middleware that sees only the request and the response; the
client and the subject are learnt deep inside (client authentication, bearer verification,
a grant). A context variable carries one mutable ``RequestInfo`` per request from the
middleware down, through ``run_in_threadpool`` too (it copies the context, and the object in
it is shared), without threading a parameter through every layer.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

_CURRENT: ContextVar[RequestInfo | None] = ContextVar("authsvc_request", default=None)


@dataclass
class RequestInfo:
    request_id: str
    client_id: str | None = None
    subject: str | None = None


def begin(request_id: str) -> RequestInfo:
    info = RequestInfo(request_id)
    _CURRENT.set(info)
    return info


def current() -> RequestInfo | None:
    return _CURRENT.get()


def note_principal(*, client_id: str | None = None, subject: str | None = None) -> None:
    """Record the request's client and subject (user id, or client id for a client token).

    Only identifiers: never a username a caller typed, a secret or a token. A no-op outside a
    logged request (tests calling services directly, background tasks).
    """
    info = _CURRENT.get()
    if info is None:
        return
    if client_id is not None:
        info.client_id = client_id
    if subject is not None:
        info.subject = subject

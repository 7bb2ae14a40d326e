"""``GET /metrics``: Prometheus's text format, for the addresses (and the scope) settings allow.

From any other address the route does not exist (404): scanners learn nothing. With
``AUTHSVC_METRICS_REQUIRE_SCOPE`` a bearer token holding the ``metrics`` scope is needed as
well; Prometheus's ``oauth2`` scrape option fetches one with client_credentials.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, HTTPException, Request, Response, status

from authsvc.api.deps import ContextDep, authorize_token
from authsvc.api.responses import SCOPED, detail
from authsvc.oauth2.bearer import require_token, token_from_authorization
from authsvc.security.network import Network, caller_of, in_networks

METRICS_SCOPE = "metrics"

router = APIRouter(tags=["operations"])


def _forwarded_by_an_unknown_proxy(request: Request, trusted: Sequence[Network]) -> bool:
    """A proxy on this host, not listed in AUTHSVC_TRUSTED_PROXIES, makes every client look
    local: a forwarded request from a peer we do not trust cannot show where it came from."""
    headers = request.headers
    if "x-forwarded-for" not in headers and "forwarded" not in headers:
        return False
    peer = request.client.host if request.client else None
    return not in_networks(peer, trusted)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {}, "application/openmetrics-text": {}},
            "description": "Prometheus text format 0.0.4, or what the Accept header asks for",
        },
        **SCOPED,
        404: detail("Not served to this address"),
    },
)
async def metrics(request: Request, ctx: ContextDep) -> Response:
    settings = ctx.settings
    caller = caller_of(request, ctx.trusted_proxies)
    if _forwarded_by_an_unknown_proxy(request, ctx.trusted_proxies) or not in_networks(
        caller.ip, settings.metrics_allowed_networks
    ):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    if settings.metrics_require_scope:
        token = require_token(token_from_authorization(request.headers.getlist("authorization")))
        await authorize_token(ctx, token, [METRICS_SCOPE])
    body, content_type = ctx.metrics.exposition(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)

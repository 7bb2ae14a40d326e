"""``/docs`` and ``/redoc`` served entirely from our own origin.

FastAPI's default pages load Swagger UI and ReDoc from a CDN: they break on a closed network
and put a third party into the page that handles admin passwords. The assets come from the
``fastapi-offline`` package instead, mounted under ``/docs/static``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/docs/static"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
REDOC_JS = "redoc.standalone.js"
# ReDoc's sidebar credit loads its logo from Redocly's CDN on every page view; an empty inline
# SVG keeps the page entirely on our origin.
_REDOC_LOGO_URL = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_SVG = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


def _static_dir() -> Path:
    return Path(str(files("fastapi_offline").joinpath("static")))


def _redoc_script() -> bytes:
    return (_static_dir() / REDOC_JS).read_bytes().replace(_REDOC_LOGO_URL, _EMPTY_SVG)


def install_docs(app: FastAPI) -> None:
    """Add the docs pages to an app created with ``docs_url=None, redoc_url=None``."""
    openapi_url = app.openapi_url or "/openapi.json"
    redoc_script: list[bytes] = []

    # Registered before the static mount so this path is served patched, read once.
    @app.get(f"{STATIC_URL}/{REDOC_JS}", include_in_schema=False)
    async def redoc_js() -> Response:
        if not redoc_script:
            redoc_script.append(_redoc_script())
        return Response(
            redoc_script[0],
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.mount(STATIC_URL, StaticFiles(directory=_static_dir()), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API docs",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API reference",
            redoc_js_url=f"{STATIC_URL}/{REDOC_JS}",
            redoc_favicon_url=f"{STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )

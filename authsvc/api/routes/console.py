"""``/console``: the admin console, static files shipped in the package.

The page signs an admin in through ``/oauth2/token`` and then calls the public admin API
only; the token lives in a JavaScript variable (gone with the tab, never in storage). Its
policy allows scripts, styles and requests from this origin alone: no inline script, no
other origin, no framing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

CONSOLE_DIR = Path(__file__).resolve().parent.parent.parent / "console"
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

router = APIRouter(include_in_schema=False)


@router.get("/console")
async def console_page() -> FileResponse:
    return FileResponse(
        CONSOLE_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": CONSOLE_CSP, "Cache-Control": "no-store"},
    )


@router.get("/console/{asset}")
async def console_asset(asset: str) -> FileResponse:
    # A fixed list, not a directory: no path from the URL ever reaches the file system.
    media_type = _ASSETS.get(asset)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    return FileResponse(CONSOLE_DIR / asset, media_type=media_type)

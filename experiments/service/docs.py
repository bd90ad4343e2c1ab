"""``/docs`` (Swagger UI) and ``/redoc`` with every asset served by the service itself: no page loads
anything from another host (FastAPI's defaults load their scripts from a CDN and fonts from Google).

The scripts and styles come from the ``fastapi-offline`` package (Swagger UI 5 and ReDoc bundles); the
few files are read once and served under ``/docs/assets/`` from a fixed list (no path is built from
the request). Both pages carry a Content-Security-Policy that lets the browser load nothing but this
host's own resources, and Swagger UI's validator badge (a request to validator.swagger.io) is off.
"""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

__all__ = ["ASSETS", "CSP", "router"]

#: asset name -> media type (the files of fastapi_offline/static/)
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
_BASE = "/docs/assets/"
#: the browser may load nothing from another host (inline script: the page's own SwaggerUIBundle call)
CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

router = APIRouter(include_in_schema=False)


@functools.cache
def _asset(name: str) -> bytes:
    return (resources.files("fastapi_offline") / "static" / name).read_bytes()


def _page(html: HTMLResponse) -> HTMLResponse:
    html.headers.update(_HEADERS)
    return html


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return _page(get_swagger_ui_html(
        openapi_url="/openapi.json", title=f"{request.app.title} - Swagger UI", oauth2_redirect_url=None,
        swagger_js_url=_BASE + "swagger-ui-bundle.js", swagger_css_url=_BASE + "swagger-ui.css",
        swagger_favicon_url=_BASE + "favicon.png", swagger_ui_parameters={"validatorUrl": None}))


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return _page(get_redoc_html(openapi_url="/openapi.json", title=f"{request.app.title} - ReDoc",
                                redoc_js_url=_BASE + "redoc.standalone.js", redoc_favicon_url=_BASE + "favicon.png",
                                with_google_fonts=False))


@router.get(_BASE + "{name}")
def asset(name: str) -> Response:
    """One of :data:`ASSETS` (404 for any other name)."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, f"no such asset; the docs' assets are {', '.join(ASSETS)}")
    return Response(_asset(name), media_type=media_type,
                    headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})

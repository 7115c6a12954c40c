"""Swagger UI at /docs, served whole by the service so that it works offline.

FastAPI's own /docs loads the Swagger UI script and stylesheet from a CDN and its
favicon from fastapi.tiangolo.com, so the page is blank without internet access. Here
the page is FastAPI's (`get_swagger_ui_html`), but every asset it references comes from
this origin: the Swagger UI distribution shipped by the `fastapi-swagger` package."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

DIST = "fastapi_swagger.resources"
# The files of the distribution that the page loads, by the name they are served under.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
# The files change only with the package, and a new version may change them.
CACHE_CONTROL = "public, max-age=3600"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """The Swagger UI page for this service's OpenAPI document."""
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=root + str(request.app.openapi_url),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}/docs/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/docs/swagger-ui.css",
        swagger_favicon_url=f"{root}/docs/favicon-32x32.png",
    )


@router.get("/docs/{name}")
async def swagger_ui_asset(name: str) -> Response:
    """One file of the Swagger UI distribution."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404)
    headers = {"Cache-Control": CACHE_CONTROL}
    return Response(asset(name), media_type=media_type, headers=headers)


@cache
def asset(name: str) -> bytes:
    return files(DIST).joinpath(name).read_bytes()

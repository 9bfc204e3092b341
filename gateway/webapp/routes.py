"""GET /app/: the reference dApp page and its files, from the package's data.

The page's script is viem and the page's own modules bundled at build time (``web/``), so
nothing is fetched from a CDN; the Content-Security-Policy allows only this origin's files
and calls to this origin (HTTP and WebSocket).
"""

from __future__ import annotations

import functools
from importlib import resources

from aiohttp import web

from gateway.openapi import Parameter, operation

_FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

routes = web.RouteTableDef()


@functools.cache
def _file(name: str) -> bytes:
    """A file of the page, read once: package data does not change while the process runs."""
    return (resources.files("gateway.webapp") / "static" / name).read_bytes()


@routes.get("/app")
@operation(
    summary="The reference dApp page (redirects to /app/)", tag="app", responses={308: "To /app/"}
)
async def app_root(_request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect("/app/")


@routes.get("/app/{name:[a-z.]*}")
@operation(
    summary="The reference dApp page and its script and style",
    tag="app",
    parameters=(Parameter("name", "path", "index.html (default), app.js, app.css or favicon.svg"),),
    responses={200: "The file", 404: "No such file"},
)
async def app_file(request: web.Request) -> web.Response:
    name = request.match_info["name"] or "index.html"
    content_type = _FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound
    return web.Response(
        body=_file(name),
        content_type=content_type,
        charset=None if content_type.startswith("image/") else "utf-8",
        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"},
    )

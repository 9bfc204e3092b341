"""Cross-origin calls from browsers (CORS) for the origins in ``server.cors_origins``.

A dApp served from https://app.example.com calling the gateway at another origin needs the
browser's permission: a preflight (OPTIONS with Access-Control-Request-Method) answered
here, and Access-Control-Allow-Origin on every answer, errors included (the browser hides
an error body from the page otherwise). Credentials (cookies) are not allowed across
origins: the session cookie is SameSite=Strict by design; pages send the token as
``Authorization: Bearer``. The middleware is installed only when origins are configured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.error_responses import error_response, render_exception
from gateway.errors import Forbidden

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = (
    "Authorization, Content-Type, X-Request-ID, X-Operator-Token, traceparent, tracestate"
)
# What a page may read of an answer: its request id, when to retry, and how a JSON-RPC
# answer was made (``rpc/explain.py``).
EXPOSE_HEADERS = (
    "X-Request-ID, Retry-After, X-Gateway-Cache, X-Gateway-Upstream, X-Gateway-Attempts, "
    "X-Gateway-Block, X-Gateway-Consensus, Server-Timing"
)
MAX_AGE_S = "600"


class OriginNotAllowed(Forbidden):
    code = "cors.origin_not_allowed"
    default_message = "this origin may not call the gateway from a browser"


def cors_middleware(origins: tuple[str, ...]) -> Middleware:
    """Sits inside the request middleware; it renders a handler's error itself, so that the
    rendered error gets its headers."""
    any_origin = "*" in origins
    allowed = frozenset(origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:  # not a cross-origin browser call
            return await handler(request)  # errors are rendered by the request middleware
        permitted = any_origin or origin.lower() in allowed
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if not permitted:
                return error_response(OriginNotAllowed())
            if request.match_info.http_exception is not None and not isinstance(
                request.match_info.http_exception, web.HTTPMethodNotAllowed
            ):
                return await _rendered(request, handler)  # no such route: its 404
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE_S
        else:
            response = await _rendered(request, handler)
        if permitted and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = "*" if any_origin else origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
            if not any_origin:
                response.headers["Vary"] = "Origin"
        return response

    return cors


async def _rendered(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:  # noqa: BLE001  # rendered here so that it gets the CORS headers
        return render_exception(request, exc)

"""Renders every REST error once, as the API contract's JSON body; never a stack trace.

``render_exception`` is called by the request middleware (``telemetry.middleware``), which
sits outermost, and by the CORS middleware when it is installed (it must see the rendered
error to add its headers).
"""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from gateway.bodies import BadBodyEncoding
from gateway.config import SETTINGS
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)
from gateway.telemetry.state import REQUEST_ID

log = structlog.get_logger("gateway.errors")


def error_response(error: GatewayError) -> web.Response:
    return web.json_response(error.to_body(), status=error.http_status, headers=error.headers())


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> GatewayError:
    """aiohttp raises these itself (routing, body limit); give them our codes and body."""
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("no such route")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(
            f"method {exc.method} not allowed here", allowed=frozenset(exc.allowed_methods)
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = request.app[SETTINGS].server.max_body_bytes
        return PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    error = InvalidRequest(exc.reason, code=f"http.{exc.status}")
    error.http_status = exc.status  # keep aiohttp's own 4xx status
    return error


def render_exception(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The response for an exception a handler raised; re-raises a redirect or a 2xx."""
    if isinstance(exc, GatewayError):
        if exc.http_status >= 500:
            log.warning("request failed", code=exc.code, detail=exc.detail or exc.message)
        return error_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:  # redirects and 204s raised as exceptions pass through
            raise exc
        return error_response(_from_http_exception(request, exc))
    if isinstance(exc, RequestPayloadError):  # raised while reading the body: a broken deflate
        reason = str(exc).replace("\n", " ")[:200]
        return error_response(BadBodyEncoding(f"request body cannot be read: {reason}"))
    # The catch-all boundary: log the stack, hide it from the client.
    log.error("unhandled error", exc_info=exc)
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    body = GatewayError().to_body()
    body["error"]["requestId"] = request.get(REQUEST_ID)
    return web.json_response(body, status=500)

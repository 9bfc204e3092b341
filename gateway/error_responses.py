"""Renders every REST error once, as the API contract's JSON body; never a stack trace.

``render_exception`` is called by the request middleware (``telemetry.middleware``), which
sits outermost, and by the CORS middleware when it is installed (it must see the rendered
error to add its headers).
"""

from __future__ import annotations

import json

import structlog
from aiohttp import web
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


ERROR_CONTENT_TYPE = "application/json; charset=utf-8"


def error_body(error: GatewayError) -> bytes:
    """A refusal's JSON body, as every transport sends it (5xx ones logged once here)."""
    if error.http_status >= 500:
        log.warning("request failed", code=error.code, detail=error.detail or error.message)
    return json.dumps(error.to_body()).encode()


def unhandled_body(exc: BaseException, request_id: str | None) -> bytes:
    """The 500's body for an error nothing else caught: the stack is logged, never shown."""
    log.error("unhandled error", exc_info=exc)
    body = GatewayError().to_body()
    body["error"]["requestId"] = request_id
    return json.dumps(body).encode()


def error_response(error: GatewayError) -> web.Response:
    return web.Response(
        body=error_body(error),
        status=error.http_status,
        headers=error.headers(),
        content_type="application/json",
        charset="utf-8",
    )


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
        return error_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:  # redirects and 204s raised as exceptions pass through
            raise exc
        return error_response(_from_http_exception(request, exc))
    if isinstance(exc, web.RequestPayloadError):  # raised while reading the body: a broken deflate
        reason = str(exc).replace("\n", " ")[:200]
        return error_response(BadBodyEncoding(f"request body cannot be read: {reason}"))
    # The catch-all boundary: log the stack, hide it from the client.
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    return web.Response(
        body=unhandled_body(exc, request.get(REQUEST_ID)),
        status=500,
        content_type="application/json",
        charset="utf-8",
    )

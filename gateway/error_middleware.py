"""Renders every REST error once, as the API contract's JSON body; never a stack trace."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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
from gateway.telemetry import REQUEST_ID

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

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


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as error:
        if error.http_status >= 500:
            log.warning("request failed", code=error.code, detail=error.detail or error.message)
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and 204s raised as exceptions pass through
            raise
        return error_response(_from_http_exception(request, exc))
    except RequestPayloadError as exc:  # raised while reading the body: a broken deflate
        reason = str(exc).replace("\n", " ")[:200]
        return error_response(BadBodyEncoding(f"request body cannot be read: {reason}"))
    except Exception as exc:  # the catch-all boundary: log the stack, hide it from the client
        log.exception("unhandled error")
        span = trace.get_current_span()
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        body = GatewayError().to_body()
        body["error"]["requestId"] = request.get(REQUEST_ID)
        return web.json_response(body, status=500)

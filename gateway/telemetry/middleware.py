"""The request middleware: aiohttp's transport over the request scope (``scope``), and the
error rendering of the app, once per request, in one layer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.caller import client_ip
from gateway.telemetry.logging import Facts
from gateway.telemetry.metrics import HTTP_METHODS
from gateway.telemetry.scope import CLIENT_CLOSED, open_scope, request_id_from
from gateway.telemetry.state import REQUEST_ID, TELEMETRY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RenderError = Callable[[web.Request, Exception], web.StreamResponse]

REQUEST_ID_HEADER = "X-Request-ID"
_UNMATCHED = "unmatched"
# What reading a request raises once its client is gone (aiohttp fails the body's stream
# with a ConnectionResetError; a body cut short is an IncompleteReadError).
_HANG_UP = (ConnectionError, asyncio.IncompleteReadError)

# How a response was made, as its X-Gateway-* headers say (the JSON-RPC answer sets it):
# the access line and the server span carry the same facts.
FACTS = web.ResponseKey("gateway_facts", Facts)


def client_gone(request: web.Request) -> bool:
    """Whether the request's connection is closed or closing."""
    transport = request.transport
    return transport is None or transport.is_closing()


def request_id_for(request: web.Request) -> str:
    return request_id_from(request.headers.get(REQUEST_ID_HEADER))


def route_template(request: web.Request) -> str:
    """The bounded route label: the route's template, never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else _UNMATCHED


def request_middleware(render_error: RenderError) -> Middleware:
    """The outermost middleware; ``render_error`` turns a handler's exception into the
    response the client gets (the app's error rendering; telemetry does not know it)."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        telemetry = request.app[TELEMETRY]
        request_id = request_id_for(request)
        request[REQUEST_ID] = request_id
        scope = open_scope(
            telemetry,
            method=request.method,
            method_label=request.method if request.method in HTTP_METHODS else "other",
            route=route_template(request),
            path=request.path,
            request_id=request_id,
            carrier=request.headers,
        )
        response: web.StreamResponse | None = None
        status = 500  # what the client sees if the handler is cancelled
        try:
            try:
                response = await handler(request)
            except asyncio.CancelledError:
                if client_gone(request):
                    status = CLIENT_CLOSED
                raise
            except Exception as exc:  # noqa: BLE001  # rendered: the client gets JSON, never a trace
                if client_gone(request) and isinstance(exc, _HANG_UP):
                    response = web.Response(status=CLIENT_CLOSED, reason="Client Closed Request")
                else:
                    response = render_error(request, exc)
            status = response.status
            if not response.prepared:  # streamed responses set it themselves (set_request_id)
                _set_headers(response, request_id)
        except web.HTTPException as exc:  # a redirect re-raised by render_error
            status = exc.status
            raise
        finally:
            ip = (
                client_ip(request, trust_forwarded_for=telemetry.trust_forwarded_for)
                if telemetry.access_log
                else ""
            )
            facts = response.get(FACTS) if response is not None else None
            scope.finish(status, _body_bytes(response), ip, facts)
            scope.leave()
        return response

    return observe


def _body_bytes(response: web.StreamResponse | None) -> int:
    if response is None:
        return 0
    if response.prepared:  # streamed by the handler itself (WebSocket, large bodies)
        return response.body_length
    return response.content_length or 0


def set_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """For handlers that prepare their own response (WebSocket, streaming): the middleware
    sets the headers on every other response, cheaper than an on_response_prepare signal."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        _set_headers(response, request_id)


def _set_headers(response: web.StreamResponse, request_id: str) -> None:
    """The request id, and two hardening defaults: no server/version banner (aiohttp's says
    "Python/3.x aiohttp/3.y"), and browsers must not sniff a JSON body into something else."""
    headers = response.headers
    headers[REQUEST_ID_HEADER] = request_id
    headers["Server"] = "gateway"
    headers["X-Content-Type-Options"] = "nosniff"

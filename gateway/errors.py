"""One error hierarchy for the whole gateway, rendered once at each boundary.

::

    GatewayError                      500  -32603  internal
    ├── InvalidRequest                400  -32600  request.invalid
    │   ├── MalformedJSON             400  -32700  request.malformed_json
    │   └── InvalidParams             422  -32602  request.invalid_params
    ├── Unauthenticated               401  -32001  auth.unauthenticated
    ├── Forbidden                     403  -32601  forbidden
    ├── NotFound                      404  -32601  not_found
    ├── MethodNotAllowed              405  -32601  method_not_allowed
    ├── Conflict                      409  -32600  conflict
    ├── PayloadTooLarge               413  -32600  request.too_large
    ├── RateLimited                   429  -32005  rate_limited      (carries Retry-After)
    └── Unavailable                   503  -32603  unavailable
        ├── UpstreamError             502  -32002  upstream.error
        │   └── UpstreamTimeout       504  -32002  upstream.timeout
        └── StorageUnavailable        503  -32603  storage.unavailable

    SettingsError: raised at start-up only, never rendered to a client.

Each class carries its HTTP status, JSON-RPC code and stable dotted code; an instance
carries a client-safe ``message`` and, separately, a ``detail`` that is only logged.
REST errors become ``{"error": {"code", "message"}}`` in the error middleware; the
JSON-RPC handler renders the same classes as JSON-RPC 2.0 error objects.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    """Base of every error the gateway turns into a response."""

    # Class defaults; an instance may refine them (aiohttp's own 4xx keep their status).
    http_status: int = 500
    rpc_code: int = -32603
    code: str = "internal"
    default_message: ClassVar[str] = "internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        detail: str | None = None,
        data: object = None,
    ) -> None:
        self.message = message or self.default_message
        if code is not None:
            self.code = code
        self.detail = detail
        self.data = data
        super().__init__(self.message)

    def to_body(self) -> dict[str, Any]:
        """The REST error body of the API contract."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return {"error": error}

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(GatewayError):
    http_status = 400
    rpc_code = -32600
    code = "request.invalid"
    default_message = "invalid request"


class MalformedJSON(InvalidRequest):
    rpc_code = -32700
    code = "request.malformed_json"
    default_message = "request body is not valid JSON"


class InvalidParams(InvalidRequest):
    http_status = 422
    rpc_code = -32602
    code = "request.invalid_params"
    default_message = "invalid parameters"


class Unauthenticated(GatewayError):
    http_status = 401
    rpc_code = -32001
    code = "auth.unauthenticated"
    default_message = "authentication required"


class Forbidden(GatewayError):
    http_status = 403
    rpc_code = -32601
    code = "forbidden"
    default_message = "forbidden"


class NotFound(GatewayError):
    http_status = 404
    rpc_code = -32601
    code = "not_found"
    default_message = "not found"


class MethodNotAllowed(GatewayError):
    http_status = 405
    rpc_code = -32601
    code = "method_not_allowed"
    default_message = "method not allowed"

    def __init__(
        self, message: str | None = None, *, allowed: frozenset[str] = frozenset()
    ) -> None:
        super().__init__(message)
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(sorted(self.allowed))} if self.allowed else {}


class Conflict(GatewayError):
    http_status = 409
    rpc_code = -32600
    code = "conflict"
    default_message = "conflict"


class PayloadTooLarge(GatewayError):
    http_status = 413
    rpc_code = -32600
    code = "request.too_large"
    default_message = "request body too large"


class RateLimited(GatewayError):
    http_status = 429
    rpc_code = -32005
    code = "rate_limited"
    default_message = "rate limit exceeded"

    def __init__(self, message: str | None = None, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": retry_after(self.retry_after_s)}


def retry_after(wait_s: float) -> str:
    """A Retry-After value: whole seconds, rounded up so a client that obeys it succeeds."""
    return str(max(1, int(-(-wait_s // 1))))


class Unavailable(GatewayError):
    http_status = 503
    rpc_code = -32603
    code = "unavailable"
    default_message = "service unavailable"


class UpstreamError(Unavailable):
    http_status = 502
    rpc_code = -32002
    code = "upstream.error"
    default_message = "upstream node error"
    # Whether the node may have got the request (a write must then not be sent elsewhere);
    # only a connection never made says False.
    received: bool = True


class UpstreamTimeout(UpstreamError):
    http_status = 504
    code = "upstream.timeout"
    default_message = "upstream node timed out"


class StorageUnavailable(Unavailable):
    code = "storage.unavailable"
    default_message = "storage unavailable"


class SettingsError(Exception):
    """Invalid configuration; raised at start-up with every problem, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))

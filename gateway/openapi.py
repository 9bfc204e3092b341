"""OpenAPI 3.1 from the routes themselves: each handler declares its operation and models."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from gateway.build import build_version

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

_OPERATION_ATTR = "__gateway_operation__"


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable dotted error code, e.g. `request.too_large`.")
    message: str = Field(description="Human-readable explanation; safe to show.")
    requestId: str | None = Field(default=None, description="Set on internal errors.")  # noqa: N815  # the API's JSON is camelCase


class ErrorBody(BaseModel):
    """Every error of the REST API."""

    error: ErrorDetail


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    location: Literal["query", "path", "header", "cookie"]
    description: str
    required: bool = False
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    tag: str
    responses: Mapping[int, type[BaseModel] | str]
    request: type[BaseModel] | None = None
    parameters: tuple[Parameter, ...] = ()
    description: str = ""
    content_type: str = "application/json"


def operation(  # noqa: PLR0913  # the fields of an OpenAPI operation
    *,
    summary: str,
    tag: str,
    responses: Mapping[int, type[BaseModel] | str],
    request: type[BaseModel] | None = None,
    parameters: tuple[Parameter, ...] = (),
    description: str = "",
    content_type: str = "application/json",
) -> Callable[[H], H]:
    """Attach an OpenAPI operation to a handler; the document is built from the router."""
    spec = Operation(summary, tag, responses, request, parameters, description, content_type)

    def attach(handler: H) -> H:
        setattr(handler, _OPERATION_ATTR, spec)
        return handler

    return attach


def operation_of(handler: object) -> Operation | None:
    return getattr(handler, _OPERATION_ATTR, None)


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route registered on ``app``."""
    models: set[type[BaseModel]] = {ErrorBody}
    collected: list[tuple[str, str, Operation]] = []
    for route in app.router.routes():
        spec = operation_of(route.handler)
        if spec is None or route.resource is None or route.method == "HEAD":
            continue
        collected.append((route.resource.canonical, route.method.lower(), spec))
        models.update(m for m in spec.responses.values() if isinstance(m, type))
        if spec.request is not None:
            models.add(spec.request)
    _, schemas = models_json_schema(
        [(model, "serialization") for model in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for path, method, spec in sorted(collected, key=lambda item: (item[0], item[1])):
        paths.setdefault(path, {})[method] = _operation_object(spec)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dApp gateway",
            "version": build_version(),
            "description": "Sign-In with Ethereum, JSON-RPC gateway and signed records, "
            "observable end to end.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation_object(spec: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, model in sorted(spec.responses.items()):
        if isinstance(model, str):
            responses[str(status)] = {"description": model}
        else:
            media = spec.content_type if status < 400 else "application/json"
            responses[str(status)] = {
                "description": (model.__doc__ or model.__name__).strip().splitlines()[0],
                "content": {media: {"schema": _ref(model)}},
            }
    result: dict[str, Any] = {
        "summary": spec.summary,
        "tags": [spec.tag],
        "responses": responses,
    }
    if spec.description:
        result["description"] = spec.description
    if spec.parameters:
        result["parameters"] = [
            {
                "name": p.name,
                "in": p.location,
                "description": p.description,
                "required": p.required or p.location == "path",
                "schema": dict(p.schema),
            }
            for p in spec.parameters
        ]
    if spec.request is not None:
        result["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(spec.request)}},
        }
    return result


routes = web.RouteTableDef()


class OpenAPIDocument(BaseModel):
    """The OpenAPI 3.1 document of this API."""

    openapi: str


@routes.get("/openapi.json")
@operation(summary="This API as OpenAPI 3.1", tag="operations", responses={200: OpenAPIDocument})
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(build_document(request.app))


@routes.get("/docs")
@operation(
    summary="API reference page (works offline)",
    tag="operations",
    responses={200: "An HTML page that renders /openapi.json"},
    content_type="text/html",
)
async def docs_page(_request: web.Request) -> web.Response:
    page = resources.files("gateway").joinpath("docs.html").read_text(encoding="utf-8")
    return web.Response(
        text=page, content_type="text/html", headers={"Content-Security-Policy": _DOCS_CSP}
    )


# The page is self-contained: inline script and style, fetching only /openapi.json.
_DOCS_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:"
)

"""JSON bodies: requests size-limited by the app and validated by a pydantic model, and
responses rendered by orjson."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.config import SETTINGS
from gateway.errors import InvalidParams, InvalidRequest, MalformedJSON
from gateway.jsonexact import loads_exact

M = TypeVar("M", bound=BaseModel)


class UnsupportedMediaType(InvalidRequest):
    http_status = 415
    code = "request.unsupported_media_type"
    default_message = "request body must be application/json"


class BadBodyEncoding(InvalidRequest):
    """A compressed body that does not decompress (raised by aiohttp while reading; the
    error middleware turns it into this)."""

    code = "request.bad_encoding"
    default_message = "request body cannot be read"


async def read_body(request: web.Request) -> bytes:
    """The whole body, within the app's size limit (413 over it).

    A small body has usually arrived whole before the handler runs: it is taken from the
    buffer at once (what ``request.read()`` does in two awaited reads and a copy);
    anything else, or any body over the limit, goes through ``request.read()``."""
    content = request.content
    if content.is_eof() and not request.body_exists:
        return b""
    if content.is_eof():
        body = content.read_nowait()
        limit = request.app[SETTINGS].server.max_body_bytes  # what the app gives aiohttp
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
        return body
    return await request.read()


async def read_json(request: web.Request) -> object:
    """The body as JSON, within the size limit (413 over it)."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType
    return parse_json(await read_body(request))


def parse_json(raw: bytes) -> object:
    """The body as JSON, every integer exact; MalformedJSON (400) if it is not JSON."""
    try:
        return loads_exact(raw)
    except ValueError as exc:
        raise MalformedJSON from exc


async def read_model(request: web.Request, model: type[M]) -> M:
    """The body validated as ``model``; 422 with each problem's location otherwise."""
    return validate_model(model, await read_json(request))


def validate_model(model: type[M], data: object) -> M:
    """``data`` (parsed JSON) validated as ``model``; 422 with each problem's location."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in error["loc"]) or "(body)", "problem": error["msg"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        first = problems[0]
        raise InvalidParams(f"{first['field']}: {first['problem']}", data=problems) from exc


def json_response(data: Any, status: int = 200) -> web.Response:  # noqa: ANN401  # JSON
    """``data`` as the response's JSON body (orjson: several times json.dumps's speed)."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")

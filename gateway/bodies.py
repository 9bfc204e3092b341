"""Request bodies: JSON only, size-limited by the app, validated by a pydantic model."""

from __future__ import annotations

import json
import re
from typing import TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.errors import InvalidParams, InvalidRequest, MalformedJSON

M = TypeVar("M", bound=BaseModel)


class UnsupportedMediaType(InvalidRequest):
    http_status = 415
    code = "request.unsupported_media_type"
    default_message = "request body must be application/json"


# Any integer literal outside orjson's 64-bit range has at least 19 digits.
_LONG_NUMBER = re.compile(rb"\d{19}")


async def read_json(request: web.Request) -> object:
    """The body as JSON. aiohttp enforces the size limit (413) while reading."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType
    return parse_json(await request.read())


def parse_json(raw: bytes) -> object:
    """The body as JSON, every integer exact; MalformedJSON (400) if it is not JSON."""
    try:
        return loads_exact(raw)
    except ValueError as exc:
        raise MalformedJSON from exc


def loads_exact(raw: bytes) -> object:
    """JSON with every integer exact; ValueError if ``raw`` is not JSON (or too deep).

    orjson turns an integer beyond 64 bits into a float (an EIP-712 uint256 of 10**20, a
    JSON-RPC id, would lose digits); such documents are parsed again by the standard
    library, which keeps integers exact. Only a document with a run of 19 digits and a float
    in orjson's reading takes that path."""
    data = orjson.loads(raw)  # JSONDecodeError is a ValueError; orjson stops at 1024 levels
    if _LONG_NUMBER.search(raw) is None or not _has_float(data):
        return data
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise ValueError("nested too deep") from exc


def _has_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_float(item) for item in value)
    return False


async def read_model(request: web.Request, model: type[M]) -> M:
    """The body validated as ``model``; 422 with each problem's location otherwise."""
    data = await read_json(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in error["loc"]) or "(body)", "problem": error["msg"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        first = problems[0]
        raise InvalidParams(f"{first['field']}: {first['problem']}", data=problems) from exc

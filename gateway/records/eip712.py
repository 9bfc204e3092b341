"""EIP-712 ``hashStruct`` of a message, compiled once per schema.

eth-account encodes a message by walking its types on every call (with eth-abi's validators
around each field): ~100 us for a five-field record. A dApp's records share a handful of
schemas, so each schema (its types and primary type) is compiled once into a tree of field
encoders with the type hashes precomputed, and a message is hashed by running them: a few
microseconds. Values reach here already checked exactly (``acceptance._check_value``); the
forms whose reading eth-account decides on its own (integers written as strings) are left
to eth-account (``Unsupported``), so that the
digest is always eth-account's (tests compare the two by hypothesis on rich schemas).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from eth_hash.auto import keccak

from gateway.jsonexact import dumps_exact

Encoder = Callable[[Any], bytes]  # a field value -> its 32-byte encodeData word

_ARRAY = re.compile(r"(.+)\[(\d*)\]")
_INT_TYPE = re.compile(r"(u?)int(\d*)")
_BYTES_TYPE = re.compile(r"bytes(\d+)")
_FALSE = bytes(32)
_TRUE = bytes(31) + b"\x01"
_MAX_SCHEMAS = 1024


class Unsupported(Exception):  # a signal to use eth-account, not an error
    """A value whose encoding eth-account should decide."""


class NotRoot(ValueError):
    """The primary type is not the one type no other type refers to."""


def _uint(value: Any) -> bytes:  # noqa: ANN401  # a checked JSON value
    if type(value) is not int:
        raise Unsupported
    return value.to_bytes(32, "big")


def _int(value: Any) -> bytes:  # noqa: ANN401
    if type(value) is not int:
        raise Unsupported
    return value.to_bytes(32, "big", signed=True)


def _address(value: str) -> bytes:
    return bytes(12) + bytes.fromhex(value[2:])  # any case: eth-account ignores the checksum


def _string(value: str) -> bytes:
    return bytes(keccak(value.encode("utf-8")))


def _bytes(value: str) -> bytes:
    return bytes(keccak(bytes.fromhex(value[2:])))


def _bool(value: bool) -> bytes:  # the value itself
    return _TRUE if value else _FALSE


def _fixed_bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:]).ljust(32, b"\x00")


class Schema:
    """The compiled encoders of one set of types."""

    def __init__(self, types: dict[str, list[dict[str, str]]]) -> None:
        self.types = types
        self._structs: dict[str, Encoder] = {}

    def struct(self, name: str) -> Encoder:
        """hashStruct(name, value) as an encoder (compiled on first use, recursion-safe)."""
        found = self._structs.get(name)
        if found is not None:
            return found
        fields: list[tuple[str, Encoder]] = []
        type_hash = bytes(keccak(encode_type(name, self.types).encode()))

        def encode(value: dict[str, Any]) -> bytes:
            return bytes(keccak(type_hash + b"".join(enc(value[key]) for key, enc in fields)))

        self._structs[name] = encode  # before its fields: a type may refer to itself
        fields.extend((field["name"], self.field(field["type"])) for field in self.types[name])
        return encode

    def field(self, kind: str) -> Encoder:
        if array := _ARRAY.fullmatch(kind):
            item = self.field(array.group(1))
            return lambda values: bytes(keccak(b"".join(item(v) for v in values)))
        if kind in self.types:
            return self.struct(kind)
        simple: dict[str, Encoder] = {
            "address": _address,
            "string": _string,
            "bool": _bool,
            "bytes": _bytes,
        }
        if kind in simple:
            return simple[kind]
        if number := _INT_TYPE.fullmatch(kind):
            return _uint if number.group(1) else _int
        if _BYTES_TYPE.fullmatch(kind):
            return _fixed_bytes
        raise Unsupported  # not a type the acceptance checks let through


def _core(kind: str) -> str:
    """``Mail[][2]`` -> ``Mail``."""
    return kind[: kind.index("[")] if "[" in kind else kind


def encode_type(primary: str, types: dict[str, list[dict[str, str]]]) -> str:
    """EIP-712 ``encodeType``: the primary type, then the struct types it refers to (at
    any depth), sorted by name, each as ``Name(type name,…)``."""
    found: set[str] = set()
    pending = [primary]
    while pending:
        name = pending.pop()
        if name in found or name not in types:
            continue
        found.add(name)
        pending.extend(_core(field["type"]) for field in types[name])
    order = [primary, *sorted(found - {primary})]
    parts = []
    for name in order:
        members = ",".join(f"{field['type']} {field['name']}" for field in types[name])
        parts.append(f"{name}({members})")
    return "".join(parts)


def primary_type(types: dict[str, list[dict[str, str]]]) -> str | None:
    """The one type no other type refers to (EIP-712's root); None when there is not one."""
    referred = {
        _core(field["type"])
        for name, fields in types.items()
        for field in fields
        if _core(field["type"]) != name
    }
    roots = [name for name in types if name not in referred]
    return roots[0] if len(roots) == 1 else None


_schemas: dict[bytes, Encoder] = {}


def schema_key(types: dict[str, list[dict[str, str]]], primary: str) -> bytes:
    return primary.encode() + b"|" + dumps_exact(types, sort_keys=True)


def hash_message(
    types: dict[str, list[dict[str, str]]],
    primary: str,
    message: Any,  # noqa: ANN401
    *,
    key: bytes | None = None,
) -> bytes:
    """hashStruct(primary, message) for ``types`` without EIP712Domain; raises Unsupported
    for values eth-account should encode. ``key`` is ``schema_key(types, primary)`` when
    the caller has it already."""
    if key is None:
        key = schema_key(types, primary)
    encoder = _schemas.get(key)
    if encoder is None:
        if primary_type(types) != primary:
            raise NotRoot(primary)
        encoder = Schema(types).struct(primary)
        if len(_schemas) >= _MAX_SCHEMAS:
            _schemas.clear()
        _schemas[key] = encoder
    return encoder(message)

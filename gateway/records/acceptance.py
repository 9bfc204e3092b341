"""Whether a signed EIP-712 record is accepted: its shape, id, signer and the policy.

The id is the EIP-712 digest computed by eth-account's ``encode_typed_data``; the signer is
recovered with libsecp256k1 (or, for contract wallets, asked on chain by the caller).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak

from gateway.chain.signatures import eip191_digest
from gateway.config import DomainRule, RecordsSettings
from gateway.errors import Conflict, Forbidden, GatewayError, InvalidParams, PayloadTooLarge
from gateway.jsonexact import dumps_exact
from gateway.records import eip712

__all__ = ["Candidate", "Rejected", "check_policy", "prepare"]


class Rejected(InvalidParams):
    """A record the policy does not accept (422 unless a subclass says otherwise)."""

    code = "records.rejected"
    outcome = "rejected"


class InvalidTypedData(Rejected):
    code = "records.invalid_typed_data"
    outcome = "invalid"


class DomainNotAllowed(Rejected):
    code = "records.domain_not_allowed"
    outcome = "domain_not_allowed"


class TypeNotAllowed(Rejected):
    code = "records.type_not_allowed"
    outcome = "type_not_allowed"


class SchemaMismatch(Rejected):
    code = "records.schema_mismatch"
    outcome = "schema_mismatch"


class Expired(Rejected):
    code = "records.expired"
    outcome = "expired"


class BadSignature(Rejected):
    http_status = 401
    code = "records.bad_signature"
    outcome = "bad_signature"


class NonceReused(Conflict):
    code = "records.nonce_reused"
    outcome = "nonce_reused"


class SignerMismatch(Forbidden):
    code = "records.signer_mismatch"
    outcome = "signer_mismatch"


class RecordTooLarge(PayloadTooLarge):
    code = "records.too_large"
    outcome = "too_large"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A well-formed record: its id (the EIP-712 digest), canonical JSON and parts."""

    id: bytes
    typed_data: dict[str, Any]
    canonical: bytes
    primary_type: str
    domain: dict[str, Any]
    message: dict[str, Any]

    @property
    def id_hex(self) -> str:
        return "0x" + self.id.hex()


def _shape_types(typed_data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    types, primary = typed_data.get("types"), typed_data.get("primaryType")
    if not isinstance(types, dict) or not all(
        isinstance(fields, list)
        and all(isinstance(f, dict) and set(f) == {"name", "type"} for f in fields)
        for fields in types.values()
    ):
        raise InvalidTypedData("types must map each type name to a list of {name, type}")
    if not isinstance(primary, str) or primary not in types or primary == "EIP712Domain":
        raise InvalidTypedData("primaryType must name one of the types")
    return types, primary


def _shape_rest(typed_data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    domain, message = typed_data.get("domain"), typed_data.get("message")
    if not isinstance(domain, dict) or not isinstance(message, dict):
        raise InvalidTypedData("domain and message must be objects")
    if len(typed_data) > 4:
        extra = set(typed_data) - {"types", "primaryType", "domain", "message"}
        raise InvalidTypedData(f"unexpected members: {', '.join(sorted(extra))}")
    return domain, message


MAX_DEPTH = 16
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_INT_TYPE = re.compile(r"(u?)int(\d*)")
_BYTES_TYPE = re.compile(r"bytes(\d+)")
_ARRAY = re.compile(r"(.+)\[(\d*)\]")
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def _check_value(types: dict[str, Any], kind: str, value: Any, path: str, depth: int) -> None:  # noqa: ANN401, C901, PLR0912
    """A message value must be exactly of its EIP-712 type (eth-account is lenient)."""
    if depth > MAX_DEPTH:
        raise InvalidTypedData(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if array := _ARRAY.fullmatch(kind):
        if not isinstance(value, list):
            raise InvalidTypedData(f"{path}: {kind} needs an array")
        if array.group(2) and len(value) != int(array.group(2)):
            raise InvalidTypedData(f"{path}: {kind} needs {array.group(2)} items")
        for index, item in enumerate(value):
            _check_value(types, array.group(1), item, f"{path}[{index}]", depth + 1)
        return
    if kind in types:
        if not isinstance(value, dict) or set(value) != {f["name"] for f in types[kind]}:
            raise InvalidTypedData(f"{path}: {kind} needs exactly its fields")
        for field in types[kind]:
            _check_value(
                types, field["type"], value[field["name"]], f"{path}.{field['name']}", depth + 1
            )
        return
    if kind == "address":
        if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
            raise InvalidTypedData(f"{path}: an address is 0x and 40 hex digits")
    elif kind == "string":
        if not isinstance(value, str):
            raise InvalidTypedData(f"{path}: needs a string")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise InvalidTypedData(f"{path}: needs true or false")
    elif kind == "bytes":
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise InvalidTypedData(f"{path}: bytes are 0x-prefixed hex")
    elif size := _BYTES_TYPE.fullmatch(kind):
        if (
            not isinstance(value, str)
            or not _HEX.fullmatch(value)
            or len(value) != 2 + 2 * int(size.group(1))
        ):
            raise InvalidTypedData(f"{path}: {kind} is 0x and {size.group(1)} bytes of hex")
    elif number := _INT_TYPE.fullmatch(kind):
        bits = int(number.group(2) or 256)
        parsed = _as_int(value)
        low, high = (
            (0, 2**bits - 1) if number.group(1) else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        )
        if parsed is None or not low <= parsed <= high:
            raise InvalidTypedData(f"{path}: needs a {kind}")
    else:
        raise InvalidTypedData(f"{path}: unknown type {kind}")


Check = Callable[[Any, int], bool]  # (value, depth) -> whether it is exactly of its type


@dataclass(frozen=True, slots=True)
class _Schema:
    """One (types, primary type) seen before: its checks compiled, its parts kept."""

    check: Check  # the message
    message_types: dict[str, Any]  # the types without EIP712Domain
    key: bytes  # eip712.hash_message's cache key of this schema


_schemas: dict[bytes, _Schema] = {}
_MAX_SCHEMAS = 1024


def _leaf(kind: str) -> Callable[[Any], bool] | None:  # noqa: PLR0911
    """The exact check of a value of an atomic type (None: not an atomic type)."""
    if kind == "address":
        return lambda v: isinstance(v, str) and _ADDRESS.fullmatch(v) is not None
    if kind == "string":
        return lambda v: isinstance(v, str)
    if kind == "bool":
        return lambda v: isinstance(v, bool)
    if kind == "bytes":
        return lambda v: isinstance(v, str) and _HEX.fullmatch(v) is not None
    if size := _BYTES_TYPE.fullmatch(kind):
        length = 2 + 2 * int(size.group(1))
        return lambda v: isinstance(v, str) and len(v) == length and _HEX.fullmatch(v) is not None
    if number := _INT_TYPE.fullmatch(kind):
        bits = int(number.group(2) or 256)
        low, high = (
            (0, 2**bits - 1) if number.group(1) else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        )

        def in_range(value: Any) -> bool:  # noqa: ANN401
            parsed = _as_int(value)
            return parsed is not None and low <= parsed <= high

        return in_range
    return None


def _compile(types: dict[str, Any], kind: str, structs: dict[str, Check]) -> Check:
    """``_check_value`` for one type, as a tree of predicates: no regex, no path."""
    if array := _ARRAY.fullmatch(kind):
        item = _compile(types, array.group(1), structs)
        size = int(array.group(2)) if array.group(2) else None

        def check_array(value: Any, depth: int) -> bool:  # noqa: ANN401
            return (
                depth <= MAX_DEPTH
                and isinstance(value, list)
                and (size is None or len(value) == size)
                and all(item(each, depth + 1) for each in value)
            )

        return check_array
    if kind in types:
        found = structs.get(kind)
        if found is not None:
            return found
        names = frozenset(field["name"] for field in types[kind])
        fields: list[tuple[str, Check]] = []

        def check_struct(value: Any, depth: int) -> bool:  # noqa: ANN401
            return (
                depth <= MAX_DEPTH
                and isinstance(value, dict)
                and value.keys() == names
                and all(check(value[name], depth + 1) for name, check in fields)
            )

        structs[kind] = check_struct  # before its fields: a type may refer to itself
        fields.extend((f["name"], _compile(types, f["type"], structs)) for f in types[kind])
        return check_struct
    leaf = _leaf(kind)
    if leaf is None:  # an unknown type: any value of it is refused (by _check_value)
        return lambda _value, _depth: False
    return lambda value, depth: depth <= MAX_DEPTH and leaf(value)


def _schema_of(typed_data: dict[str, Any]) -> _Schema:
    """The schema of a record's types, compiled on first sight (after the checks of its
    types, which a schema seen before has passed)."""
    key = dumps_exact([typed_data.get("primaryType"), typed_data.get("types")], sort_keys=True)
    schema = _schemas.get(key)
    if schema is not None:
        return schema
    types, primary = _shape_types(typed_data)
    _shape_rest(typed_data)  # the members' errors come before the type names'
    for name in types:
        if not _IDENTIFIER.fullmatch(name):
            raise InvalidTypedData(f"type name {name!r} is not an identifier")
    message_types = {k: v for k, v in types.items() if k != "EIP712Domain"}
    schema = _Schema(
        check=_compile(types, primary, {}),
        message_types=message_types,
        key=eip712.schema_key(message_types, primary),
    )
    if len(_schemas) >= _MAX_SCHEMAS:
        _schemas.clear()
    _schemas[key] = schema
    return schema


def prepare(typed_data: Any, *, max_bytes: int) -> Candidate:  # noqa: ANN401
    """Shape and value checks, and the EIP-712 digest (the record id)."""
    if not isinstance(typed_data, dict):
        raise InvalidTypedData("typedData must be an object")
    schema = _schema_of(typed_data)
    domain, message = _shape_rest(typed_data)
    primary: str = typed_data["primaryType"]
    if not schema.check(message, 0):  # walked again, for the path of what is wrong
        _check_value(typed_data["types"], primary, message, "message", 0)
        raise InvalidTypedData("message: a value is not of its type")
    canonical = dumps_exact(typed_data, sort_keys=True)
    if len(canonical) > max_bytes:
        raise RecordTooLarge(f"record is {len(canonical)} bytes; the limit is {max_bytes}")
    try:
        digest = _digest(typed_data, schema)
    except GatewayError:
        raise
    except Exception as exc:  # eth-account raises many kinds on malformed typed data
        raise InvalidTypedData(f"typed data does not encode: {_short(exc)}") from exc
    return Candidate(digest, typed_data, canonical, primary, domain, message)


def _digest(typed_data: dict[str, Any], schema: _Schema) -> bytes:
    """The EIP-712 digest, by eth-account's encode_typed_data.

    A dApp's records share their domain: its separator is remembered per domain, and the
    message half is ``eip712.hash_message`` (compiled per schema; eth-account's
    ``encode_typed_data`` for the value forms it leaves to it), so the digest is what
    ``encode_typed_data(full_message=…)`` gives (tests compare the two by hypothesis).
    """
    domain_key = dumps_exact(
        [typed_data["domain"], typed_data["types"].get("EIP712Domain")], sort_keys=True
    )
    separator = _domain_separator.get(domain_key)
    if separator is None:  # first record of this domain: the full, checked path
        message = encode_typed_data(full_message=typed_data)
        if len(_domain_separator) >= 1024:
            _domain_separator.clear()
        _domain_separator[domain_key] = bytes(message.header)
        return eip191_digest(message)
    types = schema.message_types
    try:
        body = eip712.hash_message(
            types, typed_data["primaryType"], typed_data["message"], key=schema.key
        )
    except eip712.NotRoot as exc:
        raise InvalidTypedData("primaryType is not the root of the types") from exc
    except eip712.Unsupported:  # a value form eth-account reads its own way
        body = bytes(
            encode_typed_data(
                domain_data=typed_data["domain"],
                message_types=types,
                message_data=typed_data["message"],
            ).body
        )
    return bytes(keccak(b"\x19\x01" + separator + body))


_domain_separator: dict[bytes, bytes] = {}


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _domain_matches(rule: DomainRule, domain: dict[str, Any]) -> bool:
    for field in ("name", "version", "chainId", "verifyingContract"):
        wanted = getattr(rule, field)
        if wanted is None:
            continue
        actual = domain.get(field)
        if field == "verifyingContract":
            if not isinstance(actual, str) or actual.lower() != str(wanted).lower():
                return False
        elif field == "chainId":
            if _as_int(actual) != wanted:
                return False
        elif actual != wanted:
            return False
    return True


def _as_int(value: Any) -> int | None:  # noqa: ANN401
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            return None
    return None


def check_policy(
    candidate: Candidate,
    settings: RecordsSettings,
    *,
    chain_ids: Collection[int],
    now: float | None = None,
) -> None:
    """Domain, schema and deadline rules. Raises the Rejected subclass of the first miss.
    Without domain rules, a domain's chainId must be one of ``chain_ids`` (the gateway's
    networks; empty: any)."""
    domain = candidate.domain
    if settings.domains:
        if not any(_domain_matches(rule, domain) for rule in settings.domains):
            raise DomainNotAllowed("the record's EIP-712 domain is not accepted here")
    elif chain_ids and "chainId" in domain and _as_int(domain["chainId"]) not in chain_ids:
        known = ", ".join(str(chain) for chain in sorted(chain_ids))
        raise DomainNotAllowed(
            f"the record's domain chainId is not one of this gateway's ({known})"
        )
    if settings.schemas:
        schema = settings.schemas.get(candidate.primary_type)
        if schema is None:
            raise TypeNotAllowed(f"primary type {candidate.primary_type} is not accepted")
        types = {k: v for k, v in candidate.typed_data["types"].items() if k != "EIP712Domain"}
        if types != schema:
            raise SchemaMismatch(
                f"types differ from the registered schema of {candidate.primary_type}"
            )
    moment = time.time() if now is None else now
    for field in settings.deadline_fields:
        if field in candidate.message:
            deadline = _as_int(candidate.message[field])
            if deadline is not None and deadline < moment:
                raise Expired(f"{field} {deadline} has passed")


def domain_chain_id(candidate: Candidate) -> int | None:
    """The chainId of a record's EIP-712 domain, when it has one."""
    domain = candidate.domain
    return _as_int(domain["chainId"]) if "chainId" in domain else None


def readers_of(candidate: Candidate, settings: RecordsSettings, signer: str) -> set[str]:
    """Who may read a private record: its signer and the addresses in recipient fields."""
    readers = {signer.lower()}
    for field in settings.recipient_fields:
        value = candidate.message.get(field)
        values = value if isinstance(value, list) else [value]
        readers.update(v.lower() for v in values if isinstance(v, str) and v.startswith("0x"))
    return readers

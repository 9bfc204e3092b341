"""Revert data made readable: ``Error(string)``'s text, or a custom error of the forwarder or
the example target by name with its arguments."""

from __future__ import annotations

from eth_abi import abi as eth_abi
from eth_abi.exceptions import DecodingError
from web3 import AsyncWeb3

from gateway.chain.artifacts import load_artifact


def _known_errors() -> dict[str, tuple[str, list[str]]]:
    errors: dict[str, tuple[str, list[str]]] = {
        "0x08c379a0": ("Error", ["string"]),
        "0x4e487b71": ("Panic", ["uint256"]),
    }
    for name in ("GatewayForwarder", "Guestbook"):
        for item in load_artifact(name)["abi"]:
            if item["type"] == "error":
                types = [argument["type"] for argument in item["inputs"]]
                signature = f"{item['name']}({','.join(types)})"
                selector = "0x" + AsyncWeb3.keccak(text=signature).hex().removeprefix("0x")[:8]
                errors[selector] = (item["name"], types)
    return errors


_ERRORS = _known_errors()


def decode_revert(exc: Exception) -> str:
    """``Error(string)``'s text, or a custom error by name with its arguments."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if not isinstance(data, str) or not data.startswith("0x") or len(data) < 10:
        message = getattr(exc, "message", None) or str(exc)
        return message.removeprefix("execution reverted: ")[:300]
    known = _ERRORS.get(data[:10].lower())
    if known is None:
        return f"custom error {data[:10]}"
    name, types = known
    try:
        values = eth_abi.decode(types, bytes.fromhex(data[10:]))
    except (DecodingError, ValueError):
        return name
    if name == "Error":
        return str(values[0])[:300]
    shown = ", ".join(v.hex() if isinstance(v, bytes) else str(v) for v in values)
    return f"{name}({shown})"

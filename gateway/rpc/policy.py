"""Which JSON-RPC methods a caller tier may call: allow patterns, then deny patterns win.

Patterns are exact names or prefixes ending in ``*`` (``eth_get*``). The defaults allow the
read methods of the execution API and ``eth_sendRawTransaction``, and deny every
namespace and method that administers the node or would use keys held by it.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from gateway.defaults import DEFAULT_ALLOW, DEFAULT_DENY
from gateway.rpc.jsonrpc import METHOD_NOT_FOUND

__all__ = ["DEFAULT_ALLOW", "DEFAULT_DENY", "DENIED_CODE", "MethodPolicy", "matches"]


def matches(method: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith("*"):
            if method.startswith(pattern[:-1]):
                return True
        elif method == pattern:
            return True
    return False


class MethodPolicy:
    """Allow and deny lists of one tier; the verdict per method is memoised."""

    def __init__(self, allow: Iterable[str], deny: Iterable[str]) -> None:
        self.allow = tuple(allow)
        self.deny = tuple(deny)
        self.check = lru_cache(maxsize=4096)(self._check)

    def _check(self, method: str) -> str | None:
        """None when allowed, else why not (the JSON-RPC error message)."""
        if matches(method, self.deny):
            return f"method {method} is not allowed on this gateway"
        if not matches(method, self.allow):
            return f"method {method} is not available on this gateway"
        return None


DENIED_CODE = METHOD_NOT_FOUND

"""Which JSON-RPC methods a caller tier may call: allow patterns, then deny patterns win.

Patterns are exact names or prefixes ending in ``*`` (``eth_get*``). The defaults allow the
read methods of the execution API and ``eth_sendRawTransaction``, and deny every
namespace and method that administers the node or would use keys held by it.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from gateway.rpc.jsonrpc import METHOD_NOT_FOUND

DEFAULT_ALLOW: tuple[str, ...] = (
    "eth_blockNumber",
    "eth_chainId",
    "eth_call",
    "eth_estimateGas",
    "eth_feeHistory",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_blobBaseFee",
    "eth_getBalance",
    "eth_getBlockByHash",
    "eth_getBlockByNumber",
    "eth_getBlockReceipts",
    "eth_getBlockTransactionCountByHash",
    "eth_getBlockTransactionCountByNumber",
    "eth_getCode",
    "eth_getLogs",
    "eth_getProof",
    "eth_getStorageAt",
    "eth_getTransactionByBlockHashAndIndex",
    "eth_getTransactionByBlockNumberAndIndex",
    "eth_getTransactionByHash",
    "eth_getTransactionCount",
    "eth_getTransactionReceipt",
    "eth_getUncleCountByBlockHash",
    "eth_getUncleCountByBlockNumber",
    "eth_syncing",
    "eth_protocolVersion",
    "eth_createAccessList",
    "eth_simulateV1",
    "eth_sendRawTransaction",
    "eth_subscribe",
    "eth_unsubscribe",
    "net_version",
    "net_listening",
    "net_peerCount",
    "web3_clientVersion",
    "web3_sha3",
)

# Never allowed unless an operator lists them in a tier's allow AND removes them from deny.
DEFAULT_DENY: tuple[str, ...] = (
    "admin_*",
    "debug_*",
    "personal_*",
    "miner_*",
    "txpool_*",
    "engine_*",
    "clique_*",
    "les_*",
    "anvil_*",
    "hardhat_*",
    "evm_*",
    "ots_*",
    "eth_sendTransaction",
    "eth_sign",
    "eth_signTransaction",
    "eth_signTypedData*",
    "eth_accounts",
    "eth_coinbase",
    "eth_mining",
    "eth_hashrate",
    "eth_submitWork",
    "eth_submitHashrate",
    "eth_newFilter",
    "eth_newBlockFilter",
    "eth_newPendingTransactionFilter",
    "eth_getFilterChanges",
    "eth_getFilterLogs",
    "eth_uninstallFilter",
)


def _matches(method: str, patterns: Iterable[str]) -> bool:
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
        if _matches(method, self.deny):
            return f"method {method} is not allowed on this gateway"
        if not _matches(method, self.allow):
            return f"method {method} is not available on this gateway"
        return None


DENIED_CODE = METHOD_NOT_FOUND

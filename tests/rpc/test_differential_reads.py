"""Every read method the default policy allows, in each parameter form the execution API
defines (block number, tag, hash, EIP-1898 objects with and without requireCanonical), sent
to anvil directly and through the gateway (cache on, asked twice; cache off), single and
batched: the answers are equal. The chain has a contract with events, a transaction of every
type but blobs (legacy, access
list, 1559, set-code: a blob transaction takes eth-account 15 s to sign and anvil 11 s to
take), writes between reads, and a reorg of
several blocks whose orphaned blocks and transactions are asked for again."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from gateway.app import create_app
from gateway.chain import DevChain
from gateway.defaults import DEFAULT_ALLOW
from gateway.rpc.context import POOL
from tests.helpers.chain import deploy, wait_receipt
from tests.helpers.lane import LaneTestServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

NOT_READS = {"eth_sendRawTransaction", "eth_subscribe", "eth_unsubscribe"}
TAGS = ["latest", "earliest", "pending", "safe", "finalized"]
SIGNED_EVENT = "0x" + keccak(text="Signed(address,string,uint256)").hex()
Request = tuple[str, list[Any]]


def _selector(signature: str, types: list[str], args: list[Any]) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


class Chain:
    """The test's anvil, written to with a dev key of its own (every transaction type)."""

    def __init__(self, node: DevChain) -> None:
        self.node = node
        self.key = Account.from_key(node.accounts[4].private_key)
        self.guestbook = to_checksum_address(
            deploy(node, "Guestbook", ["address"], ["0x" + "00" * 20])
        )
        self.txs: list[str] = []

    def nonce(self) -> int:
        return int(str(self.node.rpc("eth_getTransactionCount", [self.key.address, "pending"])), 16)

    def send(self, tx: dict[str, Any]) -> str:
        base = {"nonce": self.nonce(), "chainId": self.node.chain_id, "gas": 200_000}
        signed = self.key.sign_transaction({**base, **tx})
        tx_hash = str(self.node.rpc("eth_sendRawTransaction", [signed.raw_transaction.to_0x_hex()]))
        assert wait_receipt(self.node, tx_hash)["status"] == "0x1", tx_hash
        self.txs.append(tx_hash)
        return tx_hash

    def sign_note(self, note: str, kind: int = 2) -> str:
        data = _selector("sign(string)", ["string"], [note])
        fees = (
            {"gasPrice": 3 * 10**9}
            if kind in (0, 1)
            else {"maxFeePerGas": 3 * 10**9, "maxPriorityFeePerGas": 10**9}
        )
        extra = (
            {"accessList": [{"address": self.guestbook, "storageKeys": ["0x" + "00" * 32]}]}
            if kind == 1
            else {}
        )
        return self.send({"to": self.guestbook, "data": data, **fees, **extra})

    def every_type(self) -> None:
        self.sign_note("legacy", kind=0)
        self.sign_note("access list", kind=1)
        self.sign_note("1559", kind=2)
        delegate = Account.create()
        authorization = delegate.sign_authorization(
            {"chainId": self.node.chain_id, "address": self.guestbook, "nonce": 0}
        )
        self.send(
            {
                "to": delegate.address,  # now runs the Guestbook's code on its own storage
                "value": 0,
                "data": _selector("sign(string)", ["string"], ["set code"]),
                "maxFeePerGas": 3 * 10**9,
                "maxPriorityFeePerGas": 10**9,
                "authorizationList": [authorization],
            }
        )

    def block(self, number: int) -> dict[str, Any]:
        found = self.node.rpc("eth_getBlockByNumber", [hex(number), False])
        assert isinstance(found, dict)
        return found

    def head(self) -> int:
        return int(str(self.node.rpc("eth_blockNumber")), 16)


def _block_forms(number: int, block_hash: str) -> list[Any]:
    return [
        hex(number),
        *TAGS,
        {"blockNumber": hex(number)},
        {"blockHash": block_hash},
        {"blockHash": block_hash, "requireCanonical": True},
        {"blockHash": block_hash, "requireCanonical": False},
    ]


def requests_of(chain: Chain, extra_blocks: list[dict[str, Any]] = ()) -> list[Request]:
    """Every read method in each of its parameter forms, with the chain's real values."""
    head = chain.head()
    blocks = [chain.block(n) for n in sorted({0, head // 2, head})] + list(extra_blocks)
    accounts = [chain.key.address, chain.guestbook]  # an account with a nonce, one with code
    entries = _selector("entries(address)", ["address"], [chain.key.address])
    note = _selector("sign(string)", ["string"], ["estimate"])
    call = {"from": chain.key.address, "to": chain.guestbook, "data": note}
    found: list[Request] = [
        ("eth_blockNumber", []),
        ("eth_chainId", []),
        ("eth_config", []),
        ("eth_capabilities", []),
        ("eth_gasPrice", []),
        ("eth_maxPriorityFeePerGas", []),
        ("eth_blobBaseFee", []),
        ("eth_baseFee", []),
        ("eth_syncing", []),
        ("eth_protocolVersion", []),
        ("net_version", []),
        ("net_listening", []),
        ("net_peerCount", []),
        ("web3_clientVersion", []),
        ("web3_sha3", ["0x68656c6c6f"]),
        ("eth_feeHistory", ["0x4", "latest", [25, 75]]),
        ("eth_feeHistory", [hex(3), hex(head), []]),
        ("eth_estimateGas", [call]),
        ("eth_estimateGas", [call, "latest"]),
        ("eth_createAccessList", [call, "latest"]),
        ("eth_simulateV1", [{"blockStateCalls": [{"calls": [call]}]}, hex(head)]),
        ("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}]),
        ("eth_getLogs", [{"fromBlock": "0x1", "toBlock": hex(head + 40)}]),
        ("eth_getLogs", [{"address": chain.guestbook, "topics": [SIGNED_EVENT]}]),
        ("eth_getLogs", [{"fromBlock": "earliest", "toBlock": "finalized", "topics": [None]}]),
    ]
    for tx_hash in chain.txs:
        found += [("eth_getTransactionByHash", [tx_hash]), ("eth_getTransactionReceipt", [tx_hash])]
    for block in blocks:
        number, block_hash = int(block["number"], 16), block["hash"]
        found += [
            ("eth_getBlockByNumber", [hex(number), False]),
            ("eth_getBlockByNumber", [hex(number), True]),
            ("eth_getBlockByHash", [block_hash, False]),
            ("eth_getBlockByHash", [block_hash, True]),
            ("eth_getBlockTransactionCountByNumber", [hex(number)]),
            ("eth_getBlockTransactionCountByHash", [block_hash]),
            ("eth_getUncleCountByBlockNumber", [hex(number)]),
            ("eth_getUncleCountByBlockHash", [block_hash]),
            ("eth_getTransactionByBlockNumberAndIndex", [hex(number), "0x0"]),
            ("eth_getTransactionByBlockHashAndIndex", [block_hash, "0x0"]),
            ("eth_getBlockReceipts", [hex(number)]),
            ("eth_getBlockReceipts", [block_hash]),
            ("eth_getLogs", [{"blockHash": block_hash}]),
            ("eth_getLogs", [{"fromBlock": hex(number), "toBlock": hex(number)}]),
            ("eth_getProof", [chain.guestbook, ["0x0"], hex(number)]),
            ("eth_getStorageValues", [{chain.guestbook: ["0x0", "0x1"]}, hex(number)]),
        ]
        for form in _block_forms(number, block_hash):
            found += [("eth_call", [{"to": chain.guestbook, "data": entries}, form])]
            for account in accounts:
                found += [
                    ("eth_getBalance", [account, form]),
                    ("eth_getCode", [account, form]),
                    ("eth_getTransactionCount", [account, form]),
                    ("eth_getStorageAt", [account, "0x0", form]),
                ]
    for tag in TAGS:
        found += [
            ("eth_getBlockByNumber", [tag, False]),
            ("eth_getBlockTransactionCountByNumber", [tag]),
            ("eth_getUncleCountByBlockNumber", [tag]),
            ("eth_getTransactionByBlockNumberAndIndex", [tag, "0x0"]),
            ("eth_getBlockReceipts", [tag]),
        ]
    return found


def _distinct(requests: list[Request]) -> list[Request]:
    return list({json.dumps(request): request for request in requests}.values())


def _what(reply: dict[str, Any]) -> Any:
    """What a reply said, without its id; `pending` answers are made at the wall clock's
    second, so their timestamps (and the hashes that cover them) are not compared."""
    return {key: value for key, value in reply.items() if key != "id"}


def _volatile(method: str, params: list[Any]) -> bool:
    return "pending" in json.dumps(params) or method == "eth_simulateV1"


def _comparable(method: str, params: list[Any], said: Any) -> Any:
    if not _volatile(method, params):
        return said
    text = json.dumps(said, sort_keys=True)
    for key in ("timestamp", "hash", "parentBeaconBlockRoot", "mixHash", "blockHash"):
        text = _blank(text, key)
    return text


def _blank(text: str, key: str) -> str:
    return re.sub(rf'"{key}": "0x[0-9a-f]*"', f'"{key}": "…"', text)


async def _post(session: aiohttp.ClientSession, url: str, payload: Any) -> Any:
    async with session.post(url, json=payload) as response:
        assert response.status in (200, 503, 502, 504), await response.text()
        return await response.json()


async def _compare(session, targets: dict[str, str], requests: list[Request]) -> list[str]:
    """Differences between anvil and each gateway, single calls and batches of 40."""
    calls = [
        {"jsonrpc": "2.0", "id": index, "method": method, "params": params}
        for index, (method, params) in enumerate(requests)
    ]
    differences = []
    said: dict[str, list[Any]] = {}
    for name, url in targets.items():
        said[name] = [await _post(session, url, call) for call in calls]
        batched: list[Any] = []
        for start in range(0, len(calls), 40):
            replies = await _post(session, url, calls[start : start + 40])
            batched += sorted(replies, key=lambda reply: reply["id"])
        said[f"{name} batched"] = batched
    for index, (method, params) in enumerate(requests):
        expected = _comparable(method, params, _what(said["anvil"][index]))
        for name, replies in said.items():
            got = _comparable(method, params, _what(replies[index]))
            if got != expected:
                differences.append(
                    f"{name}: {method} {json.dumps(params)[:160]}\n  anvil {str(expected)[:300]}\n  here  {str(got)[:300]}"
                )
    return differences


@pytest.fixture(name="gateways")
async def _gateways(aiohttp_client, fresh_anvil, make_settings, rpc_env):
    """A gateway with its cache on and one with it off, both polling heads only when told."""
    made = {}
    for name, cache in (("cached", "true"), ("uncached", "false")):
        settings = make_settings(
            upstreams=[fresh_anvil.url],
            **{
                **rpc_env,
                "GATEWAY_RPC__HEALTH_INTERVAL_S": "30",
                "GATEWAY_RPC__PUSH_HEADS": "false",
                "GATEWAY_RPC__CACHE_ENABLED": cache,
                "GATEWAY_RPC__LOGS_CHUNK_BLOCKS": "4",  # the split path on a short chain
            },
        )
        made[name] = await aiohttp_client(LaneTestServer(create_app(settings)))
    return made


async def _caught_up(gateways) -> None:
    for client in gateways.values():
        await client.app[POOL].poll_heads()


async def test_every_read_answers_as_the_node_does(gateways, fresh_anvil):
    chain = Chain(fresh_anvil)
    chain.every_type()
    for index in range(3):
        chain.sign_note(f"first {index}")
    fresh_anvil.rpc("anvil_mine", ["0x3"])
    targets = {
        "anvil": fresh_anvil.url,
        "cached (miss)": str(gateways["cached"].make_url("/rpc")),
        "cached (hit)": str(gateways["cached"].make_url("/rpc")),
        "uncached": str(gateways["uncached"].make_url("/rpc")),
    }
    covered: set[str] = set()
    async with aiohttp.ClientSession() as session:
        await _caught_up(gateways)
        requests = requests_of(chain)
        covered |= {method for method, _ in requests}
        assert await _compare(session, targets, requests) == []

        # Writes between reads: what was cached at the old head is not served at the new.
        snapshot = fresh_anvil.rpc("evm_snapshot")
        for index in range(3):
            chain.sign_note(f"before the reorg {index}")
        orphaned = [chain.block(chain.head() - n) for n in range(3)]
        await _caught_up(gateways)
        before = _distinct(requests_of(chain) + requests)
        assert await _compare(session, targets, before) == []

        # A reorg of several blocks: the three blocks replaced by five others.
        fresh_anvil.rpc("evm_revert", [snapshot])
        chain.txs = chain.txs[:-3]
        for index in range(2):
            chain.sign_note(f"after the reorg {index}")
        fresh_anvil.rpc("anvil_mine", ["0x3"])
        await _caught_up(gateways)
        after = _distinct(requests_of(chain, orphaned) + before)
        assert await _compare(session, targets, after) == []
    assert covered >= set(DEFAULT_ALLOW) - NOT_READS, set(DEFAULT_ALLOW) - NOT_READS - covered
    assert len(after) > 600

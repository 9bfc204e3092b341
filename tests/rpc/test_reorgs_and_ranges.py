"""Answers equal to the node's across reorgs and wide log ranges (execution API shapes).

Each test reads through the gateway (fast path on), then changes the chain under it, then
compares the gateway's replies with anvil's own for the same calls.
"""

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, keccak

from gateway.app import create_app
from gateway.defaults import DEFAULT_ALLOW, DEFAULT_DENY
from gateway.rpc.context import CACHE, POOL
from gateway.rpc.policy import MethodPolicy
from tests.helpers.chain import deploy, transact
from tests.helpers.lane import LaneTestServer
from tests.rpc.conftest import Rpc

pytestmark = pytest.mark.integration

ZERO = "0x" + "00" * 20
SIGN = function_signature_to_4byte_selector("sign(string)")


def _sign(note: str) -> bytes:
    return SIGN + encode(["string"], [note])


def _answer(reply: dict) -> dict:
    """A reply without its id: what the node said."""
    return {key: value for key, value in reply.items() if key != "id"}


@pytest.fixture(name="quiet_rpc")
async def _quiet_rpc(aiohttp_client, fresh_anvil, make_settings, rpc_env):
    """A gateway whose pool reads heads only when the test says so (polls every 30 s)."""
    settings = make_settings(
        upstreams=[fresh_anvil.url], **{**rpc_env, "GATEWAY_RPC__HEALTH_INTERVAL_S": "30"}
    )
    client = await aiohttp_client(LaneTestServer(create_app(settings)))
    return Rpc(client)


async def _read_twice(rpc: Rpc, chain, queries) -> None:
    """Each query answered as the node answers it, the second time from the cache."""
    for method, params in queries:
        direct = chain.rpc(method, params)
        assert direct not in (None, []), (method, direct)
        for _ in range(2):
            assert (await rpc.result(method, params)) == direct, method


async def _same_as_node(rpc: Rpc, chain, queries) -> None:
    for method, params in queries:
        direct = await _direct(chain, method, params)
        assert _answer(await rpc.call(method, params)) == direct, method


async def _direct(chain, method, params) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        async with session.post(chain.url, json=payload) as response:
            return _answer(await response.json())


async def test_a_reorg_that_moves_the_head_several_blocks_is_seen(quiet_rpc, fresh_anvil):
    """The new head is ten blocks past the one the gateway knew, on another branch: the
    orphaned receipt, transaction and block are no longer served."""
    chain, rpc = fresh_anvil, quiet_rpc
    pool = rpc.client.app[POOL]
    book = deploy(chain, "Guestbook", ["address"], [ZERO])
    snapshot = chain.rpc("evm_snapshot")
    receipt = transact(chain, book, _sign("on a branch that will be dropped"))
    await pool.poll_heads()
    tx, block_hash = receipt["transactionHash"], receipt["blockHash"]
    queries = [
        ("eth_getTransactionReceipt", [tx]),
        ("eth_getTransactionByHash", [tx]),
        ("eth_getBlockByHash", [block_hash, False]),
        ("eth_getTransactionByBlockHashAndIndex", [block_hash, "0x0"]),
    ]
    await _read_twice(rpc, chain, queries)
    known = pool.head_number()

    assert chain.rpc("evm_revert", [snapshot]) is True
    chain.rpc("anvil_mine", ["0xa"])
    await pool.poll_heads()

    assert chain.rpc("eth_getTransactionReceipt", [tx]) is None
    await _same_as_node(rpc, chain, queries)
    assert pool.head_number() == known + 9
    assert pool.head is not None
    assert pool.head.reorg_from == int(receipt["blockNumber"], 16)


async def test_a_longer_chain_on_the_same_branch_is_no_reorg(quiet_rpc, fresh_anvil):
    rpc = quiet_rpc
    pool, cache = rpc.client.app[POOL], rpc.client.app[CACHE]
    book = deploy(fresh_anvil, "Guestbook", ["address"], [ZERO])
    receipt = transact(fresh_anvil, book, _sign("stays"))
    await pool.poll_heads()
    await rpc.result("eth_getTransactionReceipt", [receipt["transactionHash"]])
    entries = len(cache)
    fresh_anvil.rpc("anvil_mine", ["0x5"])
    await pool.poll_heads()
    assert pool.head is not None
    assert pool.head.reorg_from is None
    assert len(cache) == entries  # kept: its block is still canonical


async def test_answers_at_a_block_hash_do_not_outlive_its_block(quiet_rpc, fresh_anvil):
    """State read at a block hash is cached; once that block leaves the chain the gateway
    answers as the node does (EIP-1898 `requireCanonical` refused, unknown block)."""
    chain, rpc = fresh_anvil, quiet_rpc
    pool = rpc.client.app[POOL]
    book = deploy(chain, "Guestbook", ["address"], [ZERO])
    author = chain.accounts[0].address
    snapshot = chain.rpc("evm_snapshot")
    receipt = transact(chain, book, _sign("at a hash"))
    await pool.poll_heads()
    block_hash = receipt["blockHash"]
    slot = "0x" + keccak(encode(["address", "uint256"], [author, 0])).hex()
    queries = [
        ("eth_getBalance", [author, {"blockHash": block_hash, "requireCanonical": True}]),
        ("eth_getBalance", [author, {"blockHash": block_hash}]),
        ("eth_getStorageAt", [book, slot, {"blockHash": block_hash}]),
        ("eth_getCode", [book, {"blockHash": block_hash}]),
        ("eth_getBlockReceipts", [{"blockHash": block_hash}]),
        ("eth_getLogs", [{"blockHash": block_hash}]),
    ]
    await _read_twice(rpc, chain, queries)

    # One block back and one new block at the same height: a reorg the pool sees either way.
    chain.rpc("evm_revert", [snapshot])
    chain.rpc("evm_mine")
    await pool.poll_heads()

    assert pool.head is not None
    assert pool.head.reorg_from is not None
    await _same_as_node(rpc, chain, queries)


async def test_get_logs_past_the_head_equals_the_node(
    aiohttp_client, fresh_anvil, make_settings, rpc_env
):
    """Chunked ranges that reach past the head, straddle it or start past it: the merged
    answer is the node's."""
    chain = fresh_anvil
    book = deploy(chain, "Guestbook", ["address"], [ZERO])
    for index in range(5):
        transact(chain, book, _sign(f"note {index}"))
        chain.rpc("anvil_mine", ["0x10"])
    settings = make_settings(upstreams=[chain.url], GATEWAY_RPC__LOGS_CHUNK_BLOCKS="20", **rpc_env)
    rpc = Rpc(await aiohttp_client(LaneTestServer(create_app(settings))))
    await rpc.client.app[POOL].poll_heads()
    head = int(chain.rpc("eth_blockNumber"), 16)
    assert head > 80
    ranges = [
        ("0x1", "0xa1c"),  # far past the head: 2588
        ("0x1", hex(head + 30)),  # a chunk that straddles the head
        (hex(head - 30), hex(head + 100)),
        ("0x0", "latest"),
        (hex(head + 5), hex(head + 100)),  # wholly past the head: the node's own answer
        ("0x2", "0x30"),
    ]
    for low, high in ranges:
        for query in (
            {"fromBlock": low, "toBlock": high},
            {"fromBlock": low, "toBlock": high, "address": book},
        ):
            through = await rpc.call("eth_getLogs", [query])
            assert _answer(through) == await _direct(chain, "eth_getLogs", [query]), query
    everything = await rpc.result("eth_getLogs", [{"fromBlock": "0x1", "toBlock": "0xa1c"}])
    assert len(everything) == 5


def test_the_execution_apis_reads_are_allowed_by_default():
    """Every read method of the Ethereum execution API (ethereum/execution-apis, src/eth)
    is allowed at the defaults; the methods that use a node's keys or filters are not."""
    reads = [
        "eth_blockNumber", "eth_chainId", "eth_config", "eth_capabilities", "eth_syncing",
        "eth_call", "eth_estimateGas", "eth_createAccessList", "eth_simulateV1",
        "eth_gasPrice", "eth_blobBaseFee", "eth_baseFee", "eth_maxPriorityFeePerGas",
        "eth_feeHistory", "eth_getBalance", "eth_getStorageAt", "eth_getStorageValues",
        "eth_getTransactionCount", "eth_getCode", "eth_getProof", "eth_getBlockByHash",
        "eth_getBlockByNumber", "eth_getBlockTransactionCountByHash",
        "eth_getBlockTransactionCountByNumber", "eth_getUncleCountByBlockHash",
        "eth_getUncleCountByBlockNumber", "eth_getBlockReceipts", "eth_getLogs",
        "eth_getTransactionByHash", "eth_getTransactionByBlockHashAndIndex",
        "eth_getTransactionByBlockNumberAndIndex", "eth_getTransactionReceipt",
        "eth_sendRawTransaction",
    ]  # fmt: skip
    policy = MethodPolicy(DEFAULT_ALLOW, DEFAULT_DENY)
    assert [m for m in reads if policy.check(m) is not None] == []
    refused = [
        "eth_sendTransaction",
        "eth_sign",
        "eth_accounts",
        "eth_newFilter",
        "debug_traceCall",
    ]
    assert all(policy.check(m) is not None for m in refused)


async def test_newer_read_methods_reach_the_node(gateway_rpc, anvil):
    """eth_config and eth_getStorageValues answered as the node answers; methods the node
    lacks get the node's own error, not the gateway's refusal."""
    address = anvil.accounts[0].address
    for method, params in [
        ("eth_config", []),
        ("eth_getStorageValues", [{address: ["0x0"]}, "latest"]),
        ("eth_baseFee", []),
        ("eth_capabilities", []),
    ]:
        assert _answer(await gateway_rpc.call(method, params)) == await _direct(
            anvil, method, params
        ), method

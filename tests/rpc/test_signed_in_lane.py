"""JSON-RPC calls with a session (`Authorization: Bearer`) are answered in the lane, by the
same caller code as aiohttp's path: the signed-in tier's policy and limits, a 401 for a bad
token before the body is read, and the same bytes as with the lane off."""

from __future__ import annotations

import json

import aiohttp
import pytest
from eth_account import Account

from gateway.app import create_app
from tests.helpers.lane import answered, exchange, post, started_servers
from tests.identity.conftest import ORIGIN, make_message, personal_sign

pytestmark = pytest.mark.integration

BALANCE = {
    "jsonrpc": "2.0",
    "id": 7,
    "method": "eth_getBalance",
    "params": ["0x" + "11" * 20, "latest"],
}


async def _token(base: str) -> str:
    wallet = Account.create()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/auth/nonce") as r:
            nonce = (await r.json())["nonce"]
        text = make_message(wallet.address, nonce)
        async with session.post(
            f"{base}/auth/verify",
            json={"message": text, "signature": personal_sign(wallet, text)},
            headers={"Origin": ORIGIN},
        ) as r:
            assert r.status == 200, await r.text()
            return (await r.json())["token"]


def _not_json(headers: dict[str, str]) -> bytes:
    """A request whose body is not JSON (its length right)."""
    raw = post("x", headers=headers)  # the body is the 3 bytes "x" in quotes
    return raw[: -len(b'"x"')] + b"{x}"


def _said(reply) -> tuple[int, object]:
    body = json.loads(reply.body) if reply.body else None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body["error"].pop("requestId", None)
    return reply.status, body


async def test_signed_in_calls_are_answered_in_the_lane_as_aiohttp_does(
    anvil, make_settings, rpc_env
):
    env = {
        **rpc_env,
        "GATEWAY_SIWE_DOMAINS": "app.example",
        "GATEWAY_CHAIN_ID": "31337",
        # eth_getBalance for signed-in callers only: the tier decides the answer
        "GATEWAY_RPC__ANONYMOUS__DENY": json.dumps(["admin_*", "eth_getBalance"]),
    }
    async with started_servers() as start:
        lane = await start(create_app(make_settings(upstreams=[anvil.url], **env)))
        plain = await start(
            create_app(make_settings(upstreams=[anvil.url], GATEWAY_SERVER__LANE="false", **env))
        )
        token = await _token(str(lane.make_url("")).rstrip("/"))
        bearer = {"Authorization": f"Bearer {token}"}
        cases = {
            "signed in": post(BALANCE, headers=bearer),
            "signed in, batch": post([BALANCE, BALANCE | {"id": 8}], headers=bearer),
            "anonymous": post(BALANCE),
            "a bad token": post(BALANCE, headers={"Authorization": "Bearer junk"}),
            "not bearer": post(BALANCE, headers={"Authorization": "Basic dXNlcg=="}),
            "signed in, not JSON": _not_json(bearer),
            "a bad token, not JSON": _not_json({"Authorization": "Bearer junk"}),
            "signed in, notifications only": post(
                {"jsonrpc": "2.0", "method": "eth_chainId"}, headers=bearer
            ),
        }
        said = {}
        for name, raw in cases.items():
            before = answered(lane)
            (on,) = await exchange(lane, raw)
            (off,) = await exchange(plain, raw)
            said[name] = _said(on)
            assert _said(on) == _said(off), name
            in_lane = answered(lane) - before
            assert in_lane == (0 if "notifications" in name else 1), (name, in_lane)
    assert said["signed in"][1]["result"] == "0x0"
    assert said["anonymous"][1]["error"]["code"] == -32601
    assert said["a bad token"][0] == 401
    assert said["not bearer"][0] == 401
    assert said["a bad token, not JSON"][0] == 401
    assert said["signed in, not JSON"][1]["error"]["code"] == -32700
    assert said["signed in, notifications only"][0] == 204

"""The chaos test's clients: a bounded mixed workload (JSON-RPC reads, sign-ins, signed
records, gasless requests) spread over the replicas, and a ledger of what was answered:
every status and error code, the records acknowledged and the relay requests accepted, and
every answer that breaks a promise (a 500, an error without a JSON body and a code)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from eth_account import Account
from eth_account.signers.local import LocalAccount

from tests.identity.conftest import ORIGIN, make_message, personal_sign
from tests.records.conftest import mail, sign_typed
from tests.relay.conftest import signed_body


class Unreachable(Exception):
    """The replica did not answer at all (refused, reset): it was killed, or it crashed."""


@dataclass
class Ledger:
    answers: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    broken: list[str] = field(default_factory=list)
    unreachable: list[tuple[float, str]] = field(default_factory=list)
    records: dict[str, str] = field(default_factory=dict)  # acknowledged id -> signer
    relayed: dict[str, str] = field(default_factory=dict)  # accepted id -> signer
    relay_signers: list[str] = field(default_factory=list)  # every signer that POSTed
    events: list[tuple[float, str, int, str]] = field(default_factory=list)

    def since(self, started: float) -> list[tuple[float, str, int, str]]:
        return [event for event in self.events if event[0] >= started]


@dataclass
class Answer:
    status: int
    body: Any  # parsed JSON
    code: str


class Workload:
    def __init__(
        self, session: aiohttp.ClientSession, urls: list[str], ledger: Ledger, seed: int = 1
    ) -> None:
        self.session = session
        self.urls = urls
        self.ledger = ledger
        self.signers = [Account.create() for _ in range(16)]
        self.submitted: list[tuple[dict, str]] = []  # (body, id) to submit again as a replay
        self.running = True
        self.rng = random.Random(seed)  # noqa: S311  # a workload, not a secret

    async def call(self, kind: str, method: str, path: str, **kwargs: Any) -> Answer:
        url = self.rng.choice(self.urls)
        try:
            async with self.session.request(method, url + path, **kwargs) as response:
                raw = await response.read()
                status = response.status
                content_type = response.headers.get("Content-Type", "")
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            self.ledger.unreachable.append((time.monotonic(), f"{url} {kind}: {exc!r}"))
            raise Unreachable from exc
        body: Any = None
        code = ""
        if "json" in content_type:
            try:
                body = json.loads(raw)
            except ValueError:
                self.ledger.broken.append(f"{kind} {status}: not JSON: {raw[:200]!r}")
        code = _code_of(body) if status >= 400 or _is_rpc_error(body) else ""
        if status >= 400 and not code:
            self.ledger.broken.append(f"{kind} {status}: no error code: {raw[:200]!r}")
        if status == 500:
            self.ledger.broken.append(f"{kind} 500: {raw[:300]!r}")
        self.ledger.answers[(kind, status, code)] += 1
        self.ledger.events.append((time.monotonic(), kind, status, code))
        return Answer(status, body, code)

    async def read(self) -> None:
        relayer = self.signers[0].address
        calls: Any = self.rng.choice(
            [
                {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"},
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "eth_getBalance",
                    "params": [relayer, "latest"],
                },
                [
                    {"jsonrpc": "2.0", "id": 3, "method": "eth_chainId"},
                    {
                        "jsonrpc": "2.0",
                        "id": 4,
                        "method": "eth_getBlockByNumber",
                        "params": ["latest", False],
                    },
                ],
            ]
        )
        await self.call("rpc", "POST", "/rpc", json=calls)

    async def sign_in(self) -> None:
        wallet = Account.create()
        nonce = await self.call("auth", "GET", "/auth/nonce")
        if nonce.status != 200:
            return
        text = make_message(wallet.address, nonce.body["nonce"])
        verified = await self.call(
            "auth",
            "POST",
            "/auth/verify",
            json={"message": text, "signature": personal_sign(wallet, text)},
            headers={"Origin": ORIGIN},
        )
        if verified.status == 200:
            token = verified.body["token"]
            await self.call(
                "auth", "GET", "/auth/session", headers={"Authorization": f"Bearer {token}"}
            )

    async def record(self) -> None:
        if self.submitted and self.rng.random() < 0.1:  # a client retrying what it sent
            body, known = self.rng.choice(self.submitted)
            answer = await self.call("records", "POST", "/records", json=body)
            if answer.status in (200, 201) and answer.body["id"] != known:
                self.ledger.broken.append(f"a replayed record got a new id {answer.body['id']}")
            return
        signer = self.rng.choice(self.signers)
        typed = mail(signer.address, contents=f"chaos {uuid.uuid4()}")
        body = {"typedData": typed, "signature": sign_typed(signer, typed)}
        answer = await self.call("records", "POST", "/records", json=body)
        if answer.status in (200, 201):
            self.ledger.records[answer.body["id"]] = signer.address
            self.submitted.append((body, answer.body["id"]))

    async def relay(self) -> None:
        signer: LocalAccount = Account.create()
        info = await self.call("relay", "GET", f"/relay/forwarder?from={signer.address}")
        if info.status != 200:
            return
        self.ledger.relay_signers.append(signer.address)
        body = signed_body(info.body, signer, f"chaos {signer.address[-6:]}")
        answer = await self.call("relay", "POST", "/relay", json=body)
        if answer.status == 202:
            self.ledger.relayed[answer.body["id"]] = signer.address

    async def client(self, pause_s: float) -> None:
        operations = [self.read] * 5 + [self.sign_in] * 2 + [self.record] * 3 + [self.relay]
        while self.running:
            with contextlib.suppress(Unreachable):
                await self.rng.choice(operations)()
            await asyncio.sleep(pause_s * self.rng.uniform(0.5, 1.5))


def _is_rpc_error(body: Any) -> bool:
    items = body if isinstance(body, list) else [body]
    return any(isinstance(item, dict) and "error" in item for item in items)


def _code_of(body: Any) -> str:
    items = body if isinstance(body, list) else [body]
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("error"), dict):
            error = item["error"]
            code = error.get("code")
            if isinstance(code, int):  # a JSON-RPC error: its number, and the gateway's code
                data = error.get("data")
                named = data.get("code") if isinstance(data, dict) else None
                return f"{code}{'/' + named if named else ''}"
            if code:
                return str(code)
    return ""

"""A small fake node (an aiohttp app on loopback) for faults anvil will not produce on
demand; it answers the gateway's head polls so it counts as healthy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Reply = Callable[[web.Request, dict], Awaitable[web.StreamResponse]]


def head_poll_reply(batch: list[dict], number: int = 0) -> web.Response:
    block = {"number": hex(number), "hash": "0x" + "11" * 32, "parentHash": "0x" + "00" * 32}
    return web.json_response(
        [{"jsonrpc": "2.0", "id": call["id"], "result": block} for call in batch]
    )


def fake_node_app(
    on_call: Reply, seen: list | None = None, *, head: int | None = 0
) -> web.Application:
    """Batches (head polls) get a block at height ``head`` (None: a 503, a node that never
    reports a head); single calls go to ``on_call``."""

    async def rpc(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if seen is not None:
            seen.append({"body": body, "headers": dict(request.headers)})
        if isinstance(body, list):
            return web.Response(status=503) if head is None else head_poll_reply(body, head)
        return await on_call(request, body)

    app = web.Application()
    app.router.add_post("/", rpc)
    return app

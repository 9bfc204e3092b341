"""JSON-RPC over HTTP: anvil direct vs a bare aiohttp pass-through proxy vs the gateway with
full observability, at the same concurrency, in one run.

    .venv/bin/python bench/rpc_http.py [--seconds 8] [--connections 32] [--two-networks]
        [--baseline DIR[:EXTRA]]  # DIR: an earlier commit (git worktree add DIR <commit>)

Each case is run flat out (every connection sends its next call as soon as the last is
answered: latency there is mostly queueing, concurrency / throughput) and paced (each
connection waits a random 0..2x --paced-ms between calls, as 32 dApp clients would: latency there is the
cost of one call). The gateway runs as in production: JSON access log, metrics, tracing with the README's
recommended sampler (parentbased_traceidratio, 0.1). The proxy and the gateway are pinned
to core 0 and wrk to core 1; anvil floats (it serves every row that reaches it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import urllib.request
from pathlib import Path

from common import Result, free_port, gateway_env, run_wrk, serving, serving_gateway

from gateway.chain import DevChain

BARE_PROXY = """
import sys
import aiohttp
from aiohttp import web
upstream = sys.argv[2]
async def ctx(app):
    async with aiohttp.ClientSession() as session:
        app["session"] = session
        yield
async def rpc(request):
    body = await request.read()
    async with request.app["session"].post(upstream, data=body,
            headers={"Content-Type": "application/json"}) as reply:
        return web.Response(body=await reply.read(), content_type="application/json")
app = web.Application()
app.cleanup_ctx.append(ctx)
app.router.add_post("/", rpc)
app.router.add_get("/ready", lambda request: web.Response(text="ok"))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
"""


# name -> (the call, whether the gateway's cache is on for it)
CASES = {
    "eth_blockNumber": (
        {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
        False,
    ),
    "eth_chainId": ({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, True),
    "eth_getBlockByNumber(finalized)": (
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_getBlockByNumber",
            "params": ["0x10", False],
        },
        True,
    ),
}


def post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--paced-ms", type=int, default=30, help="think time per connection in the paced rows"
    )
    parser.add_argument("--rounds", type=int, default=3, help="turns each target takes")
    parser.add_argument(
        "--loop", default="auto", choices=["auto", "asyncio", "uvloop"], help="gateway's loop"
    )
    parser.add_argument(
        "--without-explain",
        action="store_true",
        help="also a gateway with rpc.explain_headers=false beside each: what the headers cost",
    )
    parser.add_argument(
        "--two-networks",
        action="store_true",
        help="also the gateway with a second network (another anvil, chain 31338) beside "
        "each, called at /rpc and /rpc/31337: what serving several networks costs",
    )
    parser.add_argument(
        "--baseline",
        help="a checkout of an earlier commit, as a PYTHONPATH (after a ':', packages it "
        "needs that this venv has dropped): its gateway beside each, at its defaults (what "
        "the gateway measured then, in the same run)",
    )
    return parser.parse_args()


def main() -> None:
    args = arguments()
    work = Path(tempfile.mkdtemp(prefix="bench-rpc-"))
    with contextlib.ExitStack() as chains:
        chain = chains.enter_context(DevChain.start(log_dir=work / "anvil"))
        chain.rpc("anvil_mine", ["0x100"])  # 256 blocks: block 16 is finalized
        second = None
        if args.two_networks:
            second = chains.enter_context(DevChain.start(chain_id=31338, log_dir=work / "b"))
        proxy_port = free_port()
        with contextlib.ExitStack() as servers:
            servers.enter_context(
                serving(
                    [sys.executable, "-c", BARE_PROXY, str(proxy_port), chain.url],
                    {},
                    cpu=0,
                    log=work / "proxy.log",
                    ready_url=f"http://127.0.0.1:{proxy_port}/ready",
                )
            )
            gateways = start_gateways(servers, work, chain, second, args)
            targets = {
                "anvil direct": chain.url,
                "bare aiohttp proxy": f"http://127.0.0.1:{proxy_port}/",
            }
            print(
                f"JSON-RPC over HTTP, {args.connections} connections, {args.seconds}s per row "
                f"in {args.rounds} interleaved rounds (best kept); gateway: access log + "
                f"metrics + tracing (parentbased_traceidratio 0.1), event loop {args.loop}"
            )
            header = f"{'case':<34} {'target':<36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs proxy':>9}"
            proxy_rps: dict[str, float] = {}
            for name, (payload, cached) in CASES.items():
                print()
                print(header)
                script = work / f"{name.replace('(', '_').replace(')', '')}.lua"
                script.write_text(WRK_SCRIPT % json.dumps(payload))
                label = "gateway (cache on)" if cached else "gateway (cache off)"
                urls = [*targets.items(), (label, gateways[cached, True])]
                if args.without_explain:
                    urls.append((label.replace(")", ", no explain)"), gateways[cached, False]))
                if args.baseline is not None:
                    urls.append((label.replace(")", ", baseline)"), gateways[cached, "baseline"]))
                if second is not None:
                    two = gateways[cached, "two"]
                    urls.append((label.replace(")", ", 2 networks)"), two))
                    urls.append((label.replace(")", ", 2 networks, /31337)"), f"{two}/31337"))
                for target, url in urls:
                    assert "result" in post(url, payload), (target, post(url, payload))
                    run_wrk(
                        target, url, seconds=2, connections=args.connections, cpu=1, script=script
                    )
                rows = interleaved(urls, script, args.seconds, args.connections, args.rounds)
                proxy_rps[name] = print_rows(name, rows)
                print_networks(rows)
                paced_script = work / f"paced-{script.name}"
                paced_script.write_text(script.read_text() + PACED % args.paced_ms)
                paced = interleaved(urls, paced_script, args.seconds, args.connections, args.rounds)
                print(
                    f"{'':<34} paced: each connection waits {args.paced_ms} ms on average between calls"
                )
                print_rows(name, paced)
            healthz = f"{gateways[True, True].removesuffix('/rpc')}/healthz"
            run_wrk("healthz", healthz, seconds=2, connections=args.connections, cpu=1)
            floor = run_wrk(
                "healthz", healthz, seconds=args.seconds, connections=args.connections, cpu=1
            )
            print()
            print(
                f"for scale: GET /healthz on the same gateway (the middleware alone, no JSON-RPC "
                f"work): {floor.requests_per_s:.0f} req/s, "
                f"{floor.requests_per_s / proxy_rps['eth_chainId']:.2f}x the bare proxy's eth_chainId"
            )


def start_gateways(
    servers: contextlib.ExitStack,
    work: Path,
    chain: DevChain,
    second: DevChain | None,
    args: argparse.Namespace,
) -> dict[tuple[bool, object], str]:
    """(cache, explain) -> the URL of a gateway so configured; (cache, "two"): the same
    gateway serving a second network (``second``) too."""
    gateways: dict[tuple[bool, object], str] = {}

    def env_for(cache: bool, **settings: str) -> dict[str, str]:
        port = free_port()
        return gateway_env(
            work,
            chain.url,
            f"gw{port}.db",
            GATEWAY_RPC__CACHE_ENABLED="true" if cache else "false",
            GATEWAY_RPC__ANONYMOUS__RATE_PER_S="1000000",
            GATEWAY_RPC__ANONYMOUS__BURST="1000000",
            **settings,
        )

    def start(env: dict[str, str]) -> str:
        port = free_port()
        servers.enter_context(serving_gateway(port, env, cpu=0, log=work / f"gateway-{port}.log"))
        return f"http://127.0.0.1:{port}/rpc"

    explains = (True, False) if args.without_explain else (True,)
    for cache in (False, True):
        for explain in explains:
            gateways[cache, explain] = start(
                env_for(
                    cache,
                    GATEWAY_RPC__EXPLAIN_HEADERS="true" if explain else "false",
                    GATEWAY_SERVER__EVENT_LOOP=args.loop,
                )
            )
        if second is not None:  # the same gateway, serving a second network too
            env = env_for(cache, GATEWAY_SERVER__EVENT_LOOP=args.loop)
            del env["GATEWAY_UPSTREAMS"], env["GATEWAY_CHAIN_ID"]
            env["GATEWAY_NETWORKS"] = json.dumps(
                [
                    {"chain_id": 31337, "upstreams": [{"url": chain.url}]},
                    {"chain_id": 31338, "upstreams": [{"url": second.url}]},
                ]
            )
            gateways[cache, "two"] = start(env)
        if args.baseline is not None:  # the earlier commit's gateway, its own settings only
            gateways[cache, "baseline"] = start(env_for(cache, PYTHONPATH=args.baseline))
    return gateways


# Think time drawn uniformly from 0..2x the mean, so connections do not move in lockstep
# (a fixed delay makes all of them fire together: a burst of 32 every period).
PACED = """
local mean = %d
function delay()
  return math.random(0, 2 * mean)
end
"""


def wrk(url: str, script: Path, seconds: float, connections: int) -> Result:
    return run_wrk(url, url, seconds=seconds, connections=connections, cpu=1, script=script)


def interleaved(
    urls: list[tuple[str, str]], script: Path, seconds: int, connections: int, rounds: int
) -> list[tuple[str, Result]]:
    """Each target ``rounds`` times, in turn (a, b, c, a, b, c, ...), ``seconds`` in all;
    each keeps its best round. A shared machine slows down in bursts: taking turns gives
    every target the same chances, where one long run each gave one of them the burst."""
    best: dict[str, Result] = {}
    for _ in range(rounds):
        for target, url in urls:
            result = wrk(url, script, max(1, round(seconds / rounds)), connections)
            if target not in best or result.requests_per_s > best[target].requests_per_s:
                best[target] = result
    return [(target, best[target]) for target, _ in urls]


def print_networks(rows: list[tuple[str, Result]]) -> None:
    """The gateway against the other gateway rows: two networks, no explain headers, the
    baseline commit (each as a ratio of the gateway's requests/s)."""
    one = rows[2][1].requests_per_s
    for target, result in rows[3:]:
        print(f"{'':<34} {target}: the gateway is {one / result.requests_per_s:.3f}x it")


def print_rows(name: str, rows: list[tuple[str, Result]]) -> float:
    """Rows are (anvil direct, bare proxy, gateway): ratios to the proxy, p99 overhead.
    Returns the proxy's requests/s."""
    proxy_rps = rows[1][1].requests_per_s
    for target, result in rows:
        print(
            f"{name:<34} {target:<36} {result.requests_per_s:>9.0f} {result.p50_ms:>8.3f} "
            f"{result.p99_ms:>8.3f} {result.requests_per_s / proxy_rps:>8.2f}x"
        )
    direct, gateway = rows[0][1], rows[2][1]
    print(
        f"{'':<34} p99 overhead of the gateway over anvil direct: "
        f"{gateway.p99_ms - direct.p99_ms:+.3f} ms (p50 {gateway.p50_ms - direct.p50_ms:+.3f} ms)"
    )
    return proxy_rps


if __name__ == "__main__":
    main()

"""The gateway beside the reference Go gateways, eRPC and Optimism's proxyd, and anvil direct,
on one anvil, in one run.

    .venv/bin/python bench/peers.py [--seconds 5] [--connections 32] [--rounds 2]

Each server is pinned to core 0 and wrk to core 1 (anvil floats); every case is the same
JSON-RPC body sent flat out by 32 connections. The peers run as their docs recommend for
production (caches on, no rate limits: ``../shared/tools/peers/``); the gateway at the
defaults a user gets (``gateway serve`` with only its upstream set: access log on, the
default sampler, no exporter), and again at the README's production sampling (ratio 0.1).
``eth_blockNumber`` and the uncached ``eth_call`` go to a gateway with its cache off, as the
peers pass them through. Peers not built are skipped with the command that builds them.
Rounds interleave the servers; the best round of each is kept (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from common import Result, free_port, run_wrk, serving_gateway, start

from gateway.chain import DevChain

PEERS_HOME = Path(os.environ.get("PEERS_HOME", Path(tempfile.gettempdir()) / "gateway-peers"))
PEERS_CONFIG = Path(__file__).resolve().parents[2] / "shared" / "tools" / "peers"
BUILD = (
    "ERPC_GIT=<git dir of github.com/erpc/erpc> INFRA_GIT=<git dir of "
    "github.com/ethereum-optimism/infra> ../shared/tools/peers/build.sh erpc proxyd"
)
WRK_SCRIPT = (
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[%s]]\n'
)


def call(method: str, params: list, call_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}


def post(url: str, payload: object) -> object:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def wait_answering(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            reply = post(url, call("eth_chainId", []))
            if isinstance(reply, dict) and reply.get("result") == hex(31337):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(url)
        time.sleep(0.2)


def peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident set (VmHWM), MiB; a child's if the pid is a wrapper."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    best = None
    for each in [pid, *map(int, children)]:
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                value = int(line.split()[1]) / 1024
                best = value if best is None else max(best, value)
    return best


def cases(chain: DevChain) -> dict[str, tuple[object, bool]]:
    """Case name -> (body, whether the gateway serves it with its cache off)."""
    account = chain.accounts[0].address
    batch = [call("eth_getBalance", [account, hex(n)], n) for n in range(1, 11)]
    return {
        "cached eth_chainId": (call("eth_chainId", []), False),
        "finalized eth_getBlockByNumber": (call("eth_getBlockByNumber", ["0x1", False]), False),
        "eth_blockNumber (gateway cache off)": (call("eth_blockNumber", []), True),
        "uncached eth_call": (
            call("eth_call", [{"to": account, "data": "0x"}, "latest"]),
            True,
        ),
        "10-call batch (finalized balances)": (batch, False),
    }


def main() -> None:  # noqa: PLR0912, PLR0915  # one run: every server, every case
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for key in [k for k in os.environ if k.startswith(("GATEWAY_", "OTEL_"))]:
        del os.environ[key]  # the gateway at its defaults, whatever this shell has set
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    logs = work / "logs"
    logs.mkdir()
    with ExitStack() as stack:
        chain = stack.enter_context(DevChain.start(log_dir=logs))
        chain.rpc("anvil_mine", ["0x80"])  # anvil calls latest - 64 finalized: block 1 is
        servers: dict[str, tuple[str, object]] = {"anvil direct": (chain.url, None)}

        def gateway(name: str, **env: str) -> None:
            port = free_port()
            environ = {
                "GATEWAY_UPSTREAMS": chain.url,
                "GATEWAY_DATABASE_URL": f"sqlite:///{work / (name + '.db')}",
                "GATEWAY_IDENTITY__KEYS_DIR": str(work / "keys"),
                "GATEWAY_RPC__ANONYMOUS__RATE_PER_S": "1000000",  # no limits, as the peers
                "GATEWAY_RPC__ANONYMOUS__BURST": "1000000",
                **env,
            }
            process = stack.enter_context(
                serving_gateway(port, environ, cpu=0, log=logs / f"{name}.log")
            )
            servers[name] = (f"http://127.0.0.1:{port}/rpc", process)

        gateway("gateway (defaults)")
        gateway(
            "gateway (sampling 0.1)",
            OTEL_TRACES_SAMPLER="parentbased_traceidratio",
            OTEL_TRACES_SAMPLER_ARG="0.1",
        )
        gateway("gateway (defaults, cache off)", GATEWAY_RPC__CACHE_ENABLED="false")

        erpc = PEERS_HOME / "erpc-server"
        if erpc.exists():
            port, metrics = free_port(), free_port()
            env = {
                "ERPC_PORT": str(port),
                "ERPC_METRICS_PORT": str(metrics),
                "ERPC_LOG_LEVEL": "warn",
                "ANVIL_URL": chain.url,
            }
            process = start([str(erpc), str(PEERS_CONFIG / "erpc.yaml")], env, 0, logs / "erpc.log")
            stack.callback(process.terminate)
            url = f"http://127.0.0.1:{port}/main/evm/31337"
            wait_answering(url)
            servers["eRPC 0.1.2"] = (url, process)
        else:
            print(f"eRPC skipped: not built ({BUILD})", file=sys.stderr)

        proxyd = PEERS_HOME / "proxyd"
        redis = shutil.which("redis-server")
        if proxyd.exists() and redis:
            redis_port, port, metrics = free_port(), free_port(), free_port()
            redis_process = start(
                [redis, "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                {},
                None,
                logs / "redis.log",
            )
            stack.callback(redis_process.terminate)
            config = (PEERS_CONFIG / "proxyd.toml").read_text()
            for key, value in {
                "PROXYD_PORT": port,
                "PROXYD_METRICS_PORT": metrics,
                "REDIS_PORT": redis_port,
                "ANVIL_URL": chain.url,
            }.items():
                config = config.replace("${" + key + "}", str(value))
            (work / "proxyd.toml").write_text(config)
            process = start([str(proxyd), str(work / "proxyd.toml")], {}, 0, logs / "proxyd.log")
            stack.callback(process.terminate)
            url = f"http://127.0.0.1:{port}/"
            time.sleep(0.5)
            wait_answering(url)
            servers["proxyd v4.30.0"] = (url, process)
        else:
            print(f"proxyd skipped: not built or no redis-server ({BUILD})", file=sys.stderr)

        results: dict[tuple[str, str], Result] = {}
        for case, (body, cache_off) in cases(chain).items():
            script = work / "body.lua"
            script.write_text(WRK_SCRIPT % json.dumps(body))
            names = [
                name
                for name in servers
                if not name.startswith("gateway") or ("cache off" in name) == cache_off
            ]
            for name in names:  # warm: caches filled, connections made
                post(servers[name][0], body)
            for _ in range(args.rounds):
                for name in names:
                    result = run_wrk(
                        name,
                        servers[name][0],
                        seconds=args.seconds,
                        connections=args.connections,
                        cpu=1,
                        script=script,
                    )
                    best = results.get((case, name))
                    if best is None or result.requests_per_s > best.requests_per_s:
                        results[(case, name)] = result
            _print_case(case, names, results)
        print("\npeak RSS (MiB):", end="")
        for name, (_, process) in servers.items():
            if process is not None:
                rss = peak_rss_mib(process.pid)  # type: ignore[attr-defined]
                print(f"  {name} {rss:.0f}" if rss is not None else f"  {name} ?", end="")
        print()


def _print_case(case: str, names: list[str], results: dict[tuple[str, str], Result]) -> None:
    peers = [results[(case, n)] for n in names if n.startswith(("eRPC", "proxyd"))]
    best_peer = max(peers, key=lambda r: r.requests_per_s) if peers else None
    print(f"\n{case}")
    print(
        f"  {'server':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs best peer':>13}"
    )
    for name in names:
        r = results[(case, name)]
        ratio = f"{r.requests_per_s / best_peer.requests_per_s:.2f}x" if best_peer else "-"
        print(
            f"  {name:<34} {r.requests_per_s:>9.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} "
            f"{r.errors:>7} {ratio:>13}"
        )


if __name__ == "__main__":
    main()

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
Each server runs alone while it is measured; rounds interleave the servers and the best\nround of each is kept (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
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
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[%s]==]\n'
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


Launcher = Callable[[ExitStack], tuple[str, "subprocess.Popen[bytes] | None"]]


def launchers(chain: DevChain, work: Path, logs: Path) -> dict[str, Launcher]:
    """Each server the bench measures: started into an ExitStack, its URL and process."""
    found: dict[str, Launcher] = {"anvil direct": lambda _stack: (chain.url, None)}

    def gateway(name: str, **env: str) -> Launcher:
        def launch(stack: ExitStack) -> tuple[str, subprocess.Popen[bytes]]:
            port = free_port()
            environ = {
                "GATEWAY_UPSTREAMS": chain.url,
                "GATEWAY_DATABASE_URL": f"sqlite:///{work / 'gateway.db'}",
                "GATEWAY_IDENTITY__KEYS_DIR": str(work / "keys"),
                "GATEWAY_RPC__ANONYMOUS__RATE_PER_S": "1000000",  # no limits, as the peers
                "GATEWAY_RPC__ANONYMOUS__BURST": "1000000",
                **env,
            }
            log = logs / f"{name}.log"
            process = stack.enter_context(serving_gateway(port, environ, cpu=0, log=log))
            return f"http://127.0.0.1:{port}/rpc", process

        return launch

    found["gateway (defaults)"] = gateway("gateway (defaults)")
    found["gateway (sampling 0.1)"] = gateway(
        "gateway (sampling 0.1)",
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0.1",
    )
    found["gateway (defaults, cache off)"] = gateway(
        "gateway (cache off)", GATEWAY_RPC__CACHE_ENABLED="false"
    )
    erpc = PEERS_HOME / "erpc-server"
    if erpc.exists():

        def launch_erpc(stack: ExitStack) -> tuple[str, subprocess.Popen[bytes]]:
            port, metrics = free_port(), free_port()
            env = {
                "ERPC_PORT": str(port),
                "ERPC_METRICS_PORT": str(metrics),
                "ERPC_LOG_LEVEL": "warn",
                "ANVIL_URL": chain.url,
            }
            config = str(PEERS_CONFIG / "erpc.yaml")
            process = start([str(erpc), config], env, 0, logs / "erpc.log")
            stack.callback(_stop, process)
            url = f"http://127.0.0.1:{port}/main/evm/31337"
            wait_answering(url)
            return url, process

        found["eRPC 0.1.2"] = launch_erpc
    else:
        print(f"eRPC skipped: not built ({BUILD})", file=sys.stderr)
    proxyd = PEERS_HOME / "proxyd"
    redis = shutil.which("redis-server")
    if proxyd.exists() and redis:

        def launch_proxyd(stack: ExitStack) -> tuple[str, subprocess.Popen[bytes]]:
            redis_port, port, metrics = free_port(), free_port(), free_port()
            args = [redis, "--port", str(redis_port), "--save", "", "--appendonly", "no"]
            stack.callback(_stop, start(args, {}, None, logs / "redis.log"))
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
            stack.callback(_stop, process)
            url = f"http://127.0.0.1:{port}/"
            wait_answering(url)
            return url, process

        found["proxyd v4.30.0"] = launch_proxyd
    else:
        print(f"proxyd skipped: not built or no redis-server ({BUILD})", file=sys.stderr)
    return found


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--case", default="", help="only the cases whose name has this")
    parser.add_argument("--server", default="", help="only the servers whose name has this")
    args = parser.parse_args()
    for key in [k for k in os.environ if k.startswith(("GATEWAY_", "OTEL_"))]:
        del os.environ[key]  # the gateway at its defaults, whatever this shell has set
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    logs = work / "logs"
    logs.mkdir()
    results: dict[tuple[str, str], Result] = {}
    rss: dict[str, float] = {}
    with DevChain.start(log_dir=logs) as chain:
        chain.rpc("anvil_mine", ["0x80"])  # anvil calls latest - 64 finalized: block 1 is
        table = {
            name: case
            for name, case in cases(chain).items()
            if any(part in name for part in args.case.split(","))
        }
        servers = {
            name: launch
            for name, launch in launchers(chain, work, logs).items()
            if any(part in name for part in args.server.split(","))
        }
        for _ in range(args.rounds):  # each server alone on its core while it is measured
            for name, launch in servers.items():
                with ExitStack() as stack:
                    url, process = launch(stack)
                    for case, (body, cache_off) in table.items():
                        if name.startswith("gateway") and ("cache off" in name) != cache_off:
                            continue
                        script = work / "body.lua"
                        script.write_text(WRK_SCRIPT % json.dumps(body))
                        post(url, body)  # warm: caches filled
                        result = run_wrk(
                            name,
                            url,
                            seconds=args.seconds,
                            connections=args.connections,
                            cpu=1,
                            script=script,
                        )
                        best = results.get((case, name))
                        if best is None or result.requests_per_s > best.requests_per_s:
                            results[(case, name)] = result
                    if process is not None:
                        peak = peak_rss_mib(process.pid) or 0.0
                        rss[name] = max(rss.get(name, 0.0), peak)
    for case in table:
        _print_case(case, [n for n in servers if (case, n) in results], results)
    print("\npeak RSS (MiB): " + ", ".join(f"{name} {value:.0f}" for name, value in rss.items()))


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

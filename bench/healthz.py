"""GET /healthz through the full middleware stack vs. a bare aiohttp app, in one run.

    .venv/bin/python bench/healthz.py [--seconds 10] [--connections 32]

Each server runs in its own process pinned to core 0; wrk runs pinned to core 1. The full
stack writes its JSON access log to a file (as a container runtime would) and records spans
(with no exporter, so the cost measured is the gateway's, not a collector's).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

from common import Result, free_port, gateway_cmd, print_table, run_wrk, serving

BARE_APP = """
import sys
from aiohttp import web
async def healthz(request):
    return web.json_response({"status": "ok"})
app = web.Application()
app.router.add_get("/healthz", healthz)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="turns each server takes")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-healthz-"))
    variants = [
        ("bare aiohttp (no middleware)", [sys.executable, "-c", BARE_APP], {}),
        (
            "gateway, full stack, sampler always_on",
            None,
            {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
        ),
        (
            "gateway, full stack, sampler ratio 0.1",
            None,
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
        ),
    ]
    servers = []
    with contextlib.ExitStack() as stack:
        for name, cmd, env in variants:
            port = free_port()
            if cmd is None:
                cmd = gateway_cmd(port)
                env = {
                    **env,
                    "GATEWAY_LOG_FORMAT": "json",
                    "GATEWAY_LOG_LEVEL": "info",
                    "GATEWAY_DATABASE_URL": f"sqlite:///{work / f'gw{port}.db'}",
                    "GATEWAY_IDENTITY__KEYS_DIR": str(work / f"keys{port}"),
                }
            else:
                cmd = [*cmd, str(port)]
            url = f"http://127.0.0.1:{port}/healthz"
            stack.enter_context(
                serving(cmd, env, cpu=0, log=work / f"server-{port}.log", ready_url=url)
            )
            run_wrk(name, url, seconds=2, connections=args.connections, cpu=1)  # warm-up
            servers.append((name, url))
        # Interleaved rounds, best kept: a shared machine slows down in bursts, and taking
        # turns gives every server the same chances.
        best: dict[str, Result] = {}
        for _ in range(args.rounds):
            for name, url in servers:
                seconds = max(1, round(args.seconds / args.rounds))
                result = run_wrk(name, url, seconds=seconds, connections=args.connections, cpu=1)
                if name not in best or result.requests_per_s > best[name].requests_per_s:
                    best[name] = result
        results = [best[name] for name, _ in servers]
    print(
        f"GET /healthz, {args.connections} connections, {args.seconds}s each in "
        f"{args.rounds} interleaved rounds (best kept), servers on core 0, wrk on core 1"
    )
    print_table(results, baseline=results[0])
    lines = sum(1 for _ in (work).glob("server-*.log"))
    print(f"(access logs written to {work}, {lines} files)")


if __name__ == "__main__":
    main()

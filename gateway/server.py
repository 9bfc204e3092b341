"""Serving an app until told to stop: sockets, graceful shutdown, the process's GC set-up."""

from __future__ import annotations

import asyncio
import gc
import signal
import socket

import structlog
from aiohttp import web

from gateway.config import Settings
from gateway.lane import GatewayRunner

log = structlog.get_logger("gateway")


async def serve_app(
    app: web.Application,
    settings: Settings,
    *,
    reuse_port: bool = False,
    metrics_port: int | None = None,
) -> None:
    """Run until SIGTERM/SIGINT, then stop accepting, let in-flight requests finish
    (bounded by ``server.shutdown_timeout_s``) and close every resource.

    ``reuse_port``: several processes share the port. ``metrics_port``: this process also
    answers on a port of its own (per-process scrapes)."""
    runner = GatewayRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=settings.server.shutdown_timeout_s,
    )
    try:
        await runner.setup()  # runs every cleanup_ctx up to the first that fails
        site = web.TCPSite(
            runner, settings.server.host, settings.server.port, reuse_port=reuse_port
        )
        await site.start()
        if metrics_port:
            await web.TCPSite(runner, settings.server.host, metrics_port).start()
        # Everything imported and built so far lives as long as the process: keep it out of
        # the cyclic GC's full collections, which otherwise rescan it while serving.
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.info("listening", url=f"http://{settings.server.host}:{settings.server.port}")
        await stop.wait()
        log.info("shutting down", shutdown_timeout_s=settings.server.shutdown_timeout_s)
    finally:
        await runner.cleanup()  # closes what setup opened, even when setup failed
        log.info("stopped")


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now (tests and benches start servers on it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])

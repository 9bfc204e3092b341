"""`gateway serve --workers N`: N processes share the port (SO_REUSEPORT).

The parent migrates the schema once, starts the workers, restarts one that dies, and on
SIGTERM/SIGINT passes the signal on and waits for every worker's graceful shutdown. Each
worker also serves on ``server.metrics_port + index`` so that Prometheus scrapes every
process on its own (the shared port would answer from whichever process the kernel picks).

What is per process: the response cache and, without Redis, rate-limit buckets (N workers
allow N times the limit: configure GATEWAY_REDIS_URL for one shared limit). With SQLite
only worker 0 anchors; on PostgreSQL an advisory lock picks one per round.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import time
from multiprocessing.process import BaseProcess
from typing import Any

import structlog
from pydantic import SecretStr

from gateway import eventloop
from gateway.config import Settings

log = structlog.get_logger("gateway.workers")


def worker_settings(settings: Settings, index: int) -> Settings:
    """What worker ``index`` runs with: the schema is migrated already; with SQLite one
    process anchors."""
    update: dict[str, Any] = {
        "storage": settings.storage.model_copy(update={"migrate_on_start": "never"}),
    }
    if index > 0 and settings.storage.database_url.get_secret_value().startswith("sqlite"):
        update["anchor"] = settings.anchor.model_copy(update={"enabled": False})
    return settings.model_copy(update=update)


def _worker(settings_json: str, index: int) -> None:
    from gateway.app import create_app  # noqa: PLC0415  # in the child process
    from gateway.server import serve_app  # noqa: PLC0415
    from gateway.telemetry import configure_logging  # noqa: PLC0415
    from gateway.telemetry.logging import bind_process_fields  # noqa: PLC0415

    settings = Settings.model_validate_json(settings_json)
    configure_logging(settings.log)
    bind_process_fields(worker=index)
    metrics_port = settings.server.metrics_port + index if settings.server.metrics_port else None
    eventloop.run(
        serve_app(create_app(settings), settings, reuse_port=True, metrics_port=metrics_port),
        settings.server.event_loop,
    )


def _dump_with_secrets(settings: Settings) -> str:
    """The settings for a child process, secrets included (they never leave this host)."""

    def reveal(value: Any) -> Any:  # noqa: ANN401
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [reveal(v) for v in value]
        return value

    return json.dumps(reveal(settings.model_dump(mode="python")), default=str)


def _migrate_once(settings: Settings) -> None:
    """Before the workers start (they run with migrate_on_start=never)."""
    from gateway.storage import Database, migrate  # noqa: PLC0415

    mode = settings.storage.migrate_on_start
    url = settings.storage.database_url.get_secret_value()
    if not (mode == "always" or (mode == "auto" and url.startswith("sqlite"))):
        return

    async def upgrade() -> None:
        database = Database.open(url)
        try:
            await migrate.upgrade(database)
        finally:
            await database.close()

    asyncio.run(upgrade())


class Supervisor:
    """Starts the workers, restarts one that dies, passes signals on."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._payloads = [_dump_with_secrets(worker_settings(settings, i)) for i in range(count)]
        self.processes: dict[int, BaseProcess] = {}
        self.stopping = False

    def _start(self, index: int) -> None:
        process = self._context.Process(
            target=_worker, args=(self._payloads[index], index), name=f"worker-{index}"
        )
        process.start()
        self.processes[index] = process

    def _signal(self, signum: int, _frame: object) -> None:
        self.stopping = True
        for process in self.processes.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)  # each worker shuts down gracefully on its own

    def run(self) -> int:
        for index in range(len(self._payloads)):
            self._start(index)
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        log.info("workers started", count=len(self._payloads), port=self.settings.server.port)
        while not self.stopping:
            time.sleep(0.5)
            for index, process in list(self.processes.items()):
                if not process.is_alive() and not self.stopping:
                    log.error(
                        "worker died; starting it again", worker=index, exitcode=process.exitcode
                    )
                    self._start(index)
        deadline = time.monotonic() + self.settings.server.shutdown_timeout_s + 10
        for process in self.processes.values():
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        log.info("workers stopped")
        return 0


def serve_workers(settings: Settings, count: int) -> int:
    _migrate_once(settings)
    return Supervisor(settings, count).run()

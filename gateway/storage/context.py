"""The app's database: opened, its schema checked (or migrated), closed on cleanup."""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from gateway.config import SETTINGS
from gateway.errors import StorageUnavailable
from gateway.storage import migrate
from gateway.storage.checkpoint import WalCheckpointer
from gateway.storage.database import STORAGE, Database, SchemaOutOfDate, storage_errors
from gateway.telemetry import TELEMETRY

log = structlog.get_logger("gateway.storage")


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the database and make sure its schema is the one this code needs."""
    settings = app[SETTINGS].storage
    database = Database.open(
        settings.database_url.get_secret_value(), deadline_s=settings.statement_timeout_s
    )
    database.metrics = app[TELEMETRY].metrics
    try:
        mode = settings.migrate_on_start
        if mode == "always" or (mode == "auto" and database.backend == "sqlite"):
            await migrate.upgrade(database)
        else:
            await _check_schema(database)
        app[STORAGE] = database
        if database.path is None:
            yield
        else:
            checkpointer = WalCheckpointer(database.path, metrics=app[TELEMETRY].metrics)
            async with checkpointer.running():
                yield
    finally:
        await database.close()


async def _check_schema(database: Database) -> None:
    """Refuse to serve on an out-of-date schema; a database that is down at start is not
    fatal (readiness reports it, and requests get 503 until it is back)."""
    try:
        async with storage_errors():
            current = await migrate.current_revision(database)
    except StorageUnavailable as exc:
        log.warning("database unreachable at start", detail=exc.detail)
        return
    head = migrate.head_revision()
    if current != head:
        raise SchemaOutOfDate(current, head)

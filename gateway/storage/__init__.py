"""Storage: one SQLAlchemy (async) engine over SQLite by default, PostgreSQL by URL."""

from gateway.storage import migrate
from gateway.storage.context import storage_ctx
from gateway.storage.database import (
    STORAGE,
    Database,
    SchemaOutOfDate,
    sqlalchemy_url,
    storage_errors,
)

__all__ = [
    "STORAGE",
    "Database",
    "SchemaOutOfDate",
    "migrate",
    "sqlalchemy_url",
    "storage_ctx",
    "storage_errors",
]

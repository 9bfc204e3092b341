"""Storage: one SQLAlchemy (async) engine over SQLite by default, PostgreSQL by URL."""

from gateway.storage.database import STORAGE, Database, storage_ctx, sqlalchemy_url

__all__ = ["STORAGE", "Database", "sqlalchemy_url", "storage_ctx"]

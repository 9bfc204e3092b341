"""Storage: one SQLAlchemy (async) engine over SQLite by default, PostgreSQL by URL."""

from gateway.storage.database import STORAGE, Database, sqlalchemy_url, storage_ctx

__all__ = ["STORAGE", "Database", "sqlalchemy_url", "storage_ctx"]

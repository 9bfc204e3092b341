"""Alembic migrations of the gateway's schema (run by `gateway db upgrade` or at start)."""

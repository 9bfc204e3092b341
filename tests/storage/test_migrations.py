"""Migrations create exactly the tables of gateway/storage/schema.py."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gateway.storage import Database, migrate
from gateway.storage.schema import metadata


async def test_migrated_schema_matches_the_tables(tmp_path):
    database = Database.open(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        await migrate.upgrade(database)
        await migrate.upgrade(database)  # a second run is a no-op
        assert await migrate.current_revision(database) == migrate.head_revision()
        async with database.engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
        assert diff == []
    finally:
        await database.close()

"""A migrated SQLite database in the test's temp dir."""

import pytest

from gateway.storage import Database, migrate


@pytest.fixture(name="database")
async def _database(tmp_path):
    database = Database.open(f"sqlite:///{tmp_path / 'g.db'}")
    await migrate.upgrade(database)
    yield database
    await database.close()

"""The chaos deployment, for the chaos run and the soak."""

from __future__ import annotations

import pytest

from tests.chaos.cluster import chaos_cluster


@pytest.fixture(name="cluster")
def _cluster(tmp_path, postgres, redis_server):
    import redis as redis_sync

    redis_url = f"{redis_server}/14"
    redis_sync.Redis.from_url(redis_url).flushdb()
    with chaos_cluster(tmp_path, postgres.new_database(), redis_url) as cluster:
        yield cluster

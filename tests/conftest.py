"""Shared fixtures: a real anvil per session, settings, and a gateway app under test."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import create_app
from gateway.chain import DevChain
from gateway.config import LogSettings, Settings, load_settings
from gateway.telemetry import configure_logging
from tests.helpers.lane import LaneTestServer
from tests.helpers.processes import free_port
from tests.helpers.redis import PrivateRedis

__all__ = ["free_port"]


@pytest.fixture(scope="session", name="anvil")
def _anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevChain]:
    with DevChain.start(log_dir=tmp_path_factory.mktemp("anvil")) as chain:
        yield chain


class LogLines:
    """JSON log lines the app wrote, parsed."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.sink = configure_logging(
            LogSettings(level="debug", format="json"), stream=self.buffer, cache=False
        )

    def lines(self) -> list[dict[str, Any]]:
        self.sink.flush()
        return [json.loads(line) for line in self.buffer.getvalue().splitlines() if line]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]


@pytest.fixture(name="logs", autouse=True)
def _logs() -> Iterator[LogLines]:
    captured = LogLines()
    yield captured
    structlog.reset_defaults()


SECOND_CHAIN_ID = 31338


@pytest.fixture(name="chain_b")
def _chain_b(tmp_path: Path) -> Iterator[DevChain]:
    """A second chain (id 31338) of this test alone, for gateways of two networks."""
    with DevChain.start(chain_id=SECOND_CHAIN_ID, log_dir=tmp_path / "anvil-b") as chain:
        yield chain


@pytest.fixture(scope="session", name="postgres")
def _postgres():
    """One private PostgreSQL for the session; each test that uses it gets a new database."""
    from tests.helpers import postgres

    if not postgres.available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries are missing (scripts/system-deps.sh)")
        pytest.skip("PostgreSQL server binaries not installed")
    with postgres.private_postgres() as server:
        yield server


_redis_databases = iter(range(10**9))


@pytest.fixture(name="database_env")
def _database_env(tmp_path: Path) -> dict[str, str]:
    """The embedded default; suites that must also run on PostgreSQL override this fixture
    with ``backend_env`` (parametrized)."""
    return {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}"}


def backend_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """sqlite, postgresql, or sqlite + redis (nonces, revocations and rate limits in Redis),
    by the fixture's param: the same tests on every backend."""
    if request.param == "sqlite":
        return {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}"}
    if request.param == "redis":
        url = request.getfixturevalue("redis_server")
        database = int(next(_redis_databases)) % 16  # a clean keyspace per test
        import redis as redis_sync

        redis_sync.Redis.from_url(f"{url}/{database}").flushdb()
        return {
            "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}",
            "GATEWAY_REDIS_URL": f"{url}/{database}",
        }
    server = request.getfixturevalue("postgres")
    return {
        "GATEWAY_DATABASE_URL": server.new_database(),
        "GATEWAY_STORAGE__MIGRATE_ON_START": "always",
    }


@pytest.fixture(name="make_settings")
def _make_settings(tmp_path: Path, database_env: dict[str, str]) -> Callable[..., Settings]:
    def make(*, upstreams: list[str] | None = None, **env: str) -> Settings:
        environ = {
            **database_env,
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_IDENTITY__KEYS_DIR": str(tmp_path / "keys"),
            **env,
        }
        if upstreams is not None:
            environ["GATEWAY_UPSTREAMS"] = ",".join(upstreams)
        return load_settings(None, environ)

    return make


@pytest.fixture(name="spans")
def _spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(name="gateway")
async def _gateway(aiohttp_client, anvil: DevChain, make_settings, spans):
    settings = make_settings(upstreams=[anvil.url], GATEWAY_CHAIN_ID=str(anvil.chain_id))
    return await aiohttp_client(LaneTestServer(create_app(settings, span_exporters=[spans])))


@pytest.fixture(scope="session", name="redis_server")
def _redis_server(tmp_path_factory):
    """A private redis-server on a free loopback port, no persistence."""
    redis = PrivateRedis(tmp_path_factory.mktemp("redis"))
    redis.start()
    try:
        yield redis.url
    finally:
        redis.stop()

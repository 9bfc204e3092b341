"""Several replicas on one PostgreSQL: exactly one anchors a batch; another takes over."""

import asyncio

import pytest
import sqlalchemy as sa
from eth_account import Account

from gateway.app import create_app
from gateway.records.routes import ANCHORER
from gateway.storage import STORAGE
from gateway.storage.schema import anchor_batches
from tests.helpers.lane import LaneTestServer
from tests.helpers.waiting import eventually
from tests.records.conftest import ANCHOR_KEY_INDEX, mail, sign_typed

pytestmark = pytest.mark.integration


@pytest.fixture(name="database_env")
def _postgres_only(postgres):
    return {
        "GATEWAY_DATABASE_URL": postgres.new_database(),
        "GATEWAY_STORAGE__MIGRATE_ON_START": "always",
    }


async def test_one_anchor_per_batch_while_two_replicas_race(
    aiohttp_client, chain, make_settings, records_env
):
    first = await aiohttp_client(
        LaneTestServer(create_app(make_settings(upstreams=[chain.url], **records_env)))
    )
    second = await aiohttp_client(
        LaneTestServer(create_app(make_settings(upstreams=[chain.url], **records_env)))
    )
    alice = Account.create()
    for index in range(6):
        typed = mail(alice.address, contents=f"replica {index}")
        replica = (first, second)[index % 2]
        response = await replica.post(
            "/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
        )
        assert response.status == 201
    results = await asyncio.gather(
        first.app[ANCHORER].anchor_once(), second.app[ANCHORER].anchor_once()
    )
    assert sorted(r is not None for r in results) == [False, True]
    async with first.app[STORAGE].engine.connect() as connection:
        batches = list(await connection.execute(sa.select(anchor_batches)))
    assert [(b.count, b.status) for b in batches] == [(6, "confirmed")]
    anchor_key = chain.accounts[ANCHOR_KEY_INDEX].address
    assert chain.rpc("eth_getTransactionCount", [anchor_key, "latest"]) == "0x1"


async def test_another_replica_takes_over_when_the_leader_dies(
    aiohttp_client, chain, make_settings, records_env
):
    first = await aiohttp_client(
        LaneTestServer(create_app(make_settings(upstreams=[chain.url], **records_env)))
    )
    second = await aiohttp_client(
        LaneTestServer(create_app(make_settings(upstreams=[chain.url], **records_env)))
    )
    alice = Account.create()
    typed = mail(alice.address)
    assert (
        await first.post(
            "/records", json={"typedData": typed, "signature": sign_typed(alice, typed)}
        )
    ).status == 201
    for replica in (first, second):  # both replicas' start-up rounds are over
        await eventually(replica.app[ANCHORER].resumed.is_set, what="the start-up round")
    leader = first.app[ANCHORER].store.leadership()
    assert await leader.__aenter__() is True  # the first replica leads ...
    assert await second.app[ANCHORER].anchor_once() is None  # ... so the second waits
    async with second.app[STORAGE].engine.begin() as connection:  # ... until the leader dies
        killed = await connection.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'")
        )
        assert killed.scalar_one() is True
    await eventually(second.app[ANCHORER].anchor_once, what="the second replica's batch")
    await leader.__aexit__(None, None, None)  # the dead leader's lock went with its connection

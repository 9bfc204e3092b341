"""POST /records in the lane: the same replies, refusals, limits and spans as aiohttp's
path, on connections shared with every other request, in order."""

from __future__ import annotations

import asyncio
import json

import pytest
from eth_account import Account

from gateway.app import create_app
from tests.helpers.lane import (
    Connection,
    LaneTestServer,
    answered,
    exchange,
    post,
    started_servers,
)
from tests.records.conftest import mail, sign_typed


@pytest.fixture(name="start")
async def _start(chain, make_settings, records_env, spans):
    async with started_servers() as start_server:

        async def start(*, lane: bool = True, **env) -> LaneTestServer:
            settings = make_settings(
                upstreams=[chain.url],
                **{**records_env, "GATEWAY_SERVER__LANE": str(lane).lower(), **env},
            )
            return await start_server(create_app(settings, span_exporters=[spans]))

        yield start


def submission(account=None, **overrides) -> dict:
    account = account or Account.create()
    typed = mail(account.address, **overrides)
    return {"typedData": typed, "signature": sign_typed(account, typed)}


def record(payload, **kwargs) -> bytes:
    return post(payload, path="/records", **kwargs)


def without(headers, *names):
    return [(k, v) for k, v in headers if k not in names]


async def test_a_record_is_stored_and_answered_as_aiohttp_would(start):
    lane, plain = await start(), await start(lane=False)  # one database: a record each
    replies = {}
    for server in (lane, plain):
        payload = submission()
        (first, again) = await exchange(
            server,
            record(payload, headers={"X-Request-ID": "r1"}),
            record(payload, headers={"X-Request-ID": "r1"}),
        )
        replies[server] = (first, again)
    assert answered(lane) == 2
    assert answered(plain) == 0
    for mine, theirs in zip(replies[lane], replies[plain], strict=True):
        assert mine.status == theirs.status
        assert without(mine.headers, "Date", "Content-Length") == without(
            theirs.headers, "Date", "Content-Length"
        )
        assert mine.json().keys() == theirs.json().keys()
    created, again = replies[lane]
    assert (created.status, again.status) == (201, 200)
    assert created.json()["id"] == again.json()["id"]
    record_id = created.json()["id"]
    (stored,) = await exchange(
        lane, f"GET /records/{record_id} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode()
    )
    assert stored.status == 200
    assert stored.json()["signer"] == created.json()["signer"]


def _bad_recovery_id():
    payload = submission()
    payload["signature"] = payload["signature"][:-2] + "1d"  # v = 29
    return payload


def _too_big():
    payload = submission()
    payload["typedData"]["message"]["nonce"] = 2**300
    return payload


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("malformed JSON", lambda: b"{not json"),
        ("not an object", lambda: b"[1, 2]"),
        ("missing signature", lambda: json.dumps({"typedData": mail(Account.create().address)})),
        ("extra field", lambda: json.dumps({**submission(), "admin": True})),
        ("bad signature hex", lambda: json.dumps({**submission(), "signature": "0xzz"})),
        ("recovery id 29", lambda: json.dumps(_bad_recovery_id())),
        ("expired", lambda: json.dumps(submission(message={"deadline": 1}))),
        ("integer too big", lambda: json.dumps(_too_big())),
        ("hostile types", lambda: json.dumps({**submission(), "typedData": {"types": "x"}})),
    ],
)
async def test_bad_records_get_the_same_refusal_and_store_nothing(start, name, raw):
    body = raw()
    body = body if isinstance(body, bytes) else body.encode()
    lane, plain = await start(), await start(lane=False)
    head = (
        b"POST /records HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        b"X-Request-ID: same\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    (mine,) = await exchange(lane, head + body)
    (theirs,) = await exchange(plain, head + body)
    assert answered(lane) == 1, name
    assert 400 <= mine.status < 500, (name, mine.body)
    assert (mine.status, mine.body) == (theirs.status, theirs.body), name
    assert without(mine.headers, "Date") == without(theirs.headers, "Date"), name
    assert "Traceback" not in mine.body.decode()
    (listing,) = await exchange(lane, b"GET /records HTTP/1.1\r\nHost: gateway\r\n\r\n")
    assert listing.json()["items"] == []


async def test_other_content_types_are_left_to_aiohttp(start):
    server = await start()
    raw = record(submission()).replace(b"application/json", b"text/plain", 1)
    (reply,) = await exchange(server, raw)
    assert reply.status == 415
    assert reply.json()["error"]["code"] == "request.unsupported_media_type"
    assert answered(server) == 0


async def test_the_submit_limit_refuses_in_the_lane_as_aiohttp_does(start):
    limits = {"GATEWAY_RECORDS__SUBMIT_RATE_PER_S": "0.01", "GATEWAY_RECORDS__SUBMIT_BURST": "2"}
    lane, plain = await start(**limits), await start(lane=False, **limits)
    outcomes = {}
    for server in (lane, plain):
        outcomes[server] = await exchange(server, *[record(submission()) for _ in range(3)])
        assert [r.status for r in outcomes[server]] == [201, 201, 429]
    mine, theirs = outcomes[lane][-1], outcomes[plain][-1]
    assert mine.body == theirs.body
    assert mine.header("Retry-After") == theirs.header("Retry-After") == "100"
    assert answered(lane) == 3


async def test_pipelined_records_and_other_requests_keep_their_order(start):
    server = await start()
    payloads = [submission() for _ in range(4)]
    connection = await Connection.open(server)
    listing = b"GET /records?limit=1 HTTP/1.1\r\nHost: gateway\r\n\r\n"
    await connection.send(record(payloads[0]) + record(payloads[1]) + listing + record(payloads[2]))
    replies = [await connection.reply() for _ in range(4)]
    await connection.send(record(payloads[3]))
    replies.append(await connection.reply())
    connection.close()
    assert [r.status for r in replies] == [201, 201, 200, 201, 201]
    assert "items" in replies[2].json()
    stored = [r.json()["signer"] for r in replies if "signer" in r.json()]
    assert [s.lower() for s in stored] == [
        p["typedData"]["message"]["from"].lower() for p in payloads
    ]
    assert answered(server) == 2  # the two before the listing; from it on, aiohttp's


async def test_a_sampled_record_has_its_server_span_and_record_spans(start, spans):
    server = await start(OTEL_TRACES_SAMPLER="always_on")
    spans.clear()
    (reply,) = await exchange(server, record(submission(), headers={"X-Request-ID": "rec-1"}))
    assert reply.status == 201
    assert answered(server) == 1
    finished = spans.get_finished_spans()
    (server_span,) = [s for s in finished if s.name == "POST /records"]
    assert server_span.attributes["gateway.request_id"] == "rec-1"
    assert server_span.attributes["http.response.status_code"] == 201
    children = {
        s.name for s in finished if s.parent and s.parent.span_id == server_span.context.span_id
    }
    assert {"records.verify", "records.store"} <= children


async def test_a_client_gone_before_its_answer_still_gets_its_record_stored(start):
    server = await start()
    payload = submission()
    connection = await Connection.open(server)
    await connection.send(record(payload))
    connection.close()
    await asyncio.sleep(0.5)
    (again,) = await exchange(server, record(payload))
    assert again.status == 200  # stored before: the same record, not a new one
    assert answered(server) == 2

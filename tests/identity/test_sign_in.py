"""Sign-in end to end against a real anvil: the happy path, and every way it must fail."""

import asyncio
import io

import jwt
import pytest
import sqlalchemy as sa
from eth_account import Account

from gateway.identity.routes import SIGN_IN
from gateway.storage import STORAGE
from gateway.storage.redis import REDIS
from gateway.storage.schema import revoked_tokens, siwe_nonces
from tests.identity.conftest import ORIGIN, make_message, now_rfc3339, personal_sign

pytestmark = pytest.mark.integration


async def _rows(client, table) -> list:
    async with client.app[STORAGE].engine.connect() as connection:
        return list(await connection.execute(sa.select(table)))


def _redis(client):
    return client.app.get(REDIS)


async def _nonce_count(client) -> int:
    """Nonces stored, whichever backend holds them."""
    if (shared := _redis(client)) is not None:
        return len([key async for key in shared.scan_iter("gw:nonce:*")])
    return len(await _rows(client, siwe_nonces))


async def _expire_nonce(client, nonce: str) -> None:
    if (shared := _redis(client)) is not None:
        await shared.set(f"gw:nonce:{nonce}", b"fresh:1.0", keepttl=True)
        return
    async with client.app[STORAGE].engine.begin() as connection:
        await connection.execute(sa.update(siwe_nonces).values(expires_at=1.0))


async def test_sign_in_session_logout(client, flow, wallet, logs):
    nonce_response = await client.get("/auth/nonce")
    body = await nonce_response.json()
    assert len(body["nonce"]) == 22
    assert body["nonce"].isalnum()
    assert body["expiresAt"].endswith("Z")

    text = make_message(wallet.address, body["nonce"])
    response = await flow.verify(text, personal_sign(wallet, text))
    assert response.status == 200, await response.text()
    signed_in = await response.json()
    assert signed_in["tokenType"] == "Bearer"
    assert signed_in["address"] == wallet.address
    assert signed_in["chainId"] == 31337
    cookie = response.cookies["gateway_session"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"

    auth = {"Authorization": f"Bearer {signed_in['token']}"}
    session = await client.get("/auth/session", headers=auth)
    assert session.status == 200
    assert (await session.json())["address"] == wallet.address
    assert (await session.json())["walletType"] == "eoa"

    assert (await client.post("/auth/logout", headers=auth)).status == 204
    after = await client.get("/auth/session", headers=auth)
    assert after.status == 401
    assert (await after.json())["error"]["code"] == "auth.revoked_token"

    lines = logs.events("sign-in")
    assert lines[-1]["outcome"] == "ok"
    assert lines[-1]["address"] == wallet.address
    assert signed_in["token"] not in str(logs.lines())


async def test_token_claims_and_jwks(client, flow, wallet):
    signed_in = await flow.sign_in(wallet)
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(signed_in["token"])
    assert header["alg"] == "EdDSA"
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        signed_in["token"], jwt.PyJWK(key).key, algorithms=["EdDSA"], audience="gateway"
    )
    assert claims["sub"] == f"eip155:31337:{wallet.address}"
    assert {"iat", "exp", "jti", "iss"} <= set(claims)
    assert "d" not in key  # only public material


async def test_session_cookie_works_without_header(client, flow, wallet):
    await flow.sign_in(wallet)
    response = await client.get("/auth/session")  # the client's cookie jar sends it
    assert response.status == 200
    assert (await client.post("/auth/logout")).status == 204
    assert (await client.get("/auth/session")).status == 401


async def test_token_never_outlives_the_message(client, flow, wallet):
    signed_in = await flow.sign_in(wallet, expiration_time=now_rfc3339(120))
    claims = jwt.decode(signed_in["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] <= 121


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("Bearer not-a-jwt", "auth.invalid_token"),
        ("Basic dXNlcjpwYXNz", "auth.unauthenticated"),
        ("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "auth.invalid_token"),
    ],
)
async def test_bad_tokens_get_401(client, header, code):
    response = await client.get("/auth/session", headers={"Authorization": header})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == code


async def test_tampered_token_is_rejected(client, flow, wallet):
    token = (await flow.sign_in(wallet))["token"]
    head, payload, signature = token.split(".")
    forged = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(
            wallet.address.encode(), Account.create().address.encode()
        )
    ).decode()
    response = await client.get(
        "/auth/session", headers={"Authorization": f"Bearer {head}.{forged}.{signature}"}
    )
    assert response.status == 401


async def test_no_session_is_401(client):
    assert (await client.get("/auth/session")).status == 401
    assert (await client.post("/auth/logout")).status == 401


# --- every verification rule has its own code, and a rejection leaves nothing behind -----


@pytest.mark.parametrize(
    ("overrides", "origin", "status", "code"),
    [
        ({"domain": "evil.example"}, "https://evil.example", 401, "siwe.domain.mismatch"),
        ({}, "https://evil.example", 401, "siwe.domain.origin_mismatch"),
        ({"uri": "https://evil.example/login"}, ORIGIN, 401, "siwe.uri.not_allowed"),
        ({"chain_id": 1}, ORIGIN, 401, "siwe.chain.not_allowed"),
        ({"expiration_time": now_rfc3339(-60)}, ORIGIN, 401, "siwe.expired"),
        ({"not_before": now_rfc3339(3600)}, ORIGIN, 401, "siwe.not_yet_valid"),
        ({"issued_at": now_rfc3339(3600)}, ORIGIN, 401, "siwe.issued_in_future"),
    ],
)
async def test_rule_violations(client, flow, wallet, overrides, origin, status, code):
    nonce = await flow.nonce()
    text = make_message(wallet.address, nonce, **overrides)
    response = await flow.verify(text, personal_sign(wallet, text), origin=origin)
    assert response.status == status
    body = await response.json()
    assert body["error"]["code"] == code
    # the nonce was not burned: a correct message with it still signs in
    good = make_message(wallet.address, nonce)
    assert (await flow.verify(good, personal_sign(wallet, good))).status == 200


async def test_wrong_signer_does_not_burn_the_nonce(client, flow, wallet):
    nonce = await flow.nonce()
    text = make_message(wallet.address, nonce)
    attacker = Account.create()
    response = await flow.verify(text, personal_sign(attacker, text))
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "siwe.signature.invalid"
    assert (await flow.verify(text, personal_sign(wallet, text))).status == 200


async def test_replayed_message_fails(client, flow, wallet):
    nonce = await flow.nonce()
    text = make_message(wallet.address, nonce)
    signature = personal_sign(wallet, text)
    assert (await flow.verify(text, signature)).status == 200
    replay = await flow.verify(text, signature)
    assert replay.status == 401
    assert (await replay.json())["error"]["code"] == "siwe.nonce.reused"


async def test_unknown_nonce_fails(client, flow, wallet):
    text = make_message(wallet.address, "madeUpNonce12345")
    response = await flow.verify(text, personal_sign(wallet, text))
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "siwe.nonce.unknown"
    assert await _nonce_count(client) == 0


async def test_expired_nonce_fails(client, flow, wallet):
    nonce = await flow.nonce()
    await _expire_nonce(client, nonce)
    text = make_message(wallet.address, nonce)
    response = await flow.verify(text, personal_sign(wallet, text))
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "siwe.nonce.expired"


async def test_high_s_and_short_signatures(client, flow, wallet):
    from gateway.identity.siwe import SECP256K1_N

    nonce = await flow.nonce()
    text = make_message(wallet.address, nonce)
    raw = bytes.fromhex(personal_sign(wallet, text)[2:])
    s = int.from_bytes(raw[32:64], "big")
    malleable = (
        raw[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes((27 + ((raw[64] - 27) ^ 1),))
    )
    for signature, code in [
        ("0x" + malleable.hex(), "siwe.signature.malformed"),
        ("0x" + raw[:64].hex(), "siwe.signature.malformed"),
        ("0x", "siwe.signature.malformed"),
    ]:
        response = await flow.verify(text, signature)
        assert response.status == 400
        assert (await response.json())["error"]["code"] == code
    assert (await flow.verify(text, "0x" + raw.hex())).status == 200


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "request.malformed_json"),
        (b'{"message": "x"}', "application/json", 422, "request.invalid_params"),
        (
            b'{"message": "x", "signature": "0xzz"}',
            "application/json",
            422,
            "request.invalid_params",
        ),
        (
            b'{"message": "x", "signature": "0x", "extra": 1}',
            "application/json",
            422,
            "request.invalid_params",
        ),
        (b"[]", "application/json", 422, "request.invalid_params"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "request.malformed_json"),
        (
            b'{"message": "x", "signature": "0x"}',
            "text/plain",
            415,
            "request.unsupported_media_type",
        ),
        (
            b'{"message": "' + b"a" * 2_000_000 + b'", "signature": "0x"}',
            "application/json",
            413,
            "request.too_large",
        ),
        (
            b'{"message": "not siwe", "signature": "0x00"}',
            "application/json",
            400,
            "siwe.malformed.header",
        ),
        (
            '{"message": "ünïcödé wants you", "signature": "0x00"}'.encode(),
            "application/json",
            400,
            "siwe.malformed.header",
        ),
    ],
)
async def test_hostile_bodies(client, body, content_type, status, code):
    response = await client.post(
        "/auth/verify", data=io.BytesIO(body), headers={"Content-Type": content_type}
    )
    assert response.status == status
    payload = await response.json()
    assert payload["error"]["code"] == code
    assert "Traceback" not in str(payload)
    assert await _nonce_count(client) == 0


async def test_fifty_parallel_verifies_give_one_session(
    aiohttp_client, anvil, make_settings, auth_env, wallet
):
    from gateway.app import create_app
    from tests.identity.conftest import SignInFlow

    settings = make_settings(upstreams=[anvil.url], GATEWAY_IDENTITY__RATE_BURST="100", **auth_env)
    flow = SignInFlow(await aiohttp_client(create_app(settings)))
    nonce = await flow.nonce()
    text = make_message(wallet.address, nonce)
    signature = personal_sign(wallet, text)
    responses = await asyncio.gather(*(flow.verify(text, signature) for _ in range(50)))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(200) == 1
    assert statuses.count(401) == 49
    codes = {(await r.json())["error"]["code"] for r in responses if r.status == 401}
    assert codes == {"siwe.nonce.reused"}


async def test_outstanding_nonces_are_capped(aiohttp_client, anvil, make_settings, auth_env):
    from gateway.app import create_app

    settings = make_settings(
        upstreams=[anvil.url],
        GATEWAY_IDENTITY__MAX_OUTSTANDING_NONCES="3",
        GATEWAY_IDENTITY__NONCE_RATE_PER_MINUTE="1000",
        GATEWAY_IDENTITY__RATE_BURST="100",
        **auth_env,
    )
    client = await aiohttp_client(create_app(settings))
    for _ in range(3):
        assert (await client.get("/auth/nonce")).status == 200
    refused = await client.get("/auth/nonce")
    assert refused.status == 429
    assert (await refused.json())["error"]["code"] == "auth.too_many_nonces"
    assert int(refused.headers["Retry-After"]) >= 1
    assert await _nonce_count(client) == 3


async def test_nonce_and_verify_are_rate_limited(aiohttp_client, anvil, make_settings, auth_env):
    from gateway.app import create_app

    settings = make_settings(
        upstreams=[anvil.url],
        GATEWAY_IDENTITY__RATE_BURST="2",
        GATEWAY_IDENTITY__NONCE_RATE_PER_MINUTE="6",
        **auth_env,
    )
    client = await aiohttp_client(create_app(settings))
    statuses = [(await client.get("/auth/nonce")).status for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    limited = await client.get("/auth/nonce")
    assert 1 <= int(limited.headers["Retry-After"]) <= 10
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_rate_limited_total{tier="auth"} 3.0' in metrics


async def test_attempts_are_counted_by_outcome(client, flow, wallet):
    await flow.sign_in(wallet)
    text = make_message(wallet.address, await flow.nonce())
    await flow.verify(text, personal_sign(Account.create(), text))
    await flow.verify("garbage", "0x00")
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_auth_attempts_total{outcome="ok"} 1.0' in metrics
    assert 'gateway_auth_attempts_total{outcome="bad_signature"} 1.0' in metrics
    assert 'gateway_auth_attempts_total{outcome="malformed"} 1.0' in metrics
    assert "gateway_auth_verify_duration_seconds_count 3.0" in metrics


async def test_verification_steps_are_spans(client, flow, wallet, spans):
    await flow.sign_in(wallet)
    names = {span.name for span in spans.get_finished_spans()}
    assert {"siwe.parse", "siwe.recover", "siwe.nonce", "POST /auth/verify"} <= names
    recover = next(s for s in spans.get_finished_spans() if s.name == "siwe.recover")
    assert recover.attributes["wallet.type"] == "eoa"
    for span in spans.get_finished_spans():
        assert all("0x" + "ab" not in str(v) for v in span.attributes.values())


async def test_logout_revocation_is_stored_until_expiry(client, flow, wallet):
    token = (await flow.sign_in(wallet))["token"]
    await client.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    claims = jwt.decode(token, options={"verify_signature": False})
    store = client.app[SIGN_IN].store
    assert await store.is_revoked(claims["jti"])
    if (shared := _redis(client)) is not None:  # the key expires with the token
        assert await shared.ttl(f"gw:revoked:{claims['jti']}") <= claims["exp"] - claims["iat"] + 1
        return
    (row,) = await _rows(client, revoked_tokens)
    assert row.jti == claims["jti"]
    assert row.expires_at == claims["exp"]
    assert await store.purge(now=claims["exp"] + 1) >= 1

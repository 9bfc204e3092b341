"""Session tokens in EdDSA or ES256, verified by an independent library through the JWKS."""

import pytest
from eth_account import Account
from joserfc import jwt
from joserfc.jwk import KeySet

from gateway.app import create_app
from gateway.identity.keys import KeyRing, rotate
from tests.identity.conftest import SignInFlow

pytestmark = [
    pytest.mark.integration,
    # joserfc warns that RFC 9864 deprecates the "EdDSA" identifier in favour of "Ed25519";
    # the JWT libraries verifiers use today still expect "EdDSA".
    pytest.mark.filterwarnings("ignore:EdDSA is deprecated via RFC 9864"),
]
BOTH = ["EdDSA", "ES256"]


@pytest.fixture(name="database_env")
def _database_env(tmp_path):
    """Token signing does not depend on the backend: the embedded one."""
    return {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}"}


async def _signed_in(aiohttp_client, make_settings, anvil, auth_env, algorithm, keys_dir=None):
    env = {**auth_env, "GATEWAY_IDENTITY__TOKEN_ALGORITHM": algorithm}
    if keys_dir is not None:
        env["GATEWAY_IDENTITY__KEYS_DIR"] = str(keys_dir)
    client = await aiohttp_client(create_app(make_settings(upstreams=[anvil.url], **env)))
    body = await SignInFlow(client).sign_in(Account.create())
    return client, body


@pytest.mark.parametrize(("algorithm", "kty"), [("EdDSA", "OKP"), ("ES256", "EC")])
async def test_a_token_verifies_with_another_library_through_the_jwks(
    aiohttp_client, make_settings, anvil, auth_env, algorithm, kty
):
    client, body = await _signed_in(aiohttp_client, make_settings, anvil, auth_env, algorithm)
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    assert [key["kty"] for key in jwks["keys"]] == [kty]
    assert jwks["keys"][0]["alg"] == algorithm
    token = jwt.decode(body["token"], KeySet.import_key_set(jwks), algorithms=[algorithm])
    assert token.header["alg"] == algorithm
    assert token.claims["sub"] == f"eip155:31337:{body['address']}"


async def test_moving_to_es256_is_a_rotation(
    aiohttp_client, make_settings, anvil, auth_env, tmp_path
):
    """Tokens signed with the old EdDSA key keep verifying; new ones are ES256; the JWKS
    publishes both until the old key ages out."""
    keys = tmp_path / "shared-keys"
    rotate(keys, "EdDSA")
    _, old = await _signed_in(aiohttp_client, make_settings, anvil, auth_env, "EdDSA", keys)
    new_client, new = await _signed_in(
        aiohttp_client, make_settings, anvil, auth_env, "ES256", keys
    )
    assert KeyRing.open(keys, create=False, algorithm="ES256").current.algorithm == "ES256"
    jwks = await (await new_client.get("/.well-known/jwks.json")).json()
    assert sorted(key["alg"] for key in jwks["keys"]) == ["ES256", "EdDSA"]
    for body in (old, new):
        auth = {"Authorization": f"Bearer {body['token']}"}
        assert (await new_client.get("/auth/session", headers=auth)).status == 200
        jwt.decode(body["token"], KeySet.import_key_set(jwks), algorithms=BOTH)
    keyset = KeySet.import_key_set(jwks)
    assert jwt.decode(new["token"], keyset, algorithms=BOTH).header["alg"] == "ES256"
    assert jwt.decode(old["token"], keyset, algorithms=BOTH).header["alg"] == "EdDSA"


async def test_a_token_whose_header_names_another_algorithm_is_refused(
    aiohttp_client, make_settings, anvil, auth_env
):
    """The key decides the algorithm: a token claiming ES256 under an EdDSA key id fails."""
    import base64
    import json

    client, body = await _signed_in(aiohttp_client, make_settings, anvil, auth_env, "EdDSA")
    header, payload, signature = body["token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "alg": "ES256"}).encode())
    token = f"{forged.decode().rstrip('=')}.{payload}.{signature}"
    response = await client.get("/auth/session", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "auth.invalid_token"

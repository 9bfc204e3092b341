"""Signing-key rotation: new tokens use the new key, old tokens verify until the key ages out."""

import jwt
import pytest

from gateway.cli import main
from gateway.identity.keys import KeyRing, rotate
from gateway.identity.routes import KEYS
from gateway.storage.migrate import head_revision
from tests.identity.conftest import SignInFlow

pytestmark = pytest.mark.integration


async def test_rotation_keeps_previous_tokens_valid(client, flow, wallet, tmp_path):
    first = (await flow.sign_in(wallet))["token"]
    ring: KeyRing = client.app[KEYS]
    rotate(ring.directory)
    assert ring.reload()
    second = (await SignInFlow(client).sign_in(wallet))["token"]
    assert jwt.get_unverified_header(first)["kid"] != jwt.get_unverified_header(second)["kid"]
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    assert len(jwks["keys"]) == 2
    for token in (first, second):
        assert (
            await client.get("/auth/session", headers={"Authorization": f"Bearer {token}"})
        ).status == 200
    rotate(ring.directory)  # the first key now ages out of the ring (keep=2)
    ring.reload()
    old = await client.get("/auth/session", headers={"Authorization": f"Bearer {first}"})
    assert old.status == 401
    assert (
        await client.get("/auth/session", headers={"Authorization": f"Bearer {second}"})
    ).status == 200


def test_keys_cli_rotates_and_lists(tmp_path, capsys):
    environ = {"GATEWAY_IDENTITY__KEYS_DIR": str(tmp_path / "keys")}
    assert main(["keys", "rotate"], environ) == 0
    assert main(["keys", "rotate"], environ) == 0
    capsys.readouterr()
    assert main(["keys", "list"], environ) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1:] for line in lines] == [["EdDSA", "signs"], ["EdDSA", "verifies"]]
    assert all(oct(p.stat().st_mode)[-3:] == "600" for p in (tmp_path / "keys").iterdir())


def test_db_cli_upgrades(tmp_path, capsys):
    environ = {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    assert main(["db", "current"], environ) == 1
    assert main(["db", "upgrade"], environ) == 0
    assert main(["db", "current"], environ) == 0
    assert f"schema revision {head_revision()}" in capsys.readouterr().out
    assert head_revision() == "0004"  # identity, records, relay, networks

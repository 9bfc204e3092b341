"""Deploying the project's contracts, and remembering where they are per chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr
from web3 import AsyncWeb3

from gateway.chain.artifacts import load_artifact
from gateway.config import AnchorSettings
from gateway.errors import SettingsError


def anchor_account(settings: AnchorSettings) -> LocalAccount | None:
    """The anchoring key from the settings: a hex key, or a keystore file and password."""
    return load_account(
        settings.private_key, settings.keystore_path, settings.keystore_password, "anchor"
    )


def load_account(
    private_key: SecretStr | None,
    keystore_path: Path | None,
    keystore_password: SecretStr | None,
    section: str,
) -> LocalAccount | None:
    """A key from settings: a hex private key, or a keystore file and its password."""
    if private_key is not None:
        account: LocalAccount = Account.from_key(private_key.get_secret_value())
        return account
    if keystore_path is not None:
        password = keystore_password.get_secret_value() if keystore_password else ""
        try:
            keystore = json.loads(keystore_path.read_text(encoding="utf-8"))
            key = Account.decrypt(keystore, password)
        except (OSError, ValueError) as exc:
            raise SettingsError(
                [f"{section}.keystore_path: cannot open the keystore ({exc})"]
            ) from exc
        decrypted: LocalAccount = Account.from_key(key)
        return decrypted
    return None


def read_deployments(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def contract_address(settings: AnchorSettings, chain_id: int) -> str | None:
    if settings.contract_address:
        return settings.contract_address
    return read_deployments(settings.deployments_file).get(str(chain_id), {}).get("MerkleAnchor")


async def deploy_anchor(w3: AsyncWeb3[Any], account: LocalAccount, deployments: Path) -> str:
    """Deploy MerkleAnchor owned by ``account`` and record its address for this chain."""
    address = await deploy_contract(w3, account, "MerkleAnchor", account.address)
    await _record(w3, deployments, {"MerkleAnchor": address})
    return address


async def deploy_relay_contracts(
    w3: AsyncWeb3[Any], account: LocalAccount, deployments: Path
) -> dict[str, str]:
    """Deploy the trusted forwarder of gasless requests (GatewayForwarder) and the example
    target that trusts it (Guestbook), and record both for this chain."""
    forwarder = await deploy_contract(w3, account, "GatewayForwarder")
    guestbook = await deploy_contract(w3, account, "Guestbook", forwarder)
    deployed = {"GatewayForwarder": forwarder, "Guestbook": guestbook}
    await _record(w3, deployments, deployed)
    return deployed


async def deploy_all(
    w3: AsyncWeb3[Any], account: LocalAccount, deployments: Path
) -> dict[str, str]:
    """Every contract the gateway uses (``gateway contracts deploy``, ``gateway dev``)."""
    anchor = await deploy_anchor(w3, account, deployments)
    return {"MerkleAnchor": anchor, **await deploy_relay_contracts(w3, account, deployments)}


async def deploy_contract(
    w3: AsyncWeb3[Any],
    account: LocalAccount,
    name: str,
    *constructor_args: Any,  # noqa: ANN401  # as the contract's constructor takes them
) -> str:
    """Deploy the packaged artifact ``name``, signed by ``account``; its address once mined."""
    artifact = load_artifact(name)
    contract = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = await contract.constructor(*constructor_args).build_transaction(
        {
            "from": account.address,
            "nonce": await w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": await w3.eth.chain_id,
        }
    )
    signed = account.sign_transaction(tx)
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1:
        raise RuntimeError(f"deploying {name} reverted (transaction {tx_hash.to_0x_hex()})")
    return str(receipt["contractAddress"])


async def _record(w3: AsyncWeb3[Any], deployments: Path, deployed: dict[str, str]) -> None:
    chain_id = await w3.eth.chain_id
    known = read_deployments(deployments)
    known.setdefault(str(chain_id), {}).update(deployed)
    write_deployments(deployments, known)


def write_deployments(path: Path, known: dict[str, dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=2) + "\n", encoding="utf-8")

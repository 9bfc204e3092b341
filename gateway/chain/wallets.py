"""Contract wallets: EIP-1271 for deployed ones, EIP-6492 for counterfactual ones.

Both are read-only ``eth_call``s on the configured chain through web3.py's AsyncWeb3.
EIP-6492 uses the deployless universal validator (``contracts/src/UniversalSigValidator.sol``,
contract ``ValidateSigOffchain``): its creation code runs in an ``eth_call`` with no ``to``,
deploys the wallet in that call's sandbox, asks it, and returns one byte.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from eth_abi.abi import encode
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError, Web3Exception

from gateway.chain.artifacts import load_artifact
from gateway.chain.signatures import InvalidSignature, MalformedSignature, recovers_to
from gateway.chain.web3 import CHAINS
from gateway.errors import UpstreamError

ERC1271_MAGIC = bytes.fromhex("1626ba7e")
ERC6492_SUFFIX = bytes.fromhex("6492" * 16)
_IS_VALID_SIGNATURE = bytes.fromhex("1626ba7e")  # isValidSignature(bytes32,bytes) selector


def is_erc6492(signature: bytes) -> bool:
    return len(signature) >= 32 and signature[-32:] == ERC6492_SUFFIX


class ContractWallets:
    """Asks the chain whether a contract account accepts a signature."""

    def __init__(self, w3: AsyncWeb3[Any]) -> None:
        self._w3 = w3
        self._validator_code = bytes.fromhex(
            load_artifact("ValidateSigOffchain")["bytecode"].removeprefix("0x")
        )

    async def has_code(self, address: str) -> bool:
        try:
            code = await self._w3.eth.get_code(AsyncWeb3.to_checksum_address(address))
        except (Web3Exception, OSError, TimeoutError) as exc:
            raise UpstreamError(detail=f"eth_getCode failed: {exc}") from exc
        return len(code) > 0

    async def is_valid_erc1271(self, address: str, message_hash: bytes, signature: bytes) -> bool:
        data = _IS_VALID_SIGNATURE + encode(["bytes32", "bytes"], [message_hash, signature])
        try:
            result = await self._w3.eth.call(
                {"to": AsyncWeb3.to_checksum_address(address), "data": data}
            )
        except ContractLogicError:
            return False  # the wallet reverted: it does not accept the signature
        except (Web3Exception, OSError, TimeoutError) as exc:
            raise UpstreamError(detail=f"isValidSignature call failed: {exc}") from exc
        return len(result) >= 4 and bytes(result[:4]) == ERC1271_MAGIC

    async def is_valid_universal(self, address: str, message_hash: bytes, signature: bytes) -> bool:
        """EIP-6492 off-chain validation (covers counterfactual, deployed and EOA signers)."""
        arguments = encode(
            ["address", "bytes32", "bytes"],
            [AsyncWeb3.to_checksum_address(address), message_hash, signature],
        )
        try:
            result = await self._w3.eth.call({"data": self._validator_code + arguments})
        except ContractLogicError:
            return False  # the factory call or the wallet reverted
        except (Web3Exception, OSError, TimeoutError) as exc:
            raise UpstreamError(detail=f"EIP-6492 validation call failed: {exc}") from exc
        return bytes(result) == b"\x01"


WalletType = Literal["eoa", "contract"]


def contract_wallets(app: web.Application) -> dict[int, ContractWallets]:
    """A contract-wallet checker for each network of the app, by chain id."""
    chains = app.get(CHAINS)
    return {} if chains is None else {each.chain_id: ContractWallets(each.web3) for each in chains}


class ContractWalletsUnavailable(Exception):  # a state, said as such
    """The signature is not an EOA's and no contract-wallet check can be made here."""


async def verify_signer(
    wallets: ContractWallets | None, address: str, digest: bytes, signature: bytes
) -> WalletType:
    """Whether ``address`` signed ``digest``, the one way every feature checks it: an EOA's
    key recovered from the signature, else an EIP-6492 signature (a wallet not deployed
    yet) through the universal validator, else a deployed wallet's EIP-1271
    ``isValidSignature``.

    Raises InvalidSignature when nothing accepts it, MalformedSignature when it is not an
    EOA signature and no contract path applies, ContractWalletsUnavailable when only a
    contract path could accept it and ``wallets`` is None (no chain to ask).
    """
    eoa_error: ValueError | None = None
    if not is_erc6492(signature):
        try:
            if recovers_to(digest, signature, address):
                return "eoa"
            eoa_error = InvalidSignature()
        except (MalformedSignature, InvalidSignature) as exc:
            eoa_error = exc
    if wallets is None:
        raise eoa_error or ContractWalletsUnavailable()
    if is_erc6492(signature):
        valid = await wallets.is_valid_universal(address, digest, signature)
    elif await wallets.has_code(address):
        valid = await wallets.is_valid_erc1271(address, digest, signature)
    else:
        raise eoa_error or InvalidSignature()
    if not valid:
        raise InvalidSignature
    return "contract"

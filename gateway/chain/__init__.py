"""Chain side: the dev chain launcher (anvil), and web3 wiring as the features need it."""

from gateway.chain.devchain import DEV_MNEMONIC, DevAccount, DevChain, DevChainError, find_anvil

__all__ = ["DEV_MNEMONIC", "DevAccount", "DevChain", "DevChainError", "find_anvil"]

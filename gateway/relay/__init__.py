"""Gasless requests: ERC-2771 requests signed by wallets, relayed on chain by the gateway."""

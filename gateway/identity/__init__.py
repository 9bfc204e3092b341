"""Identity: Sign-In with Ethereum (EIP-4361), nonces, session tokens, contract wallets."""

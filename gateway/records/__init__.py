"""Signed records: EIP-712 data, verified, stored, queried and anchored on chain."""

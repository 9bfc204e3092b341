"""Observable gateway between dApp web clients and Ethereum."""

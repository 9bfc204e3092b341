"""The database schema as SQLAlchemy Core tables: the one place table shapes are written.

Migrations (``gateway/storage/migrations``) create exactly these; a test compares the two.
Times are epoch seconds (double precision) so SQLite and PostgreSQL behave the same.
"""

from __future__ import annotations

import sqlalchemy as sa

# A 64-bit key that autoincrements on both backends (SQLite's rowid alias must be INTEGER).
_SERIAL = sa.BigInteger().with_variant(sa.Integer, "sqlite")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    }
)

siwe_nonces = sa.Table(
    "siwe_nonces",
    metadata,
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("client", sa.String(64), nullable=False),
    sa.Column("issued_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float, nullable=True),
    sa.Index(None, "client", "expires_at"),
    sa.Index(None, "expires_at"),
)

revoked_tokens = sa.Table(
    "revoked_tokens",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("revoked_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index(None, "expires_at"),
)

# --- signed records ---------------------------------------------------------------------

records = sa.Table(
    "records",
    metadata,
    # Insertion order: the stable cursor of listings.
    sa.Column(
        "seq",
        _SERIAL,
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("id", sa.String(66), nullable=False, unique=True),  # the EIP-712 digest
    sa.Column("signer", sa.String(42), nullable=False),  # lower-case hex
    sa.Column("primary_type", sa.String(128), nullable=False),
    sa.Column("typed_data", sa.Text, nullable=False),  # canonical JSON
    sa.Column("signature", sa.Text, nullable=False),
    sa.Column("wallet_type", sa.String(16), nullable=False),
    sa.Column("private", sa.Boolean, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("anchor_batches.id"), nullable=True),
    sa.Column("leaf_index", sa.Integer, nullable=True),
    sa.Column("proof", sa.Text, nullable=True),  # JSON list of 0x… sibling hashes
    # The network it is anchored on (its domain's chainId, else the default network's).
    sa.Column("chain_id", sa.BigInteger, nullable=True),
    sa.Index(None, "signer", "seq"),
    sa.Index(None, "primary_type", "seq"),
    sa.Index(None, "batch_id"),
    sa.Index(None, "chain_id", "batch_id"),
)

record_readers = sa.Table(
    "record_readers",
    metadata,
    sa.Column("record_seq", sa.BigInteger, sa.ForeignKey("records.seq"), primary_key=True),
    sa.Column("reader", sa.String(42), primary_key=True),
    sa.Index(None, "reader", "record_seq"),
)

record_nonces = sa.Table(
    "record_nonces",
    metadata,
    sa.Column("signer", sa.String(42), primary_key=True),
    sa.Column("nonce", sa.String(80), primary_key=True),
)

anchor_batches = sa.Table(
    "anchor_batches",
    metadata,
    sa.Column(
        "id",
        _SERIAL,
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("root", sa.String(66), nullable=False, unique=True),
    sa.Column("count", sa.Integer, nullable=False),
    # built -> sent -> confirmed (or failed); the signed tx is stored before it is sent.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("chain_id", sa.BigInteger, nullable=False),
    sa.Column("contract", sa.String(42), nullable=False),
    sa.Column("tx_hash", sa.String(66), nullable=True),
    sa.Column("raw_tx", sa.Text, nullable=True),
    sa.Column("block_number", sa.BigInteger, nullable=True),
    sa.Column("gas_used", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("confirmed_at", sa.Float, nullable=True),
    sa.Index(None, "status"),
)

# --- gasless requests (relay) -----------------------------------------------------------

relay_requests = sa.Table(
    "relay_requests",
    metadata,
    sa.Column(
        "seq",
        _SERIAL,
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("id", sa.String(66), nullable=False, unique=True),  # the request's EIP-712 digest
    sa.Column("signer", sa.String(42), nullable=False),  # lower-case hex
    sa.Column("forwarder", sa.String(42), nullable=False),
    sa.Column("target", sa.String(42), nullable=False),
    sa.Column("value", sa.String(80), nullable=False),  # uint256 as decimal text
    sa.Column("gas", sa.BigInteger, nullable=False),
    sa.Column("nonce", sa.String(80), nullable=False),  # the forwarder's nonce of `signer`
    sa.Column("deadline", sa.BigInteger, nullable=False),
    sa.Column("data", sa.Text, nullable=False),  # 0x…
    sa.Column("signature", sa.Text, nullable=False),
    sa.Column("wallet_type", sa.String(16), nullable=False),
    # pending -> sent -> submitted -> mined -> confirmed; or failed / expired / canceled.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("relayer_nonce", sa.BigInteger, nullable=True),
    sa.Column("tx_hash", sa.String(66), nullable=True),  # the latest version, or the mined one
    sa.Column("sent_block", sa.BigInteger, nullable=True),  # head when the latest was sent
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("block_number", sa.BigInteger, nullable=True),
    sa.Column("gas_used", sa.BigInteger, nullable=True),
    sa.Column("revert_reason", sa.Text, nullable=True),
    sa.Column("traceparent", sa.String(64), nullable=True),  # the submitting request's trace
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("chain_id", sa.BigInteger, nullable=True),  # the network it is relayed on
    sa.Index(None, "signer", "seq"),
    sa.Index(None, "status", "seq"),
    sa.Index(None, "chain_id", "status", "seq"),
)

relay_txs = sa.Table(
    "relay_txs",
    metadata,
    sa.Column("hash", sa.String(66), primary_key=True),
    sa.Column("request_id", sa.String(66), nullable=True),  # null: a no-op filling a gap
    sa.Column("relayer", sa.String(42), nullable=False),
    sa.Column("relayer_nonce", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # new | bump | noop
    sa.Column("raw", sa.Text, nullable=False),  # written before it is broadcast
    sa.Column("max_fee", sa.String(40), nullable=False),
    sa.Column("priority_fee", sa.String(40), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("chain_id", sa.BigInteger, nullable=True),
    sa.Index(None, "request_id"),
    sa.Index(None, "relayer", "relayer_nonce"),
)

relayer_nonces = sa.Table(
    "relayer_nonces",
    metadata,
    # 0: the default network's, from before networks (adopted at start).
    sa.Column("chain_id", sa.BigInteger, primary_key=True, server_default="0"),
    sa.Column("relayer", sa.String(42), primary_key=True),
    sa.Column("next_nonce", sa.BigInteger, nullable=False),
)

relay_webhook_events = sa.Table(
    "relay_webhook_events",
    metadata,
    sa.Column(
        "id",
        _SERIAL,
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index(None, "delivered_at", "next_attempt_at"),
)

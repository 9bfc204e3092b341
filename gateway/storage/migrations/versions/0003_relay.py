"""Gasless requests: relayed requests, their transactions, the relayer's nonces, webhooks.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SERIAL = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "relay_requests",
        sa.Column("seq", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(66), nullable=False),
        sa.Column("signer", sa.String(42), nullable=False),
        sa.Column("forwarder", sa.String(42), nullable=False),
        sa.Column("target", sa.String(42), nullable=False),
        sa.Column("value", sa.String(80), nullable=False),
        sa.Column("gas", sa.BigInteger, nullable=False),
        sa.Column("nonce", sa.String(80), nullable=False),
        sa.Column("deadline", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("wallet_type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("relayer_nonce", sa.BigInteger, nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("sent_block", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=True),
        sa.Column("gas_used", sa.BigInteger, nullable=True),
        sa.Column("revert_reason", sa.Text, nullable=True),
        sa.Column("traceparent", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_relay_requests"),
        sa.UniqueConstraint("id", name="uq_relay_requests_id"),
    )
    op.create_index("ix_relay_requests_signer_seq", "relay_requests", ["signer", "seq"])
    op.create_index("ix_relay_requests_status_seq", "relay_requests", ["status", "seq"])
    op.create_table(
        "relay_txs",
        sa.Column("hash", sa.String(66), nullable=False),
        sa.Column("request_id", sa.String(66), nullable=True),
        sa.Column("relayer", sa.String(42), nullable=False),
        sa.Column("relayer_nonce", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("max_fee", sa.String(40), nullable=False),
        sa.Column("priority_fee", sa.String(40), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("hash", name="pk_relay_txs"),
    )
    op.create_index("ix_relay_txs_request_id", "relay_txs", ["request_id"])
    op.create_index("ix_relay_txs_relayer_relayer_nonce", "relay_txs", ["relayer", "relayer_nonce"])
    op.create_table(
        "relayer_nonces",
        sa.Column("relayer", sa.String(42), nullable=False),
        sa.Column("next_nonce", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("relayer", name="pk_relayer_nonces"),
    )
    op.create_table(
        "relay_webhook_events",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_relay_webhook_events"),
    )
    op.create_index(
        "ix_relay_webhook_events_delivered_at_next_attempt_at",
        "relay_webhook_events",
        ["delivered_at", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_table("relay_webhook_events")
    op.drop_table("relayer_nonces")
    op.drop_table("relay_txs")
    op.drop_table("relay_requests")

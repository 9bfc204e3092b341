"""Signed records, their readers and nonces, and anchor batches.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_SERIAL = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "anchor_batches",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("root", sa.String(66), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("contract", sa.String(42), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("raw_tx", sa.Text, nullable=True),
        sa.Column("block_number", sa.BigInteger, nullable=True),
        sa.Column("gas_used", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("confirmed_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_anchor_batches"),
        sa.UniqueConstraint("root", name="uq_anchor_batches_root"),
    )
    op.create_index("ix_anchor_batches_status", "anchor_batches", ["status"])
    op.create_table(
        "records",
        sa.Column("seq", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(66), nullable=False),
        sa.Column("signer", sa.String(42), nullable=False),
        sa.Column("primary_type", sa.String(128), nullable=False),
        sa.Column("typed_data", sa.Text, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("wallet_type", sa.String(16), nullable=False),
        sa.Column("private", sa.Boolean, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("batch_id", sa.BigInteger, nullable=True),
        sa.Column("leaf_index", sa.Integer, nullable=True),
        sa.Column("proof", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_records"),
        sa.UniqueConstraint("id", name="uq_records_id"),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["anchor_batches.id"], name="fk_records_batch_id_anchor_batches"
        ),
    )
    op.create_index("ix_records_signer_seq", "records", ["signer", "seq"])
    op.create_index("ix_records_primary_type_seq", "records", ["primary_type", "seq"])
    op.create_index("ix_records_batch_id", "records", ["batch_id"])
    op.create_table(
        "record_readers",
        sa.Column("record_seq", sa.BigInteger, nullable=False),
        sa.Column("reader", sa.String(42), nullable=False),
        sa.PrimaryKeyConstraint("record_seq", "reader", name="pk_record_readers"),
        sa.ForeignKeyConstraint(
            ["record_seq"], ["records.seq"], name="fk_record_readers_record_seq_records"
        ),
    )
    op.create_index(
        "ix_record_readers_reader_record_seq", "record_readers", ["reader", "record_seq"]
    )
    op.create_table(
        "record_nonces",
        sa.Column("signer", sa.String(42), nullable=False),
        sa.Column("nonce", sa.String(80), nullable=False),
        sa.PrimaryKeyConstraint("signer", "nonce", name="pk_record_nonces"),
    )


def downgrade() -> None:
    op.drop_table("record_nonces")
    op.drop_table("record_readers")
    op.drop_table("records")
    op.drop_table("anchor_batches")

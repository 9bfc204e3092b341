"""Many networks: each record and relay request, transaction and relayer nonce names the
chain it belongs to. Rows written before are the default network's (NULL, and 0 for the
relayer's nonces); its services adopt them at start.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("records", sa.Column("chain_id", sa.BigInteger, nullable=True))
    op.create_index("ix_records_chain_id_batch_id", "records", ["chain_id", "batch_id"])
    op.add_column("relay_requests", sa.Column("chain_id", sa.BigInteger, nullable=True))
    op.create_index(
        "ix_relay_requests_chain_id_status_seq", "relay_requests", ["chain_id", "status", "seq"]
    )
    op.add_column("relay_txs", sa.Column("chain_id", sa.BigInteger, nullable=True))
    with op.batch_alter_table("relayer_nonces", recreate="always") as batch:
        batch.add_column(sa.Column("chain_id", sa.BigInteger, nullable=False, server_default="0"))
        batch.drop_constraint("pk_relayer_nonces", type_="primary")
        batch.create_primary_key("pk_relayer_nonces", ["chain_id", "relayer"])


def downgrade() -> None:
    with op.batch_alter_table("relayer_nonces", recreate="always") as batch:
        batch.drop_constraint("pk_relayer_nonces", type_="primary")
        batch.drop_column("chain_id")
        batch.create_primary_key("pk_relayer_nonces", ["relayer"])
    op.drop_column("relay_txs", "chain_id")
    op.drop_index("ix_relay_requests_chain_id_status_seq", "relay_requests")
    op.drop_column("relay_requests", "chain_id")
    op.drop_index("ix_records_chain_id_batch_id", "records")
    op.drop_column("records", "chain_id")

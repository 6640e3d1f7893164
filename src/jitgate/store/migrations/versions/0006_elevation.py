"""elevation of existing accounts: the work queue's action and per-account lock, and what each grant holds

Revision ID: 0006_elevation
Revises: 0005_console
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_elevation"
down_revision = "0005_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("action", sa.String(length=8), server_default="revoke", nullable=False))
        batch_op.add_column(sa.Column("lock_key", sa.String(length=400), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_revocations_lock_key"), ["lock_key"], unique=False)
    op.create_table(
        "elevations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("credential_id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("item", sa.String(length=512), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("prior", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["credential_id"], ["credentials.id"], name=op.f("fk_elevations_credential_id_credentials")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_elevations")),
    )
    with op.batch_alter_table("elevations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_elevations_credential_id"), ["credential_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_elevations_target_account_item_state"),
            ["target", "account", "item", "state"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("elevations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_elevations_target_account_item_state"))
        batch_op.drop_index(batch_op.f("ix_elevations_credential_id"))
    op.drop_table("elevations")
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revocations_lock_key"))
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("lock_key")
        batch_op.drop_column("action")

"""audit backlog: records parked while the audit log is broken

Revision ID: 0003_audit_backlog
Revises: 0002_identities
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_audit_backlog"
down_revision = "0002_identities"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_backlog",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("parked_at", sa.DateTime(), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_backlog")),
    )


def downgrade() -> None:
    op.drop_table("audit_backlog")

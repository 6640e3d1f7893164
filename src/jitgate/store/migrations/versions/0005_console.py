"""console: sign-in at an OpenID provider, chat interactions acted on once, indexes for the pages' filters

Revision ID: 0005_console
Revises: 0004_gateway
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_console"
down_revision = "0004_gateway"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("oidc", sa.JSON(), nullable=True))
    op.create_table(
        "oidc_sign_ins",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("code_verifier", sa.String(length=128), nullable=False),
        sa.Column("return_to", sa.String(length=512), nullable=False),
        sa.Column("max_age_s", sa.Integer(), nullable=True),
        sa.Column("acr_values", sa.JSON(), nullable=True),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_oidc_sign_ins")),
    )
    with op.batch_alter_table("oidc_sign_ins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_sign_ins_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "chat_replays",
        sa.Column("signature_hash", sa.String(length=64), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("signature_hash", name=op.f("pk_chat_replays")),
    )
    with op.batch_alter_table("chat_replays", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chat_replays_seen_at"), ["seen_at"], unique=False)
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_requests_state_created_at"), ["state", "created_at"], unique=False
        )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_actor_seq"), ["actor", "seq"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_action_seq"), ["action", "seq"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_role_seq"), ["role", "seq"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_grant_id_seq"), ["grant_id", "seq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_grant_id_seq"))
        batch_op.drop_index(batch_op.f("ix_audit_events_role_seq"))
        batch_op.drop_index(batch_op.f("ix_audit_events_action_seq"))
        batch_op.drop_index(batch_op.f("ix_audit_events_actor_seq"))
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requests_state_created_at"))
    with op.batch_alter_table("chat_replays", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chat_replays_seen_at"))
    op.drop_table("chat_replays")
    with op.batch_alter_table("oidc_sign_ins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_sign_ins_expires_at"))
    op.drop_table("oidc_sign_ins")
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_column("oidc")

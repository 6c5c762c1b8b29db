"""Device shadows: the shadow, history, rejection and message tables; thing types get
``shadow_options``.

The tables belong to the ``shadows`` package (``shadows/models.py``) but live in the registry's
database and migration chain, so one ``Database.open()`` upgrades everything in one step.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadows",
        sa.Column("thing", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.String(), nullable=False),
        sa.Column("exists", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("thing", "name"),
    )
    op.create_table(
        "shadow_history",
        sa.Column("thing", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.String(), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=True),
        sa.Column("client_token", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("thing", "name", "version"),
    )
    op.create_table(
        "shadow_rejections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("thing", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_shadow_rejections_thing", "shadow_rejections", ["thing"])
    op.create_table(
        "shadow_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(), nullable=False),
        sa.Column("payload", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("thing_types") as batch:
        batch.add_column(sa.Column("shadow_options", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("thing_types") as batch:
        batch.drop_column("shadow_options")
    op.drop_table("shadow_messages")
    op.drop_index("ix_shadow_rejections_thing", "shadow_rejections")
    op.drop_table("shadow_rejections")
    op.drop_table("shadow_history")
    op.drop_table("shadows")

"""The initial registry schema: things, types, groups, certificates, CAs, policies, changes.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ca_certificates",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("pem", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("not_before", sa.Float(), nullable=False),
        sa.Column("not_after", sa.Float(), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "policies",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("default_version", sa.Integer(), nullable=False),
        sa.Column("next_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "thing_groups",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("group_id", sa.String(length=36), nullable=False),
        sa.Column("parent", sa.String(length=128), nullable=True),
        sa.Column("description", sa.String(length=2028), nullable=True),
        sa.Column("attributes", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent"],
            ["thing_groups.name"],
        ),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("thing_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_thing_groups_parent"), ["parent"], unique=False)

    op.create_table(
        "thing_types",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("type_id", sa.String(length=36), nullable=False),
        sa.Column("description", sa.String(length=2028), nullable=True),
        sa.Column("searchable_attributes", sa.String(), nullable=False),
        sa.Column("deprecated", sa.Boolean(), nullable=False),
        sa.Column("deprecated_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("pem", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("ca_id", sa.String(length=64), nullable=True),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("not_before", sa.Float(), nullable=False),
        sa.Column("not_after", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ca_id"],
            ["ca_certificates.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_certificates_ca_id"), ["ca_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_certificates_status"), ["status"], unique=False)

    op.create_table(
        "policy_targets",
        sa.Column("policy", sa.String(length=128), nullable=False),
        sa.Column("target_type", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy"],
            ["policies.name"],
        ),
        sa.PrimaryKeyConstraint("policy", "target_type", "target"),
    )
    with op.batch_alter_table("policy_targets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_policy_targets_target"), ["target"], unique=False)

    op.create_table(
        "policy_versions",
        sa.Column("policy", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy"],
            ["policies.name"],
        ),
        sa.PrimaryKeyConstraint("policy", "version"),
    )
    op.create_table(
        "things",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("thing_id", sa.String(length=36), nullable=False),
        sa.Column("thing_type", sa.String(length=128), nullable=True),
        sa.Column("attributes", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["thing_type"],
            ["thing_types.name"],
        ),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("thing_id"),
    )
    with op.batch_alter_table("things", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_things_thing_type"), ["thing_type"], unique=False)

    op.create_table(
        "thing_group_members",
        sa.Column("group", sa.String(length=128), nullable=False),
        sa.Column("thing", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["group"],
            ["thing_groups.name"],
        ),
        sa.ForeignKeyConstraint(
            ["thing"],
            ["things.name"],
        ),
        sa.PrimaryKeyConstraint("group", "thing"),
    )
    with op.batch_alter_table("thing_group_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_thing_group_members_thing"), ["thing"], unique=False)

    op.create_table(
        "thing_principals",
        sa.Column("thing", sa.String(length=128), nullable=False),
        sa.Column("principal", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["thing"],
            ["things.name"],
        ),
        sa.PrimaryKeyConstraint("thing", "principal"),
    )
    with op.batch_alter_table("thing_principals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_thing_principals_principal"), ["principal"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("thing_principals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_thing_principals_principal"))

    op.drop_table("thing_principals")
    with op.batch_alter_table("thing_group_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_thing_group_members_thing"))

    op.drop_table("thing_group_members")
    with op.batch_alter_table("things", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_things_thing_type"))

    op.drop_table("things")
    op.drop_table("policy_versions")
    with op.batch_alter_table("policy_targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_policy_targets_target"))

    op.drop_table("policy_targets")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_status"))
        batch_op.drop_index(batch_op.f("ix_certificates_ca_id"))

    op.drop_table("certificates")
    op.drop_table("thing_types")
    with op.batch_alter_table("thing_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_thing_groups_parent"))

    op.drop_table("thing_groups")
    op.drop_table("policies")
    op.drop_table("changes")
    op.drop_table("ca_certificates")

"""PostgreSQL: NOTIFY followers when change rows are written.

A running server LISTENs on ``thingcore_changes`` and reads the ``changes`` table as soon as a
transaction that wrote to it commits (NOTIFY is delivered at commit), instead of waiting for its
next poll. SQLite has no such mechanism; its followers poll (DESIGN.md, control plane).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHANNEL = "thingcore_changes"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION thingcore_notify_changes() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', current_schema());
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER changes_notify AFTER INSERT ON changes
        FOR EACH STATEMENT EXECUTE FUNCTION thingcore_notify_changes()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS changes_notify ON changes")
    op.execute("DROP FUNCTION IF EXISTS thingcore_notify_changes()")

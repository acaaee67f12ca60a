"""events: an index on ingested_at (a detector shard's replay after a restart)

A restarted shard replays the events ingested since its checkpoint. Without this index that query
read the whole events table (SQLite scanned its time index instead); with it, only the recent rows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 07:05:00
"""
from __future__ import annotations

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_ingested_at', ['ingested_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_ingested_at')

"""event ids sort by time; a meta table records where the earlier, time-free ids end

From this revision ``Event.make_id`` puts the event time before the digest, so that each insert
lands at the end of the events' id index instead of on a random page of it (``bench/store_insert.py
--ids``). Events already stored keep their ids. So that a record pulled or pushed again after the
upgrade is not stored a second time under its new id, the store also looks up the time-free id
(``Event.record_id``) of any event no newer than the newest event stored before the upgrade: this
revision records that time as ``legacy_event_ids_until`` in the new ``meta`` table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 15:10:00
"""
from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import opsradar.schema

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table('meta',
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', opsradar.schema.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_meta'))
    )
    events = sa.table('events', sa.column('ts', opsradar.schema.UtcDateTime(timezone=True)))
    newest = op.get_bind().execute(sa.select(sa.func.max(events.c.ts))).scalar()
    if newest is not None:
        op.bulk_insert(meta, [{'key': 'legacy_event_ids_until', 'value': newest.isoformat(),
                               'updated_at': datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table('meta')

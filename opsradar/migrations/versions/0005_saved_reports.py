"""reports: root-cause reports saved before the retention deletes the events they are built from

A report is built from the events around its incident (changes up to a day before the onset, a
stream's values up to a week before its first anomaly). ``store.event_retention`` deletes events
older than that, so the report of an old incident lost its candidates and its evidence. From this
revision the owner saves an incident's report before the first event it reads is deleted, and the
API and ``opsradar report`` serve that copy from then on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 21:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import opsradar.schema

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reports',
    sa.Column('incident_id', sa.String(length=64), nullable=False),
    sa.Column('doc', sa.JSON(), nullable=False),
    sa.Column('saved_at', opsradar.schema.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('incident_id', name=op.f('pk_reports'))
    )


def downgrade() -> None:
    op.drop_table('reports')

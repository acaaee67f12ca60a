"""outbox: an index on incident_id (the API shows each incident's Slack messages)

``GET /v1/incidents/{id}`` lists the state of the incident's first message in each channel (held for
group_wait, queued, retrying, sent, failed); without this index that read scanned the whole outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 14:00:00
"""
from __future__ import annotations

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_incident_id', ['incident_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_incident_id')

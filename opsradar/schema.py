"""The store's tables (SQLAlchemy Core). Alembic migrations in ``opsradar/migrations`` create them;
``tests/test_store.py`` checks that the migrations and this metadata agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

__all__ = ["UtcDateTime", "metadata"]


class UtcDateTime(TypeDecorator[datetime]):
    """Stores UTC; always returns timezone-aware UTC datetimes (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Id columns: an autoincrementing BigInteger on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite.
_Id = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("ts", UtcDateTime(), nullable=False),
    Column("entity", String(256), nullable=False),
    Column("doc", JSON, nullable=False),
    Column("ingested_at", UtcDateTime(), nullable=False),
    Index("ix_events_ts", "ts"),
    Index("ix_events_source_kind_ts", "source", "kind", "ts"),
    Index("ix_events_entity_ts", "entity", "ts"),
    Index("ix_events_ingested_at", "ingested_at"),  # a restarted detector shard's replay
)

cursors = Table(
    "cursors",
    metadata,
    Column("source", String(128), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

#: Facts about the store itself, by key. ``legacy_event_ids_until``: the time of the newest event
#: stored before schema 0004 gave event ids a time prefix (``Event.make_id``); a record at or before
#: it may already be stored under its time-free id (``Event.record_id``), and is looked up that way
#: too. Absent in a store that never held such ids.
meta = Table(
    "meta",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

source_health = Table(
    "source_health",
    metadata,
    Column("source", String(128), primary_key=True),
    Column("doc", JSON, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("key", String(256), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("blob", LargeBinary, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("group_key", String(256), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # candidate | champion | retired | rejected
    Column("algorithm", String(64), nullable=False),
    Column("params", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("train_start", UtcDateTime(), nullable=True),
    Column("train_end", UtcDateTime(), nullable=True),
    Column("blob", LargeBinary, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("group_key", "version", name="uq_model_versions_group_version"),
)

anomalies = Table(
    "anomalies",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("ts", UtcDateTime(), nullable=False),
    Column("stream", String(256), nullable=False),
    Column("entity", String(256), nullable=False),
    Column("score", Float, nullable=False),
    Column("doc", JSON, nullable=False),
    Index("ix_anomalies_ts", "ts"),
    Index("ix_anomalies_entity_ts", "entity", "ts"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("fingerprint", String(64), primary_key=True),
    Column("incident_id", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("starts_at", UtcDateTime(), nullable=False),
    Column("last_seen", UtcDateTime(), nullable=False),
    Column("doc", JSON, nullable=False),
    Index("ix_alerts_incident", "incident_id"),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("group_key", String(512), nullable=False),
    Column("first_seen", UtcDateTime(), nullable=False),
    Column("last_seen", UtcDateTime(), nullable=False),
    Column("doc", JSON, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_incidents_status_last_seen", "status", "last_seen"),
)

#: Root-cause reports saved before the events they were built from are deleted (store.event_retention):
#: served as saved from then on (``opsradar.alerting.rootcause.builder.report_for``).
reports = Table(
    "reports",
    metadata,
    Column("incident_id", String(64), primary_key=True),
    Column("doc", JSON, nullable=False),
    Column("saved_at", UtcDateTime(), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("dedup_key", String(256), nullable=False, unique=True),
    Column("channel", String(128), nullable=False),
    Column("action", String(32), nullable=False),  # post | update | reply
    Column("incident_id", String(64), nullable=True),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # pending | done | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("result", JSON, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("delivered_at", UtcDateTime(), nullable=True),
    Index("ix_outbox_status_next", "status", "next_attempt_at"),
    Index("ix_outbox_incident_id", "incident_id"),  # an incident's messages, for the API
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("target_type", String(16), nullable=False),  # incident | alert | anomaly
    Column("target_id", String(128), nullable=False),
    Column("verdict", String(16), nullable=False),  # true_positive | false_positive
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("ts", UtcDateTime(), nullable=False),
    Index("ix_feedback_target", "target_type", "target_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("ts", UtcDateTime(), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("detail", JSON, nullable=False),
    Index("ix_audit_log_ts", "ts"),
)

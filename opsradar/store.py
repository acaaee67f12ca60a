"""The store: SQLAlchemy 2 over SQLite (embedded default) or PostgreSQL (clusters).

Opening a store applies any pending Alembic migration. Writes that belong together happen in one
transaction; the main one is :meth:`Store.add_events`, which stores a batch of events and its
collector's cursor atomically, so a crash leaves either both or neither.

>>> store = Store("sqlite://")
>>> from datetime import datetime, timezone
>>> e = Event.new(source="git", native_id="abc123", kind="commit", entity="repo:shop",
...               ts=datetime(2026, 1, 5, tzinfo=timezone.utc))
>>> store.add_events([e, e], cursor=("git", {"sha": "abc123"}))
[...]
>>> store.count_events(), store.get_cursor("git")
(1, {'sha': 'abc123'})
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, delete, event, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from opsradar import schema as t
from opsradar.errors import StoreError
from opsradar.models import Event, event_json, utcnow

__all__ = ["Store", "redact_url"]

log = logging.getLogger(__name__)
_MIGRATIONS = Path(__file__).parent / "migrations"


def redact_url(url: str) -> str:
    """The URL with any password hidden, for logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL we cannot parse is not shown at all
        return "<unparseable store URL>"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-16384")  # KiB: 16 MiB of pages per connection (default 2 MiB); see RESULTS
    # Copy the WAL into the database every 10,000 pages (~40 MB) instead of 1,000: a page rewritten by
    # several transactions between checkpoints is copied once. Measured when event ids were random
    # digests (a page per insert): bench/store_insert.py at 400,000 events, 41 -> 29 µs of CPU per
    # event (RESULTS); ids have sorted by time since schema 0004. The WAL is cut back to 64 MiB after
    # a checkpoint.
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.execute("PRAGMA journal_size_limit=67108864")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


#: Rows per multi-row ``INSERT`` of events (7 parameters a row: 3,500, under SQLite's 32,766 limit).
_INSERT_ROWS = 500


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use timezone-aware UTC")
    return value.astimezone(UTC)


def _sqlite_datetime(value: datetime) -> str:
    """``value`` in UTC as SQLAlchemy's SQLite ``DateTime`` stores it (``schema.UtcDateTime``)."""
    v = value if value.tzinfo is UTC else _utc(value)
    return v.isoformat(" ", "microseconds")[:26]  # "YYYY-MM-DD HH:MM:SS.ffffff", without the offset


def _by_id(events: Sequence[Event]) -> dict[str, Event]:
    """The first event of each id, in order (a batch may hold an event twice)."""
    unique: dict[str, Event] = {}
    for e in events:
        unique.setdefault(e.id, e)
    return unique


class _Raced(Exception):
    """Another writer stored some of the ids being inserted after they were looked up."""


class Store:
    """All persistent state. Thread-safe; one instance per process is enough."""

    def __init__(self, url: str, *, migrate: bool = True, echo: bool = False) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except Exception as exc:
            raise StoreError(f"invalid store URL {redact_url(url)!r}: {exc}") from exc
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"unsupported store {self.dialect!r}: use sqlite:/// or postgresql+psycopg://")
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            db = parsed.database
            if db and db != ":memory:":
                Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
            else:  # one in-memory database shared by every thread
                kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
            kwargs.setdefault("connect_args", {})["timeout"] = 30
        else:
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=10)
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except Exception as exc:
            raise StoreError(f"cannot open store {redact_url(url)}: {exc}") from exc
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._lock = threading.RLock()
        self._legacy_ids_until: datetime | None = None  # see _legacy_ids
        self._legacy_read = False
        if migrate:
            self.migrate()

    def __repr__(self) -> str:
        return f"Store({redact_url(self.url)!r})"

    # ------------------------------------------------------------------ lifecycle

    def migrate(self) -> None:
        """Apply every pending migration (idempotent)."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot migrate store {redact_url(self.url)}: {exc}") from exc

    def schema_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: commits on success, rolls back on any exception."""
        with self.engine.begin() as conn:
            yield conn

    def _insert_ignore(self, table: Any) -> Any:
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _upsert(self, conn: Connection, table: Any, key: str, row: dict[str, Any]) -> None:
        stmt = self._insert_ignore(table).values(**row)
        stmt = stmt.on_conflict_do_update(index_elements=[key], set_={k: v for k, v in row.items() if k != key})
        conn.execute(stmt)

    # ------------------------------------------------------------------ events and cursors

    def add_events(
        self,
        events: Sequence[Event],
        *,
        cursor: tuple[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> list[Event]:
        """Store ``events`` (dedup by id) and, in the same transaction, the collector ``cursor``.

        Returns the events that were new; a re-pull of stored events returns none of them.
        """
        if conn is None:
            if self.dialect == "sqlite" and events:
                try:
                    with self.transaction() as c:
                        fresh = self._add_events_sqlite(c, events)
                        if cursor is not None:
                            self._write_cursor(c, cursor[0], cursor[1])
                        return fresh
                except _Raced:  # rolled back; stored the exact way below
                    log.info("another writer stored some of these %d events meanwhile; storing them again", len(events))
            with self.transaction() as c:
                return self.add_events(events, cursor=cursor, conn=c)
        new: list[Event] = []
        if events:
            now = utcnow()
            batch = list(_by_id(events).values())
            if legacy := self._legacy_ids(conn, batch):
                batch = [e for e in batch if e.id not in legacy]
            inserted: set[str] = set()
            for i in range(0, len(batch), _INSERT_ROWS):
                inserted.update(self._insert_events(conn, batch[i : i + _INSERT_ROWS], now))
            new = [e for e in batch if e.id in inserted]
        if cursor is not None:
            self._write_cursor(conn, cursor[0], cursor[1])
        return new

    def _add_events_sqlite(self, conn: Connection, events: Sequence[Event]) -> list[Event]:
        """SQLite, in a transaction of its own: look the ids up, then insert the new rows with one
        prepared single-row statement (``executemany``): a quarter cheaper than the multi-row
        ``INSERT … RETURNING`` of :meth:`_insert_events` (``bench/store_insert.py``).

        The look-up runs before the driver opens the write transaction (pysqlite begins at the first
        write), so another writer may store some of the same ids in between; the insert skips them,
        its row count then falls short, and :class:`_Raced` rolls this transaction back for the exact
        path.
        """
        unique = _by_id(events)
        ids = list(unique)
        have: set[str] = set()
        for i in range(0, len(ids), _INSERT_ROWS):
            part = tuple(ids[i : i + _INSERT_ROWS])
            have.update(r[0] for r in conn.exec_driver_sql(
                f"SELECT id FROM events WHERE id IN ({', '.join(['?'] * len(part))})", part))
        new = [e for e in unique.values() if e.id not in have]
        if legacy := self._legacy_ids(conn, new):
            new = [e for e in new if e.id not in legacy]
        if new:
            at = _sqlite_datetime(utcnow())
            rows = [(e.id, e.source, e.kind, _sqlite_datetime(e.ts), e.entity, event_json(e), at) for e in new]
            done = conn.exec_driver_sql("INSERT INTO events (id, source, kind, ts, entity, doc, ingested_at) "
                                        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING", rows)
            if done.rowcount != len(new):
                raise _Raced
        return new

    def _legacy_ids(self, conn: Connection, events: Sequence[Event]) -> set[str]:
        """The ids of those ``events`` that a store older than schema 0004 holds under their
        time-free id (``Event.record_id``): records pulled or pushed again after the upgrade.

        Only events no newer than ``meta.legacy_event_ids_until`` are looked up; in a store that
        never held such ids there is nothing to look up.
        """
        if not self._legacy_read:  # written once, by the migration
            value = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "legacy_event_ids_until")).scalar()
            self._legacy_ids_until, self._legacy_read = (datetime.fromisoformat(value) if value else None), True
        until = self._legacy_ids_until
        if until is None or not events:
            return set()
        record_id_of = Event.record_id_of
        old = {r: e.id for e in events if e.ts <= until and (r := record_id_of(e.id)) != e.id}
        found: set[str] = set()
        ids = list(old)
        for i in range(0, len(ids), _INSERT_ROWS):
            found.update(conn.execute(select(t.events.c.id).where(t.events.c.id.in_(ids[i : i + _INSERT_ROWS]))).scalars())
        return {old[r] for r in found}

    def _insert_events(self, conn: Connection, batch: Sequence[Event], now: datetime) -> list[str]:
        """One ``INSERT … ON CONFLICT (id) DO NOTHING RETURNING id`` of many rows; the ids stored.

        The statement is written out and its parameters are given in the driver's form (the JSON
        text of :func:`~opsradar.models.event_json`; on SQLite the timestamps as SQLAlchemy's
        ``DateTime`` stores them), which skips SQLAlchemy's per-value processing of the same row
        through ``t.events``: the stored rows are the same (``tests/test_store.py`` compares them).
        """
        stamp: Callable[[datetime], datetime | str]
        if self.dialect == "sqlite":
            row, stamp = "(?, ?, ?, ?, ?, ?, ?)", _sqlite_datetime
        else:
            row, stamp = "(%s, %s, %s, %s, %s, CAST(%s AS JSON), %s)", _utc
        sql = (f"INSERT INTO events (id, source, kind, ts, entity, doc, ingested_at) VALUES {', '.join([row] * len(batch))}"
               " ON CONFLICT (id) DO NOTHING RETURNING id")
        at = stamp(now)
        params = tuple(v for e in batch for v in (e.id, e.source, e.kind, stamp(e.ts), e.entity, event_json(e), at))
        return [r[0] for r in conn.exec_driver_sql(sql, params)]

    def _write_cursor(self, conn: Connection, source: str, value: Any) -> None:
        self._upsert(conn, t.cursors, "source", {"source": source, "value": value, "updated_at": utcnow()})

    def set_cursor(self, source: str, value: Any) -> None:
        with self.transaction() as conn:
            self._write_cursor(conn, source, value)

    def get_cursor(self, source: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(t.cursors.c.value).where(t.cursors.c.source == source)).scalar()

    def delete_cursor(self, source: str) -> None:
        with self.transaction() as conn:
            conn.execute(delete(t.cursors).where(t.cursors.c.source == source))

    def count_events(self, *, source: str | None = None, kind: str | None = None) -> int:
        q = select(func.count()).select_from(t.events)
        if source:
            q = q.where(t.events.c.source == source)
        if kind:
            q = q.where(t.events.c.kind == kind)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def iter_events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
        kinds: Iterable[str] | None = None,
        entities: Iterable[str] | None = None,
        limit: int | None = None,
        batch: int = 2000,
    ) -> Iterator[Event]:
        """Stored events in event-time order (ties broken by id), filtered."""
        q = select(t.events.c.doc)
        if since is not None:
            q = q.where(t.events.c.ts >= since)
        if until is not None:
            q = q.where(t.events.c.ts < until)
        if source:
            q = q.where(t.events.c.source == source)
        if kinds is not None:
            q = q.where(t.events.c.kind.in_(list(kinds)))
        if entities is not None:
            q = q.where(t.events.c.entity.in_(list(entities)))
        q = q.order_by(t.events.c.ts, t.events.c.id)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=batch).execute(q)
            for (doc,) in result:
                yield Event.model_validate(doc)

    def get_event(self, event_id: str) -> Event | None:
        with self.engine.connect() as conn:
            doc = conn.execute(select(t.events.c.doc).where(t.events.c.id == event_id)).scalar()
        return Event.model_validate(doc) if doc is not None else None

    def prune_events(self, older_than: timedelta) -> int:
        """Delete events older than ``older_than`` by the wall clock; returns how many."""
        return self.prune_events_before(utcnow() - older_than)

    def prune_events_before(self, cutoff: datetime, *, batch: int = 5_000) -> int:
        """Delete the events whose time is before ``cutoff``, ``batch`` rows per transaction (so that
        the writers that store new events wait for one short transaction at a time); returns how many."""
        total = 0
        while True:
            with self.transaction() as conn:
                ids = list(conn.execute(select(t.events.c.id).where(t.events.c.ts < cutoff).limit(batch)).scalars())
                if ids:
                    conn.execute(delete(t.events).where(t.events.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < batch:
                return total

    # ------------------------------------------------------------------ source health

    def set_source_health(self, source: str, doc: dict[str, Any]) -> None:
        with self.transaction() as conn:
            self._upsert(conn, t.source_health, "source", {"source": source, "doc": doc, "updated_at": utcnow()})

    def source_health(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            return {r.source: r.doc for r in conn.execute(select(t.source_health))}

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, key: str, blob: bytes, *, version: str = "1") -> None:
        with self.transaction() as conn:
            self._upsert(conn, t.checkpoints, "key", {"key": key, "version": version, "blob": blob, "updated_at": utcnow()})

    def save_checkpoints(self, items: dict[str, bytes], *, version: str = "1") -> None:
        """Several checkpoints in one transaction."""
        with self.transaction() as conn:
            now = utcnow()
            for key, blob in items.items():
                self._upsert(conn, t.checkpoints, "key", {"key": key, "version": version, "blob": blob, "updated_at": now})

    def load_checkpoint(self, key: str) -> tuple[bytes, str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.checkpoints.c.blob, t.checkpoints.c.version).where(t.checkpoints.c.key == key)).first()
        return (bytes(row.blob), row.version) if row else None

    def load_checkpoints(self, prefix: str) -> dict[str, bytes]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.checkpoints.c.key, t.checkpoints.c.blob).where(t.checkpoints.c.key.startswith(prefix, autoescape=True)))
            return {r.key: bytes(r.blob) for r in rows}

    # ------------------------------------------------------------------ model versions

    def register_model(
        self,
        group_key: str,
        *,
        algorithm: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        blob: bytes | None,
        train_start: datetime | None = None,
        train_end: datetime | None = None,
        status: str = "candidate",
    ) -> int:
        """Register a new model version for ``group_key``; returns its version number."""
        with self.transaction() as conn:
            current = conn.execute(select(func.max(t.model_versions.c.version)).where(t.model_versions.c.group_key == group_key)).scalar()
            version = int(current or 0) + 1
            conn.execute(insert(t.model_versions).values(
                group_key=group_key, version=version, status=status, algorithm=algorithm, params=params,
                metrics=metrics, blob=blob, train_start=train_start, train_end=train_end, created_at=utcnow()))
        return version

    def list_models(self, group_key: str | None = None) -> list[dict[str, Any]]:
        cols = [c for c in t.model_versions.c if c.name != "blob"]
        q = select(*cols).order_by(t.model_versions.c.group_key, t.model_versions.c.version)
        if group_key is not None:
            q = q.where(t.model_versions.c.group_key == group_key)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def load_model_blob(self, group_key: str, version: int) -> bytes | None:
        with self.engine.connect() as conn:
            blob = conn.execute(select(t.model_versions.c.blob).where(
                t.model_versions.c.group_key == group_key, t.model_versions.c.version == version)).scalar()
        return bytes(blob) if blob is not None else None

    def set_model_status(self, group_key: str, version: int, status: str, *, conn: Connection | None = None) -> None:
        if conn is None:
            with self.transaction() as c:
                return self.set_model_status(group_key, version, status, conn=c)
        if status == "champion":
            conn.execute(update(t.model_versions).where(
                t.model_versions.c.group_key == group_key, t.model_versions.c.status == "champion"
            ).values(status="retired"))
        res = conn.execute(update(t.model_versions).where(
            t.model_versions.c.group_key == group_key, t.model_versions.c.version == version).values(status=status))
        if not res.rowcount:
            raise StoreError(f"no model version {group_key} v{version}")
        return None

    def champion(self, group_key: str) -> dict[str, Any] | None:
        for m in self.list_models(group_key):
            if m["status"] == "champion":
                return m
        return None

    # ------------------------------------------------------------------ anomalies, alerts, incidents

    def add_anomaly(self, doc: dict[str, Any], *, conn: Connection | None = None) -> bool:
        """Store one anomaly document (``Anomaly.model_dump(mode='json')``); False if already stored."""
        if conn is None:
            with self.transaction() as c:
                return self.add_anomaly(doc, conn=c)
        from opsradar.models import Anomaly

        a = Anomaly.model_validate(doc)
        stmt = self._insert_ignore(t.anomalies).values(
            id=a.id, ts=a.ts, stream=a.stream, entity=a.entity, score=a.score, doc=doc
        ).on_conflict_do_nothing(index_elements=["id"]).returning(t.anomalies.c.id)
        return conn.execute(stmt).first() is not None

    def iter_anomalies(self, *, since: datetime | None = None, until: datetime | None = None,
                       entities: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        q = select(t.anomalies.c.doc).order_by(t.anomalies.c.ts)
        if since is not None:
            q = q.where(t.anomalies.c.ts >= since)
        if until is not None:
            q = q.where(t.anomalies.c.ts < until)
        if entities is not None:
            q = q.where(t.anomalies.c.entity.in_(list(entities)))
        with self.engine.connect() as conn:
            for (doc,) in conn.execute(q):
                yield doc

    def count_anomalies(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.anomalies)).scalar_one())

    def save_alert(self, doc: dict[str, Any], *, incident_id: str | None, conn: Connection | None = None) -> None:
        if conn is None:
            with self.transaction() as c:
                return self.save_alert(doc, incident_id=incident_id, conn=c)
        from opsradar.models import Alert

        a = Alert.model_validate(doc)
        self._upsert(conn, t.alerts, "fingerprint", {
            "fingerprint": a.fingerprint, "incident_id": incident_id, "status": a.status.value,
            "starts_at": a.starts_at, "last_seen": a.ends_at or a.starts_at, "doc": doc})
        return None

    def get_alert(self, fp: str) -> tuple[dict[str, Any], str | None] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.alerts.c.doc, t.alerts.c.incident_id).where(t.alerts.c.fingerprint == fp)).first()
        return (row.doc, row.incident_id) if row else None

    def alerts_of(self, incident_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            q = select(t.alerts.c.doc).where(t.alerts.c.incident_id == incident_id).order_by(t.alerts.c.starts_at)
            return [r.doc for r in conn.execute(q)]

    def save_incident(self, doc: dict[str, Any], *, conn: Connection | None = None) -> None:
        if conn is None:
            with self.transaction() as c:
                return self.save_incident(doc, conn=c)
        from opsradar.models import Incident

        inc = Incident.model_validate(doc)
        self._upsert(conn, t.incidents, "id", {
            "id": inc.id, "status": inc.status.value, "group_key": inc.group_key, "first_seen": inc.first_seen,
            "last_seen": inc.last_seen, "doc": doc, "updated_at": utcnow()})
        return None

    def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            return conn.execute(select(t.incidents.c.doc).where(t.incidents.c.id == incident_id)).scalar()

    def list_incidents(
        self, *, status: str | None = None, since: datetime | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        q = select(t.incidents.c.doc).order_by(t.incidents.c.first_seen.desc(), t.incidents.c.id)
        if status:
            q = q.where(t.incidents.c.status == status)
        if since is not None:
            q = q.where(t.incidents.c.last_seen >= since)
        q = q.limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [r.doc for r in conn.execute(q)]

    # ------------------------------------------------------------------ saved root-cause reports

    def save_report(self, incident_id: str, doc: dict[str, Any]) -> None:
        """Keep ``doc`` (a root-cause report) as the report of ``incident_id`` (replacing any saved one)."""
        with self.transaction() as conn:
            self._upsert(conn, t.reports, "incident_id", {"incident_id": incident_id, "doc": doc, "saved_at": utcnow()})

    def saved_report(self, incident_id: str) -> dict[str, Any] | None:
        """The saved report of ``incident_id``, or None."""
        with self.engine.connect() as conn:
            return conn.execute(select(t.reports.c.doc).where(t.reports.c.incident_id == incident_id)).scalar()

    def has_saved_report(self, incident_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(t.reports.c.incident_id).where(t.reports.c.incident_id == incident_id)).first() is not None

    def incidents_without_report(self, *, first_seen_before: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Incidents first seen before ``first_seen_before`` that have no saved report, oldest first."""
        saved = select(t.reports.c.incident_id)
        q = (select(t.incidents.c.doc).where(t.incidents.c.first_seen < first_seen_before, t.incidents.c.id.not_in(saved))
             .order_by(t.incidents.c.first_seen, t.incidents.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [r.doc for r in conn.execute(q)]

    # ------------------------------------------------------------------ notification outbox

    def enqueue(self, *, dedup_key: str, channel: str, action: str, payload: dict[str, Any],
                incident_id: str | None = None, not_before: datetime | None = None,
                conn: Connection | None = None) -> bool:
        """Put a notification in the outbox, once per ``dedup_key``; False if it was there already.
        It is due at once, or at ``not_before`` when that is later."""
        if conn is None:
            with self.transaction() as c:
                return self.enqueue(dedup_key=dedup_key, channel=channel, action=action, payload=payload,
                                    incident_id=incident_id, not_before=not_before, conn=c)
        now = utcnow()
        due = max(now, not_before) if not_before is not None else now
        stmt = self._insert_ignore(t.outbox).values(
            dedup_key=dedup_key, channel=channel, action=action, incident_id=incident_id, payload=payload,
            status="pending", attempts=0, next_attempt_at=due, created_at=now,
        ).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(t.outbox.c.id)
        return conn.execute(stmt).first() is not None

    def due_notifications(self, *, now: datetime | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Pending outbox rows whose time has come, oldest first."""
        now = now or utcnow()
        q = (select(t.outbox).where(t.outbox.c.status == "pending", t.outbox.c.next_attempt_at <= now)
             .order_by(t.outbox.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def mark_delivered(self, outbox_id: int, result: dict[str, Any] | None = None) -> None:
        with self.transaction() as conn:
            conn.execute(update(t.outbox).where(t.outbox.c.id == outbox_id).values(
                status="done", delivered_at=utcnow(), result=result, attempts=t.outbox.c.attempts + 1))

    def mark_failed(self, outbox_id: int, error: str, *, retry_at: datetime | None) -> None:
        """Record a failed attempt; with no ``retry_at`` the row is dead (never retried)."""
        with self.transaction() as conn:
            values: dict[str, Any] = {"last_error": error[:2000], "attempts": t.outbox.c.attempts + 1}
            if retry_at is None:
                values["status"] = "dead"
            else:
                values["next_attempt_at"] = retry_at
            conn.execute(update(t.outbox).where(t.outbox.c.id == outbox_id).values(**values))

    def outbox_rows(self, *, status: str | None = None) -> list[dict[str, Any]]:
        q = select(t.outbox).order_by(t.outbox.c.id)
        if status:
            q = q.where(t.outbox.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def first_messages(self, incident_id: str) -> list[dict[str, Any]]:
        """The outbox rows of an incident's first message in each channel, oldest first."""
        q = (select(t.outbox).where(t.outbox.c.incident_id == incident_id, t.outbox.c.action == "post")
             .order_by(t.outbox.c.id))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    # ------------------------------------------------------------------ feedback and audit

    def add_feedback(self, *, target_type: str, target_id: str, verdict: str, actor: str, reason: str = "") -> None:
        if verdict not in ("true_positive", "false_positive"):
            raise ValueError(f"verdict must be true_positive or false_positive, got {verdict!r}")
        with self.transaction() as conn:
            conn.execute(insert(t.feedback).values(target_type=target_type, target_id=target_id, verdict=verdict,
                                                   actor=actor, reason=reason, ts=utcnow()))
            self.audit(actor, "feedback", f"{target_type}:{target_id}", {"verdict": verdict, "reason": reason}, conn=conn)

    def feedback_for(self, target_type: str | None = None, target_id: str | None = None) -> list[dict[str, Any]]:
        q = select(t.feedback).order_by(t.feedback.c.id)
        if target_type:
            q = q.where(t.feedback.c.target_type == target_type)
        if target_id:
            q = q.where(t.feedback.c.target_id == target_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def audit(self, actor: str, action: str, subject: str, detail: dict[str, Any] | None = None,
              *, conn: Connection | None = None) -> None:
        """Append to the audit log (in ``conn``'s transaction when given)."""
        row = {"ts": utcnow(), "actor": actor, "action": action, "subject": subject, "detail": detail or {}}
        if conn is None:
            with self.transaction() as c:
                c.execute(insert(t.audit_log).values(**row))
        else:
            conn.execute(insert(t.audit_log).values(**row))

    def audit_log(self, *, action: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        q = select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)
        if action:
            q = q.where(t.audit_log.c.action == action)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)][::-1]


def default_store_url() -> str:
    """``$OPSRADAR_STORE_URL`` or the embedded SQLite default."""
    from opsradar.config import DEFAULT_STORE_URL

    return os.environ.get("OPSRADAR_STORE_URL", DEFAULT_STORE_URL)


_ = IntegrityError  # re-exported for callers that catch races on unique keys

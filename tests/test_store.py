from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from opsradar.errors import StoreError
from opsradar.models import Alert, Event, Incident, fingerprint
from opsradar.schema import metadata
from opsradar.store import Store

from .conftest import T0, make_event


def test_migrations_create_the_schema_and_match_the_metadata(store: Store) -> None:
    assert store.schema_revision() == "0005"
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
    assert diff == []


def test_migrating_twice_is_harmless(store: Store) -> None:
    store.migrate()
    assert store.schema_revision() == "0005"


def test_same_events_stored_twice_give_one_row(store: Store) -> None:
    events = [make_event(i) for i in range(5)]
    first = store.add_events(events)
    again = store.add_events([*events, make_event(5)])
    assert len(first) == 5
    assert [e.id for e in again] == [make_event(5).id]
    assert store.count_events() == 6


def test_bulk_insert_stores_the_rows_sqlalchemy_would_store(store: Store) -> None:
    from sqlalchemy import insert

    from opsradar import schema as t

    ours, ref = make_event(1, ts=T0 + timedelta(seconds=5, microseconds=450)), make_event(2)
    ref_row = {"id": ref.id, "source": ref.source, "kind": ref.kind, "ts": ours.ts, "entity": ref.entity,
               "doc": ref.model_dump(mode="json"), "ingested_at": ours.ts}
    with store.transaction() as conn:
        conn.execute(insert(t.events), [ref_row])
    assert store.add_events([ours, ref]) == [ours]
    with store.engine.connect() as conn:
        raw = {r[0]: r[1:] for r in conn.exec_driver_sql("SELECT id, ts, entity, doc FROM events")}
    assert raw[ours.id][0] == raw[ref.id][0]  # the timestamp as the driver stores it
    assert store.get_event(ours.id) == ours
    assert store.get_event(ref.id) == ref
    assert [e.id for e in store.iter_events(since=ours.ts, until=ours.ts + timedelta(seconds=1))] == sorted([ours.id, ref.id])


def test_batches_larger_than_one_statement_are_stored_once(store: Store) -> None:
    events = [make_event(i) for i in range(1203)]
    assert len(store.add_events(events[:700])) == 700
    new = store.add_events(events)
    assert [e.id for e in new] == [e.id for e in events[700:]]
    assert store.count_events() == 1203


def test_ids_another_writer_stores_between_the_look_up_and_the_insert_are_not_claimed_twice(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    from sqlalchemy import event

    caplog.set_level(logging.INFO, logger="opsradar.store")

    ours, other = Store(f"sqlite:///{tmp_path}/state.db"), Store(f"sqlite:///{tmp_path}/state.db")
    events = [make_event(i) for i in range(5)]
    meanwhile: list[list[str]] = []

    @event.listens_for(ours.engine, "before_cursor_execute")
    def _other_writer(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if executemany and statement.startswith("INSERT INTO events") and not meanwhile:
            meanwhile.append([e.id for e in other.add_events([events[2], make_event(7)])])

    new = ours.add_events(events)
    assert meanwhile == [[events[2].id, make_event(7).id]]  # the other writer stored one of ours first
    assert "another writer stored some of these 5 events meanwhile" in caplog.text  # rolled back, done again
    assert [e.id for e in new] == [e.id for i, e in enumerate(events) if i != 2]  # so ours is not new
    assert ours.count_events() == 6
    assert ours.add_events(events) == []


def test_duplicates_within_one_batch_are_stored_once(store: Store) -> None:
    e = make_event(1)
    assert len(store.add_events([e, e, e])) == 1
    assert store.count_events() == 1


def test_events_round_trip_in_time_order(store: Store) -> None:
    events = [make_event(i) for i in (3, 1, 2)]
    store.add_events(events)
    back = list(store.iter_events())
    assert [e.id for e in back] == [make_event(i).id for i in (1, 2, 3)]
    assert back[0] == make_event(1)
    assert back[0].ts.tzinfo is not None
    assert back[0].ts.utcoffset() == timedelta(0)
    window = list(store.iter_events(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=3)))
    assert [e.id for e in window] == [make_event(2).id]


def test_batch_and_cursor_commit_together(store: Store) -> None:
    store.add_events([make_event(1)], cursor=("jenkins", {"since": "a"}))
    assert store.get_cursor("jenkins") == {"since": "a"}
    assert store.count_events() == 1


class Crash(Exception):
    pass


def test_crash_between_batch_and_cursor_leaves_neither(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.add_events([make_event(1)], cursor=("jenkins", {"since": "before"}))

    def crash(*_a: object, **_k: object) -> None:
        raise Crash("killed between the events and the cursor")

    monkeypatch.setattr(store, "_write_cursor", crash)
    with pytest.raises(Crash):
        store.add_events([make_event(2), make_event(3)], cursor=("jenkins", {"since": "after"}))
    monkeypatch.undo()
    assert store.count_events() == 1
    assert store.get_cursor("jenkins") == {"since": "before"}
    # the re-pull after the crash stores the batch once
    assert len(store.add_events([make_event(2), make_event(3)], cursor=("jenkins", {"since": "after"}))) == 2
    assert store.get_cursor("jenkins") == {"since": "after"}


def test_retention_prunes_old_events(store: Store) -> None:
    store.add_events([make_event(1)])  # T0 is in the past
    assert store.prune_events(timedelta(days=1)) == 1
    assert store.count_events() == 0


def test_checkpoints_round_trip(store: Store) -> None:
    store.save_checkpoint("det/a", b"\x00\x01", version="v1")
    store.save_checkpoint("det/a", b"\x02", version="v2")
    store.save_checkpoints({"det/b": b"b", "other": b"o"})
    assert store.load_checkpoint("det/a") == (b"\x02", "v2")
    assert store.load_checkpoints("det/") == {"det/a": b"\x02", "det/b": b"b"}
    assert store.load_checkpoint("missing") is None


def test_model_versions_and_champion(store: Store) -> None:
    v1 = store.register_model("g", algorithm="ECOD", params={}, metrics={"auc": 0.7}, blob=b"m1")
    v2 = store.register_model("g", algorithm="ECOD", params={}, metrics={"auc": 0.8}, blob=b"m2")
    assert (v1, v2) == (1, 2)
    store.set_model_status("g", 1, "champion")
    store.set_model_status("g", 2, "champion")
    statuses = {m["version"]: m["status"] for m in store.list_models("g")}
    assert statuses == {1: "retired", 2: "champion"}
    assert store.load_model_blob("g", 2) == b"m2"
    with pytest.raises(StoreError, match="no model version g v9"):
        store.set_model_status("g", 9, "champion")


def test_alerts_incidents_and_outbox(store: Store) -> None:
    labels = {"service": "shop", "source": "jenkins"}
    alert = Alert.from_labels(title="slow build", labels=labels, starts_at=T0)
    store.save_alert(alert.model_dump(mode="json"), incident_id="inc-1")
    assert store.get_alert(fingerprint(labels)) == (alert.model_dump(mode="json"), "inc-1")
    inc = Incident(id="inc-1", title="shop", first_seen=T0, last_seen=T0)
    store.save_incident(inc.model_dump(mode="json"))
    assert Incident.model_validate(store.get_incident("inc-1")) == inc
    assert [d["id"] for d in store.list_incidents(status="open")] == ["inc-1"]
    assert store.alerts_of("inc-1")[0]["title"] == "slow build"

    assert store.enqueue(dedup_key="inc-1:open:#ops", channel="#ops", action="post", payload={"t": 1})
    assert not store.enqueue(dedup_key="inc-1:open:#ops", channel="#ops", action="post", payload={"t": 1})
    (row,) = store.due_notifications()
    store.mark_failed(row["id"], "503", retry_at=row["next_attempt_at"] + timedelta(hours=1))
    assert store.due_notifications() == []
    store.mark_delivered(row["id"], {"ts": "1.2"})
    (done,) = store.outbox_rows(status="done")
    assert done["attempts"] == 2
    assert done["result"] == {"ts": "1.2"}


def test_feedback_is_audited(store: Store) -> None:
    store.add_feedback(target_type="incident", target_id="inc-1", verdict="false_positive", actor="ana", reason="batch job")
    (fb,) = store.feedback_for("incident", "inc-1")
    assert (fb["actor"], fb["verdict"], fb["reason"]) == ("ana", "false_positive", "batch job")
    (entry,) = store.audit_log(action="feedback")
    assert entry["subject"] == "incident:inc-1"
    assert entry["actor"] == "ana"
    with pytest.raises(ValueError, match="verdict"):
        store.add_feedback(target_type="incident", target_id="x", verdict="maybe", actor="a")


def test_sqlite_default_creates_its_directory(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    s = Store("sqlite:///./.opsradar/state.db")
    assert (tmp_path / ".opsradar" / "state.db").exists()
    s.close()


def test_bad_urls_are_clear_errors() -> None:
    with pytest.raises(StoreError, match="unsupported store 'mysql'"):
        Store("mysql://u:pw@h/db")
    with pytest.raises(StoreError, match="invalid store URL"):
        Store("not a url")


def test_repr_hides_the_password() -> None:
    from opsradar.store import redact_url

    assert "s3cret" not in redact_url("postgresql+psycopg://u:s3cret@h/db")


def test_sqlite_timestamps_are_written_as_sqlalchemy_writes_them() -> None:
    import random
    from datetime import UTC, datetime, timezone

    from sqlalchemy.dialects import sqlite

    from opsradar.store import _sqlite_datetime

    write = sqlite.DATETIME().bind_processor(sqlite.dialect())  # what SQLAlchemy's SQLite DateTime stores
    assert write is not None
    rng = random.Random(5)
    stamps = [datetime(1, 1, 1, tzinfo=UTC), datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
              datetime(2026, 3, 2, 9, 30, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))]
    stamps += [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**14)) for _ in range(200)]
    for ts in stamps:
        assert _sqlite_datetime(ts) == write(ts.astimezone(UTC).replace(tzinfo=None)), ts


def test_a_store_at_the_first_schema_is_migrated_with_its_events(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import inspect

    from opsradar.store import _MIGRATIONS

    old = Store(f"sqlite:///{tmp_path}/old.db", migrate=False)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    assert old.schema_revision() == "0001"
    _store_as_before_0004(old, [make_event(1)])
    old.close()
    store = Store(f"sqlite:///{tmp_path}/old.db")  # migrates
    assert store.schema_revision() == "0005"
    assert "ix_events_ingested_at" in {ix["name"] for ix in inspect(store.engine).get_indexes("events")}
    assert "ix_outbox_incident_id" in {ix["name"] for ix in inspect(store.engine).get_indexes("outbox")}
    assert store.get_event(Event.record_id("jenkins", "n1")) == _as_before_0004(make_event(1))
    assert store.add_events([make_event(1)]) == []  # not stored again under its new id


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_at_0003(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    """A store at schema 0003, before event ids had a time prefix."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from opsradar.store import _MIGRATIONS

    url = f"sqlite:///{tmp_path}/old.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    old = Store(url, migrate=False)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    yield old
    old.close()


def _as_before_0004(event: Event) -> Event:
    """``event`` with the time-free id opsradar gave it before schema 0004."""
    return event.model_copy(update={"id": Event.record_id_of(event.id)})


def _store_as_before_0004(store: Store, events: list[Event]) -> None:
    """Store ``events`` under their time-free ids, as opsradar did before schema 0004."""
    from sqlalchemy import insert

    from opsradar import schema as t

    with store.transaction() as conn:
        conn.execute(insert(t.events), [
            {"id": e.id, "source": e.source, "kind": e.kind, "ts": e.ts, "entity": e.entity,
             "doc": e.model_dump(mode="json"), "ingested_at": e.ts} for e in map(_as_before_0004, events)])


def test_event_ids_sort_by_event_time_and_name_one_record_at_one_time() -> None:
    ids = [make_event(1, ts=T0 + timedelta(milliseconds=ms)).id for ms in (0, 1, 999, 60_000, 86_400_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    shifted = make_event(1, ts=(T0 + timedelta(milliseconds=999)).astimezone(timezone(timedelta(hours=-5))))
    assert shifted.id == ids[2]  # the same instant in another zone: the same event
    assert make_event(1, ts=T0 + timedelta(microseconds=999)).id == ids[0]  # milliseconds
    assert Event.record_id_of(ids[3]) == Event.record_id("jenkins", "n1") == Event.record_id_of(ids[4])
    assert Event.record_id_of("a-hand-made-id") == "a-hand-made-id"
    far = make_event(1, ts=datetime(3000, 1, 1, tzinfo=UTC))  # after 2527: 12 digits of time, still parsed
    assert Event.record_id_of(far.id) == Event.record_id("jenkins", "n1")


def test_records_stored_before_0004_are_not_stored_again_under_their_new_ids(store_at_0003: Store) -> None:
    old = [make_event(i) for i in range(4)]  # T0 .. T0 + 3 min
    _store_as_before_0004(store_at_0003, old)
    store = Store(store_at_0003.url)  # migrates to the newest revision (0004 records the newest legacy event: T0 + 3 min)
    try:
        assert store.schema_revision() == "0005"
        assert store.add_events(old[:2]) == []  # a re-pull after the upgrade: the SQLite fast path
        with store.transaction() as conn:  # the exact path (PostgreSQL's, and SQLite's after a race)
            assert store.add_events(old[2:], conn=conn) == []
        assert store.count_events() == 4
        fresh = [make_event(9, ts=T0 + timedelta(minutes=1)), make_event(10, ts=T0 + timedelta(hours=1))]
        assert store.add_events([old[0], *fresh]) == fresh  # records not stored before are new
        later = make_event(3, ts=T0 + timedelta(hours=2))  # the same record at another time: another event
        assert store.add_events([later]) == [later]
        assert store.count_events() == 7
        assert store.get_event(Event.record_id("jenkins", "n0")) == _as_before_0004(old[0])  # old ids resolve
    finally:
        store.close()


def test_a_store_with_no_events_before_0004_looks_nothing_up_the_old_way(store_at_0003: Store) -> None:
    from sqlalchemy import select

    from opsradar import schema as t

    store = Store(store_at_0003.url)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(select(t.meta.c.key)).all() == []
        # a row under a record's time-free id, written after the upgrade, is not taken for this record
        _store_as_before_0004(store, [make_event(0)])
        assert store.add_events([make_event(0)]) == [make_event(0)]
    finally:
        store.close()

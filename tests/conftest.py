"""Shared fixtures: stores on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from opsradar.models import Event
from opsradar.store import Store

PG_BASE = os.environ.get("OPSRADAR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    try:
        engine = sa.create_engine(PG_BASE, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # the reason is printed in the skip message
        return str(exc).splitlines()[0]


_PG_PROBLEM = _pg_available()


def pytest_report_header(config: pytest.Config) -> str:
    if _PG_PROBLEM:
        return f"PostgreSQL: NOT AVAILABLE at {PG_BASE} — PostgreSQL tests will be SKIPPED ({_PG_PROBLEM})"
    return f"PostgreSQL: available at {PG_BASE}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    if _PG_PROBLEM:
        warnings.warn(f"PostgreSQL is not reachable; skipping: {_PG_PROBLEM}", stacklevel=1)
        pytest.skip(f"PostgreSQL NOT REACHABLE at {PG_BASE}: {_PG_PROBLEM}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(sa.text(f'create schema "{schema}"'))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'drop schema "{schema}" cascade'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    """A migrated store, once on SQLite (file) and once on PostgreSQL."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path}/state.db")
    else:
        s = Store(request.getfixturevalue("pg_url"))
    yield s
    s.close()


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def make_event(i: int, *, source: str = "jenkins", kind: str = "build", entity: str = "job:shop-build",
               ts: datetime | None = None, **values: float) -> Event:
    return Event.new(source=source, native_id=f"n{i}", kind=kind, ts=ts or T0 + timedelta(minutes=i),
                     entity=entity, values=values or {"duration_s": float(100 + i)})

"""Drive history in the fleet store (SQLite in memory; the tables on the shared Base)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from redfleet.predict import DriveModel
from redfleet.predict.fleet import score_fleet
from redfleet.predict.scoring import score_history
from redfleet.store.base import Base
from redfleet.store.ssd import append_sample, fleet_histories, list_drives, read_history, upsert_drive

T0 = datetime(2025, 6, 1, tzinfo=UTC)


PG = os.environ.get("REDFLEET_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432").rstrip("/")


def _pg_schema():
    """A fresh schema in the local PostgreSQL's postgres database, or a skip."""
    psycopg = pytest.importorskip("psycopg")
    from sqlalchemy.engine import make_url

    url = make_url(PG)
    conninfo = (f"host={url.host or '127.0.0.1'} port={url.port or 5432} user={url.username or 'postgres'} "
                "dbname=postgres")
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG} is not reachable: {exc}")
    schema = f"ssd_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    return conn, schema, f"{PG}/postgres?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def session(request):
    if request.param == "sqlite":
        engine = create_engine("sqlite://")
        Base.metadata.create_all(engine)
        with Session(engine) as s:
            yield s
        return
    conn, schema, url = _pg_schema()
    engine = create_engine(url)
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as s:
            yield s
    finally:
        engine.dispose()
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


@pytest.mark.postgres
def test_fleet_store_migrations_hold_the_ssd_tables_on_postgresql():
    """The store's Alembic history creates these tables as the models define them (JSON, tz times, cascade)."""
    from sqlalchemy.orm import sessionmaker

    from redfleet.store import FleetStore

    conn, schema, url = _pg_schema()
    store = FleetStore(url)
    try:
        with sessionmaker(store.engine)() as s:
            append_sample(s, "d1", T0, smart={"data_units_written": 2**100 + 1, "critical_warning": 0},
                          ocp={"log_page_version": 5, "endurance_estimate": 2**90}, node_id="n1")
            s.commit()
            p = read_history(s, "d1")[0]
            assert p.collected_at == T0 and p.smart["data_units_written"] == 2**100 + 1
            assert p.ocp["endurance_estimate"] == 2**90
    finally:
        store.close()
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


def test_append_and_read_back(session):
    m = DriveModel("n3/nvme0", "badblocks", onset_day=5, failure_day=40)
    for d in range(0, 30):
        s = m.state_at(d)
        append_sample(session, "n3/nvme0", T0 + timedelta(days=d), smart=s.smart, ocp=s.ocp_fields(4),
                      source="sim", node_id="n3", model="M", serial=s.serial)
    session.commit()
    hist = read_history(session, "n3/nvme0")
    assert len(hist) == 30 and hist[0].collected_at == T0 and hist[-1].collected_at.tzinfo is not None
    assert hist[-1].ocp["log_page_version"] == 4 and hist[-1].source == "sim"
    assert hist[-1].ocp["physical_media_units_written"] == m.state_at(29).ocp["physical_media_units_written"]
    since = read_history(session, "n3/nvme0", since=T0 + timedelta(days=20))
    assert len(since) == 10
    drive = list_drives(session)[0]
    assert drive.node_id == "n3" and drive.model == "M"
    a = score_history(hist, drive_id="n3/nvme0")
    assert a.recommendation in ("WATCH", "REPLACE")


def test_same_instant_replaces(session):
    append_sample(session, "d1", T0, smart={"media_errors": 1})
    append_sample(session, "d1", T0, smart={"media_errors": 2})
    session.commit()
    assert [p.smart["media_errors"] for p in read_history(session, "d1")] == [2]


def test_128_bit_values_survive(session):
    append_sample(session, "d1", T0, smart={"data_units_written": 2**100 + 1}, ocp={"endurance_estimate": 2**90})
    session.commit()
    p = read_history(session, "d1")[0]
    assert p.smart["data_units_written"] == 2**100 + 1 and p.ocp["endurance_estimate"] == 2**90


def test_bad_calls(session):
    with pytest.raises(ValueError, match="source must be"):
        append_sample(session, "d1", T0, smart={}, source="carrier-pigeon")
    with pytest.raises(ValueError, match="needs SMART"):
        append_sample(session, "d1", T0)


def test_fleet_histories_and_seen_times(session):
    for i, path in enumerate(["healthy", "media"]):
        for d in (0, 1, 2):
            append_sample(session, f"d{i}", T0 + timedelta(days=d), smart=DriveModel(i, path).state_at(d).smart,
                          node_id=f"n{i}")
    upsert_drive(session, "d0", slot="3")
    session.commit()
    hist = fleet_histories(session)
    assert set(hist) == {"d0", "d1"} and all(len(v) == 3 for v in hist.values())
    assert set(fleet_histories(session, since=T0 + timedelta(days=2), drive_ids=["d0"])) == {"d0"}
    d0 = next(d for d in list_drives(session) if d.drive_id == "d0")
    assert d0.slot == "3" and d0.first_seen is not None and d0.last_seen is not None
    assert len(score_fleet(hist)) == 2
    assert [d.drive_id for d in list_drives(session, node_id="n1")] == ["d1"]

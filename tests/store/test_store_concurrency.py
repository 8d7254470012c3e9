"""Concurrent writers (separate processes, as a collector and an operator would be) do not corrupt the store:
SQLite queues them on its lock (BEGIN IMMEDIATE + busy timeout + bounded retries), PostgreSQL on row locks."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from redfleet.store import FleetStore, KeyRing

WORKERS = 4
ROUNDS = 10


def _worker(url: str, key: str, worker: int, fleet_path: str, queue: mp.Queue) -> None:
    try:
        store = FleetStore(url, keyring=KeyRing.from_key(key), actor=f"w{worker}")
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(ROUNDS):
            store.import_fleet(fleet_path)
            # Every worker moves the same node's GPU serial: each distinct inventory gets a snapshot.
            inv = {"gpus": [{"id": "GPU1", "location": "SXM1", "serial": f"w{worker}-{i}"}]}
            store.record_inventory("gpu-001", inv, at=t0 + timedelta(seconds=worker * 1000 + i))
            store.add_event("gpu-002", f"worker {worker} round {i}", source="test")
        store.close()
        queue.put(None)
    except BaseException as exc:
        queue.put(f"worker {worker}: {type(exc).__name__}: {exc}")


def test_concurrent_writers(db_url, key, fleet_file):
    FleetStore(db_url, keyring=KeyRing.from_key(key)).close()  # migrate once (first open races are tested elsewhere)
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(db_url, key, w, str(fleet_file), queue)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [r for r in results if r is not None] == []

    store = FleetStore(db_url, keyring=KeyRing.from_key(key))
    try:
        counts = store.counts()
        assert counts["nodes"] == 4 and counts["credentials"] == 2 and counts["bmc_endpoints"] == 4
        assert counts["events"] == WORKERS * ROUNDS
        assert counts["inventory_snapshots"] == WORKERS * ROUNDS  # every inventory differed from the one before
        # Each snapshot after the first has exactly one change row (a GPU replaced) — none lost, none doubled.
        assert counts["inventory_changes"] == WORKERS * ROUNDS - 1
        assert all(c.kind == "replaced" for c in store.history("gpu-001"))
        creds = store.credentials_for("gpu-001")
        assert creds is not None and creds.password.reveal() == "calvin-S3cret!"
        if db_url.startswith("sqlite"):
            with store.engine.connect() as conn:
                assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
                assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    finally:
        store.close()


def test_writer_waits_for_a_held_lock(store, fleet_file):
    """Another writer holds the lock (SQLite: the database write lock; PostgreSQL: the node's row) for a while:
    our write waits for it and then succeeds, it does not fail with 'database is locked'."""
    import threading
    import time

    store.import_fleet(fleet_file)
    held = threading.Event()
    release_after = 1.0

    def hold() -> None:
        with store.engine.execution_options(redfleet_write=True).connect() as conn:
            if store.engine.dialect.name == "sqlite":
                conn.execute(text("SELECT 1"))  # the store's begin hook makes this BEGIN IMMEDIATE: the write lock
            else:
                conn.execute(text("SELECT id FROM nodes WHERE name = 'gpu-001' FOR UPDATE"))
            held.set()
            time.sleep(release_after)
            conn.rollback()

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(10)
    start = time.monotonic()
    store.record_inventory("gpu-001", {"gpus": [{"id": "GPU1", "serial": "X"}]})
    waited = time.monotonic() - start
    t.join()
    assert waited >= release_after * 0.5
    assert len(store.snapshots("gpu-001")) == 1


def test_sqlite_open_waits_for_a_lock_held_while_switching_to_wal(tmp_path):
    """SQLite does not call its busy handler for ``PRAGMA journal_mode = WAL``: a process opening a fresh file while
    another holds the lock got "database is locked" at once (a flaky CI run). The open now waits its turn."""
    import sqlite3
    import threading

    from redfleet.store.db import create_store_engine

    path = tmp_path / "fresh.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # a writer midway (RESERVED lock): the case SQLite does not wait for
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    engine = create_store_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        release.join()
        holder.close()
        engine.dispose()

"""Migrations: from empty on both back ends, idempotent, never dropping data, no drift from the models."""

from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from redfleet.store import FleetStore
from redfleet.store.migrate import current_revision, head_revision, load_table_modules, upgrade

CORE_TABLES = {"nodes", "bmc_endpoints", "credentials", "inventory_snapshots", "inventory_changes", "audit_log",
               "events"}


def test_from_empty_creates_everything(db_url, keyring):
    store = FleetStore(db_url, keyring=keyring)
    try:
        tables = set(inspect(store.engine).get_table_names())
        assert CORE_TABLES <= tables
        assert set(load_table_modules().tables) <= tables  # every table module under store/ (ssd included)
        assert current_revision(store.engine) == head_revision()
    finally:
        store.close()


def test_models_and_migrations_agree(store):
    """A table or column added to a model without a new Alembic revision fails here, naming the difference.
    Fix: ``python -m redfleet.store revision -m "what" --autogenerate`` and review the file it writes."""
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), load_table_modules())
    assert diff == [], f"models differ from the migrations: {diff}"


def test_reopen_is_a_noop_and_keeps_data(db_url, keyring, fleet_file):
    first = FleetStore(db_url, keyring=keyring)
    first.import_fleet(fleet_file)
    before = first.counts()
    first.close()
    again = FleetStore(db_url, keyring=keyring)
    try:
        assert upgrade(again.engine) == head_revision()
        assert again.counts() == before
        assert [n.name for n in again.nodes()] == ["gpu-001", "gpu-002", "dell-001", "old-001"]
    finally:
        again.close()


def test_concurrent_first_open(db_url, keyring):
    """Several processes starting at once on a fresh database: one migrates, the others wait and find it done."""
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            FleetStore(db_url, keyring=keyring).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = FleetStore(db_url, keyring=keyring)
    try:
        assert current_revision(s.engine) == head_revision()
    finally:
        s.close()


def test_head_constant_matches_the_scripts():
    from redfleet.store.migrate import HEAD

    assert head_revision() == HEAD, "bump redfleet.store.migrate.HEAD to the newest revision"

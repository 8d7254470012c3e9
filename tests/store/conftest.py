"""Store fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL is the local server at 127.0.0.1:5432 (trust auth, user postgres; override with
``REDFLEET_TEST_PG=postgresql+psycopg://user@host:port``). It is started if it is not running; the tests skip with
the reason only when it cannot be reached or started. One uniquely named database is created per test session and
dropped after it; each test gets its own schema in it, so every test starts from an empty database.
"""

from __future__ import annotations

import glob
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from redfleet.store import FleetStore, KeyRing

PG_ADMIN_URL = os.environ.get("REDFLEET_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def _pg_conninfo(dbname: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_URL)
    parts = [f"host={url.host or '127.0.0.1'}", f"port={url.port or 5432}", f"user={url.username or 'postgres'}",
             f"dbname={dbname}", "connect_timeout=3"]
    if url.password:
        parts.append(f"password={url.password}")
    return " ".join(parts)


def _pg_reachable() -> str | None:
    import psycopg

    try:
        with psycopg.connect(_pg_conninfo("postgres")):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _start_pg() -> str:
    versions = sorted(Path(p).name for p in glob.glob("/etc/postgresql/*"))
    if not versions:
        return "no PostgreSQL cluster under /etc/postgresql (apt-get install postgresql)"
    try:
        proc = subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
            capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"pg_ctlcluster failed: {exc}"
    return (proc.stderr or proc.stdout).strip() or f"pg_ctlcluster exited {proc.returncode}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database for this test session (dropped afterwards)."""
    import psycopg

    problem = _pg_reachable()
    if problem is not None:
        started = _start_pg()
        deadline = time.monotonic() + 20
        while problem is not None and time.monotonic() < deadline:
            time.sleep(0.5)
            problem = _pg_reachable()
        if problem is not None:
            pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({problem}) and could not be started "
                        f"({started})")
    name = f"redfleet_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_pg_conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(_pg_conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_schema_url(database: str, schema: str) -> str:
    return f"{PG_ADMIN_URL.rstrip('/')}/{database}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database URL: a SQLite file, or a fresh schema in the session's PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fleet.db'}"
        return
    import psycopg

    database = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_pg_conninfo(database), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_schema_url(database, schema)
    finally:
        with psycopg.connect(_pg_conninfo(database), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads or writes the user's real data dir, key or database."""
    monkeypatch.setenv("REDFLEET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REDFLEET_KEY_FILE", str(tmp_path / "data" / "redfleet.key"))
    monkeypatch.delenv("REDFLEET_KEY", raising=False)
    monkeypatch.delenv("REDFLEET_DB", raising=False)
    monkeypatch.setenv("REDFLEET_ACTOR", "pytest")


@pytest.fixture
def key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def keyring(key: str) -> KeyRing:
    return KeyRing.from_key(key)


@pytest.fixture
def store(db_url: str, keyring: KeyRing) -> Iterator[FleetStore]:
    s = FleetStore(db_url, keyring=keyring, actor="tester")
    try:
        yield s
    finally:
        s.close()


FLEET_YAML = """
credentials:
  sim: {username: root, password: "calvin-S3cret!"}
  dell: {username: admin, password_env: RF_TEST_DELL_PW}
nodes:
  - {name: gpu-001, bmc_url: "https://127.14.0.1:8443/", credential: sim, rack: r01, position: 1, tags: [gpu, h100],
     flavor: hgx}
  - {name: gpu-002, bmc_url: "https://127.14.0.2:8443", credential: sim, rack: r01, position: 2, flavor: hgx}
  - {name: dell-001, bmc_url: "https://127.14.0.3:8443", credential: dell, rack: r02, position: 1, flavor: dell}
  - {name: old-001, bmc_url: "ipmi://127.14.0.4", rack: r02, position: 2}
"""


@pytest.fixture
def fleet_yaml() -> str:
    return FLEET_YAML


@pytest.fixture
def fleet_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RF_TEST_DELL_PW", "dell-Pa55word")
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET_YAML)
    return path

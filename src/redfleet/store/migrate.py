"""Alembic, driven from code: the migration environment ships inside the package (``redfleet/store/migrations``)
and no ``alembic.ini`` is needed. Opening a :class:`~redfleet.store.FleetStore` runs ``upgrade head``; migrations
only ever add (they never drop a table or a column that holds data).

For developers adding a table or a column::

    python -m redfleet.store revision -m "add foo" --autogenerate   # writes a new file under versions/
    python -m redfleet.store upgrade [--db URL]
    python -m redfleet.store current [--db URL]
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, MetaData, inspect, text

from redfleet.store.base import Base

if TYPE_CHECKING:
    from alembic.config import Config

# The newest revision under migrations/versions. Opening an up-to-date database compares with this constant, so
# that the common case needs no Alembic import (a test checks it against the scripts).
HEAD = "0004"

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Modules under redfleet.store that are not table modules (everything else is imported so its tables register).
_NOT_TABLE_MODULES = {
    "__main__", "migrate", "migrations", "repository", "diff", "crypto", "errors", "paths", "db", "pins", "targets",
}
# A number PostgreSQL's advisory lock is taken on while migrating (any constant; "redfleet" in ASCII, folded).
_PG_LOCK_KEY = 0x7265_6466_6C65


def load_table_modules() -> MetaData:
    """Import every table module under ``redfleet.store`` (models, ssd, ... whichever exist) and return the metadata."""
    import redfleet.store as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name in _NOT_TABLE_MODULES or info.name.startswith("_"):
            continue
        importlib.import_module(f"redfleet.store.{info.name}")
    return Base.metadata


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """The newest revision according to the migration scripts themselves."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: empty database)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Serialize migrations between processes: an advisory lock on PostgreSQL, a lock file beside a SQLite file."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                conn.commit()
        return
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file::memory:"):
        yield
        return
    lock_path = Path(database).expanduser().with_name(Path(database).name + ".migrate-lock")
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the database up to ``revision`` (default: the newest); a no-op when it is there. Returns the revision."""
    if revision == "head" and current_revision(engine) == HEAD:
        return HEAD
    from alembic import command

    with _migration_lock(engine):
        with engine.begin() as conn:
            command.upgrade(alembic_config(connection=conn), revision)
    return current_revision(engine)

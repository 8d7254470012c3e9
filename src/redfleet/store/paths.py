"""Where the embedded store keeps its files."""

from __future__ import annotations

import os
from pathlib import Path

DB_ENV = "REDFLEET_DB"
DATA_DIR_ENV = "REDFLEET_DATA_DIR"


def data_dir() -> Path:
    """``$REDFLEET_DATA_DIR``, else ``$XDG_DATA_HOME/redfleet``, else ``~/.local/share/redfleet``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "redfleet"


def default_db_url() -> str:
    """``$REDFLEET_DB`` (a SQLAlchemy URL or a plain file path), else SQLite ``<data dir>/redfleet.db``."""
    env = os.environ.get(DB_ENV)
    if env:
        return resolve_db_url(env)
    return f"sqlite:///{data_dir() / 'redfleet.db'}"


def resolve_db_url(value: str) -> str:
    """Accept a SQLAlchemy URL or a path to a SQLite file; ``postgresql://`` means the psycopg 3 driver."""
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    if value.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + value.split("://", 1)[1]
    return value

"""``python -m redfleet.store``: migrate a fleet database, or (developers) write a new Alembic revision."""

from __future__ import annotations

import argparse
import tempfile

from alembic import command
from sqlalchemy.engine import make_url

from redfleet.store import migrate
from redfleet.store.db import create_store_engine
from redfleet.store.migrate import alembic_config, current_revision, load_table_modules, upgrade
from redfleet.store.paths import default_db_url, resolve_db_url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m redfleet.store", description=migrate.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("upgrade", "current"):
        p = sub.add_parser(name)
        p.add_argument("--db", default=None)
    rev = sub.add_parser("revision")
    rev.add_argument("-m", "--message", required=True)
    rev.add_argument("--autogenerate", action="store_true")
    rev.add_argument("--db", default=None, help="database to compare with (default: a scratch SQLite at head)")
    args = parser.parse_args(argv)

    if args.cmd == "revision":
        with tempfile.TemporaryDirectory() as tmp:
            url = resolve_db_url(args.db) if args.db else f"sqlite:///{tmp}/scratch.db"
            engine = create_store_engine(url)
            if args.autogenerate:
                upgrade(engine)
            load_table_modules()
            with engine.begin() as conn:
                command.revision(alembic_config(connection=conn), message=args.message,
                                 autogenerate=args.autogenerate)
        return
    url = resolve_db_url(args.db) if args.db else default_db_url()
    engine = create_store_engine(url)
    if args.cmd == "upgrade":
        print(f"{make_url(url).render_as_string(hide_password=True)}: at {upgrade(engine)}")
    else:
        print(current_revision(engine))


if __name__ == "__main__":
    main()

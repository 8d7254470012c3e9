"""CLI: ``redfleet fleet ...``: the fleet store (import a fleet file, list nodes, inventory history, TLS pins).

Exit codes: 0 ok; 2 bad input (a fleet file that cannot be used, an unknown node, a wrong fingerprint); 1 any
other failure (database unreachable, wrong credential key, ...). With ``--json`` an error is also printed to
stdout as ``{"error": "...", "exit_code": N}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from redfleet.model.fleetfile import FleetFileError

T = TypeVar("T")

fleet_app = typer.Typer(
    name="fleet",
    help="The fleet store: import a fleet file, list nodes, inventory history, certificates awaiting acceptance.",
    no_args_is_help=True,
)

DB_HELP = "Database URL (sqlite:///path, postgresql+psycopg://user@host/db) or SQLite file; default $REDFLEET_DB."
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


def _fail(message: str, code: int, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"error": message, "exit_code": code}))
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _run(as_json: bool, fn: Callable[[], T]) -> T:
    """Map the store's errors to exit codes and clear messages (never a traceback for an expected failure)."""
    from redfleet.store.errors import NotFoundError, PinMismatchError, StoreError

    try:
        return fn()
    except FleetFileError as exc:
        _fail(str(exc), EXIT_BAD_INPUT, as_json)
    except (NotFoundError, PinMismatchError) as exc:
        _fail(str(exc), EXIT_BAD_INPUT, as_json)
    except ValueError as exc:  # e.g. a malformed fingerprint or URL
        _fail(str(exc), EXIT_BAD_INPUT, as_json)
    except StoreError as exc:
        _fail(str(exc), EXIT_FAILURE, as_json)


def _open(db: str | None) -> Any:
    from redfleet.store import FleetStore

    return FleetStore(db)


@fleet_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help="Fleet file (YAML or CSV)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the audit log)."),
) -> None:
    """Import a fleet file: add new nodes, update changed ones; nodes not in the file are kept. All or nothing."""
    if not file.is_file():
        _fail(f"{file}: no such file", EXIT_BAD_INPUT, as_json)

    def run() -> Any:
        with _open(db) as store:
            return store.import_fleet(file, reason=reason)

    result = _run(as_json, run)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
        return
    console = Console()
    table = Table(title=f"fleet import {file}", show_lines=False)
    table.add_column("result")
    table.add_column("count", justify="right")
    table.add_column("nodes")
    for label, names in (("added", result.added), ("updated", result.updated), ("unchanged", result.unchanged)):
        shown = ", ".join(
            f"{n} ({', '.join(result.changes.get(n, []))})" if label == "updated" else n for n in names[:8]
        )
        if len(names) > 8:
            shown += f", … (+{len(names) - 8})"
        table.add_row(label, str(len(names)), shown)
    console.print(table)
    if result.credentials_added or result.credentials_updated:
        console.print(f"credentials: {len(result.credentials_added)} added, {len(result.credentials_updated)} updated"
                      " (encrypted at rest)")
    if result.absent:
        console.print(f"[yellow]{len(result.absent)} node(s) in the store are not in this file and were kept:[/] "
                      + ", ".join(result.absent[:10]) + (" …" if len(result.absent) > 10 else ""))


@fleet_app.command("list")
def list_cmd(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the nodes as JSON."),
    rack: str | None = typer.Option(None, "--rack", help="Only this rack."),
    tag: str | None = typer.Option(None, "--tag", help="Only nodes with this tag."),
) -> None:
    """List the nodes in the fleet store."""

    def run() -> Any:
        with _open(db) as store:
            return store.nodes(rack=rack, tag=tag)

    nodes = _run(as_json, run)
    if as_json:
        typer.echo(json.dumps([n.to_dict() for n in nodes], indent=1))
        return
    table = Table(title=f"{len(nodes)} node(s)")
    table.add_column("name", no_wrap=True)
    table.add_column("rack/pos", no_wrap=True)
    table.add_column("BMC", no_wrap=True)
    for col in ("flavor", "vendor / model", "state", "health", "tags", "TLS"):
        table.add_column(col)
    for n in nodes:
        tls = "CHANGED" if n.tls_pending_fingerprint else ("pinned" if n.tls_fingerprint else "")
        where = "/".join(x for x in (n.rack, None if n.position is None else str(n.position)) if x)
        bmc = (n.bmc_url or "").removeprefix("https://")
        table.add_row(n.name, where, bmc, n.flavor or "", " ".join(x for x in (n.vendor, n.model) if x), n.state,
                      n.health or "", ",".join(n.tags), tls)
    Console().print(table)


@fleet_app.command("history")
def history_cmd(
    node: str | None = typer.Argument(None, help="Node name (default: the whole fleet)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the changes as JSON."),
    limit: int = typer.Option(50, "--limit", help="At most this many changes, newest first."),
) -> None:
    """What changed in the hardware and firmware of a node (or the fleet), newest first."""

    def run() -> Any:
        with _open(db) as store:
            return store.history(node, limit=limit)

    changes = _run(as_json, run)
    if as_json:
        typer.echo(json.dumps([c.to_dict() for c in changes], indent=1))
        return
    table = Table(title=f"inventory changes{' of ' + node if node else ''}")
    for col in ("when (UTC)", "node", "kind", "change"):
        table.add_column(col)
    for c in changes:
        table.add_row(c.at.strftime("%Y-%m-%d %H:%M:%S"), c.node, c.kind, c.summary)
    Console().print(table)


@fleet_app.command("certs")
def certs_cmd(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """BMCs whose certificate changed and is refused until an operator accepts it."""

    def run() -> Any:
        with _open(db) as store:
            return store.pin_store().pending()

    pending = _run(as_json, run)
    if as_json:
        typer.echo(json.dumps([
            {"bmc": p.origin, "nodes": list(p.nodes), "pinned": p.pinned, "pending": p.pending,
             "since": p.since.isoformat() if p.since else None} for p in pending
        ], indent=1))
        return
    if not pending:
        Console().print("no certificate is awaiting acceptance")
        return
    table = Table(title="certificates awaiting acceptance (redfleet fleet accept-cert NODE)")
    for col in ("BMC", "nodes", "pinned", "presented", "since (UTC)"):
        table.add_column(col)
    for p in pending:
        table.add_row(p.origin, ", ".join(p.nodes), p.pinned or "", p.pending,
                      p.since.strftime("%Y-%m-%d %H:%M:%S") if p.since else "")
    Console().print(table)


@fleet_app.command("accept-cert")
def accept_cert_cmd(
    target: str = typer.Argument(..., help="Node name or BMC URL."),
    fingerprint: str | None = typer.Option(
        None, "--fingerprint", help="The sha256 fingerprint you verified; must match the one awaiting acceptance."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the audit log)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Accept the new certificate of a BMC (after checking it out of band): it becomes the pin."""

    def run() -> str:
        with _open(db) as store:
            return str(store.pin_store().accept(target, fingerprint, reason=reason))

    new = _run(as_json, run)
    if as_json:
        typer.echo(json.dumps({"target": target, "pinned": new}))
    else:
        Console().print(f"{target}: pinned {new}")


@fleet_app.command("migrate")
def migrate_cmd(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Create the fleet database or bring it to the newest schema (never drops data; also done on every open)."""

    def run() -> tuple[str, str | None]:
        from redfleet.store import FleetStore

        store = FleetStore(db, migrate=False)
        try:
            return store.display_url, store.migrate()
        finally:
            store.close()

    url, revision = _run(False, run)
    Console().print(f"{url}: schema at revision {revision}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(fleet_app, name="fleet")

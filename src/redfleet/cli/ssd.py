"""CLI: ``redfleet ssd ...``: decode and score NVMe SSD health logs, rank the fleet's drives.

``redfleet ssd score FILE…`` takes raw 512-byte logs (SMART/Health 02h or OCP C0h), nvme-cli JSON
(``nvme smart-log -o json``, ``nvme ocp smart-add-log -o json`` in either key style), ``smartctl -j`` output, or
redfleet sample JSON/JSON Lines (a history). Exit codes: 0 ok; 2 bad input (a file that is not a valid log,
unreadable thresholds); 1 any other failure. With ``--json`` errors are also printed to stdout as
``{"error": …, "exit_code": N}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1

ssd_app = typer.Typer(
    name="ssd",
    help="NVMe SSD health: decode SMART (02h) and OCP C0h logs, score failure risk, rank the fleet's drives.",
    no_args_is_help=True,
)

DB_HELP = "Database URL (sqlite:///path, postgresql+psycopg://user@host/db) or SQLite file; default $REDFLEET_DB."
COLORS = {"REPLACE": "bold red", "WATCH": "yellow", "MONITOR": "green"}


def _fail(message: str, code: int, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"error": message, "exit_code": code}))
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _thresholds(path: Path | None, as_json: bool) -> Any:
    from redfleet.predict.scoring import Thresholds

    if path is None:
        return Thresholds()
    try:
        return Thresholds.from_yaml(path)
    except (OSError, ValueError) as exc:
        _fail(f"thresholds {path}: {exc}", EXIT_BAD_INPUT, as_json)


def _result_doc(drive_id: str, samples: list[Any], assessment: Any) -> dict[str, Any]:
    """The --json object for one drive: decoded fields (latest sample, nvme-cli keys) + risk."""
    latest = samples[-1]
    doc: dict[str, Any] = {"drive_id": drive_id, "file": latest.source}
    kinds = [k for k, part in (("smart", latest.smart), ("ocp_c0", latest.ocp)) if part]
    doc["kind"] = kinds[0] if len(kinds) == 1 else "+".join(kinds)
    doc["format"] = latest.formats[0] if len(latest.formats) == 1 else latest.formats
    doc["collected_at"] = latest.collected_at.isoformat()
    if latest.device:
        doc["device"] = latest.device
    doc.update(latest.smart)
    doc.update(latest.ocp)
    if len(samples) > 1:
        doc["samples"] = len(samples)
        doc["history_days"] = round(assessment.features.span_days, 3) if assessment.features else 0
    notes = [n for s in samples for n in s.notes]
    if notes:
        doc["notes"] = sorted(set(notes))
    doc["risk"] = round(assessment.risk, 4)
    doc["recommendation"] = assessment.recommendation
    doc["reasons"] = assessment.reason_texts()
    return doc


@ssd_app.command("score")
def score(
    files: list[Path] = typer.Argument(..., help="Health log files: raw 02h/C0h, nvme-cli or smartctl JSON, samples."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: decoded fields (nvme-cli keys) + risk."),
    drive: str | None = typer.Option(None, "--drive", help="Treat all files as readings of this one drive."),
    thresholds: Path | None = typer.Option(None, "--thresholds", help="YAML file overriding scoring thresholds."),
    record: bool = typer.Option(False, "--record", help="Also append the readings to the fleet store."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Decode health logs and score each drive: risk 0–1, REPLACE / WATCH / MONITOR, and the reasons."""
    from redfleet.predict.loader import group_by_drive, load_path
    from redfleet.predict.logs import LogFormatError
    from redfleet.predict.scoring import score_history

    th = _thresholds(thresholds, as_json)
    samples = []
    errors: list[str] = []
    for path in files:
        try:
            samples += load_path(path, drive_id=drive)
        except LogFormatError as exc:
            errors.append(str(exc))
    groups = group_by_drive(samples)
    results = []
    for drive_id, points in groups.items():
        assessment = score_history(points, th, drive_id=drive_id)
        results.append((drive_id, points, assessment))
    if record and groups:
        try:
            _record(db, groups)
        except Exception as exc:  # the store's errors: unreachable database, …
            _fail(f"recording to the fleet store failed: {exc}", EXIT_FAILURE, as_json)
    if as_json:
        docs = [_result_doc(d, p, a) for d, p, a in results]
        out: Any = docs[0] if len(docs) == 1 and (len(files) == 1 or drive) else docs
        if errors:
            out = {"results": docs, "errors": errors, "exit_code": EXIT_BAD_INPUT}
        typer.echo(json.dumps(out, indent=2))
    else:
        console = Console()
        for drive_id, points, a in results:
            latest = points[-1]
            version = f", OCP C0h v{latest.log_page_version}" if latest.ocp else ""
            span = f", {len(points)} samples over {a.features.span_days:.1f} days" if len(points) > 1 and a.features \
                else ""
            console.print(f"[bold]{drive_id}[/] ({', '.join(latest.formats)}{version}{span}): "
                          f"[{COLORS[a.recommendation]}]{a.recommendation}[/] risk {a.risk:.2f}", highlight=False)
            for text in a.reason_texts():
                console.print(f"  - {text}", highlight=False)
    if errors:
        err = Console(stderr=True)
        for message in errors:
            err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT)


def _record(db: str | None, groups: dict[str, list[Any]]) -> None:
    from sqlalchemy.orm import sessionmaker

    from redfleet.store import FleetStore
    from redfleet.store.db import WRITE
    from redfleet.store.ssd import append_sample

    store = FleetStore(db)
    try:
        factory = sessionmaker(store.engine.execution_options(**WRITE), expire_on_commit=False)
        with factory() as session, session.begin():
            for drive_id, points in groups.items():
                for s in points:
                    append_sample(session, drive_id, s.collected_at, smart=s.smart or None, ocp=s.ocp or None,
                                  source="file", node_id=s.node_id, model=s.device.get("model"),
                                  serial=s.device.get("serial"), firmware=s.device.get("firmware"))
    finally:
        store.close()


@ssd_app.command("rank")
def rank_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    budget: int | None = typer.Option(None, "--budget", "-k", min=0,
                                      help="Show the replacement budget: the K drives to replace this week."),
    one_per_node: bool = typer.Option(False, "--one-per-node", help="Budget: at most one drive per node."),
    days: float = typer.Option(60, "--days", help="History to use (days back from now)."),
    limit: int = typer.Option(50, "--limit", help="Rows to show (ranking)."),
    thresholds: Path | None = typer.Option(None, "--thresholds", help="YAML file overriding scoring thresholds."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Rank the fleet's drives by failure risk from their history in the fleet store."""
    from redfleet.predict.fleet import replacement_budget
    from redfleet.store.errors import StoreError

    th = _thresholds(thresholds, as_json)
    try:
        ranked = _fleet_assessments(db, days, th)
    except StoreError as exc:
        _fail(str(exc), EXIT_FAILURE, as_json)
    if budget is not None:
        plan = replacement_budget(ranked, budget, one_per_node=one_per_node)
        if as_json:
            typer.echo(json.dumps(plan.as_dict(), indent=2))
            return
        console = Console()
        console.print(f"Replace this week ({len(plan.selected)} of budget {budget}); fleet: "
                      + ", ".join(f"{n} {k}" for k, n in plan.counts.items()), highlight=False)
        _table(console, plan.selected)
        if plan.deferred:
            console.print(f"{len(plan.deferred)} more drive(s) at WATCH or worse wait for a later week.",
                          highlight=False)
        return
    if as_json:
        typer.echo(json.dumps([a.as_dict() for a in ranked[:limit]], indent=2))
        return
    if not ranked:
        Console().print("no drive health samples in the fleet store")
        return
    _table(Console(), ranked[:limit])


def _fleet_assessments(db: str | None, days: float, th: Any) -> list[Any]:
    from datetime import UTC, datetime, timedelta

    from redfleet.predict.fleet import score_fleet
    from redfleet.store import FleetStore
    from redfleet.store.ssd import fleet_histories, list_drives

    store = FleetStore(db)
    try:
        with store.engine.connect() as conn:
            from sqlalchemy.orm import Session

            with Session(bind=conn) as session:
                since = datetime.now(UTC) - timedelta(days=days)
                histories = fleet_histories(session, since=since)
                info = {d.drive_id: {"node_id": d.node_id, "slot": d.slot, "model": d.model}
                        for d in list_drives(session)}
    finally:
        store.close()
    return score_fleet(histories, th, info)


def _table(console: Console, assessments: list[Any]) -> None:
    table = Table("#", "drive", "node", "risk", "recommendation", "reasons")
    for i, a in enumerate(assessments, 1):
        table.add_row(str(i), a.drive_id, str(a.info.get("node_id") or ""), f"{a.risk:.2f}",
                      f"[{COLORS[a.recommendation]}]{a.recommendation}[/]", "; ".join(a.reason_texts()[:3]))
    console.print(table)


@ssd_app.command("thresholds")
def thresholds_cmd() -> None:
    """Print the default scoring thresholds as YAML (a starting point for --thresholds)."""
    import yaml

    from redfleet.predict.scoring import Thresholds

    typer.echo(yaml.safe_dump(Thresholds().model_dump(), sort_keys=False))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(ssd_app, name="ssd")

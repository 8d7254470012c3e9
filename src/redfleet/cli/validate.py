"""CLI: ``redfleet validate`` — judge BMCs (or captured mockup trees) against a Redfish interoperability profile."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

DEFAULT_PROFILE = "RedfleetNeocloudGpuNode"
EXIT_OK = 0
EXIT_FAIL = 1  # at least one requirement failed (or, with --warn-fails, warned)
EXIT_USAGE = 2  # bad arguments, profile or fleet file
EXIT_UNREACHABLE = 3  # at least one target could not be read at all

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "not_tested": "dim"}


def _found(row: dict[str, Any]) -> str:
    if row["uri"] is not None and not row.get("present"):
        return "(absent)"
    text = json.dumps(row.get("found")) if not isinstance(row.get("found"), str) else row["found"]
    return text if len(text) <= 60 else text[:57] + "..."


def _print_target(console: Console, t: dict[str, Any], show_all: bool) -> None:
    s = t["summary"]
    head = (f"[bold]{t['target']}[/] — {t['profile']}: [green]{s['pass']} pass[/], [yellow]{s['warn']} warn[/], "
            f"[red]{s['fail']} fail[/], [dim]{s['not_tested']} not tested[/]")
    if t.get("error"):
        console.print(f"[bold]{t['target']}[/]: [bold red]unreachable[/] — {t['error']}")
        return
    info = t.get("service") or {}
    if info:
        head += (f"  [dim]({info.get('manufacturer', '?')} {info.get('model', '?')}, "
                 f"BMC {info.get('bmc_firmware', '?')})[/]")
    console.print(head)
    errors = t.get("read_errors")
    if errors:
        uri, why = next(iter(errors["first"].items()))
        console.print(f"  [yellow]{errors['count']} resource(s) could not be read[/] (e.g. {uri}: {why}); "
                      "the verdicts that depend on them are not reliable")
    rows = t["results"] + (t.get("protocol") or {}).get("results", [])
    shown = [r for r in rows if show_all or r["verdict"] in ("fail", "warn") or r["resource"] == "Protocol"]
    if not shown:
        return
    table = Table(show_lines=False, pad_edge=False, expand=False)
    for col in ("verdict", "resource", "URI", "property", "found", "requirement / message"):
        table.add_column(col, overflow="fold")
    order = {"fail": 0, "warn": 1, "not_tested": 2, "pass": 3}
    for r in sorted(shown, key=lambda r: (r["resource"] != "Protocol", order[r["verdict"]], str(r["uri"]),
                                           r["property"])):
        note = r.get("requirement") or ""
        if r["verdict"] in ("fail", "warn") and r.get("message"):
            note = f"{r['message']}\n[dim]{note}[/]"
        table.add_row(f"[{_STYLE[r['verdict']]}]{r['verdict'].replace('_', ' ')}[/]", r["resource"],
                      r["uri"] or "(service)", r["property"], _found(r), note)
    console.print(table)


def _print_platforms(console: Console, groups: list[dict[str, Any]]) -> None:
    table = Table(title="By vendor / model / BMC firmware")
    for col in ("vendor", "model", "firmware", "nodes", "conformant", "pass", "warn", "fail", "not tested",
                "most common failures"):
        table.add_column(col, overflow="fold")
    for g in groups:
        common = "\n".join(f"{c['requirement']} ({c['nodes']})" for c in g["common_failures"][:3])
        table.add_row(g["vendor"], g["model"], g["firmware"], str(g["nodes"]), str(g["conformant"]),
                      f"[green]{g['pass']}[/]", f"[yellow]{g['warn']}[/]", f"[red]{g['fail']}[/]",
                      f"[dim]{g['not_tested']}[/]", common)
    console.print(table)


def _open_store(err: Console, db: str | None) -> Any:
    from redfleet.store import FleetStore, StoreError

    try:
        return FleetStore(None if db in (None, "default") else db)
    except StoreError as exc:
        err.print(f"[red]fleet store: {exc}[/]")
        raise typer.Exit(EXIT_USAGE) from exc


def _store_results(err: Console, db: str, targets: list[dict[str, Any]], name: str, version: str, mode: str) -> None:
    """Save each target's run in the fleet store and attach the drift against its previous run of the profile."""
    from redfleet.store.profiles import profile_drift, save_profile_results

    store = _open_store(err, db)
    try:
        store.transaction(lambda s: save_profile_results(s, targets, profile_name=name, profile_version=version,
                                                         mode=mode))
        with store.session() as session:
            for t in targets:
                d = profile_drift(session, str(t["target"]), name)
                if d is not None:
                    t["drift"] = d["changes"]
    finally:
        store.close()


def _show_stored_drift(console: Console, err: Console, node: str, profile_name: str | None, db: str | None,
                       json_out: bool) -> None:
    from redfleet.store.profiles import profile_drift

    store = _open_store(err, db)
    try:
        with store.session() as session:
            d = profile_drift(session, node, profile_name)
    finally:
        store.close()
    if d is None:
        err.print(f"[red]{node}: fewer than two stored runs{' of ' + profile_name if profile_name else ''} in "
                  f"{store.display_url}[/] (validate with --db first)")
        raise typer.Exit(EXIT_USAGE)
    if json_out:
        sys.stdout.write(json.dumps(d, indent=1, default=str) + "\n")
        raise typer.Exit(EXIT_OK)
    fw = [(x["service"].get("bmc_firmware", "?"), x["service"].get("bios_version", "?")) for x in (d["before"],
                                                                                                  d["after"])]
    console.print(f"[bold]{node}[/] — {d['profile']}: {d['before']['validated_at']} (BMC {fw[0][0]}, BIOS "
                  f"{fw[0][1]}) → {d['after']['validated_at']} (BMC {fw[1][0]}, BIOS {fw[1][1]})")
    b, a = d["before"]["summary"], d["after"]["summary"]
    console.print("  " + ", ".join(f"{k.replace('_', ' ')} {b[k]} → {a[k]}" for k in ("pass", "warn", "fail",
                                                                                       "not_tested")))
    if not d["changes"]:
        console.print("  no requirement changed")
    for c in d["changes"]:
        sb, sa = _STYLE.get(c["before"], "bold"), _STYLE.get(c["after"], "bold")
        console.print(f"  [magenta]drift[/] {c['resource']} {c['uri'] or '(service)'} {c['property']}: "
                      f"[{sb}]{c['before']}[/] → [{sa}]{c['after']}[/]"
                      + (f"  (found {json.dumps(c['found_before'])} → {json.dumps(c['found_after'])})"
                         if c["found_before"] != c["found_after"] else ""))
    raise typer.Exit(EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add ``redfleet validate`` to the root app."""

    @app.command("validate")
    def validate(
        targets: list[str] = typer.Argument(None, help="BMC URLs (https://host[:port]) or mockup directories."),
        profile: str | None = typer.Option(
            None, "--profile", "-P",
            help="Profile name (RedfleetNeocloudGpuNode, OCPServerHardwareManagement, Name@1.1.0) or JSON file. "
            "Default: RedfleetNeocloudGpuNode.",
        ),
        username: str | None = typer.Option(None, "--user", "-u", help="BMC user name."),
        password: str | None = typer.Option(None, "--password", "-p", help="BMC password."),
        fleet: Path | None = typer.Option(None, "--fleet", "-f", help="Fleet file (YAML/CSV) listing the BMCs."),
        profile_dir: list[Path] = typer.Option(None, "--profile-dir", help="Extra folder for profiles and the "
                                               "profiles they require."),
        json_out: bool = typer.Option(False, "--json", help="Print the results as JSON (the --json contract)."),
        html_out: Path | None = typer.Option(None, "--html", help="Write an HTML report here."),
        save: Path | None = typer.Option(None, "--save", help="Keep results under this folder and show drift "
                                         "against the previous run of each target."),
        db: str | None = typer.Option(None, "--db", help="Keep the results in the fleet store (SQLAlchemy URL or "
                                      "SQLite file; 'default': $REDFLEET_DB or the default database) and show drift "
                                      "against each node's previous stored run."),
        drift_node: str | None = typer.Option(None, "--drift", metavar="NODE", help="Show what changed between "
                                              "NODE's last two stored runs (of --profile when given; --db, else the "
                                              "default store) and exit."),
        mode: str = typer.Option("strict", "--mode", help="strict (DSP0272) or dmtf (reproduce "
                                 "rf_interop_validator, quirks included)."),
        fast: bool = typer.Option(True, "--fast/--full", help="--fast: in a fleet, read each platform in full once "
                                  "and only what mattered on the other nodes."),
        protocol: bool = typer.Option(True, "--protocol/--no-protocol", help="Protocol checks (TLS, IPMI, "
                                      "sessions, profile Protocol section) on live targets."),
        show_all: bool = typer.Option(False, "--all", help="List every requirement, not only warnings and "
                                      "failures."),
        warn_fails: bool = typer.Option(False, "--warn-fails", help="Exit 1 on warnings too."),
        concurrency: int = typer.Option(64, "--concurrency", help="Targets validated at once (per process)."),
        workers: int = typer.Option(1, "--workers", help="Processes to spread a fleet over (one per core)."),
        timeout: float = typer.Option(30.0, "--timeout", help="Seconds per request."),
        list_profiles: bool = typer.Option(False, "--list-profiles", help="List the profiles found and exit."),
    ) -> None:
        """Validate BMCs against a Redfish interoperability profile: per node pass / warn / fail per requirement
        with the value found, a summary by vendor, model and firmware.

        Exit status: 0 conformant, 1 a requirement failed, 2 bad arguments, 3 a target could not be read.
        Verdicts are counted as DMTF's rf_interop_validator counts them.
        """
        from redfleet.profiles import report
        from redfleet.profiles.engine import Options
        from redfleet.profiles.fleet import Target, fleet_options, run, validate_fleet, validate_fleet_processes
        from redfleet.profiles.profile import ProfileError, load_profile
        from redfleet.profiles.profile import list_profiles as _list

        err = Console(stderr=True)
        console = Console(stderr=json_out)
        if list_profiles:
            for name, version, path in _list(profile_dir or None):
                console.print(f"{name} {version}  [dim]{path}[/]")
            raise typer.Exit(EXIT_OK)
        if mode not in ("strict", "dmtf"):
            err.print(f"[red]--mode must be strict or dmtf, not {mode!r}[/]")
            raise typer.Exit(EXIT_USAGE)
        try:
            profiles = load_profile(profile or DEFAULT_PROFILE, profile_dir or None)
        except ProfileError as exc:
            err.print(f"[red]profile: {exc}[/]")
            raise typer.Exit(EXIT_USAGE) from exc
        if drift_node is not None:
            _show_stored_drift(console, err, drift_node, profiles.main.name if profile else None, db, json_out)

        todo: list[Target] = []
        if fleet is not None:
            from redfleet.model.fleetfile import FleetFileError, load_fleet_file

            try:
                ff = load_fleet_file(fleet)
                for node in ff.nodes:
                    if node.bmc_url.startswith("ipmi://"):
                        continue
                    cred = ff.credential_for(node)
                    todo.append(Target(node.name, node.bmc_url, cred.username if cred else username,
                                       cred.resolve_password() if cred else password,
                                       {"flavor": node.flavor, "rack": node.rack}))
            except FleetFileError as exc:
                err.print(f"[red]{exc}[/]")
                raise typer.Exit(EXIT_USAGE) from exc
        for t in targets or []:
            todo.append(Target(t, t, username, password))
        if not todo:
            err.print("[red]give TARGET… or --fleet FILE[/] (see redfleet validate --help)")
            raise typer.Exit(EXIT_USAGE)

        options = fleet_options(mode, fast) if len(todo) > 1 else Options(mode=mode)
        progress = {"done": 0}

        def tick(_r: Any) -> None:
            progress["done"] += 1
            if len(todo) > 1 and not json_out and sys.stderr.isatty():
                err.print(f"\r{progress['done']}/{len(todo)} validated", end="")

        if workers > 1 and len(todo) > 1:
            results = validate_fleet_processes(todo, profiles, mode, fast, workers, concurrency=concurrency,
                                               protocol=protocol, request_timeout=timeout)
        else:
            results = run(validate_fleet(todo, profiles, options, concurrency=concurrency, protocol=protocol,
                                         request_timeout=timeout, on_result=tick))
        data = report.to_json(results)
        if save is not None:
            for t in data["targets"]:
                prev = report.previous_result(save, t["target"], t["profile"])
                if prev is not None:
                    t["drift"] = report.drift(prev, t)
            report.save_results(data["targets"], save)
        if db is not None:
            _store_results(err, db, data["targets"], profiles.main.name, profiles.main.version, mode)
        if html_out is not None:
            html_out.write_text(report.html_report(data["targets"], title=f"{profiles.label} conformance"))
        if json_out:
            sys.stdout.write(json.dumps(data if len(data["targets"]) != 1 else data["targets"][0], indent=1,
                                        default=str) + "\n")
        else:
            for t in data["targets"]:
                _print_target(console, t, show_all)
                for change in t.get("drift") or []:
                    console.print(f"  [magenta]drift[/] {change['resource']} {change['uri'] or '(service)'} "
                                  f"{change['property']}: {change['before']} → {change['after']}")
            if len(data["targets"]) > 1 or show_all:
                _print_platforms(console, data["by_platform"])
            if html_out is not None:
                console.print(f"HTML report: {html_out}")
        unreachable = any(t.get("error") for t in data["targets"])
        failed = any(t["summary"]["fail"] or (t.get("protocol") or {}).get("summary", {}).get("fail")
                     for t in data["targets"])
        warned = any(t["summary"]["warn"] or (t.get("protocol") or {}).get("summary", {}).get("warn")
                     for t in data["targets"])
        if unreachable:
            raise typer.Exit(EXIT_UNREACHABLE)
        if failed or (warn_fails and warned):
            raise typer.Exit(EXIT_FAIL)
        raise typer.Exit(EXIT_OK)

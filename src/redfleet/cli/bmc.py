"""``redfleet inventory``, ``redfleet power``, ``redfleet sensors``: talk to one BMC or a whole fleet file.

Targets are BMC URLs (``https://…``, ``http://…``, ``ipmi://host[:port]``) with ``-u/-p`` (or ``$REDFLEET_USER`` /
``$REDFLEET_PASSWORD``), or node names from ``--fleet FILE`` (``all`` = every node). Tables for people, ``--json``
for machines; fleet-wide work shows a progress bar on stderr and reports every node's error; the exit code is 1 when
any node failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from redfleet.model.fleetfile import FleetFileError, load_fleet_file
from redfleet.model.inventory import Inventory
from redfleet.model.telemetry import SensorReadings
from redfleet.redfish.errors import CertificateChanged, RedfishError
from redfleet.redfish.fleet import FleetOptions, NodeResult, NodeTarget, run_fleet, targets_from_fleet
from redfleet.redfish.tls import JsonFilePinStore, MemoryPinStore, PinStore

out = Console()
err = Console(stderr=True)

POWER_ACTIONS = ("status", "on", "off", "graceful", "cycle", "reset")


# ------------------------------------------------------------------------------------------------------------------
# shared option handling


def _setup_logging(verbose: bool) -> None:
    audit = logging.getLogger("redfleet.audit")
    if audit.level == logging.NOTSET:
        audit.setLevel(logging.INFO)  # power/boot/reset actions are always recorded
    if logging.getLogger().handlers:
        return
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("redfleet.audit").setLevel(logging.INFO)


def _targets(
    targets: Sequence[str], fleet: Path | None, user: str | None, password: str | None, fingerprint: str | None = None
) -> list[NodeTarget]:
    user = user or os.environ.get("REDFLEET_USER")
    password = password if password is not None else os.environ.get("REDFLEET_PASSWORD")
    out_targets: list[NodeTarget] = []
    names: list[str] = []
    for t in targets:
        if "://" in t:
            out_targets.append(NodeTarget(name=t, url=t.rstrip("/"), username=user, password=password,
                                          fingerprint=fingerprint))
        else:
            names.append(t)
    if names or (fleet is not None and not targets):
        if fleet is None:
            raise typer.BadParameter(f"{names[0]!r} is not a URL; give --fleet FILE to use node names")
        try:
            ff = load_fleet_file(fleet)
            wanted = None if (not names or names == ["all"]) else names
            from_file = targets_from_fleet(ff, wanted)
        except (FleetFileError, KeyError) as exc:
            raise typer.BadParameter(str(exc).strip('"')) from exc
        for nt in from_file:
            if user:
                nt.username = user
            if password is not None:
                nt.password = password
        out_targets.extend(from_file)
    if not out_targets:
        raise typer.BadParameter("give a BMC URL or --fleet FILE")
    return out_targets


def _options(insecure: bool, pin: bool, ca_bundle: str | None, pin_file: Path | None, accept_new_cert: bool,
             fleet_default_pin: bool, timeout: float | None, transport: str, concurrency: int) -> FleetOptions:
    from redfleet.redfish.client import Timeouts

    if insecure and pin:
        raise typer.BadParameter("--insecure and --pin exclude each other")
    mode = "insecure" if insecure else "pin" if (pin or fleet_default_pin) else "verify"
    store: PinStore | None = None
    if mode == "pin":
        store = JsonFilePinStore(pin_file) if pin_file or pin or fleet_default_pin else MemoryPinStore()
        if accept_new_cert:
            store = _AcceptingPinStore(store)
    timeouts = Timeouts() if timeout is None else Timeouts.uniform(timeout)
    if timeout is not None:
        timeouts.firmware = max(timeout, timeouts.firmware)
    return FleetOptions(concurrency=concurrency, tls_mode=mode, ca_bundle=ca_bundle, pin_store=store,
                        timeouts=timeouts, transport=transport)


class _AcceptingPinStore:
    """``--accept-new-cert``: the operator accepts whatever certificate each BMC shows now (re-pins it)."""

    def __init__(self, inner: PinStore) -> None:
        self.inner = inner
        self.accepted: set[str] = set()

    def get(self, bmc: str) -> str | None:
        return None if bmc not in self.accepted else self.inner.get(bmc)

    def put(self, bmc: str, fingerprint: str) -> None:
        old = self.inner.get(bmc)
        if old and old != fingerprint:
            logging.getLogger("redfleet.audit").warning(
                "certificate of %s accepted by operator: %s -> %s", bmc, old, fingerprint,
                extra={"audit": {"what": "accept certificate", "bmc": bmc, "old": old, "new": fingerprint}})
        self.accepted.add(bmc)
        self.inner.put(bmc, fingerprint)


def _run(
    targets: list[NodeTarget],
    op: Callable[[Any], Awaitable[Any]],
    options: FleetOptions,
    ipmi_op: Callable[[Any], Awaitable[Any]] | None,
    label: str,
    progress: bool,
    workers: int = 1,
) -> list[NodeResult[Any]]:
    if workers > 1 and not any(t.is_ipmi for t in targets):
        from redfleet.redfish.fleet import run_fleet_processes

        return run_fleet_processes(targets, f"{op.__module__}.{op.__qualname__}", options=options, workers=workers)

    async def main() -> list[NodeResult[Any]]:
        if not progress:
            return await run_fleet(targets, op, options=options, ipmi_op=ipmi_op)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(), console=err,
                      transient=False) as bar:
            task = bar.add_task(label, total=len(targets), failed=0)
            failed = 0

            def done(r: NodeResult[Any]) -> None:
                nonlocal failed
                failed += 0 if r.ok else 1
                bar.update(task, advance=1, failed=failed)

            return await run_fleet(targets, op, options=options, ipmi_op=ipmi_op, on_result=done)

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:  # pragma: no cover
        return asyncio.run(main())


def _error_text(e: BaseException | None) -> str:
    from rich.markup import escape

    return escape(_plain_error(e))


def _plain_error(e: BaseException | None) -> str:
    if e is None:
        return ""
    if isinstance(e, CertificateChanged):
        return (f"certificate changed: pinned {e.expected}, now {e.presented} — refused; "
                "re-run with --accept-new-cert once verified")
    if isinstance(e, RedfishError):
        return f"[{e.kind}] {e.message}" + (f" ({e.uri})" if e.uri else "")
    return f"[{type(e).__name__}] {e}"


def _report_errors(results: list[NodeResult[Any]]) -> int:
    failed = [r for r in results if not r.ok]
    for r in failed:
        err.print(f"[red]✗ {r.name}[/red]: {_error_text(r.error)}", highlight=False)
    if failed:
        err.print(f"[red]{len(failed)} of {len(results)} node(s) failed[/red]")
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------------------------------
# rendering


def _inventory_tables(inv: Inventory) -> None:
    b = inv.bmc
    head = Table(title=f"BMC {b.url}", show_header=False, title_justify="left")
    for k, v in (("vendor", b.vendor), ("model", b.model), ("firmware", b.firmware_version),
                 ("redfish", b.redfish_version), ("auth", b.auth), ("quirks", ", ".join(b.quirks) or "-"),
                 ("read in", f"{b.duration_s} s, {b.requests} requests")):
        head.add_row(k, str(v) if v is not None else "-")
    out.print(head)
    t = Table(title="Systems", title_justify="left")
    for col in ("id", "manufacturer", "model", "serial", "power", "bios", "health"):
        t.add_column(col)
    for s in inv.systems:
        t.add_row(s.id, s.manufacturer or "-", s.model or "-", s.serial or "-", s.power_state or "-",
                  s.bios_version or "-", s.health or "-")
    out.print(t)
    if inv.gpus:
        t = Table(title=f"GPUs ({len(inv.gpus)})", title_justify="left")
        for col in ("id", "model", "serial", "location", "health", "found via"):
            t.add_column(col)
        for g in inv.gpus:
            t.add_row(g.id, g.model or "-", g.serial or "-", g.location or "-", g.health or "-",
                      ", ".join(g.found_via))
        out.print(t)
    summary = Table(title="Components", title_justify="left")
    summary.add_column("kind")
    summary.add_column("count", justify="right")
    summary.add_column("detail")
    mem_gib = sum(m.capacity_mib or 0 for m in inv.memory) / 1024
    cpu_models = sorted({c.model or "?" for c in inv.cpus})
    summary.add_row("cpus", str(len(inv.cpus)), ", ".join(cpu_models))
    summary.add_row("memory", str(len(inv.memory)), f"{mem_gib:g} GiB populated")
    summary.add_row("drives", str(len(inv.drives)), f"{sum(d.capacity_bytes or 0 for d in inv.drives) / 1e12:.1f} TB")
    summary.add_row("nics", str(len(inv.nics)),
                    f"{sum(n.kind == 'adapter' for n in inv.nics)} adapters, "
                    f"{sum(n.kind == 'interface' for n in inv.nics)} interfaces")
    bad_psu = [p.id for p in inv.psus if p.health not in (None, "OK")]
    summary.add_row("psus", str(len(inv.psus)), ("not OK: " + ", ".join(bad_psu)) if bad_psu else "")
    bad_fan = [f.id for f in inv.fans if f.health not in (None, "OK")]
    summary.add_row("fans", str(len(inv.fans)), ("not OK: " + ", ".join(bad_fan)) if bad_fan else "")
    summary.add_row("firmware", str(len(inv.firmware)), "")
    out.print(summary)
    if b.warnings:
        for w in b.warnings:
            err.print(f"[yellow]warning[/yellow]: {w}", highlight=False)


def _fleet_table(results: list[NodeResult[Any]]) -> None:
    t = Table(title=f"Inventory of {len(results)} node(s)", title_justify="left")
    for col in ("node", "vendor", "model", "cpus", "gpus", "memory GiB", "result"):
        t.add_column(col)
    for r in results:
        if r.ok and isinstance(r.value, Inventory):
            inv = r.value
            model = inv.systems[0].model if inv.systems else None
            t.add_row(r.name, inv.bmc.vendor or "-", model or "-", str(len(inv.cpus)), str(len(inv.gpus)),
                      f"{sum(m.capacity_mib or 0 for m in inv.memory) / 1024:g}", "[green]ok[/green]")
        else:
            t.add_row(r.name, "-", "-", "-", "-", "-", f"[red]{_error_text(r.error)}[/red]")
    out.print(t)


def _dump(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


# ------------------------------------------------------------------------------------------------------------------
# commands

_USER = typer.Option(None, "-u", "--user", help="BMC user ($REDFLEET_USER)")
_PASS = typer.Option(None, "-p", "--password", help="BMC password ($REDFLEET_PASSWORD)")
_JSON = typer.Option(False, "--json", help="machine-readable JSON on stdout")
_INSECURE = typer.Option(False, "--insecure", help="do not verify the BMC's TLS certificate")
_PIN = typer.Option(False, "--pin", help="pin the BMC's certificate (trust on first use; refuse a changed one)")
_CA = typer.Option(None, "--ca-bundle", help="CA bundle (PEM) to verify BMC certificates against")
_PINFILE = typer.Option(None, "--pin-file", help="where pins are kept ($REDFLEET_PINS, ~/.config/redfleet/pins.json)")
_ACCEPT = typer.Option(False, "--accept-new-cert", help="operator accepts the certificate each BMC presents now")
_FLEET = typer.Option(None, "--fleet", "-f", help="fleet file (YAML/CSV): targets are node names, or all")
_TIMEOUT = typer.Option(None, "--timeout", help="seconds per request (default: per resource kind)")
_TRANSPORT = typer.Option("fast", "--transport", help="HTTP transport: fast | aiohttp")
_CONC = typer.Option(256, "--concurrency", help="BMCs worked on at once")
_VERBOSE = typer.Option(False, "--verbose", "-v", help="debug logging on stderr")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("inventory")
    def inventory(
        url: str | None = typer.Argument(None, help="BMC URL (https://host), or a node name with --fleet"),
        user: str | None = _USER,
        password: str | None = _PASS,
        as_json: bool = _JSON,
        insecure: bool = _INSECURE,
        pin: bool = _PIN,
        ca_bundle: str | None = _CA,
        pin_file: Path | None = _PINFILE,
        accept_new_cert: bool = _ACCEPT,
        fleet: Path | None = _FLEET,
        timeout: float | None = _TIMEOUT,
        transport: str = _TRANSPORT,
        concurrency: int = _CONC,
        workers: int = typer.Option(1, "--workers", help="worker processes for big fleets (one event loop each)"),
        verbose: bool = _VERBOSE,
    ) -> None:
        """Hardware inventory of one BMC (URL) or of every node in a fleet file (--fleet FILE)."""
        _setup_logging(verbose)
        from redfleet.redfish.inventory import collect_inventory

        targets = _targets([url] if url else [], fleet, user, password)
        single = len(targets) == 1 and fleet is None
        opts = _options(insecure, pin, ca_bundle, pin_file, accept_new_cert, fleet is not None and not insecure
                        and ca_bundle is None, timeout, transport, concurrency)
        if any(t.is_ipmi for t in targets) and single:
            raise typer.BadParameter("inventory needs Redfish; ipmi:// BMCs offer power and sensors only")
        if workers > 1 and isinstance(opts.pin_store, _AcceptingPinStore):
            raise typer.BadParameter("--accept-new-cert works with one process; drop --workers")
        results = _run(targets, collect_inventory, opts, None, "inventory", progress=not single and workers <= 1,
                       workers=workers)
        if as_json:
            if single:
                r = results[0]
                if r.ok:
                    _dump(r.value.model_dump(mode="json"))  # type: ignore[union-attr]
            else:
                _dump([{"name": r.name, "url": r.url, "ok": r.ok,
                        **({"inventory": r.value.model_dump(mode="json")} if r.ok else  # type: ignore[union-attr]
                           {"error": r.error_dict()})} for r in results])
        elif single and results[0].ok:
            _inventory_tables(results[0].value)  # type: ignore[arg-type]
        elif not single:
            _fleet_table(results)
        raise typer.Exit(_report_errors(results))

    @app.command("power")
    def power_cmd(
        action: str = typer.Argument(..., help="status | on | off | graceful | cycle | reset"),
        targets: list[str] = typer.Argument(..., help="BMC URLs, or node names with --fleet (all = every node)"),
        user: str | None = _USER,
        password: str | None = _PASS,
        as_json: bool = _JSON,
        insecure: bool = _INSECURE,
        pin: bool = _PIN,
        ca_bundle: str | None = _CA,
        pin_file: Path | None = _PINFILE,
        accept_new_cert: bool = _ACCEPT,
        fleet: Path | None = _FLEET,
        reason: str | None = typer.Option(None, "--reason", help="why (written to the audit log)"),
        actor: str | None = typer.Option(None, "--actor", help="who asks (default: your login name)"),
        timeout: float | None = _TIMEOUT,
        transport: str = _TRANSPORT,
        concurrency: int = _CONC,
        verbose: bool = _VERBOSE,
    ) -> None:
        """Power status or control of one or more BMCs (Redfish ComputerSystem.Reset, or IPMI chassis control)."""
        _setup_logging(verbose)
        from redfleet.redfish.actions import power

        act = action.lower()
        if act not in POWER_ACTIONS:
            raise typer.BadParameter(f"action must be one of {', '.join(POWER_ACTIONS)}")
        tlist = _targets(targets, fleet, user, password)
        opts = _options(insecure, pin, ca_bundle, pin_file, accept_new_cert, fleet is not None and not insecure
                        and ca_bundle is None, timeout, transport, concurrency)

        async def rf(c: Any) -> str:
            return await power(c, act, actor=actor, reason=reason)

        async def ipmi(c: Any) -> str:
            return str(await c.power(act, actor=actor, reason=reason))

        results = _run(tlist, rf, opts, ipmi, f"power {act}", progress=len(tlist) > 1)
        if as_json:
            _dump([{"name": r.name, "url": r.url, "ok": r.ok,
                    **({"state" if act == "status" else "sent": r.value} if r.ok else {"error": r.error_dict()})}
                   for r in results])
        else:
            t = Table(title=f"power {act}", title_justify="left")
            t.add_column("node")
            t.add_column("state" if act == "status" else "sent")
            for r in results:
                t.add_row(r.name, str(r.value) if r.ok else f"[red]{_error_text(r.error)}[/red]")
            out.print(t)
        raise typer.Exit(_report_errors(results))

    @app.command("sensors")
    def sensors_cmd(
        target: str = typer.Argument(..., help="BMC URL (https://, ipmi://), or a node name with --fleet"),
        user: str | None = _USER,
        password: str | None = _PASS,
        as_json: bool = _JSON,
        insecure: bool = _INSECURE,
        pin: bool = _PIN,
        ca_bundle: str | None = _CA,
        pin_file: Path | None = _PINFILE,
        accept_new_cert: bool = _ACCEPT,
        fleet: Path | None = _FLEET,
        kind: str | None = typer.Option(None, "--kind", help="only this kind (temperature, fan, power, voltage)"),
        timeout: float | None = _TIMEOUT,
        transport: str = _TRANSPORT,
        verbose: bool = _VERBOSE,
    ) -> None:
        """Current sensor readings of a BMC (Redfish Sensors / Thermal / Power, or IPMI SDR)."""
        _setup_logging(verbose)
        from redfleet.redfish.sensors import read_sensors

        tlist = _targets([target], fleet, user, password)
        opts = _options(insecure, pin, ca_bundle, pin_file, accept_new_cert, fleet is not None and not insecure
                        and ca_bundle is None, timeout, transport, 64)

        async def ipmi(c: Any) -> SensorReadings:
            result: SensorReadings = await c.sensors()
            return result

        results = _run(tlist, read_sensors, opts, ipmi, "sensors", progress=len(tlist) > 1)
        for r in results:
            if not r.ok:
                continue
            sr = r.value
            assert isinstance(sr, SensorReadings)
            if kind:
                sr.readings = [x for x in sr.readings if x.kind == kind]
            if as_json:
                doc = sr.model_dump(mode="json")
                _dump(doc if len(results) == 1 else {"name": r.name, **doc})
                continue
            t = Table(title=f"sensors of {r.name} ({sr.via}, {len(sr.readings)})", title_justify="left")
            for col in ("name", "kind", "value", "units", "health", "context"):
                t.add_column(col)
            for x in sr.readings:
                t.add_row(x.name or x.id, x.kind, "-" if x.value is None else f"{x.value:g}", x.units or "",
                          x.health or "-", x.context or "")
            out.print(t)
        raise typer.Exit(_report_errors(results))

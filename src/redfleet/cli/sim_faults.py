"""CLI: ``redfleet sim fault`` and ``redfleet sim clear`` — talk to a running simulator's control API."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

import typer

from redfleet.sim.faults import CATALOG, PUBLIC_KINDS, TESTING_KINDS

DEFAULT_CONTROL = "http://127.0.0.1:9900"
CONTROL_HELP = ("Control API of the running simulator (`redfleet sim --control-port 9900` serves it on "
                "http://127.0.0.1:9900). Default: $REDFLEET_SIM_CONTROL, else " + DEFAULT_CONTROL + ".")

_KIND_LINES = "\n\n".join(
    f"{k}: {CATALOG[k].summary}" + ("" if CATALOG[k].cleared_by_power_cycle else " (survives a power cycle)")
    for k in PUBLIC_KINDS
)

FAULT_HELP = (
    "Inject a fault into simulated node NODE. It shows where real hardware shows it: Redfish Health/State and "
    "readings, SEL/log entries in the BMC's own words, Redfish events, and on the node's in-band side (DCGM "
    "counters, NVRM Xid lines, NVMe logs).\n\n"
    "Faults a power cycle fixes go away when the node is power cycled (unless --persistent); a lemon node "
    "(`redfleet sim --lemons`) gets the same fault again some minutes after each repair.\n\n"
    "KIND is one of:\n\n" + _KIND_LINES + "\n\n"
    "For the Redfish client's own tests there are also testing kinds: " + ", ".join(TESTING_KINDS) + ".\n\n"
    "Examples:\n\n"
    "redfleet sim fault node-00004 xid --gpu 2 --xid 79\n\n"
    "redfleet sim fault node-00001 fan --target 3 --duration 10m\n\n"
    "redfleet sim fault node-00007 bmc-throttle --param status=503"
)


def _control(url: str | None) -> str:
    return (url or os.environ.get("REDFLEET_SIM_CONTROL") or DEFAULT_CONTROL).rstrip("/")


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        try:
            msg = json.loads(exc.read()).get("error") or exc.reason
        except (ValueError, AttributeError):
            msg = exc.reason
        typer.echo(f"redfleet sim: {msg}", err=True)
        raise typer.Exit(1) from None
    except (urllib.error.URLError, OSError) as exc:
        typer.echo(f"redfleet sim: cannot reach the simulator's control API at {url.split('/nodes')[0]}: "
                   f"{getattr(exc, 'reason', exc)}. Start it with `redfleet sim --control-port PORT` and pass "
                   "--control http://127.0.0.1:PORT.", err=True)
        raise typer.Exit(1) from None
    return json.loads(raw) if raw else None


def _params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--param")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def fault(
    node: str = typer.Argument(..., metavar="NODE", help="Node name, e.g. node-00003."),
    kind: str = typer.Argument(..., metavar="KIND", help="Fault kind: " + ", ".join(PUBLIC_KINDS) + "."),
    gpu: int | None = typer.Option(None, "--gpu", help="GPU index (0-based) for GPU faults; default 0."),
    xid: int | None = typer.Option(None, "--xid", help="Xid code for KIND xid (e.g. 13, 31, 48, 79, 119)."),
    persistent: bool = typer.Option(False, "--persistent", help="A power cycle does not clear it."),
    target: int | None = typer.Option(None, "--target", help="Fan, PSU, DIMM or drive index (0-based)."),
    duration: str | None = typer.Option(None, "--duration", help="Clear by itself after this long (simulated "
                                        "time: 90s, 10m, 2h)."),
    param: list[str] = typer.Option([], "--param", help="Extra KEY=VALUE for the fault (bmc-throttle: status=503, "
                                    "fraction=0.5; bmc-slow: latency=uniform:2s-5s; ecc-dbe: count=2)."),
    control: str | None = typer.Option(None, "--control", help=CONTROL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the fault as JSON."),
) -> None:
    if kind not in CATALOG:
        raise typer.BadParameter(f"{kind!r} is not a fault kind; one of {', '.join(PUBLIC_KINDS)}",
                                 param_hint="KIND")
    body: dict[str, Any] = {"kind": kind, "persistent": persistent}
    if gpu is not None:
        body["gpu"] = gpu
    if xid is not None:
        body["xid"] = xid
    if target is not None:
        body["target"] = target
    if duration:
        body["duration"] = duration
    if param:
        body["params"] = _params(param)
    f = _call("POST", f"{_control(control)}/nodes/{node}/faults", body)
    if as_json:
        typer.echo(json.dumps(f, indent=2))
        return
    where = ""
    if f.get("gpu") is not None:
        where = f" on GPU {f['gpu']}"
    elif f.get("target") is not None:
        where = f" on {CATALOG[kind].target} {f['target']}"
    extra = f" (Xid {f['xid']})" if f.get("xid") is not None and kind in ("xid",) else ""
    clears = "a power cycle clears it" if f.get("cleared_by_power_cycle") else "a power cycle does not clear it"
    typer.echo(f"{node}: fault {f['id']} {kind}{extra}{where}; {clears}.")


def clear(
    node: str = typer.Argument(..., metavar="NODE", help="Node name, e.g. node-00003."),
    fault_id: int | None = typer.Option(None, "--fault", help="Clear only this fault id (default: all)."),
    no_repair: bool = typer.Option(False, "--no-repair", help="Do not count this as a repair (a lemon node "
                                   "then does not fail again)."),
    control: str | None = typer.Option(None, "--control", help=CONTROL_HELP),
) -> None:
    """Clear the faults of simulated node NODE (as if the part was repaired or replaced)."""
    path = f"/nodes/{node}/faults" + (f"/{fault_id}" if fault_id is not None else "")
    out = _call("DELETE", f"{_control(control)}{path}?repair={'false' if no_repair else 'true'}")
    cleared = out.get("cleared") or []
    kinds = ", ".join(f"{f['id']} {f['kind']}" for f in cleared) or "none"
    msg = f"{node}: cleared {len(cleared)} fault(s): {kinds}."
    pending = out.get("pending") or []
    if pending:
        msg += f" It is a lemon: {len(pending)} fault(s) will come back."
    typer.echo(msg)


_registered: set[int] = set()


def register(app: typer.Typer) -> None:
    """Add ``fault`` and ``clear`` to the ``redfleet sim`` group (whatever app is passed: the root app from
    ``redfleet.cli.main`` or the sim group itself); safe to call more than once."""
    from redfleet.cli.sim import sim_app

    if id(sim_app) in _registered:
        return
    _registered.add(id(sim_app))
    sim_app.command("fault", help=FAULT_HELP)(fault)
    sim_app.command("clear")(clear)

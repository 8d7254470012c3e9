"""CLI: ``redfleet sim`` — run a simulated fleet of Redfish BMCs (sub-commands ``fault``/``clear`` are added by
``redfleet.cli.sim_faults``)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
import sys
from pathlib import Path
from typing import Any

import typer

SIM_HELP = (
    "Run a simulated fleet: N Redfish BMCs in one process, each on its own loopback address.\n\n"
    "Every simulated BMC answers Redfish like the real make it was captured from (Dell iDRAC9, HPE iLO 5, "
    "Supermicro X13 HGX, NVIDIA DGX H100, AMI MegaRAC, OpenBMC): same URIs, ids, OEM sections, GPUs in the same "
    "places. Each node has its own serials, MACs, UUIDs, TLS certificate, sessions, power state, logs, BIOS "
    "settings and firmware versions: point redfleet, curl, sushy or any Redfish tool at it.\n\n"
    "node-00001 is 127.1.0.1, node-00002 is 127.1.0.2, ... (all of 127.0.0.0/8 is loopback on Linux), all on one "
    "port (443 by default: needs root, or pick --port 8443). --fleet-out writes the fleet file (YAML: BMC URL, "
    "flavor, credentials, rack/position) that `redfleet fleet import` reads. Delays are real-time (a DGX boots in "
    "3 minutes); --time-scale 60 makes that 3 seconds.\n\n"
    "Examples:\n\n"
    "redfleet sim --nodes 100 --port 8443 --fleet-out fleet.yaml\n\n"
    "redfleet sim --mix dell=40,hpe=20,dgx=8 --time-scale 10\n\n"
    "redfleet sim --mockup ./my-capture   (one BMC from your own Redfish-Mockup-Creator tree)\n\n"
    "curl -k -u root:calvin https://127.1.0.1:8443/redfish/v1/Systems\n\n"
    "Flavors: dell, hpe, supermicro, dgx, ami, openbmc (Redfish), legacy-ipmi (IPMI over LAN only). "
    "Faults: `redfleet sim fault --help`."
)

sim_app = typer.Typer(
    name="sim",
    help=SIM_HELP,
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
)


def _summary(fleet: Any, fleet_out: Path | None) -> str:
    nodes = fleet.nodes
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.flavor] = counts.get(n.flavor, 0) + 1
    first, last = nodes[0], nodes[-1]
    cfg = fleet.config
    lines = [
        f"redfleet sim: {len(nodes)} BMC(s) up: " + ", ".join(f"{k}={v}" for k, v in counts.items()),
        f"  addresses  {first.address} .. {last.address}  port {fleet.port}  "
        f"({'plain HTTP' if cfg.http else 'HTTPS, one self-signed certificate per BMC'})",
        f"  login      {cfg.user} / {cfg.password}   time scale x{cfg.time_scale:g}   seed {cfg.seed}",
    ]
    if fleet_out:
        lines.append(f"  fleet file {fleet_out}")
    if fleet.control_url:
        lines.append(f"  control    {fleet.control_url}")
    k = "" if cfg.http else "-k "
    lines.append(f"  try        curl {k}-u {cfg.user}:{cfg.password} {first.bmc_url}/redfish/v1/Systems")
    lines.append("  Ctrl-C stops the fleet.")
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def _run(cfg: Any, fleet_out: Path | None) -> None:
    from redfleet.sim import SimFleet

    fleet = SimFleet(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with fleet:
        if fleet_out:
            _write(fleet_out, fleet.fleet_file().to_yaml())
        typer.echo(_summary(fleet, fleet_out))
        sys.stdout.flush()
        await stop.wait()
        typer.echo("redfleet sim: stopping")


@sim_app.callback()
def sim(
    ctx: typer.Context,
    nodes: int = typer.Option(6, "--nodes", "-n", help="How many BMCs (ignored with --mix: the sum is used)."),
    mix: str | None = typer.Option(None, "--mix", help="Fleet make-up, FLAVOR=N,... e.g. dell=40,hpe=20,dgx=8. "
                                   "Default: every flavor in turn."),
    port: int = typer.Option(443, "--port", "-p", help="Port every BMC listens on (0 = any free port)."),
    http: bool = typer.Option(False, "--http", help="Plain HTTP instead of HTTPS."),
    base_address: str = typer.Option("127.1.0.1", "--base-address", help="Address of the first BMC; "
                                     "the next ones count up from it."),
    fleet_out: Path | None = typer.Option(None, "--fleet-out", help="Write the fleet file (YAML) here."),
    seed: int = typer.Option(1, "--seed", help="Seed for identities, certificates and telemetry."),
    time_scale: float = typer.Option(1.0, "--time-scale", help="Speed up every delay (boot, BMC reset, "
                                     "update tasks) by this factor."),
    control_port: int | None = typer.Option(None, "--control-port", help="Serve the fault-injection control API "
                                            "on 127.0.0.1:PORT."),
    mockup: Path | None = typer.Option(None, "--mockup", help="Serve ONE BMC from this Redfish mockup tree "
                                       "(tall layout: DIR/redfish/v1/.../index.json)."),
    user: str = typer.Option("root", "--user", help="Account name on every BMC."),
    password: str = typer.Option("calvin", "--password", help="Password on every BMC."),
    latency: str | None = typer.Option(None, "--latency", help="Added latency per request: const:20ms, "
                                       "uniform:5ms-50ms, lognormal:50ms,0.5, exp:30ms."),
    session_limit: int | None = typer.Option(None, "--session-limit", help="Sessions per BMC (default: as the "
                                             "real BMC, e.g. 8 on iDRAC)."),
    ipmi_port: int = typer.Option(623, "--ipmi-port", help="UDP port of legacy-ipmi nodes (IPMI over LAN)."),
    inband: bool = typer.Option(False, "--inband", help="Also serve each node's in-band side "
                                "(dcgm-exporter /metrics on the node's host address)."),
    inband_port: int = typer.Option(9400, "--inband-port", help="Port of the in-band /metrics endpoints."),
    scenario: Path | None = typer.Option(None, "--scenario", help="Fault timeline (YAML) to play."),
    lemons: str | None = typer.Option(None, "--lemons", help="Nodes that fail again after repair: a fraction "
                                      "(0.05) or names."),
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from redfleet.sim import SimConfig, parse_mix

    try:
        mix_map = parse_mix(mix) if mix else None
    except (ValueError, KeyError) as exc:
        raise typer.BadParameter(str(exc).strip("'\""), param_hint="--mix") from None
    if mockup is not None and not mockup.is_dir():
        raise typer.BadParameter(f"{mockup} is not a folder", param_hint="--mockup")
    if time_scale <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--time-scale")
    cfg = SimConfig(
        nodes=nodes,
        mix=mix_map,
        port=port,
        http=http,
        base_address=base_address,
        seed=seed,
        time_scale=time_scale,
        control_port=control_port,
        user=user,
        password=password,
        mockup=mockup,
        session_limit=session_limit,
        latency=latency,
        ipmi_port=ipmi_port,
        inband=inband,
        inband_port=inband_port,
        scenario=scenario,
        lemons=lemons,
    )
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    try:
        runner(_run(cfg, fleet_out))
    except PermissionError as exc:
        typer.echo(f"redfleet sim: {exc} (port {port} needs root; try --port 8443)", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"redfleet sim: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    """Add ``redfleet sim`` (and, when present, its fault sub-commands) to the root app."""
    with contextlib.suppress(ImportError):
        mod = importlib.import_module("redfleet.cli.sim_faults")
        reg = getattr(mod, "register", None)
        if reg is not None:
            reg(sim_app)
    app.add_typer(sim_app, name="sim")

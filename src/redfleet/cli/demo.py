"""``redfleet demo``: the README's first command."""

from __future__ import annotations

import typer

from redfleet.demo import DemoOptions, run_demo


def demo(
    nodes: int = typer.Option(200, "--nodes", min=1, help="How many simulated BMCs (all flavors, round-robin)."),
    port: int = typer.Option(8080, "--port", help="Port of the control plane (API, dashboard) on 127.0.0.1."),
    bmc_port: int = typer.Option(18443, "--bmc-port", help="HTTPS port every simulated BMC listens on."),
    duration: float | None = typer.Option(None, "--duration", min=1,
                                          help="Stop after this many seconds (default: run until Ctrl-C)."),
    db: str | None = typer.Option(None, "--db", help="Store URL or SQLite file (default: a fresh SQLite file)."),
    base_address: str = typer.Option("127.1.0.1", "--base-address", help="Loopback address of the first BMC."),
    seed: int = typer.Option(1, "--seed", help="Seed for identities, telemetry and the fault schedule."),
    fault_every: float = typer.Option(10.0, "--fault-every", min=0.5, help="Seconds between injected faults."),
    sweep_every: float = typer.Option(10.0, "--sweep-every", min=0.5,
                                      help="Seconds between the control plane's BMC sensor polls."),
    token: str | None = typer.Option(None, "--token", help="Admin API token to use (default: a random one)."),
    time_scale: float = typer.Option(20.0, "--time-scale", min=0.01,
                                     help="Simulated boot/reset delays are divided by this."),
    remediation: bool = typer.Option(True, "--remediation/--no-remediation",
                                     help="Automated remediation (cordon, power cycle, health gate, RMA)."),
    policy: str | None = typer.Option(None, "--policy", help="Remediation policy YAML (default: built-in, with "
                                                             "demo-sized timings)."),
) -> None:
    """Run a simulated fleet and the redfleet control plane on it, and watch faults being judged.

    Starts NODES simulated BMCs on 127.1.0.1, 127.1.0.2, ... (HTTPS, a certificate each), imports them into a
    SQLite fleet store, takes a fleet-wide inventory, starts `redfleet serve` on http://127.0.0.1:PORT (REST
    API with docs at /docs, the dashboard at /, /metrics) fed by every node's simulated in-band agent, then injects
    a fault every few seconds (GPU Xid, GPU fallen off the bus, over-temperature, fan, PSU, ECC) and prints the
    health verdicts the control plane reaches and the automated remediation that follows: cordon, power cycle
    through the BMC, health gate, return to service — or decommission with an RMA record.
    """
    opts = DemoOptions(nodes=nodes, port=bmc_port, duration=duration, db=db, base_address=base_address, seed=seed,
                       fault_every=fault_every, sweep_every=sweep_every, time_scale=time_scale,
                       api_port=port, token=token, remediation=remediation, policy=policy)
    raise typer.Exit(run_demo(opts))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

"""``redfleet demo``: the README's first command."""

from __future__ import annotations

import typer

from redfleet.demo import DemoOptions, run_demo


def demo(
    nodes: int = typer.Option(200, "--nodes", min=1, help="How many simulated BMCs (all flavors, round-robin)."),
    port: int = typer.Option(18443, "--port", help="HTTPS port every simulated BMC listens on."),
    duration: float | None = typer.Option(None, "--duration", min=1,
                                          help="Stop after this many seconds (default: run until Ctrl-C)."),
    db: str | None = typer.Option(None, "--db", help="Store URL or SQLite file (default: a fresh SQLite file)."),
    base_address: str = typer.Option("127.1.0.1", "--base-address", help="Loopback address of the first BMC."),
    seed: int = typer.Option(1, "--seed", help="Seed for identities, telemetry and the fault schedule."),
    fault_every: float = typer.Option(10.0, "--fault-every", min=0.5, help="Seconds between injected faults."),
    sweep_every: float = typer.Option(10.0, "--sweep-every", min=0.5,
                                      help="Seconds between the control plane's BMC sensor polls."),
    api_port: int = typer.Option(8080, "--api-port", help="Port of the control plane's API on 127.0.0.1."),
    token: str | None = typer.Option(None, "--token", help="Admin API token to use (default: a random one)."),
    time_scale: float = typer.Option(20.0, "--time-scale", min=0.01,
                                     help="Simulated boot/reset delays are divided by this."),
) -> None:
    """Run a simulated fleet and the redfleet control plane on it, and watch faults being judged.

    Starts NODES simulated BMCs on 127.1.0.1, 127.1.0.2, ... (HTTPS, a certificate each), imports them into a
    SQLite fleet store, takes a fleet-wide inventory, starts `redfleet serve` on http://127.0.0.1:API_PORT (REST
    API with docs at /docs, /metrics) fed by every node's simulated in-band agent, then injects a fault every few
    seconds (GPU Xid, GPU fallen off the bus, over-temperature, fan, PSU, ECC) and prints the health verdicts the
    control plane reaches, with their reasons and recommended actions.
    """
    opts = DemoOptions(nodes=nodes, port=port, duration=duration, db=db, base_address=base_address, seed=seed,
                       fault_every=fault_every, sweep_every=sweep_every, time_scale=time_scale,
                       api_port=api_port, token=token)
    raise typer.Exit(run_demo(opts))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

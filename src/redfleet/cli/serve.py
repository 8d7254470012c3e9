"""CLI: ``redfleet serve``: the long-running control plane (REST API, collection, health, /metrics)."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import typer

from redfleet.redfish.fleet import NodeTarget


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise typer.BadParameter(f"--listen wants HOST:PORT, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def targets_from_store(store: object) -> list[NodeTarget]:
    """Collection targets for every node of the store that has a BMC (see :mod:`redfleet.store.targets`)."""
    from redfleet.store import FleetStore
    from redfleet.store.targets import targets_from_store as from_store

    assert isinstance(store, FleetStore)
    return from_store(store)


def ensure_admin_token(store: object, dev_token: str | None) -> str | None:
    """A first admin token when the store has none and no dev token was given (returned to be printed once)."""
    from redfleet.store import FleetStore
    from redfleet.store.tokens import any_admin, create_token

    assert isinstance(store, FleetStore)
    if dev_token or store.transaction(any_admin, write=False):
        return None
    token, _ = store.transaction(lambda s: create_token(s, f"admin-initial-{secrets.token_hex(3)}", "admin"))
    store.audit("api.token.create", "admin-initial", details={"role": "admin", "first": True})
    return token


def serve(
    db: str = typer.Option(None, "--db", envvar="REDFLEET_DB", help="Fleet store URL (sqlite:///... or postgresql+"
                                                                    "psycopg://...); default the local store."),
    fleet: Path = typer.Option(None, "--fleet", exists=True, dir_okay=False, help="Fleet file to import first."),
    listen: str = typer.Option("127.0.0.1:8080", "--listen", help="HOST:PORT to serve the API on."),
    dev_token: str = typer.Option(None, "--dev-token", envvar="REDFLEET_DEV_TOKEN",
                                  help="An admin token held in memory (development; never stored)."),
    collect: bool = typer.Option(True, "--collect/--no-collect", help="Poll the BMCs (sensors, inventory, events)."),
    sensors_interval: float = typer.Option(10.0, "--sensors-interval", help="Seconds between sensor polls."),
    inventory_interval: float = typer.Option(3600.0, "--inventory-interval", help="Seconds between inventories."),
    collector_workers: int = typer.Option(0, "--collector-workers", min=0,
                                          help="Poll the BMCs from this many worker processes (0: in serve's own "
                                               "process). One process holds roughly 600 sensor polls a second."),
    receiver_url: str = typer.Option(None, "--receiver-url",
                                     help="URL BMCs reach serve at for push events (default http://LISTEN)."),
    metrics_auth: bool = typer.Option(False, "--metrics-auth", help="/metrics needs a viewer token."),
    tls: str = typer.Option("pin", "--tls", help="BMC TLS: pin (TOFU, default) | verify | insecure."),
    rules: list[Path] = typer.Option(None, "--rules", exists=True, dir_okay=False,
                                     help="Extra health rules (YAML), over the built-in catalog (repeatable)."),
    remediation: str = typer.Option(None, "--remediation", envvar="REDFLEET_REMEDIATION",
                                    help="Automated remediation: 'builtin' for the built-in policy or a policy "
                                         "YAML file. Off when not given."),
    wlm: str = typer.Option("none", "--wlm", help="Workload manager: none | slurm | kubernetes."),
    slurm_conf: Path = typer.Option(None, "--slurm-conf", help="slurm.conf for scontrol (else SLURM_CONF)."),
    kubeconfig: Path = typer.Option(None, "--kubeconfig", help="kubeconfig for the Kubernetes adapter."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Remediation records what it would do, touches nothing."),
    log_level: str = typer.Option("warning", "--log-level"),
) -> None:
    """Run the control plane: REST API + OpenAPI (/docs), in-band ingest, BMC collection, health, /metrics."""
    import uvicorn

    from redfleet.api.app import create_app
    from redfleet.store import FleetStore
    from redfleet.telemetry.collector.poller import Intervals

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING))
    host, port = parse_listen(listen)
    store = FleetStore(db, actor=os.environ.get("REDFLEET_ACTOR") or "redfleet-serve")
    if fleet is not None:
        res = store.import_fleet(fleet, reason="redfleet serve --fleet")
        typer.echo(f"fleet {fleet}: {len(res.added)} added, {len(res.updated)} updated, "
                   f"{len(res.unchanged)} unchanged")
    first = ensure_admin_token(store, dev_token)
    if first:
        typer.echo(f"first admin token (shown once, keep it): {first}")
    targets = targets_from_store(store) if collect else []
    from redfleet.health import HealthEngine, load_rules
    from redfleet.telemetry.series import SeriesStore

    series = SeriesStore()
    engine = HealthEngine(rules=load_rules(rules or None), series=series)
    policy = manager = None
    if remediation:
        from redfleet.remediation.policy import PolicyError, load_policy
        from redfleet.remediation.wlm import WlmError, make_wlm

        try:
            policy = load_policy(None if remediation == "builtin" else remediation,
                                 overrides={"dry_run": True} if dry_run else None)
            manager = make_wlm(wlm, **({"conf": str(slurm_conf) if slurm_conf else None} if wlm == "slurm" else
                                       {"kubeconfig": str(kubeconfig) if kubeconfig else None}
                                       if wlm == "kubernetes" else {}))
        except (PolicyError, ValueError, WlmError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    app = create_app(store, series=series, engine=engine, targets=targets, dev_token=dev_token,
                     metrics_auth=metrics_auth, tls_mode=tls, remediation=policy, wlm=manager,
                     intervals=Intervals(sensors=sensors_interval, inventory=inventory_interval),
                     collector_workers=collector_workers,
                     receiver_url=receiver_url or f"http://{host}:{port}")
    workers = f" by {collector_workers} worker processes" if collector_workers and targets else ""
    typer.echo(f"redfleet serve on http://{host}:{port}  ({len(targets)} BMCs collected{workers}; API docs /docs, "
               f"metrics /metrics)")
    typer.echo(f"dashboard: http://{host}:{port}/  (log in with an API token, or open /?token=TOKEN)")
    if policy is not None:
        typer.echo(f"automated remediation on ({wlm}{', dry run' if policy.dry_run else ''}): "
                   f"ladder {' -> '.join(policy.ladder)}")
    # agents keep their connections between pushes (1 s apart by default): a generous keep-alive
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_keep_alive=75,
                backlog=4096)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

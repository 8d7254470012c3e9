"""CLI: ``redfleet agent`` (the in-band agent on a GPU node) and ``redfleet sim feed`` (the simulator's in-band
side pushed into serve)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
from typing import Any

import typer

AGENT_HELP = (
    "Run the in-band agent: read the GPUs (NVML, or an existing dcgm-exporter), kernel `NVRM: Xid` lines "
    "(/dev/kmsg or the journal) and NVMe health logs (nvme-cli), and push one batch per interval to "
    "`redfleet serve` (POST /api/v1/ingest with this node's token). When serve is down, batches wait in a "
    "bounded buffer (oldest dropped first).\n\n"
    "Examples:\n\n"
    "redfleet agent --server https://redfleet:8443 --token $TOKEN\n\n"
    "redfleet agent --server http://127.0.0.1:8080 --token T --source dcgm-exporter --journal --nvme\n\n"
    "redfleet agent --once --json --source dcgm-exporter --dcgm-exporter http://127.0.0.1:9400/metrics\n\n"
    "Remediation: serve may ask the agent to reset a GPU (`nvidia-smi --gpu-reset -i N`) or reboot the host "
    "(`systemctl reboot`). The agent refuses (and says so to serve) unless started with --allow-remediation."
)


def default_command_journal() -> str:
    base = os.environ.get("STATE_DIRECTORY") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "redfleet")
    return os.path.join(base, "agent-commands.jsonl")


def agent(
    server: str | None = typer.Option(None, "--server", help="Base URL of redfleet serve.",
                                      envvar="REDFLEET_SERVER"),
    token: str | None = typer.Option(None, "--token", help="This node's agent token (or $REDFLEET_AGENT_TOKEN).",
                                     envvar="REDFLEET_AGENT_TOKEN"),
    node: str | None = typer.Option(None, "--node", help="Node name as serve knows it (default: the hostname)."),
    source: str = typer.Option("nvml", "--source", help="GPU readings from: nvml | dcgm-exporter | none."),
    dcgm_exporter: str | None = typer.Option(None, "--dcgm-exporter", metavar="URL",
                                             help="dcgm-exporter metrics URL (implies --source dcgm-exporter)."),
    interval: float = typer.Option(1.0, "--interval", min=0.05, help="Seconds between batches."),
    columnar: bool = typer.Option(False, "--columnar",
                                  help="Send per-GPU fields in the columnar encoding (needs a serve with columnar "
                                       "ingest)."),
    push_every: int = typer.Option(1, "--push-every", min=1,
                                   help="Push every N collections as one batch (at once on an event or a RAS "
                                        "counter change)."),
    kmsg: str | None = typer.Option(None, "--kmsg", metavar="PATH",
                                    help="Read kernel Xid lines from PATH (/dev/kmsg, or a dmesg/kmsg/journal "
                                         "JSON text file, followed)."),
    journal: bool = typer.Option(False, "--journal", help="Read kernel Xid lines from `journalctl -k -o json -f`."),
    nvme: bool = typer.Option(False, "--nvme", help="Read NVMe SMART/OCP logs with nvme-cli."),
    nvme_raw: bool = typer.Option(False, "--nvme-raw", help="Read the raw log pages (nvme get-log) instead of JSON."),
    nvme_interval: float = typer.Option(60.0, "--nvme-interval", help="Seconds between NVMe log reads."),
    gpus_expected: int | None = typer.Option(None, "--gpus-expected", help="GPUs this node should have."),
    once: bool = typer.Option(False, "--once", help="Collect one batch, push it (or print it with --json), exit."),
    as_json: bool = typer.Option(False, "--json", help="With --once: print the batch as JSON, do not push."),
    from_start: bool = typer.Option(False, "--from-start", help="Read the kernel log from its start, not its end."),
    buffer: int = typer.Option(900, "--buffer", help="Batches kept while serve is unreachable."),
    allow_remediation: bool = typer.Option(False, "--allow-remediation",
                                           help="Run the GPU resets and reboots serve asks for (off: refuse them)."),
    reboot_command: str = typer.Option("systemctl reboot", "--reboot-command",
                                       help="What a reboot command runs (split like a shell would)."),
    command_journal: str | None = typer.Option(None, "--command-journal", metavar="PATH",
                                               help="Where the commands run are recorded, so a command is never "
                                                    "run twice across agent restarts and reboots (default: "
                                                    "$STATE_DIRECTORY or ~/.local/state/redfleet/"
                                                    "agent-commands.jsonl)."),
    nvml_module: str | None = typer.Option(None, "--nvml-module", hidden=True,
                                           help="Import NVML from this module (a stand-in, for tests)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    import shlex
    from pathlib import Path

    from redfleet.agent.actions import CommandRunner
    from redfleet.agent.core import Agent
    from redfleet.agent.kmsg import JournalSource, KmsgSource
    from redfleet.agent.nvme import NvmeCollector
    from redfleet.agent.pusher import Pusher

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if dcgm_exporter:
        source = "dcgm-exporter"
    if source not in ("nvml", "dcgm-exporter", "none"):
        raise typer.BadParameter(f"{source!r}: use nvml, dcgm-exporter or none", param_hint="--source")
    if as_json and not once:
        raise typer.BadParameter("--json prints one batch: use it with --once", param_hint="--json")
    if not as_json and (not server or not token):
        raise typer.BadParameter("--server and --token are needed to push (or use --once --json to print a batch)")
    nvml_mod: Any = None
    if source == "nvml":
        try:
            nvml_mod = importlib.import_module(nvml_module or "pynvml")
        except ImportError as exc:
            typer.echo(f"redfleet agent: cannot import NVML ({exc}); install nvidia-ml-py or use "
                       "--source dcgm-exporter", err=True)
            raise typer.Exit(2) from None
    if kmsg and not os.path.exists(kmsg):
        raise typer.BadParameter(f"{kmsg}: no such file", param_hint="--kmsg")
    try:
        reboot_argv = shlex.split(reboot_command)
    except ValueError as exc:
        raise typer.BadParameter(f"{reboot_command!r}: {exc}", param_hint="--reboot-command") from None
    if not reboot_argv:
        raise typer.BadParameter("must name a program", param_hint="--reboot-command")
    runner = None
    if not once:  # --once pushes one batch and exits: there is no next batch to carry a result
        runner = CommandRunner(allow=allow_remediation, server=server, reboot_command=reboot_argv,
                               journal=Path(command_journal or default_command_journal()) if allow_remediation
                               else None)
        if allow_remediation:
            logging.getLogger("redfleet.agent").warning(
                "remediation allowed: serve at %s may reset GPUs and reboot this host (%s)", server,
                " ".join(reboot_argv))
    ag = Agent(node, source=source, nvml=nvml_mod, dcgm_url=dcgm_exporter,
               kmsg=KmsgSource(kmsg, from_start=from_start or once) if kmsg else None,
               journal=(JournalSource(["journalctl", "-k", "-o", "json", "--no-pager", "--since", "-10min"])
                        if once else JournalSource()) if journal else None,
               nvme=NvmeCollector(raw=nvme_raw) if nvme else None, nvme_interval=nvme_interval,
               gpus_expected=gpus_expected, commands=runner)

    async def main() -> int:
        try:
            await ag.start()
            if once:
                if ag.journal is not None:
                    await ag.journal.wait_done(3.0)
                batch = await ag.collect()
                if as_json:
                    typer.echo(json.dumps(batch.model_dump(mode="json"), indent=2))
                    return 0
                assert server and token
                async with Pusher(server, token, retries=3) as p:
                    ok = await p.push(batch)
                    if not ok or p.stats.rejected:
                        typer.echo(f"redfleet agent: push failed: {p.stats.last_error}", err=True)
                        return 1
                    return 0
            assert server and token
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, stop.set)
            async with Pusher(server, token, buffer_batches=buffer, columnar=columnar) as p:
                await ag.run(p, interval=interval, stop=stop, push_every=push_every)
            return 0
        finally:
            await ag.close()

    sys.exit(asyncio.run(main()))


def sim_feed(
    server: str = typer.Option(..., "--server", help="Base URL of redfleet serve."),
    token: str = typer.Option(..., "--token", help="Bearer token for every simulated node's batches.",
                              envvar="REDFLEET_AGENT_TOKEN"),
    control: str = typer.Option("http://127.0.0.1:9900", "--control", envvar="REDFLEET_SIM_CONTROL",
                                help="The simulator's control API."),
    interval: float = typer.Option(1.0, "--interval", min=0.05),
    hung: str = typer.Option("report", "--hung", help="A hung/down host: report (os_state, no samples) | stop."),
    rounds: int | None = typer.Option(None, "--rounds", help="Stop after this many rounds."),
) -> None:
    """Push the simulator's in-band state (one batch per simulated node per interval) into redfleet serve."""
    from redfleet.agent.simfeed import SimFeeder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        async with SimFeeder(server, token, control=control, interval=interval, hung=hung) as feeder:
            t = await feeder.run(stop, rounds=rounds)
            typer.echo(f"sent {t.sent} batches ({t.samples} samples, {t.events} events), {t.failed} not accepted")

    asyncio.run(main())


_registered: set[int] = set()


def register(app: typer.Typer) -> None:
    """Add ``redfleet agent`` to the root app and ``feed`` to the ``redfleet sim`` group."""
    if id(app) in _registered:
        return
    _registered.add(id(app))
    app.command("agent", help=AGENT_HELP)(agent)
    try:
        from redfleet.cli.sim import sim_app
    except ImportError:  # pragma: no cover
        return
    if id(sim_app) not in _registered:
        _registered.add(id(sim_app))
        sim_app.command("feed")(sim_feed)

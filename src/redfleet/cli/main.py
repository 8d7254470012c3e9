"""The ``redfleet`` command. Each area adds its commands through a ``register(app)`` function in its own
module, so that the command tree is assembled here and every module keeps one job."""

from __future__ import annotations

import importlib

import typer

from redfleet import __version__

# Modules under redfleet.cli that contribute commands, in the order `--help` lists them.
COMMAND_MODULES = (
    "demo",  # redfleet demo
    "sim",  # redfleet sim [...]
    "sim_faults",  # redfleet sim fault / sim clear
    "bmc",  # redfleet inventory / power / sensors
    "fleet",  # redfleet fleet import / list
    "validate",  # redfleet validate
    "ssd",  # redfleet ssd score
    "serve",  # redfleet serve
    "agent",  # redfleet agent
    "remediation",  # redfleet remediation list|show|approve|pause|resume|reset-breaker
)

app = typer.Typer(
    name="redfleet",
    help="Fleet hardware manager for GPU clouds: talk to BMCs, see and judge every node, simulate a fleet.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"redfleet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """redfleet: one control plane from the BMC to the scheduler."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"redfleet.cli.{_name}").register(app)


def main() -> None:
    app()

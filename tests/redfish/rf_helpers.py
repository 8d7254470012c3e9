"""Helpers for the Redfish client tests: every captured tree served by the static mock BMC and, when the
simulator is importable, by the simulator's mockup mode. Addresses: 127.13.0.0/16 (this area's block)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from redfleet.paths import mockups_dir

MOCKUPS = sorted(p.name for p in mockups_dir().iterdir() if (p / "redfish" / "v1").is_dir()) \
    if mockups_dir().is_dir() else []

_addr = itertools.count(10)


def next_address(block: int = 0) -> str:
    """A fresh loopback address in 127.13.<block>.x for each server a test starts."""
    n = next(_addr)
    return f"127.13.{block + n // 250}.{1 + n % 250}"


@contextlib.asynccontextmanager
async def serve_tree(tree: Path, server: str) -> AsyncIterator[str]:
    """Yield the base URL of a BMC serving ``tree`` (``static`` mock or ``sim``)."""
    if server == "static":
        from redfleet.redfish.testing import MockupBMC

        async with MockupBMC(tree, address=next_address()) as bmc:
            yield bmc.url
        return
    try:
        from redfleet.sim import SimConfig, SimFleet
    except ImportError as exc:  # pragma: no cover - depends on the sim area
        pytest.skip(f"simulator not importable: {exc}")
    cfg = SimConfig(nodes=1, mockup=tree, port=0, http=True, base_address=next_address(block=100), seed=1,
                    dynamics=False)
    try:
        fleet_cm = SimFleet(cfg)
        fleet = await fleet_cm.__aenter__()
    except NotImplementedError as exc:  # pragma: no cover
        pytest.skip(f"simulator mockup mode not available: {exc}")
    try:
        yield fleet.nodes[0].bmc_url
    finally:
        await fleet_cm.__aexit__(None, None, None)



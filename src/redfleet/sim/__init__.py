"""The fleet simulator: N Redfish BMCs shaped after real captures, served by one asyncio process.

See ``.notes/sim-contract.md`` (and ``redfleet sim --help``) for the programmatic contract."""

from __future__ import annotations

from redfleet.sim.flavors import FLAVORS, Flavor, available_flavors, get_flavor, redfish_flavors, register_flavor
from redfleet.sim.fleet import NodeInfo, SimConfig, SimFleet, parse_mix
from redfleet.sim.hooks import FleetDynamics, NodeDynamics
from redfleet.sim.node import SimNode

__all__ = [
    "FLAVORS",
    "Flavor",
    "FleetDynamics",
    "NodeDynamics",
    "NodeInfo",
    "SimConfig",
    "SimFleet",
    "SimNode",
    "available_flavors",
    "get_flavor",
    "parse_mix",
    "redfish_flavors",
    "register_flavor",
]

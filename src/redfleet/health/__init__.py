"""GPU-fleet health: declarative rules (YAML) over metrics, events, reachability and inventory; NVIDIA's Xid
catalog built in. See ``engine.HealthEngine`` and ``rules`` for the rule schema."""

from __future__ import annotations

from redfleet.health.engine import HealthEngine
from redfleet.health.model import ACTION_RANK, BmcEvent, HealthChange, NodeHealth, Reason
from redfleet.health.rules import RulesError, load_rules, loads_rules, parse_duration
from redfleet.health.xid import XidCatalog, default_catalog

__all__ = [
    "ACTION_RANK",
    "BmcEvent",
    "HealthChange",
    "HealthEngine",
    "NodeHealth",
    "Reason",
    "RulesError",
    "XidCatalog",
    "default_catalog",
    "load_rules",
    "loads_rules",
    "parse_duration",
]

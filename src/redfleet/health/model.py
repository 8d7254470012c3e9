"""What the health engine says: Reason, NodeHealth, HealthChange; and BmcEvent, a normalized BMC event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["healthy", "degraded", "unhealthy", "unknown"]
STATES: tuple[str, ...] = ("healthy", "degraded", "unhealthy", "unknown")

# Recommended actions, least to most drastic; the node's action is the most drastic of its reasons'.
ACTION_RANK: dict[str, int] = {
    a: i for i, a in enumerate((
        "IGNORE", "RESTART_APP", "CHECK_APP", "INVESTIGATE", "RESTART_AGENT", "RESTART_VM", "RESTART_FM",
        "CHECK_UVM", "UPDATE_SWFW", "CHECK_BMC", "CHECK_COOLING", "CHECK_MECHANICALS", "RUN_DIAG", "DRAIN_P2P",
        "RESET_GPU", "DRAIN_AND_RESET", "POWER_CYCLE", "RESTART_BM", "CHECK_POWER_NETWORK", "REPLACE_FAN",
        "REPLACE_PSU", "REPLACE_DIMM", "REPLACE_DRIVE", "CONTACT_SUPPORT",
    ))
}
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
CLASS_RANK = {"transient": 0, "suspect": 1, "terminal": 2}


def action_rank(action: str) -> int:
    return ACTION_RANK.get(action, ACTION_RANK["INVESTIGATE"])


@dataclass(frozen=True, slots=True)
class BmcEvent:
    """A Redfish event (push or SSE) or a SEL/log entry, normalized by whoever read it."""

    ts: float
    message_id: str | None = None  # "iDRAC.2.9.TMP0121", "OpenBMC.0.1.DCPowerOff" ...
    message: str = ""
    severity: str | None = None  # OK | Warning | Critical
    origin: str | None = None  # OriginOfCondition URI
    source: str = "redfish-event"  # redfish-event | sse | sel | log
    component: str | None = None  # "fan:Fan1", "psu:1", "dimm:DIMM_A1" when the reader knows it


@dataclass(frozen=True, slots=True)
class Reason:
    rule: str
    severity: str
    classification: str
    action: str
    component: str
    message: str
    since: float
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.component)

    def to_dict(self) -> dict[str, Any]:
        d = {"rule": self.rule, "severity": self.severity, "classification": self.classification,
             "action": self.action, "component": self.component, "message": self.message, "since": self.since}
        if self.details:
            d["details"] = dict(self.details)
        return d


def state_of(reasons: list[Reason] | tuple[Reason, ...]) -> str:
    worst = max((SEVERITY_RANK[r.severity] for r in reasons), default=0)
    return ("healthy", "degraded", "unhealthy")[worst]


@dataclass(slots=True)
class NodeHealth:
    node: str
    state: str
    reasons: list[Reason]
    components: dict[str, str]  # component -> state
    since: float | None  # when the node entered this state
    action: str | None  # the most drastic recommended action, None when healthy
    updated: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "state": self.state, "reasons": [r.to_dict() for r in self.reasons],
                "components": dict(self.components), "since": self.since, "action": self.action,
                "updated": self.updated}


@dataclass(frozen=True, slots=True)
class HealthChange:
    node: str
    old: str
    new: str
    reasons: tuple[Reason, ...]
    at: float
    action: str | None = None
    added: tuple[str, ...] = ()  # "rule@component" of reasons that appeared
    removed: tuple[str, ...] = ()  # ... that went away

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "old": self.old, "new": self.new,
                "reasons": [r.to_dict() for r in self.reasons], "at": self.at, "action": self.action,
                "added": list(self.added), "removed": list(self.removed)}

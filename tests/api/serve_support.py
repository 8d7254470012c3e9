"""Helpers shared by the serve API tests: a stand-in health engine with the HealthEngine interface (the API layer
is tested here; the real engine is exercised in tests/e2e), a small fleet file, a polling wait."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from redfleet.model.fleetfile import FleetFile

DEV = "dev-token-for-tests"


@dataclass
class Change:
    node: str
    old: str
    new: str
    reasons: list[dict[str, Any]]
    at: float


@dataclass
class RecordingEngine:
    """Implements the HealthEngine interface simply: a node is unhealthy while an Xid 79 event was seen, and
    unknown until any observation. Records every call so tests can check what serve fed it."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    reported: dict[str, str] = field(default_factory=dict)
    rules: list[dict[str, Any]] = field(default_factory=lambda: [{"name": "xid-79", "severity": "critical"}])

    def observe_samples(self, node: str, samples: Any, now: float) -> None:
        self.calls.append(("samples", (node, len(list(samples)))))
        self.state.setdefault(node, "healthy")

    def observe_event(self, node: str, ev: Any) -> None:
        self.calls.append(("event", (node, ev)))
        if getattr(ev, "code", None) == 79:
            self.state[node] = "unhealthy"

    def observe_reachability(self, node: str, ok: bool, ts: float, error: str | None = None) -> None:
        self.calls.append(("reach", (node, ok, error)))

    def observe_agent(self, node: str, os_state: str, ts: float) -> None:
        self.calls.append(("agent", (node, os_state)))
        self.state.setdefault(node, "healthy")

    def observe_inventory(self, node: str, inv: Any, ts: float) -> None:
        self.calls.append(("inventory", node))

    def evaluate(self, now: float) -> list[Change]:
        out = []
        for n, s in self.state.items():
            old = self.reported.get(n, "unknown")
            if s != old:
                self.reported[n] = s
                out.append(Change(n, old, s, [{"rule": "xid-79", "message": "GPU fell off the bus"}]
                                  if s == "unhealthy" else [], now))
        return out

    def node_health(self, node: str) -> dict[str, Any]:
        s = self.reported.get(node, "unknown")
        return {"state": s, "reasons": [{"rule": "xid-79"}] if s == "unhealthy" else [], "components": {}}


def fleet_file(n: int = 3) -> FleetFile:
    return FleetFile.model_validate({
        "credentials": {"sim": {"username": "root", "password": "calvin"}},
        "nodes": [{"name": f"node-{i:05d}", "bmc_url": f"https://127.19.0.{i}:1", "credential": "sim",
                   "rack": "rack-01", "position": i} for i in range(1, n + 1)],
    })


def wait_for(pred: Any, timeout: float = 5.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")

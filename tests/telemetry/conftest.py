"""Fixtures for collector tests: a recording stand-in for the health engine (what the collector observed), and a
certificate cache shared by the module's simulated fleets."""

from __future__ import annotations

from typing import Any

import pytest


class Recorder:
    """The HealthEngine interface, recording observations (the collector is under test, not the rules)."""

    rules: list[Any] = []

    def __init__(self) -> None:
        self.reach: list[tuple[str, bool, str | None]] = []
        self.samples: dict[str, int] = {}
        self.events: list[tuple[str, Any]] = []
        self.inventories: list[str] = []

    def observe_samples(self, node: str, samples: Any, now: float) -> None:
        self.samples[node] = self.samples.get(node, 0) + len(samples)

    def observe_event(self, node: str, ev: Any) -> None:
        self.events.append((node, ev))

    def observe_reachability(self, node: str, ok: bool, ts: float, error: str | None = None) -> None:
        self.reach.append((node, ok, error))

    def observe_agent(self, node: str, os_state: str, ts: float) -> None:
        pass

    def observe_inventory(self, node: str, inv: Any, ts: float) -> None:
        self.inventories.append(node)

    def evaluate(self, now: float) -> list[Any]:
        return []

    def node_health(self, node: str) -> Any:
        return {"state": "unknown", "reasons": []}


@pytest.fixture(scope="module")
def cert_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tmp_path_factory.mktemp("sim-certs")

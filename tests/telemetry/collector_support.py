"""A recording stand-in for the health engine: what the collector observed (the collector is under test here, not
the rules)."""

from __future__ import annotations

import asyncio
import time
from typing import Any


async def until(pred: Any, limit: float = 15.0, what: str = "condition") -> Any:
    """pred()'s first truthy value, polled every 50 ms for up to ``limit`` seconds."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not met within {limit} s")


class Recorder:
    """The HealthEngine interface, recording observations (the collector is under test, not the rules)."""

    rules: list[Any] = []

    def __init__(self) -> None:
        self.reach: list[tuple[str, bool, str | None]] = []
        self.samples: dict[str, int] = {}
        self.events: list[tuple[str, Any]] = []
        self.inventories: list[str] = []
        self.power: dict[str, str] = {}

    def observe_samples(self, node: str, samples: Any, now: float) -> None:
        self.samples[node] = self.samples.get(node, 0) + len(samples)

    def observe_event(self, node: str, ev: Any) -> None:
        self.events.append((node, ev))

    def observe_reachability(self, node: str, ok: bool, ts: float, error: str | None = None,
                             power_state: str | None = None) -> None:
        self.reach.append((node, ok, error))
        if power_state is not None:
            self.power[node] = power_state

    def observe_agent(self, node: str, os_state: str, ts: float) -> None:
        pass

    def observe_inventory(self, node: str, inv: Any, ts: float) -> None:
        self.inventories.append(node)

    def evaluate(self, now: float) -> list[Any]:
        return []

    def node_health(self, node: str) -> Any:
        return {"state": "unknown", "reasons": []}

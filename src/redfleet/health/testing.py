"""A small driver for tests and demos: feed a HealthEngine on a simulated clock without building IngestBatches.

    d = EngineDriver()
    d.gpu("n1", 100.0, gpu=0, DCGM_FI_DEV_GPU_TEMP=95)       # samples + heartbeat, then evaluate
    d.xid("n1", 101.0, 48, gpu=0)
    d.bmc("n1", 102.0, ok=False)
    d.at(200.0)                                               # just time passing (timers)
    d.state("n1"), d.rules_firing("n1"), d.reason("n1", "xid.48")
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redfleet.health.engine import HealthEngine
from redfleet.health.model import BmcEvent, HealthChange, Reason
from redfleet.model.ingest import GpuIdentity, InbandEvent, Sample
from redfleet.telemetry.series import SeriesStore


class EngineDriver:
    def __init__(self, engine: HealthEngine | None = None, rules: Iterable[Any] | None = None,
                 gpus: int = 8, model: str = "NVIDIA H100 80GB HBM3") -> None:
        self.now = 0.0
        self.engine = engine or HealthEngine(rules=rules, series=SeriesStore(), clock=lambda: self.now)
        self.gpus = gpus
        self.model = model
        self.changes: list[HealthChange] = []
        self._known: set[str] = set()

    def _introduce(self, node: str) -> None:
        if node not in self._known:
            self._known.add(node)
            ids = [GpuIdentity(gpu=i, model=self.model, pci_bus_id=f"00000000:{0x18 + 0x10 * i:02X}:00.0")
                   for i in range(self.gpus)]
            self.engine.observe_gpus(node, ids, self.gpus)

    def at(self, ts: float) -> list[HealthChange]:
        """Move the clock and evaluate."""
        self.now = max(self.now, ts)
        ch = self.engine.evaluate(self.now)
        self.changes.extend(ch)
        return ch

    def heartbeat(self, node: str, ts: float, os_state: str = "up", uptime: float | None = None,
                  evaluate: bool = True) -> list[HealthChange]:
        self._introduce(node)
        self.engine.observe_agent(node, os_state, ts, uptime)
        return self.at(ts) if evaluate else []

    def gpu(self, node: str, ts: float, gpu: int = 0, heartbeat: bool = True, labels: dict[str, str] | None = None,
            **fields: float) -> list[HealthChange]:
        """Samples for one GPU (``DCGM_FI_DEV_GPU_TEMP=80``, ...), a heartbeat, then evaluate."""
        self._introduce(node)
        samples = [Sample(metric=k, value=v, ts=ts, gpu=gpu, labels=labels or {}) for k, v in fields.items()]
        if self.engine.series is not None:
            self.engine.series.add_many(node, samples)
        self.engine.observe_samples(node, samples, ts)
        if heartbeat:
            self.engine.observe_agent(node, "up", ts)
        return self.at(ts)

    def metric(self, node: str, ts: float, metric: str, value: float, labels: dict[str, str] | None = None,
               gpu: int | None = None) -> list[HealthChange]:
        self._introduce(node)
        s = Sample(metric=metric, value=value, ts=ts, gpu=gpu, labels=labels or {})
        self.engine.observe_samples(node, [s], ts)
        return self.at(ts)

    def xid(self, node: str, ts: float, code: int, gpu: int | None = 0, message: str = "",
            raw: str | None = None, heartbeat: bool = True) -> list[HealthChange]:
        """An Xid event as the agent reports it (with the batch's heartbeat), then evaluate."""
        self._introduce(node)
        self.engine.observe_event(node, InbandEvent(ts=ts, kind="xid", gpu=gpu, code=code, message=message,
                                                    raw=raw))
        if heartbeat:
            self.engine.observe_agent(node, "up", ts)
        return self.at(ts)

    def bmc(self, node: str, ts: float, ok: bool = True, power: str | None = "On",
            error: str | None = None) -> list[HealthChange]:
        self._introduce(node)
        self.engine.observe_reachability(node, ok, ts, error=error if not ok else None,
                                         power_state=power if ok else None)
        return self.at(ts)

    def bmc_event(self, node: str, ts: float, message: str, message_id: str | None = None,
                  severity: str | None = "Critical", component: str | None = None) -> list[HealthChange]:
        self._introduce(node)
        self.engine.observe_event(node, BmcEvent(ts=ts, message_id=message_id, message=message, severity=severity,
                                                 component=component))
        return self.at(ts)

    def alive(self, node: str, start: float, end: float, step: float = 1.0, bmc: bool = True) -> None:
        """Heartbeats (and successful BMC polls) every ``step`` seconds from start to end, evaluating each."""
        t = start
        while t <= end:
            self.heartbeat(node, t, evaluate=False)
            if bmc:
                self.engine.observe_reachability(node, True, t, power_state="On")
            self.at(t)
            t += step

    # --- reading ------------------------------------------------------------------------------------------------
    def state(self, node: str) -> str:
        return self.engine.node_health(node).state

    def reasons(self, node: str) -> list[Reason]:
        return self.engine.node_health(node).reasons

    def rules_firing(self, node: str) -> set[str]:
        return {r.rule for r in self.reasons(node)}

    def reason(self, node: str, rule: str, component: str | None = None) -> Reason | None:
        for r in self.reasons(node):
            if r.rule == rule and (component is None or r.component == component):
                return r
        return None

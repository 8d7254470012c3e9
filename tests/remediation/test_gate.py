"""The health gate after a repair: it passes a node only on evidence read since the repair. A part the BMC reads
Critical again is held by its rule (a blip clears within the hold), and the gate waits that out rather than pass
the node on it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from redfleet.health import HealthEngine
from redfleet.remediation.controller import RemediationController
from redfleet.remediation.policy import load_policy
from redfleet.telemetry.hub import Hub
from redfleet.telemetry.series import SeriesStore


def _inventory(gpu_health: str) -> dict[str, Any]:
    return {"gpus": [{"id": "GPU_SXM_2", "name": "GPU_SXM_2", "health": gpu_health, "state": "Enabled"}],
            "systems": [{"power_state": "On"}]}


def _gate(now: list[float]) -> tuple[HealthEngine, RemediationController]:
    eng = HealthEngine(series=SeriesStore(), clock=lambda: now[0])
    hub = Hub(None, eng.series, eng, clock=lambda: now[0])
    ctl = RemediationController(store=None, hub=hub, policy=load_policy(None), wlm=SimpleNamespace(),
                                executor=SimpleNamespace(), clock=lambda: now[0])
    return eng, ctl


def test_gate_waits_out_a_held_critical_part_then_fails_on_it() -> None:
    now = [0.0]
    eng, ctl = _gate(now)
    flow = SimpleNamespace(node="n1", trigger={"reasons": [{"rule": "xid.79", "component": "gpu:2"}]})
    # back from the power cycle: the inventory read afresh shows the GPU Critical (it was OK before the fault)
    eng.observe_inventory("n1", _inventory("Critical"), 0.0)
    eng.evaluate(0.0)
    assert eng.node_health("n1").state == "healthy"  # nothing flagged yet: gpu-health holds 60 s
    ok, why = ctl._gate_ok(flow)  # type: ignore[arg-type]
    assert not ok and "gpu-health@gpu:GPU_SXM_2 held" in why, why
    now[0] = 61.0
    eng.evaluate(61.0)
    ok, why = ctl._gate_ok(flow)  # type: ignore[arg-type]
    assert not ok and "unhealthy" in why and "gpu-health" in why, why


def test_gate_passes_once_the_confirmation_read_is_ok() -> None:
    now = [0.0]
    eng, ctl = _gate(now)
    flow = SimpleNamespace(node="n1", trigger={"reasons": []})
    eng.observe_inventory("n1", _inventory("Critical"), 0.0)
    eng.evaluate(0.0)
    now[0] = 30.0
    eng.observe_inventory("n1", _inventory("OK"), 30.0)
    eng.evaluate(30.0)
    assert eng.held("n1") == []
    ok, why = ctl._gate_ok(flow)  # type: ignore[arg-type]
    assert ok and why == "healthy", why

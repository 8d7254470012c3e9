"""End to end without a workload manager: the simulator, serve with remediation on, the in-band feed. Faults
injected in the simulator; the workflows must run the ladder through the simulated BMCs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from remediation.harness import Harness, fast_policy, harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    tmp: Path = tmp_path_factory.mktemp("remediation-bmc")
    async with harness(tmp, mix={"dgx": 2, "supermicro": 2, "dell": 2}, base_address="127.21.0.1",
                       host="127.21.1.1", policy=fast_policy()) as hh:
        yield hh


async def test_xid79_is_power_cycled_and_returned(h: Harness) -> None:
    node = h.names("dgx")[0]
    h.inject(node, "xid", gpu=2, xid=79)
    f = await h.wait_flow(node, lambda f: f["state"] == "succeeded", 60, "remediated")
    names = [s["name"] for s in f["steps"]]
    assert names[:3] == ["cordon", "drain", "power-cycle"], names
    assert names[-2:] == ["gate", "uncordon"], names
    assert all(s["result"] == "ok" for s in f["steps"]), f["steps"]
    assert f["rung"] == "power-cycle" and f["trigger"]["action"] == "RESTART_BM"
    assert any(r["rule"] == "xid.79" for r in f["trigger"]["reasons"])
    assert h.power_cycles.get(node) == 1, h.power_cycles
    assert h.hub.health(node)["state"] == "healthy"
    # every action audited with who and why
    audit = await h.get("/api/v1/audit", target=node)
    acts = {a["action"] for a in audit}
    assert {"remediation.start", "remediation.cordon", "remediation.power-cycle", "remediation.succeeded"} <= acts
    pc = next(a for a in audit if a["action"] == "remediation.power-cycle")
    assert pc["actor"] == "redfleet-remediation" and "xid.79" in (pc["reason"] or "")
    st = await h.get("/api/v1/remediation/status")
    assert st["mttr_s"]["count"] >= 1 and st["phases_s"]["wait"]["count"] >= 1


async def test_fault_that_survives_the_cycle_climbs_to_decommission(h: Harness) -> None:
    node = h.names("supermicro")[0]
    h.inject(node, "gpu-lost", gpu=1, persistent=True)  # a power cycle does not bring this GPU back
    f = await h.wait_flow(node, lambda f: f["state"] == "decommissioned", 120, "decommissioned")
    rungs = [s["rung"] for s in f["steps"] if s["name"] in ("power-cycle", "reimage")]
    assert rungs[0] == "power-cycle", f["steps"]
    assert any(s["name"] == "gate" and s["result"] == "failed" for s in f["steps"]) or \
        any(s["name"] == "wait" and s["result"] == "timeout" for s in f["steps"]), f["steps"]
    assert f["rma_id"] is not None
    rma = await h.get(f"/api/v1/rma/{f['rma_id']}")
    assert rma["node"] == node
    ev = rma["evidence"]
    assert ev["node"] == node and ev["reasons"]
    gpu_parts = [p for p in rma["parts"] if p.get("kind") == "gpu"]
    assert gpu_parts and gpu_parts[0].get("serial"), rma["parts"]
    assert ev.get("sel"), ev.get("errors")
    # decommissioned: retired in the store, never returned
    rec = h.store.node(node)
    assert rec.state == "retired"
    assert not any(s["name"] == "uncordon" for s in f["steps"])

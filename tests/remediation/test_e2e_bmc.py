"""End to end without a workload manager: the simulator, serve with remediation on, the in-band feed. Faults
injected in the simulator; the workflows must run the ladder through the simulated BMCs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from remediation.harness import Harness, fast_policy, harness

# One fault per test, several tests in a row: the breaker (tested on its own in test_e2e_storm) stays out of the way.
MODULE_POLICY = fast_policy(safety={"breaker": {"unhealthy_percent": 100, "min_nodes": 100}})

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    tmp: Path = tmp_path_factory.mktemp("remediation-bmc")
    async with harness(tmp, mix={"dgx": 3, "supermicro": 2, "dell": 1}, base_address="127.21.0.1",
                       host="127.21.1.1", policy=MODULE_POLICY) as hh:
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
    assert gpu_parts and gpu_parts[0].get("serial"), (rma["parts"], ev.get("errors"))
    assert ev.get("sel"), ev.get("errors")
    # decommissioned: retired in the store, never returned
    rec = h.store.node(node)
    assert rec.state == "retired"
    assert not any(s["name"] == "uncordon" for s in f["steps"])


async def test_metrics_and_cli_show_the_workflows(h: Harness) -> None:
    import asyncio
    import json

    from typer.testing import CliRunner

    from redfleet.cli.main import app

    assert h.http is not None
    async with h.http.get("/metrics") as r:
        text = await r.text()
    assert "redfleet_remediation_duration_seconds_count" in text
    assert 'redfleet_remediation_phase_duration_seconds_count{phase="cordon"}' in text
    runner = CliRunner()
    args = ["--api", h.url, "--token", "remediation-dev-token", "--json"]
    res = await asyncio.to_thread(runner.invoke, app, ["remediation", "list", *args])
    assert res.exit_code == 0, res.output
    flows = json.loads(res.output)
    assert flows and {"id", "node", "state", "steps"} <= set(flows[0])
    res = await asyncio.to_thread(runner.invoke, app, ["remediation", "show", str(flows[-1]["id"]), *args])
    assert res.exit_code == 0 and json.loads(res.output)["id"] == flows[-1]["id"]
    res = await asyncio.to_thread(runner.invoke, app, ["remediation", "show", "99999", *args])
    assert res.exit_code == 3 and "no remediation #99999" in res.output


async def test_approval_holds_the_rung_until_an_operator_approves(h: Harness) -> None:
    from remediation.harness import fast_policy as fp

    before = h.controller.policy
    h.controller.policy = fp(approval_required=["power-cycle"],
                             safety={"breaker": {"unhealthy_percent": 100, "min_nodes": 100}})
    try:
        node = h.names("dgx")[1]
        h.inject(node, "xid", gpu=0, xid=79)
        f = await h.wait_flow(node, lambda f: f["state"] == "waiting_approval", 30, "waiting for approval")
        assert f["approval"]["rung"] == "power-cycle"
        await __import__("asyncio").sleep(1.0)
        assert h.power_cycles.get(node, 0) == 0  # nothing touched the node while it waits
        # a viewer cannot approve
        status, body = await h.post("/api/v1/tokens", {"name": "v1", "role": "viewer"})
        assert status == 201
        status, _ = await h.post(f"/api/v1/remediations/{f['id']}/approve", {}, token=body["token"])
        assert status == 403
        status, got = await h.post(f"/api/v1/remediations/{f['id']}/approve", {"comment": "go"})
        assert status == 200 and got["approved_by"] == "api:dev-token"
        f = await h.wait_flow(node, lambda f: f["state"] == "succeeded", 60, "remediated after approval")
        assert h.power_cycles.get(node) == 1
        assert any(s["name"] == "approved" for s in f["steps"])
    finally:
        h.controller.policy = before


async def test_pause_defers_new_workflows_and_resume_starts_them(h: Harness) -> None:
    import asyncio

    status, st = await h.post("/api/v1/remediation/pause", {"reason": "firmware rollout"})
    assert status == 200 and st["paused"] and st["paused_reason"] == "firmware rollout"
    node = h.names("supermicro")[1]
    h.inject(node, "xid", gpu=3, xid=79)
    for _ in range(100):
        if node in h.controller.deferred:
            break
        await asyncio.sleep(0.2)
    assert "paused" in h.controller.deferred.get(node, ""), h.controller.deferred
    await asyncio.sleep(1.0)
    assert await h.flows(node) == [] and h.power_cycles.get(node, 0) == 0
    status, st = await h.post("/api/v1/remediation/resume")
    assert status == 200 and not st["paused"]
    await h.wait_flow(node, lambda f: f["state"] == "succeeded", 60, "remediated after resume")
    assert h.power_cycles.get(node) == 1
    audit = await h.get("/api/v1/audit")
    assert {"remediation.pause", "remediation.resume"} <= {a["action"] for a in audit}


async def test_gpu_reset_through_the_agent_fixes_a_resettable_xid(h: Harness) -> None:
    node = h.names("dgx")[2]
    h.inject(node, "xid", gpu=5, xid=109)  # context-switch timeout: NVIDIA's catalog says RESET_GPU
    f = await h.wait_flow(node, lambda f: f["state"] in ("succeeded", "failed", "decommissioned"), 60, "finished")
    assert f["state"] == "succeeded", f["steps"]
    assert f["rung"] == "gpu-reset" and f["trigger"]["action"] == "RESET_GPU"
    reset = next(s for s in f["steps"] if s["name"] == "gpu-reset")
    assert reset["result"] == "ok" and reset["detail"]["gpus"] == [5]
    assert h.power_cycles.get(node, 0) == 0  # the mildest rung did it: no power action
    hist = [x for x in h.fleet.dynamics.history if x.get("node") == node]  # type: ignore[union-attr]
    assert any(x["event"] == "clear" and x["kind"] == "xid" for x in hist), hist

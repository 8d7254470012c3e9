"""End to end with a real Slurm (Debian's slurmctld + one slurmd running real jobs) and the simulator: the issue's
scenarios — Xid 79 drained with our prefix, power-cycled, gated and resumed; an operator's drain never undone;
``serve`` killed mid-workflow resumes without a second power cycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from redfleet.remediation.wlm.slurmctl import LocalSlurm
from remediation.harness import Harness, fast_policy, local_slurm, slurm_harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]

MIX = {"dgx": 3, "supermicro": 3}
NAMES = [f"node-{i:05d}" for i in range(1, 7)]  # the simulator names nodes node-00001.. in mix order
JOB_NODE = NAMES[0]  # the one node with a real slurmd: jobs run there
POLICY = fast_policy(safety={"breaker": {"unhealthy_percent": 100, "min_nodes": 100}})


def fields(slurm: LocalSlurm, node: str) -> dict[str, str]:
    from redfleet.remediation.wlm.slurm import parse_node_line

    out = slurm.scontrol("show", "node", "-o", node)
    assert out.returncode == 0, out.stderr
    return parse_node_line(out.stdout.strip())


@pytest.fixture(scope="module")
def slurm() -> Iterator[LocalSlurm]:
    with local_slurm(NAMES, registered=[JOB_NODE]) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def h(slurm: LocalSlurm, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    tmp: Path = tmp_path_factory.mktemp("remediation-slurm")
    async with slurm_harness(tmp, slurm, mix=MIX, base_address="127.22.0.1", host="127.22.1.1", policy=POLICY) as hh:
        assert hh.names() == NAMES
        yield hh


async def _wait(pred: Any, limit: float, what: str) -> None:
    for _ in range(int(limit / 0.2)):
        if pred():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {limit} s")


async def test_xid79_drained_in_slurm_power_cycled_and_resumed(h: Harness, slurm: LocalSlurm) -> None:
    node = JOB_NODE
    job = slurm.run("sbatch", "--parsable", "--wrap", "sleep 5", "-w", node, "-o", "/dev/null")
    assert job.returncode == 0, job.stderr
    job_id = job.stdout.strip().split(";")[0]
    await _wait(lambda: slurm.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip() == "RUNNING", 20,
                "the job runs")
    h.inject(node, "xid", gpu=4, xid=79)
    # drained in Slurm with our prefix while the job finishes; nothing is power-cycled under a running job
    await _wait(lambda: "DRAIN" in fields(slurm, node).get("State", ""), 10, "DRAIN set")
    f = fields(slurm, node)
    assert f["Reason"].startswith("redfleet:") and "xid.79" in f["Reason"], f
    assert slurm.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip() == "RUNNING"
    assert h.power_cycles.get(node, 0) == 0
    flow = await h.wait_flow(node, lambda f: f["state"] == "succeeded", 90, "remediated")
    steps = {s["name"]: s for s in flow["steps"]}
    assert [s["name"] for s in flow["steps"]] == ["cordon", "drain", "power-cycle", "wait", "gate", "uncordon"]
    assert steps["drain"]["duration_s"] >= 1.0  # it waited for the job
    assert steps["uncordon"]["result"] == "ok" and steps["uncordon"]["detail"]["resumed"] is True
    assert h.power_cycles.get(node) == 1
    await _wait(lambda: "DRAIN" not in fields(slurm, node).get("State", ""), 10, "resumed")
    assert flow["wlm"] == "slurm" and flow["cordon_ours"] is True


async def test_operator_drained_node_is_never_resumed(h: Harness, slurm: LocalSlurm) -> None:
    node = NAMES[1]
    out = slurm.scontrol("update", f"NodeName={node}", "State=DRAIN", "Reason=swapping an NVMe (ticket 4711)")
    assert out.returncode == 0, out.stderr
    h.inject(node, "xid", gpu=1, xid=79)
    flow = await h.wait_flow(node, lambda f: f["state"] == "succeeded", 90, "remediated")
    assert flow["cordon_ours"] is False
    cordon = next(s for s in flow["steps"] if s["name"] == "cordon")
    assert cordon["detail"]["ours"] is False and "operator" in cordon["detail"]["note"]
    uncordon = next(s for s in flow["steps"] if s["name"] == "uncordon")
    assert uncordon["result"] == "skipped"
    f = fields(slurm, node)
    assert "DRAIN" in f["State"] and f["Reason"] == "swapping an NVMe (ticket 4711)", f


async def test_serve_killed_after_the_power_cycle_resumes_without_a_second_one(h: Harness,
                                                                               slurm: LocalSlurm) -> None:
    node = NAMES[2]
    h.inject(node, "xid", gpu=6, xid=79)
    await h.wait_flow(node, lambda f: f["phase"] == "wait", 30, "waiting for the node after the power cycle")
    assert h.power_cycles.get(node) == 1
    await h.restart_serve()  # everything in memory is gone; the workflow row is what is left
    flow = await h.wait_flow(node, lambda f: f["state"] == "succeeded", 90, "remediated after the restart")
    assert h.power_cycles.get(node) == 1, h.power_cycles
    # the restarted serve (a new agent feed, a new health engine) judges the rebooted nodes afresh: no node that
    # was already remediated starts over
    await asyncio.sleep(2.0)
    counts = {n: len(await h.flows(n)) for n in NAMES[:3]}
    assert counts == dict.fromkeys(NAMES[:3], 1), counts
    assert [s["name"] for s in flow["steps"]].count("power-cycle") == 1
    assert "DRAIN" not in fields(slurm, node).get("State", "")


async def test_serve_killed_between_intent_and_send_looks_before_it_sends(h: Harness, slurm: LocalSlurm) -> None:
    """The worst moment: the power cycle was sent, but serve died before recording it. The restarted serve must
    find the reboot and not send a second one."""
    node = NAMES[3]
    executor = h.app.state.executor
    real_power = executor.power
    sent = asyncio.Event()

    async def send_then_die(n: str, action: str, **kw: Any) -> str:
        await real_power(n, action, **kw)
        sent.set()
        await asyncio.Event().wait()  # never returns: serve is killed here
        return ""

    executor.power = send_then_die
    h.inject(node, "xid", gpu=2, xid=79)
    await asyncio.wait_for(sent.wait(), 30)
    flows = await h.flows(node)
    step = next(s for s in flows[0]["steps"] if s["name"] == "power-cycle")
    assert step["result"] == "running" and step["detail"].get("intent") is True  # recorded as intended only
    await h.restart_serve()
    h.controller.unknown_issue_grace = 30.0
    flow = await h.wait_flow(node, lambda f: f["state"] == "succeeded", 90, "remediated after the restart")
    assert h.power_cycles.get(node) == 1, h.power_cycles
    step = next(s for s in flow["steps"] if s["name"] == "power-cycle")
    assert "confirmed by the node's reboot" in step["detail"].get("note", ""), step


async def test_fault_that_survives_the_cycle_is_decommissioned_and_stays_drained(h: Harness,
                                                                                  slurm: LocalSlurm) -> None:
    node = NAMES[4]
    h.inject(node, "gpu-lost", gpu=5, persistent=True)  # the power cycle does not bring this GPU back
    flow = await h.wait_flow(node, lambda f: f["state"] == "decommissioned", 120, "decommissioned")
    names = [s["name"] for s in flow["steps"]]
    assert names[:4] == ["cordon", "drain", "power-cycle", "wait"], names
    gate = next(s for s in flow["steps"] if s["name"] == "gate")
    assert gate["result"] == "failed" and "gpu:5" in gate["detail"]["last"], gate
    assert "reimage" in names and names[-1] == "decommission", names  # the next rung, then the last
    assert h.power_cycles.get(node) == 1
    rma = await h.get(f"/api/v1/rma/{flow['rma_id']}")
    assert any(p["component"] == "gpu:5" and p.get("serial") for p in rma["parts"]), rma["parts"]
    f = fields(slurm, node)  # never returned to service: drained with redfleet's reason, for the RMA
    assert "DRAIN" in f["State"] and f["Reason"].startswith("redfleet:"), f
    assert h.store.node(node).state == "retired"

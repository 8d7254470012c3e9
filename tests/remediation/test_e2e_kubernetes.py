"""End to end through the Kubernetes adapter: the simulator, serve with remediation, and the Kubernetes API
stand-in (redfleet.sim.kube: no API server can run here; it follows the documented behaviour of the calls made).
An Xid 79 node is cordoned, its pods evicted within their PodDisruptionBudget, tainted with redfleet's verdict,
power-cycled, gated and returned: schedulable, taint gone, condition True."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes import client as k8s

from redfleet.remediation.wlm.kubernetes import KubernetesManager
from redfleet.sim.kube import KubeApiStandin
from remediation.harness import Harness, fast_policy, harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.asyncio(loop_scope="module")]

NAMES = [f"node-{i:05d}" for i in range(1, 4)]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def kube() -> AsyncIterator[KubeApiStandin]:
    server = KubeApiStandin(pod_grace_s=1.0)
    await server.start("127.25.0.41", 0)
    for n in NAMES:
        server.add_node(n)
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def h(kube: KubeApiStandin, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    tmp: Path = tmp_path_factory.mktemp("remediation-k8s")

    def manager() -> Any:
        cfg = k8s.Configuration()
        cfg.host = kube.url
        return KubernetesManager(k8s.ApiClient(cfg), timeout=5.0, retries=2)

    async with harness(tmp, mix={"dgx": 3}, base_address="127.25.1.1", host="127.25.2.1",
                       policy=fast_policy(safety={"breaker": {"unhealthy_percent": 100, "min_nodes": 100}}),
                       wlm_factory=manager) as hh:
        yield hh


async def test_xid79_cordons_evicts_within_the_budget_and_returns_the_node(h: Harness, kube: KubeApiStandin) -> None:
    node = NAMES[0]
    for i in range(3):  # a training job's workers, one on the failing node, under a budget of 2 available
        kube.add_pod("team-a", f"worker-{i}", NAMES[i], labels={"job": "llm"}, owner_kind="StatefulSet")
    kube.add_pod("kube-system", f"dcgm-{node}", node, owner_kind="DaemonSet")
    kube.add_pdb("team-a", "llm", {"job": "llm"}, min_available=2)
    h.inject(node, "xid", gpu=3, xid=79)
    flow = await h.wait_flow(node, lambda f: f["phase"] not in ("cordon", "drain"), 60, "drained")
    spec = kube.nodes[node]["spec"]
    assert spec.get("unschedulable") is True
    assert any(t["key"] == "redfleet.io/unhealthy" for t in spec.get("taints") or [])
    pods = {p["metadata"]["name"] for p in kube.pods_on(node)}
    assert "worker-0" not in pods and f"dcgm-{node}" in pods  # evicted; the DaemonSet pod stays
    flow = await h.wait_flow(node, lambda f: f["state"] == "succeeded", 90, "remediated")
    assert [s["name"] for s in flow["steps"]] == ["cordon", "drain", "power-cycle", "wait", "gate", "uncordon"]
    assert h.power_cycles.get(node) == 1
    spec = kube.nodes[node]["spec"]
    assert not spec.get("unschedulable")
    assert not any(t["key"] == "redfleet.io/unhealthy" for t in spec.get("taints") or [])
    conds = {c["type"]: c for c in kube.nodes[node]["status"].get("conditions") or []}
    assert conds["RedfleetHealthy"]["status"] == "True"
    assert "redfleet.io/cordon-reason" not in (kube.nodes[node]["metadata"].get("annotations") or {})

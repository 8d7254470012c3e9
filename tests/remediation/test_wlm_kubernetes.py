"""KubernetesManager with the real ``kubernetes`` client against KubeApiStandin (a stand-in API server: no real
kube-apiserver can run here)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import pytest
from kubernetes import client as k8s

from redfleet.remediation.wlm.base import REASON_PREFIX, WlmError, WorkloadManager
from redfleet.remediation.wlm.kubernetes import CORDON_ANNOTATION, KubernetesManager
from redfleet.sim.kube import UNSCHEDULABLE_TAINT, KubeApiStandin

HOST = "127.0.0.41"


def _client(url: str) -> k8s.ApiClient:
    cfg = k8s.Configuration()
    cfg.host = url
    cfg.retries = False  # the adapter's own retry loop is what is under test
    return k8s.ApiClient(cfg)


@pytest.fixture
async def kube() -> AsyncIterator[KubeApiStandin]:
    server = KubeApiStandin()
    await server.start(HOST, 0)
    server.add_node("gpu-001")
    server.add_node("gpu-002")
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def wlm(kube: KubeApiStandin) -> AsyncIterator[KubernetesManager]:
    api = _client(kube.url)
    manager = KubernetesManager(api, timeout=5.0, retries=2)
    try:
        yield manager
    finally:
        await manager.close()
        api.close()


def _taints(kube: KubeApiStandin, node: str) -> dict[str, dict[str, str]]:
    return {t["key"]: t for t in kube.nodes[node]["spec"].get("taints") or []}


async def test_is_a_workload_manager(wlm: KubernetesManager) -> None:
    assert isinstance(wlm, WorkloadManager)
    assert wlm.name == "kubernetes"


async def test_cordon_then_uncordon(kube: KubeApiStandin, wlm: KubernetesManager) -> None:
    kube.add_pod("team-a", "train-0", "gpu-001", owner_kind="ReplicaSet")
    st = await wlm.cordon("gpu-001", "xid 79 on GPU 2")
    node = kube.nodes["gpu-001"]
    assert node["spec"]["unschedulable"] is True
    assert node["metadata"]["annotations"][CORDON_ANNOTATION] == f"{REASON_PREFIX} xid 79 on GPU 2"
    assert st.cordoned and st.ours and st.known
    assert st.reason == "redfleet: xid 79 on GPU 2"
    assert st.state == "Ready,SchedulingDisabled"
    assert st.running == 1 and not st.drained
    # idempotent: a second cordon writes nothing (no resourceVersion bump)
    rv = node["metadata"]["resourceVersion"]
    again = await wlm.cordon("gpu-001", "another reason")
    assert again.ours and kube.nodes["gpu-001"]["metadata"]["resourceVersion"] == rv
    assert "gpu-002" not in [n for n, d in kube.nodes.items() if d["spec"].get("unschedulable")]

    assert await wlm.uncordon("gpu-001") is True
    node = kube.nodes["gpu-001"]
    assert not node["spec"].get("unschedulable")
    assert CORDON_ANNOTATION not in node["metadata"]["annotations"]
    assert UNSCHEDULABLE_TAINT not in _taints(kube, "gpu-001")
    st = await wlm.status("gpu-001")
    assert not st.cordoned and not st.ours and st.state == "Ready"
    # not cordoned any more: nothing to undo
    assert await wlm.uncordon("gpu-001") is False


async def test_operator_cordon_is_left_alone(kube: KubeApiStandin, wlm: KubernetesManager) -> None:
    kube.add_node("gpu-003", unschedulable=True)  # `kubectl cordon` by a person: no annotation
    before = kube.nodes["gpu-003"]["metadata"]["resourceVersion"]
    st = await wlm.cordon("gpu-003", "xid 48")
    assert st.cordoned and not st.ours and st.reason is None
    assert await wlm.uncordon("gpu-003") is False
    node = kube.nodes["gpu-003"]
    assert node["spec"]["unschedulable"] is True
    assert CORDON_ANNOTATION not in node["metadata"]["annotations"]
    assert node["metadata"]["resourceVersion"] == before


async def test_annotation_with_a_foreign_prefix_is_not_ours(kube: KubeApiStandin, wlm: KubernetesManager) -> None:
    kube.add_node("gpu-004", unschedulable=True)
    kube.nodes["gpu-004"]["metadata"]["annotations"][CORDON_ANNOTATION] = "maintenance by alice"
    st = await wlm.status("gpu-004")
    assert st.cordoned and not st.ours
    assert await wlm.uncordon("gpu-004") is False
    assert kube.nodes["gpu-004"]["spec"]["unschedulable"] is True


async def test_drain_evicts_and_skips_daemonset_mirror_and_finished(kube: KubeApiStandin,
                                                                   wlm: KubernetesManager) -> None:
    kube.add_pod("team-a", "train-0", "gpu-001", owner_kind="ReplicaSet")
    kube.add_pod("team-b", "notebook", "gpu-001")
    kube.add_pod("kube-system", "dcgm-exporter-x1", "gpu-001", owner_kind="DaemonSet")
    kube.add_pod("kube-system", "static-proxy-gpu-001", "gpu-001", owner_kind="Node",
                 annotations={"kubernetes.io/config.mirror": "abc"})
    kube.add_pod("team-a", "done-job", "gpu-001", owner_kind="Job", phase="Succeeded")
    kube.add_pod("team-a", "elsewhere", "gpu-002", owner_kind="ReplicaSet")

    with pytest.raises(WlmError, match="not cordoned") as info:
        await wlm.drain("gpu-001")  # evicting from a schedulable node would invite the pods straight back
    assert info.value.retryable is False

    await wlm.cordon("gpu-001", "drain test")
    progress = await wlm.drain("gpu-001")
    assert progress.done and progress.running == 0
    assert "evicted 2" in progress.message
    left = {p["metadata"]["name"] for p in kube.pods_on("gpu-001")}
    assert left == {"dcgm-exporter-x1", "static-proxy-gpu-001", "done-job"}
    assert ("team-a", "elsewhere") in kube.pods
    st = await wlm.status("gpu-001")
    assert st.drained and st.running == 0


async def test_drain_waits_on_a_pod_disruption_budget(kube: KubeApiStandin, wlm: KubernetesManager) -> None:
    labels = {"app": "inference"}
    kube.add_pod("serving", "inf-0", "gpu-001", labels=labels, owner_kind="ReplicaSet")
    kube.add_pod("serving", "inf-1", "gpu-002", labels=labels, owner_kind="ReplicaSet")
    kube.add_pdb("serving", "inference-pdb", labels, min_available=2)
    await wlm.cordon("gpu-001", "pdb test")

    progress = await wlm.drain("gpu-001")
    assert not progress.done and progress.running == 1
    assert "PodDisruptionBudget" in progress.message and "inference-pdb" in progress.message
    assert progress.retry_after is None  # like the real server, the stand-in sends no Retry-After by default
    assert ("serving", "inf-0") in kube.pods

    # the workload's controller brings up a replacement elsewhere: the budget now allows one disruption
    kube.add_pod("serving", "inf-2", "gpu-002", labels=labels, owner_kind="ReplicaSet")
    progress = await wlm.drain("gpu-001")
    assert progress.done and progress.running == 0
    assert ("serving", "inf-0") not in kube.pods


async def test_drain_takes_rounds_while_pods_terminate_and_reads_retry_after() -> None:
    async with KubeApiStandin(host=HOST, pod_grace_s=0.3, pdb_retry_after_s=7) as kube:
        assert kube.url.startswith(f"http://{HOST}:")
        kube.add_node("gpu-001")
        kube.add_node("gpu-002")
        labels = {"app": "batch"}
        for i in range(3):
            kube.add_pod("jobs", f"w-{i}", "gpu-001", labels=labels, owner_kind="ReplicaSet")
        kube.add_pod("jobs", "w-9", "gpu-002", labels=labels, owner_kind="ReplicaSet")
        kube.add_pdb("jobs", "batch-pdb", labels, max_unavailable=1)
        api = _client(kube.url)
        wlm = KubernetesManager(api, timeout=5.0, retries=1)
        try:
            await wlm.cordon("gpu-001", "rounds")
            first = await wlm.drain("gpu-001")
            # one eviction fits the budget; the other two get 429 with the server's Retry-After
            assert not first.done and first.running == 3
            assert "evicted 1" in first.message and "2 blocked" in first.message
            assert first.retry_after == 7
            rounds = 1
            deadline = time.monotonic() + 8
            progress = first
            while not progress.done:
                assert time.monotonic() < deadline, f"drain did not finish: {progress}"
                await asyncio.sleep(0.1)
                progress = await wlm.drain("gpu-001")
                rounds += 1
            assert rounds >= 3  # each pod had to finish terminating before the budget let the next go
            assert kube.pods_on("gpu-001") == []
            assert [p["metadata"]["name"] for p in kube.pods_on("gpu-002")] == ["w-9"]
        finally:
            await wlm.close()
            api.close()


async def test_verdict_taint_and_condition_set_and_cleared(kube: KubeApiStandin, wlm: KubernetesManager) -> None:
    await wlm.cordon("gpu-001", "verdict test")
    await wlm.set_verdict("gpu-001", False, "Xid 79: GPU fell off the bus")
    taint = _taints(kube, "gpu-001")["redfleet.io/unhealthy"]
    assert taint == {"key": "redfleet.io/unhealthy", "value": "true", "effect": "NoSchedule"}
    assert UNSCHEDULABLE_TAINT in _taints(kube, "gpu-001")  # others' taints survive our list write
    conds = {c["type"]: c for c in kube.nodes["gpu-001"]["status"]["conditions"]}
    ours = conds["RedfleetHealthy"]
    assert ours["status"] == "False" and ours["message"] == "Xid 79: GPU fell off the bus"
    assert ours["reason"] and ours["lastTransitionTime"] and ours["lastHeartbeatTime"]
    assert conds["Ready"]["status"] == "True"  # the kubelet's condition is merged, not replaced
    first_transition = ours["lastTransitionTime"]

    rv = kube.nodes["gpu-001"]["metadata"]["resourceVersion"]
    await wlm.set_verdict("gpu-001", False, "still failing")  # taint already there: only the condition changes
    assert len([t for t in kube.nodes["gpu-001"]["spec"]["taints"] if t["key"] == "redfleet.io/unhealthy"]) == 1
    assert kube.nodes["gpu-001"]["metadata"]["resourceVersion"] != rv
    ours = {c["type"]: c for c in kube.nodes["gpu-001"]["status"]["conditions"]}["RedfleetHealthy"]
    assert ours["lastTransitionTime"] == first_transition and ours["message"] == "still failing"

    await wlm.set_verdict("gpu-001", True, "health gate passed")
    assert "redfleet.io/unhealthy" not in _taints(kube, "gpu-001")
    assert kube.nodes["gpu-001"]["spec"]["unschedulable"] is True  # the verdict does not uncordon
    ours = {c["type"]: c for c in kube.nodes["gpu-001"]["status"]["conditions"]}["RedfleetHealthy"]
    assert ours["status"] == "True" and ours["message"] == "health gate passed"

    await wlm.set_verdict("gpu-001", False, "failed again")
    assert await wlm.uncordon("gpu-001") is True
    assert "redfleet.io/unhealthy" not in _taints(kube, "gpu-001")


async def test_unknown_node_is_not_retryable(kube: KubeApiStandin, wlm: KubernetesManager) -> None:
    for call in (wlm.status("nope"), wlm.cordon("nope", "x"), wlm.drain("nope"), wlm.uncordon("nope"),
                 wlm.set_verdict("nope", False, "x")):
        with pytest.raises(WlmError, match="nope") as info:
            await call
        assert info.value.retryable is False
        assert info.value.node == "nope"
        assert "not known to Kubernetes" in str(info.value)


async def test_node_map_names_the_kubernetes_node(kube: KubeApiStandin) -> None:
    api = _client(kube.url)
    wlm = KubernetesManager(api, node_map={"rack1-u07": "gpu-002"}, timeout=5.0)
    try:
        st = await wlm.cordon("rack1-u07", "mapped")
        assert st.node == "rack1-u07" and st.ours
        assert kube.nodes["gpu-002"]["spec"]["unschedulable"] is True
        with pytest.raises(WlmError, match=r"rack1-u08"):
            await KubernetesManager(api, node_map=lambda n: "k8s-" + n, timeout=5.0).status("rack1-u08")
    finally:
        api.close()


async def test_transient_server_errors_are_retried(kube: KubeApiStandin, wlm: KubernetesManager) -> None:
    kube.fail_next(2, 503)
    st = await wlm.status("gpu-001")  # retries=2: the third attempt succeeds
    assert st.known and not st.cordoned
    kube.fail_next(10, 500)
    with pytest.raises(WlmError, match=r"after 3 attempt") as info:
        await wlm.status("gpu-001")
    assert info.value.retryable is True
    assert sum(kube.requests.values()) == 2 + 1 + 1 + 3  # two failures, read + list, then three failures


async def test_concurrent_change_is_not_overwritten(kube: KubeApiStandin, wlm: KubernetesManager) -> None:
    """A write between our read and our patch makes the precondition fail; we read again and keep theirs."""
    original = kube._patch
    raced = False

    async def racing_patch(request, *, subresource):  # type: ignore[no-untyped-def]
        nonlocal raced
        if not raced:
            raced = True  # an operator's `kubectl taint` lands just before our write
            node = kube.nodes["gpu-001"]
            node["spec"]["taints"] = [{"key": "team/reserved", "value": "x", "effect": "NoSchedule"}]
            node["metadata"]["resourceVersion"] = kube._bump()
        return await original(request, subresource=subresource)

    kube._patch = racing_patch  # type: ignore[method-assign]
    await wlm.set_verdict("gpu-001", False, "race")
    assert raced
    assert set(_taints(kube, "gpu-001")) == {"team/reserved", "redfleet.io/unhealthy"}


async def test_server_down_fails_within_the_timeout() -> None:
    server = KubeApiStandin()
    await server.start(HOST, 0)
    url = server.url
    await server.stop()  # nothing listens on that port any more
    api = _client(url)
    wlm = KubernetesManager(api, timeout=1.5, retries=3)
    try:
        started = time.monotonic()
        with pytest.raises(WlmError, match=r"did not answer read node for node gpu-001 after \d attempt") as info:
            await wlm.cordon("gpu-001", "x")
        elapsed = time.monotonic() - started
        assert info.value.retryable is True
        assert "attempt(s) within 1.5s" in str(info.value)
        assert elapsed < 1.5 + 0.5
    finally:
        api.close()


async def test_unreachable_kubeconfig_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WlmError, match="cannot load Kubernetes credentials") as info:
        KubernetesManager(kubeconfig=str(tmp_path / "missing-kubeconfig"))
    assert info.value.retryable is False


async def test_pod_under_two_budgets_is_reported_not_evicted(kube: KubeApiStandin, wlm: KubernetesManager) -> None:
    kube.add_pod("serving", "inf-0", "gpu-001", labels={"app": "inf", "tier": "gold"}, owner_kind="ReplicaSet")
    kube.add_pdb("serving", "by-app", {"app": "inf"}, max_unavailable=1)
    kube.add_pdb("serving", "by-tier", {"matchExpressions": [{"key": "tier", "operator": "In",
                                                              "values": ["gold"]}]}, max_unavailable=1)
    await wlm.cordon("gpu-001", "two budgets")
    progress = await wlm.drain("gpu-001")
    assert not progress.done and progress.running == 1
    assert "more than one PodDisruptionBudget" in progress.message
    assert ("serving", "inf-0") in kube.pods
    kube.remove_pdb("serving", "by-tier")
    assert (await wlm.drain("gpu-001")).done


async def test_unready_pod_under_a_healthy_budget_may_go(kube: KubeApiStandin, wlm: KubernetesManager) -> None:
    labels = {"app": "db"}
    kube.add_pod("data", "db-0", "gpu-001", labels=labels, owner_kind="StatefulSet", ready=False)
    kube.add_pod("data", "db-1", "gpu-002", labels=labels, owner_kind="StatefulSet")
    kube.add_pdb("data", "db-pdb", labels, min_available=1)
    # zero disruptions allowed would block a Ready pod, but an unready one under a healthy budget may be evicted
    assert kube.pdb_status("data", "db-pdb")["disruptionsAllowed"] == 0
    await wlm.cordon("gpu-001", "unready")
    assert (await wlm.drain("gpu-001")).done


async def test_standin_patch_media_types_and_errors(kube: KubeApiStandin) -> None:
    """The stand-in's PATCH as the official client drives it: merge patch, JSON patch, preconditions, errors."""
    api = _client(kube.url)
    core = k8s.CoreV1Api(api)
    try:
        def calls() -> None:
            node = core.patch_node("gpu-001", {"metadata": {"labels": {"pool": "a100"}}},
                                   _content_type="application/merge-patch+json")
            assert node.metadata.labels["pool"] == "a100"
            node = core.patch_node("gpu-001", [{"op": "add", "path": "/metadata/labels/rack", "value": "r7"},
                                               {"op": "remove", "path": "/metadata/labels/pool"}])
            assert node.metadata.labels["rack"] == "r7" and "pool" not in node.metadata.labels
            rv = node.metadata.resource_version
            same = core.patch_node("gpu-001", {"metadata": {"labels": {"rack": "r7"}}})
            assert same.metadata.resource_version == rv  # a no-op patch bumps nothing
            for body, code, word in (
                ({"metadata": {"resourceVersion": "1"}, "spec": {"unschedulable": True}}, 409, "Conflict"),
                ({"spec": {"taints": [{"key": "a", "effect": "Sometimes"}]}}, 422, "Invalid"),
                ({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}]}},
                 422, "Invalid"),
            ):
                with pytest.raises(k8s.ApiException) as info:
                    core.patch_node("gpu-001", body)
                assert info.value.status == code and f'"reason":"{word}"' in info.value.body
            with pytest.raises(k8s.ApiException) as info:
                core.patch_node("gpu-001", {"spec": {}}, _content_type="application/apply-patch+yaml")
            assert info.value.status == 415
            # the status subresource ignores spec, the main resource ignores status
            core.patch_node_status("gpu-001", {"spec": {"unschedulable": True}})
            core.patch_node("gpu-001", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
            node = core.read_node("gpu-001")
            assert not node.spec.unschedulable
            assert [c.status for c in node.status.conditions if c.type == "Ready"] == ["True"]
            nodes = core.list_node(label_selector="rack in (r7,r8)")
            assert [n.metadata.name for n in nodes.items] == ["gpu-001"]
            with pytest.raises(k8s.ApiException) as info:
                core.list_pod_for_all_namespaces(field_selector="spec.schedulerName=x")
            assert info.value.status == 400 and "field label not supported" in info.value.body
            with pytest.raises(k8s.ApiException) as info:
                core.create_namespaced_pod_eviction(
                    "ghost", "default", k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name="ghost", namespace="default")))
            assert info.value.status == 404 and 'pods \\"ghost\\" not found' in info.value.body

        await asyncio.to_thread(calls)
    finally:
        api.close()


async def test_silent_server_fails_within_the_timeout() -> None:
    """A server that accepts connections and never answers: each request times out, the whole call stays
    inside one deadline."""
    held: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(never_answer, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    api = _client(f"http://{HOST}:{port}")
    wlm = KubernetesManager(api, timeout=1.0, retries=5)
    try:
        started = time.monotonic()
        with pytest.raises(WlmError, match=r"did not answer .* within 1s") as info:
            await wlm.status("gpu-001")
        assert time.monotonic() - started < 1.0 + 0.8
        assert info.value.retryable is True
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
        api.close()


async def test_client_built_from_a_kubeconfig(kube: KubeApiStandin, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "kubeconfig"
    path.write_text(f"""
apiVersion: v1
kind: Config
clusters:
- name: standin
  cluster: {{server: "{kube.url}"}}
users:
- name: redfleet
  user: {{token: not-checked-by-the-stand-in}}
contexts:
- name: other
  context: {{cluster: nowhere, user: redfleet}}
- name: lab
  context: {{cluster: standin, user: redfleet}}
current-context: other
""")
    wlm = KubernetesManager(kubeconfig=str(path), context="lab", timeout=5.0)
    try:
        st = await wlm.cordon("gpu-002", "from kubeconfig")
        assert st.ours and kube.nodes["gpu-002"]["spec"]["unschedulable"] is True
    finally:
        await wlm.close()


async def test_a_silent_server_does_not_starve_the_loops_default_pool() -> None:
    """Forty calls stuck on a server that never answers hold the adapter's own threads, not the event loop's
    default pool (which serve's store writes share): work sent there still runs at once."""
    held: list[asyncio.StreamWriter] = []
    four = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        if len(held) >= 4:
            four.set()

    server = await asyncio.start_server(never_answer, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    api = _client(f"http://{HOST}:{port}")
    wlm = KubernetesManager(api, timeout=3.0, retries=0, threads=4)
    stuck = [asyncio.create_task(wlm.status(f"gpu-{i:03d}")) for i in range(40)]
    try:
        await asyncio.wait_for(four.wait(), 5.0)  # the adapter's four threads are all waiting on the server
        await asyncio.sleep(0.2)  # (had it more, more connections would come now)
        name = await asyncio.wait_for(asyncio.to_thread(lambda: threading.current_thread().name), 1.0)
        assert not name.startswith("redfleet-k8s"), name
        assert len(held) == 4, "more calls in flight than the adapter's threads"
        assert not any(t.done() for t in stuck)
    finally:
        results = await asyncio.gather(*stuck, return_exceptions=True)
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
        await wlm.close()
        api.close()
    assert all(isinstance(r, WlmError) and r.retryable for r in results), results[:3]

"""Kubernetes behind :class:`~redfleet.remediation.wlm.base.WorkloadManager`, with the official ``kubernetes`` client.

* cordon: ``spec.unschedulable=true`` plus our annotation ``redfleet.io/cordon-reason: "redfleet: <reason>"``; a
  node that is already unschedulable without that annotation is an operator's cordon and stays untouched.
* drain: every pod on the node that must go (not DaemonSet-owned, not a mirror pod, not finished) is evicted
  through the policy/v1 Eviction API, so PodDisruptionBudgets are honoured (429 -> not done yet; a 500 such as
  "more than one PodDisruptionBudget" is reported in the progress message, not retried within the step).
* uncordon: only a cordon carrying our annotation: ``unschedulable=false``, annotation and our taint removed.
* set_verdict: the taint ``redfleet.io/unhealthy=true:NoSchedule`` while unhealthy, and a node condition
  ``RedfleetHealthy`` on the status subresource.

The client is synchronous, so each call runs in one of the adapter's own worker threads (``threads``, not the
event loop's shared default pool) with ``_request_timeout``; every operation has
one deadline (``timeout``) across at most ``retries`` extra attempts. Read-modify-write patches (taints) send the
resourceVersion they read as a precondition and start over on 409, so an operator's concurrent change is never
overwritten.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from redfleet.remediation.wlm.base import REASON_PREFIX, DrainProgress, WlmError, WlmNodeStatus

T = TypeVar("T")

CORDON_ANNOTATION = "redfleet.io/cordon-reason"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"  # static pods: the kubelet owns them, eviction cannot move them
_RETRY_STATUSES = {429, 500, 502, 503, 504}
_EVICT_CONCURRENCY = 8  # evictions in flight per drain step: enough for a GPU node's pods, gentle on the server

NodeMap = Mapping[str, str] | Callable[[str], str]


class _Conflict(Exception):
    """A resourceVersion precondition failed: someone changed the node between our read and our write."""


def _status_message(exc: ApiException) -> str:
    """The ``message`` of the Status object the API server sends with an error, else the HTTP reason."""
    try:
        doc = json.loads(exc.body or "")
    except (TypeError, ValueError):
        doc = None
    if isinstance(doc, dict) and doc.get("message"):
        causes = (doc.get("details") or {}).get("causes") or []
        extra = "; ".join(str(c.get("message")) for c in causes if isinstance(c, dict) and c.get("message"))
        return f"{doc['message']} ({extra})" if extra else str(doc["message"])
    return f"HTTP {exc.status} {exc.reason or ''}".strip()


def _retry_after(exc: ApiException) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), or None when the server sent none."""
    from redfleet.redfish.client import parse_retry_after

    return parse_retry_after((exc.headers or {}).get("Retry-After"))


def _now() -> str:
    return _rfc3339(datetime.now(UTC))


def _rfc3339(when: datetime) -> str:
    """The API's own time format (metav1.Time: seconds, UTC, "Z")."""
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _must_evict(pod: k8s.V1Pod) -> bool:
    """What ``kubectl drain`` moves: not finished, not a mirror pod, not owned by a DaemonSet (its controller
    would put it straight back and it tolerates unschedulable nodes anyway)."""
    meta, status = pod.metadata, pod.status
    if status is not None and status.phase in ("Succeeded", "Failed"):
        return False
    if meta is None:
        return True
    if MIRROR_ANNOTATION in (meta.annotations or {}):
        return False
    return not any(ref.kind == "DaemonSet" and ref.controller for ref in meta.owner_references or [])


def _ready_state(node: k8s.V1Node) -> str:
    conditions = (node.status.conditions if node.status else None) or []
    ready = next((c for c in conditions if c.type == "Ready"), None)
    word = "Unknown" if ready is None or ready.status == "Unknown" else (
        "Ready" if ready.status == "True" else "NotReady")
    return f"{word},SchedulingDisabled" if node.spec is not None and node.spec.unschedulable else word


class KubernetesManager:
    """The Kubernetes workload manager (see the module docstring for the semantics).

    ``api_client``: an existing client (the caller keeps ownership); otherwise one is built from ``kubeconfig``
    and ``context``, from the in-cluster service account, or from the default kubeconfig, in that order.
    ``node_map`` turns redfleet's node names into Kubernetes node names (a mapping or a function; a name the
    mapping lacks, or no map at all, is used as it is).
    """

    name = "kubernetes"

    def __init__(self, api_client: k8s.ApiClient | None = None, *, kubeconfig: str | None = None,
                 context: str | None = None, timeout: float = 10.0, retries: int = 3,
                 node_map: NodeMap | None = None, taint_key: str = "redfleet.io/unhealthy",
                 condition_type: str = "RedfleetHealthy", threads: int = 16) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if threads < 1:
            raise ValueError("threads must be >= 1")
        # The adapter's own threads: a hundred workflows draining at once, or an API server that stops answering
        # (each call then holds its thread until _request_timeout), must not fill the event loop's default pool,
        # which serve's other blocking work (the store, NVML...) shares.
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="redfleet-k8s")
        self._timeout = timeout
        self._retries = retries
        self._node_map = node_map
        self.taint_key = taint_key
        self.condition_type = condition_type
        self._owns_client = api_client is None
        self._api_client = api_client if api_client is not None else self._load_client(kubeconfig, context, threads)
        self._core = k8s.CoreV1Api(self._api_client)

    @staticmethod
    def _load_client(kubeconfig: str | None, context: str | None, threads: int = 16) -> k8s.ApiClient:
        cfg = k8s.Configuration()
        try:
            if kubeconfig is None and context is None and _in_cluster():
                k8s_config.load_incluster_config(client_configuration=cfg)
            else:
                k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg,
                                            persist_config=False)
        except (k8s_config.ConfigException, OSError, ValueError) as exc:
            where = kubeconfig or "the default kubeconfig"
            raise WlmError(f"cannot load Kubernetes credentials from {where}"
                           f"{f' (context {context})' if context else ''}: {exc}", retryable=False) from exc
        # urllib3 would otherwise retry connection errors on its own; the adapter's own bounded loop decides
        cfg.retries = False
        cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 1, threads)  # a connection per thread
        return k8s.ApiClient(cfg)

    async def close(self) -> None:
        if self._owns_client:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._api_client.close)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------------------------------ plumbing
    def _k8s_name(self, node: str) -> str:
        if self._node_map is None:
            return node
        if callable(self._node_map):
            return self._node_map(node)
        return self._node_map.get(node, node)

    def _label(self, node: str) -> str:
        name = self._k8s_name(node)
        return f"node {node}" if name == node else f"node {node} (Kubernetes node {name})"

    async def _call(self, what: str, node: str, fn: Callable[..., T], *args: Any,
                    deadline: float | None = None, no_retry: frozenset[int] = frozenset(), **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a thread, retried on connection errors and 429/5xx (not on statuses in
        ``no_retry``) with backoff, all within ``deadline`` (monotonic; now + timeout when None)."""
        end = deadline if deadline is not None else time.monotonic() + self._timeout
        attempt = 0
        last: str = "no attempt made"
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0.01:
                break
            attempt += 1
            wait: float | None = None
            try:
                # wait_for bounds the await even if the thread is stuck somewhere _request_timeout does not reach
                call = functools.partial(fn, *args, _request_timeout=remaining, **kwargs)
                return await asyncio.wait_for(
                    asyncio.get_running_loop().run_in_executor(self._pool, call), remaining + 0.5)
            except ApiException as exc:
                if exc.status not in _RETRY_STATUSES or exc.status in no_retry:
                    raise
                last = f"{exc.status}: {_status_message(exc)}"
                wait = _retry_after(exc)
            except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            except ValueError as exc:
                # the client's models validate requests and answers (pydantic): trying again will not help
                raise WlmError(f"unexpected request or answer for {what} on {self._label(node)}: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                               node=node, retryable=False) from exc
            if attempt > self._retries:
                break
            backoff = wait if wait is not None else min(2.0, 0.1 * 2 ** (attempt - 1))
            remaining = end - time.monotonic()
            if backoff >= remaining:
                break
            await asyncio.sleep(backoff)
        raise WlmError(f"Kubernetes API did not answer {what} for {self._label(node)} after {attempt} "
                       f"attempt(s) within {self._timeout:g}s: {last}", node=node, retryable=True)

    def _error(self, what: str, node: str, exc: ApiException) -> WlmError:
        if exc.status == 404:
            return WlmError(f"{self._label(node)} is not known to Kubernetes ({what}: {_status_message(exc)})",
                            node=node, retryable=False)
        retryable = exc.status in _RETRY_STATUSES or exc.status == 409
        return WlmError(f"Kubernetes refused {what} for {self._label(node)}: HTTP {exc.status}: "
                        f"{_status_message(exc)}", node=node, retryable=retryable)

    async def _read(self, node: str, deadline: float) -> k8s.V1Node:
        try:
            return await self._call("read node", node, self._core.read_node, self._k8s_name(node),
                                    deadline=deadline)
        except ApiException as exc:
            raise self._error("read node", node, exc) from exc

    async def _patch(self, what: str, node: str, body: dict[str, Any], deadline: float, *,
                     status: bool = False) -> k8s.V1Node:
        fn = self._core.patch_node_status if status else self._core.patch_node
        try:
            return await self._call(what, node, fn, self._k8s_name(node), body, deadline=deadline)
        except ApiException as exc:
            if exc.status == 409:
                raise _Conflict(_status_message(exc)) from exc
            raise self._error(what, node, exc) from exc

    async def _pods(self, node: str, deadline: float) -> list[k8s.V1Pod]:
        try:
            pods = await self._call("list pods", node, self._core.list_pod_for_all_namespaces,
                                    field_selector=f"spec.nodeName={self._k8s_name(node)}", deadline=deadline)
        except ApiException as exc:
            raise self._error("list pods", node, exc) from exc
        return [p for p in pods.items or [] if _must_evict(p)]

    async def _modify(self, what: str, node: str,
                      change: Callable[[k8s.V1Node], dict[str, Any] | None]) -> tuple[k8s.V1Node, bool]:
        """Read the node, let ``change`` build a patch (None: nothing to do), send it with the resourceVersion
        read as a precondition; on 409 read again. Returns the node as it now is and whether we patched."""
        deadline = time.monotonic() + self._timeout
        for _ in range(self._retries + 1):
            node_obj = await self._read(node, deadline)
            body = change(node_obj)
            if body is None:
                return node_obj, False
            meta = body.setdefault("metadata", {})
            meta["resourceVersion"] = node_obj.metadata.resource_version if node_obj.metadata else None
            try:
                return await self._patch(what, node, body, deadline), True
            except _Conflict:
                continue
        raise WlmError(f"{what} for {self._label(node)}: the node kept changing under us "
                       f"({self._retries + 1} conflicting writes)", node=node, retryable=True)

    def _our_reason(self, node_obj: k8s.V1Node) -> str | None:
        annotations = (node_obj.metadata.annotations if node_obj.metadata else None) or {}
        reason = annotations.get(CORDON_ANNOTATION)
        return reason if isinstance(reason, str) and reason.startswith(REASON_PREFIX) else None

    def _status(self, node: str, node_obj: k8s.V1Node, pods: list[k8s.V1Pod]) -> WlmNodeStatus:
        cordoned = bool(node_obj.spec is not None and node_obj.spec.unschedulable)
        reason = self._our_reason(node_obj)
        taints = [self._api_client.sanitize_for_serialization(t)
                  for t in (node_obj.spec.taints if node_obj.spec else None) or []]
        return WlmNodeStatus(
            node=node, known=True, cordoned=cordoned, ours=cordoned and reason is not None,
            drained=cordoned and not pods, reason=reason, state=_ready_state(node_obj), running=len(pods),
            raw={"k8s_name": self._k8s_name(node),
                 "resourceVersion": node_obj.metadata.resource_version if node_obj.metadata else None,
                 "taints": taints,
                 "pods": [f"{p.metadata.namespace}/{p.metadata.name}" for p in pods if p.metadata]})

    # ---------------------------------------------------------------------------------------- protocol
    async def status(self, node: str) -> WlmNodeStatus:
        deadline = time.monotonic() + self._timeout
        node_obj = await self._read(node, deadline)
        return self._status(node, node_obj, await self._pods(node, deadline))

    async def cordon(self, node: str, reason: str) -> WlmNodeStatus:
        text = f"{REASON_PREFIX} {reason}".strip()

        def change(node_obj: k8s.V1Node) -> dict[str, Any] | None:
            if node_obj.spec is not None and node_obj.spec.unschedulable:
                return None  # ours already (idempotent) or an operator's, whose cordon we leave alone
            return {"metadata": {"annotations": {CORDON_ANNOTATION: text}}, "spec": {"unschedulable": True}}

        node_obj, _ = await self._modify("cordon", node, change)
        deadline = time.monotonic() + self._timeout
        return self._status(node, node_obj, await self._pods(node, deadline))

    async def uncordon(self, node: str) -> bool:
        def change(node_obj: k8s.V1Node) -> dict[str, Any] | None:
            if node_obj.spec is None or not node_obj.spec.unschedulable or self._our_reason(node_obj) is None:
                return None
            # spec.taints has no merge strategy: the whole list is sent, guarded by the resourceVersion
            taints = [self._api_client.sanitize_for_serialization(t) for t in node_obj.spec.taints or []
                      if t.key != self.taint_key]
            return {"metadata": {"annotations": {CORDON_ANNOTATION: None}},
                    "spec": {"unschedulable": False, "taints": taints}}

        _, patched = await self._modify("uncordon", node, change)
        return patched

    async def drain(self, node: str) -> DrainProgress:
        deadline = time.monotonic() + self._timeout
        node_obj = await self._read(node, deadline)
        if node_obj.spec is None or not node_obj.spec.unschedulable:
            raise WlmError(f"refusing to drain {self._label(node)}: it is not cordoned, so evicted pods could be "
                           f"scheduled straight back onto it", node=node, retryable=False)
        pods = await self._pods(node, deadline)
        todo = [p for p in pods if p.metadata is not None and p.metadata.deletion_timestamp is None]
        gate = asyncio.Semaphore(_EVICT_CONCURRENCY)
        blocked: list[str] = []
        failed: list[str] = []
        waits: list[float] = []
        evicted = 0

        async def evict(pod: k8s.V1Pod) -> None:
            nonlocal evicted
            meta = pod.metadata
            assert meta is not None and meta.name is not None and meta.namespace is not None
            body = k8s.V1Eviction(api_version="policy/v1", kind="Eviction",
                                  metadata=k8s.V1ObjectMeta(name=meta.name, namespace=meta.namespace))
            async with gate:
                try:
                    await self._call(f"evict pod {meta.namespace}/{meta.name}", node,
                                     self._core.create_namespaced_pod_eviction, meta.name, meta.namespace, body,
                                     deadline=deadline, no_retry=frozenset({429, 500}))
                    evicted += 1
                except ApiException as exc:
                    if exc.status == 404:
                        evicted += 1  # gone already, which is what we wanted
                    elif exc.status == 429:
                        blocked.append(f"{meta.namespace}/{meta.name}: {_status_message(exc)}")
                        after = _retry_after(exc)
                        if after is not None:
                            waits.append(after)
                    elif exc.status == 500:
                        # e.g. a pod under two budgets, which the eviction subresource refuses until a person
                        # fixes them: this step cannot finish, the next one may (the drain is called again)
                        failed.append(f"{meta.namespace}/{meta.name}: {_status_message(exc)}")
                    else:
                        raise self._error(f"evict pod {meta.namespace}/{meta.name}", node, exc) from exc

        await asyncio.gather(*(evict(p) for p in todo))
        if evicted:
            pods = await self._pods(node, deadline)  # how many are really left (grace periods run on)
        terminating = sum(1 for p in pods if p.metadata is not None and p.metadata.deletion_timestamp is not None)
        parts = []
        if evicted:
            parts.append(f"evicted {evicted}")
        if blocked:
            parts.append(f"{len(blocked)} blocked by a PodDisruptionBudget ({blocked[0]})")
        if failed:
            parts.append(f"{len(failed)} refused by the API server ({failed[0]})")
        if terminating:
            parts.append(f"{terminating} terminating")
        message = ", ".join(parts) if parts else "no pods to evict"
        return DrainProgress(done=not pods, running=len(pods), message=message,
                             retry_after=max(waits) if waits else None)

    async def set_verdict(self, node: str, healthy: bool, message: str) -> None:
        def taints_change(node_obj: k8s.V1Node) -> dict[str, Any] | None:
            current = (node_obj.spec.taints if node_obj.spec else None) or []
            has = any(t.key == self.taint_key and t.effect == "NoSchedule" for t in current)
            if has != healthy:
                return None  # already as it should be: no write, no resourceVersion churn
            taints = [self._api_client.sanitize_for_serialization(t) for t in current if t.key != self.taint_key]
            if not healthy:
                # no timeAdded: the API writes that only for NoExecute taints
                taints.append({"key": self.taint_key, "value": "true", "effect": "NoSchedule"})
            return {"spec": {"taints": taints}}

        node_obj, _ = await self._modify("set verdict taint", node, taints_change)
        conditions = (node_obj.status.conditions if node_obj.status else None) or []
        old = next((c for c in conditions if c.type == self.condition_type), None)
        status = "True" if healthy else "False"
        now = _now()
        changed_at = now if old is None or old.status != status or old.last_transition_time is None \
            else _rfc3339(old.last_transition_time)
        # status.conditions merges on "type" under a strategic merge patch: only our condition is touched
        condition = {"type": self.condition_type, "status": status,
                     "reason": "RedfleetHealthCheckPassed" if healthy else "RedfleetHealthCheckFailed",
                     "message": message, "lastHeartbeatTime": now, "lastTransitionTime": changed_at}
        deadline = time.monotonic() + self._timeout
        try:
            await self._patch("set verdict condition", node, {"status": {"conditions": [condition]}}, deadline,
                              status=True)
        except _Conflict as exc:  # no precondition is sent, so only a server-side conflict gets here
            raise WlmError(f"set verdict condition for {self._label(node)}: {exc}", node=node) from exc

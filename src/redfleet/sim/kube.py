"""A stand-in for the Kubernetes API server: **not** kube-apiserver, only the calls redfleet makes.

No API server can run where redfleet's tests run, so this aiohttp server keeps nodes, pods and
PodDisruptionBudgets in memory and answers the handful of endpoints the remediation adapter uses, following the
documented API behaviour (https://kubernetes.io/docs/reference/kubernetes-api/ and the API conventions):

    GET   /api/v1/nodes[?labelSelector=&fieldSelector=]        NodeList
    GET   /api/v1/nodes/{name}        PATCH the same            Node (PATCH: spec + metadata; status is ignored)
    GET   /api/v1/nodes/{name}/status PATCH the same            Node (PATCH: status + metadata; spec is ignored)
    GET   /api/v1/pods[?fieldSelector=spec.nodeName=X]          PodList over all namespaces
    GET   /api/v1/namespaces/{ns}/pods[/{name}]                 PodList / Pod
    POST  /api/v1/namespaces/{ns}/pods/{name}/eviction          policy/v1 Eviction, honouring PodDisruptionBudgets

PATCH takes ``application/strategic-merge-patch+json`` (what the official Python client sends for a dict body),
``application/merge-patch+json`` (RFC 7386) and ``application/json-patch+json`` (RFC 6902, what it sends for a
list body); other media types get 415. A ``metadata.resourceVersion`` in a patch is a precondition (409 Conflict
when stale); every change bumps one cluster-wide resourceVersion, a no-op patch does not.

Evictions follow the eviction subresource: terminal, pending and already terminating pods are deleted without
consulting a budget; a pod covered by more than one budget gets 500; otherwise the budget's allowed disruptions
(``currentHealthy - desiredHealthy``, healthy meaning Ready and not terminating) decide between 201 and
429 TooManyRequests with a ``DisruptionBudget`` cause. Where a real cluster's disruption controller updates a
budget's status asynchronously, the stand-in computes it at request time (a controller that is never behind).
The real server sends no Retry-After with that 429 (kubernetes/kubernetes#36409); ``pdb_retry_after_s`` makes the
stand-in send one, as an API server behind priority-and-fairness does for its own 429s. An evicted pod is marked
terminating (``deletionTimestamp``) and removed after its grace period, so a drain takes several rounds.

What it leaves out: watches, pagination, server-side apply, authentication, admission, other resources (a pod
has no controller that recreates it: tests add replacements with :meth:`KubeApiStandin.add_pod`). Errors are
``Status`` objects as the real server returns them. Everything is indexed (pods by node and namespace, budgets by
namespace with their matching pods), so 10,000 nodes cost a few MB and per-node calls stay O(pods on the node).
"""

from __future__ import annotations

import asyncio
import copy
import math
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import orjson
from aiohttp import web

Doc = dict[str, Any]
PodKey = tuple[str, str]  # (namespace, name)

_TAINT_EFFECTS = {"NoSchedule", "PreferNoSchedule", "NoExecute"}
_CONDITION_STATUSES = {"True", "False", "Unknown"}
# The node lifecycle controller mirrors spec.unschedulable as this taint; the stand-in does it on every write.
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
# Strategic merge patch: lists that merge element-wise by a key (the patchMergeKey of the Go types we hold);
# every other list is replaced whole (spec.taints among them: it has no patch strategy).
_MERGE_KEYS = {"conditions": "type", "addresses": "type", "ownerReferences": "uid", "containers": "name",
               "volumes": "name", "env": "name"}
_POD_FIELDS = {"spec.nodeName", "metadata.name", "metadata.namespace", "status.phase"}
_NODE_FIELDS = {"metadata.name", "spec.unschedulable"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An error the stand-in answers with a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, *, details: Doc | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def status(self) -> Doc:
        doc: Doc = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            doc["details"] = self.details
        return doc


def _not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind} "{name}" not found', details={"name": name, "kind": kind})


def _invalid(kind: str, name: str, causes: list[Doc]) -> ApiError:
    text = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    return ApiError(422, "Invalid", f'{kind[:-1].capitalize()} "{name}" is invalid: {text}',
                    details={"name": name, "kind": kind[:-1].capitalize(),
                             "causes": [{"reason": "FieldValueInvalid", **c} for c in causes]})


# --------------------------------------------------------------------------------------------------- patches
def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, ``null`` deletes, everything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, key: str | None = None) -> Any:
    """Kubernetes strategic merge patch for the fields the stand-in holds: like a merge patch, but lists in
    :data:`_MERGE_KEYS` merge element by element on their key (``$patch: delete`` removes one) and a map with
    ``$patch: replace`` replaces. ``$setElementOrder``/``$retainKeys`` directives are accepted and ignored."""
    if isinstance(patch, dict):
        directive = patch.get("$patch")
        clean = {k: v for k, v in patch.items() if not k.startswith("$")}
        if directive == "replace":
            return copy.deepcopy(clean)
        if directive == "delete":
            return None
        result = dict(target) if isinstance(target, dict) else {}
        for name, value in clean.items():
            if name.startswith("$setElementOrder/") or name.startswith("$deleteFromPrimitiveList/"):
                continue
            if value is None:
                result.pop(name, None)
            else:
                merged = strategic_merge_patch(result.get(name), value, name)
                if merged is None:
                    result.pop(name, None)
                else:
                    result[name] = merged
        return result
    if isinstance(patch, list) and key in _MERGE_KEYS and isinstance(target, list):
        merge_key = _MERGE_KEYS[key]
        result_list = [copy.deepcopy(item) for item in target]
        for item in patch:
            if not isinstance(item, dict) or merge_key not in item:
                raise ApiError(400, "BadRequest", f"map in list {key} is missing its merge key {merge_key!r}")
            index = next((i for i, old in enumerate(result_list)
                          if isinstance(old, dict) and old.get(merge_key) == item[merge_key]), None)
            if item.get("$patch") == "delete":
                if index is not None:
                    del result_list[index]
            elif index is None:
                result_list.append(strategic_merge_patch({}, item))
            else:
                result_list[index] = strategic_merge_patch(result_list[index], item)
        return result_list
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"JSON pointer {path!r} must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ApiError(422, "Invalid", f"doc is missing path: {path!r}")
    return node


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise ApiError(422, "Invalid", f"doc is missing path: {path!r}")


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    parent = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise ApiError(422, "Invalid", f"unable to remove nonexistent key: {path!r}")


def _add(doc: Any, path: str, value: Any, *, replace: bool = False) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise ApiError(422, "Invalid", f"replace operation does not apply: doc is missing key: {path!r}")
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = copy.deepcopy(value)
            else:
                parent.insert(int(last), copy.deepcopy(value))
        else:
            raise ApiError(422, "Invalid", f"index out of range in {path!r}")
    else:
        raise ApiError(422, "Invalid", f"doc is missing path: {path!r}")
    return doc


def json_patch(target: Doc, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test), applied to a copy."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "json patch body must be a list of operations")
    doc: Any = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ApiError(400, "BadRequest", f"invalid json patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, op.get("value"))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            doc = _add(doc, path, op.get("value"), replace=True)
        elif kind in ("move", "copy"):
            value = _remove(doc, op["from"]) if kind == "move" else copy.deepcopy(_get(doc, op["from"]))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise ApiError(422, "Invalid", f"testing value {path!r} failed")
        else:
            raise ApiError(400, "BadRequest", f"unexpected json patch operation {kind!r}")
    return doc


# -------------------------------------------------------------------------------------------------- selectors
Requirement = tuple[str, str, frozenset[str]]  # (key, operator, values)


def _split_top(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str) -> list[Requirement]:
    """The label selector grammar of list calls: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``,
    ``a in (x,y)``, ``a notin (x,y)``, comma-separated (all must hold)."""
    reqs: list[Requirement] = []
    for part in _split_top(text):
        lowered = f" {part} "
        for word in (" notin ", " in "):
            if word in lowered and "(" in part and part.endswith(")"):
                key, _, rest = part.partition(word.strip())
                values = frozenset(v.strip() for v in rest.strip()[1:-1].split(",") if v.strip())
                reqs.append((key.strip(), word.strip(), values))
                break
        else:
            if "!=" in part:
                key, _, value = part.partition("!=")
                reqs.append((key.strip(), "notin", frozenset([value.strip()])))
            elif "=" in part:
                key, _, value = part.partition("==" if "==" in part else "=")
                reqs.append((key.strip(), "in", frozenset([value.strip()])))
            elif part.startswith("!"):
                reqs.append((part[1:].strip(), "doesnotexist", frozenset()))
            else:
                reqs.append((part, "exists", frozenset()))
        if not reqs[-1][0]:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r}")
    return reqs


def selector_requirements(selector: Doc) -> list[Requirement]:
    """A ``metav1.LabelSelector`` (matchLabels + matchExpressions) as requirements; empty matches everything."""
    reqs: list[Requirement] = [(k, "in", frozenset([v])) for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op = str(expr.get("operator", "")).lower()
        if op not in ("in", "notin", "exists", "doesnotexist"):
            raise ApiError(422, "Invalid", f"invalid label selector operator {expr.get('operator')!r}")
        reqs.append((expr["key"], op, frozenset(expr.get("values") or [])))
    return reqs


def labels_match(labels: dict[str, str], reqs: list[Requirement]) -> bool:
    for key, op, values in reqs:
        present = key in labels
        if op == "in" and not (present and labels[key] in values):
            return False
        if op == "notin" and present and labels[key] in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "doesnotexist" and present:
            return False
    return True


def parse_field_selector(text: str, allowed: set[str]) -> list[tuple[str, bool, str]]:
    """``field=value``/``field==value``/``field!=value``, comma-separated; unknown fields are a 400 as upstream."""
    out = []
    for part in _split_top(text):
        negate = "!=" in part
        name, _, value = part.partition("!=" if negate else ("==" if "==" in part else "="))
        name = name.strip()
        if name not in allowed:
            raise ApiError(400, "BadRequest", f'Unable to find "/v1, Resource=..." that match label selector "", '
                                              f'field selector "{text}": field label not supported: {name}')
        out.append((name, not negate, value.strip()))
    return out


def _field(doc: Doc, dotted: str) -> str:
    value: Any = doc
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def fields_match(doc: Doc, reqs: list[tuple[str, bool, str]]) -> bool:
    return all((_field(doc, name) == value) == equal for name, equal, value in reqs)


# ------------------------------------------------------------------------------------------------- the store
@dataclass
class _Pdb:
    namespace: str
    name: str
    selector: list[Requirement]
    min_available: int | str | None
    max_unavailable: int | str | None
    unhealthy_policy: str
    pods: set[PodKey] = field(default_factory=set)  # matching pods, kept current on add/delete
    # running tallies over ``pods`` so an eviction costs O(1), not O(pods in the namespace)
    expected: int = 0  # not finished (Succeeded/Failed)
    healthy: int = 0  # Ready and not terminating

    def account(self, pod: Doc, sign: int) -> None:
        finished = pod["status"]["phase"] in ("Succeeded", "Failed")
        self.expected += sign * (not finished)
        self.healthy += sign * (not finished and _pod_ready(pod) and "deletionTimestamp" not in pod["metadata"])


def _scaled(value: int | str, total: int) -> int:
    """IntOrString scaled against ``total``, percentages rounding up (as the disruption controller does)."""
    if isinstance(value, int):
        return value
    return math.ceil(int(value.rstrip("%")) * total / 100)


def _pod_ready(pod: Doc) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


class KubeApiStandin:
    """An in-memory stand-in Kubernetes API server (see the module docstring for what it does and leaves out).

    ``pod_grace_s``: how long an evicted pod stays terminating before it disappears (unless the Eviction's
    deleteOptions say otherwise). ``host``/``port``: the default listen address (port 0 picks a free one; the
    chosen one is in :attr:`url` once started). ``pdb_retry_after_s``: send ``Retry-After`` with budget 429s
    (upstream does not).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, pod_grace_s: float = 0.0,
                 pdb_retry_after_s: int | None = None) -> None:
        self.pod_grace_s = pod_grace_s
        self.pdb_retry_after_s = pdb_retry_after_s
        self.nodes: dict[str, Doc] = {}
        self.pods: dict[PodKey, Doc] = {}
        self.pdbs: dict[PodKey, _Pdb] = {}
        self.requests: Counter[str] = Counter()  # "METHOD route" -> count, for tests and benchmarks
        self._pods_by_node: dict[str, set[PodKey]] = {}
        self._pods_by_ns: dict[str, set[PodKey]] = {}
        self._pdbs_by_ns: dict[str, set[PodKey]] = {}
        self._rv = 1000
        self._fail_next: list[int] = []
        self._runner: web.AppRunner | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self.host = host  # where start() (and ``async with``) binds unless told otherwise; port 0: a free one
        self.port = port

    # ---------------------------------------------------------------------------------------- seeding
    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _meta(self, name: str, namespace: str | None, labels: dict[str, str] | None) -> Doc:
        meta: Doc = {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": self._bump(),
                     "creationTimestamp": _now(), "labels": dict(labels or {})}
        if namespace is not None:
            meta["namespace"] = namespace
        return meta

    def add_node(self, name: str, *, labels: dict[str, str] | None = None, ready: bool = True,
                 unschedulable: bool = False) -> Doc:
        now = _now()
        node: Doc = {
            "metadata": self._meta(name, None, {"kubernetes.io/hostname": name, **(labels or {})}),
            "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "reason": "KubeletReady" if ready else "KubeletNotReady",
                                       "message": "kubelet is posting ready status",
                                       "lastHeartbeatTime": now, "lastTransitionTime": now}],
                       "addresses": [{"type": "Hostname", "address": name}],
                       # every field the API marks required, as a kubelet reports them
                       "nodeInfo": {"machineID": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,
                                    "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
                                    "bootID": str(uuid.uuid4()), "kernelVersion": "6.1.0-standin",
                                    "osImage": "stand-in", "containerRuntimeVersion": "containerd://1.7.0",
                                    "kubeletVersion": "v1.31.0", "kubeProxyVersion": "v1.31.0",
                                    "operatingSystem": "linux", "architecture": "amd64"}},
        }
        node["metadata"]["annotations"] = {}
        if unschedulable:
            node["spec"]["unschedulable"] = True
        self._sync_unschedulable_taint(node)
        self.nodes[name] = node
        return node

    def add_pod(self, namespace: str, name: str, node: str | None, *, labels: dict[str, str] | None = None,
                owner_kind: str | None = None, phase: str = "Running", ready: bool = True,
                annotations: dict[str, str] | None = None) -> Doc:
        """A pod bound to ``node``; ``owner_kind`` ("DaemonSet", "ReplicaSet"...) makes a controller reference.
        Mirror (static) pods are seeded with the ``kubernetes.io/config.mirror`` annotation."""
        meta = self._meta(name, namespace, labels)
        meta["annotations"] = dict(annotations or {})
        if owner_kind:
            meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner_kind, "name": f"{name}-owner",
                                        "uid": str(uuid.uuid4()), "controller": True,
                                        "blockOwnerDeletion": True}]
        running = phase == "Running"
        pod: Doc = {
            "metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "registry.invalid/app:1"}],
                     "terminationGracePeriodSeconds": 30} if node else
                    {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]},
            "status": {"phase": phase,
                       "conditions": [{"type": "Ready", "status": "True" if running and ready else "False"}]},
        }
        key = (namespace, name)
        if key in self.pods:
            self._delete_pod(key)
        self.pods[key] = pod
        self._pods_by_ns.setdefault(namespace, set()).add(key)
        if node:
            self._pods_by_node.setdefault(node, set()).add(key)
        for pdb_key in self._pdbs_by_ns.get(namespace, ()):
            pdb = self.pdbs[pdb_key]
            if labels_match(meta["labels"], pdb.selector):
                pdb.pods.add(key)
                pdb.account(pod, +1)
        return pod

    def add_pdb(self, namespace: str, name: str, selector: Doc | dict[str, str], *,
                min_available: int | str | None = None, max_unavailable: int | str | None = None,
                unhealthy_pod_eviction_policy: str = "IfHealthyBudget") -> None:
        """A policy/v1 PodDisruptionBudget; ``selector`` is a LabelSelector or plain matchLabels."""
        if (min_available is None) == (max_unavailable is None):
            raise ValueError("a PodDisruptionBudget takes exactly one of min_available and max_unavailable")
        if "matchLabels" not in selector and "matchExpressions" not in selector:
            selector = {"matchLabels": selector}
        pdb = _Pdb(namespace, name, selector_requirements(selector), min_available, max_unavailable,
                   unhealthy_pod_eviction_policy)
        pdb.pods = {k for k in self._pods_by_ns.get(namespace, ())
                    if labels_match(self.pods[k]["metadata"]["labels"], pdb.selector)}
        for key in pdb.pods:
            pdb.account(self.pods[key], +1)
        self.pdbs[(namespace, name)] = pdb
        self._pdbs_by_ns.setdefault(namespace, set()).add((namespace, name))
        self._bump()

    def remove_pdb(self, namespace: str, name: str) -> None:
        self.pdbs.pop((namespace, name), None)
        self._pdbs_by_ns.get(namespace, set()).discard((namespace, name))
        self._bump()

    def pdb_status(self, namespace: str, name: str) -> Doc:
        """The status the disruption controller would publish: currentHealthy, desiredHealthy, expectedPods,
        disruptionsAllowed."""
        pdb = self.pdbs[(namespace, name)]
        expected, healthy = pdb.expected, pdb.healthy
        if pdb.min_available is not None:
            desired = _scaled(pdb.min_available, expected)
        else:
            assert pdb.max_unavailable is not None
            desired = max(0, expected - _scaled(pdb.max_unavailable, expected))
        return {"currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
                "disruptionsAllowed": max(0, healthy - desired)}

    def pods_on(self, node: str) -> list[Doc]:
        return [self.pods[k] for k in sorted(self._pods_by_node.get(node, ()))]

    def fail_next(self, count: int, status: int = 503) -> None:
        """The next ``count`` requests get ``status`` (a Status object), as an overloaded server would."""
        self._fail_next.extend([status] * count)

    def _delete_pod(self, key: PodKey) -> None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return
        self._pods_by_ns.get(key[0], set()).discard(key)
        node = pod["spec"].get("nodeName")
        if node:
            self._pods_by_node.get(node, set()).discard(key)
        for pdb in self._pdbs_of(key):
            pdb.pods.discard(key)
            pdb.account(pod, -1)
        self._bump()

    def _pdbs_of(self, key: PodKey) -> list[_Pdb]:
        return [self.pdbs[k] for k in sorted(self._pdbs_by_ns.get(key[0], ())) if key in self.pdbs[k].pods]

    @staticmethod
    def _sync_unschedulable_taint(node: Doc) -> None:
        taints = [t for t in node["spec"].get("taints") or [] if t.get("key") != UNSCHEDULABLE_TAINT]
        if node["spec"].get("unschedulable"):
            existing = next((t for t in node["spec"].get("taints") or [] if t.get("key") == UNSCHEDULABLE_TAINT),
                            None)
            taints.append(existing or {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule", "timeAdded": _now()})
        if taints:
            node["spec"]["taints"] = taints
        else:
            node["spec"].pop("taints", None)

    # -------------------------------------------------------------------------------------- server
    async def start(self, host: str | None = None, port: int | None = None) -> str:
        host = self.host if host is None else host
        port = self.port if port is None else port
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/v1/nodes", self._list_nodes)
        app.router.add_get("/api/v1/nodes/{name}", self._get_node)
        app.router.add_patch("/api/v1/nodes/{name}", self._patch_node)
        app.router.add_get("/api/v1/nodes/{name}/status", self._get_node)
        app.router.add_patch("/api/v1/nodes/{name}/status", self._patch_node_status)
        app.router.add_get("/api/v1/pods", self._list_pods)
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self._list_pods)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", self._get_pod)
        app.router.add_post("/api/v1/namespaces/{ns}/pods/{name}/eviction", self._evict)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.host, self.port = host, int(self._runner.addresses[0][1])
        return self.url

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
        self.requests[f"{request.method} {route}"] += 1
        try:
            if self._fail_next:
                code = self._fail_next.pop(0)
                raise ApiError(code, "InternalError" if code == 500 else "ServiceUnavailable",
                               f"the stand-in was told to fail this request with {code}")
            result: web.StreamResponse = await handler(request)
            return result
        except ApiError as err:
            headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
            return _json(err.status(), err.code, headers)
        except web.HTTPMethodNotAllowed as err:
            return _json(ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the "
                                                           f"requested resource ({err.method})").status(), 405)
        except web.HTTPNotFound:
            return _json(ApiError(404, "NotFound", "the server could not find the requested resource").status(), 404)

    # ------------------------------------------------------------------------------------- handlers
    def _node(self, name: str) -> Doc:
        node = self.nodes.get(name)
        if node is None:
            raise _not_found("nodes", name)
        return node

    async def _get_node(self, request: web.Request) -> web.Response:
        return _json({"kind": "Node", "apiVersion": "v1", **self._node(request.match_info["name"])})

    async def _list_nodes(self, request: web.Request) -> web.Response:
        labels = parse_label_selector(request.query.get("labelSelector", ""))
        fields = parse_field_selector(request.query.get("fieldSelector", ""), _NODE_FIELDS)
        items = [n for _, n in sorted(self.nodes.items())
                 if labels_match(n["metadata"]["labels"], labels) and fields_match(n, fields)]
        return _json({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": str(self._rv)},
                      "items": items})

    async def _patch_node(self, request: web.Request) -> web.Response:
        return await self._patch(request, subresource=False)

    async def _patch_node_status(self, request: web.Request) -> web.Response:
        return await self._patch(request, subresource=True)

    async def _patch(self, request: web.Request, *, subresource: bool) -> web.Response:
        name = request.match_info["name"]
        old = self._node(name)
        media = request.content_type
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "BadRequest", f"error decoding patch: {exc}") from exc
        current = {"kind": "Node", "apiVersion": "v1", **old}
        if media == "application/strategic-merge-patch+json":
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "strategic merge patch body must be a JSON object")
            patched = strategic_merge_patch(current, body)
        elif media == "application/merge-patch+json":
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "merge patch body must be a JSON object")
            patched = merge_patch(current, body)
        elif media == "application/json-patch+json":
            patched = json_patch(current, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                                                        f'accepted media types include: application/json-patch+json, '
                                                        f'application/merge-patch+json, '
                                                        f'application/strategic-merge-patch+json (got "{media}")')
        if not isinstance(patched, dict):
            raise ApiError(400, "BadRequest", "the patched object is not a JSON object")
        meta: Doc = patched["metadata"] if isinstance(patched.get("metadata"), dict) else {}
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest", f"the name of the object ({meta.get('name')}) does not match "
                                              f"the name on the URL ({name})")
        if meta.get("resourceVersion") != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on nodes "{name}": the object has '
                                            f'been modified; please apply your changes to the latest version and '
                                            f'try again', details={"name": name, "kind": "nodes"})
        new = {"metadata": {**old["metadata"], "labels": meta.get("labels") or {},
                            "annotations": meta.get("annotations") or {}},
               # the main resource ignores status, the status subresource ignores spec (node strategies)
               "spec": old["spec"] if subresource else (patched.get("spec") or {}),
               "status": (patched.get("status") or {}) if subresource else old["status"]}
        self._validate_node(name, new)
        self._sync_unschedulable_taint(new)
        if new != old:
            new["metadata"]["resourceVersion"] = self._bump()
            self.nodes[name] = new
        return _json({"kind": "Node", "apiVersion": "v1", **self.nodes[name]})

    @staticmethod
    def _validate_node(name: str, node: Doc) -> None:
        causes: list[Doc] = []
        for part in ("labels", "annotations"):
            for key, value in node["metadata"][part].items():
                if not isinstance(value, str):
                    causes.append({"field": f"metadata.{part}[{key}]", "message": "must be a string"})
        spec, status = node["spec"], node["status"]
        if not isinstance(spec, dict) or not isinstance(status, dict):
            raise _invalid("nodes", name, [{"field": "spec", "message": "must be an object"}])
        if "unschedulable" in spec and not isinstance(spec["unschedulable"], bool):
            causes.append({"field": "spec.unschedulable", "message": "must be a boolean"})
        seen: set[tuple[str, str]] = set()
        for i, taint in enumerate(spec.get("taints") or []):
            if not isinstance(taint, dict) or not taint.get("key"):
                causes.append({"field": f"spec.taints[{i}].key", "message": "Required value"})
                continue
            if taint.get("effect") not in _TAINT_EFFECTS:
                causes.append({"field": f"spec.taints[{i}].effect",
                               "message": f"Unsupported value: {taint.get('effect')!r}"})
            pair = (taint["key"], str(taint.get("effect")))
            if pair in seen:
                causes.append({"field": "spec.taints", "message": f"taints must be unique by key and effect pair "
                                                                  f"({pair[0]}:{pair[1]})"})
            seen.add(pair)
        for i, cond in enumerate(status.get("conditions") or []):
            if not isinstance(cond, dict) or not cond.get("type"):
                causes.append({"field": f"status.conditions[{i}].type", "message": "Required value"})
            elif cond.get("status") not in _CONDITION_STATUSES:
                causes.append({"field": f"status.conditions[{i}].status",
                               "message": f"Unsupported value: {cond.get('status')!r}"})
        if causes:
            raise _invalid("nodes", name, causes)

    async def _list_pods(self, request: web.Request) -> web.Response:
        ns = request.match_info.get("ns")
        labels = parse_label_selector(request.query.get("labelSelector", ""))
        fields = parse_field_selector(request.query.get("fieldSelector", ""), _POD_FIELDS)
        # narrow by the cheapest index first so a per-node list stays O(pods on that node) at fleet scale
        node = next((value for name, equal, value in fields if name == "spec.nodeName" and equal), None)
        keys: set[PodKey] | list[PodKey]
        if node is not None:
            keys = self._pods_by_node.get(node, set())
        elif ns is not None:
            keys = self._pods_by_ns.get(ns, set())
        else:
            keys = list(self.pods)
        items = []
        for key in sorted(keys):
            pod = self.pods[key]
            if (ns is None or key[0] == ns) and labels_match(pod["metadata"]["labels"], labels) \
                    and fields_match(pod, fields):
                items.append(pod)
        return _json({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(self._rv)},
                      "items": items})

    async def _get_pod(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        if key not in self.pods:
            raise _not_found("pods", key[1])
        return _json({"kind": "Pod", "apiVersion": "v1", **self.pods[key]})

    async def _evict(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "BadRequest", f"error decoding Eviction: {exc}") from exc
        if not isinstance(body, dict) or body.get("kind", "Eviction") != "Eviction":
            raise ApiError(400, "BadRequest", "the body of an eviction request must be an Eviction object")
        if (body.get("metadata") or {}).get("name", name) != name:
            raise ApiError(400, "BadRequest", "name in URL does not match name in Eviction object")
        key = (ns, name)
        pod = self.pods.get(key)
        if pod is None:
            raise _not_found("pods", name)
        options = body.get("deleteOptions") or {}
        grace = options.get("gracePeriodSeconds")
        grace_s = float(grace) if isinstance(grace, int | float) else self.pod_grace_s
        meta, phase = pod["metadata"], pod["status"]["phase"]
        # pods that cannot count towards a budget are deleted without consulting one (eviction subresource)
        if phase in ("Succeeded", "Failed", "Pending") or "deletionTimestamp" in meta:
            self._terminate(key, 0.0 if phase != "Running" else grace_s)
            return _success()
        matching = self._pdbs_of(key)
        if len(matching) > 1:
            raise ApiError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the "
                                                 "eviction subresource does not support.")
        if matching:
            pdb = matching[0]
            status = self.pdb_status(ns, pdb.name)
            budget_ok = status["currentHealthy"] >= status["desiredHealthy"] and status["desiredHealthy"] > 0
            unready_free = not _pod_ready(pod) and (pdb.unhealthy_policy == "AlwaysAllow" or budget_ok)
            if not unready_free and status["disruptionsAllowed"] <= 0:
                details: Doc = {"causes": [{"reason": "DisruptionBudget",
                                            "message": f"The disruption budget {pdb.name} needs "
                                                       f"{status['desiredHealthy']} healthy pods and has "
                                                       f"{status['currentHealthy']} currently"}]}
                if self.pdb_retry_after_s is not None:
                    details["retryAfterSeconds"] = self.pdb_retry_after_s
                raise ApiError(429, "TooManyRequests",
                               "Cannot evict pod as it would violate the pod's disruption budget.",
                               details=details, retry_after=self.pdb_retry_after_s)
        self._terminate(key, grace_s)
        return _success()

    def _terminate(self, key: PodKey, grace_s: float) -> None:
        pod = self.pods[key]
        if grace_s <= 0:
            self._delete_pod(key)
            return
        if "deletionTimestamp" in pod["metadata"]:
            return  # already terminating: its removal is scheduled
        budgets = self._pdbs_of(key)
        for pdb in budgets:
            pdb.account(pod, -1)
        pod["metadata"]["deletionTimestamp"] = _now()
        for pdb in budgets:
            pdb.account(pod, +1)
        pod["metadata"]["deletionGracePeriodSeconds"] = math.ceil(grace_s)
        pod["metadata"]["resourceVersion"] = self._bump()
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def remove() -> None:
            if timer is not None:
                self._timers.discard(timer)
            if self.pods.get(key) is pod:
                self._delete_pod(key)

        timer = loop.call_later(grace_s, remove)
        self._timers.add(timer)


def _success() -> web.Response:
    # the eviction subresource answers a created Eviction with a success Status
    return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201)


def _json(doc: Doc, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json", headers=headers)

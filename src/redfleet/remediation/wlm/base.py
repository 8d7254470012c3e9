"""The one small interface redfleet needs from a workload manager (Slurm, Kubernetes, or none).

Every method is a coroutine with its own timeout and bounded retries inside the adapter; an adapter raises
:class:`WlmError` with a message naming the node and what the manager said. The adapter never undoes an operator's
own cordon: a cordon is *ours* only when it carries :data:`REASON_PREFIX` (Slurm's Reason) or our annotation
(Kubernetes), and :meth:`WorkloadManager.uncordon` refuses anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

REASON_PREFIX = "redfleet:"


class WlmError(Exception):
    """The workload manager refused or did not answer; ``retryable`` says whether trying later may help."""

    def __init__(self, message: str, *, node: str | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.node = node
        self.retryable = retryable


@dataclass(frozen=True)
class WlmNodeStatus:
    node: str
    known: bool  # the manager knows the node
    cordoned: bool  # no new work is scheduled on it (Slurm DRAIN/DRAINED/DOWN..., k8s unschedulable)
    ours: bool  # the cordon carries redfleet's prefix/annotation
    drained: bool  # cordoned and nothing left running on it that we must wait for
    reason: str | None = None  # Slurm Reason / our annotation's text
    state: str | None = None  # the manager's own word (Slurm "IDLE+DRAIN", k8s "Ready,SchedulingDisabled")
    running: int = 0  # jobs / evictable pods still there
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DrainProgress:
    done: bool
    running: int  # jobs or pods still on the node
    message: str = ""
    retry_after: float | None = None  # e.g. a PodDisruptionBudget said 429


@runtime_checkable
class WorkloadManager(Protocol):
    name: str  # "slurm" | "kubernetes" | "none"

    async def status(self, node: str) -> WlmNodeStatus: ...

    async def cordon(self, node: str, reason: str) -> WlmNodeStatus:
        """Stop new work on ``node`` with ``REASON_PREFIX + " " + reason``. Idempotent. If an operator already
        cordoned it (no prefix), leave their reason alone and return a status with ``ours=False``."""
        ...

    async def drain(self, node: str) -> DrainProgress:
        """One step of draining (call again until ``done``): Slurm waits for jobs under DRAIN; Kubernetes evicts
        pods through the Eviction API (429 from a PodDisruptionBudget -> not done, ``retry_after``)."""
        ...

    async def uncordon(self, node: str) -> bool:
        """Return the node to service if, and only if, the cordon is ours. False (and nothing changed) when the
        cordon is an operator's or the node is not cordoned."""
        ...

    async def set_verdict(self, node: str, healthy: bool, message: str) -> None:
        """Publish redfleet's verdict where the manager shows it (k8s taint + node condition; Slurm: no-op)."""
        ...

    async def close(self) -> None: ...

"""Workload-manager adapters behind :class:`~redfleet.remediation.wlm.base.WorkloadManager`."""

from __future__ import annotations

from typing import Any

from redfleet.remediation.wlm.base import REASON_PREFIX, DrainProgress, WlmError, WlmNodeStatus, WorkloadManager

WLM_KINDS = ("none", "slurm", "kubernetes")


def make_wlm(kind: str, **options: Any) -> WorkloadManager:
    """``none`` | ``slurm`` (options: conf, scontrol) | ``kubernetes`` (options: kubeconfig, context)."""
    if kind == "none":
        from redfleet.remediation.wlm.none import NoneManager

        return NoneManager()
    if kind == "slurm":
        from redfleet.remediation.wlm.slurm import SlurmManager

        return SlurmManager(**{k: v for k, v in options.items() if v is not None})
    if kind == "kubernetes":
        from redfleet.remediation.wlm.kubernetes import KubernetesManager

        return KubernetesManager(**{k: v for k, v in options.items() if v is not None})
    raise ValueError(f"unknown workload manager {kind!r}; use one of {', '.join(WLM_KINDS)}")


__all__ = ["REASON_PREFIX", "WLM_KINDS", "DrainProgress", "WlmError", "WlmNodeStatus", "WorkloadManager", "make_wlm"]

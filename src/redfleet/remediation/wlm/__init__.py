"""Workload-manager adapters behind :class:`~redfleet.remediation.wlm.base.WorkloadManager`."""

from redfleet.remediation.wlm.base import REASON_PREFIX, DrainProgress, WlmError, WlmNodeStatus, WorkloadManager

__all__ = ["REASON_PREFIX", "DrainProgress", "WlmError", "WlmNodeStatus", "WorkloadManager"]

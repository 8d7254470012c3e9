"""No workload manager: BMC-level remediation only. Cordon state is remembered here so that the workflow's
"ours" logic stays the same whichever manager is configured."""

from __future__ import annotations

from redfleet.remediation.wlm.base import REASON_PREFIX, DrainProgress, WlmNodeStatus


class NoneManager:
    name = "none"

    def __init__(self) -> None:
        self._cordoned: dict[str, str] = {}

    async def status(self, node: str) -> WlmNodeStatus:
        reason = self._cordoned.get(node)
        return WlmNodeStatus(node=node, known=True, cordoned=reason is not None, ours=reason is not None,
                             drained=reason is not None, reason=reason, state="cordoned" if reason else "idle")

    async def cordon(self, node: str, reason: str) -> WlmNodeStatus:
        self._cordoned.setdefault(node, f"{REASON_PREFIX} {reason}")
        return await self.status(node)

    async def drain(self, node: str) -> DrainProgress:
        return DrainProgress(done=True, running=0, message="no workload manager: nothing to drain")

    async def uncordon(self, node: str) -> bool:
        return self._cordoned.pop(node, None) is not None

    async def set_verdict(self, node: str, healthy: bool, message: str) -> None:
        return None

    async def close(self) -> None:
        return None

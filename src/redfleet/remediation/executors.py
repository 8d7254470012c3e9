"""What remediation does to hardware, and how: BMC power (Redfish, or IPMI for ``ipmi://`` nodes), re-image hooks,
an operator's gate command. Each call is bounded by a timeout and logged with who/what/why by the layer below
(:func:`redfleet.redfish.actions.log_action`, the IPMI client) and audited by the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redfleet.redfish.fleet import NodeTarget
from redfleet.redfish.tls import TLSPolicy


class ExecutorError(Exception):
    pass


@dataclass
class CommandRun:
    ok: bool
    returncode: int | None
    output: str


class Executor:
    """``targets`` maps node name -> :class:`NodeTarget` (BMC URL + credentials); ``refresh`` reloads it (new
    nodes imported while serve runs)."""

    def __init__(self, targets: dict[str, NodeTarget] | None = None, *, pin_store: Any = None, tls_mode: str = "pin",
                 timeout: float = 60.0, refresh: Callable[[], dict[str, NodeTarget]] | None = None) -> None:
        self.targets = dict(targets or {})
        self.pin_store = pin_store
        self.tls_mode = tls_mode
        self.timeout = timeout
        self.refresh = refresh

    def target(self, node: str) -> NodeTarget:
        t = self.targets.get(node)
        if t is None and self.refresh is not None:
            self.targets = self.refresh()
            t = self.targets.get(node)
        if t is None:
            raise ExecutorError(f"{node}: no BMC is known for this node")
        return t

    def _client(self, t: NodeTarget) -> Any:
        from redfleet.redfish.client import RedfishClient

        tls = TLSPolicy(self.tls_mode, pin_store=self.pin_store, fingerprint=t.fingerprint)  # type: ignore[arg-type]
        return RedfishClient(t.url, t.username, t.password, tls=tls, name=t.name)

    async def power(self, node: str, action: str, *, actor: str, reason: str) -> str:
        """Send a power action; returns what the BMC was asked (ResetType, or the IPMI verb)."""
        t = self.target(node)
        try:
            async with asyncio.timeout(self.timeout):
                if t.is_ipmi:
                    from redfleet.ipmi import IpmiClient

                    async with IpmiClient.from_url(t.url, t.username, t.password) as ic:
                        return str(await ic.power(action, actor=actor, reason=reason))
                from redfleet.redfish.actions import power

                async with self._client(t) as client:
                    return await power(client, action, actor=actor, reason=reason)
        except TimeoutError:
            raise ExecutorError(f"{node}: power {action} got no answer from {t.url} within {self.timeout:g} s") \
                from None

    async def boot(self, node: str, target: str, *, once: bool, actor: str, reason: str) -> dict[str, Any]:
        t = self.target(node)
        if t.is_ipmi:
            raise ExecutorError(f"{node}: boot override through IPMI is not supported here; use Redfish")
        from redfleet.redfish.actions import set_boot_override

        async with asyncio.timeout(self.timeout), self._client(t) as client:
            return await set_boot_override(client, target, once=once, actor=actor, reason=reason)

    async def reimage_virtual_media(self, node: str, image: str, *, actor: str, reason: str) -> str:
        """Insert ``image`` as virtual CD, boot from it once, power-cycle: the provisioning system takes over."""
        t = self.target(node)
        if t.is_ipmi:
            raise ExecutorError(f"{node}: re-image by virtual media needs Redfish; this node has only IPMI")
        from redfleet.redfish.actions import insert_virtual_media, power, set_boot_override

        async with asyncio.timeout(self.timeout * 3), self._client(t) as client:
            await insert_virtual_media(client, image, actor=actor, reason=reason)
            await set_boot_override(client, "cd", once=True, actor=actor, reason=reason)
            return await power(client, "cycle", actor=actor, reason=reason)


async def run_command(argv: list[str], *, env: dict[str, str], timeout: float) -> CommandRun:  # noqa: ASYNC109
    """An operator's hook (re-image, health gate): exit 0 passes. Killed at ``timeout``."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **env})
    except OSError as exc:
        return CommandRun(False, None, f"could not start {argv[0]}: {exc.strerror or exc}")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return CommandRun(False, None, f"{argv[0]} still running after {timeout:g} s: killed")
    text = out.decode(errors="replace")[-4000:]
    return CommandRun(proc.returncode == 0, proc.returncode, text)

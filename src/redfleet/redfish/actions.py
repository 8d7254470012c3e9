"""Actions on a BMC: power, boot override, virtual media, Manager (BMC) reset.

Every state-changing call is logged on the ``redfleet.audit`` logger with who asked, what was done to which BMC,
why, and the outcome (``extra={"audit": {...}}`` for structured handlers; the message itself reads well too).
Values are checked against what the BMC advertises (``@Redfish.AllowableValues`` / ActionInfo) before sending,
and the nearest supported alternative is used where one is safe (``PowerCycle`` -> ``ForceRestart`` is *not*
considered equivalent; ``cycle`` falls back to ``ForceOff`` + ``On``).
"""

# ruff: noqa: ASYNC109  (per-request timeouts are part of the API: each kind of resource has its own)
from __future__ import annotations

import asyncio
import getpass
import logging
import time
from typing import Any, Literal

from redfleet.redfish import uri as U
from redfleet.redfish.client import ActionResult, RedfishClient
from redfleet.redfish.errors import ActionNotSupported, RedfishError

audit = logging.getLogger("redfleet.audit")

PowerAction = Literal["status", "on", "off", "graceful", "cycle", "reset", "graceful-restart", "nmi"]

# our verb -> ResetType values to try, in order of preference
POWER_RESET_TYPES: dict[str, list[str]] = {
    "on": ["On", "ForceOn"],
    "off": ["ForceOff"],
    "graceful": ["GracefulShutdown"],
    "cycle": ["PowerCycle"],
    "reset": ["ForceRestart"],
    "graceful-restart": ["GracefulRestart"],
    "nmi": ["Nmi"],
}


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry
        return "unknown"


def log_action(client: RedfishClient, what: str, target: str | None, *, actor: str | None, reason: str | None,
               outcome: str, detail: dict[str, Any] | None = None, level: int = logging.INFO) -> None:
    record = {
        "who": _actor(actor),
        "what": what,
        "bmc": client.base_url,
        "node": client.name,
        "target": target,
        "why": reason or "",
        "outcome": outcome,
        **(detail or {}),
    }
    audit.log(level, "%s by %s on %s (%s): %s%s", what, record["who"], client.name, target or "-", outcome,
              f" — why: {reason}" if reason else "", extra={"audit": record})


async def _systems(client: RedfishClient) -> list[dict[str, Any]]:
    coll = client.caps.services.get("Systems")
    if not coll:
        raise ActionNotSupported("service root has no Systems", bmc=client.base_url)
    return await client.get_members(coll, ignore_errors=False)


async def primary_system(client: RedfishClient, system: str | None = None) -> dict[str, Any]:
    """The system to act on: the one named (Id or URI), else the first that offers ComputerSystem.Reset
    (skipping e.g. an HGX baseboard system that has no host power control)."""
    systems = await _systems(client)
    if system:
        for s in systems:
            if system in (s.get("Id"), U.odata_id(s)) or U.key(system) == U.key(U.odata_id(s) or ""):
                return s
        raise ActionNotSupported(f"no system {system!r} on this BMC", bmc=client.base_url)
    for s in systems:
        if "#ComputerSystem.Reset" in (s.get("Actions") or {}):
            return s
    if systems:
        return systems[0]
    raise ActionNotSupported("BMC lists no systems", bmc=client.base_url)


async def allowable(client: RedfishClient, action: dict[str, Any], parameter: str) -> list[str] | None:
    """Allowed values of an action parameter: inline ``<param>@Redfish.AllowableValues`` or the ActionInfo."""
    inline = action.get(f"{parameter}@Redfish.AllowableValues")
    if isinstance(inline, list):
        return [str(v) for v in inline]
    info_uri = action.get("@Redfish.ActionInfo")
    if isinstance(info_uri, str):
        info = await client.try_get(info_uri)
        for p in (info or {}).get("Parameters") or []:
            if isinstance(p, dict) and p.get("Name") == parameter and isinstance(p.get("AllowableValues"), list):
                return [str(v) for v in p["AllowableValues"]]
    return None


async def power_state(client: RedfishClient, system: str | None = None) -> str:
    s = await primary_system(client, system)
    fresh = await client.get(U.odata_id(s) or "", cache=False)
    return str(fresh.get("PowerState") or "Unknown")


async def _reset(client: RedfishClient, resource: dict[str, Any], action_name: str, choices: list[str],
                 extra: dict[str, Any] | None = None) -> tuple[str, ActionResult]:
    actions = resource.get("Actions") or {}
    action = actions.get(action_name)
    if not isinstance(action, dict) or not action.get("target"):
        raise ActionNotSupported(f"{U.odata_id(resource)} offers no {action_name}", bmc=client.base_url)
    allowed = await allowable(client, action, "ResetType")
    chosen = None
    for c in choices:
        if allowed is None or c in allowed:
            chosen = c
            break
    if chosen is None:
        raise ActionNotSupported(
            f"{action_name}: none of {choices} is allowed (BMC allows {allowed})", bmc=client.base_url,
            uri=action["target"],
        )
    body = {"ResetType": chosen, **(extra or {})}
    result = await client.post(action["target"], body)
    return chosen, result


async def power(
    client: RedfishClient,
    action: str,
    *,
    system: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
    wait: bool = False,
    wait_timeout: float = 300.0,
) -> str:
    """``status`` returns the power state; other verbs (on, off, graceful, cycle, reset, graceful-restart, nmi)
    send ComputerSystem.Reset and return the ResetType used. ``wait`` polls until the state settles."""
    action = action.lower()
    if action == "status":
        return await power_state(client, system)
    if action not in POWER_RESET_TYPES:
        raise ValueError(f"unknown power action {action!r}; use status|{'|'.join(POWER_RESET_TYPES)}")
    s = await primary_system(client, system)
    target = U.odata_id(s)
    what = f"power {action}"
    try:
        try:
            used, result = await _reset(client, s, "#ComputerSystem.Reset", POWER_RESET_TYPES[action])
        except ActionNotSupported:
            if action != "cycle":
                raise
            # No PowerCycle: ForceOff, wait for Off, then On.
            await _reset(client, s, "#ComputerSystem.Reset", ["ForceOff"])
            await _wait_state(client, target or "", {"Off"}, wait_timeout)
            used, result = await _reset(client, s, "#ComputerSystem.Reset", ["On", "ForceOn"])
            used = "ForceOff+On"
        if result.task:
            await client.wait_task(result)
    except RedfishError as exc:
        log_action(client, what, target, actor=actor, reason=reason, outcome=f"failed: {exc.message}",
                   detail={"error": exc.kind}, level=logging.WARNING)
        raise
    log_action(client, what, target, actor=actor, reason=reason, outcome=f"sent ResetType={used}",
               detail={"reset_type": used, "status": result.status})
    if wait:
        want = {"On"} if action in ("on", "cycle", "reset", "graceful-restart") else {"Off"}
        await _wait_state(client, target or "", want, wait_timeout)
    return used


async def _wait_state(client: RedfishClient, system_uri: str, want: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        doc = await client.get(system_uri, cache=False)
        state = str(doc.get("PowerState"))
        if state in want:
            return state
        if time.monotonic() > deadline:
            raise RedfishError(f"power state still {state} after {timeout:g} s", bmc=client.base_url, uri=system_uri)
        await asyncio.sleep(1.0)


BOOT_TARGETS = {"pxe": "Pxe", "hdd": "Hdd", "cd": "Cd", "virtual-cd": "Cd", "usb": "Usb", "bios": "BiosSetup",
                "none": "None", "uefi-http": "UefiHttp"}


async def set_boot_override(
    client: RedfishClient,
    target: str,
    *,
    once: bool = True,
    mode: str | None = None,
    system: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Boot override: ``pxe``, ``hdd``, ``cd``/``virtual-cd``, ``usb``, ``bios``, ``none``; ``once`` or continuous;
    ``mode`` "UEFI"/"Legacy" when given. PATCH with If-Match."""
    t = BOOT_TARGETS.get(target.lower(), target)
    s = await primary_system(client, system)
    uri = U.odata_id(s) or ""
    boot = s.get("Boot") or {}
    allowed = boot.get("BootSourceOverrideTarget@Redfish.AllowableValues")
    if isinstance(allowed, list) and t not in allowed:
        exc = ActionNotSupported(f"boot target {t} not allowed (BMC allows {allowed})", bmc=client.base_url, uri=uri)
        log_action(client, f"boot override {t}", uri, actor=actor, reason=reason, outcome=f"refused: {exc.message}",
                   level=logging.WARNING)
        raise exc
    body: dict[str, Any] = {"BootSourceOverrideTarget": t,
                            "BootSourceOverrideEnabled": "Disabled" if t == "None" else ("Once" if once else
                                                                                         "Continuous")}
    if mode:
        body["BootSourceOverrideMode"] = mode
    what = f"boot override {t} ({body['BootSourceOverrideEnabled']})"
    try:
        await client.patch(uri, {"Boot": body})
    except RedfishError as exc:
        log_action(client, what, uri, actor=actor, reason=reason, outcome=f"failed: {exc.message}",
                   level=logging.WARNING)
        raise
    log_action(client, what, uri, actor=actor, reason=reason, outcome="set", detail={"boot": body})
    return body


async def _virtual_media(client: RedfishClient) -> list[dict[str, Any]]:
    """Virtual media devices under Managers (most BMCs) or Systems (newer iDRAC)."""
    out: list[dict[str, Any]] = []
    for svc in ("Managers", "Systems"):
        coll = client.caps.services.get(svc)
        if not coll:
            continue
        for res in await client.get_members(coll):
            if U.odata_id(res.get("VirtualMedia")):
                out.extend(await client.get_members(res["VirtualMedia"]))
        if out:
            break
    return out


def _pick_cd(media: list[dict[str, Any]]) -> dict[str, Any] | None:
    for m in media:
        types = [str(t).upper() for t in (m.get("MediaTypes") or [])]
        if "CD" in types or "DVD" in types:
            return m
    return media[0] if media else None


async def insert_virtual_media(
    client: RedfishClient, image: str, *, actor: str | None = None, reason: str | None = None,
    write_protected: bool = True,
) -> str:
    """Insert an ISO (URL) into the virtual CD; returns the VirtualMedia URI used."""
    vm = _pick_cd(await _virtual_media(client))
    if vm is None:
        raise ActionNotSupported("no virtual media device found", bmc=client.base_url)
    uri = U.odata_id(vm) or ""
    action = (vm.get("Actions") or {}).get("#VirtualMedia.InsertMedia")
    what = f"virtual media insert {image}"
    try:
        if isinstance(action, dict) and action.get("target"):
            await client.post(action["target"], {"Image": image, "Inserted": True, "WriteProtected": write_protected})
        else:  # older services: PATCH the resource
            await client.patch(uri, {"Image": image, "Inserted": True, "WriteProtected": write_protected})
    except RedfishError as exc:
        log_action(client, what, uri, actor=actor, reason=reason, outcome=f"failed: {exc.message}",
                   level=logging.WARNING)
        raise
    log_action(client, what, uri, actor=actor, reason=reason, outcome="inserted")
    return uri


async def eject_virtual_media(client: RedfishClient, *, actor: str | None = None, reason: str | None = None) -> str:
    vm = _pick_cd(await _virtual_media(client))
    if vm is None:
        raise ActionNotSupported("no virtual media device found", bmc=client.base_url)
    uri = U.odata_id(vm) or ""
    action = (vm.get("Actions") or {}).get("#VirtualMedia.EjectMedia")
    try:
        if isinstance(action, dict) and action.get("target"):
            await client.post(action["target"], {})
        else:
            await client.patch(uri, {"Image": None, "Inserted": False})
    except RedfishError as exc:
        log_action(client, "virtual media eject", uri, actor=actor, reason=reason,
                   outcome=f"failed: {exc.message}", level=logging.WARNING)
        raise
    log_action(client, "virtual media eject", uri, actor=actor, reason=reason, outcome="ejected")
    return uri


async def reset_manager(
    client: RedfishClient, *, kind: str = "GracefulRestart", manager: str | None = None, actor: str | None = None,
    reason: str | None = None,
) -> str:
    """Reset the BMC itself (Manager.Reset). The session dies with it: the client is closed for further use."""
    coll = client.caps.services.get("Managers")
    if not coll:
        raise ActionNotSupported("service root has no Managers", bmc=client.base_url)
    managers = await client.get_members(coll, ignore_errors=False)
    chosen = None
    for m in managers:
        if manager and manager not in (m.get("Id"), U.odata_id(m)):
            continue
        if "#Manager.Reset" in (m.get("Actions") or {}):
            chosen = m
            break
    if chosen is None:
        raise ActionNotSupported("no manager offers Manager.Reset", bmc=client.base_url)
    uri = U.odata_id(chosen)
    try:
        used, _ = await _reset(client, chosen, "#Manager.Reset", [kind, "GracefulRestart", "ForceRestart"])
    except RedfishError as exc:
        log_action(client, "manager reset", uri, actor=actor, reason=reason, outcome=f"failed: {exc.message}",
                   level=logging.WARNING)
        raise
    log_action(client, "manager reset", uri, actor=actor, reason=reason, outcome=f"sent ResetType={used}")
    return used

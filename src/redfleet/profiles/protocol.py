"""Protocol-level checks beside the profile: what a neocloud needs of the management interface itself, and the
``Protocol`` section of interop profiles (the DMTF tool does not evaluate that section).

Checks (resource ``Protocol``; each returns a :class:`~redfleet.profiles.engine.Row`):

- ``TLS``: the service answers HTTPS and negotiates TLS 1.2 or newer; ``TLS legacy`` it refuses TLS 1.0/1.1.
- ``IPMI-over-LAN``: every manager's ``NetworkProtocol`` reports ``IPMI.ProtocolEnabled`` false (Redfish is there,
  so IPMI's weak authentication on the LAN is an open door that nothing needs).
- ``Sessions``: a Redfish session can be created (201 + ``X-Auth-Token``), used, and deleted.
- ``Authentication``: a protected resource is refused without credentials.
- ``Protocol.MinVersion``, ``ExpandQuery``, ``FilterQuery``, ``SelectQuery``, ``OnlyQuery``, ``ExcerptQuery``,
  ``DeepPATCH``, ``DeepPOST``, ``Discovery``, ``HostInterface``: as the profile set asks.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import warnings
from typing import Any
from urllib.parse import urlsplit

from redfleet.profiles.engine import SERVICE_ROOT, Row, Verdict
from redfleet.profiles.profile import ProfileSet, parse_version

_RANK = {"None": 0, "Recommended": 1, "Mandatory": 2}
_FEATURES = {
    "ExpandQuery": ("ExpandQuery",),
    "FilterQuery": ("FilterQuery",),
    "SelectQuery": ("SelectQuery",),
    "OnlyQuery": ("OnlyMemberQuery",),
    "ExcerptQuery": ("ExcerptQuery",),
    "DeepPATCH": ("DeepOperations", "DeepPATCH"),
    "DeepPOST": ("DeepOperations", "DeepPOST"),
}


def _row(check: str, verdict: Verdict, found: Any, message: str, requirement: str, purpose: str = "") -> Row:
    return Row("Protocol", None, check, verdict, found, found is not None, [message], [requirement],
               [purpose] if purpose else [])


def merged_protocol(profiles: ProfileSet) -> dict[str, Any]:
    """The ``Protocol`` requirements of a profile set: the strongest of each, the highest MinVersion."""
    out: dict[str, Any] = {}
    for p in profiles.profiles:
        for key, value in p.protocol.items():
            if key == "MinVersion":
                cur = parse_version(out.get("MinVersion"))
                new = parse_version(str(value))
                if new and (cur is None or new > cur):
                    out["MinVersion"] = str(value)
            elif isinstance(value, str):
                if _RANK.get(value, 0) > _RANK.get(out.get(key, "None"), 0):
                    out[key] = value
    return out


def profile_protocol_rows(profiles: ProfileSet, root: dict[str, Any], managers: list[dict[str, Any]],
                          host_interfaces: int | None) -> list[Row]:
    """The profile set's ``Protocol`` section judged from the service root (and managers)."""
    rows: list[Row] = []
    spec = merged_protocol(profiles)
    label = profiles.label
    if "MinVersion" in spec:
        want = parse_version(spec["MinVersion"])
        have = parse_version(str(root.get("RedfishVersion", "")))
        if have is None:
            rows.append(_row("Protocol.MinVersion", Verdict.FAIL, None, "ServiceRoot has no RedfishVersion",
                             f"{label}: RedfishVersion >= {spec['MinVersion']}"))
        else:
            ok = want is None or have >= want
            rows.append(_row("Protocol.MinVersion", Verdict.PASS if ok else Verdict.FAIL, root.get("RedfishVersion"),
                             "Redfish version supported" if ok else
                             f"RedfishVersion {root.get('RedfishVersion')} is below {spec['MinVersion']}",
                             f"{label}: RedfishVersion >= {spec['MinVersion']}"))
    features = root.get("ProtocolFeaturesSupported") if isinstance(root.get("ProtocolFeaturesSupported"), dict) else {}
    for name, path in _FEATURES.items():
        need = spec.get(name, "None")
        if need == "None":
            continue
        value: Any = features
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        supported = bool(value) if not isinstance(value, dict) else any(
            v is True or (isinstance(v, int) and not isinstance(v, bool) and v > 0) for v in value.values())
        verdict = Verdict.PASS if supported else (Verdict.FAIL if need == "Mandatory" else Verdict.WARN)
        rows.append(_row(f"Protocol.{name}", verdict, value,
                         "supported" if supported else f"ProtocolFeaturesSupported does not advertise {name}",
                         f"{label}: {name} {need}"))
    if spec.get("Discovery", "None") != "None":
        ssdp = [m.get("SSDP", {}).get("ProtocolEnabled") for m in managers if isinstance(m.get("SSDP"), dict)]
        ok = any(v is True for v in ssdp)
        need = spec["Discovery"]
        rows.append(_row("Protocol.Discovery", Verdict.PASS if ok else (Verdict.FAIL if need == "Mandatory"
                                                                        else Verdict.WARN),
                         ssdp or None, "SSDP enabled" if ok else "no manager has SSDP enabled",
                         f"{label}: Discovery {need}"))
    if spec.get("HostInterface", "None") != "None":
        need = spec["HostInterface"]
        ok = bool(host_interfaces)
        rows.append(_row("Protocol.HostInterface", Verdict.PASS if ok else (Verdict.FAIL if need == "Mandatory"
                                                                            else Verdict.WARN),
                         host_interfaces, "host interface present" if ok else "no Redfish host interface found",
                         f"{label}: HostInterface {need}"))
    return rows


def ipmi_rows(network_protocols: list[tuple[str, dict[str, Any] | None]]) -> list[Row]:
    req = "neocloud: no IPMI-over-LAN where Redfish exists"
    purpose = ("IPMI over LAN (RMCP+) has weak authentication (RAKP hash disclosure, cipher 0); a BMC that speaks "
               "Redfish must not also expose it.")
    if not network_protocols:
        return [_row("IPMI-over-LAN", Verdict.SKIP, None, "no ManagerNetworkProtocol resource to judge", req, purpose)]
    enabled = []
    unknown = []
    for uri, doc in network_protocols:
        ipmi = (doc or {}).get("IPMI")
        if isinstance(ipmi, dict) and "ProtocolEnabled" in ipmi:
            if ipmi["ProtocolEnabled"] is True:
                enabled.append(uri)
        else:
            unknown.append(uri)
    if enabled:
        return [_row("IPMI-over-LAN", Verdict.FAIL, enabled, "IPMI.ProtocolEnabled is true at " + ", ".join(enabled),
                     req, purpose)]
    if unknown and len(unknown) == len(network_protocols):
        return [_row("IPMI-over-LAN", Verdict.SKIP, None, "ManagerNetworkProtocol does not report IPMI", req,
                     purpose)]
    return [_row("IPMI-over-LAN", Verdict.PASS, False, "IPMI over LAN is disabled", req, purpose)]


async def _tls_probe(host: str, port: int, legacy: bool, request_timeout: float) -> str | None:
    """The TLS version negotiated (None when the handshake fails)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if legacy:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
                ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError):
            return None
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx,
                                                                         server_hostname=host), request_timeout)
    except (TimeoutError, OSError, ssl.SSLError):
        return None
    sslobj = writer.get_extra_info("ssl_object")
    version = sslobj.version() if sslobj is not None else None
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass
    return version


async def tls_rows(base_url: str, request_timeout: float = 10.0) -> list[Row]:
    parts = urlsplit(base_url)
    purpose = "Credentials and firmware images cross this link; TLS below 1.2 is broken (BEAST, POODLE, SWEET32)."
    if parts.scheme != "https":
        return [_row("TLS", Verdict.FAIL, parts.scheme, "the service was reached over plain HTTP",
                     "neocloud: HTTPS with TLS >= 1.2", purpose)]
    host = parts.hostname or "localhost"
    port = parts.port or 443
    version = await _tls_probe(host, port, False, request_timeout)
    rows = []
    if version is None:
        rows.append(_row("TLS", Verdict.FAIL, None, "TLS handshake failed", "neocloud: HTTPS with TLS >= 1.2",
                         purpose))
    else:
        ok = version in ("TLSv1.2", "TLSv1.3")
        rows.append(_row("TLS", Verdict.PASS if ok else Verdict.FAIL, version,
                         f"negotiated {version}" if ok else f"negotiated {version}, below TLS 1.2",
                         "neocloud: HTTPS with TLS >= 1.2", purpose))
    legacy = await _tls_probe(host, port, True, request_timeout)
    rows.append(_row("TLS legacy", Verdict.FAIL if legacy else Verdict.PASS, legacy,
                     f"the service accepts {legacy}" if legacy else "TLS 1.0 and 1.1 are refused",
                     "neocloud: TLS 1.0/1.1 refused", purpose))
    return rows


async def session_rows(session: Any, base_url: str, username: str | None, password: str | None,
                       root: dict[str, Any], ssl_ctx: Any) -> list[Row]:
    """Create a session, use it, delete it; and check that a protected resource needs credentials."""
    rows: list[Row] = []
    req = "neocloud: Redfish sessions work (create, use, delete)"
    purpose = "Fleet tools log in once per BMC and reuse a token; Basic auth on every request costs and leaks."
    sessions = (root.get("Links") or {}).get("Sessions", {}).get("@odata.id") or "/redfish/v1/SessionService/Sessions"
    protected = (root.get("Systems") or {}).get("@odata.id") or (root.get("Managers") or {}).get("@odata.id")
    if protected:
        try:
            async with session.get(base_url + protected, ssl=ssl_ctx) as resp:
                status = resp.status
            ok = status in (401, 403)
            rows.append(_row("Authentication", Verdict.PASS if ok else Verdict.FAIL, status,
                             "refused without credentials" if ok else
                             f"{protected} answered {status} without credentials",
                             "neocloud: resources need authentication",
                             "An unauthenticated read of inventory is an information leak."))
        except Exception as exc:  # pragma: no cover - network errors
            rows.append(_row("Authentication", Verdict.SKIP, None, f"could not test: {exc}",
                             "neocloud: resources need authentication"))
    if username is None:
        rows.append(_row("Sessions", Verdict.SKIP, None, "no credentials given", req, purpose))
        return rows
    try:
        async with session.post(base_url + sessions, json={"UserName": username, "Password": password},
                                ssl=ssl_ctx) as resp:
            status = resp.status
            token = resp.headers.get("X-Auth-Token")
            location = resp.headers.get("Location")
        if status not in (200, 201) or not token:
            rows.append(_row("Sessions", Verdict.FAIL, status, f"session create answered {status}"
                             + ("" if token else " without X-Auth-Token"), req, purpose))
            return rows
        async with session.get(base_url + (protected or SERVICE_ROOT), headers={"X-Auth-Token": token},
                               ssl=ssl_ctx) as resp:
            used = resp.status
        deleted = None
        if location:
            path = "/" + location.split("://", 1)[-1].split("/", 1)[-1].lstrip("/") if "://" in location else location
            async with session.delete(base_url + path, headers={"X-Auth-Token": token}, ssl=ssl_ctx) as resp:
                deleted = resp.status
        if used != 200:
            rows.append(_row("Sessions", Verdict.FAIL, used, f"the session token was refused ({used})", req, purpose))
        elif deleted is None:
            rows.append(_row("Sessions", Verdict.WARN, status, "session created but no Location to delete it", req,
                             purpose))
        elif deleted >= 300:
            rows.append(_row("Sessions", Verdict.FAIL, deleted, f"session delete answered {deleted}", req, purpose))
        else:
            rows.append(_row("Sessions", Verdict.PASS, status, "created, used and deleted", req, purpose))
    except Exception as exc:
        rows.append(_row("Sessions", Verdict.FAIL, None, f"session create failed: {type(exc).__name__}: {exc}", req,
                         purpose))
    return rows


async def protocol_checks(base_url: str, username: str | None, password: str | None, profiles: ProfileSet,
                          source: Any, request_timeout: float = 15.0, session: Any = None) -> list[Row]:
    """All protocol checks for one live service; ``source`` is the (cached) resource source of the run."""
    import aiohttp

    base_url = base_url.rstrip("/")
    root = await source.get(SERVICE_ROOT) or {}
    managers: list[dict[str, Any]] = []
    nps: list[tuple[str, dict[str, Any] | None]] = []
    host_ifaces = 0
    mcoll = await source.get((root.get("Managers") or {}).get("@odata.id", "/redfish/v1/Managers")) or {}
    for m in mcoll.get("Members") or []:
        if not isinstance(m, dict) or not isinstance(m.get("@odata.id"), str):
            continue
        mgr = await source.get(m["@odata.id"].rstrip("/")) or {}
        np_uri = (mgr.get("NetworkProtocol") or {}).get("@odata.id")
        if isinstance(np_uri, str):
            doc = await source.get(np_uri.rstrip("/"))
            nps.append((np_uri, doc))
            if doc:
                managers.append(doc)
        hi = (mgr.get("HostInterfaces") or {}).get("@odata.id")
        if isinstance(hi, str):
            hdoc = await source.get(hi.rstrip("/")) or {}
            host_ifaces += len(hdoc.get("Members") or [])
    rows = profile_protocol_rows(profiles, root, managers, host_ifaces)
    rows += ipmi_rows(nps)
    rows += await tls_rows(base_url, request_timeout)
    ssl_ctx: Any = False
    if base_url.startswith("https"):
        ssl_ctx = ssl.create_default_context()
        ssl_ctx.check_hostname = False
        ssl_ctx.verify_mode = ssl.CERT_NONE
    own = session is None
    if own:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_timeout),
                                        connector=aiohttp.TCPConnector(family=socket.AF_INET))
    try:
        rows += await session_rows(session, base_url, username, password, root, ssl_ctx)
    finally:
        if own:
            await session.close()
    return rows

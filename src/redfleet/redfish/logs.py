"""Reading a BMC's hardware event log (the SEL, or what a vendor calls it) over Redfish.

```python
async with RedfishClient(url, user, password, tls=...) as c:
    entries = await read_sel(c, limit=200)     # newest first, normalized (see SEL_FIELDS)
```

Which log: every LogService under ``Managers/*`` and ``Systems/*`` is ranked from what the service itself says
(``LogEntryType`` and its ``Id``/``Name``), never from the vendor name: a ``LogEntryType: SEL`` service first
(Dell ``Sel``, AMI ``SEL``, Supermicro's health log), then HPE-style ``IML``, Dell-style ``Lclog``, an
``EventLog``, then a generic ``Log``/``Log1``. Audit logs, journals, dumps and the like are never read. Every
service of the best rank is read and merged.

Order: services list entries oldest first (Supermicro, AMI) or newest first (Dell). The order is detected from
the first page; for an oldest-first log with more entries than wanted the tail is reached with ``$skip`` when the
service root advertises ``TopSkipQuery``, else by walking the pages (bounded). The result is sorted newest first
by ``Created`` (then by the numeric ``Id``).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redfleet.redfish import uri as U
from redfleet.redfish.client import RedfishClient
from redfleet.redfish.errors import ActionNotSupported

log = logging.getLogger("redfleet.redfish.logs")

SEL_FIELDS = ("id", "created", "severity", "message", "message_id", "sensor_type", "sensor_number", "entry_type",
              "log", "uri")

MAX_PAGES = 500  # an oldest-first log without $skip is walked to its end; this bounds the walk

# Log services that are not hardware events (who logged in, debug dumps, console output...): never read.
_SKIP = ("audit", "journal", "dump", "diag", "debug", "bios", "hostlog", "metric", "crash", "token", "security",
         "console", "fault", "telemetry", "decoded")
_GENERIC_LOG = re.compile(r"^log\d*$")


@dataclass(frozen=True)
class LogServiceRef:
    """A log service found on the BMC; lower ``rank`` is preferred."""

    uri: str
    id: str
    entries: str
    entry_type: str | None
    rank: int


def rank_log_service(doc: dict[str, Any]) -> int | None:
    """How much this LogService looks like the hardware event log (0 best), or None to ignore it."""
    ident = str(doc.get("Id") or U.odata_id(doc) or "").rsplit("/", 1)[-1].lower()
    name = str(doc.get("Name") or "").lower()
    etype = str(doc.get("LogEntryType") or "").lower()
    if any(s in ident for s in _SKIP):
        return None
    if etype == "sel" or ident == "sel" or "sel" in name.split():
        return 0
    if ident == "iml" or "integrated management log" in name:
        return 1
    if ident == "lclog" or "lifecycle" in name:
        return 2
    if etype == "oem":
        return 5  # an OEM log that claims no standard entries (Supermicro's maintenance log): last resort
    if ident in ("eventlog", "event") or "event log" in name:
        return 3
    if _GENERIC_LOG.match(ident) or etype in ("event", "multiple"):
        return 4
    return None


async def find_log_services(client: RedfishClient) -> list[LogServiceRef]:
    """Every hardware-event-like LogService under Managers and Systems, best first."""
    found: list[LogServiceRef] = []
    seen: set[str] = set()
    for coll in ("Managers", "Systems"):
        coll_uri = client.caps.services.get(coll) or f"/redfish/v1/{coll}"
        for owner in await client.get_members(coll_uri, expand=False):
            ls_coll = U.link(owner, "LogServices")
            if not ls_coll:
                continue
            for svc in await client.get_members(ls_coll, expand=False):
                uri = U.odata_id(svc)
                if not uri or U.key(uri) in seen:
                    continue
                seen.add(U.key(uri))
                rank = rank_log_service(svc)
                if rank is None:
                    continue
                entries = U.link(svc, "Entries") or U.join(uri, "Entries")
                found.append(LogServiceRef(uri, str(svc.get("Id") or uri.rsplit("/", 1)[-1]), entries,
                                           svc.get("LogEntryType"), rank))
    found.sort(key=lambda r: r.rank)
    return found


def _top_skip(client: RedfishClient) -> bool:
    pfs = client.root.get("ProtocolFeaturesSupported")
    return isinstance(pfs, dict) and bool(pfs.get("TopSkipQuery"))


def _member_id(m: dict[str, Any]) -> str:
    return str(m.get("Id") or (U.odata_id(m) or "").rsplit("/", 1)[-1])


def _numeric_id(m: dict[str, Any]) -> int | None:
    ident = _member_id(m)
    return int(ident) if ident.isdigit() else None


def parse_time(value: Any) -> datetime | None:
    """A Redfish DateTime as an aware UTC datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def iso_utc(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ascending(members: list[dict[str, Any]]) -> bool | None:
    """True when the page lists oldest first, False newest first, None when it cannot tell."""
    if len(members) < 2:
        return None
    a, b = _numeric_id(members[0]), _numeric_id(members[-1])
    if a is not None and b is not None and a != b:
        return a < b
    ta, tb = parse_time(members[0].get("Created")), parse_time(members[-1].get("Created"))
    if ta is not None and tb is not None and ta != tb:
        return ta < tb
    return None


async def _read_entries(client: RedfishClient, svc: LogServiceRef, limit: int) -> list[dict[str, Any]]:
    top_ok = _top_skip(client)
    first = await client.get(svc.entries, query=f"$top={limit}" if top_ok else None, cache=False)
    members: list[dict[str, Any]] = [m for m in first.get("Members") or [] if isinstance(m, dict)]
    next_link = first.get("Members@odata.nextLink")
    count = first.get("Members@odata.count")
    order = _ascending(members)
    pages = 1
    if next_link and order is False:
        # newest first: the first `limit` entries are the ones wanted
        while isinstance(next_link, str) and next_link and len(members) < limit and pages < MAX_PAGES:
            page = await client.get(next_link, cache=False)
            members.extend(m for m in page.get("Members") or [] if isinstance(m, dict))
            next_link = page.get("Members@odata.nextLink")
            pages += 1
        members = members[:limit]
    elif next_link:
        # oldest first (or unknown): the newest are at the end
        if top_ok and isinstance(count, int) and count > len(members):
            skip = max(0, count - limit)
            page = await client.get(svc.entries, query=f"$skip={skip}&$top={limit}", cache=False)
            members = [m for m in page.get("Members") or [] if isinstance(m, dict)]
            next_link = page.get("Members@odata.nextLink")
        tail: deque[dict[str, Any]] = deque(members, maxlen=limit)
        while isinstance(next_link, str) and next_link and pages < MAX_PAGES:
            page = await client.get(next_link, cache=False)
            tail.extend(m for m in page.get("Members") or [] if isinstance(m, dict))
            next_link = page.get("Members@odata.nextLink")
            pages += 1
        if next_link:
            log.warning("%s: %s: stopped after %d pages; the newest entries may be missing", client.name,
                        svc.entries, pages)
        members = list(tail)
    elif order is not False and len(members) > limit:
        members = members[-limit:]
    else:
        members = members[:limit]
    docs = await client.resolve_links(members, cache=False)
    return [normalize_entry(d, svc.id) for d in docs]


def normalize_entry(doc: dict[str, Any], log_id: str | None) -> dict[str, Any]:
    """A LogEntry in redfleet's SEL shape (see SEL_FIELDS)."""
    created_raw = doc.get("Created") or doc.get("EventTimestamp")
    created_dt = parse_time(created_raw)
    sensor_number = doc.get("SensorNumber")
    if isinstance(sensor_number, str) and sensor_number.strip().isdigit():
        sensor_number = int(sensor_number)
    return {
        "id": _member_id(doc),
        "created": iso_utc(created_dt) if created_dt else (created_raw if isinstance(created_raw, str) else None),
        "severity": doc.get("Severity") if isinstance(doc.get("Severity"), str) else None,
        "message": str(doc.get("Message") or ""),
        "message_id": doc.get("MessageId") if isinstance(doc.get("MessageId"), str) else None,
        "sensor_type": doc.get("SensorType") or doc.get("OemSensorType") or None,
        "sensor_number": sensor_number if isinstance(sensor_number, int) else None,
        "entry_type": doc.get("EntryType") if isinstance(doc.get("EntryType"), str) else None,
        "log": log_id,
        "uri": U.odata_id(doc),
    }


def newest_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort normalized entries newest first: by ``created``, then numeric ``id``; undated entries last."""

    def key(e: dict[str, Any]) -> tuple[float, int]:
        dt = parse_time(e.get("created"))
        ident = str(e.get("id") or "")
        return (dt.timestamp() if dt else float("-inf"), int(ident) if ident.isdigit() else -1)

    return sorted(entries, key=key, reverse=True)


async def read_sel(client: RedfishClient, *, limit: int = 200) -> list[dict[str, Any]]:
    """The newest ``limit`` entries of the BMC's hardware event log(s), newest first, normalized.

    Raises :class:`ActionNotSupported` when the BMC has no SEL-like log service, and the client's classified
    errors when the log cannot be read."""
    if limit < 1:
        return []
    services = await find_log_services(client)
    if not services:
        raise ActionNotSupported("no SEL-like log service under Managers or Systems", bmc=client.base_url)
    best = services[0].rank
    out: list[dict[str, Any]] = []
    for svc in services:
        if svc.rank != best:
            break
        out.extend(await _read_entries(client, svc, limit))
    return newest_first(out)[:limit]

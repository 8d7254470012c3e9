"""One simulated BMC: its state on top of the shared flavor template, and the behaviour behind the Redfish actions.

State is kept as small per-node overlays: ``patches`` (properties changed on template resources, merged at render
time), ``created`` (resources the node made: sessions, tasks, jobs, log entries), ``added``/``removed`` collection
members, and ``versions`` (ETag counters). A node that nobody touched holds almost nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from redfleet.sim.hooks import NO_DYNAMICS, NodeDynamics
from redfleet.sim.identity import derive, derive_host
from redfleet.sim.template import JSON_TYPE

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.sim.flavors import Flavor, FlavorFacts
    from redfleet.sim.fleet import SimFleet
    from redfleet.sim.latency import LatencySpec
    from redfleet.sim.template import Template

Doc = dict[str, Any]

MAX_APPENDED_LOG_ENTRIES = 2000


_PATCHABLE = frozenset({
    "ComputerSystem", "Manager", "Chassis", "AccountService", "SessionService", "EventService", "ManagerAccount",
    "ManagerNetworkProtocol", "EthernetInterface", "Bios", "EventDestination", "UpdateService", "Drive", "Processor",
    "Memory", "PCIeDevice", "Power", "Thermal", "LogService", "SerialInterface", "TelemetryService",
    "CertificateService", "Role", "VirtualMedia",
})
_DELETABLE = frozenset({"Session", "EventDestination", "ManagerAccount", "Job", "DellJob", "Task", "LogEntry"})


def _allow_for(path: str, doc: Doc, facts: Any) -> str:
    odata_type = str(doc.get("@odata.type", "")).lstrip("#")
    kind = odata_type.split(".", 1)[0]
    methods = ["GET", "HEAD"]
    low = path.lower()
    if isinstance(doc.get("Members"), list):
        if low in (facts.session_collection.lower(), "/redfish/v1/jobservice/jobs") or low.endswith(
            ("/eventservice/subscriptions", "/accountservice/accounts", "/jobs")
        ):
            methods.append("POST")
        return ", ".join(methods)
    if kind in _PATCHABLE or low == (facts.bios_settings_path or "").lower():
        methods.append("PATCH")
    if kind in _DELETABLE:
        methods.append("DELETE")
    mp = facts.multipart_push_uri
    if (mp and low == mp.rstrip("/").lower()) or "/actions/" in low:
        methods = ["POST"]
    return ", ".join(methods)


class Replace(dict):  # type: ignore[type-arg,unused-ignore]
    """A patch value that replaces the template's value instead of merging into it."""


def merge(dst: Doc, patch: Doc) -> None:
    for key, value in patch.items():
        if isinstance(value, Replace):
            dst[key] = orjson.loads(orjson.dumps(dict(value)))
        elif isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge(dst[key], value)
        else:
            dst[key] = orjson.loads(orjson.dumps(value)) if isinstance(value, (dict, list)) else value


def now_iso(offset: float = 0.0) -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Session:
    token: str
    id: str
    user: str
    path: str
    last_used: float
    created: float = field(default_factory=time.monotonic)


class SimNode:
    """A simulated BMC. See .notes/sim-contract.md for what sim-dyn may call."""

    def __init__(
        self,
        fleet: SimFleet,
        index: int,
        name: str,
        address: str,
        host_address: str,
        flavor: Flavor,
        facts: FlavorFacts,
        rack: str,
        position: int,
    ) -> None:
        self.fleet = fleet
        self.index = index
        self._etag_crc = zlib.crc32(f"{fleet.config.seed}:{index}:".encode())
        self.name = name
        self.address = address
        self.host_address = host_address
        self.flavor = flavor
        self.facts = facts
        self.template: Template = facts.template
        self.rack = rack
        self.position = position
        self.dyn: NodeDynamics = NO_DYNAMICS
        self.patches: dict[str, Doc] = {}
        self.created: dict[str, Doc] = {}
        self.added: dict[str, list[str]] = {}
        self.removed: set[str] = set()
        self.versions: dict[str, int] = {}
        self.counters: dict[str, int] = {}
        self.sessions: dict[str, Session] = {}
        self.power_state = "On"
        self._power_gen = 0
        self.down = False  # listener closed (Manager.Reset, bmc-down)
        self._down_reasons: set[str] = set()
        self.slow: LatencySpec | None = None
        self.password: str | None = None  # set when a client changed the account's password on this BMC
        self.refuse_sessions = False  # fault: POST to Sessions answers 503 as a full table does
        self.bad_json: float | None = None  # fault: this fraction of JSON bodies is served truncated
        self.throttle_status = 0
        self.throttle_until = 0.0
        self.throttle_fraction = 1.0
        self.cert_generation = 0
        self.fingerprint: str | None = None
        self.ssl_context: Any = None
        self.jobs: dict[str, Doc] = {}
        self._bios_job: str | None = None
        self._timers: list[asyncio.TimerHandle] = []
        sys_doc = self.template.doc(facts.system_path or "") or {}
        if sys_doc.get("PowerState") not in (None, "On"):
            self.patches.setdefault(facts.system_path or "", {})["PowerState"] = "On"

    # ---- time ----------------------------------------------------------------------------------------------
    def scaled(self, seconds: float) -> float:
        """Real seconds to wait for a simulated delay."""
        return seconds / self.fleet.config.time_scale

    def now(self) -> float:
        """Simulated seconds since the fleet started (the instant of the response being rendered, if any)."""
        fleet = self.fleet
        t = fleet.instant
        if t is not None:
            return t
        return (time.monotonic() - fleet.started_at) * fleet.config.time_scale

    def call_later(self, seconds: float, fn: Any, *args: Any) -> asyncio.TimerHandle:
        handle = self.fleet.loop.call_later(self.scaled(seconds), fn, *args)
        self._timers = [t for t in self._timers if not t.cancelled()][-16:]
        self._timers.append(handle)
        return handle

    def cancel_timers(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()

    # ---- identity ------------------------------------------------------------------------------------------
    def ident(self, value: str) -> str:
        kind = self.template.idents.get(value)
        if kind is not None:
            if kind.host:
                return derive_host(self.name, value, kind.bmc)
            if kind.ip:
                return self.address
        return derive(self.fleet.config.seed, self.index, value)

    def apply_identity(self, body: bytes, idents: tuple[str, ...]) -> bytes:
        if not self.fleet.identity:
            return body
        for v in idents:
            body = body.replace(v.encode(), self.ident(v).encode())
        return body

    # ---- documents -----------------------------------------------------------------------------------------
    def etag(self, path: str) -> str:
        v = self.versions.get(path, 0)
        # = crc32 of f"{seed}:{index}:{path}:{v}", its node part computed once
        crc = zlib.crc32(f"{path}:{v}".encode(), self._etag_crc)
        return f'W/"{crc:08x}"'

    def etag_json(self, path: str) -> bytes:
        """``orjson.dumps(self.etag(path))``, made directly."""
        crc = zlib.crc32(f"{path}:{self.versions.get(path, 0)}".encode(), self._etag_crc)
        return b'"W/\\"%08x\\""' % crc

    def allow(self, path: str) -> str:
        """The ``Allow`` header for ``path``: what this simulated BMC accepts there."""
        cache = self.template.allow
        value = cache.get(path)
        if value is None:
            doc = self.created.get(path) or self.template.doc(path) or {}
            value = _allow_for(path, doc, self.facts)
            if path not in self.created:
                cache[path] = value
        return value

    def bump(self, path: str) -> None:
        self.versions[path] = self.versions.get(path, 0) + 1

    def resolve(self, path: str) -> str | None:
        """Canonical path of a resource this node has (created or template), or None."""
        if path in self.created:
            return path
        if len(path) > 1 and path.endswith("/") and path.rstrip("/") in self.created:
            return path.rstrip("/")
        canon = self.template.find(path)
        if canon is None and "#" in path:  # mockup folders keep '#' escaped as %23
            canon = self.template.find(path.replace("#", "%23"))
        if canon is None and self.flavor.case_insensitive:
            low = path.rstrip("/").lower()
            for p in self.created:
                if p.lower() == low:
                    return p
        return canon

    def visible(self, path: str) -> bool:
        if path in self.removed:
            return False
        dyn = self.dyn
        return not (dyn.hides_any and dyn.hidden(path))

    def base_doc(self, path: str) -> Doc | None:
        """A private copy of the node's version of ``path`` (template + patches, or created), before overlay."""
        if path in self.created:
            return orjson.loads(orjson.dumps(self.created[path]))
        doc = self.template.copy_doc(path)
        if doc is None:
            return None
        patch = self.patches.get(path)
        if patch:
            merge(doc, patch)
        if "Members" in doc and isinstance(doc["Members"], list):
            self._render_members(path, doc)
        return doc

    def _render_members(self, path: str, doc: Doc) -> None:
        extra = self.added.get(path)
        if path == self.facts.session_collection:
            doc["Members"] = [{"@odata.id": s.path} for s in self.sessions.values()]
        elif extra:
            doc["Members"] = list(doc["Members"]) + [{"@odata.id": p} for p in extra]
        if self.removed or self.dyn.hides_any:
            doc["Members"] = [
                m for m in doc["Members"] if not isinstance(m, dict) or self.visible(str(m.get("@odata.id", "")))
            ]
        doc["Members@odata.count"] = len(doc["Members"])

    def needs_render(self, path: str) -> bool:
        """False when the template bytes can be served as they are (after identity)."""
        if path in self.created or path in self.patches or self.dyn.watches(path):
            return True
        res = self.template.resources.get(path)
        if res is None:
            return True
        if res.is_collection and (
            path in self.added or self.removed or self.dyn.hides_any or path == self.facts.session_collection
        ):
            return True
        return False

    def render_doc(self, path: str) -> Doc | None:
        """The doc as served (patches, members, dynamics overlay, ETag), without per-node identity."""
        doc = self.base_doc(path)
        if doc is None:
            return None
        if "@odata.etag" in doc:
            doc["@odata.etag"] = self.etag(path)
        if self.dyn.watches(path):
            return self.dyn.overlay(path, doc)
        return doc

    def render_bytes(self, path: str) -> tuple[bytes, str] | None:
        """Body and content type of ``path`` as this node serves it."""
        res = self.template.resources.get(path)
        if res is not None and not self.needs_render(path):
            body = res.body
            if res.idents:
                body = self.apply_identity(body, res.idents)
            if res.etag_fragment is not None:
                body = body.replace(res.etag_fragment, b'"@odata.etag":' + orjson.dumps(self.etag(path)), 1)
            return body, res.ctype
        if res is not None and res.ctype != JSON_TYPE:
            return res.body, res.ctype
        if res is not None and path not in self.patches and path not in self.created:
            live = self.dyn.live_bytes(path)
            if live is not None:
                return (self.apply_identity(live, res.idents) if res.idents else live), JSON_TYPE
        doc = self.render_doc(path)
        if doc is None:
            return None
        body = orjson.dumps(doc)
        if res is not None and res.idents:
            body = self.apply_identity(body, res.idents)
        return body, JSON_TYPE

    def get_doc(self, path: str) -> Doc | None:
        """The resource as a client would read it (identity applied); for sim-dyn and tests."""
        canon = self.resolve(path)
        if canon is None or not self.visible(canon):
            return None
        out = self.render_bytes(canon)
        if out is None or out[1] != JSON_TYPE:
            return None
        value = orjson.loads(out[0])
        return value if isinstance(value, dict) else None

    def update_doc(self, path: str, changes: Doc, notify: bool = True) -> None:
        """Merge ``changes`` into the node's version of ``path`` (copy-on-write) and bump its ETag."""
        if path in self.created:
            merge(self.created[path], changes)
        else:
            merge(self.patches.setdefault(path, {}), changes)
        self.bump(path)
        if notify:
            self.dyn.on_resource_changed(path, changes)

    def add_resource(self, collection: str, doc: Doc, member_id: str | None = None, keep: int = 0) -> str:
        """Create a member of ``collection`` (``doc`` gets @odata.id and Id); returns its path."""
        if member_id is None:
            member_id = str(self.next_id(collection))
        path = f"{collection.rstrip('/')}/{member_id}"
        doc.setdefault("Id", member_id)
        doc["@odata.id"] = path
        self.created[path] = doc
        members = self.added.setdefault(collection, [])
        members.append(path)
        if keep and len(members) > keep:
            for old in members[: len(members) - keep]:
                self.created.pop(old, None)
            del members[: len(members) - keep]
        self.bump(collection)
        return path

    def remove_resource(self, path: str) -> None:
        """Delete a created resource, or hide a template one (404 from now on, gone from its collection)."""
        if path in self.created:
            del self.created[path]
            for coll, members in self.added.items():
                if path in members:
                    members.remove(path)
                    self.bump(coll)
        else:
            self.removed.add(path)
            parent = path.rsplit("/", 1)[0]
            self.bump(parent)

    def restore_resource(self, path: str) -> None:
        self.removed.discard(path)
        self.bump(path.rsplit("/", 1)[0])

    def next_id(self, collection: str) -> int:
        n = self.counters.get(collection)
        if n is None:
            n = 0
            for m in self.template.members(collection):
                tail = m.rstrip("/").rsplit("/", 1)[-1]
                digits = "".join(c for c in tail if c.isdigit())
                if digits and len(digits) < 12:
                    n = max(n, int(digits))
        n += 1
        self.counters[collection] = n
        return n

    # ---- logs ----------------------------------------------------------------------------------------------
    def entries_collection(self, log_path: str) -> str:
        """The LogEntry collection of a LogService."""
        ls = self.template.doc(log_path) or {}
        entries = ls.get("Entries")
        uri = entries.get("@odata.id") if isinstance(entries, dict) else None
        if not isinstance(uri, str):
            uri = f"{log_path}/Entries"
        return self.template.find(uri) or uri.rstrip("/")

    def append_log(
        self,
        message: str,
        severity: str = "OK",
        message_id: str | None = "Base.1.8.Success",
        log: str | None = None,
        sensor_type: str | None = None,
        extra: Doc | None = None,
    ) -> Doc | None:
        """Append an entry to a LogService (default: the flavor's SEL); returns the entry."""
        log_path = log or self.facts.sel_path
        if not log_path:
            return None
        coll = self.entries_collection(log_path)
        n = self.next_id(coll)
        entry: Doc = {
            "@odata.type": "#LogEntry.v1_9_0.LogEntry",
            "Name": "Log Entry",
            "EntryType": "SEL" if "sel" in log_path.lower() else "Event",
            "Created": now_iso(),
            "Severity": severity,
            "Message": message,
            "MessageArgs": [],
        }
        if message_id is not None:
            entry["MessageId"] = message_id
        if sensor_type:
            entry["SensorType"] = sensor_type
        if extra:
            entry.update(extra)
        self.add_resource(coll, entry, str(n), keep=MAX_APPENDED_LOG_ENTRIES)
        self.dyn.on_log_entry(log_path, entry)
        return entry

    # ---- power ---------------------------------------------------------------------------------------------
    def allowed_reset_types(self, action: Doc | None = None) -> list[str] | None:
        """ResetType values of an action object (default: the host system's ComputerSystem.Reset), from
        ``ResetType@Redfish.AllowableValues`` or its ``@Redfish.ActionInfo``; None when it does not say."""
        if action is None:
            sys_doc = self.template.doc(self.facts.system_path or "") or {}
            action = (sys_doc.get("Actions") or {}).get("#ComputerSystem.Reset") or {}
        act = action
        values = act.get("ResetType@Redfish.AllowableValues")
        if isinstance(values, list):
            return [str(v) for v in values]
        info = act.get("@Redfish.ActionInfo")
        if isinstance(info, str):
            d = self.template.doc(self.template.find(info) or info) or {}
            for p in d.get("Parameters") or []:
                if p.get("Name") == "ResetType" and isinstance(p.get("AllowableValues"), list):
                    return [str(v) for v in p["AllowableValues"]]
        return None

    def _set_power(self, state: str, reset_type: str | None = None) -> None:
        old = self.power_state
        if old == state:
            return
        self.power_state = state
        for path in (self.facts.system_path, self.facts.chassis_path):
            if path:
                d = self.template.doc(path) or {}
                if "PowerState" in d or path == self.facts.system_path:
                    self.update_doc(path, {"PowerState": state}, notify=False)
        self.dyn.on_power(old, state, reset_type)

    def reset(self, reset_type: str) -> None:
        """Start a ComputerSystem.Reset (validated by the caller)."""
        state = self.power_state
        if not self.dyn.accepts_reset(reset_type):
            return  # e.g. a hung OS ignores ACPI requests: accepted, nothing happens
        self._power_gen += 1
        gen = self._power_gen
        f = self.flavor
        on = state in ("On", "PoweringOn")
        if reset_type in ("On", "ForceOn") or (reset_type == "PushPowerButton" and not on):
            if not on:
                self._power_on(gen, reset_type)
        elif reset_type == "ForceOff":
            if state != "Off":
                self._set_power("Off", reset_type)
                self.append_log("The system is powered off.", message_id="Base.1.8.Success", sensor_type="Power Unit")
        elif reset_type in ("GracefulShutdown", "PushPowerButton"):
            if state != "Off":
                self._set_power("PoweringOff", reset_type)
                self.call_later(f.shutdown_seconds, self._power_off_done, gen, reset_type, False)
        elif reset_type in ("ForceRestart", "PowerCycle"):
            self._set_power("Off", reset_type)
            self.append_log("The system was reset.", message_id="Base.1.8.Success", sensor_type="Power Unit")
            self.call_later(2.0, self._power_on, gen, reset_type)
        elif reset_type == "GracefulRestart":
            if state == "Off":
                self._power_on(gen, reset_type)
            else:
                self._set_power("PoweringOff", reset_type)
                self.call_later(f.shutdown_seconds, self._power_off_done, gen, reset_type, True)
        elif reset_type == "Nmi":
            self.dyn.on_power(state, state, reset_type)
            self.append_log("A diagnostic interrupt (NMI) was issued.", severity="Warning",
                            message_id="Base.1.8.Success", sensor_type="Critical Interrupt")

    def _power_off_done(self, gen: int, reset_type: str, restart: bool) -> None:
        if gen != self._power_gen:
            return
        self._set_power("Off", reset_type)
        self.append_log("The system is powered off.", message_id="Base.1.8.Success", sensor_type="Power Unit")
        if restart:
            self.call_later(2.0, self._power_on, gen, reset_type)

    def _power_on(self, gen: int, reset_type: str | None) -> None:
        if gen != self._power_gen:
            return
        self._set_power("PoweringOn", reset_type)
        self._apply_pending_settings()
        self.call_later(self.flavor.boot_seconds, self._power_on_done, gen, reset_type)

    def _power_on_done(self, gen: int, reset_type: str | None) -> None:
        if gen != self._power_gen:
            return
        self._set_power("On", reset_type)
        self.append_log("The system is powered on.", message_id="Base.1.8.Success", sensor_type="Power Unit")
        sys_path = self.facts.system_path
        if sys_path:
            boot = (self.get_doc(sys_path) or {}).get("Boot") or {}
            if boot.get("BootSourceOverrideEnabled") == "Once":
                self.update_doc(sys_path, {"Boot": {"BootSourceOverrideEnabled": "Disabled",
                                                    "BootSourceOverrideTarget": "None"}})
        self._finish_bios_job()

    # ---- BIOS ----------------------------------------------------------------------------------------------
    def pending_bios(self) -> Doc:
        sp = self.facts.bios_settings_path
        if not sp:
            return {}
        patch = self.patches.get(sp) or {}
        attrs = patch.get("Attributes")
        return dict(attrs) if isinstance(attrs, dict) else {}

    def _apply_pending_settings(self) -> None:
        sp, bp = self.facts.bios_settings_path, self.facts.bios_path
        if not sp or not bp:
            return
        pending = self.pending_bios()
        if not pending:
            return
        if self.flavor.bios_via_job and not self._bios_job:
            return  # iDRAC: pending settings wait for a configuration job
        self.update_doc(bp, {"Attributes": pending})
        self.update_doc(sp, {"Attributes": Replace()})
        self.patches[sp]["Attributes"] = Replace()
        if self._bios_job:
            self.update_job(self._bios_job, "Running", 50, "Task successfully scheduled.")
        self.append_log("BIOS configuration changes applied.", message_id="Base.1.8.Success")

    def _finish_bios_job(self) -> None:
        if self._bios_job:
            self.update_job(self._bios_job, "Completed", 100, "Job completed successfully.", "PR19")
            self._bios_job = None

    # ---- jobs (Dell) ---------------------------------------------------------------------------------------
    def create_job(self, target: str, name: str = "ConfigBIOS:BIOS.Setup.1-1") -> str:
        jid = f"JID_{int(time.time() * 1000) % 10**12:012d}"
        while jid in self.jobs:
            jid = f"JID_{int(jid[4:]) + 1:012d}"
        mgr = self.facts.manager_path or "/redfish/v1/Managers/1"
        job: Doc = {
            "@odata.type": "#DellJob.v1_5_0.DellJob",
            "Id": jid,
            "Name": name,
            "Description": "Job Instance",
            "JobType": "BIOSConfiguration",
            "JobState": "Scheduled",
            "PercentComplete": 0,
            "Message": "Task successfully scheduled.",
            "MessageId": "IDRAC.2.8.JCP001",
            "MessageArgs": [],
            "StartTime": "TIME_NOW",
            "EndTime": "TIME_NA",
            "TargetSettingsURI": target,
            "CompletionTime": None,
        }
        self.jobs[jid] = job
        for coll in (f"{mgr}/Oem/Dell/Jobs", f"{mgr}/Jobs", "/redfish/v1/JobService/Jobs"):
            if self.template.find(coll) or coll.endswith("/Jobs"):
                path = f"{coll}/{jid}"
                self.created[path] = dict(job, **{"@odata.id": path})
                if self.template.find(coll):
                    self.added.setdefault(self.template.find(coll) or coll, []).append(path)
        if target == self.facts.bios_settings_path:
            self._bios_job = jid
        return f"{mgr}/Jobs/{jid}"

    def update_job(self, jid: str, state: str, percent: int, message: str, message_id: str = "JCP001") -> None:
        job = self.jobs.get(jid)
        if job is None:
            return
        job.update(JobState=state, PercentComplete=percent, Message=message, MessageId=f"IDRAC.2.8.{message_id}")
        if state == "Completed":
            job["CompletionTime"] = now_iso()
        for path, doc in list(self.created.items()):
            if path.endswith(f"/{jid}"):
                doc.update({k: v for k, v in job.items() if k != "@odata.id"})
                self.bump(path)

    # ---- tasks ---------------------------------------------------------------------------------------------
    def create_task(self, name: str, seconds: float, on_done: Any = None, payload: Doc | None = None) -> str:
        """A Task that runs ``seconds`` (simulated) and calls ``on_done()`` at the end; returns its path."""
        coll = self.facts.task_collection
        n = self.next_id(coll)
        tid = str(n)
        doc: Doc = {
            "@odata.type": "#Task.v1_4_3.Task",
            "Name": name,
            "TaskState": "Running",
            "TaskStatus": "OK",
            "PercentComplete": 0,
            "StartTime": now_iso(),
            "Messages": [],
            "TaskMonitor": f"/redfish/v1/TaskService/TaskMonitors/{tid}",
        }
        if payload:
            doc["Payload"] = payload
        path = self.add_resource(coll, doc, tid, keep=200)

        def step(i: int) -> None:
            d = self.created.get(path)
            if d is None:
                return
            if i < 4:
                d["PercentComplete"] = 25 * i
                self.bump(path)
                self.call_later(seconds / 4, step, i + 1)
                return
            if on_done is not None:
                try:
                    on_done()
                except Exception as exc:  # pragma: no cover - reported in the task
                    d.update(TaskState="Exception", TaskStatus="Critical",
                             Messages=[{"MessageId": "Base.1.8.GeneralError", "Message": str(exc)}])
                    self.bump(path)
                    return
            d.update(TaskState="Completed", TaskStatus="OK", PercentComplete=100, EndTime=now_iso(),
                     Messages=[{"MessageId": "Base.1.8.Success", "Message": "The request completed successfully.",
                                "Severity": "OK", "MessageSeverity": "OK"}])
            self.bump(path)

        self.call_later(seconds / 4, step, 1)
        return path

    def task_for_monitor(self, tid: str) -> str | None:
        path = f"{self.facts.task_collection}/{tid}"
        return path if path in self.created else None

    # ---- firmware ------------------------------------------------------------------------------------------
    def firmware_members(self) -> list[str]:
        fi = self.facts.firmware_inventory
        if not fi:
            return []
        return [p for p in (self.template.find(m) for m in self.template.members(fi)) if p] + self.added.get(fi, [])

    def pick_firmware_target(self, targets: list[str], image: str) -> list[str]:
        members = self.firmware_members()
        chosen = [self.template.find(t) or t for t in targets if (self.template.find(t) or t) in members]
        if chosen:
            return chosen
        low = image.lower()
        words = ["bios"] if "bios" in low else ["bmc", "idrac", "ilo", "manager", "firmware"]
        for w in words:
            for m in members:
                d = self.template.doc(m) or {}
                text = f"{m} {d.get('Name', '')} {d.get('Id', '')}".lower()
                if w in text and not m.rsplit("/", 1)[-1].lower().startswith("previous"):
                    return [m]
        return members[:1]

    def apply_firmware(self, targets: list[str], image: str) -> None:
        import re

        m = re.search(r"(\d+(?:[._]\d+)+)", image.rsplit("/", 1)[-1])
        for path in targets:
            current = str((self.get_doc(path) or {}).get("Version", "1.0.0"))
            if m:
                version = m.group(1).replace("_", ".")
            else:
                parts = current.split(".")
                if parts and parts[-1].isdigit():
                    parts[-1] = str(int(parts[-1]) + 1)
                    version = ".".join(parts)
                else:
                    version = current + ".1"
            self.update_doc(path, {"Version": version})
            self.append_log(f"Firmware update of {path.rsplit('/', 1)[-1]} to version {version} completed.",
                            message_id="Base.1.8.Success")
            mp = self.facts.manager_path
            if mp and any(w in path.lower() for w in ("bmc", "idrac", "ilo")):
                self.update_doc(mp, {"FirmwareVersion": version})
            if "bios" in path.lower() and self.facts.system_path:
                self.update_doc(self.facts.system_path, {"BiosVersion": version})

    # ---- sessions ------------------------------------------------------------------------------------------
    def session_limit(self) -> int:
        return self.fleet.config.session_limit or self.flavor.session_limit

    def expire_sessions(self) -> None:
        timeout = max(30, self.facts.session_timeout)  # real seconds: --time-scale does not shorten it
        now = time.monotonic()
        for tok, s in list(self.sessions.items()):
            if now - s.last_used > timeout:
                del self.sessions[tok]

    def new_session(self, user: str) -> Session | None:
        self.expire_sessions()
        if len(self.sessions) >= self.session_limit():
            return None
        token = secrets.token_hex(16)
        sid = str(self.next_id(self.facts.session_collection))
        path = f"{self.facts.session_collection}/{sid}"
        s = Session(token, sid, user, path, time.monotonic())
        self.sessions[token] = s
        self.bump(self.facts.session_collection)
        return s

    def session_by_token(self, token: str) -> Session | None:
        s = self.sessions.get(token)
        if s is None:
            return None
        now = time.monotonic()
        if now - s.last_used > max(30, self.facts.session_timeout):
            del self.sessions[token]
            return None
        s.last_used = now
        return s

    def session_by_path(self, path: str) -> Session | None:
        low = path.rstrip("/").lower()
        for s in self.sessions.values():
            if s.path.lower() == low:
                return s
        return None

    def session_doc(self, s: Session) -> Doc:
        return {
            "@odata.id": s.path,
            "@odata.type": "#Session.v1_3_0.Session",
            "Id": s.id,
            "Name": "User Session",
            "Description": "User Session",
            "UserName": s.user,
            "SessionType": "Redfish",
        }

    def drop_session(self, s: Session) -> None:
        self.sessions.pop(s.token, None)
        self.bump(self.facts.session_collection)

    # ---- reachability and faults ---------------------------------------------------------------------------
    def set_down(self, down: bool, reason: str = "fault") -> None:
        """Take the BMC off the network (connections refused, open ones reset) or bring it back."""
        if down:
            self._down_reasons.add(reason)
        else:
            self._down_reasons.discard(reason)
        want = bool(self._down_reasons)
        if want == self.down:
            return
        self.down = want
        self.fleet.set_listening(self, not want)
        self.dyn.on_manager_reset(want)

    def manager_reset(self) -> None:
        """Manager.Reset: sessions are lost, the BMC is unreachable for the flavor's restart time."""
        self.sessions.clear()
        self.bump(self.facts.session_collection)
        self.set_down(True, "manager-reset")
        self.fleet.loop.call_later(self.scaled(self.flavor.bmc_reset_seconds), self._manager_back)

    def _manager_back(self) -> None:
        self.set_down(False, "manager-reset")
        self.append_log("The BMC was reset.", message_id="Base.1.8.Success", sensor_type="Management Subsystem Health")

    def throttle(self, status: int = 429, seconds: float = 30.0, fraction: float = 1.0) -> None:
        """Answer ``status`` (429 or 503) to ``fraction`` of requests for ``seconds`` (simulated); 0 stops it."""
        self.throttle_status = status
        self.throttle_fraction = fraction
        self.throttle_until = time.monotonic() + self.scaled(seconds) if seconds > 0 else 0.0

"""Log entries and event messages for faults, in each BMC's own words.

The texts and MessageIds come from the registries and log entries in the captures (iDRAC's EEMI registry, iLO's
iLOEvents and IML entries, Supermicro's health log, OpenBMC's registry, the HGX HMC's ResourceEvent entries and
its per-GPU XID log). A flavor's dialect is found by :class:`~redfleet.sim.dyn_index.FlavorIndex` from the
service root; an unknown service gets DMTF ResourceEvent messages.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from redfleet.sim.dyn_index import FlavorIndex
from redfleet.sim.faults import Fault, xid_info


@dataclass
class LogWrite:
    role: str  # sel | event | hgx | xid
    message: str
    severity: str  # OK | Warning | Critical
    message_id: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)


@dataclass
class Part:
    """The part a fault hits, named as the BMC names it."""

    name: str  # "System Board Fan1A", "PS2 Status", "GPU_SXM_3", "DIMM.Socket.A1", "Disk.Bay.0"
    number: int  # 1-based
    uri: str | None = None  # its resource, for OriginOfCondition


def _hexid(*parts: Any) -> str:
    return f"{zlib.crc32(repr(parts).encode()) & 0xFFFFFFFF:08x}"


def _origin(uri: str | None) -> dict[str, Any]:
    return {"Links": {"OriginOfCondition": {"@odata.id": uri}}} if uri else {}


def _dell(kind: str, f: Fault, p: Part, assert_: bool) -> list[LogWrite]:
    # (LC code, SEL sensor type, text, args, severity)
    code_txt: dict[str, tuple[str, str, str, list[str], str]] = {
        "fan": ("FAN0001", "Fan", f"Fan {p.name} RPM is less than the lower critical threshold.", [p.name], "Critical"),
        "psu": ("PSU0001", "Power Supply", f"Power supply {p.number} failed.", [str(p.number)], "Critical"),
        "inlet-overtemp": ("TMP0121", "Temperature",
                           "The system inlet temperature is greater than the upper critical threshold.", [],
                           "Critical"),
        "gpu-overtemp": ("TMP0115", "Temperature",
                         f"The {p.name} temperature is greater than the upper critical threshold.", [p.name],
                         "Critical"),
        "ecc-dbe": ("HWC9052", "Processor",
                    f"The health of Graphics Processing Unit (GPU) device {p.name} is critical because of single or "
                    "double bit errors on the memory cells.", [p.name], "Critical"),
        "row-remap": ("HWC9052", "Processor",
                      f"The health of Graphics Processing Unit (GPU) device {p.name} is critical because of single "
                      "or double bit errors on the memory cells.", [p.name], "Critical"),
        "gpu-lost": ("PCI1358", "Critical Interrupt",
                     f"A fatal error was detected on a component at slot {p.number}.", [str(p.number)], "Critical"),
        "xid": ("PCI1358", "Critical Interrupt", f"A fatal error was detected on a component at slot {p.number}.",
                [str(p.number)], "Critical"),
        "nvlink": ("PCI3014", "Critical Interrupt", f"A correctable PCIe error detected on a component at slot "
                   f"{p.number}.", [str(p.number)], "Warning"),
        "dimm-ce": ("MEM0702", "Memory", f"Correctable memory errors detected for {p.name}.", [p.name], "Warning"),
        "nvme-wear": ("PDR113", "Drive Slot (Bay)",
                      f"The {p.name} has reached or exceeded its warrantied wear-out limit. Part Number = "
                      "MZXL53T8HBLS-000H3", [p.name, "MZXL53T8HBLS-000H3"], "Warning"),
        "nvme-media": ("PDR1102", "Drive Slot (Bay)", f"A predictive failure detected on drive {p.name}.", [p.name],
                       "Warning"),
        "os-hang": ("ASR0106", "Watchdog 2", "The OS watchdog timer expired.", [], "Critical"),
    }
    clear_txt: dict[str, tuple[str, str, list[str]]] = {
        "fan": ("FAN0005", f"Fan {p.name} RPM is within range.", [p.name]),
        "psu": ("PSU0000", f"Power supply {p.number} is present.", [str(p.number)]),
        "inlet-overtemp": ("TMP0122", "The system inlet temperature is within range.", []),
        "gpu-overtemp": ("TMP0116", f"The {p.name} temperature is within range.", [p.name]),
        "dimm-ce": ("MEM0700", f"Correctable memory error logging disabled for {p.name}.", [p.name]),
    }
    if kind not in code_txt:
        return []
    code, sensor, text, args, sev = code_txt[kind]
    if not assert_:
        if kind not in clear_txt:
            return []
        code, text, args = clear_txt[kind]
        sev = "OK"
    sel = LogWrite("sel", text, sev, _hexid(kind, p.name, assert_), {
        "EntryType": "SEL", "EntryCode": "Assert" if assert_ else "Deassert", "SensorType": sensor,
        "GeneratorId": "0x0020", "MessageArgs": [], "MessageArgs@odata.count": 0, **_origin(p.uri)})
    lc = LogWrite("event", text, sev, f"IDRAC.2.7.{code}", {
        "EntryType": "Oem", "OemRecordFormat": "Dell", "MessageArgs": args, "MessageArgs@odata.count": len(args),
        "Oem": {"Dell": {"@odata.type": "#DellLCLogEntry.v1_1_0.DellLCLogEntry", "Category": "System Health",
                         "Comment": None, "LastUpdatedByUser": None}}, **_origin(p.uri)}, args)
    return [sel, lc]


_HPE_IML = {
    # kind: (iLOEvents id, args, IML text, class, class description, code, recommended action)
    "fan": ("FanFailed", lambda p: [str(p.number)], lambda p: f"System Fan Failure (Fan {p.number}, Location System)",
            3, "System Fan", 4, "Replace the failed fan."),
    "psu": ("PowerSupplyFailed", lambda p: [str(p.number)],
            lambda p: f"System Power Supply Failure (Power Supply {p.number})", 11, "Power", 2,
            "Check the power source, then test and replace any failed power supplies."),
    "inlet-overtemp": ("ThermalStatusFailure", lambda p: ["Ambient"],
                       lambda p: "System Overheating (Temperature Sensor 1, Location Ambient, Temperature 45C)",
                       4, "System Temperature", 2, "Check the ambient temperature and the airflow."),
    "dimm-ce": ("CorrectableOrUncorrectableMemoryErrors", lambda p: [str(p.number), "1", "0", "1"],
                lambda p: f"Corrected Memory Error threshold exceeded (Processor 1, Memory Module {p.number})",
                19, "Main Memory", 12, "Replace the DIMM at the next maintenance window."),
    "nvme-wear": ("DriveWearOut", lambda p: [p.name],
                  lambda p: f"Drive wear status: The NVMe drive at {p.name} has reached its maximum usage limit "
                  "for writes (wear out).", 17, "Drive", 24, "Replace the drive."),
    "nvme-media": ("DriveSmartError", lambda p: [p.name],
                   lambda p: f"The NVMe drive at {p.name} reported a predictive failure (media errors).",
                   17, "Drive", 25, "Replace the drive."),
    "os-hang": ("IPMIWatchdogTimerReset", lambda p: ["OS watchdog expired"],
                lambda p: "ASR Detected by System ROM", 33, "Maintenance", 8, "Check the operating system logs."),
    "gpu-overtemp": ("ThermalStatusFailure", lambda p: [p.name],
                     lambda p: f"System Overheating (Temperature Sensor, Location {p.name})", 4,
                     "System Temperature", 2, "Check the GPU cooling."),
}


def _hpe(kind: str, f: Fault, p: Part, assert_: bool) -> list[LogWrite]:
    spec = _HPE_IML.get(kind)
    if spec is None:
        return []
    ev, argf, textf, cls, cdesc, code, action = spec
    sev = "Critical" if kind not in ("dimm-ce", "nvme-wear") else "Warning"
    text = textf(p)
    if not assert_:
        text = text + " - Repaired"
        sev = "OK"
    iml = LogWrite("sel", text, sev, None, {
        "EntryType": "Oem", "OemRecordFormat": "Hpe-IML",
        "Oem": {"Hpe": {"@odata.type": "#HpeLogEntry.v2_4_0.HpeLogEntry", "Categories": ["Hardware"],
                        "Class": cls, "ClassDescription": cdesc, "Code": code, "Count": 1,
                        "Severity": {"Critical": "Critical", "Warning": "Caution"}.get(sev, "Repaired"),
                        "Repaired": not assert_, "RecommendedAction": action,
                        "Updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}})
    out = [iml]
    if assert_:
        args = argf(p)
        out.append(LogWrite("event", text, sev, f"iLOEvents.3.7.{ev}",
                            {"EntryType": "Oem", "OemRecordFormat": "Hpe-Event", "MessageArgs": args,
                             **_origin(p.uri)}, args))
    return out


_SMC = {
    # kind: (text, sensor type, event data hex)
    "fan": (lambda p: f"[FAN-0003] {p.name}, Lower Critical - going low - Assertion", "Fan", "0x020400"),
    "psu": (lambda p: f"[PWR-0001] PS{p.number} Status, Power Supply Failure detected", "Power Supply / Converter",
            "0xF1FFFF"),
    "inlet-overtemp": (lambda p: "[TMP-0009] Inlet Temp, Upper Critical - going high - Assertion", "Temperature",
                       "0x095A28"),
    "gpu-overtemp": (lambda p: f"[TMP-0009] {p.name} Temp, Upper Critical - going high - Assertion", "Temperature",
                     "0x095A28"),
    "dimm-ce": (lambda p: f"[MEM-0005] {p.name}, Correctable ECC @ DIMM{p.name} - Assertion", "Memory", "0xA000FF"),
    "gpu-lost": (lambda p: f"[GS-0001] GPU{p.number} Temp, {p.number} is not present", "Temperature", "0x018000"),
    "xid": (lambda p: f"[GPU-0001] GPU{p.number}, Critical Interrupt - Assertion", "Critical Interrupt", "0xA1FFFF"),
    "ecc-dbe": (lambda p: f"[GPU-0002] GPU{p.number}, Uncorrectable ECC - Assertion", "Memory", "0xA101FF"),
    "row-remap": (lambda p: f"[GPU-0003] GPU{p.number}, Row Remapping Failure - Assertion", "Memory", "0xA102FF"),
    "nvlink": (lambda p: f"[GPU-0004] GPU{p.number}, NVLink Error - Assertion", "Critical Interrupt", "0xA103FF"),
    "nvme-wear": (lambda p: f"[STR-0010] NVMe SSD {p.name}, Drive Fault - Wear Out - Assertion", "Drive Slot",
                  "0x01FFFF"),
    "nvme-media": (lambda p: f"[STR-0011] NVMe SSD {p.name}, Predictive Failure - Assertion", "Drive Slot",
                   "0x02FFFF"),
    "os-hang": (lambda p: "[SYS-0012] Watchdog 2, Timer expired - Assertion", "Watchdog 2", "0x00FFFF"),
}


def _smc(kind: str, f: Fault, p: Part, assert_: bool) -> list[LogWrite]:
    spec = _SMC.get(kind)
    if spec is None:
        return []
    textf, sensor, data = spec
    text = textf(p)
    if not assert_:
        text = text.replace("Assertion", "Deassertion")
    sev = "OK" if not assert_ else ("Warning" if kind in ("dimm-ce", "nvme-wear", "nvlink") else "Critical")
    return [LogWrite("sel", text, sev, data, {
        "EntryType": "SEL", "EntryCode": "Assert" if assert_ else "Deassert", "SensorType": sensor,
        "SensorNumber": 255, "GeneratorId": "0x0020"})]


_OPENBMC = {
    "fan": ("SensorThresholdCriticalLowGoingLow", lambda p: [p.name, "0", "300"],
            lambda p: f"Sensor {p.name} reading of 0 is below the 300 lower critical threshold."),
    "psu": ("PowerSupplyFailed", lambda p: [p.name], lambda p: f"Power supply {p.name} failed."),
    "inlet-overtemp": ("SensorThresholdCriticalHighGoingHigh", lambda p: [p.name, "45", "40"],
                       lambda p: f"Sensor {p.name} reading of 45 is above the 40 upper critical threshold."),
    "gpu-overtemp": ("ComponentOverTemperature", lambda p: [p.name],
                     lambda p: f"{p.name} over temperature and being throttled."),
    "dimm-ce": ("MemoryECCCorrectable", lambda p: ["0", "0", str(p.number), "0"],
                lambda p: f"Memory ECC correctable error. Socket=0 Channel=0 DIMM={p.number} Rank=0."),
    "nvme-wear": ("DriveError", lambda p: [f"{p.name} wear-out"],
                  lambda p: f"Drive Error Occurred: {p.name} wear-out."),
    "nvme-media": ("DriveError", lambda p: [f"{p.name} media errors"],
                   lambda p: f"Drive Error Occurred: {p.name} media errors."),
    "os-hang": ("IPMIWatchdog", lambda p: ["Timer expired"], lambda p: "Host Watchdog Event: Timer expired"),
}


def _openbmc(kind: str, f: Fault, p: Part, assert_: bool) -> list[LogWrite]:
    spec = _OPENBMC.get(kind)
    if spec is None or not assert_:
        return []
    mid, argf, textf = spec
    args = argf(p)
    sev = "Warning" if kind in ("dimm-ce", "nvme-wear", "nvme-media", "psu") else "Critical"
    if kind == "os-hang":
        sev = "OK"
    return [LogWrite("sel", textf(p), sev, f"OpenBMC.0.4.{mid}",
                     {"EntryType": "Event", "MessageArgs": args, **_origin(p.uri)}, args)]


_GENERIC_SEL = {
    "fan": ("Fan", lambda p: f"{p.name} Lower Critical going low - Asserted"),
    "psu": ("Power Supply", lambda p: f"{p.name} Power Supply Failure detected - Asserted"),
    "inlet-overtemp": ("Temperature", lambda p: f"{p.name} Upper Critical going high - Asserted"),
    "gpu-overtemp": ("Temperature", lambda p: f"{p.name} Temp Upper Critical going high - Asserted"),
    "dimm-ce": ("Memory", lambda p: f"{p.name} Correctable ECC - Asserted"),
    "nvme-wear": ("Drive Slot (Bay)", lambda p: f"{p.name} Drive Fault - Asserted"),
    "nvme-media": ("Drive Slot (Bay)", lambda p: f"{p.name} Predictive Failure - Asserted"),
    "os-hang": ("Watchdog 2", lambda p: "Watchdog 2 Timer expired - Asserted"),
    "gpu-lost": ("Critical Interrupt", lambda p: f"{p.name} PCIe Fatal Error - Asserted"),
    "xid": ("Critical Interrupt", lambda p: f"{p.name} Critical Interrupt - Asserted"),
    "ecc-dbe": ("Memory", lambda p: f"{p.name} Uncorrectable ECC - Asserted"),
    "row-remap": ("Memory", lambda p: f"{p.name} Row Remap Failure - Asserted"),
    "nvlink": ("Critical Interrupt", lambda p: f"{p.name} NVLink Error - Asserted"),
}


def _generic(kind: str, f: Fault, p: Part, assert_: bool, entry_type: str) -> list[LogWrite]:
    spec = _GENERIC_SEL.get(kind)
    if spec is None:
        return []
    sensor, textf = spec
    text = textf(p)
    if not assert_:
        text = text.replace("Asserted", "Deasserted")
    sev = "OK" if not assert_ else ("Warning" if f.severity() == "Warning" else "Critical")
    extra: dict[str, Any] = {"EntryType": entry_type, **_origin(p.uri)}
    if entry_type == "SEL":
        extra.update({"EntryCode": "Assert" if assert_ else "Deassert", "SensorType": sensor})
    mid = "ResourceEvent.1.0.ResourceErrorsDetected" if assert_ else "ResourceEvent.1.0.ResourceErrorsCorrected"
    args = [p.name, text]
    extra["MessageArgs"] = args
    return [LogWrite("sel", text, sev, mid, extra, args)]


def _hgx(kind: str, f: Fault, p: Part, assert_: bool, chassis: str | None) -> list[LogWrite]:
    """The HGX HMC's own event log (ResourceEvent.1.0.ResourceErrorsDetected, as captured)."""
    if not assert_:
        return []
    what = {
        "ecc-dbe": ("DRAM ECC", "Uncorrectable ECC Error (DBE)"),
        "row-remap": ("Row Remapping", "Row Remapping Failure"),
        "gpu-lost": ("PCIe", "GPU fell off the bus"),
        "nvlink": ("NVLink", "NVLink Training Failure / CRC Errors"),
        "gpu-overtemp": ("ThrottleReason",
                         "xyz.openbmc_project.State.ProcessorPerformance.ThrottleReasons.HWThermalSlowdown"),
    }.get(kind)
    if what is None:
        return []
    prop = f"{p.name} {what[0]}"
    text = f"The resource property {prop} has detected errors of type '{what[1]}'."
    return [LogWrite("hgx", text, "Critical" if kind != "gpu-overtemp" else "Warning",
                     "ResourceEvent.1.0.ResourceErrorsDetected",
                     {"EntryType": "Event", "MessageArgs": [prop, what[1]], "Resolved": False,
                      "Resolution": "Reset the GPU or power cycle the baseboard.", **_origin(chassis)},
                     [prop, what[1]])]


def hgx_xid_write(p: Part, code: int, chassis: str | None, seq: int) -> LogWrite:
    """An entry of the HMC's per-GPU XID log, worded as the capture words them."""
    stamp = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime())
    detail = f"[{stamp}][{seq}][00] XID {code} {xid_info(code)[0].lower()}"
    prop = f"{p.name} Driver Event Message"
    return LogWrite("xid", f"The resource property {prop} has detected errors of type '{detail}'.", "Critical",
                    "ResourceEvent.1.0.ResourceErrorsDetected",
                    {"EntryType": "Event", "MessageArgs": [prop, detail], "Resolved": False, "Resolution": "",
                     **_origin(chassis)}, [prop, detail])


def fault_writes(ix: FlavorIndex, f: Fault, p: Part, assert_: bool = True) -> list[LogWrite]:
    """What the BMC writes to its logs when fault ``f`` hits part ``p`` (or clears, ``assert_=False``)."""
    kind = f.kind
    if kind == "xid" and f.xid == 79:
        kind = "gpu-lost"
    out: list[LogWrite] = []
    d = ix.dialect
    if d == "dell":
        out = _dell(kind, f, p, assert_)
    elif d == "hpe":
        out = _hpe(kind, f, p, assert_)
    elif d == "smc":
        out = _smc(kind, f, p, assert_)
    elif d == "openbmc":
        out = _openbmc(kind, f, p, assert_)
    if not out:
        sel = ix.logs.get("sel")
        out = _generic(kind, f, p, assert_, sel.entry_type if sel else "Event")
    if "hgx" in ix.logs and ix.gpus and f.spec.target == "gpu":
        g = ix.gpus[p.number - 1] if 0 < p.number <= len(ix.gpus) else None
        out.extend(_hgx(kind, f, p, assert_, g.chassis if g else None))
    return out


# --- power and test events ---------------------------------------------------------------------------------------


def power_message(ix: FlavorIndex, system: str | None, on: bool) -> tuple[str, str, list[str]]:
    """(MessageId, Message, MessageArgs) of the event a BMC sends when the host powers on or off."""
    d = ix.dialect
    if d == "dell":
        return ("IDRAC.2.7.SYS1000", "System is turning on.", []) if on else (
            "IDRAC.2.7.SYS1001", "System is turning off.", [])
    if d == "hpe":
        return ("iLOEvents.3.7.ServerPoweredOn", "The server has been powered on.", []) if on else (
            "iLOEvents.3.7.ServerPoweredOff", "The server has been powered off.", [])
    if d == "ami":
        state = "On" if on else "Off"
        return ("EventLog.1.0.PowerStatusChange",
                f"The power state of resource {system} has changed to type {state}", [str(system), state])
    if d == "openbmc":
        return ("OpenBMC.0.4.DCPowerOn", "Host system DC power is on", []) if on else (
            "OpenBMC.0.4.DCPowerOff", "Host system DC power is off", [])
    if on:
        return ("ResourceEvent.1.0.ResourcePoweredOn", f"The resource `{system}` has powered on.", [str(system)])
    return ("ResourceEvent.1.0.ResourcePoweredOff", f"The resource `{system}` has powered off.", [str(system)])

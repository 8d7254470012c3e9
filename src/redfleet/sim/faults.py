"""The fault catalog and the per-node fault records.

Each kind says what it touches (its *surfaces*), what part it targets (a GPU, a fan, a PSU, a DIMM, a drive, the
node's OS or its BMC) and whether a power cycle clears it, as the field shows: a GPU that fell off the bus usually
comes back after a reboot; a failed fan or a worn-out SSD does not. ``persistent`` on one fault overrides the
catalog. A "lemon" node fails again with the same fault some minutes after each repair.

``cleared_by_gpu_reset`` is the in-band rung below a reboot (``nvidia-smi --gpu-reset``): it clears what lives in
the GPU's own state (an Xid, a double-bit ECC error whose row remap the reset applies, NVLink errors) but not:
a GPU that fell off the bus (gpu-lost, and an xid fault with code 79), which the driver can no longer reach, so
only a node power cycle brings it back; a row-remap failure, which means the remap resources are spent and the
GPU needs an RMA; an over-temperature GPU, which is a cooling problem a reset does not touch; and nothing that is
not a GPU.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    summary: str
    target: str  # gpu | fan | psu | dimm | drive | node | bmc
    cleared_by_power_cycle: bool
    surfaces: tuple[str, ...]
    severity: str = "Critical"  # Health it gives the part on Redfish
    default_xid: int | None = None
    cleared_by_bmc_reset: bool = False
    testing: bool = False
    cleared_by_gpu_reset: bool = False  # see the module docstring; "xid" is True but code 79 is excepted per fault

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "summary": self.summary,
            "target": self.target,
            "cleared_by_power_cycle": self.cleared_by_power_cycle,
            "cleared_by_bmc_reset": self.cleared_by_bmc_reset,
            "cleared_by_gpu_reset": self.cleared_by_gpu_reset,
            "surfaces": list(self.surfaces),
            "severity": self.severity,
            "default_xid": self.default_xid,
            "testing": self.testing,
        }


_RF = "redfish"
_SEL = "sel"
_EV = "events"
_DCGM = "dcgm"
_XID = "xid-lines"
_NVME = "nvme"
_OS = "os"
_BMC = "bmc"

CATALOG: dict[str, FaultSpec] = {
    s.kind: s
    for s in (
        FaultSpec("xid", "GPU Xid error, any code (--xid, default 31); 79 also takes the GPU off the bus", "gpu", True,
                  (_RF, _SEL, _EV, _DCGM, _XID), default_xid=31, cleared_by_gpu_reset=True),
        FaultSpec("ecc-dbe", "GPU double-bit ECC error: Xid 48 + 63, DBE counters, row remap pending", "gpu", True,
                  (_RF, _SEL, _EV, _DCGM, _XID), default_xid=48, cleared_by_gpu_reset=True),
        FaultSpec("row-remap", "GPU row-remap failure: Xid 64, ROW_REMAP_FAILURE=1 (needs RMA)", "gpu", False,
                  (_RF, _SEL, _EV, _DCGM, _XID), default_xid=64),
        FaultSpec("gpu-lost", "GPU fallen off the bus: Xid 79, gone from inventory and from DCGM", "gpu", True,
                  (_RF, _SEL, _EV, _DCGM, _XID), default_xid=79),
        FaultSpec("nvlink", "NVLink errors: Xid 74, CRC/replay/recovery counters climbing", "gpu", True,
                  (_RF, _SEL, _EV, _DCGM, _XID), severity="Warning", default_xid=74, cleared_by_gpu_reset=True),
        FaultSpec("gpu-overtemp", "GPU over temperature (~92 °C, throttling)", "gpu", False,
                  (_RF, _SEL, _EV, _DCGM)),
        FaultSpec("inlet-overtemp", "Inlet air over temperature (+20 °C; every reading follows)", "node", False,
                  (_RF, _SEL, _EV, _DCGM), severity="Warning"),
        FaultSpec("fan", "Fan failure (0 RPM; the others speed up)", "fan", False, (_RF, _SEL, _EV)),
        FaultSpec("psu", "Power supply failure (no output; redundancy lost)", "psu", False, (_RF, _SEL, _EV)),
        FaultSpec("dimm-ce", "DIMM correctable-error storm", "dimm", False, (_RF, _SEL, _EV), severity="Warning"),
        FaultSpec("nvme-wear", "NVMe wear-out: percentage used ≥100, spare below threshold", "drive", False,
                  (_RF, _SEL, _EV, _NVME), severity="Warning"),
        FaultSpec("nvme-media", "NVMe media errors; reliability degraded", "drive", False, (_RF, _SEL, _EV, _NVME)),
        FaultSpec("os-hang", "OS hang: BMC still up, in-band agent silent, graceful resets ignored", "node", True,
                  (_OS, _DCGM, _SEL), severity="OK"),
        FaultSpec("bmc-down", "BMC unreachable (connections refused)", "bmc", False, (_BMC,), severity="OK"),
        FaultSpec("bmc-slow", "BMC slow (seconds per request); a BMC reset clears it", "bmc", False, (_BMC,),
                  severity="OK", cleared_by_bmc_reset=True),
        FaultSpec("bmc-throttle", "BMC answers 429/503 storms", "bmc", False, (_BMC,), severity="OK"),
        # testing kinds: for the Redfish client's own tests, not hardware faults
        FaultSpec("session-refuse", "testing: session table full, POST Sessions answers 503", "bmc", False, (_BMC,),
                  severity="OK", cleared_by_bmc_reset=True, testing=True),
        FaultSpec("bad-json", "testing: malformed JSON bodies", "bmc", False, (_BMC,), severity="OK",
                  cleared_by_bmc_reset=True, testing=True),
        FaultSpec("cert-change", "testing: the BMC presents a new certificate", "bmc", False, (_BMC,),
                  severity="OK", testing=True),
    )
}

PUBLIC_KINDS: tuple[str, ...] = tuple(k for k, s in CATALOG.items() if not s.testing)
TESTING_KINDS: tuple[str, ...] = tuple(k for k, s in CATALOG.items() if s.testing)

_ids = itertools.count(1)


@dataclass
class Fault:
    kind: str
    node: str
    target: int | None = None  # index of the GPU / fan / PSU / DIMM / drive
    xid: int | None = None
    persistent: bool = False
    started: float = 0.0  # simulated seconds
    until: float | None = None  # auto-clear at this simulated time
    params: dict[str, Any] = field(default_factory=dict)
    recurrence: int = 0  # how many times a lemon has had it again
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def spec(self) -> FaultSpec:
        return CATALOG[self.kind]

    @property
    def clears_on_power_cycle(self) -> bool:
        return self.spec.cleared_by_power_cycle and not self.persistent

    @property
    def clears_on_gpu_reset(self) -> bool:
        # Xid 79 is the GPU falling off the bus: a reset cannot reach it (see the module docstring)
        return self.spec.cleared_by_gpu_reset and not self.persistent and not (self.kind == "xid" and self.xid == 79)

    @property
    def clears_on_bmc_reset(self) -> bool:
        return self.spec.cleared_by_bmc_reset and not self.persistent

    def severity(self) -> str:
        if self.kind == "xid" and self.xid is not None:
            return xid_severity(self.xid)
        return self.spec.severity

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node": self.node,
            "kind": self.kind,
            "target": self.target,
            "gpu": self.target if self.spec.target == "gpu" else None,
            "xid": self.xid,
            "persistent": self.persistent,
            "cleared_by_power_cycle": self.clears_on_power_cycle,
            "cleared_by_gpu_reset": self.clears_on_gpu_reset,
            "started": round(self.started, 3),
            "until": None if self.until is None else round(self.until, 3),
            "recurrence": self.recurrence,
            "params": dict(self.params),
        }


# --- Xid facts ---------------------------------------------------------------------------------------------------

# code: (mnemonic, resolution bucket, the text NVRM prints after "pid=..., name=..., ")
_XIDS: dict[int, tuple[str, str, str]] = {
    8: ("ROBUST_CHANNEL_FIFO_ERROR_IDLE_TIMEOUT", "RESTART_APP", "Channel exception: GPU stopped processing"),
    13: ("ROBUST_CHANNEL_GR_EXCEPTION", "RESTART_APP",
         "Graphics SM Warp Exception on (GPC 0, TPC 1, SM 0): Out Of Range Address"),
    31: ("ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT", "RESTART_APP",
         "Ch 00000008, intr 00000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f2b_e0000000. "
         "Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_READ"),
    43: ("ROBUST_CHANNEL_RESETCHANNEL_VERIF_ERROR", "IGNORE", "Ch 00000010"),
    45: ("ROBUST_CHANNEL_PREEMPTIVE_REMOVAL", "WORKFLOW_XID_45", "Ch 00000010"),
    46: ("ROBUST_CHANNEL_GPU_TIMEOUT_ERROR", "RESET_GPU", "GPU stopped processing"),
    48: ("ROBUST_CHANNEL_GPU_ECC_DBE", "WORKFLOW_XID_48",
         "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 0, "
         "subpartition 0."),
    61: ("PMU_BREAKPOINT", "CONTACT_SUPPORT", "Internal micro-controller breakpoint/warning"),
    62: ("PMU_HALT_ERROR", "RESET_GPU", "Internal micro-controller halt (newer drivers)"),
    63: ("INFOROM_DRAM_RETIREMENT_EVENT", "IGNORE",
         "Row Remapper: New row marked for remapping, reset gpu to activate."),
    64: ("INFOROM_DRAM_RETIREMENT_FAILURE", "RESET_GPU",
         "Row Remapper: Failed to remap a row: remapping resources exhausted, contact support."),
    74: ("NVLINK_ERROR", "WORKFLOW_NVLINK_ERR",
         "NVLink: fatal error detected on link 3(0x0, 0x0, 0x10000, 0x0, 0x0, 0x0, 0x0)"),
    79: ("ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS", "RESTART_BM", "GPU has fallen off the bus."),
    92: ("EXCESSIVE_SBE_INTERRUPTS", "IGNORE", "High single-bit ECC error rate detected"),
    94: ("ROBUST_CHANNEL_CONTAINED_ERROR", "RESTART_APP", "Contained: SM (0x1). RST: No, D-RST: No"),
    95: ("ROBUST_CHANNEL_UNCONTAINED_ERROR", "RESET_GPU", "Uncontained: FBHUB. RST: Yes, D-RST: No"),
    109: ("ROBUST_CHANNEL_CTXSW_TIMEOUT_ERROR", "RESET_GPU", "Context Switch Timeout Error"),
    119: ("GSP_RPC_TIMEOUT", "RESET_GPU",
          "Timeout after 6s of waiting for RPC response from GPU0 GSP! Expected function 76 (GSP_RM_CONTROL) "
          "(0x20802a02 0x8)."),
    120: ("GSP_ERROR", "RESET_GPU", "GSP task exception"),
    140: ("UNRECOVERABLE_ECC_ERROR_ESCAPE", "RESET_GPU", "An unrecoverable ECC error was observed"),
    154: ("GPU_RECOVERY_ACTION_CHANGED", "XID_154", "GPU recovery action changed from 0x0 (None) to 0x2 "
          "(Node Reboot Required)"),
}


def xid_info(code: int) -> tuple[str, str, str]:
    """(mnemonic, resolution bucket, message text) for an Xid code."""
    hit = _XIDS.get(code)
    if hit is not None:
        return hit
    # Codes beyond the ones above: NVIDIA's catalog as the health engine ships it (built from the workbook), so the
    # simulator and the engine agree on every bucket and neither needs ../shared at run time.
    from redfleet.health.xid import default_catalog

    catalog = default_catalog()
    entry = catalog.entry(code)
    if entry is not None:
        return (catalog.mnemonic(code), str(entry.get("immediate") or "CONTACT_SUPPORT"),
                str(entry.get("description") or f"Xid {code} event"))
    return (f"XID_{code}", "CONTACT_SUPPORT", f"Xid {code} event")


def xid_severity(code: int) -> str:
    """Health an Xid leaves on the GPU: application faults leave it OK, the rest need a reset or more."""
    bucket = xid_info(code)[1]
    if bucket in ("RESTART_APP", "IGNORE", "WORKFLOW_XID_45"):
        return "OK"
    if bucket in ("WORKFLOW_NVLINK_ERR", "XID_154"):
        return "Warning"
    return "Critical"


def xid_line(code: int, bus: int, pid: int | None = None, name: str | None = None) -> str:
    """A kernel log line exactly as the NVIDIA driver writes it."""
    text = xid_info(code)[2]
    if code in (79, 48, 63, 64, 74, 92, 119, 120, 154) or pid is None:
        who = "pid='<unknown>', name=<unknown>"
    else:
        who = f"pid={pid}, name={name or 'python3'}"
    return f"NVRM: Xid (PCI:0000:{bus:02x}:00): {code}, {who}, {text}"


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1h', '250ms', 12, '1.5' -> seconds."""
    if value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    s = str(value).strip().lower()
    for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0)):
        if s.endswith(suffix) and s[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(s[: -len(suffix)]) * mult
    return float(s)

"""GPU readings through NVML (``nvidia-ml-py``, imported as ``pynvml``), under DCGM field names.

The field mapping is the table in :mod:`redfleet.agent.fields`. Behaviour that matters on real fleets:

- a reading a GPU does not have raises ``NVMLError`` with ``NVML_ERROR_NOT_SUPPORTED`` (retired pages on Hopper,
  row remapping before Ampere, NVLink on PCIe cards, ECC when it is off...): that sample is left out and the call
  is not retried for that GPU (``NO_PERMISSION``/``FUNCTION_NOT_FOUND`` the same);
- ``NVML_ERROR_GPU_IS_LOST`` (the GPU fell off the bus, Xid 79): the GPU drops out of ``gpus`` and an ``agent``
  event says so once; ``gpus_expected`` keeps the count seen at start so the ingest side sees a missing GPU;
- Xid events come from an NVML event set: ``nvmlEventSetCreate`` + ``nvmlDeviceRegisterEvents(h,
  nvmlEventTypeXidCriticalError, set)`` + ``nvmlEventSetWait(set, timeout_ms)`` (``NVML_ERROR_TIMEOUT`` when none);
  ``eventData`` is the Xid number. The last Xid per GPU is also reported as ``DCGM_FI_DEV_XID_ERRORS`` (sticky,
  as DCGM does).
- a GPU reset (``nvidia-smi --gpu-reset``) needs the GPU free of every client, monitoring ones included: the agent
  shuts NVML down around it (:meth:`NvmlCollector.suspend` / :meth:`~NvmlCollector.resume`) and initialises it
  again afterwards, taking fresh handles, so a GPU the reset brought back is read again (and one still lost is
  reported again).

No GPU was lent to this work: the tests run this code against a stand-in module
(``tests/agent/nvml_standin.py``) that follows pynvml's documented API (return types, NVMLError codes, the event
set API); the real library is used unchanged when a GPU is present.
"""

from __future__ import annotations

import logging
import threading
import time
from types import ModuleType
from typing import Any

from redfleet.agent.kmsg import bus_key
from redfleet.model.ingest import GpuIdentity, InbandEvent, Sample

log = logging.getLogger("redfleet.agent.nvml")

MIB = 1024 * 1024
_SKIP_CODES = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_NO_PERMISSION", "NVML_ERROR_FUNCTION_NOT_FOUND",
               "NVML_ERROR_INVALID_ARGUMENT", "NVML_ERROR_NOT_FOUND")

_NVLINK_COUNTERS = (
    ("NVML_NVLINK_ERROR_DL_CRC_FLIT", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"),
    ("NVML_NVLINK_ERROR_DL_CRC_DATA", "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL"),
    ("NVML_NVLINK_ERROR_DL_REPLAY", "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL"),
    ("NVML_NVLINK_ERROR_DL_RECOVERY", "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL"),
)


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


class NvmlSuspended(RuntimeError):
    """NVML is released for a GPU reset: nothing is read until :meth:`NvmlCollector.resume`."""


class NvmlCollector:
    """Reads every GPU once per :meth:`collect`. ``nvml`` is the pynvml module (or a stand-in with its API)."""

    def __init__(self, nvml: ModuleType | Any | None = None, *, gpus_expected: int | None = None) -> None:
        if nvml is None:
            import pynvml

            nvml = pynvml
        self.nv = nvml
        self.handles: list[Any] = []
        self.ident: list[GpuIdentity] = []
        self.unsupported: set[tuple[int, str]] = set()
        self.lost: set[int] = set()
        self.last_xid: dict[int, int] = {}
        self.event_set: Any = None
        self.driver_version: str | None = None
        self.gpus_expected = gpus_expected
        self.opened = False
        self.suspended = False
        self._lock = threading.Lock()  # collect() runs in a worker thread; suspend() waits for it
        self._skip = tuple(getattr(nvml, c) for c in _SKIP_CODES if hasattr(nvml, c))
        self._lost_code = getattr(nvml, "NVML_ERROR_GPU_IS_LOST", 15)
        self._timeout_code = getattr(nvml, "NVML_ERROR_TIMEOUT", 10)

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def open(self) -> None:
        nv = self.nv
        nv.nvmlInit()
        self.opened = True
        # fresh handles and verdicts on every (re)initialisation: the old ones do not survive nvmlShutdown
        self.handles, self.ident, self.lost, self.unsupported = [], [], set(), set()
        self.driver_version = _text(nv.nvmlSystemGetDriverVersion())
        count = int(nv.nvmlDeviceGetCount())
        self.gpus_expected = max(self.gpus_expected or 0, count)
        try:
            self.event_set = nv.nvmlEventSetCreate()
        except nv.NVMLError as exc:
            log.warning("NVML event set: %s; Xid events only from the kernel log", exc)
            self.event_set = None
        for i in range(count):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            self.handles.append(h)
            pci = self._try(i, "pci", nv.nvmlDeviceGetPciInfo, h)
            self.ident.append(GpuIdentity(
                gpu=i, uuid=_opt_text(self._try(i, "uuid", nv.nvmlDeviceGetUUID, h)),
                pci_bus_id=_text(pci.busId) if pci is not None else None,
                model=_opt_text(self._try(i, "name", nv.nvmlDeviceGetName, h)),
                serial=_opt_text(self._try(i, "serial", nv.nvmlDeviceGetSerial, h))))
            if self.event_set is not None:
                try:
                    nv.nvmlDeviceRegisterEvents(h, nv.nvmlEventTypeXidCriticalError, self.event_set)
                except nv.NVMLError as exc:
                    log.info("GPU %d: Xid events not supported (%s)", i, exc)

    def close(self) -> None:
        if not self.opened:
            return
        if self.event_set is not None:
            try:
                self.nv.nvmlEventSetFree(self.event_set)
            except self.nv.NVMLError:
                pass
            self.event_set = None
        self.opened = False
        try:
            self.nv.nvmlShutdown()
        except self.nv.NVMLError as exc:
            log.debug("nvmlShutdown: %s", exc)

    def suspend(self) -> None:
        """Release NVML (waiting for a read in progress) until :meth:`resume`."""
        with self._lock:
            self.suspended = True
            self.close()

    def resume(self) -> None:
        """The next :meth:`collect` initialises NVML again."""
        with self._lock:
            self.suspended = False

    @property
    def gpus_by_bus(self) -> dict[str, int]:
        return {k: g.gpu for g in self.ident if (k := bus_key(g.pci_bus_id))}

    # ---- readings --------------------------------------------------------------------------------------------
    def _try(self, gpu: int, what: str, fn: Any, *args: Any) -> Any:
        """fn(*args), or None when the GPU does not support it (remembered) or is lost."""
        if (gpu, what) in self.unsupported or gpu in self.lost:
            return None
        try:
            return fn(*args)
        except self.nv.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == self._lost_code:
                self.lost.add(gpu)
                return None
            if code in self._skip:
                self.unsupported.add((gpu, what))
                return None
            log.debug("GPU %d %s: %s", gpu, what, exc)
            return None

    def _field_values(self, gpu: int, h: Any, field_ids: list[int]) -> dict[int, float]:
        vals = self._try(gpu, "fieldvalues", self.nv.nvmlDeviceGetFieldValues, h, field_ids)
        out: dict[int, float] = {}
        for v in vals or ():
            if getattr(v, "nvmlReturn", 1) != 0:
                continue
            vt = int(v.valueType)
            member = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}.get(vt)
            if member:
                out[int(v.fieldId)] = float(getattr(v.value, member))
        return out

    def read_gpu(self, i: int, now: float) -> list[Sample]:
        nv = self.nv
        h = self.handles[i]
        out: list[Sample] = []

        def add(metric: str, value: Any, scale: float = 1.0, **labels: str) -> None:
            if value is None:
                return
            out.append(Sample(metric=metric, value=float(value) * scale, ts=now, gpu=i, labels=labels))

        add("DCGM_FI_DEV_GPU_TEMP", self._try(i, "temp", nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU))
        if i in self.lost:  # the first call tells: no more readings from this GPU
            return []
        add("DCGM_FI_DEV_POWER_USAGE", self._try(i, "power", nv.nvmlDeviceGetPowerUsage, h), 1e-3)
        add("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", self._try(i, "energy", nv.nvmlDeviceGetTotalEnergyConsumption, h))
        add("DCGM_FI_DEV_SM_CLOCK", self._try(i, "smclk", nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM))
        add("DCGM_FI_DEV_MEM_CLOCK", self._try(i, "memclk", nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM))
        util = self._try(i, "util", nv.nvmlDeviceGetUtilizationRates, h)
        if util is not None:
            add("DCGM_FI_DEV_GPU_UTIL", util.gpu)
            add("DCGM_FI_DEV_MEM_COPY_UTIL", util.memory)
        mem = self._try(i, "mem2", nv.nvmlDeviceGetMemoryInfo, h, getattr(nv, "nvmlMemory_v2", None))
        if mem is None:
            mem = self._try(i, "mem1", nv.nvmlDeviceGetMemoryInfo, h)
        if mem is not None:
            add("DCGM_FI_DEV_FB_FREE", mem.free // MIB)
            add("DCGM_FI_DEV_FB_USED", mem.used // MIB)
            if hasattr(mem, "reserved"):
                add("DCGM_FI_DEV_FB_RESERVED", mem.reserved // MIB)
        add("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", self._try(i, "replay", nv.nvmlDeviceGetPcieReplayCounter, h))
        reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        if reasons_fn is not None:
            add("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", self._try(i, "reasons", reasons_fn, h))
        for policy, metric in (("NVML_PERF_POLICY_POWER", "DCGM_FI_DEV_POWER_VIOLATION"),
                               ("NVML_PERF_POLICY_THERMAL", "DCGM_FI_DEV_THERMAL_VIOLATION")):
            v = self._try(i, policy, nv.nvmlDeviceGetViolationStatus, h, getattr(nv, policy))
            if v is not None:
                add(metric, v.violationTime)
        # ECC
        for etype, ctype, metric in (
            ("NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_VOLATILE_ECC", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"),
            ("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_VOLATILE_ECC", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"),
            ("NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_AGGREGATE_ECC", "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL"),
            ("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_AGGREGATE_ECC", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL"),
        ):
            add(metric, self._try(i, "ecc", nv.nvmlDeviceGetTotalEccErrors, h, getattr(nv, etype), getattr(nv, ctype)))
        # retired pages (pre-Ampere) and row remapping (Ampere+)
        for cause, metric in (("NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS", "DCGM_FI_DEV_RETIRED_SBE"),
                              ("NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR", "DCGM_FI_DEV_RETIRED_DBE")):
            pages = self._try(i, "retired", nv.nvmlDeviceGetRetiredPages, h, getattr(nv, cause))
            if pages is not None:
                add(metric, len(pages))
        add("DCGM_FI_DEV_RETIRED_PENDING", self._try(i, "retired", nv.nvmlDeviceGetRetiredPagesPendingStatus, h))
        rr = self._try(i, "remap", nv.nvmlDeviceGetRemappedRows, h)
        if rr is not None:
            corr, unc, pending, failure = rr
            add("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", corr)
            add("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", unc)
            add("DCGM_FI_DEV_ROW_REMAP_PENDING", pending)
            add("DCGM_FI_DEV_ROW_REMAP_FAILURE", failure)
        # NVLink: totals over active links, and the per-link value where it is not zero
        if (i, "nvlink") not in self.unsupported:
            totals = {metric: 0 for _c, metric in _NVLINK_COUNTERS}
            active = 0
            for link in range(int(getattr(nv, "NVML_NVLINK_MAX_LINKS", 18))):
                state = self._try(i, f"nvlink{link}", nv.nvmlDeviceGetNvLinkState, h, link)
                if not state:
                    continue
                active += 1
                for counter, metric in _NVLINK_COUNTERS:
                    v = self._try(i, f"nvl{link}{counter}", nv.nvmlDeviceGetNvLinkErrorCounter, h, link,
                                  getattr(nv, counter))
                    if v is None:
                        continue
                    totals[metric] += int(v)
                    if v:
                        add(metric, v, nvlink=str(link))
            if active:
                for metric, v in totals.items():
                    add(metric, v)
            else:
                self.unsupported.add((i, "nvlink"))
        # the memory temperature and the driver's recovery verdict come through field values
        fids = [fid for fid in (getattr(nv, "NVML_FI_DEV_MEMORY_TEMP", None),
                                getattr(nv, "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION", None)) if fid is not None]
        if fids:
            fv = self._field_values(i, h, fids)
            add("DCGM_FI_DEV_MEMORY_TEMP", fv.get(getattr(nv, "NVML_FI_DEV_MEMORY_TEMP", -1)))
            add("REDFLEET_GPU_RECOVERY_ACTION", fv.get(getattr(nv, "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION", -1)))
        if i in self.last_xid:
            add("DCGM_FI_DEV_XID_ERRORS", self.last_xid[i])
        return out

    def poll_events(self, timeout_ms: int = 0, limit: int = 256) -> list[InbandEvent]:
        """Xid events waiting in the event set (``nvmlEventSetWait`` until NVML_ERROR_TIMEOUT)."""
        if self.event_set is None:
            return []
        nv = self.nv
        out: list[InbandEvent] = []
        by_handle = {_hkey(h): i for i, h in enumerate(self.handles)}
        for _ in range(limit):
            try:
                data = nv.nvmlEventSetWait(self.event_set, timeout_ms)
            except nv.NVMLError as exc:
                if getattr(exc, "value", None) != self._timeout_code:
                    log.warning("nvmlEventSetWait: %s", exc)
                break
            timeout_ms = 0
            if not int(data.eventType) & int(nv.nvmlEventTypeXidCriticalError):
                continue
            gpu = by_handle.get(_hkey(data.device))
            if gpu is None:
                gpu = self._gpu_of_handle(data.device)
            code = int(data.eventData)
            if gpu is not None:
                self.last_xid[gpu] = code
            ident = self.ident[gpu] if gpu is not None else None
            key = bus_key(ident.pci_bus_id) if ident else None
            out.append(InbandEvent(ts=time.time(), kind="xid", gpu=gpu, pci_bus_id=f"{key}.0" if key else None,
                                   code=code, message=f"Xid {code} (NVML event)"))
        return out

    def _gpu_of_handle(self, handle: Any) -> int | None:
        try:
            idx = self.nv.nvmlDeviceGetIndex(handle)
            return int(idx)
        except Exception:
            return None

    def collect(self, now: float | None = None) -> tuple[list[Sample], list[InbandEvent], list[GpuIdentity]]:
        """(samples, events, present GPUs). A GPU newly found lost yields one ``agent`` event. Raises
        :class:`NvmlSuspended` while NVML is released for a GPU reset."""
        with self._lock:
            if self.suspended:
                raise NvmlSuspended("NVML is released while a GPU reset runs")
            return self._collect(now)

    def _collect(self, now: float | None) -> tuple[list[Sample], list[InbandEvent], list[GpuIdentity]]:
        if not self.opened:
            self.open()
        now = time.time() if now is None else now
        events = self.poll_events(0)
        samples: list[Sample] = []
        lost_before = set(self.lost)
        for i in range(len(self.handles)):
            samples.extend(self.read_gpu(i, now))
        for i in sorted(self.lost - lost_before):
            ident = self.ident[i]
            events.append(InbandEvent(ts=now, kind="agent", gpu=i, pci_bus_id=ident.pci_bus_id,
                                      message=f"GPU {i} ({ident.pci_bus_id}) is lost: NVML_ERROR_GPU_IS_LOST"))
        gpus = [g for g in self.ident if g.gpu not in self.lost]
        return samples, events, gpus


def _hkey(h: Any) -> int:
    """A device handle's identity: the pointer value for pynvml's ctypes handles, else the object."""
    try:
        import ctypes

        v = ctypes.cast(h, ctypes.c_void_p).value
        return int(v) if v is not None else id(h)
    except (TypeError, ctypes.ArgumentError):
        return id(h)


def _opt_text(v: Any) -> str | None:
    return None if v is None else _text(v)

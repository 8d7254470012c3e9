"""A STAND-IN for NVML (no GPU here): pynvml's API shape and documented behaviour, backed by Python objects.

It is *not* NVML. It reuses the real ``pynvml`` module's constants and ``NVMLError`` classes (``NVMLError(code)``
builds the same subclass the real bindings raise) and mimics, per function, what the nvidia-ml-py bindings return:

- ``nvmlDeviceGetName/GetUUID/GetSerial/nvmlSystemGetDriverVersion`` → str (nvidia-ml-py >= 11.5 decodes);
- ``nvmlDeviceGetPciInfo`` → a struct whose ``busId`` is bytes (``b"00000000:18:00.0"``), as ctypes char arrays are;
- ``nvmlDeviceGetPowerUsage`` mW, ``GetTotalEnergyConsumption`` mJ, ``GetMemoryInfo`` bytes (``reserved`` only with
  ``nvmlMemory_v2``), ``GetUtilizationRates`` .gpu/.memory %, ``GetViolationStatus`` .violationTime ns;
- ``nvmlDeviceGetRetiredPages`` raises NVML_ERROR_NOT_SUPPORTED on Ampere/Hopper (they remap rows instead),
  ``nvmlDeviceGetRemappedRows`` → (corr, unc, pending, failure);
- ``nvmlDeviceGetNvLinkState`` raises NOT_SUPPORTED past the GPU's link count, ``GetNvLinkErrorCounter`` ints;
- ``nvmlDeviceGetFieldValues`` → values with fieldId / nvmlReturn / valueType / value.<member>;
- events: ``nvmlEventSetCreate`` / ``nvmlDeviceRegisterEvents`` / ``nvmlEventSetWait`` (raises NVML_ERROR_TIMEOUT
  when nothing is pending; ``eventType`` nvmlEventTypeXidCriticalError, ``eventData`` the Xid);
- a lost GPU (:meth:`StandInNvml.lose`) raises NVML_ERROR_GPU_IS_LOST from every call on its handle;
- ``holder``: a file that exists from ``nvmlInit`` to ``nvmlShutdown``, as the process's open ``/dev/nvidia*``
  descriptors do (a fake ``nvidia-smi --gpu-reset`` can refuse while it is there, as the real one refuses a GPU
  another client holds).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml


@dataclass
class FakeGpu:
    index: int
    bus: int
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = ""
    serial: str = ""
    temp: int = 34
    mem_temp: int = 40
    power_mw: int = 71234
    energy_mj: int = 912_345_678
    sm_clock: int = 1980
    mem_clock: int = 2619
    util_gpu: int = 3
    util_mem: int = 1
    fb_total: int = 81559 * 1024 * 1024
    fb_used: int = 512 * 1024 * 1024
    fb_reserved: int = 530 * 1024 * 1024
    replay: int = 0
    reasons: int = pynvml.nvmlClocksEventReasonGpuIdle
    power_violation_ns: int = 0
    thermal_violation_ns: int = 0
    ecc: dict[tuple[int, int], int] = field(default_factory=dict)  # (error type, counter type) → count
    retired_pages_supported: bool = False  # Hopper: row remapping instead
    remap: tuple[int, int, int, int] = (0, 0, 0, 0)
    nvlinks: int = 18
    nvlink_errors: dict[tuple[int, int], int] = field(default_factory=dict)  # (link, counter) → count
    recovery_action: int = pynvml.NVML_GPU_RECOVERY_ACTION_NONE
    lost: bool = False


def _err(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


class StandInNvml:
    """Module-like stand-in. Attributes not defined here (constants, NVMLError...) come from pynvml."""

    def __init__(self, gpus: list[FakeGpu] | None = None, driver: str = "550.90.07",
                 holder: Path | None = None) -> None:
        self.gpus = gpus if gpus is not None else [FakeGpu(i, b) for i, b in enumerate((0x18, 0x2A, 0x3A, 0x5D))]
        for g in self.gpus:
            g.uuid = g.uuid or f"GPU-{g.index:08x}-1111-2222-3333-{g.bus:012x}"
            g.serial = g.serial or f"16523{g.index:08d}"
        self.driver = driver
        self.initialized = False
        self.sets: list[deque[Any]] = []
        self.registered: dict[int, list[int]] = {}  # gpu → event set ids
        self.handles: dict[int, Any] = {}
        self.holder = holder

    def __getattr__(self, name: str) -> Any:
        return getattr(pynvml, name)

    # ---- test controls ----------------------------------------------------------------------------------------
    def lose(self, index: int) -> None:
        self.gpus[index].lost = True

    def xid(self, index: int, code: int) -> None:
        for sid in self.registered.get(index, []):
            self.sets[sid].append(SimpleNamespace(device=self._handle(index),
                                                  eventType=pynvml.nvmlEventTypeXidCriticalError,
                                                  eventData=code, gpuInstanceId=0xFFFFFFFF,
                                                  computeInstanceId=0xFFFFFFFF))

    # ---- helpers ----------------------------------------------------------------------------------------------
    def _handle(self, index: int) -> Any:
        # NVML hands out one handle (pointer) per device; keep one object per index the same way
        h = self.handles.get(index)
        if h is None:
            h = self.handles[index] = SimpleNamespace(standin_index=index)
        return h

    def _gpu(self, handle: Any) -> FakeGpu:
        if not self.initialized:
            raise _err(pynvml.NVML_ERROR_UNINITIALIZED)
        g = self.gpus[handle.standin_index]
        if g.lost:
            raise _err(pynvml.NVML_ERROR_GPU_IS_LOST)
        return g

    # ---- API --------------------------------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.initialized = True
        if self.holder is not None:
            self.holder.write_text("held")

    def nvmlShutdown(self) -> None:
        if not self.initialized:
            raise _err(pynvml.NVML_ERROR_UNINITIALIZED)
        self.initialized = False
        if self.holder is not None:
            self.holder.unlink(missing_ok=True)

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        if not self.initialized:
            raise _err(pynvml.NVML_ERROR_UNINITIALIZED)
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        if not 0 <= index < len(self.gpus):
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._handle(index)

    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        return self._gpu(handle).index

    def nvmlDeviceGetName(self, h: Any) -> str:
        return self._gpu(h).name

    def nvmlDeviceGetUUID(self, h: Any) -> str:
        return self._gpu(h).uuid

    def nvmlDeviceGetSerial(self, h: Any) -> str:
        return self._gpu(h).serial

    def nvmlDeviceGetPciInfo(self, h: Any) -> Any:
        g = self._gpu(h)
        return SimpleNamespace(busId=f"00000000:{g.bus:02X}:00.0".encode(), domain=0, bus=g.bus, device=0,
                               pciDeviceId=0x233010DE)

    def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._gpu(h).temp

    def nvmlDeviceGetPowerUsage(self, h: Any) -> int:
        return self._gpu(h).power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: Any) -> int:
        return self._gpu(h).energy_mj

    def nvmlDeviceGetClockInfo(self, h: Any, typ: int) -> int:
        g = self._gpu(h)
        if typ == pynvml.NVML_CLOCK_SM:
            return g.sm_clock
        if typ == pynvml.NVML_CLOCK_MEM:
            return g.mem_clock
        raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
        g = self._gpu(h)
        return SimpleNamespace(gpu=g.util_gpu, memory=g.util_mem)

    def nvmlDeviceGetMemoryInfo(self, h: Any, version: int | None = None) -> Any:
        g = self._gpu(h)
        if version:
            return SimpleNamespace(version=version, total=g.fb_total, reserved=g.fb_reserved,
                                   free=g.fb_total - g.fb_used - g.fb_reserved, used=g.fb_used)
        return SimpleNamespace(total=g.fb_total, free=g.fb_total - g.fb_used, used=g.fb_used)

    def nvmlDeviceGetPcieReplayCounter(self, h: Any) -> int:
        return self._gpu(h).replay

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: Any) -> int:
        return self._gpu(h).reasons

    def nvmlDeviceGetViolationStatus(self, h: Any, policy: int) -> Any:
        g = self._gpu(h)
        t = g.power_violation_ns if policy == pynvml.NVML_PERF_POLICY_POWER else g.thermal_violation_ns
        return SimpleNamespace(referenceTime=1_700_000_000_000_000, violationTime=t)

    def nvmlDeviceGetTotalEccErrors(self, h: Any, error_type: int, counter_type: int) -> int:
        return self._gpu(h).ecc.get((error_type, counter_type), 0)

    def nvmlDeviceGetRetiredPages(self, h: Any, cause: int) -> list[int]:
        g = self._gpu(h)
        if not g.retired_pages_supported:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return []

    def nvmlDeviceGetRetiredPagesPendingStatus(self, h: Any) -> int:
        g = self._gpu(h)
        if not g.retired_pages_supported:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return 0

    def nvmlDeviceGetRemappedRows(self, h: Any) -> tuple[int, int, int, int]:
        return self._gpu(h).remap

    def nvmlDeviceGetNvLinkState(self, h: Any, link: int) -> int:
        g = self._gpu(h)
        if link >= g.nvlinks:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return pynvml.NVML_FEATURE_ENABLED

    def nvmlDeviceGetNvLinkErrorCounter(self, h: Any, link: int, counter: int) -> int:
        g = self._gpu(h)
        if link >= g.nvlinks:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return g.nvlink_errors.get((link, counter), 0)

    def nvmlDeviceGetFieldValues(self, h: Any, field_ids: list[int]) -> list[Any]:
        g = self._gpu(h)
        out = []
        for fid in field_ids:
            if fid == pynvml.NVML_FI_DEV_MEMORY_TEMP:
                out.append(SimpleNamespace(fieldId=fid, scopeId=0, nvmlReturn=0,
                                           valueType=pynvml.NVML_VALUE_TYPE_UNSIGNED_INT,
                                           value=SimpleNamespace(uiVal=g.mem_temp)))
            elif fid == pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION:
                out.append(SimpleNamespace(fieldId=fid, scopeId=0, nvmlReturn=0,
                                           valueType=pynvml.NVML_VALUE_TYPE_UNSIGNED_INT,
                                           value=SimpleNamespace(uiVal=g.recovery_action)))
            else:
                out.append(SimpleNamespace(fieldId=fid, scopeId=0, nvmlReturn=pynvml.NVML_ERROR_NOT_SUPPORTED,
                                           valueType=0, value=SimpleNamespace(dVal=0.0)))
        return out

    def nvmlEventSetCreate(self) -> int:
        self.sets.append(deque())
        return len(self.sets) - 1

    def nvmlDeviceRegisterEvents(self, h: Any, types: int, event_set: int) -> None:
        g = self._gpu(h)
        if not types & pynvml.nvmlEventTypeXidCriticalError:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        self.registered.setdefault(g.index, []).append(event_set)

    def nvmlEventSetWait(self, event_set: int, timeout_ms: int) -> Any:
        q = self.sets[event_set]
        if not q:
            raise _err(pynvml.NVML_ERROR_TIMEOUT)
        return q.popleft()

    def nvmlEventSetFree(self, event_set: int) -> None:
        self.sets[event_set].clear()


# `redfleet agent --nvml-module tests.agent.nvml_standin` imports this module: module-level functions delegate to a
# default four-GPU stand-in.
_default = StandInNvml()


def __getattr__(name: str) -> Any:
    return getattr(_default, name)

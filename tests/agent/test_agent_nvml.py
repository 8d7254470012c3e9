"""The NVML collector against a STAND-IN for NVML (tests/agent/nvml_standin.py: pynvml's API and documented
behaviour; no GPU on this machine). On a GPU machine, test_real_nvml_when_present runs the real library."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pynvml
import pytest
from nvml_standin import FakeGpu, StandInNvml

from redfleet.agent.actions import CommandRunner
from redfleet.agent.core import Agent
from redfleet.agent.fields import BY_NAME
from redfleet.agent.kmsg import KmsgSource
from redfleet.agent.nvml import NvmlCollector
from redfleet.model.ingest import IngestBatch


def _by(samples):
    return {(s.metric, s.gpu, tuple(sorted(s.labels.items()))): s.value for s in samples}


def test_readings_map_to_dcgm_names_with_units():
    nv = StandInNvml([FakeGpu(0, 0x18, power_mw=612_408, temp=61, fb_used=74924 * 1024 * 1024,
                              ecc={(pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC): 12,
                                   (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_AGGREGATE_ECC): 2},
                              remap=(3, 1, 1, 0), nvlinks=18,
                              nvlink_errors={(4, pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT): 7,
                                             (9, pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT): 5,
                                             (9, pynvml.NVML_NVLINK_ERROR_DL_REPLAY): 2},
                              reasons=pynvml.nvmlClocksEventReasonSwThermalSlowdown,
                              thermal_violation_ns=5_000_000, recovery_action=2)])
    c = NvmlCollector(nv)
    samples, events, gpus = c.collect(now=100.0)
    b = _by(samples)
    assert b[("DCGM_FI_DEV_POWER_USAGE", 0, ())] == pytest.approx(612.408)  # mW → W
    assert b[("DCGM_FI_DEV_GPU_TEMP", 0, ())] == 61
    assert b[("DCGM_FI_DEV_MEMORY_TEMP", 0, ())] == 40  # through nvmlDeviceGetFieldValues
    assert b[("DCGM_FI_DEV_FB_USED", 0, ())] == 74924  # bytes → MiB
    assert b[("DCGM_FI_DEV_FB_RESERVED", 0, ())] == 530  # nvmlMemory_v2 has reserved
    assert b[("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", 0, ())] == 12
    assert b[("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", 0, ())] == 2
    assert b[("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", 0, ())] == 0
    assert (b[("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", 0, ())], b[("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 0, ())],
            b[("DCGM_FI_DEV_ROW_REMAP_PENDING", 0, ())], b[("DCGM_FI_DEV_ROW_REMAP_FAILURE", 0, ())]) == (3, 1, 1, 0)
    assert b[("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", 0, ())] == 12  # summed over links
    assert b[("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", 0, (("nvlink", "9"),))] == 5
    assert b[("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", 0, ())] == 2
    assert b[("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", 0, ())] == pynvml.nvmlClocksEventReasonSwThermalSlowdown
    assert b[("DCGM_FI_DEV_THERMAL_VIOLATION", 0, ())] == 5_000_000
    assert b[("REDFLEET_GPU_RECOVERY_ACTION", 0, ())] == 2
    # Hopper has no retired pages: NVML_ERROR_NOT_SUPPORTED → no sample (not a zero)
    assert not any(s.metric.startswith("DCGM_FI_DEV_RETIRED") for s in samples)
    assert all(s.metric in BY_NAME for s in samples)  # every name is in the documented table
    assert events == []
    assert gpus[0].pci_bus_id == "00000000:18:00.0" and gpus[0].uuid.startswith("GPU-")
    assert gpus[0].model == "NVIDIA H100 80GB HBM3"
    assert c.driver_version == "550.90.07"


def test_not_supported_is_remembered_per_gpu():
    nv = StandInNvml([FakeGpu(0, 0x18), FakeGpu(1, 0x2A, retired_pages_supported=True, nvlinks=0)])
    c = NvmlCollector(nv)
    s1, _, _ = c.collect(now=1.0)
    assert (0, "retired") in c.unsupported and (1, "retired") not in c.unsupported
    assert {s.metric for s in s1 if s.gpu == 1} >= {"DCGM_FI_DEV_RETIRED_SBE", "DCGM_FI_DEV_RETIRED_PENDING"}
    assert not any("NVLINK" in s.metric for s in s1 if s.gpu == 1)  # a PCIe card: no NVLink
    assert (1, "nvlink") in c.unsupported
    calls = []
    orig = nv.nvmlDeviceGetRetiredPages

    def spy(h, cause):
        calls.append(h.standin_index)
        return orig(h, cause)

    nv.nvmlDeviceGetRetiredPages = spy
    c.collect(now=2.0)
    assert calls == [1, 1]  # GPU 0 is not asked again


def test_xid_event_set_and_sticky_xid_field():
    nv = StandInNvml()
    c = NvmlCollector(nv)
    c.collect(now=1.0)
    assert set(nv.registered) == {0, 1, 2, 3}  # every GPU registered for nvmlEventTypeXidCriticalError
    nv.xid(2, 48)
    nv.xid(2, 63)
    samples, events, _ = c.collect(now=2.0)
    assert [(e.kind, e.gpu, e.code, e.pci_bus_id) for e in events] == [("xid", 2, 48, "0000:3a:00.0"),
                                                                       ("xid", 2, 63, "0000:3a:00.0")]
    assert _by(samples)[("DCGM_FI_DEV_XID_ERRORS", 2, ())] == 63  # the last one, sticky
    samples, events, _ = c.collect(now=3.0)
    assert events == [] and _by(samples)[("DCGM_FI_DEV_XID_ERRORS", 2, ())] == 63


def test_gpu_lost_drops_out_once_with_an_event():
    nv = StandInNvml()
    c = NvmlCollector(nv)
    c.collect(now=1.0)
    nv.lose(1)
    samples, events, gpus = c.collect(now=2.0)
    assert [g.gpu for g in gpus] == [0, 2, 3]
    assert c.gpus_expected == 4
    assert not any(s.gpu == 1 for s in samples)
    assert len(events) == 1 and events[0].kind == "agent" and events[0].gpu == 1 and "lost" in events[0].message
    _, events, _ = c.collect(now=3.0)
    assert events == []  # said once


async def test_agent_batch_nvml_with_kernel_xid_dedup(tmp_path):
    nv = StandInNvml()
    klog = tmp_path / "kmsg"
    klog.write_text("")
    ag = Agent("gpu-node-1", source="nvml", nvml=nv, kmsg=KmsgSource(str(klog), boot=1e9))
    b1 = await ag.collect(now=10.0)
    assert b1.gpus_expected == 4 and len(b1.gpus) == 4 and b1.source == "nvml" and b1.os_state == "up"
    nv.xid(2, 79)
    nv.lose(2)
    with klog.open("a") as fh:
        fh.write("4,10,5000000,-;NVRM: Xid (PCI:0000:3a:00): 79, pid='<unknown>', name=<unknown>, "
                 "GPU has fallen off the bus.\n")
    b2 = await ag.collect(now=11.0)
    xids = [e for e in b2.events if e.kind == "xid"]
    assert [(e.gpu, e.code) for e in xids] == [(2, 79)]  # kernel line kept, the NVML duplicate dropped
    assert xids[0].raw and xids[0].raw.startswith("NVRM: Xid")
    assert [g.gpu for g in b2.gpus] == [0, 1, 3] and b2.gpus_expected == 4
    IngestBatch.model_validate_json(b2.model_dump_json())
    await ag.close()


async def test_agent_nvml_failure_still_heartbeats():
    nv = StandInNvml()

    def broken():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    nv.nvmlInit = broken
    ag = Agent("n", source="nvml", nvml=nv)
    b = await ag.collect(now=1.0)
    assert b.samples == [] and b.gpus == [] and b.gpus_expected is None  # unknown, not "all GPUs missing"
    assert len(b.events) == 1 and "NVML failed" in b.events[0].message and "Driver Not Loaded" in b.events[0].message
    b = await ag.collect(now=2.0)
    assert b.events == []  # the failure is reported once


def _refusing_smi(tmp_path: Path, holder: Path) -> Path:
    """nvidia-smi --gpu-reset that refuses while another client holds NVML (``holder`` exists), as the real one
    does, and takes half a second otherwise."""
    p = tmp_path / "nvidia-smi"
    p.write_text(f"#!/bin/sh\nif [ -e {holder} ]; then\n  echo 'GPU 00000000:3A:00.0: In use by another client'\n"
                 "  exit 255\nfi\nsleep 0.5\necho 'GPU 00000000:3A:00.0 was successfully reset.'\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


async def test_gpu_reset_releases_nvml_and_takes_fresh_handles(tmp_path: Path) -> None:
    holder = tmp_path / "nvidia0.open"
    nv = StandInNvml(holder=holder)
    runner = CommandRunner(allow=True, nvidia_smi=str(_refusing_smi(tmp_path, holder)))
    ag = Agent("gpu-node-1", source="nvml", nvml=nv, commands=runner)
    assert len((await ag.collect(now=1.0)).gpus) == 4 and holder.exists()
    nv.lose(2)
    lost = await ag.collect(now=2.0)
    assert [g.gpu for g in lost.gpus] == [0, 1, 3] and lost.gpus_expected == 4
    runner.offer([{"id": "c1", "kind": "gpu-reset", "gpu": 2, "reason": "xid 79", "issued_at": 2.0,
                   "delivery": 1}])
    await asyncio.sleep(0.25)
    # mid-reset: NVML is released, the heartbeat still goes out, with no word on GPUs (neither present nor missing)
    assert not holder.exists() and not nv.initialized
    mid = await ag.collect(now=3.0)
    assert mid.samples == [] and mid.gpus == [] and mid.gpus_expected is None and mid.events == []
    nv.gpus[2].lost = False  # the reset brought the GPU back
    await runner.wait_idle()
    (res,) = runner.drain()
    assert res.ok and "successfully reset" in res.message, res.message
    after = await ag.collect(now=4.0)
    assert [g.gpu for g in after.gpus] == [0, 1, 2, 3] and after.gpus_expected == 4
    assert any(s.gpu == 2 for s in after.samples) and holder.exists()
    await ag.close()
    assert not holder.exists()


def test_real_nvml_when_present():
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no NVML on this machine ({exc}); the stand-in tests above cover the code path")
    pynvml.nvmlShutdown()
    c = NvmlCollector()
    samples, _events, gpus = c.collect()
    c.close()
    assert gpus and any(s.metric == "DCGM_FI_DEV_GPU_TEMP" for s in samples)

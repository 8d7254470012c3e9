"""The node's own side: what an in-band agent on the host would read.

- OS state: ``up`` / ``booting`` / ``hung`` / ``down`` (from the host power state, the boot clock and faults).
- GPU metrics under DCGM field names (dcgm-exporter's default counters plus the RAS ones it leaves commented out:
  ECC SBE/DBE volatile and aggregate, retired pages, NVLink CRC/replay/recovery, row remap counters, XID).
- Kernel ``NVRM: Xid`` lines, as ``dmesg`` shows them.
- NVMe SMART / Health (02h) and OCP C0h logs from :mod:`redfleet.predict` (DriveModel), in nvme-cli's JSON and as
  raw 512-byte pages (hex).

Two ways to read it: :func:`inband_json` (the control API's ``GET /nodes/{name}/inband``, the shape the in-band
agent protocol will mirror), and a dcgm-exporter-format ``/metrics`` on port 9400 of the node's own loopback
address (``node.host_address``: the BMC address with the second octet +1), started only with ``SimConfig.inband``.
While the OS is hung or down the exporter does not answer, as a real one would not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any

from aiohttp import web

from redfleet.sim.telemetry import u01

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.sim.dyn_node import FleetDyn, NodeDyn

log = logging.getLogger("redfleet.sim.inband")

Doc = dict[str, Any]

DRIVER_VERSION = "550.90.07"
FB_TOTAL_MIB = 81559  # H100 80GB HBM3
HUNG_HOLD_S = 30.0  # a hung host accepts the connection and never answers; we give up after this (real time)

# (DCGM field, Prometheus type, help) in dcgm-exporter's order; the RAS fields follow the defaults
DCGM_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %)."),
    ("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_FI_DEV_POWER_VIOLATION", "counter", "Throttling duration due to power constraints (in us)."),
    ("DCGM_FI_DEV_THERMAL_VIOLATION", "counter", "Throttling duration due to thermal constraints (in us)."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB)."),
    ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "counter", "Total number of single-bit volatile ECC errors."),
    ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "Total number of double-bit volatile ECC errors."),
    ("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", "counter", "Total number of single-bit persistent ECC errors."),
    ("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", "counter", "Total number of double-bit persistent ECC errors."),
    ("DCGM_FI_DEV_RETIRED_SBE", "counter", "Total number of retired pages due to single-bit errors."),
    ("DCGM_FI_DEV_RETIRED_DBE", "counter", "Total number of retired pages due to double-bit errors."),
    ("DCGM_FI_DEV_RETIRED_PENDING", "counter", "Total number of pages pending retirement."),
    ("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "counter", "Total number of NVLink flow-control CRC errors."),
    ("DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", "counter", "Total number of NVLink data CRC errors."),
    ("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", "counter", "Total number of NVLink retries."),
    ("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "counter", "Total number of NVLink recovery errors."),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter", "Total number of NVLink bandwidth counters for all lanes."),
    ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "gauge", "vGPU License status"),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors"),
    ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for correctable errors"),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed"),
    ("DCGM_FI_DEV_ROW_REMAP_PENDING", "gauge", "Whether remapping of rows is pending"),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active."),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active."),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "gauge",
     "Ratio of cycles the device memory interface is active sending or receiving data."),
    ("DCGM_FI_PROF_PCIE_TX_BYTES", "gauge", "The rate of data transmitted over the PCIe bus - including both "
     "protocol headers and data payloads - in bytes per second."),
    ("DCGM_FI_PROF_PCIE_RX_BYTES", "gauge", "The rate of data received over the PCIe bus - including both protocol "
     "headers and data payloads - in bytes per second."),
)


def gpu_fields(nd: NodeDyn, gpu: int, t: float) -> Doc | None:
    """DCGM fields of one GPU at simulated time t; None while the GPU is off the bus (DCGM cannot see it)."""
    if nd.gpu_lost(gpu):
        return None
    c = nd.conditions(t)
    m = nd.model
    g = nd.flv.ix.gpus[gpu]
    util = m.gpu_util(gpu, t, c)
    since = nd.boot_at if nd.boot_at is not None else t
    up = max(0.0, t - since)
    power = m.gpu_power(gpu, t, c, g.tdp)
    energy_mj = int(m.energy_joules(t, g.tdp * 0.35, since) * 1000.0 * (g.tdp / 700.0))
    ecc = nd.ecc(gpu, t)
    nvl = nd.nvlink(gpu, t)
    hot = gpu in c.hot_gpus
    fb_used = int(FB_TOTAL_MIB * (0.02 + 0.9 * util)) if util > 0.05 else 512
    reserved = 530
    return {
        "DCGM_FI_DEV_SM_CLOCK": int(345 + (1980 - 345) * min(1.0, util * 1.2)) if not hot else 1095,
        "DCGM_FI_DEV_MEM_CLOCK": 2619,
        "DCGM_FI_DEV_MEMORY_TEMP": round(m.gpu_mem_temp(gpu, t, c)),
        "DCGM_FI_DEV_GPU_TEMP": round(m.gpu_temp(gpu, t, c)),
        "DCGM_FI_DEV_POWER_USAGE": round(power, 3),
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": energy_mj,
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": m.counter(0xCE0 + gpu, t, since, 6.0),
        "DCGM_FI_DEV_GPU_UTIL": round(100 * util),
        "DCGM_FI_DEV_MEM_COPY_UTIL": round(60 * util),
        "DCGM_FI_DEV_ENC_UTIL": 0,
        "DCGM_FI_DEV_DEC_UTIL": 0,
        "DCGM_FI_DEV_XID_ERRORS": int(nd.count(f"g{gpu}.last_xid")),
        "DCGM_FI_DEV_POWER_VIOLATION": int(up * 1e6 * 0.05 * max(0.0, util - 0.85)),
        "DCGM_FI_DEV_THERMAL_VIOLATION": int((t - nd.has("gpu-overtemp", gpu).started) * 1e6)  # type: ignore[union-attr]
        if hot else 0,
        "DCGM_FI_DEV_FB_FREE": FB_TOTAL_MIB - fb_used - reserved,
        "DCGM_FI_DEV_FB_USED": fb_used,
        "DCGM_FI_DEV_FB_RESERVED": reserved,
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": ecc["sbe_vol"],
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": ecc["dbe_vol"],
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": ecc["sbe_agg"],
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": ecc["dbe_agg"],
        "DCGM_FI_DEV_RETIRED_SBE": 0,  # Hopper remaps rows instead of retiring pages
        "DCGM_FI_DEV_RETIRED_DBE": 0,
        "DCGM_FI_DEV_RETIRED_PENDING": 0,
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL": nvl["crc_flit"],
        "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL": nvl["crc_data"],
        "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL": nvl["replay"],
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL": nvl["recovery"],
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": int(t * 2.5e9 * max(0.01, util)),
        "DCGM_FI_DEV_VGPU_LICENSE_STATUS": 0,
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": ecc["rr_unc"],
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": ecc["rr_cor"],
        "DCGM_FI_DEV_ROW_REMAP_FAILURE": ecc["rr_failure"],
        "DCGM_FI_DEV_ROW_REMAP_PENDING": ecc["rr_pending"],
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE": round(util * 0.97, 6),
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": round(util * 0.55, 6),
        "DCGM_FI_PROF_DRAM_ACTIVE": round(util * 0.62, 6),
        "DCGM_FI_PROF_PCIE_TX_BYTES": int(2.0e8 * max(0.02, util)),
        "DCGM_FI_PROF_PCIE_RX_BYTES": int(6.0e8 * max(0.02, util)),
    }


def gpu_labels(nd: NodeDyn, gpu: int) -> Doc:
    g = nd.flv.ix.gpus[gpu]
    uuid = g.uuid
    try:  # the UUID the BMC shows for this node (per-node identity applied by the core)
        doc = nd.node.get_doc(g.uri) if g.uuid else None
        if doc and isinstance(doc.get("UUID"), str):
            uuid = doc["UUID"]
    except Exception:
        pass
    if not uuid:
        h = int(u01(nd.model.seed, nd.model.node, 0x0001D, gpu) * (1 << 64))
        h2 = int(u01(nd.model.seed, nd.model.node, 0x0001E, gpu) * (1 << 64))
        x = f"{h:016x}{h2:016x}"
        uuid = f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:32]}"
    model = g.model if g.model.upper().startswith("NVIDIA") else f"NVIDIA {g.model}"
    return {"gpu": str(gpu), "UUID": f"GPU-{uuid}", "pci_bus_id": f"00000000:{g.pci_bus:02X}:00.0",
            "device": f"nvidia{gpu}", "modelName": model, "Hostname": nd.node.name,
            "DCGM_FI_DRIVER_VERSION": DRIVER_VERSION}


# ---- NVMe -------------------------------------------------------------------------------------------------------


def nvme_drives(nd: NodeDyn, t: float) -> list[Doc]:
    """Each NVMe drive's 02h and C0h logs (nvme-cli JSON and raw hex) from the predict DriveModel."""
    try:
        from redfleet.predict import DriveModel
    except ImportError:  # pragma: no cover - the predict package is part of redfleet
        return []
    n = nd.flv.part_count("drive")
    out = []
    t_days = max(0.0, t) / 86400.0
    for i in range(n):
        seed = f"{nd.node.fleet.config.seed}/{nd.node.name}/nvme{i}"
        wear = nd.has("nvme-wear", i)
        media = nd.has("nvme-media", i)
        if media is not None:
            start = media.started / 86400.0
            model = DriveModel(seed, "media", onset_day=start - 0.5, failure_day=start + 7.0)
        elif wear is not None:
            start = wear.started / 86400.0
            model = DriveModel(seed, "wearout", onset_day=start - 90.0, failure_day=start + 10.0)
        else:
            model = DriveModel(seed, "healthy")
        st = model.state_at(t_days)
        smart = st.nvme_cli_smart_json()
        if wear is not None:  # the wear-out has happened: past rated endurance, spare under its threshold
            smart["percent_used"] = max(int(smart.get("percent_used", 0)), 101)
            smart["avail_spare"] = min(int(smart.get("avail_spare", 100)), 4)
            smart["critical_warning"] = int(smart.get("critical_warning", 0)) | 0x1 | 0x4
        if media is not None:
            smart["media_errors"] = max(int(smart.get("media_errors", 0)), 12)
            smart["num_err_log_entries"] = max(int(smart.get("num_err_log_entries", 0)), 12)
            smart["critical_warning"] = int(smart.get("critical_warning", 0)) | 0x4
        try:
            from redfleet.predict import encode_smart

            raw02 = encode_smart({k: v for k, v in smart.items() if not isinstance(v, dict)}).hex()
        except Exception:
            raw02 = st.smart_log_bytes().hex()
        out.append({
            "device": f"/dev/nvme{i}",
            "serial": st.serial,
            "model": model.spec.model,
            "firmware": model.spec.firmware,
            "smart": smart,
            "ocp_c0h": st.nvme_cli_ocp_json(version=4, style="snake"),
            "raw": {"smart_02h": raw02, "ocp_c0h": st.ocp_c0_bytes(version=4).hex()},
        })
    return out


def inband_json(nd: NodeDyn, t: float | None = None, nvme: bool = True) -> Doc:
    """What the in-band agent reports for this node (``GET /nodes/{name}/inband``)."""
    t = nd.now() if t is None else t
    state = nd.os_state(t)
    gpus: list[Doc] = []
    if state in ("up", "booting", "hung"):
        for g in nd.flv.ix.gpus:
            fields = gpu_fields(nd, g.index, t)
            if fields is None:
                continue
            gpus.append({**gpu_labels(nd, g.index), "fields": fields})
    return {
        "node": nd.node.name,
        "host_address": nd.node.host_address,
        "os_state": state,
        "power_state": nd.node.power_state,
        "uptime_s": None if nd.boot_at is None or state == "down" else round(max(0.0, t - nd.boot_at), 1),
        "driver_version": DRIVER_VERSION if nd.flv.ix.gpus else None,
        "gpus": gpus,
        "gpus_expected": len(nd.flv.ix.gpus),
        "xid_lines": list(nd.xids or ()),
        "nvme": nvme_drives(nd, t) if nvme else [],
        "stale": state == "hung",
    }


def metrics_text(nd: NodeDyn, t: float | None = None) -> str:
    """The node's dcgm-exporter ``/metrics`` page."""
    t = nd.now() if t is None else t
    per_gpu = []
    for g in nd.flv.ix.gpus:
        f = gpu_fields(nd, g.index, t)
        if f is not None:
            per_gpu.append((gpu_labels(nd, g.index), f))
    lines: list[str] = []
    for name, typ, help_ in DCGM_FIELDS:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {typ}")
        for labels, f in per_gpu:
            lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"{name}{{{lab}}} {f[name]}")
    return "\n".join(lines) + "\n"


class InbandServer:
    """One aiohttp app answering ``/metrics`` on ``host_address:port`` of every node (only when asked)."""

    def __init__(self, fleet_dyn: FleetDyn, port: int = 9400) -> None:
        self.fd = fleet_dyn
        self.port = port
        self.runner: web.AppRunner | None = None
        self.by_address: dict[str, NodeDyn] = {}
        self.ports: dict[str, int] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._index)
        return app

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self.runner.setup()
        for nd in self.fd.nodes.values():
            addr = nd.node.host_address
            self.by_address[addr] = nd
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((addr, self.port))
            except OSError as exc:
                sock.close()
                log.warning("in-band exporter for %s on %s:%s: %s", nd.node.name, addr, self.port, exc)
                continue
            sock.listen(64)
            sock.setblocking(False)
            self.ports[addr] = sock.getsockname()[1]
            site = web.SockSite(self.runner, sock)
            await site.start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def url(self, name: str) -> str | None:
        nd = self.fd.nodes.get(name)
        if nd is None or nd.node.host_address not in self.ports:
            return None
        return f"http://{nd.node.host_address}:{self.ports[nd.node.host_address]}/metrics"

    def _node(self, request: web.BaseRequest) -> NodeDyn | None:
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        return self.by_address.get(sock[0]) if sock else None

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html><body><a href=\"/metrics\">/metrics</a></body></html>",
                            content_type="text/html")

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        nd = self._node(request)
        if nd is None:
            return web.Response(status=404)
        state = nd.os_state()
        if state in ("down", "hung"):
            # nothing on the host answers: hold the connection, then drop it
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(HUNG_HOLD_S if state == "hung" else 0.0)
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable()
        return web.Response(body=metrics_text(nd).encode(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

"""The in-band agent: gathers one :class:`~redfleet.model.ingest.IngestBatch` per interval from its collectors
(NVML or a dcgm-exporter scrape, kernel Xid lines, nvme-cli) and hands it to the :class:`~.pusher.Pusher`.

- Each batch is also the node's heartbeat: it is sent even when a collector fails (the failure becomes an
  ``agent`` event the first time, not every second).
- ``gpus_expected`` is the GPU count seen at start (or ``--gpus-expected``); a GPU that falls off the bus drops
  out of ``gpus``. When the GPU source itself fails, ``gpus`` and ``gpus_expected`` are left empty/unknown rather
  than reporting every GPU missing.
- The same Xid usually shows up twice (the kernel line and the NVML event or the DCGM value): with a kernel
  source configured, an NVML/DCGM Xid event whose (GPU, code) the kernel reported in the last
  ``XID_DEDUP_S`` seconds is dropped.
- Remediation commands in serve's answers (GPU reset, reboot) go to a :class:`~.actions.CommandRunner`, which
  runs them only when the agent was started with ``--allow-remediation``; their results ride in the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from redfleet.agent.actions import CommandRunner
from redfleet.agent.dcgm import DcgmExporterCollector
from redfleet.agent.kmsg import JournalSource, KmsgSource, bus_key, xid_events
from redfleet.agent.nvme import NvmeCollector, samples_of
from redfleet.agent.nvml import NvmlCollector, NvmlSuspended
from redfleet.agent.pusher import Pusher
from redfleet.model.ingest import GpuIdentity, InbandEvent, IngestBatch, NvmeReport, Sample

log = logging.getLogger("redfleet.agent")

AGENT_NAME = "redfleet-agent/0.1"
XID_DEDUP_S = 30.0


def host_uptime() -> float | None:
    try:
        with open("/proc/uptime") as fh:
            return float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Agent:
    def __init__(self, node: str | None = None, *, source: str = "nvml", nvml: Any = None,
                 dcgm_url: str | None = None, kmsg: KmsgSource | None = None, journal: JournalSource | None = None,
                 nvme: NvmeCollector | None = None, nvme_interval: float = 60.0,
                 gpus_expected: int | None = None, commands: CommandRunner | None = None) -> None:
        if source not in ("nvml", "dcgm-exporter", "none"):
            raise ValueError(f"source must be nvml, dcgm-exporter or none, not {source!r}")
        self.node = node or socket.gethostname()
        self.source = source
        self.nvml: NvmlCollector | None = NvmlCollector(nvml, gpus_expected=gpus_expected) if source == "nvml" \
            else None
        self.dcgm = DcgmExporterCollector(dcgm_url or "http://127.0.0.1:9400/metrics") \
            if source == "dcgm-exporter" else None
        self.kmsg = kmsg
        self.journal = journal
        self.nvme = nvme
        self.nvme_interval = nvme_interval
        self.next_nvme = 0.0
        self.gpus_expected = gpus_expected
        self.driver_version: str | None = None
        self.recent_kernel_xids: deque[tuple[float, int | None, int | None]] = deque(maxlen=256)
        self.failing: dict[str, str] = {}  # collector -> error, while it fails
        self.gpus_by_bus: dict[str, int] = {}
        self.session: aiohttp.ClientSession | None = None
        self.commands = commands
        if commands is not None and self.nvml is not None:
            commands.gpu_reset_guard = self._nvml_released

    @contextlib.asynccontextmanager
    async def _nvml_released(self) -> AsyncIterator[None]:
        """NVML shut down while a GPU reset runs (batches still go out, without GPU readings), then opened anew."""
        nvml = self.nvml
        assert nvml is not None
        await asyncio.to_thread(nvml.suspend)
        log.info("NVML released for a GPU reset")
        try:
            yield
        finally:
            nvml.resume()

    async def start(self) -> None:
        if self.journal is not None and self.journal.proc is None:
            await self.journal.start()

    async def close(self) -> None:
        if self.commands is not None:
            await self.commands.close()
        if self.journal is not None:
            await self.journal.stop()
        if self.kmsg is not None:
            self.kmsg.close()
        if self.nvml is not None:
            with contextlib.suppress(Exception):
                self.nvml.close()
        if self.session is not None:
            await self.session.close()
            self.session = None

    def _fail(self, what: str, error: str | None, now: float, events: list[InbandEvent]) -> None:
        """Record a collector's state; one ``agent`` event when it starts failing and one when it recovers."""
        if error is None:
            if what in self.failing:
                events.append(InbandEvent(ts=now, kind="agent", message=f"{what} readable again"))
                del self.failing[what]
            return
        if self.failing.get(what) is None:
            events.append(InbandEvent(ts=now, kind="agent", message=f"{what} failed: {error}"))
            log.warning("%s failed: %s", what, error)
        self.failing[what] = error

    async def collect(self, now: float | None = None) -> IngestBatch:
        now = time.time() if now is None else now
        samples: list[Sample] = []
        events: list[InbandEvent] = []
        gpus: list[GpuIdentity] = []
        gpus_expected = self.gpus_expected
        gpu_ok = True
        source_events: list[InbandEvent] = []
        if self.nvml is not None:
            try:
                s, ev, gpus = await asyncio.to_thread(self.nvml.collect, now)
            except NvmlSuspended:
                gpus_expected = None  # no GPU word this batch: neither present nor missing
            except Exception as exc:
                gpu_ok = False
                self._fail("NVML", f"{type(exc).__name__}: {exc}", now, events)
            else:
                samples += s
                source_events += ev
                self.driver_version = self.nvml.driver_version
                gpus_expected = self.nvml.gpus_expected
                self.gpus_by_bus = self.nvml.gpus_by_bus
                self._fail("NVML", None, now, events)
        elif self.dcgm is not None:
            if self.session is None:
                self.session = aiohttp.ClientSession()
            try:
                scrape, ev = await self.dcgm.collect(self.session, now)
                samples += scrape.samples
                source_events += ev
                gpus = [scrape.gpus[k] for k in sorted(scrape.gpus)]
                self.driver_version = scrape.driver_version or self.driver_version
                self.gpus_expected = max(self.gpus_expected or 0, len(gpus)) or None
                gpus_expected = self.gpus_expected
                self.gpus_by_bus = {k: g.gpu for g in gpus if (k := bus_key(g.pci_bus_id))}
                if scrape.hostname and scrape.hostname.split(".")[0] != self.node.split(".")[0]:
                    self._fail("dcgm-exporter hostname", f"exporter says Hostname={scrape.hostname!r}, "
                               f"this agent is {self.node!r}", now, events)
                self._fail("dcgm-exporter", None, now, events)
            except Exception as exc:
                gpu_ok = False
                self._fail("dcgm-exporter", f"{type(exc).__name__}: {exc}", now, events)
        kernel: list[InbandEvent] = []
        for src, what in ((self.kmsg, "kernel log"), (self.journal, "journal")):
            if src is None:
                continue
            try:
                kernel += xid_events(src.read(), self.gpus_by_bus)
                self._fail(what, None, now, events)
            except Exception as exc:
                self._fail(what, f"{type(exc).__name__}: {exc}", now, events)
        for kev in kernel:
            self.recent_kernel_xids.append((now, kev.gpu, kev.code))
        events += kernel
        if self.kmsg is not None or self.journal is not None:
            recent = {(g, c) for t, g, c in self.recent_kernel_xids if now - t <= XID_DEDUP_S}
            source_events = [e for e in source_events if e.kind != "xid" or (e.gpu, e.code) not in recent]
        events += source_events
        nvme: list[NvmeReport] = []
        if self.nvme is not None and now >= self.next_nvme:
            self.next_nvme = now + self.nvme_interval
            try:
                nvme, errors = await self.nvme.collect()
                for r in nvme:
                    samples += samples_of(r, now)
                self._fail("nvme-cli", "; ".join(errors) if errors else None, now, events)
            except Exception as exc:
                self._fail("nvme-cli", f"{type(exc).__name__}: {exc}", now, events)
        return IngestBatch(
            node=self.node, sent_at=now, agent=AGENT_NAME,
            source="nvml" if self.source == "nvml" else "dcgm-exporter" if self.source == "dcgm-exporter"
            else "mixed",
            os_state="up", uptime_s=host_uptime(), driver_version=self.driver_version,
            gpus=gpus if gpu_ok else [], gpus_expected=gpus_expected if gpu_ok else None,
            samples=samples, events=events, nvme=nvme,
            command_results=self.commands.drain() if self.commands is not None else [])

    async def run(self, pusher: Pusher, *, interval: float = 1.0, stop: asyncio.Event | None = None,
                  count: int | None = None, push_every: int = 1) -> int:
        """Collect every ``interval`` seconds until ``stop`` is set (or ``count`` collections) and push. With
        ``push_every`` N > 1 the collections are pushed N at a time as one batch (every sample keeps its own time:
        serve still gets them at 1 Hz resolution, in a tenth of the requests at N = 10), and at once when one has
        something serve should judge now (see :func:`urgent`)."""
        await self.start()
        if self.commands is not None and pusher.on_answer is None:
            pusher.on_answer = self.commands.on_answer
        stop = stop or asyncio.Event()
        n = 0
        next_at = time.monotonic()
        held: list[IngestBatch] = []
        last: dict[tuple[str, int | None, tuple[tuple[str, str], ...]], float] = {}
        while not stop.is_set() and (count is None or n < count):
            batch = await self.collect()
            held.append(batch)
            if len(held) >= push_every or urgent(batch, last) or (count is not None and n + 1 >= count):
                pusher.submit(merge_batches(held))
                held = []
            next_at += interval
            await pusher.flush(deadline=next_at)
            n += 1
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (slow collector or serve): do not try to catch up in a burst
                next_at = time.monotonic()
                delay = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        if held or (self.commands is not None and self.commands.ready):
            # stopping (a reboot we ran stops us too): what was collected and the results go out first, briefly
            if self.commands is not None and self.commands.ready:
                held.append(await self.collect())
            pusher.submit(merge_batches(held))
            await pusher.flush(deadline=time.monotonic() + 2.0)
        return n


# RAS counters and states: a change is pushed at once (with push_every > 1), not with the next round
URGENT_METRIC_PARTS = ("ECC", "RETIRED", "REMAP", "XID", "NVLINK_CRC", "NVLINK_REPLAY", "NVLINK_RECOVERY",
                       "PCIE_REPLAY", "NVME_CRITICAL", "NVME_MEDIA")


def urgent(batch: IngestBatch, last: dict[Any, float]) -> bool:
    """Whether a collection should go out now rather than with the next push: events (Xid and kernel lines, the
    agent's own failures), command results (remediation waits for them), an OS state other than up, or a RAS
    counter that moved since the last collection (``last``: the RAS values seen, updated here)."""
    moved = bool(batch.events or batch.command_results or batch.os_state != "up")
    for s in batch.samples:
        m = s.metric
        if any(p in m for p in URGENT_METRIC_PARTS):
            key = (m, s.gpu, tuple(sorted(s.labels.items())) if s.labels else ())
            prev = last.get(key)
            if prev is not None and prev != s.value:
                moved = True
            last[key] = s.value
    return moved


def merge_batches(batches: list[IngestBatch]) -> IngestBatch:
    """Several collections as one batch: the latest's header (state, uptime, GPUs), every collection's samples,
    events, NVMe reports and command results, oldest first."""
    if len(batches) == 1:
        return batches[0]
    latest = batches[-1]
    return latest.model_copy(update={
        "samples": [s for b in batches for s in b.samples],
        "events": [e for b in batches for e in b.events],
        "nvme": [r for b in batches for r in b.nvme],
        "command_results": [r for b in batches for r in b.command_results],
    })

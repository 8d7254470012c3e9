"""Scrape an existing dcgm-exporter (``http://localhost:9400/metrics``) into ingest samples.

- Metrics are keyed on DCGM field names (``DCGM_FI_DEV_GPU_TEMP``), also accepted by numeric field id, in any case
  and in dcgm-exporter 1.x's old ``dcgm_`` namespace (see :func:`redfleet.agent.fields.resolve`); unknown
  ``DCGM_FI_*`` names pass through as they are, other metrics are ignored.
- Labels as dcgm-exporter writes them: ``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName``,
  ``Hostname`` (older and some newer releases: ``hostname``; both accepted), ``DCGM_FI_DRIVER_VERSION``, MIG
  ``GPU_I_ID``/``GPU_I_PROFILE``, Kubernetes ``container``/``namespace``/``pod``.
- The default counter list leaves most RAS counters (ECC, retired pages, NVLink errors, violations) commented
  out: what is not on the page is simply not sent. NVML (``--source nvml``) reads them directly.
- ``DCGM_FI_DEV_XID_ERRORS`` is the *value of the last Xid*, sticky until the driver reloads, not a count.
  :class:`XidTracker` turns a change of that value into one event; the value seen at the first scrape is a
  baseline (it may be weeks old) and a repeat of the same Xid is invisible here (the kernel log sees it).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

import aiohttp

from redfleet.agent.fields import XID_COUNT_METRIC, XID_FIELD, resolve
from redfleet.agent.kmsg import bus_key
from redfleet.model.ingest import GpuIdentity, InbandEvent, Sample

_LINE_RE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+(?P<ts>-?\d+))?\s*$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_EXTRA_LABELS = {"GPU_I_ID": "gpu_i_id", "GPU_I_PROFILE": "gpu_i_profile", "nvlink": "nvlink"}


class ExpositionError(ValueError):
    """Text that is not Prometheus text exposition format."""


@dataclass(slots=True)
class PromSample:
    name: str
    labels: dict[str, str]
    value: float
    ts: float | None = None


def _unescape(v: str) -> str:
    if "\\" not in v:
        return v
    return v.replace("\\\\", "\x00").replace('\\"', '"').replace("\\n", "\n").replace("\x00", "\\")


def parse_exposition(text: str) -> list[PromSample]:
    """Prometheus text format 0.0.4 → samples (HELP/TYPE/comments skipped). Raises ExpositionError with the
    line number on a line that does not parse."""
    out: list[PromSample] = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = _LINE_RE.match(s)
        if m is None:
            raise ExpositionError(f"line {n}: not a metric line: {s[:120]!r}")
        labels: dict[str, str] = {}
        raw = m.group("labels")
        if raw:
            pos = 0
            while pos < len(raw):
                lm = _LABEL_RE.match(raw, pos)
                if lm is None:
                    raise ExpositionError(f"line {n}: bad label set: {raw[:120]!r}")
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
        v = m.group("value")
        try:
            value = float(v)
        except ValueError:
            raise ExpositionError(f"line {n}: value {v!r} is not a number") from None
        ts = m.group("ts")
        out.append(PromSample(m.group("name"), labels, value, int(ts) / 1000.0 if ts else None))
    return out


def hostname_of(labels: dict[str, str]) -> str | None:
    return labels.get("Hostname") or labels.get("hostname")


@dataclass(slots=True)
class Scrape:
    samples: list[Sample] = field(default_factory=list)
    gpus: dict[int, GpuIdentity] = field(default_factory=dict)
    hostname: str | None = None
    driver_version: str | None = None
    xid_values: dict[int, int] = field(default_factory=dict)  # gpu → DCGM_FI_DEV_XID_ERRORS
    xid_counts: dict[tuple[int, int], float] = field(default_factory=dict)  # (gpu, xid) → DCGM_EXP count
    ignored: int = 0


def convert(text: str, now: float | None = None) -> Scrape:
    """A dcgm-exporter page → ingest samples, GPU identities and the Xid values (see the module docstring)."""
    now = time.time() if now is None else now
    out = Scrape()
    seen: set[tuple[str, int | None, tuple[tuple[str, str], ...]]] = set()
    for ps in parse_exposition(text):
        labels = ps.labels
        gpu_s = labels.get("gpu")
        gpu = int(gpu_s) if gpu_s is not None and gpu_s.isdigit() else None
        if out.hostname is None:
            out.hostname = hostname_of(labels)
        if out.driver_version is None and labels.get("DCGM_FI_DRIVER_VERSION"):
            out.driver_version = labels["DCGM_FI_DRIVER_VERSION"]
        if gpu is not None and gpu not in out.gpus:
            out.gpus[gpu] = GpuIdentity(gpu=gpu, uuid=labels.get("UUID") or labels.get("uuid"),
                                        pci_bus_id=labels.get("pci_bus_id"), model=labels.get("modelName"))
        if ps.name == XID_COUNT_METRIC:
            code = labels.get("xid")
            if gpu is not None and code and code.isdigit():
                out.xid_counts[(gpu, int(code))] = ps.value
            continue
        fd = resolve(ps.name)
        if fd is not None:
            name = fd.name
        elif ps.name.startswith("DCGM_FI_"):
            name = ps.name
        else:
            out.ignored += 1
            continue
        if math.isnan(ps.value) or math.isinf(ps.value):
            continue
        extra = {v: labels[k] for k, v in _EXTRA_LABELS.items() if labels.get(k)}
        key = (name, gpu, tuple(sorted(extra.items())))
        if key in seen:  # the same GPU reported once per pod/container: keep the first
            continue
        seen.add(key)
        if name == XID_FIELD and gpu is not None and not extra:
            out.xid_values[gpu] = int(ps.value)
        out.samples.append(Sample(metric=name, value=ps.value, ts=ps.ts or now, gpu=gpu, labels=extra))
    return out


class XidTracker:
    """Turns the sticky ``DCGM_FI_DEV_XID_ERRORS`` value (and dcgm-exporter's ``DCGM_EXP_XID_ERRORS_COUNT``)
    into events: one per change to a non-zero value after the first scrape; a drop to 0 (driver reload) is no
    event."""

    def __init__(self) -> None:
        self.last: dict[int, int] = {}
        self.counts: dict[tuple[int, int], float] = {}
        self.primed = False

    def update(self, scrape: Scrape, now: float) -> list[InbandEvent]:
        events: list[InbandEvent] = []
        if not self.primed:
            self.last = dict(scrape.xid_values)
            self.counts = dict(scrape.xid_counts)
            self.primed = True
            return events
        for gpu, value in scrape.xid_values.items():
            old = self.last.get(gpu)
            self.last[gpu] = value
            if value != 0 and value != old and (gpu, value) not in scrape.xid_counts:
                events.append(self._event(scrape, gpu, value, now,
                                          f"DCGM_FI_DEV_XID_ERRORS changed {old} → {value}"))
        for (gpu, code), count in scrape.xid_counts.items():
            old_c = self.counts.get((gpu, code), 0.0)
            self.counts[(gpu, code)] = count
            if count > old_c:
                events.append(self._event(scrape, gpu, code, now,
                                          f"DCGM_EXP_XID_ERRORS_COUNT xid={code} rose {old_c:g} → {count:g}"))
        return events

    @staticmethod
    def _event(scrape: Scrape, gpu: int, code: int, now: float, why: str) -> InbandEvent:
        ident = scrape.gpus.get(gpu)
        key = bus_key(ident.pci_bus_id if ident else None)
        return InbandEvent(ts=now, kind="xid", gpu=gpu, pci_bus_id=f"{key}.0" if key else None, code=code,
                           message=f"Xid {code} (from dcgm-exporter: {why})")


class DcgmExporterCollector:
    """Scrapes one dcgm-exporter URL; :meth:`collect` returns (scrape, Xid events). Raises aiohttp errors or
    :class:`ExpositionError` when the exporter does not answer or answers garbage."""

    def __init__(self, url: str = "http://127.0.0.1:9400/metrics", *, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.xids = XidTracker()

    async def collect(self, session: aiohttp.ClientSession,
                      now: float | None = None) -> tuple[Scrape, list[InbandEvent]]:
        async with session.get(self.url, timeout=self.timeout) as resp:
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, resp.history, status=resp.status,
                                                  message=f"dcgm-exporter {self.url} answered {resp.status}")
            text = await resp.text()
        now = time.time() if now is None else now
        scrape = convert(text, now)
        return scrape, self.xids.update(scrape, now)

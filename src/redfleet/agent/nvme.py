"""NVMe SMART / Health (02h) and OCP C0h logs through nvme-cli, into :class:`~redfleet.model.ingest.NvmeReport`.

Commands (nvme-cli 1.x and 2.x):

- ``nvme list -o json`` → the drives (``Devices[].DevicePath``/``SerialNumber``/``ModelNumber``/``Firmware``);
- ``nvme smart-log /dev/nvmeX -o json`` → 02h as JSON;
- ``nvme ocp smart-add-log /dev/nvmeX -o json`` → C0h as JSON (either key style; OCP drives only);
- ``--raw``: ``nvme get-log /dev/nvmeX --log-id=0x02 --log-len=512 -b`` and ``--log-id=0xc0`` → the raw pages.

Decoding and validation are the predict package's (:func:`redfleet.predict.parse_document`,
:func:`redfleet.predict.decode_raw`); the report carries nvme-cli's JSON as it came (``smart``, ``ocp_c0h``) and
the raw pages as hex, and a few headline values become ``REDFLEET_NVME_*`` samples (:data:`fields.NVME_METRICS`).
"""

from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from redfleet.agent.fields import NVME_METRICS
from redfleet.model.ingest import NvmeReport, Sample
from redfleet.predict import LogFormatError, decode_raw, parse_document

log = logging.getLogger("redfleet.agent.nvme")

Runner = Callable[[list[str]], Awaitable[bytes]]


class NvmeCliError(RuntimeError):
    """nvme-cli failed or printed something that is not the log asked for."""


async def run_command(argv: list[str], limit_s: float = 10.0) -> bytes:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise NvmeCliError(f"{' '.join(argv)}: no answer in {limit_s:g} s") from None
    if proc.returncode != 0:
        raise NvmeCliError(f"{' '.join(argv)}: exit {proc.returncode}: {err.decode(errors='replace').strip()[:200]}")
    return out


def controller_of(path: str) -> str:
    """``/dev/nvme0n1`` → ``/dev/nvme0`` (logs are per controller)."""
    m = re.match(r"^(.*?/?nvme\d+)(?:n\d+)?$", path)
    return m.group(1) if m else path


def parse_list(doc: Any) -> list[dict[str, Any]]:
    """``nvme list -o json`` (1.x flat ``Devices``; 2.x the same, or ``Subsystems``/``Controllers`` in -v) →
    [{device, serial, model, firmware}] with one entry per controller."""
    found: dict[str, dict[str, Any]] = {}
    for dev in (doc or {}).get("Devices", []) if isinstance(doc, dict) else []:
        if not isinstance(dev, dict):
            continue
        if "DevicePath" in dev:
            ctrl = controller_of(str(dev["DevicePath"]))
            found.setdefault(ctrl, {"device": ctrl, "serial": _s(dev.get("SerialNumber")),
                                    "model": _s(dev.get("ModelNumber")), "firmware": _s(dev.get("Firmware"))})
        for sub in dev.get("Subsystems", []) or []:
            for c in (sub or {}).get("Controllers", []) or []:
                name = c.get("Controller")
                if name:
                    ctrl = f"/dev/{name}"
                    found.setdefault(ctrl, {"device": ctrl, "serial": _s(c.get("SerialNumber")),
                                            "model": _s(c.get("ModelNumber")), "firmware": _s(c.get("Firmware"))})
    return [found[k] for k in sorted(found)]


def _s(v: Any) -> str | None:
    return str(v).strip() or None if v is not None else None


def report_from(device: str, *, smart: dict[str, Any] | None = None, ocp: dict[str, Any] | None = None,
                raw_smart: bytes | None = None, raw_ocp: bytes | None = None, serial: str | None = None,
                model: str | None = None, firmware: str | None = None) -> NvmeReport:
    """Validate what nvme-cli gave with predict's decoders and build the report. Raises LogFormatError."""
    if smart is not None:
        dec = parse_document(smart)
        if dec.kind != "smart":
            raise LogFormatError(f"{device}: smart-log output decoded as {dec.kind}")
    if ocp is not None:
        dec = parse_document(ocp)
        if dec.kind != "ocp_c0":
            raise LogFormatError(f"{device}: ocp smart-add-log output decoded as {dec.kind}")
    raw: dict[str, str] = {}
    if raw_smart is not None:
        decode_raw(raw_smart, "smart")
        raw["smart_02h"] = raw_smart.hex()
    if raw_ocp is not None:
        decode_raw(raw_ocp, "ocp_c0")
        raw["ocp_c0h"] = raw_ocp.hex()
    return NvmeReport(device=device, serial=serial, model=model, firmware=firmware, smart=smart, ocp_c0h=ocp,
                      raw=raw or None)


def samples_of(report: NvmeReport, ts: float) -> list[Sample]:
    """Headline SMART values as REDFLEET_NVME_* samples (from the JSON, else the raw 02h page)."""
    fields: dict[str, Any] | None = None
    try:
        if report.smart is not None:
            fields = parse_document(report.smart).fields
        elif report.raw and report.raw.get("smart_02h"):
            fields = decode_raw(bytes.fromhex(report.raw["smart_02h"]), "smart").fields
    except (LogFormatError, ValueError) as exc:
        log.warning("%s: SMART log not decodable: %s", report.device, exc)
        return []
    if not fields:
        return []
    dev = os.path.basename(report.device)
    out = []
    for key, metric in NVME_METRICS.items():
        if key in fields and isinstance(fields[key], int):
            v = fields[key] - 273 if key == "temperature" else fields[key]
            out.append(Sample(metric=metric, value=float(v), ts=ts, labels={"device": dev}))
    return out


class NvmeCollector:
    """Runs nvme-cli for every controller (from ``nvme list``, else ``/dev/nvme[0-9]*``) and builds reports.
    ``runner`` runs one command and returns its stdout (tests pass a fake that returns recorded output)."""

    def __init__(self, *, nvme: str = "nvme", raw: bool = False, ocp: bool = True, runner: Runner | None = None,
                 devices: list[str] | None = None) -> None:
        self.nvme = nvme
        self.raw = raw
        self.ocp = ocp
        self.run: Runner = runner or run_command
        self.devices = devices
        self.ocp_unsupported: set[str] = set()

    async def list_devices(self) -> list[dict[str, Any]]:
        if self.devices is not None:
            return [{"device": d} for d in self.devices]
        try:
            return parse_list(json.loads(await self.run([self.nvme, "list", "-o", "json"])))
        except (NvmeCliError, json.JSONDecodeError, OSError) as exc:
            log.info("nvme list failed (%s); looking at /dev", exc)
            return [{"device": d} for d in sorted(glob.glob("/dev/nvme[0-9]*")) if re.search(r"nvme\d+$", d)]

    async def _json(self, argv: list[str]) -> dict[str, Any]:
        out = await self.run(argv)
        try:
            doc = json.loads(out)
        except json.JSONDecodeError as exc:
            raise NvmeCliError(f"{' '.join(argv)}: output is not JSON ({exc.msg})") from None
        if not isinstance(doc, dict):
            raise NvmeCliError(f"{' '.join(argv)}: expected a JSON object")
        return doc

    async def collect_one(self, info: dict[str, Any]) -> NvmeReport:
        dev = info["device"]
        smart: dict[str, Any] | None = None
        ocp: dict[str, Any] | None = None
        raw_smart: bytes | None = None
        raw_ocp: bytes | None = None
        if self.raw:
            raw_smart = await self.run([self.nvme, "get-log", dev, "--log-id=0x02", "--log-len=512", "-b"])
        else:
            smart = await self._json([self.nvme, "smart-log", dev, "-o", "json"])
        if self.ocp and dev not in self.ocp_unsupported:
            try:
                if self.raw:
                    raw_ocp = await self.run([self.nvme, "get-log", dev, "--log-id=0xc0", "--log-len=512", "-b"])
                else:
                    ocp = await self._json([self.nvme, "ocp", "smart-add-log", dev, "-o", "json"])
            except NvmeCliError as exc:  # not an OCP drive (or no ocp plugin): do not ask again
                log.info("%s: no OCP C0h log (%s)", dev, exc)
                self.ocp_unsupported.add(dev)
        return report_from(dev, smart=smart, ocp=ocp, raw_smart=raw_smart, raw_ocp=raw_ocp,
                           serial=info.get("serial"), model=info.get("model"), firmware=info.get("firmware"))

    async def collect(self) -> tuple[list[NvmeReport], list[str]]:
        """(reports, errors): a drive whose logs fail is reported in errors, the others still come back."""
        reports: list[NvmeReport] = []
        errors: list[str] = []
        for info in await self.list_devices():
            try:
                reports.append(await self.collect_one(info))
            except (NvmeCliError, LogFormatError, OSError) as exc:
                errors.append(f"{info['device']}: {exc}")
        return reports, errors

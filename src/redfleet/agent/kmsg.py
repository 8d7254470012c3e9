"""Kernel ``NVRM: Xid`` lines → :class:`~redfleet.model.ingest.InbandEvent`.

Three input forms, as the kernel and systemd write them:

- ``/dev/kmsg`` records: ``"prio,seq,ts_usec,flags[,more];message"`` followed by optional continuation lines
  starting with a space (``" SUBSYSTEM=pci"``, ``" DEVICE=+pci:0000:3a:00.0"``). ``prio`` is facility*8+level,
  ``ts_usec`` microseconds since boot (CLOCK_MONOTONIC/BOOTTIME).
- ``dmesg`` text: ``"[ 1234.567890] NVRM: Xid (PCI:0000:3a:00): 79, pid='<unknown>', name=<unknown>, …"``.
- ``journalctl -k -o json``: one JSON object per line with ``MESSAGE`` (a string, or a list of byte values when
  the text is not UTF-8), ``__REALTIME_TIMESTAMP`` (µs since the epoch, a string), ``_SOURCE_MONOTONIC_TIMESTAMP``,
  ``PRIORITY``, ``_TRANSPORT`` ``"kernel"``.

The Xid line itself: ``NVRM: Xid (PCI:0000:3a:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the
bus.`` (r535+: ``pid=1234, name=python3, …``; older drivers leave out pid/name, and very old ones the ``PCI:``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from redfleet.model.ingest import InbandEvent

log = logging.getLogger("redfleet.agent.kmsg")

XID_RE = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<pci>[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?)\): (?P<code>\d+)"
    r"(?:, pid=(?P<pid>'<unknown>'|\d+|<unknown>))?(?:, name=(?P<name>[^,]*))?(?:, (?P<text>.*))?$"
)
DMESG_RE = re.compile(r"^\s*\[\s*(?P<ts>\d+\.\d+)\]\s?(?P<msg>.*)$")


@dataclass(frozen=True, slots=True)
class XidLine:
    pci: str  # "0000:3a:00" as printed
    code: int
    pid: int | None
    process: str | None
    text: str


def parse_xid(message: str) -> XidLine | None:
    """The Xid fields of one kernel message, or None when it is not an ``NVRM: Xid`` line."""
    if "NVRM: Xid" not in message:
        return None
    m = XID_RE.search(message.rstrip())
    if m is None:
        return None
    pid_s = m.group("pid")
    pid = int(pid_s) if pid_s and pid_s.isdigit() else None
    name = m.group("name")
    name = None if name is None or name.strip() in ("<unknown>", "") else name.strip()
    return XidLine(m.group("pci").lower(), int(m.group("code")), pid, name, (m.group("text") or "").strip())


def bus_key(pci: str | None) -> str | None:
    """A PCI address in any of the forms NVRM / NVML / dcgm-exporter print, reduced to ``"dddd:bb:dd"``
    (``"00000000:3A:00.0"`` and ``"0000:3a:00"`` → ``"0000:3a:00"``)."""
    if not pci:
        return None
    s = pci.strip().lower()
    if s.startswith("pci:"):
        s = s[4:]
    parts = s.split(":")
    if len(parts) == 2:
        parts = ["0", *parts]
    if len(parts) != 3:
        return None
    try:
        dom = int(parts[0], 16)
        bus = int(parts[1], 16)
        dev = int(parts[2].split(".")[0], 16)
    except ValueError:
        return None
    return f"{dom:04x}:{bus:02x}:{dev:02x}"


def xid_event(message: str, ts: float, gpus_by_bus: dict[str, int] | None = None,
              raw: str | None = None) -> InbandEvent | None:
    x = parse_xid(message)
    if x is None:
        return None
    key = bus_key(x.pci)
    gpu = (gpus_by_bus or {}).get(key or "")
    who = f" (pid {x.pid}, {x.process})" if x.pid is not None else ""
    return InbandEvent(ts=ts, kind="xid", gpu=gpu, pci_bus_id=f"{key}.0" if key else x.pci, code=x.code,
                       message=f"Xid {x.code}: {x.text}{who}".strip(), raw=raw if raw is not None else message)


# ---- the three input forms ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KernelRecord:
    message: str
    ts: float  # seconds since the epoch
    priority: int | None = None
    seq: int | None = None


def parse_kmsg_record(record: str, boot_time: float) -> KernelRecord | None:
    """One ``/dev/kmsg`` record (``"prio,seq,ts,flags;msg\\n KEY=value…"``); None if malformed."""
    head, sep, rest = record.partition(";")
    if not sep:
        return None
    fields = head.split(",")
    if len(fields) < 3:
        return None
    try:
        prio = int(fields[0])
        seq = int(fields[1])
        ts_us = int(fields[2])
    except ValueError:
        return None
    message = rest.split("\n", 1)[0]
    return KernelRecord(_unescape(message), boot_time + ts_us / 1e6, prio & 7, seq)


def _unescape(s: str) -> str:
    # kmsg escapes non-printable bytes as \xNN
    if "\\x" not in s:
        return s
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), s)


def parse_dmesg_line(line: str, boot_time: float) -> KernelRecord | None:
    m = DMESG_RE.match(line)
    if m is None:
        return None
    return KernelRecord(m.group("msg"), boot_time + float(m.group("ts")))


def parse_journal_line(line: str) -> KernelRecord | None:
    """One line of ``journalctl -k -o json``; None for blank or non-JSON lines."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        doc = json.loads(line)
    except json.JSONDecodeError:
        return None
    msg = doc.get("MESSAGE")
    if isinstance(msg, list):  # journald's form for non-UTF-8 text
        msg = bytes(int(b) & 0xFF for b in msg).decode("utf-8", "replace")
    if not isinstance(msg, str):
        return None
    try:
        ts = int(doc["__REALTIME_TIMESTAMP"]) / 1e6
    except (KeyError, ValueError, TypeError):
        ts = time.time()
    prio = doc.get("PRIORITY")
    return KernelRecord(msg, ts, int(prio) if isinstance(prio, str) and prio.isdigit() else None)


def parse_text(text: str, boot_time: float) -> Iterator[KernelRecord]:
    """Any of the three forms, record by record (kmsg continuation lines are skipped)."""
    for line in text.splitlines():
        if not line.strip() or line.startswith(" "):
            continue
        rec = (parse_journal_line(line) if line.lstrip().startswith("{")
               else parse_dmesg_line(line, boot_time) if line.lstrip().startswith("[")
               else parse_kmsg_record(line, boot_time))
        if rec is not None:
            yield rec


def xid_events(records: Iterable[KernelRecord], gpus_by_bus: dict[str, int] | None = None) -> list[InbandEvent]:
    out = []
    for rec in records:
        ev = xid_event(rec.message, rec.ts, gpus_by_bus, raw=rec.message)
        if ev is not None:
            out.append(ev)
    return out


def boot_time() -> float:
    """Wall-clock time of boot (kmsg and dmesg stamps count from it)."""
    try:
        return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        with open("/proc/uptime") as fh:
            return time.time() - float(fh.read().split()[0])


# ---- live sources ---------------------------------------------------------------------------------------------
class KmsgSource:
    """Reads kernel records from ``/dev/kmsg`` (a character device: one record per read, from the end unless
    ``from_start``) or from a text file in any of the three forms (followed as it grows, like ``tail -f``)."""

    def __init__(self, path: str = "/dev/kmsg", *, from_start: bool = False, boot: float | None = None) -> None:
        self.path = path
        self.boot = boot_time() if boot is None else boot
        self.fd: int | None = None
        self.is_device = False
        self.offset = 0
        self.from_start = from_start
        self.partial = ""

    def open(self) -> None:
        st = os.stat(self.path)
        self.is_device = stat.S_ISCHR(st.st_mode)
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        if self.is_device:
            if not self.from_start:
                os.lseek(self.fd, 0, os.SEEK_END)
        elif not self.from_start:
            self.offset = st.st_size

    def read(self) -> list[KernelRecord]:
        """Whatever is new since the last call (never blocks)."""
        if self.fd is None:
            self.open()
        assert self.fd is not None
        out: list[KernelRecord] = []
        if self.is_device:
            while True:
                try:
                    data = os.read(self.fd, 8192)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EPIPE:  # records were overwritten before we read them: go on
                        log.warning("%s: kernel ring buffer overran; some messages were lost", self.path)
                        continue
                    raise
                if not data:
                    break
                rec = parse_kmsg_record(data.decode("utf-8", "replace"), self.boot)
                if rec is not None:
                    out.append(rec)
            return out
        size = os.fstat(self.fd).st_size
        if size < self.offset:  # truncated or rotated
            self.offset = 0
        if size == self.offset:
            return out
        data = os.pread(self.fd, size - self.offset, self.offset)
        self.offset += len(data)
        text = self.partial + data.decode("utf-8", "replace")
        text, _, self.partial = text.rpartition("\n") if not text.endswith("\n") else (text, "", "")
        out.extend(parse_text(text, self.boot))
        return out

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class JournalSource:
    """``journalctl -k -o json -f`` as a subprocess; :meth:`read` drains what it printed so far."""

    def __init__(self, command: list[str] | None = None, *, since: str = "now") -> None:
        self.command = command or ["journalctl", "-k", "-o", "json", "-f", "--no-pager", "--since", since]
        self.proc: asyncio.subprocess.Process | None = None
        self.queue: asyncio.Queue[KernelRecord] = asyncio.Queue(maxsize=10_000)
        self.task: asyncio.Task[None] | None = None
        self.dropped = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            rec = parse_journal_line(raw.decode("utf-8", "replace"))
            if rec is None:
                continue
            if self.queue.full():
                self.queue.get_nowait()
                self.dropped += 1
            self.queue.put_nowait(rec)

    async def wait_done(self, seconds: float) -> None:
        """Wait for the command to finish (for one-shot commands such as ``journalctl -k -o json -n 200``)."""
        if self.task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.task), seconds)

    def read(self) -> list[KernelRecord]:
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 2.0)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

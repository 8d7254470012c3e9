"""The Xid catalog at run time: code -> entry, kernel-line parsing, and the decoders the WORKFLOW_* buckets need
(Xid 74 NVLink registers, Xid 144-150 NVLink5 IntrInfo/ErrorStatus, Xid 154 recovery action)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from redfleet.health.xidbuild import load_catalog

_LINE = re.compile(r"NVRM: Xid \(PCI:([0-9A-Fa-f:.]+)\): (\d+),?\s*(.*)")
_HEX = re.compile(r"0x[0-9A-Fa-f]+")
_REGS = re.compile(r"\(\s*(0x[0-9A-Fa-f]+(?:[\s,]+0x[0-9A-Fa-f]+)+)\s*\)")
_LINK = re.compile(r"[Ll]ink\s+(\d+)")
_154 = re.compile(r"to\s+(0x[0-9A-Fa-f]+|\d+)")

# The driver's recovery actions (nvmlDeviceGetGpuRecoveryAction / Xid 154)
RECOVERY_NAMES = {0: "None", 1: "GPU Reset Required", 2: "Node Reboot Required", 3: "Drain P2P",
                  4: "Drain and Reset"}


@dataclass(frozen=True, slots=True)
class XidLine:
    pci_bus_id: str
    code: int
    message: str


def parse_xid_line(line: str) -> XidLine | None:
    """``[..] NVRM: Xid (PCI:0000:3a:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.``"""
    m = _LINE.search(line)
    if not m:
        return None
    return XidLine(m.group(1).lower(), int(m.group(2)), m.group(3).strip())


def norm_bus(bus: str | None) -> str | None:
    """PCI bus ids in a comparable form: bus:device ("3a:00") from "0000:3a:00", "00000000:3A:00.0" ..."""
    if not bus:
        return None
    parts = bus.lower().split(":")
    if len(parts) >= 3:
        return f"{parts[-2][-2:]}:{parts[-1].split('.')[0][:2]}"
    if len(parts) == 2:
        return f"{parts[0][-2:]}:{parts[1].split('.')[0][:2]}"
    return bus.lower()


class XidCatalog:
    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data = data if data is not None else load_catalog()
        self.by_code: dict[int, dict[str, Any]] = {x["code"]: x for x in self.data["xids"]}
        self.buckets: dict[str, str] = dict(self.data["buckets"])
        self.decode_rows: dict[int, list[dict[str, Any]]] = {}
        for row in self.data["nvlink5_decode"]:
            self.decode_rows.setdefault(row["xid"], []).append(row)

    def entry(self, code: int) -> dict[str, Any] | None:
        return self.by_code.get(code)

    def immediate_bucket(self, code: int) -> str | None:
        e = self.by_code.get(code)
        return e["immediate"] if e else None

    def mnemonic(self, code: int) -> str:
        e = self.by_code.get(code)
        return (e.get("mnemonic") or f"XID_{code}").split("/")[0].strip() if e else f"XID_{code}"

    # --- Xid 144-150 (NVLink5) ----------------------------------------------------------------------------------
    def decode_nvlink5(self, code: int, message: str) -> tuple[str, str | None, list[str]] | None:
        """(immediate bucket, investigatory bucket, matched subcodes) for an Xid 144-150 message, or None when
        the registers are not in the message. The catalog's masks are tried for both IntrInfo layouts
        (V1 < R575, V2 >= R575); ``Action 2`` applies when its mask matches (promotable errors)."""
        regs = registers(message)
        rows = self.decode_rows.get(code)
        if not rows or len(regs) < 2:
            return None
        intr, status = regs[0], regs[1]
        rank = {"IGNORE": 0, "XID_154_EVAL": 1, "RESET_GPU": 2}
        best: tuple[int, str, str | None] | None = None
        subs: list[str] = []
        for row in rows:
            if not any(mask_matches(row.get(k), intr) for k in ("intrinfo_v2", "intrinfo_v1")):
                continue
            statuses = row.get("error_status")
            if statuses is not None and not any(status == s or (s and status & s == s) for s in statuses):
                continue
            bucket = row.get("immediate") or "CONTACT_SUPPORT"
            if row.get("action2") and any(mask_matches(row.get(k), intr)
                                          for k in ("action2_intrinfo_v2", "action2_intrinfo_v1")):
                bucket = row["action2"]
            r = rank.get(bucket, 3)
            subs.append(str(row.get("subcode")))
            if best is None or r > best[0]:
                best = (r, bucket, row.get("investigatory"))
        if best is None:
            return None
        return best[1], best[2], subs


@functools.lru_cache(maxsize=1)
def default_catalog() -> XidCatalog:
    return XidCatalog()


def registers(message: str) -> list[int]:
    """The hex registers in the parenthesised list of an Xid message (``(0x0, 0x0, 0x10000, ...)``)."""
    m = _REGS.search(message)
    if not m:
        return []
    return [int(h, 16) for h in _HEX.findall(m.group(1))]


def mask_matches(mask: str | None, value: int) -> bool:
    """A catalog IntrInfo mask: binary digits MSB first, '-' for bits that do not matter."""
    if not mask:
        return False
    bits = mask.strip()
    n = len(bits)
    for i, ch in enumerate(bits):
        if ch == "-":
            continue
        bit = (value >> (n - 1 - i)) & 1
        if (ch == "1" and not bit) or (ch == "0" and bit):
            return False
    return True


def link_of(message: str) -> int | None:
    m = _LINK.search(message)
    return int(m.group(1)) if m else None


def recovery_action_of(message: str) -> int | None:
    """The new recovery action in an Xid 154 message ("GPU recovery action changed from 0x0 (None) to 0x2 ...")."""
    m = _154.search(message)
    if not m:
        return None
    v = m.group(1)
    return int(v, 16) if v.lower().startswith("0x") else int(v)


# Xid 74 (NVLink, pre-NVLink5): register bits -> what the catalog's WORKFLOW_NVLINK_ERR says to do.
# (register index, bits, verdict): verdicts: ignore, sympathetic, ecc (report if > 2 on the same link),
# mechanical (reseat, diags if it persists), si (marginal channel), repeat (report if seen repeatedly),
# diag_repeat (field diags if seen repeatedly), report (not expected in production), fabric (fabric reset)
_NVLINK_BITS: tuple[tuple[int, frozenset[int], str], ...] = (
    (0, frozenset({0, 23, 30}), "ignore"),
    (0, frozenset({1, 20}), "sympathetic"),
    (0, frozenset({4, 5}), "ecc"),
    (0, frozenset({8, 9, 12, 16, 17, 24, 28}), "mechanical"),
    (0, frozenset({21, 22}), "si"),
    (0, frozenset({27, 29}), "repeat"),
    (2, frozenset({0, 1, 2, 6}), "ecc"),
    (2, frozenset({13}), "report"),
    (2, frozenset({16, 19}), "diag_repeat"),
    (2, frozenset({17, 18}), "repeat"),
    (3, frozenset({16, 17}), "sympathetic"),
    (3, frozenset({18}), "fabric"),
    (4, frozenset({18, 19, 21, 22, 24, 25, 27, 28}), "ecc"),
    (4, frozenset({20, 23, 26, 29}), "ignore"),
)


def nvlink_verdicts(message: str) -> set[str]:
    """The verdicts of the bits set in an Xid 74 message's registers ("unknown" for bits the catalog does not
    list, which it says to report)."""
    regs = registers(message)
    out: set[str] = set()
    for idx, value in enumerate(regs[:5]):
        v = value
        for ridx, bits, verdict in _NVLINK_BITS:
            if ridx != idx:
                continue
            for b in bits:
                if v >> b & 1:
                    out.add(verdict)
                    v &= ~(1 << b)
        if v and idx in (0, 2, 3, 4):
            out.add("unknown")
    return out

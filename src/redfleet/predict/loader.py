"""Read health-log files of any supported form into samples.

One file is one of:

* a raw 512-byte log (02h or C0h; told apart by the C0h GUID);
* JSON from ``nvme smart-log -o json``, ``nvme ocp smart-add-log -o json`` (either key style) or
  ``smartctl -j``;
* redfleet's own sample JSON — an object ``{"drive_id", "collected_at", "smart": {…}, "ocp": {…}}``, a list of
  them, or JSON Lines of them — which is how a history travels in a file (the agent and the simulator write it).

Anything else is a :class:`~redfleet.predict.logs.LogFormatError` naming the file and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redfleet.predict.jsonfmt import parse_document
from redfleet.predict.layout import LOG_SIZE
from redfleet.predict.logs import DecodedLog, LogFormatError, decode_raw

SAMPLE_FORMAT = "redfleet.ssd.sample/1"
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass
class Sample:
    """One reading of one drive: 02h and/or C0h fields at a time."""

    drive_id: str
    collected_at: datetime
    smart: dict[str, Any] = field(default_factory=dict)
    ocp: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # file name or origin
    formats: list[str] = field(default_factory=list)  # raw, nvme-cli-json, …
    notes: list[str] = field(default_factory=list)
    device: dict[str, Any] = field(default_factory=dict)
    node_id: str | None = None

    @property
    def log_page_version(self) -> int | None:
        v = self.ocp.get("log_page_version")
        return int(v) if v is not None else None

    def fields(self) -> dict[str, Any]:
        """02h and C0h fields in one flat dict (their keys do not overlap)."""
        return {**self.smart, **self.ocp}

    def merge(self, other: Sample) -> None:
        self.smart.update(other.smart)
        self.ocp.update(other.ocp)
        self.formats += [f for f in other.formats if f not in self.formats]
        self.notes += other.notes
        self.device.update({k: v for k, v in other.device.items() if v})
        if other.source and other.source not in self.source.split(", "):
            self.source = f"{self.source}, {other.source}" if self.source else other.source


def parse_time(value: Any, what: str = "collected_at") -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise LogFormatError(f"{what}: {value!r} is not an ISO 8601 time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise LogFormatError(f"{what}: {value!r} is not a time")


def sample_from_decoded(log: DecodedLog, *, drive_id: str, collected_at: datetime, source: str = "") -> Sample:
    s = Sample(drive_id=drive_id, collected_at=collected_at, source=source, formats=[log.source_format],
               notes=list(log.notes), device=dict(log.device))
    if log.kind == "smart":
        s.smart = dict(log.fields)
    else:
        s.ocp = dict(log.fields)
    return s


def sample_from_record(rec: Mapping[str, Any], default_id: str, default_time: datetime, source: str) -> Sample:
    """redfleet's sample JSON; "smart"/"ocp" may themselves be nvme-cli/smartctl documents or field dicts.

    The in-band agent's per-drive entries are read too: ``ocp_c0h`` stands for ``ocp``, and
    ``raw: {"smart_02h": hex, "ocp_c0h": hex}`` (the 512-byte logs in hex) for either part when it is missing;
    the drive id then defaults to the entry's ``serial``.
    """
    drive_id = str(rec.get("drive_id") or rec.get("serial") or default_id)
    when = parse_time(rec["collected_at"]) if rec.get("collected_at") is not None else default_time
    s = Sample(drive_id=drive_id, collected_at=when, source=source, formats=["redfleet-sample"],
               node_id=rec.get("node_id"))
    for part, key in (("smart", "smart"), ("ocp", "ocp"), ("ocp", "ocp_c0h")):
        if (part == "ocp" and s.ocp) or key not in rec:
            continue
        doc = rec.get(key)
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            raise LogFormatError(f"{part}: expected an object")
        try:
            decoded = parse_document(doc)
        except LogFormatError:
            # plain field dicts (already canonical keys) are accepted for the smart part without a GUID
            if part == "ocp" and "log_page_version" in doc and "log_page_guid" not in doc:
                decoded = parse_document({**doc, "log_page_guid": "0xafd514c97c6f4f9ca4f2bfea2810afc5"})
            else:
                raise
        expected = "smart" if part == "smart" else "ocp_c0"
        if decoded.kind != expected:
            raise LogFormatError(f"{part}: holds a {decoded.kind} log")
        s.merge(sample_from_decoded(decoded, drive_id=drive_id, collected_at=when))
        s.formats = ["redfleet-sample"]
    raw = rec.get("raw")
    if isinstance(raw, Mapping):
        for key, kind in (("smart_02h", "smart"), ("ocp_c0h", "ocp_c0")):
            text = raw.get(key)
            if not text or (kind == "smart" and s.smart) or (kind == "ocp_c0" and s.ocp):
                continue
            try:
                data = bytes.fromhex(str(text))
            except ValueError:
                raise LogFormatError(f"raw.{key}: not hexadecimal") from None
            decoded = decode_raw(data, kind)  # type: ignore[arg-type]
            s.merge(sample_from_decoded(decoded, drive_id=drive_id, collected_at=when))
            s.formats = ["redfleet-sample"]
    if not s.smart and not s.ocp:
        raise LogFormatError("sample has neither a smart nor an ocp part")
    for key in ("model", "serial", "firmware", "slot"):
        if rec.get(key):
            s.device[key] = rec[key]
    return s


def _is_sample_record(doc: Any) -> bool:
    return isinstance(doc, Mapping) and any(k in doc for k in ("smart", "ocp", "ocp_c0h", "raw")) and (
        "drive_id" in doc or "collected_at" in doc or "serial" in doc or doc.get("format") == SAMPLE_FORMAT)


def _is_inband_report(doc: Any) -> bool:
    """The in-band agent's node report: ``{"node": …, "nvme": [{device, serial, smart, ocp_c0h, raw}, …]}``."""
    return isinstance(doc, Mapping) and isinstance(doc.get("nvme"), list) and "node" in doc


def load_bytes(data: bytes, *, name: str = "<input>", drive_id: str | None = None,
               collected_at: datetime | None = None) -> list[Sample]:
    """Samples from a file's bytes; errors are LogFormatError with the name in front."""
    default_id = drive_id or Path(name).stem or "drive"
    when = collected_at or datetime.now(UTC)
    try:
        if not data:
            raise LogFormatError("empty file")
        head = data.lstrip()[:1]
        if head not in (b"{", b"["):
            if len(data) != LOG_SIZE:
                raise LogFormatError(f"not JSON and wrong length for a raw log: {len(data)} bytes, a log page is "
                                     f"exactly {LOG_SIZE}")
            return [sample_from_decoded(decode_raw(data), drive_id=default_id, collected_at=when, source=name)]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            if len(data) == LOG_SIZE:
                return [sample_from_decoded(decode_raw(data), drive_id=default_id, collected_at=when, source=name)]
            raise LogFormatError("neither UTF-8 JSON nor a 512-byte raw log") from None
        docs: list[Any]
        try:
            docs = [json.loads(text)]
        except json.JSONDecodeError as exc:
            lines = [ln for ln in text.splitlines() if ln.strip()]
            try:
                docs = [json.loads(ln) for ln in lines]
            except json.JSONDecodeError:
                if len(data) == LOG_SIZE:  # a raw log that happens to start with '{' or '['
                    return [sample_from_decoded(decode_raw(data), drive_id=default_id, collected_at=when,
                                                source=name)]
                raise LogFormatError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        if len(docs) == 1 and isinstance(docs[0], list):
            docs = list(docs[0])
        samples: list[Sample] = []
        for i, doc in enumerate(docs):
            where = f"record {i + 1}: " if len(docs) > 1 else ""
            try:
                if _is_inband_report(doc):
                    at = parse_time(doc["collected_at"]) if doc.get("collected_at") else when
                    for j, entry in enumerate(doc["nvme"]):
                        if not isinstance(entry, Mapping):
                            raise LogFormatError(f"nvme[{j}]: expected an object")
                        rec = {"node_id": doc["node"], **entry}
                        fallback = f"{doc['node']}/{entry.get('device', j)}"
                        try:
                            samples.append(sample_from_record(rec, fallback, at, name))
                        except LogFormatError as exc:
                            raise LogFormatError(f"nvme[{j}]: {exc}") from None
                elif _is_sample_record(doc):
                    samples.append(sample_from_record(doc, default_id, when, name))
                else:
                    decoded = parse_document(doc)
                    serial = decoded.device.get("serial")
                    samples.append(sample_from_decoded(decoded, drive_id=drive_id or serial or default_id,
                                                       collected_at=when, source=name))
            except LogFormatError as exc:
                raise LogFormatError(f"{where}{exc}") from None
        if not samples:
            raise LogFormatError("no health samples in the file")
        return samples
    except LogFormatError as exc:
        raise LogFormatError(f"{name}: {exc}") from None


def load_path(path: str | Path, *, drive_id: str | None = None) -> list[Sample]:
    """Samples from one file; the file's modification time stamps samples that carry no time."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LogFormatError(f"{p}: {size} bytes is too large for a health log file")
        data = p.read_bytes()
        mtime = datetime.fromtimestamp(p.stat().st_mtime, UTC)
    except OSError as exc:
        raise LogFormatError(f"{p}: cannot read: {exc.strerror or exc}") from None
    return load_bytes(data, name=str(p), drive_id=drive_id, collected_at=mtime)


def group_by_drive(samples: Iterable[Sample], *, merge_seconds: float = 300.0) -> dict[str, list[Sample]]:
    """Samples per drive, oldest first. A 02h and a C0h reading of one drive taken within ``merge_seconds`` of
    each other (two files written one after the other) become one sample."""
    per_drive: dict[str, list[Sample]] = {}
    for s in samples:
        per_drive.setdefault(s.drive_id, []).append(s)
    out: dict[str, list[Sample]] = {}
    for drive_id, items in per_drive.items():
        merged: list[Sample] = []
        for s in sorted(items, key=lambda x: x.collected_at):
            prev = merged[-1] if merged else None
            close = prev is not None and (s.collected_at - prev.collected_at).total_seconds() <= merge_seconds
            if prev is not None and (s.collected_at == prev.collected_at or (
                    close and not (prev.smart and s.smart) and not (prev.ocp and s.ocp))):
                prev.merge(s)
                prev.collected_at = max(prev.collected_at, s.collected_at)
            else:
                merged.append(Sample(**{**s.__dict__, "smart": dict(s.smart), "ocp": dict(s.ocp),
                                        "formats": list(s.formats), "notes": list(s.notes),
                                        "device": dict(s.device)}))
        out[drive_id] = merged
    return out


def sample_record(s: Sample) -> dict[str, Any]:
    """redfleet's sample JSON for a sample (what the agent/simulator write, one per line)."""
    rec: dict[str, Any] = {"format": SAMPLE_FORMAT, "drive_id": s.drive_id,
                           "collected_at": s.collected_at.isoformat()}
    if s.node_id:
        rec["node_id"] = s.node_id
    if s.smart:
        rec["smart"] = s.smart
    if s.ocp:
        rec["ocp"] = {**s.ocp, "log_page_guid": "0xafd514c97c6f4f9ca4f2bfea2810afc5"}
    rec.update({k: v for k, v in s.device.items() if k in ("model", "serial", "firmware", "slot") and v})
    return rec

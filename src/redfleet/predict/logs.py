"""Decode and build the raw 512-byte NVMe SMART/Health (02h) and OCP SMART/Health Extended (C0h) logs.

Decoding checks what can be checked — the length, the C0h GUID, the C0h log page version, reserved bytes — and
raises :class:`LogFormatError` with a sentence that says what is wrong. Building (``encode_*``) is what the
simulator and the tests use to make realistic raw logs from a dict of fields.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from redfleet.predict.layout import (
    LOG_SIZE,
    OCP_C0_BY_KEY,
    OCP_C0_GUID_BYTES,
    OCP_C0_GUID_TEXT,
    OCP_LATEST_VERSION,
    OCP_VERSION_SPEC,
    OCP_VERSIONS,
    SMART_BY_KEY,
    SMART_FIELDS,
    SMART_RESERVED,
    Field,
    ocp_fields_for_version,
    ocp_reserved_ranges,
)

LogKind = Literal["smart", "ocp_c0"]


class LogFormatError(ValueError):
    """Input that is not a valid health log; the message says why (length, GUID, version, …)."""


@dataclass
class DecodedLog:
    """One decoded health log.

    ``fields`` uses nvme-cli's snake_case keys; integers are exact (128-bit counters included), the C0h
    firmware identity fields are strings. ``version`` is the C0h log page version (None for 02h).
    """

    kind: LogKind
    fields: dict[str, Any]
    version: int | None = None
    source_format: str = "raw"  # raw | nvme-cli-json | nvme-cli-json-legacy | smartctl-json
    notes: list[str] = field(default_factory=list)
    device: dict[str, Any] = field(default_factory=dict)  # model / serial / firmware when the input had them

    @property
    def spec(self) -> str | None:
        """The OCP spec revision a C0h log follows ("2.5" …)."""
        return OCP_VERSION_SPEC.get(self.version) if self.version is not None else None


def _read(buf: bytes, f: Field) -> Any:
    raw = buf[f.offset:f.end]
    if f.kind == "uint":
        return int.from_bytes(raw, "little")
    if f.kind == "ascii":
        return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace").rstrip()
    if f.kind == "uuid":
        return str(uuid.UUID(bytes=bytes(raw)))
    raise AssertionError(f.kind)


def _write(buf: bytearray, f: Field, value: Any) -> None:
    if f.kind == "uint":
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"{f.key}: {value!r} is not an integer") from None
        if value < 0 or value >= 1 << (8 * f.size):
            raise ValueError(f"{f.key}: {value} does not fit in {f.size} byte(s)")
        buf[f.offset:f.end] = value.to_bytes(f.size, "little")
    elif f.kind == "ascii":
        data = str(value).encode("ascii")
        if len(data) > f.size:
            raise ValueError(f"{f.key}: {value!r} is longer than {f.size} bytes")
        buf[f.offset:f.end] = data.ljust(f.size, b"\x00")
    elif f.kind == "uuid":
        buf[f.offset:f.end] = uuid.UUID(str(value)).bytes if value else bytes(16)
    else:  # pragma: no cover
        raise AssertionError(f.kind)


def _check_length(data: bytes, what: str) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LogFormatError(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) != LOG_SIZE:
        raise LogFormatError(f"{what}: wrong length: {len(data)} bytes, a log page is exactly {LOG_SIZE}")


def _nonzero_ranges(buf: bytes, ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> list[str]:
    """The non-zero bytes inside the given [start, end) ranges, as runs ("216", "300–303")."""
    out: list[str] = []
    for start, end in ranges:
        run: int | None = None
        for i in range(start, end + 1):
            nonzero = i < end and buf[i] != 0
            if nonzero and run is None:
                run = i
            elif not nonzero and run is not None:
                out.append(f"{run}–{i - 1}" if i - 1 > run else f"{run}")
                run = None
    return out


# --- OCP C0h ---------------------------------------------------------------------------------------------
def guid_problem(guid_bytes: bytes) -> str | None:
    """None when bytes 496..511 hold the C0h GUID, else a sentence saying what they hold instead."""
    if bytes(guid_bytes) == OCP_C0_GUID_BYTES:
        return None
    if bytes(guid_bytes) == OCP_C0_GUID_BYTES[::-1]:
        return (f"wrong GUID byte order: bytes 496–511 hold {OCP_C0_GUID_TEXT} big-endian; "
                "the spec stores it little-endian")
    if not any(guid_bytes):
        return f"wrong GUID: bytes 496–511 are zero, not the OCP C0h GUID {OCP_C0_GUID_TEXT}"
    found = int.from_bytes(guid_bytes, "little")
    return f"wrong GUID: bytes 496–511 read {found:032X}, not the OCP C0h GUID {OCP_C0_GUID_TEXT}"


def decode_ocp_c0(data: bytes, *, strict: bool = True) -> DecodedLog:
    """Decode a raw OCP SMART / Health Information Extended (C0h) log.

    ``strict`` (default): a version this code does not know is an error. With ``strict=False`` a newer
    version is decoded with the newest known layout and a note says so; reserved bytes that are not zero are
    a note either way (drives in the field do leave vendor data there).
    """
    _check_length(data, "OCP C0h log")
    buf = bytes(data)
    problem = guid_problem(buf[496:512])
    if problem:
        raise LogFormatError(f"not an OCP SMART / Health Information Extended (C0h) log: {problem}")
    version = int.from_bytes(buf[494:496], "little")
    notes: list[str] = []
    if version not in OCP_VERSION_SPEC:
        known = ", ".join(f"{v} (OCP {OCP_VERSION_SPEC[v]})" for v in OCP_VERSIONS)
        if strict or version < OCP_VERSIONS[0]:
            raise LogFormatError(f"OCP C0h log: unknown log page version {version} (bytes 494–495); "
                                 f"known: {known}")
        notes.append(f"log page version {version} is newer than this decoder; "
                     f"decoded with the version {OCP_LATEST_VERSION} layout")
        layout_version = OCP_LATEST_VERSION
    else:
        layout_version = version
    fields = {f.key: _read(buf, f) for f in ocp_fields_for_version(layout_version)}
    fields["log_page_version"] = version
    fields["log_page_guid"] = "0x" + OCP_C0_GUID_TEXT.replace("-", "").lower()
    dirty = _nonzero_ranges(buf, ocp_reserved_ranges(layout_version))
    if dirty:
        notes.append(f"bytes reserved in log page version {layout_version} are not zero: {', '.join(dirty)}")
    return DecodedLog("ocp_c0", fields, version=version, notes=notes)


def encode_ocp_c0(fields: Mapping[str, Any], version: int = OCP_LATEST_VERSION, *,
                  drop_unknown: bool = False) -> bytes:
    """Build a raw 512-byte C0h log of a given log page version (2..6) from nvme-cli snake_case fields.

    Missing fields are zero. A field that the version does not define is an error, unless ``drop_unknown``
    (then it is left out, which is what a drive of that version would do). ``log_page_version`` and
    ``log_page_guid`` in ``fields`` are ignored: the version argument and the spec's GUID are written.
    """
    if version not in OCP_VERSION_SPEC:
        raise ValueError(f"unknown OCP C0h log page version {version}; known: {list(OCP_VERSIONS)}")
    buf = bytearray(LOG_SIZE)
    for key, value in fields.items():
        if key in ("log_page_version", "log_page_guid"):
            continue
        f = OCP_C0_BY_KEY.get(key)
        if f is None or f.since > version:
            if drop_unknown:
                continue
            if f is None:
                raise ValueError(f"{key!r} is not an OCP C0h field")
            raise ValueError(f"{key!r} does not exist in log page version {version} "
                             f"(OCP {OCP_VERSION_SPEC[version]}); it arrived in version {f.since}")
        if value is None:
            continue
        _write(buf, f, value)
    buf[494:496] = version.to_bytes(2, "little")
    buf[496:512] = OCP_C0_GUID_BYTES
    return bytes(buf)


# --- NVMe 02h --------------------------------------------------------------------------------------------
def decode_smart(data: bytes, *, strict: bool = True) -> DecodedLog:
    """Decode a raw NVMe SMART / Health Information (02h) log.

    The 02h log carries no signature, so ``strict`` (default) checks what the spec fixes: reserved bytes
    7–31 and 244–511 are zero and the spare percentages are at most 100. A file failing that is not taken for
    a SMART log; ``strict=False`` turns those checks into notes.
    """
    _check_length(data, "NVMe SMART/Health log")
    buf = bytes(data)
    problems: list[str] = []
    dirty = _nonzero_ranges(buf, SMART_RESERVED)
    if dirty:
        problems.append(f"reserved bytes {', '.join(dirty)} are not zero")
    fields = {f.key: _read(buf, f) for f in SMART_FIELDS}
    for key in ("avail_spare", "spare_thresh"):
        if fields[key] > 100:
            problems.append(f"{key} is {fields[key]}, a percentage is at most 100")
    if problems and strict:
        hint = ""
        if buf[496:512] == OCP_C0_GUID_BYTES[::-1]:
            hint = f" (bytes 496–511 hold the OCP C0h GUID big-endian: {guid_problem(buf[496:512])})"
        raise LogFormatError("not an NVMe SMART/Health (02h) log: " + "; ".join(problems) + hint)
    return DecodedLog("smart", fields, notes=problems)


def encode_smart(fields: Mapping[str, Any]) -> bytes:
    """Build a raw 512-byte NVMe SMART / Health (02h) log from nvme-cli snake_case fields (missing: zero).

    ``temperature`` and ``temperature_sensor_N`` are kelvin, as in the log. ``critical_warning`` may also be
    given as nvme-cli's verbose object (``{"value": …}``).
    """
    buf = bytearray(LOG_SIZE)
    for key, value in fields.items():
        f = SMART_BY_KEY.get(key)
        if f is None:
            raise ValueError(f"{key!r} is not an NVMe SMART/Health (02h) field")
        if isinstance(value, Mapping):
            value = value.get("value", 0)
        if value is None:
            continue
        _write(buf, f, value)
    return bytes(buf)


# --- either ----------------------------------------------------------------------------------------------
def decode_raw(data: bytes, kind: LogKind | None = None) -> DecodedLog:
    """Decode 512 raw bytes as the given kind, or tell which: the C0h GUID in bytes 496–511 means C0h."""
    if kind == "ocp_c0":
        return decode_ocp_c0(data)
    if kind == "smart":
        return decode_smart(data)
    _check_length(data, "health log")
    buf = bytes(data)
    if buf[496:512] == OCP_C0_GUID_BYTES:
        return decode_ocp_c0(buf)
    try:
        return decode_smart(buf)
    except LogFormatError as exc:
        problem = guid_problem(buf[496:512])
        raise LogFormatError(f"{exc}; and not an OCP C0h log either: {problem}") from None

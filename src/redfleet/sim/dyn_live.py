"""Live resources rendered straight to bytes: the cheap path for a healthy node's sensors.

A ``Sensor`` resource of a flavor is compiled once (per flavor, shared by every node) into the bytes of its captured
document cut around the few values that move: ``Reading``, ``Status`` (one serialized variant per health) and
``@odata.etag``. A GET then computes the reading, picks the Status variant and joins the pieces, instead of parsing
the document, running :func:`redfleet.sim.dyn_overlay.sensor` on it and serializing it again.

The result is the same bytes as that overlay gives (tests/sim/test_dyn_live.py compares both for every sensor of
every flavor). It is used only while the node's conditions are the plain healthy ``ON`` (no fault, powered, up for a
while); any fault, power change or boot sends the node's reads back through the overlay from the next request on.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import orjson

from redfleet.sim.dyn_overlay import _TEMPS, _energy, _status, _upper_limits
from redfleet.sim.telemetry import adjust, key_of

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.sim.dyn_node import NodeDyn
    from redfleet.sim.telemetry import Conditions

Doc = dict[str, Any]

_READING = "\x00rf-live-reading\x00"
_STATUS = "\x00rf-live-status\x00"
_ETAG = "\x00rf-live-etag\x00"
_HEALTHS = ("OK", "Warning", "Critical")


class LiveSensor:
    """One compiled Sensor document (see the module docstring)."""

    __slots__ = ("captured", "ceiling", "checks", "context", "etag_at", "facts", "has_reading", "name", "parts",
                 "related", "rtype", "status", "units")

    def __init__(self, doc: Doc) -> None:
        self.name = str(doc.get("Name") or doc.get("Id") or "")
        self.related = " ".join(str(r.get("@odata.id", "")) for r in doc.get("RelatedItem") or []
                                if isinstance(r, dict))
        self.rtype = doc.get("ReadingType")
        self.context = doc.get("PhysicalContext")
        self.units = doc.get("ReadingUnits")
        self.captured = doc.get("Reading")
        # (kind, gpu, ordinal, sensor key, TDP) of the reading, known after the first render
        self.facts: tuple[str, int | None, int, int, float] | None = None
        self.has_reading = "Reading" in doc
        # keep_healthy: a healthy reading stays 1 below the lowest positive upper threshold
        limits = [lim for lim in _upper_limits(doc) if lim > 0]
        self.ceiling: float | None = min(limits) - 1.0 if limits else None
        # _threshold_health: the first upper threshold reached gives the health (legacy keys first)
        checks: list[tuple[float, str]] = []
        for key, sev in (("UpperThresholdFatal", "Critical"), ("UpperThresholdCritical", "Critical"),
                         ("UpperThresholdNonCritical", "Warning")):
            lim = doc.get(key)
            if isinstance(lim, (int, float)):
                checks.append((lim, sev))
        th = doc.get("Thresholds")
        if isinstance(th, dict):
            for key, sev in (("UpperFatal", "Critical"), ("UpperCritical", "Critical"),
                             ("UpperCaution", "Warning")):
                lim = (th.get(key) or {}).get("Reading") if isinstance(th.get(key), dict) else None
                if isinstance(lim, (int, float)):
                    checks.append((lim, sev))
        self.checks = tuple(checks)
        # the Status object as the overlay leaves it, for each health
        self.status: dict[str, bytes] | None = None
        if "Status" in doc:
            self.status = {}
            for h in _HEALTHS:
                variant = copy.deepcopy(doc)
                _status(variant, h)
                self.status[h] = orjson.dumps(variant["Status"])
        # the document cut around the moving values
        shell = dict(doc)
        if self.has_reading:
            shell["Reading"] = _READING
        if self.status is not None:
            shell["Status"] = _STATUS
        self.etag_at = "@odata.etag" in doc
        if self.etag_at:
            shell["@odata.etag"] = _ETAG
        body = orjson.dumps(shell)
        order = sorted(
            (body.index(orjson.dumps(marker)), marker)
            for marker, used in ((_READING, self.has_reading), (_STATUS, self.status is not None),
                                 (_ETAG, self.etag_at))
            if used
        )
        parts: list[Any] = []
        pos = 0
        for at, marker in order:
            parts.append(body[pos:at])
            parts.append(marker)
            pos = at + len(orjson.dumps(marker))
        parts.append(body[pos:])
        self.parts = tuple(parts)

    def render(self, nd: NodeDyn, path: str, t: float, c: Conditions) -> bytes:
        """The document's bytes at simulated time ``t`` under the healthy conditions ``c``."""
        v = self.captured
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            facts = self.facts
            if facts is None:
                facts = self.facts = self._facts(nd, path)
            kind, gpu, ordinal, key, tdp = facts
            # what dyn_overlay._reading does for a node with no lost GPU
            if kind == "energy":
                v = round(float(v) + _energy(nd, t, self.rtype, self.units), 3)
            else:
                new = adjust(nd.model, kind, v, t, c, gpu, ordinal, key, tdp)
                if isinstance(v, int) and kind in _TEMPS and isinstance(new, float):
                    new = round(new)
                v = new
        else:
            kind = nd.flv.ix.sensor_facts(path, self.name, self.context, self.rtype, self.units, self.related)[0]
        health = "OK"
        if kind != "energy" and isinstance(v, (int, float)):
            ceiling = self.ceiling
            if ceiling is not None and v > ceiling:
                v = type(v)(ceiling) if isinstance(v, float) else int(ceiling)
            for lim, sev in self.checks:
                if v >= lim:
                    health = sev
                    break
        out: list[bytes] = []
        for part in self.parts:
            if part is _READING:
                out.append(orjson.dumps(v))
            elif part is _STATUS:
                assert self.status is not None
                out.append(self.status[health])
            elif part is _ETAG:
                out.append(orjson.dumps(nd.node.etag(path)))
            else:
                out.append(part)
        return b"".join(out)

    def _facts(self, nd: NodeDyn, path: str) -> tuple[str, int | None, int, int, float]:
        ix = nd.flv.ix
        kind, gpu, ordinal = ix.sensor_facts(path, self.name, self.context, self.rtype, self.units, self.related)
        tdp = ix.gpus[gpu].tdp if (kind.startswith("gpu") and gpu is not None and gpu < len(ix.gpus)) else 700.0
        return kind, gpu, ordinal, key_of(path) & 0xFFFF, tdp


def compile_sensor(doc: Doc | None) -> LiveSensor | None:
    """The compiled form of a Sensor document, or None when it cannot be cut into pieces."""
    if not isinstance(doc, dict):
        return None
    try:
        return LiveSensor(doc)
    except (ValueError, TypeError, orjson.JSONEncodeError):
        return None

"""IPMI-over-LAN fallback for nodes without Redfish (``ipmi://host[:port]`` BMC URLs): power, sensors, the SEL.

pyghmi's client is blocking (it runs its own select loop and retries); every call here runs it in a worker thread
under an asyncio timeout, so one dead BMC cannot stall a fleet-wide run. Errors are the same classified
:mod:`redfleet.redfish.errors` classes the Redfish client raises (``timeout``, ``auth``, ``unreachable``...).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from redfleet.model.telemetry import Reading, SensorReadings
from redfleet.redfish.errors import (
    ActionNotSupported,
    AuthenticationFailed,
    ConnectionFailed,
    RedfishError,
    RequestTimeout,
)

log = logging.getLogger("redfleet.ipmi")

_KIND = {
    "Temperature": "temperature",
    "Fan": "fan",
    "Voltage": "voltage",
    "Current": "current",
    "Power Supply": "power",
    "Power Unit": "power",
}
_UNITS = {"°C": "Cel", "C": "Cel", "RPM": "RPM", "V": "V", "W": "W", "A": "A", "%": "%"}
# chassis control values (IPMI spec 28.3)
_CHASSIS_CONTROL = {"off": 0, "on": 1, "cycle": 2, "reset": 3, "diag": 4, "graceful": 5}


def _classify(exc: BaseException, where: str) -> RedfishError:
    text = str(exc)
    low = text.lower()
    if isinstance(exc, RedfishError):
        return exc
    if "timeout" in low or "timed out" in low or "no response" in low:
        return RequestTimeout(f"IPMI: {text or 'no answer'}", bmc=where)
    if "password" in low or "unauthorized" in low or "authentication" in low or "user" in low:
        return AuthenticationFailed(f"IPMI login refused: {text}", bmc=where)
    return ConnectionFailed(f"IPMI: {text or type(exc).__name__}", bmc=where)


class IpmiClient:
    """One IPMI BMC. ``async with IpmiClient(host, user, password) as c: await c.power_status()``."""

    def __init__(self, host: str, username: str | None, password: str | None, *, port: int = 623,
                 timeout: float = 20.0, name: str | None = None) -> None:
        self.host = host
        self.port = port
        self.username = username or ""
        self.password = password or ""
        self.timeout = timeout
        self.url = f"ipmi://{host}" + (f":{port}" if port != 623 else "")
        self.base_url = self.url
        self.name = name or self.url
        self._cmd: Any = None

    @classmethod
    def from_url(cls, url: str, username: str | None, password: str | None, **kw: Any) -> IpmiClient:
        parts = urlsplit(url)
        if parts.scheme != "ipmi" or not parts.hostname:
            raise ValueError(f"not an ipmi:// URL: {url!r}")
        user = unquote(parts.username) if parts.username else username
        pw = unquote(parts.password) if parts.password else password
        return cls(parts.hostname, user, pw, port=parts.port or 623, **kw)

    async def _call(self, func: Any, *args: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.to_thread(func, *args)
        except TimeoutError as exc:
            raise RequestTimeout(f"IPMI: no answer within {self.timeout:g} s", bmc=self.url) from exc
        except RedfishError:
            raise
        except Exception as exc:
            raise _classify(exc, self.url) from exc

    async def __aenter__(self) -> IpmiClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        from pyghmi.ipmi import command

        def connect() -> Any:
            return command.Command(bmc=self.host, userid=self.username, password=self.password, port=self.port,
                                   keepalive=False)

        self._cmd = await self._call(connect)

    async def close(self) -> None:
        cmd, self._cmd = self._cmd, None
        if cmd is None:
            return
        sess = cmd.ipmi_session
        try:
            await self._call(sess.logout)
        except RedfishError as exc:
            log.debug("%s: IPMI logout: %s", self.name, exc)
        finally:
            # pyghmi keeps sessions in a process-wide table and would hand this logged-out one to the next
            # Command for the same BMC and user: drop it from there.
            from pyghmi.ipmi.private import session as _session

            table = _session.Session.initting_sessions
            for key, value in list(table.items()):
                if value is sess:
                    table.pop(key, None)

    async def power_status(self) -> str:
        res = await self._call(self._cmd.get_power)
        state = str((res or {}).get("powerstate", "unknown"))
        return {"on": "On", "off": "Off"}.get(state, state)

    async def power(self, action: str, *, actor: str | None = None, reason: str | None = None) -> str:
        """status | on | off | graceful | cycle | reset (the IPMI chassis control command)."""
        from redfleet.redfish.actions import audit

        action = action.lower()
        if action == "status":
            return await self.power_status()
        if action not in _CHASSIS_CONTROL:
            raise ActionNotSupported(f"IPMI has no power action {action!r}", bmc=self.url)
        record = {"who": actor or "", "what": f"power {action}", "bmc": self.url, "node": self.name,
                  "why": reason or "", "via": "ipmi"}
        try:
            await self._call(lambda: self._cmd.raw_command(netfn=0, command=2, data=[_CHASSIS_CONTROL[action]]))
        except RedfishError as exc:
            audit.warning("power %s by %s on %s via IPMI: failed: %s", action, actor, self.name, exc.message,
                          extra={"audit": {**record, "outcome": f"failed: {exc.message}"}})
            raise
        audit.info("power %s by %s on %s via IPMI: sent%s", action, actor, self.name,
                   f" — why: {reason}" if reason else "", extra={"audit": {**record, "outcome": "sent"}})
        return f"chassis-control {action}"

    async def sensors(self) -> SensorReadings:
        def read() -> list[Any]:
            return list(self._cmd.get_sensor_data())

        raw = await self._call(read)
        readings = []
        for s in raw:
            value = getattr(s, "value", None)
            units = getattr(s, "units", None)
            stype = getattr(s, "type", None) or ""
            health_val = getattr(s, "health", 0)
            health = "OK" if not health_val else ("Critical" if health_val >= 2 else "Warning")
            readings.append(Reading(
                id=str(getattr(s, "name", "")), name=getattr(s, "name", None), kind=_KIND.get(stype, "other"),
                value=float(value) if isinstance(value, (int, float)) else None,
                units=_UNITS.get(units or "", units or None), health=health,
                state="Absent" if getattr(s, "unavailable", 0) else "Enabled", context=stype or None,
                source=f"{self.url}#sdr/{getattr(s, 'name', '')}",
            ))
        return SensorReadings(bmc=self.url, via="ipmi", readings=readings,
                              collected_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"))

    async def sel(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` SEL records, newest first, in the shape
        :func:`redfleet.redfish.logs.read_sel` returns (``log`` is ``"ipmi-sel"``, ``uri`` ``ipmi://host#sel/<id>``).

        pyghmi's event-log reader walks the whole SEL (one Get SEL Entry per record; it has no way to start at the
        end) and decodes each record against the SDR; the walk runs under this client's timeout."""
        if limit < 1:
            return []

        def read() -> list[dict[str, Any]]:
            return list(self._cmd.get_event_log())

        raw = await self._call(read)
        # The SEL keeps records in the order they were added: the last ones are the newest.
        return [self._sel_entry(e) for e in reversed(raw[-limit:]) if isinstance(e, dict)]

    def _sel_entry(self, e: dict[str, Any]) -> dict[str, Any]:
        record = e.get("record_id")
        component = e.get("component") or None
        text = str(e.get("event") or "")
        if e.get("deassertion"):
            text = f"{text} (deasserted)" if text else "deasserted"
        message = f"{component}: {text}" if component and text else (text or str(component or ""))
        if not message and e.get("oemdata") is not None:
            message = "OEM record " + bytes(e["oemdata"]).hex()
        sensor_number = None
        cid = e.get("component_id")
        if isinstance(cid, str) and cid.count(".") == 2:  # generator.sensor.lun
            part = cid.split(".")[1]
            sensor_number = int(part) if part.isdigit() else None
        type_id = e.get("component_type_id")
        event_id = e.get("event_id")
        # IPMI has no message registry: sensor type and event type.offset identify the kind of record
        message_id = f"IPMI.{int(type_id):02X}.{event_id}" if isinstance(type_id, int) and event_id else None
        return {
            "id": str(record) if record is not None else None,
            "created": _sel_time(e),
            "severity": _SEL_SEVERITY.get(int(e.get("severity") or 0), "Critical"),
            "message": message,
            "message_id": message_id,
            "sensor_type": e.get("component_type") or None,
            "sensor_number": sensor_number,
            "entry_type": "SEL",
            "log": "ipmi-sel",
            "uri": f"{self.url}#sel/{record}",
        }


# pyghmi.constants.Health: Ok 0, Warning 1, Critical 2, Failed 4
_SEL_SEVERITY = {0: "OK", 1: "Warning", 2: "Critical"}


def _sel_time(e: dict[str, Any]) -> str | None:
    """ISO UTC. pyghmi gives ``timestamp`` in this host's local time, corrected for the BMC's clock offset; a
    record stamped before the BMC's clock was set carries only its raw ``timecode`` (seconds since BMC init)."""
    stamp = e.get("timestamp")
    if isinstance(stamp, str) and stamp:
        try:
            dt = datetime.fromisoformat(stamp)
        except ValueError:
            return stamp
        if dt.tzinfo is None:
            dt = dt.astimezone()  # naive local time -> aware
        return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return None

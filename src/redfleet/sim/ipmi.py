"""The ``legacy-ipmi`` flavor: simulated BMCs that speak only IPMI over LAN (RMCP+, ``ipmitool -I lanplus``).

Each simulated node is a :class:`pyghmi.ipmi.bmc.Bmc` subclass (pyghmi's BMC server does RMCP+ session set-up,
RAKP authentication, integrity and AES confidentiality, cipher suite 3); this module adds what a real legacy BMC
answers after log-in: chassis power status/on/off/cycle/reset/soft with a boot delay, an SDR repository whose
temperatures, fans, voltages and power move over time, a SEL that grows on power events and faults, FRU inventory,
LAN parameters, DCMI power reading.

pyghmi's own listener (``Bmc.listen``) routes packets through process-wide tables keyed by *client* address and
*listening port*, so two nodes on the same port (623 on every address, as real BMCs are) would collide as soon as
one client socket talks to both, and its sessions are never freed. :class:`IpmiFleet` therefore does the I/O
itself: one asyncio UDP endpoint per node address, sessions kept per node and keyed by client address, idle
sessions expired, a per-node session limit. pyghmi's packet and crypto code is used unchanged. It runs on whatever
event loop calls :meth:`IpmiFleet.start` (the simulator's), or on its own thread with :class:`IpmiFleetThread`.

Standalone: ``python -m redfleet.sim.ipmi --nodes 4 --base-address 127.12.0.1 --port 6230``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import functools
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pyghmi.ipmi.bmc as pyghmi_bmc
import pyghmi.ipmi.private.constants as ipmi_constants
import pyghmi.ipmi.private.serversession as serversession
import pyghmi.ipmi.private.session as ipmisession

from redfleet.sim import ipmi_records as rec

log = logging.getLogger(__name__)

FLAVOR = "legacy-ipmi"
DEFAULT_PORT = 623

# Completion codes (IPMI table 5-2).
CC_OK = 0x00
CC_INVALID_COMMAND = 0xC1
CC_INVALID_RESERVATION = 0xC5
CC_REQ_DATA_LEN = 0xC7
CC_OUT_OF_RANGE = 0xC9
CC_NOT_PRESENT = 0xCB
CC_INVALID_FIELD = 0xCC
CC_NOT_IN_STATE = 0xD5
CC_PARAM_NOT_SUPPORTED = 0x80

NETFN_CHASSIS = 0x00
NETFN_SENSOR = 0x04
NETFN_APP = 0x06
NETFN_STORAGE = 0x0A
NETFN_TRANSPORT = 0x0C
NETFN_GROUP = 0x2C

SEL_CAPACITY = 512  # entries kept per node; the oldest go first when full (overflow flag set)
IPMI_EPOCH_OFFSET = 0  # SEL timestamps are Unix seconds

OS_DOWN = "down"
OS_BOOTING = "booting"
OS_UP = "up"
OS_HUNG = "hung"


# --------------------------------------------------------------------------------------------------- sensor table
TEMP = rec.SENSOR_TEMPERATURE
SENSORS: tuple[rec.SensorDef, ...] = (
    rec.SensorDef(0x01, "Inlet Temp", TEMP, rec.UNIT_DEGREES_C, entity=rec.ENTITY_AIR_INLET,
                  thresholds=(None, 3.0, None, 38.0, 42.0, 47.0), nominal=23.0),
    rec.SensorDef(0x02, "Exhaust Temp", TEMP, rec.UNIT_DEGREES_C, entity=rec.ENTITY_SYSTEM_BOARD,
                  thresholds=(None, 3.0, None, 70.0, 75.0, 80.0), nominal=35.0),
    rec.SensorDef(0x03, "CPU1 Temp", TEMP, rec.UNIT_DEGREES_C, entity=rec.ENTITY_PROCESSOR, instance=1,
                  thresholds=(None, 5.0, None, 85.0, 90.0, 95.0), nominal=45.0),
    rec.SensorDef(0x04, "CPU2 Temp", TEMP, rec.UNIT_DEGREES_C, entity=rec.ENTITY_PROCESSOR, instance=2,
                  thresholds=(None, 5.0, None, 85.0, 90.0, 95.0), nominal=45.0),
    *(
        rec.SensorDef(0x10 + i, f"FAN{i + 1}", rec.SENSOR_FAN, rec.UNIT_RPM, entity=rec.ENTITY_FAN, instance=i + 1,
                      m=100, thresholds=(700.0, 500.0, 300.0, None, None, None), nominal=5000.0)
        for i in range(4)
    ),
    rec.SensorDef(0x20, "12V", rec.SENSOR_VOLTAGE, rec.UNIT_VOLTS, m=6, r_exp=-2,
                  thresholds=(11.4, 10.8, 10.2, 12.6, 13.2, 13.8), nominal=12.0),
    rec.SensorDef(0x21, "VBAT", rec.SENSOR_VOLTAGE, rec.UNIT_VOLTS, m=2, r_exp=-2,
                  thresholds=(2.7, 2.5, None, None, None, None), nominal=3.0),
    rec.SensorDef(0x30, "Pwr Consumption", rec.SENSOR_CURRENT, rec.UNIT_WATTS, m=8,
                  thresholds=(None, None, None, 1200.0, 1520.0, None), nominal=300.0),
    rec.SensorDef(0x40, "PS1 Status", rec.SENSOR_POWER_SUPPLY, event_type=rec.EVENT_TYPE_SENSOR_SPECIFIC,
                  entity=rec.ENTITY_POWER_SUPPLY, instance=1, discrete_mask=0x000B),
    rec.SensorDef(0x41, "PS2 Status", rec.SENSOR_POWER_SUPPLY, event_type=rec.EVENT_TYPE_SENSOR_SPECIFIC,
                  entity=rec.ENTITY_POWER_SUPPLY, instance=2, discrete_mask=0x000B),
)
SENSOR_BY_NUMBER = {s.number: s for s in SENSORS}
SENSOR_BY_NAME = {s.name: s for s in SENSORS}
# Sensor numbers used only as SEL event sources (no SDR reading): power unit, boot, OS boot, event logging.
SN_POWER_UNIT = 0x50
SN_SYSTEM_BOOT = 0x51
SN_OS_BOOT = 0x52
SN_EVENT_LOG = 0x53
SN_SYSTEM_EVENT = 0x54


def _build_sdr(sensors: Iterable[rec.SensorDef]) -> tuple[bytes, ...]:
    records = [rec.mc_locator_record(1, "BMC")]
    for sensor in sensors:
        records.append(rec.full_sensor_record(len(records) + 1, sensor))
    return tuple(records)


SDR_RECORDS = _build_sdr(SENSORS)


# --------------------------------------------------------------------------------------------------- helpers
def _mix(*values: int) -> int:
    """A small deterministic 64-bit hash (splitmix64 steps), for seeded per-node noise without per-node state."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 29
    return x


def _unit(*values: int) -> float:
    """Deterministic pseudo-random number in [0, 1)."""
    return (_mix(*values) >> 11) / float(1 << 53)


def _smooth_noise(seed: int, key: int, t: float, period: float) -> float:
    """Value noise in [-1, 1], continuous in ``t`` (cosine interpolation between seeded points)."""
    pos = t / period
    i = math.floor(pos)
    frac = pos - i
    a = _unit(seed, key, i) * 2 - 1
    b = _unit(seed, key, i + 1) * 2 - 1
    w = (1 - math.cos(frac * math.pi)) / 2
    return a + (b - a) * w


class SimClock:
    """Simulated time: ``now()`` is seconds since the fleet started, ``time_scale`` times faster than real time
    (``SimConfig.time_scale`` divides every delay). ``epoch(t)`` is the real Unix time at which simulated instant
    ``t`` happened (what SEL records carry; the Redfish side stamps log entries with real UTC too)."""

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        self._mono = time.monotonic()
        self._wall = time.time()

    def now(self) -> float:
        return (time.monotonic() - self._mono) * self.time_scale

    def epoch(self, t: float | None = None) -> int:
        if t is None:
            return int(time.time())
        return int(self._wall + t / self.time_scale)

    def scaled(self, seconds: float) -> float:
        """Real seconds to wait for ``seconds`` of simulated time."""
        return seconds / self.time_scale


@dataclass
class IpmiNodeSettings:
    """What every legacy-ipmi node of one fleet shares (kept once, referenced by each node)."""

    user: str = "root"
    password: str = "calvin"
    seed: int = 1
    boot_delay: float = 90.0  # simulated seconds from power-on to "OS boot completed"
    shutdown_delay: float = 20.0  # ACPI soft-off: OS shutdown time
    cycle_off_time: float = 2.0  # power cycle: seconds off before power comes back
    bmc_reset_time: float = 30.0  # mc reset cold/warm: BMC silent for this long
    cipher_suites: tuple[int, ...] = (3, 17)  # suites offered; 3 is what pyghmi's own server offers
    session_limit: int = 16  # concurrent RMCP+ sessions per node (real BMCs allow 4-16)
    session_idle_timeout: float = 60.0  # real seconds; an idle session is dropped after this
    manufacturer_id: int = 10876  # IANA enterprise number (Supermicro): legacy nodes are X10/X11-era boards
    product_id: int = 0x0946
    manufacturer: str = "Supermicro"
    product: str = "SYS-1028GR-TR"
    board: str = "X10DRG-HT"
    firmware: tuple[int, int] = (3, 88)


# --------------------------------------------------------------------------------------------------- sessions
class _Transport:
    """What pyghmi's ``_io_sendto`` needs of a socket, on top of an asyncio datagram transport."""

    __slots__ = ("transport",)

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self.transport = transport

    def setblocking(self, flag: int) -> None:  # pyghmi flips the real socket; ours belongs to asyncio
        pass

    def sendto(self, data: bytes | bytearray, addr: Any) -> None:
        if not self.transport.is_closing():
            self.transport.sendto(bytes(data), addr)

    def getsockname(self) -> Any:
        return self.transport.get_extra_info("sockname")


# Cipher suites (IPMI table 22-20): id -> (authentication, integrity, confidentiality) algorithm numbers.
CIPHER_SUITES: dict[int, tuple[int, int, int]] = {3: (1, 1, 1), 17: (3, 4, 1)}
_AUTH_HASH = {1: hashlib.sha1, 3: hashlib.sha256}
_ICV_LEN = {1: 12, 3: 16}  # RAKP4 integrity check value / session integrity: HMAC-SHA1-96, HMAC-SHA256-128


class _NodeSession(serversession.ServerSession):
    """pyghmi's server session, kept in the node's own table instead of pyghmi's process-wide one, with cipher
    suite 17 (HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128) beside pyghmi's suite 3, and RMCP+ error answers where
    pyghmi stays silent (unknown user, no matching cipher suite), as real BMCs answer."""

    last_seen: float = 0.0
    failed = False
    authalg = 1
    kg: Any

    def __init__(self, authdata: Any, kg: Any, clientaddr: Any, netsocket: Any, request: Any, bmcuuid: Any,
                 bmc: LegacyIpmiNode) -> None:
        self.last_seen = time.monotonic()
        super().__init__(authdata, kg, clientaddr, netsocket, request, bmcuuid, bmc)
        # ServerSession registers itself in pyghmi's global routing table; our router does not use it, and a
        # pyghmi *client* in the same process must not see server sessions there.
        handlers = ipmisession.Session.bmc_handlers.get(clientaddr)
        if handlers is not None and handlers.get(bmc.port) is self:
            del handlers[bmc.port]
            if not handlers:
                del ipmisession.Session.bmc_handlers[clientaddr]

    def create_open_session_response(self, request: Any) -> bytearray:
        clienttag = request[0]
        self.clientsessionid = bytearray(request[4:8])
        self.managedsessionid = bytearray(os.urandom(4))
        self.privlevel = 4
        proposal = (request[12] & 0x3F, request[20] & 0x3F, request[28] & 0x3F) if len(request) >= 29 else None
        suites = [CIPHER_SUITES[c] for c in self.bmc.settings.cipher_suites if c in CIPHER_SUITES]
        if proposal not in suites:
            self.failed = True
            status = 0x11  # no cipher suite match with proposed security algorithms
            return bytearray([clienttag, status, 0, 0]) + self.clientsessionid
        self.authalg = proposal[0]
        auth, integrity, conf = proposal
        return (bytearray([clienttag, 0, self.privlevel, 0]) + self.clientsessionid + self.managedsessionid
                + bytearray([0, 0, 0, 8, auth, 0, 0, 0, 1, 0, 0, 8, integrity, 0, 0, 0, 2, 0, 0, 8, conf, 0, 0, 0]))

    def _got_rmcp_openrequest(self, data: Any) -> None:
        self.failed = False
        super()._got_rmcp_openrequest(data)

    def _got_rakp1(self, data: Any) -> None:
        if self.failed or len(data) < 28:
            return
        clienttag = data[0]
        self.Rm = data[8:24]
        self.rolem = data[24]
        self.maxpriv = self.rolem & 0b111
        namelen = data[27]
        name = bytes(data[28:28 + namelen])
        password = self.authdata.get(name.decode("utf-8", "replace")) if namelen else None
        if password is None:
            # pyghmi stays silent (the client times out); a real BMC answers "unauthorized name" at once
            self.send_payload(bytearray([clienttag, 0x0D, 0, 0]) + self.clientsessionid,
                              ipmi_constants.payload_types["rakp2"], retry=False)
            return
        self.username = name
        self.uuiddata = self.uuid.bytes
        self.Rc = os.urandom(16)
        self.kuid = password.encode("utf-8")
        if self.kg is None:
            self.kg = self.kuid
        digest = _AUTH_HASH[self.authalg]
        hmacdata = (self.clientsessionid + self.managedsessionid + self.Rm + self.Rc + self.uuiddata
                    + bytearray([self.rolem, len(self.username)]) + self.username)
        authcode = hmac.new(self.kuid, bytes(hmacdata), digest).digest()
        message = bytearray([clienttag, 0, 0, 0]) + self.clientsessionid + self.Rc + self.uuiddata + authcode
        self.send_payload(message, ipmi_constants.payload_types["rakp2"], retry=False)

    def _got_rakp3(self, data: Any) -> None:
        if self.failed or not hasattr(self, "Rc"):
            return
        digest = _AUTH_HASH[self.authalg]
        rolename = struct.pack("2B", self.rolem, len(self.username)) + self.username
        expected = hmac.new(self.kuid, bytes(self.Rc + self.clientsessionid) + rolename, digest).digest()
        clienttag = data[0]
        if data[1] != 0:
            return  # the client rejected our RAKP2
        if bytes(data[8:]) != expected:
            self.send_payload(bytearray([clienttag, 0x0F, 0, 0]) + self.clientsessionid,
                              ipmi_constants.payload_types["rakp4"], retry=False)
            return
        self.sik = hmac.new(self.kg, bytes(self.Rm + self.Rc) + rolename, digest).digest()
        self.k1 = hmac.new(self.sik, b"\x01" * 20, digest).digest()
        self.k2 = hmac.new(self.sik, b"\x02" * 20, digest).digest()
        self.aeskey = self.k2[0:16]
        self.localsid = struct.unpack("<I", bytes(self.managedsessionid))[0]
        self.ipmicallback = self.handle_client_request
        self._send_rakp4(clienttag, 0)

    def _send_rakp4(self, tagvalue: int, statuscode: int) -> None:
        digest = _AUTH_HASH[self.authalg]
        icvlen = _ICV_LEN[self.authalg]
        payload = bytearray([tagvalue, statuscode, 0, 0]) + self.clientsessionid
        icv = hmac.new(self.sik, bytes(self.Rm + self.managedsessionid + self.uuiddata), digest).digest()
        payload += icv[:icvlen]
        self.send_payload(payload, ipmi_constants.payload_types["rakp4"], retry=False)
        self.confalgo = "aes"
        self.integrityalgo = "sha256" if self.authalg == 3 else "sha1"
        self.currhashlib = digest
        self.currhashlen = icvlen
        self.sequencenumber = 1
        self.sessionid = struct.unpack("<I", struct.pack("4B", *self.clientsessionid))[0]

    def handle_client_request(self, request: dict[str, Any]) -> None:
        if request["netfn"] == 6 and request["command"] == 0x3B and not hasattr(self, "clientpriv"):
            self.clientpriv = self.maxpriv or 4
        super().handle_client_request(request)

    def close_server_session(self) -> None:
        node = self.bmc
        if isinstance(node, LegacyIpmiNode) and node.sessions is not None:
            if node.sessions.get(self.sockaddr) is self:
                del node.sessions[self.sockaddr]
                if not node.sessions:
                    node.sessions = None


# --------------------------------------------------------------------------------------------------- the node
class LegacyIpmiNode(pyghmi_bmc.Bmc):
    """One simulated legacy BMC: a pyghmi Bmc with power state machine, sensors, SEL, FRU.

    State is evaluated lazily from timestamps (no timers per node): a pending transition (soft-off, the "on" half
    of a power cycle) and the OS boot completion are applied, with their own timestamps, when anything reads the
    node. Sensor readings are functions of (seed, node, sensor, time, power history), so they cost no memory.
    """

    # pyghmi IpmiServer attributes, shared instead of per instance
    revision = 0x01
    deviceid = 0x20
    ipmiversion = 0x02
    additionaldevices = 0x9F
    kg = None
    timeout = 60
    authcap = struct.pack("BBBBBBBBB", 0, 1, 0b10000000, 0b00000100, 0b00000010, 0, 0, 0, 0)

    def __init__(self, fleet: IpmiFleet, index: int, name: str, address: str, port: int) -> None:
        # IpmiServer.__init__ is not called: it binds a socket and starts pyghmi's I/O thread.
        self.fleet = fleet
        self.settings = fleet.settings
        self.clock = fleet.clock
        self.authdata = fleet.authdata
        self.index = index
        self.name = name
        self.address = address
        self.port = port
        self.serversocket: _Transport | None = None
        self.sessions: dict[Any, _NodeSession] | None = None
        seed = self.settings.seed
        # power history: on since long before the simulation started, OS up
        self.powered = True
        self.t_power = -86400.0 * (1 + 30 * _unit(seed, index, 11))
        self._os = OS_UP
        self.boot_due: float | None = None
        self.pending: tuple[str, float] | None = None
        self.last_power_event = 0x10  # last power-on via IPMI command
        self.restart_cause = 0x00
        self.restore_policy = 0x01  # restore previous
        self.boot_flags = bytes(5)
        self.identify_until = 0.0
        self.down_until = 0.0
        self.down = False
        self.faults: dict[str, Any] | None = None
        self.sel = bytearray()
        self.sel_next_id = 1
        self.sel_added = 0
        self.sel_erased = 0
        self.sel_overflow = False
        self.reservation = 0
        self.on_power: Callable[[LegacyIpmiNode, str, str, str | None], None] | None = None
        self._log_event(self.clock.now(), rec.SENSOR_EVENT_LOGGING, SN_EVENT_LOG, 0x02)  # log area cleared

    # ---------------------------------------------------------------- identity
    @property
    def uuid(self) -> UUID:
        return UUID(int=_mix(self.settings.seed, self.index, 1) << 64 | _mix(self.settings.seed, self.index, 2),
                         version=4)

    @property
    def serial(self) -> str:
        return f"S{_mix(self.settings.seed, self.index, 3) % 10**9:09d}"

    @property
    def mac(self) -> bytes:
        v = _mix(self.settings.seed, self.index, 4)
        return bytes([0xAC, 0x1F, 0x6B, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF])

    def get_system_guid(self) -> UUID:
        return self.uuid

    def _cipher_suite_records(self, index: int) -> bytes:
        records = bytearray()
        for suite in self.settings.cipher_suites:
            auth, integrity, conf = CIPHER_SUITES[suite]
            records += bytes([0xC0, suite, auth, 0x40 | integrity, 0x80 | conf])
        index &= 0x3F
        return bytes(records[index * 16:index * 16 + 16])

    def _get_cipher_suites(self, data: bytes) -> bytes:
        return b"\x01" + self._cipher_suite_records(data[2] if len(data) > 2 else 0)

    def send_cipher_suites(self, myaddr: int, mylun: int, clientaddr: int, clientlun: int, clientseq: int,
                           data: Any, sockaddr: Any) -> None:
        """Get Channel Cipher Suites (sessionless): list the suites this node offers (pyghmi lists only 3)."""
        chunk = self._cipher_suite_records(data[22] if len(data) > 22 else 0)
        body = bytearray([myaddr, mylun | (clientseq << 2), 0x54, 0x00, 0x01]) + chunk
        body.append(ipmisession._checksum(*body))
        head = bytearray([clientaddr, clientlun | (7 << 2)])
        head.append(ipmisession._checksum(*head))
        message = head + body
        packet = bytearray(b"\x06\x00\xff\x07\x06\x00") + bytes(8) + struct.pack("<H", len(message)) + message
        ipmisession._io_sendto(self.serversocket, packet, sockaddr)

    # ---------------------------------------------------------------- state machine
    @property
    def power_state(self) -> str:
        """``On``/``Off`` (Redfish spelling, as SimNode.power_state)."""
        self.advance()
        return "On" if self.powered else "Off"

    @property
    def os_state(self) -> str:
        """The host OS: ``up``, ``booting``, ``down`` (host off) or ``hung`` (fault)."""
        self.advance()
        return self._os

    def advance(self, now: float | None = None) -> None:
        """Apply every transition that fell due up to ``now`` (simulated seconds), in time order."""
        if now is None:
            now = self.clock.now()
        while True:
            due_pending = self.pending[1] if self.pending else math.inf
            due_boot = self.boot_due if self.boot_due is not None else math.inf
            if min(due_pending, due_boot) > now:
                return
            if due_pending <= due_boot:
                assert self.pending is not None
                kind, when = self.pending
                self.pending = None
                if kind == "off":
                    self._set_power(False, when, None)
                    self._log_event(when, rec.SENSOR_POWER_UNIT, SN_POWER_UNIT, 0x00)
                elif kind == "on":
                    self._power_up(when, 0x00, reset_type=None)
            else:
                assert self.boot_due is not None
                when = self.boot_due
                self.boot_due = None
                if self._os == OS_BOOTING:
                    self._os = OS_UP
                    self._log_event(when, rec.SENSOR_OS_BOOT, SN_OS_BOOT, 0x01)  # C: boot completed

    def _set_power(self, on: bool, when: float, reset_type: str | None) -> None:
        old = "On" if self.powered else "Off"
        self.powered = on
        self.t_power = when
        if not on:
            self._os = OS_DOWN
            self.boot_due = None
        new = "On" if on else "Off"
        if old != new:
            self._notify(old, new, reset_type)

    def _notify(self, old: str, new: str, reset_type: str | None) -> None:
        callback = self.on_power or self.fleet.on_power
        if callback is not None:
            try:
                callback(self, old, new, reset_type)
            except Exception:  # a listener must not break the BMC
                log.exception("on_power listener failed for %s", self.name)

    def _power_up(self, when: float, boot_offset: int, reset_type: str | None) -> None:
        self._set_power(True, when, reset_type)
        self._start_boot(when, boot_offset)

    def _start_boot(self, when: float, boot_offset: int) -> None:
        self._os = OS_BOOTING
        self.boot_due = when + self.settings.boot_delay
        self._log_event(when, rec.SENSOR_SYSTEM_BOOT, SN_SYSTEM_BOOT, boot_offset)
        if self.boot_flags[0] & 0x80 and not self.boot_flags[0] & 0x40:
            self.boot_flags = bytes(5)  # a one-time boot override is used up by this boot

    def power_on(self) -> int:
        now = self.clock.now()
        self.advance(now)
        self.last_power_event = 0x10
        self.restart_cause = 0x01
        if self.powered:
            self.pending = None  # a power-on cancels a pending soft-off
            return CC_OK
        self.pending = None
        self._power_up(now, 0x00, "On")
        return CC_OK

    def power_off(self) -> int:
        now = self.clock.now()
        self.advance(now)
        self.pending = None
        if self.powered:
            self._set_power(False, now, "ForceOff")
            self._log_event(now, rec.SENSOR_POWER_UNIT, SN_POWER_UNIT, 0x00)  # power off / down
        return CC_OK

    def power_cycle(self) -> int:
        now = self.clock.now()
        self.advance(now)
        if not self.powered:
            return CC_NOT_IN_STATE  # IPMI 28.3: cycle is not accepted in S4/S5
        self.restart_cause = 0x01
        self._set_power(False, now, "PowerCycle")
        self._log_event(now, rec.SENSOR_POWER_UNIT, SN_POWER_UNIT, 0x01)  # power cycle
        self.pending = ("on", now + self.settings.cycle_off_time)
        return CC_OK

    def power_reset(self) -> int:
        now = self.clock.now()
        self.advance(now)
        if not self.powered:
            return CC_NOT_IN_STATE
        self.restart_cause = 0x01
        self.pending = None
        self._start_boot(now, 0x01)  # initiated by hard reset
        self._notify("On", "On", "ForceRestart")
        return CC_OK

    def power_shutdown(self) -> int:
        now = self.clock.now()
        self.advance(now)
        if self.powered and self._os == OS_UP and self.pending is None:
            self.pending = ("off", now + self.settings.shutdown_delay)
        return CC_OK

    def pulse_diag(self) -> int:
        now = self.clock.now()
        self.advance(now)
        if not self.powered:
            return CC_NOT_IN_STATE
        # NMI: the OS crash-dumps and reboots; SEL shows the diagnostic interrupt
        self._log_event(now, 0x13, 0x55, 0x00)  # critical interrupt: front panel NMI
        if self._os == OS_UP or self._os == OS_HUNG:
            self._start_boot(now + 10.0, 0x07)
        return CC_OK

    def get_power_state(self) -> str:
        self.advance()
        return "on" if self.powered else "off"

    def cold_reset(self) -> int:
        """mc reset: the BMC answers, then goes silent for ``bmc_reset_time`` and forgets its sessions."""
        self.down_until = time.monotonic() + self.clock.scaled(self.settings.bmc_reset_time)
        return CC_OK

    def is_active(self) -> bool:
        return self.powered

    # ---------------------------------------------------------------- Redfish-like API (SimNode subset)
    flavor_name = FLAVOR
    host_address: str | None = None
    rack: str | None = None
    position: int | None = None

    def now(self) -> float:
        return self.clock.now()

    def scaled(self, seconds: float) -> float:
        return self.clock.scaled(seconds)

    def reset(self, reset_type: str) -> int:
        """ComputerSystem.Reset vocabulary mapped onto chassis control (for the control API and scenarios)."""
        actions: dict[str, Callable[[], int]] = {
            "On": self.power_on, "ForceOn": self.power_on, "ForceOff": self.power_off,
            "GracefulShutdown": self.power_shutdown, "PowerCycle": self.power_cycle,
            "ForceRestart": self.power_reset, "GracefulRestart": self.power_reset, "Nmi": self.pulse_diag,
        }
        action = actions.get(reset_type)
        if action is None:
            raise ValueError(f"unsupported reset type {reset_type!r}")
        return action()

    # ---------------------------------------------------------------- faults (for the fault injector)
    def inject(self, kind: str, **params: Any) -> None:
        """Apply a fault as legacy hardware shows it: ``fan`` (``fan=N``, 1-based, or ``target=N`` 0-based as the
        fault engine counts), ``psu`` (``psu=N`` / ``target=N``), ``inlet-overtemp``, ``os-hang``, ``bmc-down``.
        SEL records the assertion. Other kinds raise ValueError (a legacy node has no GPU, no Redfish)."""
        if params.get("target") is not None:
            params.setdefault(kind, int(params["target"]) + 1)
        now = self.clock.now()
        self.advance(now)
        faults = self.faults if self.faults is not None else {}
        if kind == "fan":
            fan = int(params.get("fan", 1))
            faults.setdefault("fan", set()).add(fan)
            self._log_event(now, rec.SENSOR_FAN, 0x10 + fan - 1, 0x02, event_type=0x01)  # lower critical going low
        elif kind == "psu":
            psu = int(params.get("psu", 1))
            faults.setdefault("psu", set()).add(psu)
            self._log_event(now, rec.SENSOR_POWER_SUPPLY, 0x40 + psu - 1, 0x01, event_type=0x6F)  # failure
        elif kind == "inlet-overtemp":
            faults["inlet"] = float(params.get("delta", 22.0))
            self._log_event(now, TEMP, 0x01, 0x09, event_type=0x01)  # upper critical going high
        elif kind == "os-hang":
            if self.powered:
                self._os = OS_HUNG
                self.boot_due = None
        elif kind == "bmc-down":
            self.down = True
            self.sessions = None
        else:
            raise ValueError(f"legacy-ipmi nodes do not simulate fault {kind!r}")
        self.faults = faults or None

    def clear(self) -> None:
        """Remove every fault (SEL records deassertions for sensor faults)."""
        now = self.clock.now()
        faults = self.faults or {}
        for fan in faults.get("fan", ()):
            self._log_event(now, rec.SENSOR_FAN, 0x10 + fan - 1, 0x02, event_type=0x01, deassert=True)
        for psu in faults.get("psu", ()):
            self._log_event(now, rec.SENSOR_POWER_SUPPLY, 0x40 + psu - 1, 0x01, event_type=0x6F, deassert=True)
        self.faults = None
        self.down = False
        if self._os == OS_HUNG:
            self._os = OS_UP

    # ---------------------------------------------------------------- sensors
    def _load(self, t: float) -> float:
        seed, idx = self.settings.seed, self.index
        base = 0.35 + 0.2 * _unit(seed, idx, 21)
        wave = 0.2 * math.sin(2 * math.pi * t / 900.0 + 6.283 * _unit(seed, idx, 22))
        noise = 0.12 * _smooth_noise(seed, idx * 64 + 1, t, 37.0)
        return min(0.98, max(0.02, base + wave + noise))

    def reading(self, sensor: rec.SensorDef, t: float | None = None) -> float | None:
        """Engineering value of ``sensor`` now (None: no reading, e.g. CPU temperature with the host off)."""
        if t is None:
            t = self.clock.now()
        self.advance(t)
        seed, idx = self.settings.seed, self.index
        faults = self.faults or {}
        dt = max(0.0, t - self.t_power)
        heat = (1 - math.exp(-dt / 120.0)) if self.powered else math.exp(-dt / 300.0)  # warms up / cools down
        if self.powered and self._os == OS_UP:
            load = self._load(t)
        elif self.powered:
            load = 0.18
        else:
            load = 0.0
        jitter = _smooth_noise(seed, idx * 64 + sensor.number, t, 11.0)
        inlet = 21.0 + 4.0 * _unit(seed, idx, 31) + 0.6 * math.sin(2 * math.pi * t / 3600.0) + 0.2 * jitter
        inlet += float(faults.get("inlet", 0.0))
        number = sensor.number
        if number == 0x01:
            return inlet
        if number == 0x02:
            return inlet + 2.0 + heat * (4.0 + 14.0 * load) + 0.3 * jitter
        if number in (0x03, 0x04):
            if not self.powered:
                return None
            offset = 2.0 if number == 0x04 else 0.0
            return inlet + 3.0 + heat * (12.0 + 42.0 * load) + offset + 0.8 * jitter
        if 0x10 <= number <= 0x13:
            if not self.powered:
                return None
            if number - 0x10 + 1 in faults.get("fan", ()):
                return 0.0
            # fans follow temperature; a failed neighbour makes the others spin up
            spinup = 1500.0 if faults.get("fan") else 0.0
            return 3600.0 + heat * 7000.0 * load + spinup + 60.0 * jitter + 90.0 * (number - 0x10)
        if number == 0x20:
            return (12.02 + 0.04 * jitter) if self.powered else None
        if number == 0x21:
            return 3.02 - 0.1 * _unit(seed, idx, 33)
        if number == 0x30:
            if not self.powered:
                return 16.0 + 2.0 * _unit(seed, idx, 34)
            return 140.0 + 60.0 * heat + 320.0 * load + 6.0 * jitter
        return None

    def _threshold_status(self, sensor: rec.SensorDef, raw: int) -> int:
        status = 0
        for bit, value in enumerate(sensor.thresholds):
            if value is None:
                continue
            limit = sensor.to_raw(value)
            if (bit < 3 and raw <= limit) or (bit >= 3 and raw >= limit):
                status |= 1 << bit
        return status

    def sensor_reading(self, number: int) -> bytes | None:
        """Get Sensor Reading response data (without completion code); None for an unknown sensor."""
        sensor = SENSOR_BY_NUMBER.get(number)
        if sensor is None:
            return None
        if sensor.event_type != rec.EVENT_TYPE_THRESHOLD:
            psu = number - 0x40 + 1
            state = 0x01  # presence detected
            if psu in (self.faults or {}).get("psu", ()):
                state |= 0x02  # power supply failure detected
            return bytes([0x00, 0xC0, state, 0x80])
        value = self.reading(sensor)
        if value is None:
            return bytes([0x00, 0xE0, 0x00])  # events + scanning enabled, reading unavailable
        raw = sensor.to_raw(value)
        return bytes([raw, 0xC0, self._threshold_status(sensor, raw)])

    # ---------------------------------------------------------------- SEL
    def _log_event(self, t: float, sensor_type: int, sensor_number: int, offset: int, event_type: int = 0x6F,
                   deassert: bool = False, data2: int = 0xFF, data3: int = 0xFF) -> int:
        record_id = self.sel_next_id
        self.sel_next_id = record_id + 1 if record_id < 0xFFFD else 1
        stamp = self.clock.epoch(t)
        self.sel += rec.sel_record(record_id, stamp, sensor_type, sensor_number, event_type, offset, data2, data3,
                                   deassert)
        if len(self.sel) > SEL_CAPACITY * 16:
            del self.sel[:16]
            self.sel_overflow = True
        self.sel_added = stamp
        return record_id

    def sel_entries(self) -> list[bytes]:
        self.advance()
        return [bytes(self.sel[i:i + 16]) for i in range(0, len(self.sel), 16)]

    def _sel_index(self, record_id: int) -> int | None:
        count = len(self.sel) // 16
        if count == 0:
            return None
        if record_id == 0x0000:
            return 0
        if record_id == 0xFFFF:
            return count - 1
        for i in range(count):
            if self.sel[i * 16] | (self.sel[i * 16 + 1] << 8) == record_id:
                return i
        return None

    # ---------------------------------------------------------------- FRU
    def fru(self) -> bytes:
        s = self.settings
        return rec.fru_image(manufacturer=s.manufacturer, product=s.product, board_product=s.board,
                             serial=self.serial, board_serial=f"B{self.serial[1:]}", part_number=s.product,
                             chassis_serial=f"C{self.serial[1:]}", version="1.0",
                             mfg_minutes=int(12_000_000 + _unit(s.seed, self.index, 5) * 500_000))

    # ---------------------------------------------------------------- request dispatch
    def handle_raw_request(self, request: dict[str, Any], session: Any) -> None:
        netfn = request["netfn"]
        command = request["command"]
        data = bytes(request["data"])
        handler = _HANDLERS.get((netfn, command))
        try:
            if handler is None:
                if netfn == NETFN_APP and command in (0x48, 0x49):
                    super().handle_raw_request(request, session)
                    return
                session.send_ipmi_response(code=CC_INVALID_COMMAND)
                return
            result = handler(self, data)
        except (IndexError, struct.error):
            session.send_ipmi_response(code=CC_REQ_DATA_LEN)
            return
        except Exception:
            log.exception("legacy-ipmi %s: netfn %#x cmd %#x failed", self.name, netfn, command)
            session.send_ipmi_response(code=0xFF)
            return
        if isinstance(result, int):
            session.send_ipmi_response(code=result)
        else:
            session.send_ipmi_response(data=result)

    # APP (netfn 06h)
    def _get_device_id(self, data: bytes) -> bytes | int:
        s = self.settings
        major, minor = s.firmware
        minor_bcd = ((minor // 10) << 4) | (minor % 10)
        return (bytes([self.deviceid, 0x80 | self.revision, major & 0x7F, minor_bcd, self.ipmiversion,
                       self.additionaldevices])
                + struct.pack("<I", s.manufacturer_id)[:3] + struct.pack("<H", s.product_id) + bytes(4))

    def _cold_reset(self, data: bytes) -> int:
        return self.cold_reset()

    def _self_test(self, data: bytes) -> bytes:
        return b"\x55\x00"

    def _acpi_power_state(self, data: bytes) -> bytes:
        return bytes([0x00 if self.get_power_state() == "on" else 0x05, 0x00])

    def _guid(self, data: bytes) -> bytes:
        return self.uuid.bytes_le

    def _global_enables(self, data: bytes) -> bytes:
        return b"\x0d"

    def _channel_info(self, data: bytes) -> bytes | int:
        channel = data[0] & 0x0F
        if channel == 0x0E:
            channel = 1
        if channel != 1:
            return CC_INVALID_FIELD
        active = len(self.sessions or ())
        return bytes([channel, 0x04, 0x01, 0x80 | min(active, 0x3F), 0xF2, 0x1B, 0x00, 0x00, 0x00])

    def _channel_access(self, data: bytes) -> bytes:
        return bytes([0x22, 0x04])  # always available, user-level auth; privilege limit administrator

    # CHASSIS (netfn 00h)
    def _chassis_capabilities(self, data: bytes) -> bytes:
        return bytes([0x00, 0x20, 0x20, 0x20, 0x20])

    def _chassis_status(self, data: bytes) -> bytes:
        now = self.clock.now()
        self.advance(now)
        state = (0x01 if self.powered else 0x00) | (self.restore_policy << 5)
        faults = self.faults or {}
        if faults.get("psu"):
            state |= 0x08  # main power fault (one PSU of two keeps the host running)
        misc = 0x40 | (0x10 if self.identify_until > now else 0x00)
        if faults.get("fan"):
            misc |= 0x08  # cooling/fan fault detected
        return bytes([state, self.last_power_event, misc, 0x00])

    def _chassis_control(self, data: bytes) -> int:
        directive = data[0] & 0x0F
        actions: dict[int, Callable[[], int]] = {
            0: self.power_off, 1: self.power_on, 2: self.power_cycle, 3: self.power_reset, 4: self.pulse_diag,
            5: self.power_shutdown,
        }
        action = actions.get(directive)
        if action is None:
            return CC_INVALID_FIELD
        return action()

    def _chassis_identify(self, data: bytes) -> int:
        interval = data[0] if data else 15
        if len(data) > 1 and data[1] & 0x01:
            interval = 10**6
        self.identify_until = self.clock.now() + interval
        return CC_OK

    def _restore_policy(self, data: bytes) -> bytes:
        policy = data[0] & 0x07
        if policy in (0, 1, 2):
            self.restore_policy = policy
        return b"\x07"

    def _restart_cause(self, data: bytes) -> bytes:
        return bytes([self.restart_cause, 0x01])

    def _poh_counter(self, data: bytes) -> bytes:
        hours = int(20000 * _unit(self.settings.seed, self.index, 6) + self.clock.now() / 3600.0)
        return bytes([60]) + struct.pack("<I", hours)

    def _set_boot_options(self, data: bytes) -> int:
        param = data[0] & 0x7F
        if param in (0, 3, 4):
            return CC_OK
        if param == 5:
            flags = bytes(data[1:6]).ljust(5, b"\x00")
            self.boot_flags = flags
            return CC_OK
        return CC_PARAM_NOT_SUPPORTED

    def _get_boot_options(self, data: bytes) -> bytes | int:
        param = data[0] & 0x7F
        if param == 0:
            return bytes([0x01, 0x00, 0x00])
        if param == 4:
            return bytes([0x01, 0x04, 0x00, 0x00])
        if param == 5:
            return bytes([0x01, 0x05]) + self.boot_flags
        return CC_PARAM_NOT_SUPPORTED

    # SENSOR/EVENT (netfn 04h)
    def _get_sensor_reading(self, data: bytes) -> bytes | int:
        result = self.sensor_reading(data[0])
        return CC_NOT_PRESENT if result is None else result

    def _get_sensor_thresholds(self, data: bytes) -> bytes | int:
        sensor = SENSOR_BY_NUMBER.get(data[0])
        if sensor is None:
            return CC_NOT_PRESENT
        if sensor.event_type != rec.EVENT_TYPE_THRESHOLD:
            return CC_INVALID_COMMAND
        mask = 0
        raws = []
        for bit, value in enumerate(sensor.thresholds):
            if value is not None:
                mask |= 1 << bit
                raws.append(sensor.to_raw(value))
            else:
                raws.append(0)
        return bytes([mask, *raws])

    def _get_sensor_hysteresis(self, data: bytes) -> bytes | int:
        return CC_NOT_PRESENT if data[0] not in SENSOR_BY_NUMBER else b"\x00\x00"

    def _get_sensor_event_status(self, data: bytes) -> bytes | int:
        if data[0] not in SENSOR_BY_NUMBER:
            return CC_NOT_PRESENT
        return bytes([0xC0, 0x00, 0x00, 0x00, 0x00])

    def _get_event_enable(self, data: bytes) -> bytes | int:
        if data[0] not in SENSOR_BY_NUMBER:
            return CC_NOT_PRESENT
        return bytes([0xC0, 0x00, 0x00, 0x00, 0x00])

    # STORAGE (netfn 0Ah): SDR repository
    def _sdr_info(self, data: bytes) -> bytes:
        count = len(SDR_RECORDS)
        return (bytes([0x51]) + struct.pack("<HH", count, 0x0000) + struct.pack("<II", 0, 0) + b"\x22")

    def _sdr_alloc_info(self, data: bytes) -> bytes:
        return struct.pack("<HHHHB", len(SDR_RECORDS), 64, 0, 0, 4)

    def _reserve(self, data: bytes) -> bytes:
        self.reservation = (self.reservation % 0xFFFF) + 1
        return struct.pack("<H", self.reservation)

    def _get_sdr(self, data: bytes) -> bytes | int:
        reservation, record_id, offset, count = struct.unpack("<HHBB", data[:6])
        if offset and reservation != self.reservation:
            return CC_INVALID_RESERVATION
        if record_id == 0xFFFF:
            record_id = len(SDR_RECORDS)
        index = 0 if record_id == 0 else record_id - 1
        if not 0 <= index < len(SDR_RECORDS):
            return CC_NOT_PRESENT
        record = SDR_RECORDS[index]
        next_id = index + 2 if index + 1 < len(SDR_RECORDS) else 0xFFFF
        if offset > len(record):
            return CC_OUT_OF_RANGE
        chunk = record[offset:] if count == 0xFF else record[offset:offset + count]
        return struct.pack("<H", next_id) + chunk

    # STORAGE: SEL
    def _sel_info(self, data: bytes) -> bytes:
        self.advance()
        count = len(self.sel) // 16
        free = (SEL_CAPACITY - count) * 16
        support = 0x02 | 0x08 | (0x80 if self.sel_overflow else 0)  # reserve, delete supported
        return (bytes([0x51]) + struct.pack("<HH", count, free) + struct.pack("<II", self.sel_added, self.sel_erased)
                + bytes([support]))

    def _get_sel_entry(self, data: bytes) -> bytes | int:
        self.advance()
        reservation, record_id, offset, count = struct.unpack("<HHBB", data[:6])
        if offset and reservation != self.reservation:
            return CC_INVALID_RESERVATION
        index = self._sel_index(record_id)
        if index is None:
            return CC_NOT_PRESENT
        entry = bytes(self.sel[index * 16:index * 16 + 16])
        total = len(self.sel) // 16
        next_id = 0xFFFF
        if index + 1 < total:
            next_id = self.sel[(index + 1) * 16] | (self.sel[(index + 1) * 16 + 1] << 8)
        if offset > 16:
            return CC_OUT_OF_RANGE
        chunk = entry[offset:] if count == 0xFF else entry[offset:offset + count]
        return struct.pack("<H", next_id) + chunk

    def _add_sel_entry(self, data: bytes) -> bytes | int:
        if len(data) < 16:
            return CC_REQ_DATA_LEN
        record_id = self.sel_next_id
        self.sel_next_id += 1
        entry = bytearray(data[:16])
        entry[0:2] = struct.pack("<H", record_id)
        if entry[2] < 0xE0:  # timestamped record: the SEL device stamps it
            entry[3:7] = struct.pack("<I", self.clock.epoch())
        self.sel += entry
        if len(self.sel) > SEL_CAPACITY * 16:
            del self.sel[:16]
            self.sel_overflow = True
        self.sel_added = self.clock.epoch()
        return struct.pack("<H", record_id)

    def _delete_sel_entry(self, data: bytes) -> bytes | int:
        reservation, record_id = struct.unpack("<HH", data[:4])
        if reservation != self.reservation:
            return CC_INVALID_RESERVATION
        index = self._sel_index(record_id)
        if index is None:
            return CC_NOT_PRESENT
        actual = self.sel[index * 16] | (self.sel[index * 16 + 1] << 8)
        del self.sel[index * 16:index * 16 + 16]
        self.sel_erased = self.clock.epoch()
        return struct.pack("<H", actual)

    def _clear_sel(self, data: bytes) -> bytes | int:
        reservation = struct.unpack("<H", data[:2])[0]
        if bytes(data[2:5]) != b"CLR":
            return CC_INVALID_FIELD
        if reservation != self.reservation:
            return CC_INVALID_RESERVATION
        if data[5] == 0xAA:
            self.sel = bytearray()
            self.sel_overflow = False
            self.sel_erased = self.clock.epoch()
            self._log_event(self.clock.now(), rec.SENSOR_EVENT_LOGGING, SN_EVENT_LOG, 0x02)
        return b"\x01"

    def _get_sel_time(self, data: bytes) -> bytes:
        return struct.pack("<I", self.clock.epoch())

    def _set_sel_time(self, data: bytes) -> int:
        return CC_OK

    # STORAGE: FRU
    def _fru_info(self, data: bytes) -> bytes | int:
        if data[0] != 0:
            return CC_NOT_PRESENT
        return struct.pack("<HB", len(self.fru()), 0x00)

    def _read_fru(self, data: bytes) -> bytes | int:
        device, offset, count = struct.unpack("<BHB", data[:4])
        if device != 0:
            return CC_NOT_PRESENT
        image = self.fru()
        if offset >= len(image):
            return CC_OUT_OF_RANGE
        chunk = image[offset:offset + count]
        return bytes([len(chunk)]) + chunk

    # TRANSPORT (netfn 0Ch): LAN configuration
    def _lan_config(self, data: bytes) -> bytes | int:
        if data[0] & 0x80:
            return b"\x11"  # revision only
        param = data[1]
        ip = ipaddress.IPv4Address(self.address).packed
        values: dict[int, bytes] = {
            0: b"\x00",
            1: b"\x14",  # MD5 + password
            2: b"\x14\x14\x14\x14\x00",
            3: ip,
            4: b"\x01",  # static
            5: self.mac,
            6: bytes([255, 0, 0, 0]),
            12: bytes([ip[0], 0, 0, 1]),
            13: bytes(6),
            20: b"\x00\x00",  # VLAN off
            24: b"\x00",
        }
        if param not in values:
            return CC_PARAM_NOT_SUPPORTED
        return b"\x11" + values[param]

    # GROUP EXTENSION (netfn 2Ch): DCMI
    def _dcmi_capabilities(self, data: bytes) -> bytes | int:
        if not data or data[0] != 0xDC:
            return CC_INVALID_FIELD
        param = data[1] if len(data) > 1 else 1
        if param == 1:  # supported capabilities: power management
            return bytes([0xDC, 0x01, 0x05, 0x02, 0x00, 0x01, 0x07])
        if param == 2:  # mandatory platform attributes
            return bytes([0xDC, 0x01, 0x05, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00])
        return CC_INVALID_FIELD

    def _dcmi_power_reading(self, data: bytes) -> bytes | int:
        if not data or data[0] != 0xDC:
            return CC_INVALID_FIELD
        now = self.clock.now()
        watts = self.reading(SENSOR_BY_NAME["Pwr Consumption"], now) or 0.0
        samples = [self.reading(SENSOR_BY_NAME["Pwr Consumption"], now - k * 60.0) or 0.0 for k in range(5)]
        return (bytes([0xDC]) + struct.pack("<HHHH", round(watts), round(min(samples)), round(max(samples)),
                                            round(sum(samples) / len(samples)))
                + struct.pack("<II", self.clock.epoch(now), 300_000) + bytes([0x40]))


_HANDLERS: dict[tuple[int, int], Callable[[LegacyIpmiNode, bytes], bytes | int]] = {
    (NETFN_APP, 0x01): LegacyIpmiNode._get_device_id,
    (NETFN_APP, 0x02): LegacyIpmiNode._cold_reset,
    (NETFN_APP, 0x03): LegacyIpmiNode._cold_reset,
    (NETFN_APP, 0x04): LegacyIpmiNode._self_test,
    (NETFN_APP, 0x07): LegacyIpmiNode._acpi_power_state,
    (NETFN_APP, 0x08): LegacyIpmiNode._guid,
    (NETFN_APP, 0x2F): LegacyIpmiNode._global_enables,
    (NETFN_APP, 0x37): LegacyIpmiNode._guid,
    (NETFN_APP, 0x41): LegacyIpmiNode._channel_access,
    (NETFN_APP, 0x42): LegacyIpmiNode._channel_info,
    (NETFN_APP, 0x54): LegacyIpmiNode._get_cipher_suites,
    (NETFN_CHASSIS, 0x00): LegacyIpmiNode._chassis_capabilities,
    (NETFN_CHASSIS, 0x01): LegacyIpmiNode._chassis_status,
    (NETFN_CHASSIS, 0x02): LegacyIpmiNode._chassis_control,
    (NETFN_CHASSIS, 0x04): LegacyIpmiNode._chassis_identify,
    (NETFN_CHASSIS, 0x06): LegacyIpmiNode._restore_policy,
    (NETFN_CHASSIS, 0x07): LegacyIpmiNode._restart_cause,
    (NETFN_CHASSIS, 0x08): LegacyIpmiNode._set_boot_options,
    (NETFN_CHASSIS, 0x09): LegacyIpmiNode._get_boot_options,
    (NETFN_CHASSIS, 0x0F): LegacyIpmiNode._poh_counter,
    (NETFN_SENSOR, 0x25): LegacyIpmiNode._get_sensor_hysteresis,
    (NETFN_SENSOR, 0x27): LegacyIpmiNode._get_sensor_thresholds,
    (NETFN_SENSOR, 0x29): LegacyIpmiNode._get_event_enable,
    (NETFN_SENSOR, 0x2B): LegacyIpmiNode._get_sensor_event_status,
    (NETFN_SENSOR, 0x2D): LegacyIpmiNode._get_sensor_reading,
    (NETFN_STORAGE, 0x10): LegacyIpmiNode._fru_info,
    (NETFN_STORAGE, 0x11): LegacyIpmiNode._read_fru,
    (NETFN_STORAGE, 0x20): LegacyIpmiNode._sdr_info,
    (NETFN_STORAGE, 0x21): LegacyIpmiNode._sdr_alloc_info,
    (NETFN_STORAGE, 0x22): LegacyIpmiNode._reserve,
    (NETFN_STORAGE, 0x23): LegacyIpmiNode._get_sdr,
    (NETFN_STORAGE, 0x40): LegacyIpmiNode._sel_info,
    (NETFN_STORAGE, 0x42): LegacyIpmiNode._reserve,
    (NETFN_STORAGE, 0x43): LegacyIpmiNode._get_sel_entry,
    (NETFN_STORAGE, 0x44): LegacyIpmiNode._add_sel_entry,
    (NETFN_STORAGE, 0x46): LegacyIpmiNode._delete_sel_entry,
    (NETFN_STORAGE, 0x47): LegacyIpmiNode._clear_sel,
    (NETFN_STORAGE, 0x48): LegacyIpmiNode._get_sel_time,
    (NETFN_STORAGE, 0x49): LegacyIpmiNode._set_sel_time,
    (NETFN_TRANSPORT, 0x02): LegacyIpmiNode._lan_config,
    (NETFN_GROUP, 0x01): LegacyIpmiNode._dcmi_capabilities,
    (NETFN_GROUP, 0x02): LegacyIpmiNode._dcmi_power_reading,
}


# --------------------------------------------------------------------------------------------------- the router
class _NodeProtocol(asyncio.DatagramProtocol):
    __slots__ = ("node",)

    def __init__(self, node: LegacyIpmiNode) -> None:
        self.node = node

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            _dispatch(self.node, bytearray(data), addr)
        except Exception:
            log.exception("legacy-ipmi %s: packet from %s dropped", self.node.name, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable from a client that went away
        pass


def _rmcp_plus_response(payload_type: int, payload: bytes) -> bytes:
    """A sessionless RMCP+ packet (session id 0, sequence 0, no integrity)."""
    return (b"\x06\x00\xff\x07\x06" + bytes([payload_type]) + bytes(8) + struct.pack("<H", len(payload))
            + payload)


def _asf_pong(data: bytearray) -> bytes | None:
    """Answer an RMCP/ASF presence ping (``ipmiping``, discovery scanners)."""
    if len(data) < 12 or data[3] != 0x06 or bytes(data[4:8]) != b"\x00\x00\x11\xbe" or data[8] != 0x80:
        return None
    tag = data[9]
    body = b"\x00\x00\x11\xbe" + bytes(4) + bytes([0x81, 0x00]) + bytes(6)
    return b"\x06\x00\xff\x06" + b"\x00\x00\x11\xbe" + bytes([0x40, tag, 0x00, len(body)]) + body


def _dispatch(node: LegacyIpmiNode, data: bytearray, addr: Any) -> None:
    if node.down:
        return
    if node.down_until:
        if time.monotonic() < node.down_until:
            return
        node.down_until = 0.0
        node.sessions = None  # the BMC rebooted: every session is gone
    if len(data) < 4 or data[0] != 0x06:
        return
    sock = node.serversocket
    if sock is None:
        return
    if data[3] == 0x06:  # ASF class
        pong = _asf_pong(data)
        if pong is not None:
            sock.sendto(pong, addr)
        return
    if bytes(data[2:4]) != b"\xff\x07" or len(data) < 10:
        return
    now = time.monotonic()
    sessions = node.sessions
    if data[4] == 0x06:  # IPMI v2.0 / RMCP+
        ptype = data[5] & 0x3F
        if ptype == 0x10:  # open session request: a new session for this client address
            if len(data) < 24:
                return
            _expire(node, now)
            sessions = node.sessions
            if sessions is None:
                sessions = node.sessions = {}
            if addr not in sessions and len(sessions) >= node.settings.session_limit:
                payload = bytes([data[16], 0x01, 0x00, 0x00]) + bytes(data[20:24])  # insufficient resources
                sock.sendto(_rmcp_plus_response(0x11, payload), addr)
                return
            session = _NodeSession(node.authdata, node.kg, addr, sock, data[16:], node.uuid, bmc=node)
            if session.failed:
                sessions.pop(addr, None)
                if not sessions:
                    node.sessions = None
            else:
                sessions[addr] = session
            return
        session_id = bytes(data[6:10])
        if ptype in (0x12, 0x14) or session_id != b"\x00\x00\x00\x00":
            current = sessions.get(addr) if sessions else None
            if current is None:
                return
            current.last_seen = now
            current._handle_ipmi_packet(data, sockaddr=addr, qent=(data, addr, sock))
            return
        node.sessionless_data(data, addr)  # get channel cipher suites etc.
        return
    if data[4] in (0x00, 0x02):  # IPMI v1.5: only sessionless requests (get channel auth capabilities)
        if len(data) >= 13 and bytes(data[9:13]) == b"\x00\x00\x00\x00":
            node.sessionless_data(data, addr)


def _expire(node: LegacyIpmiNode, now: float) -> None:
    sessions = node.sessions
    if not sessions:
        return
    limit = node.settings.session_idle_timeout
    for key in [k for k, s in sessions.items() if now - s.last_seen > limit]:
        del sessions[key]
    if not sessions:
        node.sessions = None


# --------------------------------------------------------------------------------------------------- the fleet
def address_range(base: str, count: int) -> list[str]:
    start = int(ipaddress.IPv4Address(base))
    return [str(ipaddress.IPv4Address(start + i)) for i in range(count)]


class IpmiFleet:
    """N legacy-ipmi nodes, each on its own address, all served by the event loop that calls :meth:`start`.

    ``addresses`` gives one address per node (all on ``port``); ``names`` defaults to ``legacy-00001``...
    ``on_power(node, old, new, reset_type)`` is called on every host power change (for SimFleet / telemetry).
    """

    def __init__(self, addresses: Iterable[str], *, port: int = DEFAULT_PORT, names: Iterable[str] | None = None,
                 settings: IpmiNodeSettings | None = None, time_scale: float = 1.0, clock: SimClock | None = None,
                 on_power: Callable[[LegacyIpmiNode, str, str, str | None], None] | None = None,
                 first_index: int = 0) -> None:
        self.settings = settings or IpmiNodeSettings()
        self.clock = clock or SimClock(time_scale)
        self.authdata = {self.settings.user: self.settings.password}
        self.port = port
        self.on_power = on_power
        addrs = list(addresses)
        name_list = list(names) if names is not None else [f"legacy-{i + 1:05d}" for i in range(len(addrs))]
        if len(name_list) != len(addrs):
            raise ValueError("names and addresses differ in length")
        self.nodes = [LegacyIpmiNode(self, first_index + i, n, a, port)
                      for i, (n, a) in enumerate(zip(name_list, addrs, strict=True))]
        self._by_name = {n.name: n for n in self.nodes}
        self._by_address = {n.address: n for n in self.nodes}
        self._transports: list[asyncio.DatagramTransport] = []

    def node(self, name: str) -> LegacyIpmiNode:
        return self._by_name[name]

    def node_by_address(self, address: str) -> LegacyIpmiNode:
        return self._by_address[address]

    def url(self, node: LegacyIpmiNode) -> str:
        return f"ipmi://{node.address}" + ("" if self.port == DEFAULT_PORT else f":{self.port}")

    async def start(self) -> None:
        """Bind every node's UDP socket on the running loop. ``port=0`` picks one port free on every address."""
        loop = asyncio.get_running_loop()
        wanted = self.port
        for _attempt in range(20 if wanted == 0 else 1):
            try:
                for node in self.nodes:
                    transport, _ = await loop.create_datagram_endpoint(
                        functools.partial(_NodeProtocol, node), local_addr=(node.address, self.port))
                    node.serversocket = _Transport(transport)
                    node.port = self.port = transport.get_extra_info("sockname")[1]
                    self._transports.append(transport)
                return
            except OSError as exc:
                await self.stop()
                self.port = wanted
                if wanted == 0 and exc.errno == errno.EADDRINUSE:
                    continue
                raise
            except BaseException:
                await self.stop()
                raise
        raise OSError(errno.EADDRINUSE, "no UDP port free on every legacy-ipmi address")

    async def stop(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        for node in self.nodes:
            node.serversocket = None
            node.sessions = None

    async def __aenter__(self) -> IpmiFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def start_ipmi_nodes(addresses: Iterable[str], *, port: int = DEFAULT_PORT, **kwargs: Any) -> IpmiFleet:
    """Create and start an :class:`IpmiFleet` on the running loop (what SimFleet calls for ``legacy-ipmi``)."""
    fleet = IpmiFleet(addresses, port=port, **kwargs)
    await fleet.start()
    return fleet


class IpmiFleetThread:
    """An :class:`IpmiFleet` on its own event loop thread, for synchronous callers (tests, scripts)::

        with IpmiFleetThread(["127.12.0.1"], port=6230) as fleet:
            ...
    """

    def __init__(self, addresses: Iterable[str], **kwargs: Any) -> None:
        self._args = (list(addresses), kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self.fleet: IpmiFleet | None = None

    def start(self) -> IpmiFleet:
        started = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self.fleet = self._loop.run_until_complete(start_ipmi_nodes(self._args[0], **self._args[1]))
            except BaseException as exc:
                error.append(exc)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="redfleet-ipmi-sim", daemon=True)
        self._thread.start()
        started.wait()
        if error:
            raise error[0]
        assert self.fleet is not None
        return self.fleet

    def call(self, func: Callable[[], Any]) -> Any:
        """Run ``func`` on the fleet's loop thread and return its result."""

        async def wrapper() -> Any:
            return func()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result()

    def stop(self) -> None:
        if self.fleet is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.fleet.stop(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(Exception):
            self._loop.close()

    def __enter__(self) -> IpmiFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------- standalone
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m redfleet.sim.ipmi",
        description="Serve N simulated legacy IPMI BMCs (RMCP+/lanplus), one per loopback address. "
        "Try: ipmitool -I lanplus -H 127.12.0.1 -U root -P calvin chassis power status",
    )
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--base-address", default="127.12.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--user", default="root")
    parser.add_argument("--password", default="calvin")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-scale", type=float, default=1.0, help="divides every delay (boot, BMC reset)")
    parser.add_argument("--boot-delay", type=float, default=90.0, help="simulated seconds from power-on to OS up")
    args = parser.parse_args(argv)
    settings = IpmiNodeSettings(user=args.user, password=args.password, seed=args.seed, boot_delay=args.boot_delay)
    addresses = address_range(args.base_address, args.nodes)

    async def run() -> None:
        fleet = await start_ipmi_nodes(addresses, port=args.port, settings=settings, time_scale=args.time_scale)
        print(f"legacy-ipmi: {len(fleet.nodes)} nodes on {addresses[0]}..{addresses[-1]} port {args.port}, "
              f"user {args.user}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await fleet.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

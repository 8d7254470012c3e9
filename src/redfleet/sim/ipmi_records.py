"""Byte layouts for the legacy-ipmi flavor: SDR records, SEL entries, FRU areas (IPMI v2.0 rev 1.1).

Only encoders live here; the node model (:mod:`redfleet.sim.ipmi`) decides the values. SDR records are built
once per sensor table and shared by every node; SEL and FRU bytes are built per node on demand.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Sensor types (table 42-3) and base units (table 43-15) used by the simulated sensors.
SENSOR_TEMPERATURE = 0x01
SENSOR_VOLTAGE = 0x02
SENSOR_CURRENT = 0x03
SENSOR_FAN = 0x04
SENSOR_POWER_SUPPLY = 0x08
SENSOR_POWER_UNIT = 0x09
SENSOR_EVENT_LOGGING = 0x10
SENSOR_SYSTEM_EVENT = 0x12
SENSOR_SYSTEM_BOOT = 0x1D
SENSOR_OS_BOOT = 0x1F

UNIT_NONE = 0
UNIT_DEGREES_C = 1
UNIT_VOLTS = 4
UNIT_WATTS = 6
UNIT_RPM = 18

EVENT_TYPE_THRESHOLD = 0x01
EVENT_TYPE_SENSOR_SPECIFIC = 0x6F

# Entity ids (table 43-13).
ENTITY_PROCESSOR = 3
ENTITY_POWER_SUPPLY = 10
ENTITY_SYSTEM_BOARD = 7
ENTITY_FAN = 29
ENTITY_AIR_INLET = 55
ENTITY_SYSTEM_CHASSIS = 23

THRESHOLD_NAMES = ("lnc", "lcr", "lnr", "unc", "ucr", "unr")


@dataclass(frozen=True)
class SensorDef:
    """One simulated sensor. Threshold sensors convert with ``value = m * raw * 10**r_exp`` (B = 0)."""

    number: int
    name: str
    sensor_type: int
    unit: int = UNIT_NONE
    event_type: int = EVENT_TYPE_THRESHOLD
    entity: int = ENTITY_SYSTEM_BOARD
    instance: int = 1
    m: int = 1
    r_exp: int = 0
    # thresholds in engineering units, in THRESHOLD_NAMES order; None = not provided
    thresholds: tuple[float | None, ...] = (None, None, None, None, None, None)
    nominal: float = 0.0
    # discrete sensors: which state bits the sensor can assert
    discrete_mask: int = 0

    def to_raw(self, value: float) -> int:
        scale = self.m * (10.0**self.r_exp)
        return max(0, min(255, round(value / scale)))

    def from_raw(self, raw: int) -> float:
        return self.m * raw * (10.0**self.r_exp)


def _id_string(name: str) -> bytes:
    data = name.encode("ascii")[:16]
    return bytes([0xC0 | len(data)]) + data


def full_sensor_record(record_id: int, sensor: SensorDef) -> bytes:
    """A type 01h Full Sensor Record (table 43-1)."""
    threshold = sensor.event_type == EVENT_TYPE_THRESHOLD
    readable = 0
    raw_thresholds = []
    for bit, value in enumerate(sensor.thresholds):
        if value is not None and threshold:
            readable |= 1 << bit
            raw_thresholds.append(sensor.to_raw(value))
        else:
            raw_thresholds.append(0)
    # thresholds readable (bits 3:2 = 01), no hysteresis, auto re-arm; discrete: no thresholds
    capabilities = 0x44 if threshold else 0x40
    if threshold:
        # assertion/deassertion masks: going-low for lower thresholds, going-high for upper ones
        low = (1 << 0) | (1 << 2) | (1 << 4)  # lnc-low, lcr-low, lnr-low
        high = (1 << 7) | (1 << 9) | (1 << 11)  # unc-high, ucr-high, unr-high
        assertion = 0
        for bit, value in enumerate(sensor.thresholds):
            if value is None:
                continue
            assertion |= (low if bit < 3 else high) & (0b11 << (2 * bit))
        mask1 = assertion | ((readable & 0x07) << 12)  # + lower thresholds returned by Get Sensor Reading
        mask2 = assertion | (((readable >> 3) & 0x07) << 12)  # + upper thresholds returned
        mask3 = readable  # readable thresholds; none settable
    else:
        mask1 = mask2 = mask3 = sensor.discrete_mask
    m_ls = sensor.m & 0xFF
    m_ms = (sensor.m >> 8) & 0x03
    r_nibble = sensor.r_exp & 0x0F
    body = bytearray()
    body += bytes([0x20, 0x00, sensor.number, sensor.entity, sensor.instance])
    body += bytes([0x7F, capabilities, sensor.sensor_type, sensor.event_type])
    body += struct.pack("<HHH", mask1, mask2, mask3)
    body += bytes([0x00, sensor.unit, 0x00, 0x00])  # unsigned, base unit, no modifier, linear
    body += bytes([m_ls, m_ms << 6, 0x00, 0x00, 0x00, r_nibble << 4])
    if threshold:
        body += bytes([0x01, sensor.to_raw(sensor.nominal), 0x00, 0x00, 0xFF, 0x00])
    else:
        body += bytes([0x00, 0x00, 0x00, 0x00, 0xFF, 0x00])
    # upper nr, upper cr, upper nc, lower nr, lower cr, lower nc
    lnc, lcr, lnr, unc, ucr, unr = raw_thresholds
    body += bytes([unr, ucr, unc, lnr, lcr, lnc])
    body += bytes([0x00, 0x00, 0x00, 0x00, 0x00])  # hysteresis +/-, reserved x2, OEM
    body += _id_string(sensor.name)
    header = struct.pack("<HBBB", record_id, 0x51, 0x01, len(body))
    return header + bytes(body)


def mc_locator_record(record_id: int, name: str) -> bytes:
    """A type 12h Management Controller Device Locator record, as every BMC lists for itself."""
    # slave address, channel, power state notification, capabilities, 3 reserved, entity id/instance, OEM
    body = bytes([0x20, 0x00, 0x00, 0x9F, 0x00, 0x00, 0x00, ENTITY_SYSTEM_BOARD, 0x01, 0x00])
    body += _id_string(name)
    return struct.pack("<HBBB", record_id, 0x51, 0x12, len(body)) + body


def sel_record(record_id: int, timestamp: int, sensor_type: int, sensor_number: int, event_type: int,
               data1: int, data2: int = 0xFF, data3: int = 0xFF, deassert: bool = False) -> bytes:
    """A 16-byte system event record (table 32-1), generated by the BMC (generator id 20h)."""
    direction = 0x80 if deassert else 0x00
    return struct.pack(
        "<HBIHBBBBBBB", record_id, 0x02, timestamp & 0xFFFFFFFF, 0x0020, 0x04, sensor_type, sensor_number,
        direction | event_type, data1, data2, data3,
    )


def _fru_field(text: str) -> bytes:
    data = text.encode("ascii", "replace")[:63]
    return bytes([0xC0 | len(data)]) + data


def _fru_area(body: bytes) -> bytes:
    """Close an area: end marker, pad to 8 bytes, length byte, zero checksum."""
    data = bytearray(body) + b"\xc1"
    while (len(data) + 1) % 8:
        data.append(0)
    data[1] = (len(data) + 1) // 8
    data.append((-sum(data)) & 0xFF)
    return bytes(data)


def fru_image(*, manufacturer: str, product: str, board_product: str, serial: str, board_serial: str,
              part_number: str, chassis_serial: str, version: str = "1.0", asset_tag: str = "",
              mfg_minutes: int = 0) -> bytes:
    """A FRU inventory image (Platform Management FRU Information Storage Definition v1.0)."""
    chassis = _fru_area(bytes([0x01, 0x00, 0x17]) + _fru_field(part_number) + _fru_field(chassis_serial))
    board = _fru_area(
        bytes([0x01, 0x00, 0x00]) + struct.pack("<I", mfg_minutes)[:3] + _fru_field(manufacturer)
        + _fru_field(board_product) + _fru_field(board_serial) + _fru_field(part_number) + _fru_field("")
    )
    product_area = _fru_area(
        bytes([0x01, 0x00, 0x00]) + _fru_field(manufacturer) + _fru_field(product) + _fru_field(part_number)
        + _fru_field(version) + _fru_field(serial) + _fru_field(asset_tag) + _fru_field("")
    )
    chassis_off = 1
    board_off = chassis_off + len(chassis) // 8
    product_off = board_off + len(board) // 8
    header = bytearray([0x01, 0x00, chassis_off, board_off, product_off, 0x00, 0x00])
    header.append((-sum(header)) & 0xFF)
    return bytes(header) + chassis + board + product_area

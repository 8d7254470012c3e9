"""Byte layouts of the two 512-byte health logs, as data.

* NVMe SMART / Health Information (Log Identifier 02h), NVM Express Base Specification 2.1, figure
  "SMART / Health Information Log Page".
* OCP "SMART / Health Information Extended" (Log Identifier C0h), OCP Datacenter NVMe SSD Specification
  (1.0 was published as the "NVMe Cloud SSD Specification"). The log page version in bytes 494–495 says which
  spec revision the layout follows and so which fields exist:

  ========  ==================  ==========================================================================
  version   spec                fields added
  ========  ==================  ==========================================================================
  0002h     1.0                 the base set (media units, bad blocks, XOR, uncorrectable, soft ECC, …)
  0003h     2.0                 DSSD spec version, NVMe base errata, PCIe link retraining, power state changes
  0004h     2.5                 NVMe command set errata, lowest permitted firmware revision
  0005h     2.6                 media dies, system-area fail counts, power, DSSD firmware identity, …
  0006h     2.7                 form factor, bad NAND blocks on dies in use
  ========  ==================  ==========================================================================

  Bytes of a field that a version does not define are reserved (zero) in that version.

Keys are nvme-cli's snake_case JSON keys (``nvme smart-log -o json`` and ``nvme ocp smart-add-log -o json
--output-format-version=2``), so a decoded log and nvme-cli's output line up. Three keys exist only here,
because nvme-cli's snake_case output does not print those fields: ``form_factor``,
``die_in_use_bad_nand_block_raw`` and ``die_in_use_bad_nand_block_normalized`` (2.7). nvme-cli spells three
keys ``…_noralized``; they are kept as nvme-cli prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LOG_SIZE = 512

Kind = Literal["uint", "ascii", "uuid"]


@dataclass(frozen=True)
class Field:
    key: str  # nvme-cli snake_case JSON key
    offset: int  # first byte
    size: int  # bytes
    kind: Kind = "uint"  # little-endian unsigned integer unless said otherwise
    since: int = 0  # first OCP C0h log page version that defines it (0: always / not versioned)
    title: str = ""  # the spec's name, for humans

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.offset + self.size


# --- NVMe SMART / Health Information, Log Identifier 02h -------------------------------------------------
SMART_FIELDS: tuple[Field, ...] = (
    Field("critical_warning", 0, 1, title="Critical Warning"),
    Field("temperature", 1, 2, title="Composite Temperature (kelvin)"),
    Field("avail_spare", 3, 1, title="Available Spare (%)"),
    Field("spare_thresh", 4, 1, title="Available Spare Threshold (%)"),
    Field("percent_used", 5, 1, title="Percentage Used"),
    Field("endurance_grp_critical_warning_summary", 6, 1, title="Endurance Group Critical Warning Summary"),
    # 7..31 reserved
    Field("data_units_read", 32, 16, title="Data Units Read (1000 × 512 bytes)"),
    Field("data_units_written", 48, 16, title="Data Units Written (1000 × 512 bytes)"),
    Field("host_read_commands", 64, 16, title="Host Read Commands"),
    Field("host_write_commands", 80, 16, title="Host Write Commands"),
    Field("controller_busy_time", 96, 16, title="Controller Busy Time (minutes)"),
    Field("power_cycles", 112, 16, title="Power Cycles"),
    Field("power_on_hours", 128, 16, title="Power On Hours"),
    Field("unsafe_shutdowns", 144, 16, title="Unsafe Shutdowns"),
    Field("media_errors", 160, 16, title="Media and Data Integrity Errors"),
    Field("num_err_log_entries", 176, 16, title="Number of Error Information Log Entries"),
    Field("warning_temp_time", 192, 4, title="Warning Composite Temperature Time (minutes)"),
    Field("critical_comp_time", 196, 4, title="Critical Composite Temperature Time (minutes)"),
    *(Field(f"temperature_sensor_{i + 1}", 200 + 2 * i, 2, title=f"Temperature Sensor {i + 1} (kelvin)")
      for i in range(8)),
    Field("thm_temp1_trans_count", 216, 4, title="Thermal Management Temperature 1 Transition Count"),
    Field("thm_temp2_trans_count", 220, 4, title="Thermal Management Temperature 2 Transition Count"),
    Field("thm_temp1_total_time", 224, 4, title="Total Time For Thermal Management Temperature 1 (s)"),
    Field("thm_temp2_total_time", 228, 4, title="Total Time For Thermal Management Temperature 2 (s)"),
    Field("op_lifetime_energy_consumed", 232, 8, title="Operational Lifetime Energy Consumed (NVMe 2.1)"),
    Field("interval_power_measurement", 240, 4, title="Interval Power Measurement (NVMe 2.1)"),
    # 244..511 reserved
)

SMART_RESERVED: tuple[tuple[int, int], ...] = ((7, 32), (244, 512))

# Critical warning bits (02h byte 0).
CRITICAL_WARNING_BITS: dict[int, str] = {
    0: "available spare below threshold",
    1: "temperature above or below a threshold",
    2: "NVM subsystem reliability degraded by media or internal errors",
    3: "media placed in read-only mode",
    4: "volatile memory backup device failed",
    5: "persistent memory region read-only or unreliable",
}

# --- OCP SMART / Health Information Extended, Log Identifier C0h ----------------------------------------
OCP_C0_GUID_TEXT = "AFD514C9-7C6F-4F9C-A4F2-BFEA2810AFC5"
OCP_C0_GUID_INT = int(OCP_C0_GUID_TEXT.replace("-", ""), 16)
OCP_C0_GUID_BYTES = OCP_C0_GUID_INT.to_bytes(16, "little")  # as stored in bytes 496..511

OCP_VERSION_SPEC: dict[int, str] = {2: "1.0", 3: "2.0", 4: "2.5", 5: "2.6", 6: "2.7"}
OCP_VERSIONS: tuple[int, ...] = tuple(sorted(OCP_VERSION_SPEC))
OCP_LATEST_VERSION = OCP_VERSIONS[-1]

OCP_C0_FIELDS: tuple[Field, ...] = (
    Field("physical_media_units_written", 0, 16, since=2, title="Physical Media Units Written (bytes)"),
    Field("physical_media_units_read", 16, 16, since=2, title="Physical Media Units Read (bytes)"),
    Field("bad_user_nand_blocks_raw", 32, 6, since=2, title="Bad User NAND Blocks (raw count)"),
    Field("bad_user_nand_blocks_normalized", 38, 2, since=2, title="Bad User NAND Blocks (normalized %)"),
    Field("bad_system_nand_blocks_raw", 40, 6, since=2, title="Bad System NAND Blocks (raw count)"),
    Field("bad_system_nand_blocks_normalized", 46, 2, since=2, title="Bad System NAND Blocks (normalized %)"),
    Field("xor_recovery_count", 48, 8, since=2, title="XOR Recovery Count"),
    Field("uncorrectable_read_errors", 56, 8, since=2, title="Uncorrectable Read Error Count"),
    Field("soft_ecc_error_count", 64, 8, since=2, title="Soft ECC Error Count"),
    Field("end_to_end_detected_errors", 72, 4, since=2, title="End to End Correction Counts: detected"),
    Field("end_to_end_corrected_errors", 76, 4, since=2, title="End to End Correction Counts: corrected"),
    Field("system_data_percent_used", 80, 1, since=2, title="System Data % Used"),
    Field("refresh_count", 81, 7, since=2, title="Refresh Counts"),
    Field("max_user_data_erase_count", 88, 4, since=2, title="User Data Erase Counts: maximum"),
    Field("min_user_data_erase_count", 92, 4, since=2, title="User Data Erase Counts: minimum"),
    Field("thermal_throttling_events", 96, 1, since=2, title="Thermal Throttling: number of events"),
    Field("current_throttling_status", 97, 1, since=2, title="Thermal Throttling: current status"),
    Field("errata_version_field", 98, 1, since=3, title="DSSD Specification Version: errata"),
    Field("point_version_field", 99, 2, since=3, title="DSSD Specification Version: point"),
    Field("minor_version_field", 101, 2, since=3, title="DSSD Specification Version: minor"),
    Field("major_version_field", 103, 1, since=3, title="DSSD Specification Version: major"),
    Field("pcie_correctable_errors", 104, 8, since=2, title="PCIe Correctable Error Count"),
    Field("incomplete_shutdowns", 112, 4, since=2, title="Incomplete Shutdowns"),
    # 116..119 reserved
    Field("percent_free_blocks", 120, 1, since=2, title="% Free Blocks"),
    # 121..127 reserved
    Field("capacitor_health", 128, 2, since=2, title="Capacitor Health (%)"),
    Field("nvme_base_errata_version", 130, 1, since=3, title="NVMe Base Errata Version"),
    Field("nvme_command_set_errata_version", 131, 1, since=4, title="NVMe Command Set Errata Version"),
    Field("nvme_over_pcie_errata_version", 132, 1, since=5, title="NVMe over PCIe Transport Errata Version"),
    Field("nvme_mi_errata_version", 133, 1, since=5, title="NVMe-MI Errata Version"),
    # 134..135 reserved
    Field("unaligned_io", 136, 8, since=2, title="Unaligned I/O"),
    Field("security_version_number", 144, 8, since=2, title="Security Version Number"),
    Field("nuse_namespace_utilization", 152, 8, since=2, title="Total NUSE"),
    Field("plp_start_count", 160, 16, since=2, title="PLP Start Count"),
    Field("endurance_estimate", 176, 16, since=2, title="Endurance Estimate (bytes)"),
    Field("pcie_link_retraining_count", 192, 8, since=3, title="PCIe Link Retraining Count"),
    Field("power_state_change_count", 200, 8, since=3, title="Power State Change Count"),
    Field("lowest_permitted_firmware_revision", 208, 8, since=4, title="Lowest Permitted Firmware Revision"),
    Field("total_media_dies", 216, 2, since=5, title="Total Media Dies"),
    Field("total_die_failure_tolerance", 218, 2, since=5, title="Total Die Failure Tolerance"),
    Field("media_dies_offline", 220, 2, since=5, title="Media Dies Offline"),
    Field("max_temperature_recorded", 222, 1, since=5, title="Max Temperature Recorded (°C)"),
    Field("form_factor", 223, 1, since=6, title="Form Factor"),
    Field("nand_avg_erase_count", 224, 8, since=5, title="NAND Average Erase Count"),
    Field("command_timeouts", 232, 4, since=5, title="Command Timeouts"),
    Field("sys_area_program_fail_count_raw", 236, 4, since=5, title="System Area Program Fail Count (raw)"),
    Field("sys_area_program_fail_count_noralized", 240, 1, since=5,
          title="System Area Program Fail Count (normalized %)"),
    # 241..243 reserved
    Field("sys_area_uncorrectable_read_count_raw", 244, 4, since=5,
          title="System Area Uncorrectable Read Count (raw)"),
    Field("sys_area_uncorrectable_read_count_noralized", 248, 1, since=5,
          title="System Area Uncorrectable Read Count (normalized %)"),
    # 249..251 reserved
    Field("sys_area_erase_fail_count_raw", 252, 4, since=5, title="System Area Erase Fail Count (raw)"),
    Field("sys_area_erase_fail_count_noralized", 256, 1, since=5,
          title="System Area Erase Fail Count (normalized %)"),
    # 257..259 reserved
    Field("max_peak_power_capability", 260, 2, since=5, title="Max Peak Power Capability (W)"),
    Field("current_max_avg_power", 262, 2, since=5, title="Current Max Average Power (W)"),
    Field("lifetime_power_consumed", 264, 6, since=5, title="Lifetime Power Consumed (kWh)"),
    Field("dssd_firmware_revision", 270, 8, "ascii", since=5, title="DSSD Firmware Revision"),
    Field("dssd_firmware_build_uuid", 278, 16, "uuid", since=5, title="DSSD Firmware Build UUID"),
    Field("dssd_firmware_build_label", 294, 64, "ascii", since=5, title="DSSD Firmware Build Label"),
    Field("die_in_use_bad_nand_block_raw", 358, 6, since=6, title="Bad NAND Blocks on Dies in Use (raw)"),
    Field("die_in_use_bad_nand_block_normalized", 364, 2, since=6,
          title="Bad NAND Blocks on Dies in Use (normalized %)"),
    # 366..493 reserved
    Field("log_page_version", 494, 2, since=2, title="Log Page Version"),
    # 496..511: Log Page GUID, checked rather than decoded as a field
)

OCP_C0_BY_KEY: dict[str, Field] = {f.key: f for f in OCP_C0_FIELDS}
SMART_BY_KEY: dict[str, Field] = {f.key: f for f in SMART_FIELDS}

# Fields wider than 64 bits: decoded as exact Python integers (never floats).
WIDE_KEYS = frozenset(f.key for f in (*SMART_FIELDS, *OCP_C0_FIELDS) if f.kind == "uint" and f.size > 8)


def ocp_fields_for_version(version: int) -> tuple[Field, ...]:
    """The C0h fields that exist in a given log page version."""
    return tuple(f for f in OCP_C0_FIELDS if f.since <= version)


def ocp_reserved_ranges(version: int) -> list[tuple[int, int]]:
    """Byte ranges [start, end) that are reserved (must read as zero) in a log page version."""
    used = bytearray(LOG_SIZE)
    for f in ocp_fields_for_version(version):
        used[f.offset:f.end] = b"\x01" * f.size
    used[496:512] = b"\x01" * 16
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    for i, flag in enumerate(used):
        if not flag and start is None:
            start = i
        elif flag and start is not None:
            ranges.append((start, i))
            start = None
    if start is not None:
        ranges.append((start, LOG_SIZE))
    return ranges

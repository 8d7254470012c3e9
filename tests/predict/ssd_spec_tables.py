"""Test-side layouts, written out independently of ``redfleet.predict.layout`` from the spec documents.

Byte ranges are given the way the specifications print them, ``(last, first)`` inclusive ("Bytes 15:0"), and
the test encoder writes each byte by hand; a shared mistake with the decoder's (offset, size) table would have
to be made twice in two notations.
"""

from __future__ import annotations

# OCP Datacenter NVMe SSD spec, "SMART / Health Information Extended (Log Identifier C0h)".
# (last byte, first byte, nvme-cli snake_case key, log page version that introduced it)
# version 2 = OCP 1.0 (NVMe Cloud SSD spec 1.0), 3 = 2.0, 4 = 2.5, 5 = 2.6, 6 = 2.7
C0_SPEC: list[tuple[int, int, str, int]] = [
    (15, 0, "physical_media_units_written", 2),
    (31, 16, "physical_media_units_read", 2),
    (37, 32, "bad_user_nand_blocks_raw", 2),
    (39, 38, "bad_user_nand_blocks_normalized", 2),
    (45, 40, "bad_system_nand_blocks_raw", 2),
    (47, 46, "bad_system_nand_blocks_normalized", 2),
    (55, 48, "xor_recovery_count", 2),
    (63, 56, "uncorrectable_read_errors", 2),
    (71, 64, "soft_ecc_error_count", 2),
    (75, 72, "end_to_end_detected_errors", 2),
    (79, 76, "end_to_end_corrected_errors", 2),
    (80, 80, "system_data_percent_used", 2),
    (87, 81, "refresh_count", 2),
    (91, 88, "max_user_data_erase_count", 2),
    (95, 92, "min_user_data_erase_count", 2),
    (96, 96, "thermal_throttling_events", 2),
    (97, 97, "current_throttling_status", 2),
    (98, 98, "errata_version_field", 3),
    (100, 99, "point_version_field", 3),
    (102, 101, "minor_version_field", 3),
    (103, 103, "major_version_field", 3),
    (111, 104, "pcie_correctable_errors", 2),
    (115, 112, "incomplete_shutdowns", 2),
    (120, 120, "percent_free_blocks", 2),
    (129, 128, "capacitor_health", 2),
    (130, 130, "nvme_base_errata_version", 3),
    (131, 131, "nvme_command_set_errata_version", 4),
    (132, 132, "nvme_over_pcie_errata_version", 5),
    (133, 133, "nvme_mi_errata_version", 5),
    (143, 136, "unaligned_io", 2),
    (151, 144, "security_version_number", 2),
    (159, 152, "nuse_namespace_utilization", 2),
    (175, 160, "plp_start_count", 2),
    (191, 176, "endurance_estimate", 2),
    (199, 192, "pcie_link_retraining_count", 3),
    (207, 200, "power_state_change_count", 3),
    (215, 208, "lowest_permitted_firmware_revision", 4),
    (217, 216, "total_media_dies", 5),
    (219, 218, "total_die_failure_tolerance", 5),
    (221, 220, "media_dies_offline", 5),
    (222, 222, "max_temperature_recorded", 5),
    (223, 223, "form_factor", 6),
    (231, 224, "nand_avg_erase_count", 5),
    (235, 232, "command_timeouts", 5),
    (239, 236, "sys_area_program_fail_count_raw", 5),
    (240, 240, "sys_area_program_fail_count_noralized", 5),
    (247, 244, "sys_area_uncorrectable_read_count_raw", 5),
    (248, 248, "sys_area_uncorrectable_read_count_noralized", 5),
    (255, 252, "sys_area_erase_fail_count_raw", 5),
    (256, 256, "sys_area_erase_fail_count_noralized", 5),
    (261, 260, "max_peak_power_capability", 5),
    (263, 262, "current_max_avg_power", 5),
    (269, 264, "lifetime_power_consumed", 5),
    (277, 270, "dssd_firmware_revision", 5),  # ASCII
    (293, 278, "dssd_firmware_build_uuid", 5),  # UUID
    (357, 294, "dssd_firmware_build_label", 5),  # ASCII
    (363, 358, "die_in_use_bad_nand_block_raw", 6),
    (365, 364, "die_in_use_bad_nand_block_normalized", 6),
    (495, 494, "log_page_version", 2),
]
C0_TEXT_FIELDS = {"dssd_firmware_revision", "dssd_firmware_build_label"}
C0_UUID_FIELDS = {"dssd_firmware_build_uuid"}

# The GUID as the spec prints it, and the bytes 496..511 it must produce (least significant byte first),
# spelled out by hand.
C0_GUID = "AFD514C9-7C6F-4F9C-A4F2-BFEA2810AFC5"
C0_GUID_BYTES_496_511 = bytes([0xC5, 0xAF, 0x10, 0x28, 0xEA, 0xBF, 0xF2, 0xA4,
                               0x9C, 0x4F, 0x6F, 0x7C, 0xC9, 0x14, 0xD5, 0xAF])

# nvme-cli's struct ocp_smart_extended_log member order (plugins/ocp/ocp-smart-extended-log.h), reserved
# members left out; its names differ from its JSON keys, which is why this list is only about order.
NVME_CLI_C0_MEMBER_ORDER = [
    "physical_media_units_written", "physical_media_units_read", "bad_user_nand_blocks_raw",
    "bad_user_nand_blocks_normalized", "bad_system_nand_blocks_raw", "bad_system_nand_blocks_normalized",
    "xor_recovery_count", "uncorrectable_read_err_count", "soft_ecc_err_count", "end_to_end_detected_err",
    "end_to_end_corrected_err", "system_data_used_percent", "refresh_counts", "user_data_erase_count_max",
    "user_data_erase_count_min", "thermal_throttling_event_count", "thermal_throttling_current_status",
    "dssd_errata_version", "dssd_point_version", "dssd_minor_version", "dssd_major_version",
    "pcie_correctable_err_count", "incomplete_shoutdowns", "percent_free_blocks", "capacitor_health",
    "nvme_base_errata_version", "nvme_cmdset_errata_version", "nvme_over_pcie_errate_version",
    "nvme_mi_errata_version", "unaligned_io", "security_version", "total_nuse", "plp_start_count",
    "endurance_estimate", "pcie_link_retaining_count", "power_state_change_count", "lowest_permitted_fw_rev",
    "total_media_dies", "total_die_failure_tolerance", "media_dies_offline", "max_temperature_recorded",
    "form_factor", "nand_avg_erase_count", "command_timeouts", "sys_area_program_fail_count_raw",
    "sys_area_program_fail_count_normalized", "sys_area_uncorr_read_count_raw",
    "sys_area_uncorr_read_count_normalized", "sys_area_erase_fail_count_raw",
    "sys_area_erase_fail_count_normalized", "max_peak_power_capability", "current_max_avg_power",
    "lifetime_power_consumed", "dssd_firmware_revision", "dssd_firmware_build_uuid", "dssd_firmware_build_label",
    "die_in_use_bad_nand_block_raw", "die_in_use_bad_nand_block_normalized", "log_page_version",
]

# nvme-cli struct member name -> its snake_case JSON key, where they differ (from ocp-print-json.c).
NVME_CLI_MEMBER_TO_KEY = {
    "uncorrectable_read_err_count": "uncorrectable_read_errors",
    "soft_ecc_err_count": "soft_ecc_error_count",
    "end_to_end_detected_err": "end_to_end_detected_errors",
    "end_to_end_corrected_err": "end_to_end_corrected_errors",
    "system_data_used_percent": "system_data_percent_used",
    "refresh_counts": "refresh_count",
    "user_data_erase_count_max": "max_user_data_erase_count",
    "user_data_erase_count_min": "min_user_data_erase_count",
    "thermal_throttling_event_count": "thermal_throttling_events",
    "thermal_throttling_current_status": "current_throttling_status",
    "dssd_errata_version": "errata_version_field",
    "dssd_point_version": "point_version_field",
    "dssd_minor_version": "minor_version_field",
    "dssd_major_version": "major_version_field",
    "pcie_correctable_err_count": "pcie_correctable_errors",
    "incomplete_shoutdowns": "incomplete_shutdowns",
    "nvme_cmdset_errata_version": "nvme_command_set_errata_version",
    "nvme_over_pcie_errate_version": "nvme_over_pcie_errata_version",
    "security_version": "security_version_number",
    "total_nuse": "nuse_namespace_utilization",
    "pcie_link_retaining_count": "pcie_link_retraining_count",
    "lowest_permitted_fw_rev": "lowest_permitted_firmware_revision",
    "sys_area_program_fail_count_normalized": "sys_area_program_fail_count_noralized",
    "sys_area_uncorr_read_count_raw": "sys_area_uncorrectable_read_count_raw",
    "sys_area_uncorr_read_count_normalized": "sys_area_uncorrectable_read_count_noralized",
    "sys_area_erase_fail_count_normalized": "sys_area_erase_fail_count_noralized",
}

# NVM Express Base Specification 2.1, "SMART / Health Information Log Page" (Log Identifier 02h).
SMART_SPEC: list[tuple[int, int, str]] = [
    (0, 0, "critical_warning"),
    (2, 1, "temperature"),
    (3, 3, "avail_spare"),
    (4, 4, "spare_thresh"),
    (5, 5, "percent_used"),
    (6, 6, "endurance_grp_critical_warning_summary"),
    (47, 32, "data_units_read"),
    (63, 48, "data_units_written"),
    (79, 64, "host_read_commands"),
    (95, 80, "host_write_commands"),
    (111, 96, "controller_busy_time"),
    (127, 112, "power_cycles"),
    (143, 128, "power_on_hours"),
    (159, 144, "unsafe_shutdowns"),
    (175, 160, "media_errors"),
    (191, 176, "num_err_log_entries"),
    (195, 192, "warning_temp_time"),
    (199, 196, "critical_comp_time"),
    (201, 200, "temperature_sensor_1"),
    (203, 202, "temperature_sensor_2"),
    (205, 204, "temperature_sensor_3"),
    (207, 206, "temperature_sensor_4"),
    (209, 208, "temperature_sensor_5"),
    (211, 210, "temperature_sensor_6"),
    (213, 212, "temperature_sensor_7"),
    (215, 214, "temperature_sensor_8"),
    (219, 216, "thm_temp1_trans_count"),
    (223, 220, "thm_temp2_trans_count"),
    (227, 224, "thm_temp1_total_time"),
    (231, 228, "thm_temp2_total_time"),
    (239, 232, "op_lifetime_energy_consumed"),
    (243, 240, "interval_power_measurement"),
]


def put_le(buf: bytearray, last: int, first: int, value: int) -> None:
    """Write ``value`` little-endian into bytes first..last, one byte at a time; refuse what does not fit."""
    width = last - first + 1
    for i in range(width):
        buf[first + i] = (value >> (8 * i)) & 0xFF
    if value >> (8 * width):
        raise ValueError(f"{value} does not fit in bytes {last}:{first}")


def spec_c0(values: dict[str, object], version: int) -> bytes:
    """A C0h log built from C0_SPEC only."""
    import uuid

    buf = bytearray(512)
    for last, first, key, since in C0_SPEC:
        if key == "log_page_version":
            put_le(buf, last, first, version)
            continue
        if since > version or key not in values:
            continue
        value = values[key]
        if key in C0_TEXT_FIELDS:
            raw = str(value).encode("ascii")
            buf[first:first + len(raw)] = raw
        elif key in C0_UUID_FIELDS:
            buf[first:last + 1] = uuid.UUID(str(value)).bytes
        else:
            put_le(buf, last, first, int(value))  # type: ignore[call-overload]
    buf[496:512] = C0_GUID_BYTES_496_511
    return bytes(buf)


def spec_smart(values: dict[str, int]) -> bytes:
    buf = bytearray(512)
    for last, first, key in SMART_SPEC:
        if key in values:
            put_le(buf, last, first, values[key])
    return bytes(buf)


def distinct_values(spec: list[tuple[int, int, str, int]] | list[tuple[int, int, str]], seed: int = 1
                    ) -> dict[str, object]:
    """A value for every numeric field that fills its whole width with bytes differing from field to field
    (so a shifted offset or a wrong width shows); 128-bit fields get values beyond 2**64."""
    values: dict[str, object] = {}
    for n, row in enumerate(spec):
        last, first, key = row[0], row[1], row[2]
        if key == "log_page_version":
            continue
        width = last - first + 1
        if key in C0_TEXT_FIELDS:
            values[key] = ("FW" + str(n) * width)[: min(width, 8 if width == 8 else 40)]
            continue
        if key in C0_UUID_FIELDS:
            values[key] = "12345678-9abc-4def-8123-456789abcdef"
            continue
        value = 0
        for i in range(width):
            value |= (((n * 31 + i * 17 + seed) % 254) + 1) << (8 * i)
        values[key] = value
    return values

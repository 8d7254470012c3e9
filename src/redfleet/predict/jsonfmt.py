"""The JSON forms of the two health logs: nvme-cli and smartctl output, read and written.

Read:

* ``nvme smart-log -o json`` — snake_case keys in every nvme-cli version (``critical_warning`` is an object
  with ``value`` under ``--verbose``/human output in 2.x); 128-bit counters are plain JSON numbers that may
  exceed 64 bits (older releases printed some as floats, which are taken when integral).
* ``nvme ocp smart-add-log -o json`` — two key styles: the original human-readable keys ("Physical media
  units written", "Bad user nand blocks - Raw", "Log page version", …; still the default) and the snake_case
  keys of ``--output-format-version=2`` (``physical_media_units_written``, ``bad_user_nand_blocks_raw``, …,
  ``log_page_version``). Physical media units come as ``{"hi": …, "lo": …}``.
* ``smartctl -j -a /dev/nvmeX`` — ``nvme_smart_health_information_log`` (temperatures in °C; values over
  64 bits carry a ``KEY_s`` string, which is preferred).

Written: the same three forms from decoded fields (the simulator serves them; the tests use them as
fixtures' cross-check).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from redfleet.predict.layout import (
    OCP_C0_BY_KEY,
    OCP_C0_GUID_TEXT,
    OCP_VERSION_SPEC,
    OCP_VERSIONS,
    SMART_BY_KEY,
    SMART_FIELDS,
)
from redfleet.predict.logs import DecodedLog, LogFormatError

Style = Literal["snake", "human"]

GUID_JSON = "0x" + OCP_C0_GUID_TEXT.replace("-", "").lower()

# nvme-cli's human-readable C0h keys (nvme ocp smart-add-log -o json, the default output format version 1),
# in the order nvme-cli prints them, and the snake_case key each one means.
OCP_HUMAN_KEYS: tuple[tuple[str, str], ...] = (
    ("Physical media units written", "physical_media_units_written"),
    ("Physical media units read", "physical_media_units_read"),
    ("Bad user nand blocks - Raw", "bad_user_nand_blocks_raw"),
    ("Bad user nand blocks - Normalized", "bad_user_nand_blocks_normalized"),
    ("Bad system nand blocks - Raw", "bad_system_nand_blocks_raw"),
    ("Bad system nand blocks - Normalized", "bad_system_nand_blocks_normalized"),
    ("XOR recovery count", "xor_recovery_count"),
    ("Uncorrectable read error count", "uncorrectable_read_errors"),
    ("Soft ecc error count", "soft_ecc_error_count"),
    ("End to end detected errors", "end_to_end_detected_errors"),
    ("End to end corrected errors", "end_to_end_corrected_errors"),
    ("System data percent used", "system_data_percent_used"),
    ("Refresh counts", "refresh_count"),
    ("Max User data erase counts", "max_user_data_erase_count"),
    ("Min User data erase counts", "min_user_data_erase_count"),
    ("Number of Thermal throttling events", "thermal_throttling_events"),
    ("Current throttling status", "current_throttling_status"),
    ("PCIe correctable error count", "pcie_correctable_errors"),
    ("Incomplete shutdowns", "incomplete_shutdowns"),
    ("Percent free blocks", "percent_free_blocks"),
    ("Capacitor health", "capacitor_health"),
    ("Unaligned I/O", "unaligned_io"),
    ("Security Version Number", "security_version_number"),
    ("NUSE - Namespace utilization", "nuse_namespace_utilization"),
    ("PLP start count", "plp_start_count"),
    ("Endurance estimate", "endurance_estimate"),
    ("Log page version", "log_page_version"),
    ("Log page GUID", "log_page_guid"),
    ("Form factor", "form_factor"),
    ("Die use badnandblock raw", "die_in_use_bad_nand_block_raw"),
    ("Die use badnandblock normal", "die_in_use_bad_nand_block_normalized"),
    ("NVMe Over Pcie Errata Version", "nvme_over_pcie_errata_version"),
    ("NVMe Mi Errata Version", "nvme_mi_errata_version"),
    ("Total media dies", "total_media_dies"),
    ("Total die failure tolerance", "total_die_failure_tolerance"),
    ("Media dies offline", "media_dies_offline"),
    ("Max temperature recorded", "max_temperature_recorded"),
    ("Nand avg erase count", "nand_avg_erase_count"),
    ("Command timeouts", "command_timeouts"),
    ("Sys area program fail count raw", "sys_area_program_fail_count_raw"),
    ("Sys area program fail count noralized", "sys_area_program_fail_count_noralized"),
    ("Sys area uncorrectable read count raw", "sys_area_uncorrectable_read_count_raw"),
    ("Sys area uncorrectable read count noralized", "sys_area_uncorrectable_read_count_noralized"),
    ("Sys area erase fail count raw", "sys_area_erase_fail_count_raw"),
    ("Sys area erase fail count noralized", "sys_area_erase_fail_count_noralized"),
    ("Max peak power capability", "max_peak_power_capability"),
    ("Current max avg power", "current_max_avg_power"),
    ("Lifetime power consumed", "lifetime_power_consumed"),
    ("Dssd firmware revision", "dssd_firmware_revision"),
    ("Dssd firmware build UUID", "dssd_firmware_build_uuid"),
    ("Dssd firmware build label", "dssd_firmware_build_label"),
    ("NVMe Command Set Errata Version", "nvme_command_set_errata_version"),
    ("Lowest Permitted Firmware Revision", "lowest_permitted_firmware_revision"),
    ("Errata Version Field", "errata_version_field"),
    ("Point Version Field", "point_version_field"),
    ("Minor Version Field", "minor_version_field"),
    ("Major Version Field", "major_version_field"),
    ("NVMe Base Errata Version", "nvme_base_errata_version"),
    ("PCIe Link Retraining Count", "pcie_link_retraining_count"),
    ("Power State Change Count", "power_state_change_count"),
)
_HUMAN_TO_SNAKE = {human: snake for human, snake in OCP_HUMAN_KEYS}
_SNAKE_TO_HUMAN = {snake: human for human, snake in OCP_HUMAN_KEYS}
# Other spellings seen in nvme-cli releases and structure member names.
_OCP_ALIASES = {
    "NVMe Errata Version": "nvme_base_errata_version",  # nvme-cli ≤ 2.9
    "uncorrectable_read_err_count": "uncorrectable_read_errors",
    "uncorrectable_read_error_count": "uncorrectable_read_errors",
    "soft_ecc_err_count": "soft_ecc_error_count",
    "end_to_end_detected_err": "end_to_end_detected_errors",
    "end_to_end_corrected_err": "end_to_end_corrected_errors",
    "system_data_used_percent": "system_data_percent_used",
    "refresh_counts": "refresh_count",
    "user_data_erase_count_max": "max_user_data_erase_count",
    "user_data_erase_count_min": "min_user_data_erase_count",
    "thermal_throttling_event_count": "thermal_throttling_events",
    "thermal_throttling_current_status": "current_throttling_status",
    "pcie_correctable_err_count": "pcie_correctable_errors",
    "pcie_correctable_error_count": "pcie_correctable_errors",
    "incomplete_shoutdowns": "incomplete_shutdowns",
    "security_version": "security_version_number",
    "total_nuse": "nuse_namespace_utilization",
    "pcie_link_retaining_count": "pcie_link_retraining_count",
    "lowest_permitted_fw_rev": "lowest_permitted_firmware_revision",
    "nvme_cmdset_errata_version": "nvme_command_set_errata_version",
    "nvme_over_pcie_errate_version": "nvme_over_pcie_errata_version",
    "sys_area_program_fail_count_normalized": "sys_area_program_fail_count_noralized",
    "sys_area_uncorr_read_count_raw": "sys_area_uncorrectable_read_count_raw",
    "sys_area_uncorrectable_read_count_normalized": "sys_area_uncorrectable_read_count_noralized",
    "sys_area_uncorr_read_count_normalized": "sys_area_uncorrectable_read_count_noralized",
    "sys_area_erase_fail_count_normalized": "sys_area_erase_fail_count_noralized",
    "die_in_use_bad_nand_block_normalised": "die_in_use_bad_nand_block_normalized",
}
# Keys nvme-cli prints for each log page version beyond the base set (its "case" ladder), snake style.
_OCP_KEYS_BY_VERSION: dict[int, tuple[str, ...]] = {
    3: ("errata_version_field", "point_version_field", "minor_version_field", "major_version_field",
        "nvme_base_errata_version", "pcie_link_retraining_count", "power_state_change_count"),
    4: ("nvme_command_set_errata_version", "lowest_permitted_firmware_revision"),
    5: ("nvme_over_pcie_errata_version", "nvme_mi_errata_version", "total_media_dies",
        "total_die_failure_tolerance", "media_dies_offline", "max_temperature_recorded", "nand_avg_erase_count",
        "command_timeouts", "sys_area_program_fail_count_raw", "sys_area_program_fail_count_noralized",
        "sys_area_uncorrectable_read_count_raw", "sys_area_uncorrectable_read_count_noralized",
        "sys_area_erase_fail_count_raw", "sys_area_erase_fail_count_noralized", "max_peak_power_capability",
        "current_max_avg_power", "lifetime_power_consumed", "dssd_firmware_revision", "dssd_firmware_build_uuid",
        "dssd_firmware_build_label"),
    6: ("form_factor", "die_in_use_bad_nand_block_raw", "die_in_use_bad_nand_block_normalized"),
}
_OCP_BASE_KEYS: tuple[str, ...] = (
    "physical_media_units_written", "physical_media_units_read", "bad_user_nand_blocks_raw",
    "bad_user_nand_blocks_normalized", "bad_system_nand_blocks_raw", "bad_system_nand_blocks_normalized",
    "xor_recovery_count", "uncorrectable_read_errors", "soft_ecc_error_count", "end_to_end_detected_errors",
    "end_to_end_corrected_errors", "system_data_percent_used", "refresh_count", "max_user_data_erase_count",
    "min_user_data_erase_count", "thermal_throttling_events", "current_throttling_status",
    "pcie_correctable_errors", "incomplete_shutdowns", "percent_free_blocks", "capacitor_health", "unaligned_io",
    "security_version_number", "nuse_namespace_utilization", "plp_start_count", "endurance_estimate",
)
_HILO_KEYS = frozenset({"physical_media_units_written", "physical_media_units_read"})

# smartctl -j, nvme_smart_health_information_log: its key -> nvme-cli key.
_SMARTCTL_KEYS = {
    "critical_warning": "critical_warning",
    "available_spare": "avail_spare",
    "available_spare_threshold": "spare_thresh",
    "percentage_used": "percent_used",
    "data_units_read": "data_units_read",
    "data_units_written": "data_units_written",
    "host_reads": "host_read_commands",
    "host_writes": "host_write_commands",
    "controller_busy_time": "controller_busy_time",
    "power_cycles": "power_cycles",
    "power_on_hours": "power_on_hours",
    "unsafe_shutdowns": "unsafe_shutdowns",
    "media_errors": "media_errors",
    "num_err_log_entries": "num_err_log_entries",
    "warning_temp_time": "warning_temp_time",
    "critical_comp_time": "critical_comp_time",
    "thermal_mgmt_temperature_1_transition_count": "thm_temp1_trans_count",
    "thermal_mgmt_temperature_2_transition_count": "thm_temp2_trans_count",
    "thermal_mgmt_temperature_1_total_time": "thm_temp1_total_time",
    "thermal_mgmt_temperature_2_total_time": "thm_temp2_total_time",
}
_SMART_ALIASES = {  # other nvme-cli / libnvme spellings
    "host_reads": "host_read_commands",
    "host_writes": "host_write_commands",
    "ctrl_busy_time": "controller_busy_time",
    "endu_grp_crit_warn_sumry": "endurance_grp_critical_warning_summary",
    "percentage_used": "percent_used",
    "available_spare": "avail_spare",
    "available_spare_threshold": "spare_thresh",
}


# --- values ----------------------------------------------------------------------------------------------
def to_int(value: Any, key: str = "value") -> int:
    """An exact integer from what JSON tools print: int, integral float, numeric string, {"hi","lo"}."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            raise LogFormatError(f"{key}: {value!r} is not a whole number")
        return int(value)
    if isinstance(value, str):
        text = value.strip().replace(",", "").replace("_", "")
        try:
            return int(text, 0) if text.lower().startswith(("0x", "0o", "0b")) else int(text)
        except ValueError:
            try:
                return to_int(float(text), key)
            except ValueError:
                raise LogFormatError(f"{key}: {value!r} is not a number") from None
    if isinstance(value, Mapping):
        if "hi" in value and "lo" in value:
            return (to_int(value["hi"], key) << 64) | to_int(value["lo"], key)
        if "value" in value:
            return to_int(value["value"], key)
    raise LogFormatError(f"{key}: {value!r} is not a number")


def _normalize_guid(text: Any) -> str:
    return re.sub(r"[^0-9a-f]", "", str(text).lower().removeprefix("0x"))


# --- reading ---------------------------------------------------------------------------------------------
def detect(doc: Any) -> str | None:
    """Which known JSON form a parsed document is: "smartctl", "nvme-smart-log", "nvme-ocp-c0" or None."""
    if not isinstance(doc, Mapping):
        return None
    if "smartctl" in doc or "nvme_smart_health_information_log" in doc or "json_format_version" in doc:
        return "smartctl"
    keys = set(doc)
    if keys & {"log_page_guid", "Log page GUID", "physical_media_units_written", "Physical media units written",
               "bad_user_nand_blocks_raw", "Bad user nand blocks - Raw"}:
        return "nvme-ocp-c0"
    if {"critical_warning", "avail_spare"} <= keys or {"critical_warning", "data_units_read"} <= keys:
        return "nvme-smart-log"
    return None


def parse_nvme_smart_log(doc: Mapping[str, Any]) -> DecodedLog:
    """``nvme smart-log -o json`` (any nvme-cli version) → 02h fields."""
    fields: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in doc.items():
        canonical = _SMART_ALIASES.get(key, key)
        if canonical not in SMART_BY_KEY:
            notes.append(f"ignored key {key!r}")
            continue
        fields[canonical] = to_int(value, key)
    missing = [k for k in ("critical_warning", "avail_spare", "spare_thresh", "percent_used") if k not in fields]
    if missing:
        raise LogFormatError(f"nvme smart-log JSON: missing {', '.join(missing)}")
    for key in ("avail_spare", "spare_thresh"):
        if not 0 <= fields[key] <= 100:
            raise LogFormatError(f"nvme smart-log JSON: {key} is {fields[key]}, a percentage is 0..100")
    return DecodedLog("smart", fields, source_format="nvme-cli-json", notes=notes)


def parse_nvme_ocp_c0(doc: Mapping[str, Any], *, strict: bool = True) -> DecodedLog:
    """``nvme ocp smart-add-log -o json`` in either key style → C0h fields (checks GUID and version)."""
    fields: dict[str, Any] = {}
    notes: list[str] = []
    human = any(key in _HUMAN_TO_SNAKE or key in ("NVMe Errata Version",) for key in doc)
    for key, value in doc.items():
        canonical = _HUMAN_TO_SNAKE.get(key) or _OCP_ALIASES.get(key) or key
        if canonical == "log_page_guid":
            fields[canonical] = value
            continue
        f = OCP_C0_BY_KEY.get(canonical)
        if f is None:
            notes.append(f"ignored key {key!r}")
            continue
        if f.kind == "uint":
            fields[canonical] = to_int(value, key)
        else:
            fields[canonical] = str(value).rstrip("\x00").rstrip()
    what = "nvme ocp smart-add-log JSON"
    if "log_page_guid" not in fields:
        raise LogFormatError(f"{what}: no log page GUID; cannot tell it is the OCP C0h log")
    if _normalize_guid(fields["log_page_guid"]) != _normalize_guid(OCP_C0_GUID_TEXT):
        raise LogFormatError(f"{what}: wrong GUID {fields['log_page_guid']!r}, "
                             f"the OCP C0h log's is {OCP_C0_GUID_TEXT}")
    fields["log_page_guid"] = GUID_JSON
    if "log_page_version" not in fields:
        raise LogFormatError(f"{what}: no log page version")
    version = fields["log_page_version"]
    if version not in OCP_VERSION_SPEC:
        known = ", ".join(f"{v} (OCP {OCP_VERSION_SPEC[v]})" for v in OCP_VERSIONS)
        if strict or version < OCP_VERSIONS[0]:
            raise LogFormatError(f"{what}: unknown log page version {version}; known: {known}")
        notes.append(f"log page version {version} is newer than this decoder")
    else:
        late = sorted(k for k in fields if k in OCP_C0_BY_KEY and OCP_C0_BY_KEY[k].since > version)
        if late:
            notes.append(f"fields not defined in log page version {version} were given: {', '.join(late)}")
    missing = [k for k in _OCP_BASE_KEYS if k not in fields]
    if missing:
        raise LogFormatError(f"{what}: missing {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    return DecodedLog("ocp_c0", fields, version=version,
                      source_format="nvme-cli-json-legacy" if human else "nvme-cli-json", notes=notes)


def _smartctl_value(log: Mapping[str, Any], key: str) -> Any:
    if f"{key}_s" in log:  # exact decimal string for values beyond 64 bits (or beyond 2^53 in verbose mode)
        return log[f"{key}_s"]
    return log[key]


def parse_smartctl(doc: Mapping[str, Any]) -> DecodedLog:
    """``smartctl -j -a /dev/nvmeX`` → 02h fields (temperatures back to kelvin, as in the log)."""
    device = doc.get("device") or {}
    protocol = str(device.get("protocol", "")).lower()
    if protocol and protocol != "nvme":
        raise LogFormatError(f"smartctl JSON: device protocol is {device.get('protocol')!r}; only NVMe drives "
                             "carry the NVMe SMART/Health log")
    log = doc.get("nvme_smart_health_information_log")
    if not isinstance(log, Mapping):
        messages = [m.get("string", "") for m in (doc.get("smartctl") or {}).get("messages", [])
                    if isinstance(m, Mapping)]
        detail = f" (smartctl said: {'; '.join(messages)})" if messages else ""
        raise LogFormatError(f"smartctl JSON: no nvme_smart_health_information_log{detail}")
    fields: dict[str, Any] = {}
    for key, canonical in _SMARTCTL_KEYS.items():
        if key in log:
            fields[canonical] = to_int(_smartctl_value(log, key), key)
    if "temperature" in log:
        fields["temperature"] = to_int(log["temperature"], "temperature") + 273
    for i, value in enumerate(log.get("temperature_sensors") or []):
        if value is not None and i < 8:
            fields[f"temperature_sensor_{i + 1}"] = to_int(value, "temperature_sensors") + 273
    missing = [k for k in ("critical_warning", "avail_spare", "spare_thresh", "percent_used") if k not in fields]
    if missing:
        raise LogFormatError(f"smartctl JSON: nvme_smart_health_information_log lacks {', '.join(missing)}")
    info = {k: doc[k2] for k, k2 in (("model", "model_name"), ("serial", "serial_number"),
                                     ("firmware", "firmware_version")) if k2 in doc}
    return DecodedLog("smart", fields, source_format="smartctl-json", device=info)


def parse_document(doc: Any) -> DecodedLog:
    """Any of the three JSON forms (already parsed) → a decoded log; LogFormatError if none fits."""
    kind = detect(doc)
    if kind == "smartctl":
        return parse_smartctl(doc)
    if kind == "nvme-ocp-c0":
        return parse_nvme_ocp_c0(doc)
    if kind == "nvme-smart-log":
        return parse_nvme_smart_log(doc)
    shown = ", ".join(list(doc)[:6]) if isinstance(doc, Mapping) else type(doc).__name__
    raise LogFormatError("JSON is not nvme-cli smart-log, nvme-cli ocp smart-add-log or smartctl -j output "
                         f"(top level: {shown})")


# --- writing ---------------------------------------------------------------------------------------------
def _hilo(value: int) -> dict[str, int]:
    return {"hi": value >> 64, "lo": value & ((1 << 64) - 1)}


def nvme_cli_smart_log(fields: Mapping[str, Any], *, verbose: bool = False) -> dict[str, Any]:
    """What ``nvme smart-log -o json`` prints for these 02h fields."""
    out: dict[str, Any] = {}
    cw = int(fields.get("critical_warning", 0))
    if verbose:
        out["critical_warning"] = {
            "value": cw, "available_spare": cw & 1, "temp_threshold": (cw >> 1) & 1,
            "reliability_degraded": (cw >> 2) & 1, "ro": (cw >> 3) & 1, "vmbu_failed": (cw >> 4) & 1,
            "pmr_ro": (cw >> 5) & 1,
        }
    else:
        out["critical_warning"] = cw
    for f in SMART_FIELDS[1:]:
        value = int(fields.get(f.key, 0) or 0)
        if f.key.startswith("temperature_sensor_") and value == 0:
            continue  # nvme-cli leaves out sensors that read 0
        out[f.key] = value
    return out


def nvme_cli_ocp_c0(fields: Mapping[str, Any], style: Style = "snake") -> dict[str, Any]:
    """What ``nvme ocp smart-add-log -o json`` prints: ``style="human"`` the default (format version 1)
    keys, ``"snake"`` those of ``--output-format-version=2``. ``fields["log_page_version"]`` decides which
    version-dependent keys appear, as in nvme-cli."""
    version = int(fields.get("log_page_version", 0))
    keys = [*_OCP_BASE_KEYS, "log_page_version", "log_page_guid"]
    for v in sorted(_OCP_KEYS_BY_VERSION, reverse=True):  # nvme-cli prints the newest additions first
        if version >= v:
            keys += list(_OCP_KEYS_BY_VERSION[v])
    out: dict[str, Any] = {}
    for key in keys:
        if key == "log_page_guid":
            value: Any = GUID_JSON
        elif key == "log_page_version":
            value = version
        else:
            f = OCP_C0_BY_KEY[key]
            raw = fields.get(key)
            if f.kind == "uint":
                value = int(raw or 0)
                if key in _HILO_KEYS:
                    value = _hilo(value)
            else:
                value = "" if raw is None else str(raw)
        out[_SNAKE_TO_HUMAN[key] if style == "human" else key] = value
    return out


def smartctl_json(fields: Mapping[str, Any], *, model: str = "", serial: str = "", firmware: str = "",
                  device: str = "/dev/nvme0") -> dict[str, Any]:
    """What ``smartctl -j -a /dev/nvme0`` prints (the parts redfleet reads) for these 02h fields."""
    log: dict[str, Any] = {"nsid": -1}
    inverse = {v: k for k, v in _SMARTCTL_KEYS.items()}
    for f in SMART_FIELDS:
        if f.key in ("temperature",) or f.key.startswith("temperature_sensor_"):
            continue
        key = inverse.get(f.key)
        if key is None:
            continue
        value = int(fields.get(f.key, 0) or 0)
        if key.startswith("thermal_mgmt_") and not any(
                fields.get(k) for k in ("thm_temp1_trans_count", "thm_temp2_trans_count", "thm_temp1_total_time",
                                        "thm_temp2_total_time")):
            continue  # smartctl prints these only when one is non-zero
        log[key] = value
        if value >= 1 << 64:
            log[f"{key}_s"] = str(value)
    kelvin = int(fields.get("temperature", 0) or 0)
    if kelvin:
        log["temperature"] = kelvin - 273
    sensors = [int(fields.get(f"temperature_sensor_{i + 1}", 0) or 0) for i in range(8)]
    if any(sensors):
        last = max(i for i, s in enumerate(sensors) if s)
        log["temperature_sensors"] = [s - 273 if s else None for s in sensors[: last + 1]]
    cw = int(fields.get("critical_warning", 0) or 0)
    # smartctl's key order: the header, then the log; kept close to what 7.4 prints.
    return {
        "json_format_version": [1, 0],
        "smartctl": {"version": [7, 4], "argv": ["smartctl", "-j", "-a", device], "exit_status": 0 if not cw else 8},
        "device": {"name": device, "info_name": device, "type": "nvme", "protocol": "NVMe"},
        "model_name": model,
        "serial_number": serial,
        "firmware_version": firmware,
        "smart_support": {"available": True, "enabled": True},
        "smart_status": {"passed": cw == 0, "nvme": {"value": cw}},
        "nvme_smart_health_information_log": log,
        "temperature": {"current": kelvin - 273} if kelvin else {},
        "power_cycle_count": int(fields.get("power_cycles", 0) or 0),
        "power_on_time": {"hours": int(fields.get("power_on_hours", 0) or 0)},
    }


def ocp_keys_for_version(version: int) -> list[str]:
    """The snake_case keys nvme-cli prints for a C0h log of that version (order as printed)."""
    return list(nvme_cli_ocp_c0({"log_page_version": version}))

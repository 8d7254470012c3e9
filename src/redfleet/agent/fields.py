"""The metric names the agent pushes: DCGM field names (and ids), so that NVML readings and a dcgm-exporter scrape
land on the same series in ``redfleet serve``; redfleet's own in-band metrics use a ``REDFLEET_`` prefix.

The mapping, one row per field (ids from DCGM's ``dcgm_fields.h``; "-" = no NVML reading for it here):

=============================================== ==== ======= ==================================================
DCGM field                                      id   type    NVML reading (nvidia-ml-py) → value
=============================================== ==== ======= ==================================================
DCGM_FI_DEV_SM_CLOCK                            100  gauge   nvmlDeviceGetClockInfo(h, NVML_CLOCK_SM) MHz
DCGM_FI_DEV_MEM_CLOCK                           101  gauge   nvmlDeviceGetClockInfo(h, NVML_CLOCK_MEM) MHz
DCGM_FI_DEV_CLOCKS_EVENT_REASONS                112  gauge   nvmlDeviceGetCurrentClocksEventReasons(h) bitmask
DCGM_FI_DEV_MEMORY_TEMP                         140  gauge   nvmlDeviceGetFieldValues(h, [NVML_FI_DEV_MEMORY_TEMP]) °C
DCGM_FI_DEV_GPU_TEMP                            150  gauge   nvmlDeviceGetTemperature(h, NVML_TEMPERATURE_GPU) °C
DCGM_FI_DEV_POWER_USAGE                         155  gauge   nvmlDeviceGetPowerUsage(h) mW / 1000 → W
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION            156  counter nvmlDeviceGetTotalEnergyConsumption(h) mJ
DCGM_FI_DEV_PCIE_REPLAY_COUNTER                 202  counter nvmlDeviceGetPcieReplayCounter(h)
DCGM_FI_DEV_GPU_UTIL                            203  gauge   nvmlDeviceGetUtilizationRates(h).gpu %
DCGM_FI_DEV_MEM_COPY_UTIL                       204  gauge   nvmlDeviceGetUtilizationRates(h).memory %
DCGM_FI_DEV_ENC_UTIL                            206  gauge   -
DCGM_FI_DEV_DEC_UTIL                            207  gauge   -
DCGM_FI_DEV_XID_ERRORS                          230  gauge   last Xid from nvmlEventSetWait (event type
                                                             nvmlEventTypeXidCriticalError, .eventData); sticky,
                                                             like DCGM: a value, not a counter
DCGM_FI_DEV_POWER_VIOLATION                     240  counter nvmlDeviceGetViolationStatus(h, NVML_PERF_POLICY_POWER)
                                                             .violationTime ns
DCGM_FI_DEV_THERMAL_VIOLATION                   241  counter nvmlDeviceGetViolationStatus(h, NVML_PERF_POLICY_THERMAL)
                                                             .violationTime ns
DCGM_FI_DEV_FB_FREE                             251  gauge   nvmlDeviceGetMemoryInfo(h, nvmlMemory_v2).free MiB
DCGM_FI_DEV_FB_USED                             252  gauge   nvmlDeviceGetMemoryInfo(h, nvmlMemory_v2).used MiB
DCGM_FI_DEV_FB_RESERVED                         253  gauge   nvmlDeviceGetMemoryInfo(h, nvmlMemory_v2).reserved MiB
DCGM_FI_DEV_ECC_SBE_VOL_TOTAL                   310  counter nvmlDeviceGetTotalEccErrors(h, CORRECTED, VOLATILE_ECC)
DCGM_FI_DEV_ECC_DBE_VOL_TOTAL                   311  counter nvmlDeviceGetTotalEccErrors(h, UNCORRECTED, VOLATILE_ECC)
DCGM_FI_DEV_ECC_SBE_AGG_TOTAL                   312  counter nvmlDeviceGetTotalEccErrors(h, CORRECTED, AGGREGATE_ECC)
DCGM_FI_DEV_ECC_DBE_AGG_TOTAL                   313  counter nvmlDeviceGetTotalEccErrors(h, UNCORRECTED, AGGREGATE_ECC)
DCGM_FI_DEV_RETIRED_SBE                         390  counter len(nvmlDeviceGetRetiredPages(h, MULTIPLE_SINGLE_BIT_ECC))
DCGM_FI_DEV_RETIRED_DBE                         391  counter len(nvmlDeviceGetRetiredPages(h, DOUBLE_BIT_ECC_ERROR))
DCGM_FI_DEV_RETIRED_PENDING                     392  counter nvmlDeviceGetRetiredPagesPendingStatus(h) (0/1)
DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS         393  counter nvmlDeviceGetRemappedRows(h)[1]
DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS           394  counter nvmlDeviceGetRemappedRows(h)[0]
DCGM_FI_DEV_ROW_REMAP_FAILURE                   395  gauge   nvmlDeviceGetRemappedRows(h)[3]
DCGM_FI_DEV_ROW_REMAP_PENDING                   396  gauge   nvmlDeviceGetRemappedRows(h)[2]
DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL   409  counter Σ active links nvmlDeviceGetNvLinkErrorCounter(h, l,
                                                             NVML_NVLINK_ERROR_DL_CRC_FLIT) (+ per link, label nvlink)
DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL   419  counter same, NVML_NVLINK_ERROR_DL_CRC_DATA
DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL     429  counter same, NVML_NVLINK_ERROR_DL_REPLAY
DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL   439  counter same, NVML_NVLINK_ERROR_DL_RECOVERY
DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL              449  counter -
DCGM_FI_DEV_VGPU_LICENSE_STATUS                 526  gauge   -
DCGM_FI_PROF_GR_ENGINE_ACTIVE                   1001 gauge   - (profiling metrics: DCGM only)
DCGM_FI_PROF_SM_ACTIVE                          1002 gauge   -
DCGM_FI_PROF_SM_OCCUPANCY                       1003 gauge   -
DCGM_FI_PROF_PIPE_TENSOR_ACTIVE                 1004 gauge   -
DCGM_FI_PROF_DRAM_ACTIVE                        1005 gauge   -
DCGM_FI_PROF_PCIE_TX_BYTES                      1009 gauge   -
DCGM_FI_PROF_PCIE_RX_BYTES                      1010 gauge   -
REDFLEET_GPU_RECOVERY_ACTION                    -    gauge   nvmlDeviceGetFieldValues(h, [NVML_FI_DEV_GET_GPU_RECOVERY
                                                             _ACTION]) 0 none 1 GPU reset 2 node reboot 3 drain P2P
                                                             4 drain and reset (the driver's own verdict)
REDFLEET_NVME_*                                 -    gauge   nvme-cli SMART 02h / OCP C0h (see :data:`NVME_METRICS`)
=============================================== ==== ======= ==================================================

dcgm-exporter's default counter list (``default-counters.csv``) leaves the ECC, retired-page, NVLink error and
violation fields commented out, so a stock exporter gives the agent only part of this table; NVML gives the RAS
fields whenever the GPU supports them (NVML_ERROR_NOT_SUPPORTED otherwise: the sample is left out).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldDef:
    name: str
    id: int | None
    kind: str  # gauge | counter
    unit: str = ""


FIELDS: tuple[FieldDef, ...] = (
    FieldDef("DCGM_FI_DEV_SM_CLOCK", 100, "gauge", "MHz"),
    FieldDef("DCGM_FI_DEV_MEM_CLOCK", 101, "gauge", "MHz"),
    FieldDef("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", 112, "gauge", "bitmask"),
    FieldDef("DCGM_FI_DEV_MEMORY_TEMP", 140, "gauge", "C"),
    FieldDef("DCGM_FI_DEV_GPU_TEMP", 150, "gauge", "C"),
    FieldDef("DCGM_FI_DEV_POWER_USAGE", 155, "gauge", "W"),
    FieldDef("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 156, "counter", "mJ"),
    FieldDef("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 202, "counter"),
    FieldDef("DCGM_FI_DEV_GPU_UTIL", 203, "gauge", "%"),
    FieldDef("DCGM_FI_DEV_MEM_COPY_UTIL", 204, "gauge", "%"),
    FieldDef("DCGM_FI_DEV_ENC_UTIL", 206, "gauge", "%"),
    FieldDef("DCGM_FI_DEV_DEC_UTIL", 207, "gauge", "%"),
    FieldDef("DCGM_FI_DEV_XID_ERRORS", 230, "gauge", "xid"),
    FieldDef("DCGM_FI_DEV_POWER_VIOLATION", 240, "counter", "ns"),
    FieldDef("DCGM_FI_DEV_THERMAL_VIOLATION", 241, "counter", "ns"),
    FieldDef("DCGM_FI_DEV_SYNC_BOOST_VIOLATION", 242, "counter", "ns"),
    FieldDef("DCGM_FI_DEV_BOARD_LIMIT_VIOLATION", 243, "counter", "ns"),
    FieldDef("DCGM_FI_DEV_LOW_UTIL_VIOLATION", 244, "counter", "ns"),
    FieldDef("DCGM_FI_DEV_RELIABILITY_VIOLATION", 245, "counter", "ns"),
    FieldDef("DCGM_FI_DEV_FB_TOTAL", 250, "gauge", "MiB"),
    FieldDef("DCGM_FI_DEV_FB_FREE", 251, "gauge", "MiB"),
    FieldDef("DCGM_FI_DEV_FB_USED", 252, "gauge", "MiB"),
    FieldDef("DCGM_FI_DEV_FB_RESERVED", 253, "gauge", "MiB"),
    FieldDef("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", 310, "counter"),
    FieldDef("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", 311, "counter"),
    FieldDef("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", 312, "counter"),
    FieldDef("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", 313, "counter"),
    FieldDef("DCGM_FI_DEV_RETIRED_SBE", 390, "counter"),
    FieldDef("DCGM_FI_DEV_RETIRED_DBE", 391, "counter"),
    FieldDef("DCGM_FI_DEV_RETIRED_PENDING", 392, "counter"),
    FieldDef("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 393, "counter"),
    FieldDef("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", 394, "counter"),
    FieldDef("DCGM_FI_DEV_ROW_REMAP_FAILURE", 395, "gauge"),
    FieldDef("DCGM_FI_DEV_ROW_REMAP_PENDING", 396, "gauge"),
    FieldDef("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", 409, "counter"),
    FieldDef("DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", 419, "counter"),
    FieldDef("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", 429, "counter"),
    FieldDef("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", 439, "counter"),
    FieldDef("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", 449, "counter"),
    FieldDef("DCGM_FI_DEV_VGPU_LICENSE_STATUS", 526, "gauge"),
    FieldDef("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 1001, "gauge", "ratio"),
    FieldDef("DCGM_FI_PROF_SM_ACTIVE", 1002, "gauge", "ratio"),
    FieldDef("DCGM_FI_PROF_SM_OCCUPANCY", 1003, "gauge", "ratio"),
    FieldDef("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 1004, "gauge", "ratio"),
    FieldDef("DCGM_FI_PROF_DRAM_ACTIVE", 1005, "gauge", "ratio"),
    FieldDef("DCGM_FI_PROF_PIPE_FP64_ACTIVE", 1006, "gauge", "ratio"),
    FieldDef("DCGM_FI_PROF_PIPE_FP32_ACTIVE", 1007, "gauge", "ratio"),
    FieldDef("DCGM_FI_PROF_PIPE_FP16_ACTIVE", 1008, "gauge", "ratio"),
    FieldDef("DCGM_FI_PROF_PCIE_TX_BYTES", 1009, "gauge", "B/s"),
    FieldDef("DCGM_FI_PROF_PCIE_RX_BYTES", 1010, "gauge", "B/s"),
    FieldDef("DCGM_FI_PROF_NVLINK_TX_BYTES", 1011, "gauge", "B/s"),
    FieldDef("DCGM_FI_PROF_NVLINK_RX_BYTES", 1012, "gauge", "B/s"),
    FieldDef("REDFLEET_GPU_RECOVERY_ACTION", None, "gauge"),
)

BY_NAME: dict[str, FieldDef] = {f.name: f for f in FIELDS}
BY_ID: dict[int, FieldDef] = {f.id: f for f in FIELDS if f.id is not None}

XID_FIELD = "DCGM_FI_DEV_XID_ERRORS"
# dcgm-exporter's own counter (off by default): XIDs seen in the last window, one series per `xid` label
XID_COUNT_METRIC = "DCGM_EXP_XID_ERRORS_COUNT"

# dcgm-exporter 1.x (the old "dcgm_" namespace, `--use-old-namespace`) → DCGM field name
OLD_NAMESPACE: dict[str, str] = {
    "dcgm_sm_clock": "DCGM_FI_DEV_SM_CLOCK",
    "dcgm_memory_clock": "DCGM_FI_DEV_MEM_CLOCK",
    "dcgm_memory_temp": "DCGM_FI_DEV_MEMORY_TEMP",
    "dcgm_gpu_temp": "DCGM_FI_DEV_GPU_TEMP",
    "dcgm_power_usage": "DCGM_FI_DEV_POWER_USAGE",
    "dcgm_total_energy_consumption": "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "dcgm_pcie_replay_counter": "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "dcgm_gpu_utilization": "DCGM_FI_DEV_GPU_UTIL",
    "dcgm_mem_copy_utilization": "DCGM_FI_DEV_MEM_COPY_UTIL",
    "dcgm_enc_utilization": "DCGM_FI_DEV_ENC_UTIL",
    "dcgm_dec_utilization": "DCGM_FI_DEV_DEC_UTIL",
    "dcgm_xid_errors": "DCGM_FI_DEV_XID_ERRORS",
    "dcgm_power_violation": "DCGM_FI_DEV_POWER_VIOLATION",
    "dcgm_thermal_violation": "DCGM_FI_DEV_THERMAL_VIOLATION",
    "dcgm_fb_free": "DCGM_FI_DEV_FB_FREE",
    "dcgm_fb_used": "DCGM_FI_DEV_FB_USED",
    "dcgm_ecc_sbe_volatile_total": "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "dcgm_ecc_dbe_volatile_total": "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "dcgm_ecc_sbe_aggregate_total": "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
    "dcgm_ecc_dbe_aggregate_total": "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
    "dcgm_retired_pages_sbe": "DCGM_FI_DEV_RETIRED_SBE",
    "dcgm_retired_pages_dbe": "DCGM_FI_DEV_RETIRED_DBE",
    "dcgm_retired_pages_pending": "DCGM_FI_DEV_RETIRED_PENDING",
    "dcgm_nvlink_flit_crc_error_count_total": "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "dcgm_nvlink_data_crc_error_count_total": "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
    "dcgm_nvlink_replay_error_count_total": "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    "dcgm_nvlink_recovery_error_count_total": "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    "dcgm_nvlink_bandwidth_total": "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
}

# NVMe health as samples (labels {"device": "nvme0"}): SMART 02h key → metric. The full logs ride along in
# IngestBatch.nvme (nvme-cli JSON) for the predict package; these are for rules and plots.
NVME_METRICS: dict[str, str] = {
    "critical_warning": "REDFLEET_NVME_CRITICAL_WARNING",
    "avail_spare": "REDFLEET_NVME_AVAIL_SPARE_PERCENT",
    "spare_thresh": "REDFLEET_NVME_SPARE_THRESHOLD_PERCENT",
    "percent_used": "REDFLEET_NVME_PERCENT_USED",
    "media_errors": "REDFLEET_NVME_MEDIA_ERRORS",
    "num_err_log_entries": "REDFLEET_NVME_ERROR_LOG_ENTRIES",
    "unsafe_shutdowns": "REDFLEET_NVME_UNSAFE_SHUTDOWNS",
    "power_on_hours": "REDFLEET_NVME_POWER_ON_HOURS",
    "temperature": "REDFLEET_NVME_TEMPERATURE_CELSIUS",  # the log's kelvin - 273
}


def resolve(name_or_id: str | int) -> FieldDef | None:
    """A DCGM field by name (any case, ``DCGM_FI_`` or old ``dcgm_`` namespace) or by numeric id."""
    if isinstance(name_or_id, int):
        return BY_ID.get(name_or_id)
    s = name_or_id.strip()
    if s.isdigit():
        return BY_ID.get(int(s))
    if s in BY_NAME:
        return BY_NAME[s]
    up = s.upper()
    if up in BY_NAME:
        return BY_NAME[up]
    if not up.startswith("DCGM_FI_") and f"DCGM_FI_DEV_{up}" in BY_NAME:
        return BY_NAME[f"DCGM_FI_DEV_{up}"]
    old = OLD_NAMESPACE.get(s.lower())
    return BY_NAME[old] if old else None

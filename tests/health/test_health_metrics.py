"""Metric rules: thermal blips vs sustained heat, hysteresis, per-model limits, ECC/row-remap, NVLink rates, NVMe,
inlet temperature, the GPU recovery-action field."""

from __future__ import annotations

from redfleet.health import HealthEngine
from redfleet.health.testing import EngineDriver
from redfleet.model.telemetry import Reading, SensorReadings
from redfleet.telemetry.series import SeriesStore

T = "DCGM_FI_DEV_GPU_TEMP"


def _temps(d: EngineDriver, node: str, start: int, end: int, value: float, gpu: int = 0) -> None:
    for t in range(start, end):
        d.gpu(node, float(t), gpu=gpu, **{T: value})


def test_thermal_blip_is_not_a_failure_but_sustained_heat_is():
    d = EngineDriver()
    _temps(d, "n", 0, 20, 60)
    _temps(d, "n", 20, 45, 95)  # 25 s at 95 °C: under the 30 s for-duration
    _temps(d, "n", 45, 120, 60)
    assert d.state("n") == "healthy"
    assert all(c.new == "healthy" for c in d.changes), "a blip must not show in the history"
    _temps(d, "n", 120, 160, 95)  # sustained
    r = d.reason("n", "gpu-temp-critical", "gpu:0")
    assert r is not None and r.severity == "critical" and r.action == "CHECK_COOLING"
    assert r.since == 150.0  # fired once 30 s had passed
    assert d.state("n") == "unhealthy"
    assert d.engine.node_health("n").components == {"gpu:0": "unhealthy"}


def test_hysteresis_keeps_the_reason_until_clearly_cool():
    d = EngineDriver()
    _temps(d, "n", 0, 40, 95)
    assert d.reason("n", "gpu-temp-critical") is not None
    _temps(d, "n", 40, 200, 88)  # below 90 (fire) but above 86 (clear): still firing
    assert d.reason("n", "gpu-temp-critical") is not None
    _temps(d, "n", 200, 250, 70)  # cool: clears after clear_for (1 min)
    assert d.reason("n", "gpu-temp-critical") is not None
    _temps(d, "n", 250, 265, 70)
    assert d.reason("n", "gpu-temp-critical") is None and d.state("n") == "healthy"
    assert [c.new for c in d.changes if c.new != c.old] == ["healthy", "unhealthy", "healthy"]
    assert any("gpu-temp-high@gpu:0" in c.added for c in d.changes)  # 88 °C for 2 min: above H100's 87


def test_temperature_limits_follow_the_gpu_model():
    h100, a100 = EngineDriver(model="NVIDIA H100 80GB HBM3"), EngineDriver(model="NVIDIA A100-SXM4-80GB")
    for d in (h100, a100):
        _temps(d, "n", 0, 40, 89.5)
    assert h100.reason("n", "gpu-temp-critical") is None  # H100 slowdown 90
    assert a100.reason("n", "gpu-temp-critical") is not None  # A100 slowdown 89
    assert "A100" in a100.reason("n", "gpu-temp-critical").message


def test_ecc_dbe_is_suspect_and_row_remap_failure_or_repeated_dbe_is_terminal():
    d = EngineDriver()
    d.gpu("n", 0.0, gpu=1, DCGM_FI_DEV_ECC_DBE_VOL_TOTAL=0, DCGM_FI_DEV_ECC_DBE_AGG_TOTAL=3,
          DCGM_FI_DEV_ROW_REMAP_FAILURE=0)
    assert d.state("n") == "healthy"
    d.gpu("n", 1.0, gpu=1, DCGM_FI_DEV_ECC_DBE_VOL_TOTAL=1, DCGM_FI_DEV_ECC_DBE_AGG_TOTAL=4,
          DCGM_FI_DEV_ROW_REMAP_PENDING=1)
    r = d.reason("n", "gpu-ecc-dbe", "gpu:1")
    assert (r.severity, r.classification, r.action) == ("critical", "suspect", "RESET_GPU")
    assert d.reason("n", "gpu-row-remap-pending").action == "RESET_GPU"
    assert d.reason("n", "gpu-ecc-dbe-repeat") is None  # one new DBE so far
    d.gpu("n", 3600.0, gpu=1, DCGM_FI_DEV_ECC_DBE_AGG_TOTAL=5)
    r = d.reason("n", "gpu-ecc-dbe-repeat", "gpu:1")
    assert (r.classification, r.action) == ("terminal", "CONTACT_SUPPORT")
    d.gpu("n", 3601.0, gpu=2, DCGM_FI_DEV_ROW_REMAP_FAILURE=1)
    r = d.reason("n", "gpu-row-remap-failure", "gpu:2")
    assert (r.severity, r.classification, r.action) == ("critical", "terminal", "CONTACT_SUPPORT")
    # a GPU reset zeroes the volatile counter: that reason goes, the terminal ones stay
    d.gpu("n", 3700.0, gpu=1, DCGM_FI_DEV_ECC_DBE_VOL_TOTAL=0, DCGM_FI_DEV_ROW_REMAP_PENDING=0)
    assert d.reason("n", "gpu-ecc-dbe") is None and d.reason("n", "gpu-row-remap-pending") is None
    assert d.reason("n", "gpu-ecc-dbe-repeat") is not None and d.reason("n", "gpu-row-remap-failure") is not None


def test_nvlink_error_rate_fires_and_clears_as_the_window_slides():
    d = EngineDriver()
    crc = "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"
    v = 1000.0
    for t in range(0, 60):  # a slow trickle: 1 error / s = 60 in the window: under 100
        v += 1
        d.gpu("n", float(t), gpu=3, **{crc: v})
        d.gpu("n", float(t), gpu=3, labels={"nvlink": "2"}, **{crc: 1000.0 * t})  # per link: not this rule's
    assert d.reason("n", "nvlink-crc-errors") is None
    for t in range(60, 90):  # a burst
        v += 10
        d.gpu("n", float(t), gpu=3, **{crc: v})
    r = d.reason("n", "nvlink-crc-errors", "gpu:3")
    assert r is not None and r.action == "CHECK_MECHANICALS" and d.state("n") == "degraded"
    for t in range(90, 380, 5):  # the counter stops climbing: the burst is still within the 5 min window
        d.gpu("n", float(t), gpu=3, **{crc: v})
    assert d.reason("n", "nvlink-crc-errors") is not None
    for t in range(380, 400, 5):
        d.gpu("n", float(t), gpu=3, **{crc: v})
    assert d.reason("n", "nvlink-crc-errors") is None
    # a counter reset (driver reload) is not a burst
    d.gpu("n", 501.0, gpu=3, **{crc: 0.0})
    d.gpu("n", 502.0, gpu=3, **{crc: 2.0})
    assert d.reason("n", "nvlink-crc-errors") is None


def test_gpu_recovery_action_field_is_the_drivers_verdict():
    d = EngineDriver()
    d.gpu("n", 0.0, gpu=4, REDFLEET_GPU_RECOVERY_ACTION=0)
    assert d.state("n") == "healthy"
    d.gpu("n", 1.0, gpu=4, REDFLEET_GPU_RECOVERY_ACTION=2)
    r = d.reason("n", "gpu-recovery-action", "gpu:4")
    assert r.action == "RESTART_BM" and "RESTART_BM" in r.message
    d.gpu("n", 2.0, gpu=4, REDFLEET_GPU_RECOVERY_ACTION=4)
    assert d.reason("n", "gpu-recovery-action").action == "DRAIN_AND_RESET"
    d.gpu("n", 3.0, gpu=4, REDFLEET_GPU_RECOVERY_ACTION=0)
    assert d.state("n") == "healthy"


def test_nvme_critical_warning_and_spare_below_the_drives_threshold():
    d = EngineDriver()
    lab = {"device": "nvme1"}
    d.metric("n", 1.0, "REDFLEET_NVME_SPARE_THRESHOLD_PERCENT", 5, labels=lab)
    d.metric("n", 1.0, "REDFLEET_NVME_AVAIL_SPARE_PERCENT", 7, labels=lab)  # above the drive's 5 %
    assert d.reason("n", "nvme-spare-low") is None
    d.metric("n", 2.0, "REDFLEET_NVME_AVAIL_SPARE_PERCENT", 4, labels=lab)
    r = d.reason("n", "nvme-spare-low", "nvme:nvme1")
    assert r.classification == "terminal" and "below its threshold 5" in r.message
    d.metric("n", 3.0, "REDFLEET_NVME_CRITICAL_WARNING", 0x10, labels=lab)  # volatile backup: not in the mask
    assert d.reason("n", "nvme-critical-warning") is None
    d.metric("n", 4.0, "REDFLEET_NVME_CRITICAL_WARNING", 0x5, labels=lab)
    assert "0x05" in d.reason("n", "nvme-critical-warning", "nvme:nvme1").message


def test_nvme_reports_decoded_from_nvme_cli_json():
    d = EngineDriver()
    smart = {"critical_warning": 5, "temperature": 310, "avail_spare": 3, "spare_thresh": 10, "percent_used": 104,
             "data_units_read": 1, "data_units_written": 1, "host_read_commands": 1, "host_write_commands": 1,
             "controller_busy_time": 0, "power_cycles": 5, "power_on_hours": 100, "unsafe_shutdowns": 0,
             "media_errors": 0, "num_err_log_entries": 0}
    d.engine.observe_nvme("n", [{"device": "/dev/nvme0", "smart": smart}], 10.0)
    d.at(10.0)
    assert {"nvme-critical-warning", "nvme-spare-low", "nvme-worn-out"} <= d.rules_firing("n")
    assert {r.component for r in d.reasons("n")} == {"nvme:nvme0"}


def test_inlet_temperature_from_bmc_sensors():
    series = SeriesStore()
    eng = HealthEngine(series=series)
    d = EngineDriver(engine=eng)

    def poll(ts: float, inlet: float) -> None:
        rd = SensorReadings(bmc="https://127.17.0.1", readings=[
            Reading(id="InletTemp", name="Inlet Temp", kind="temperature", value=inlet, context="Intake"),
            Reading(id="CPU1Temp", kind="temperature", value=inlet + 30, context="CPU"),
        ])
        eng.observe_sensors("n", rd, ts)
        d.at(ts)

    for t in range(0, 600, 10):
        poll(float(t), 24.0)
    assert d.state("n") == "healthy"
    for t in range(600, 700, 10):
        poll(float(t), 43.0)
    r = d.reason("n", "inlet-temp-critical", "node")
    assert r is not None and "InletTemp" in r.message
    assert d.reason("n", "inlet-temp-high") is None  # needs 5 minutes
    assert series.latest("n", "redfish_temperature", labels={"sensor": "InletTemp", "context": "Intake"}) == \
        (690.0, 43.0)


def test_sensor_rows_as_dicts_or_models_are_judged_alike_every_poll():
    """observe_sensors keeps each sensor's metric and labels key per node (made on its first poll): the rows may
    come as Reading models (the collector) or dicts (a stored dump), the series and the rules see the same."""
    models, dicts = SeriesStore(), SeriesStore()
    em, ed = HealthEngine(series=models), HealthEngine(series=dicts)
    for t in range(0, 120, 10):
        inlet = 24.0 if t < 50 else 43.0
        rows = [Reading(id="InletTemp", name="Inlet Temp", kind="temperature", value=inlet, context="Intake"),
                Reading(id="InletTemp", kind="temperature", value=inlet - 1, context="Exhaust"),  # same id
                Reading(id="PSU1", kind="power", value=400.0 + t, context="PowerSupply")]
        em.observe_sensors("n", SensorReadings(bmc="https://127.17.0.2", readings=rows), float(t))
        ed.observe_sensors("n", {"readings": [r.model_dump() for r in rows]}, float(t))
        em.evaluate(float(t))
        ed.evaluate(float(t))
    for store in (models, dicts):
        assert store.latest("n", "redfish_temperature", labels={"sensor": "InletTemp", "context": "Intake"}) == \
            (110.0, 43.0)
        assert store.latest("n", "redfish_temperature", labels={"sensor": "InletTemp", "context": "Exhaust"}) == \
            (110.0, 42.0)
        assert store.latest("n", "redfish_power", labels={"sensor": "PSU1", "context": "PowerSupply"}) == \
            (110.0, 510.0)
    got = [{(r.rule, r.component, r.since) for r in e.node_health("n").reasons} for e in (em, ed)]
    assert got[0] == got[1] and ("inlet-temp-critical", "node", 110.0) in got[0], got


def test_dimm_ce_storm_counter():
    d = EngineDriver()
    lab = {"dimm": "DIMM_A1"}
    for t in range(0, 100):
        d.metric("n", float(t), "redfish_memory_correctable_errors", 10 + t * 2, labels=lab)
    r = d.reason("n", "dimm-ce-storm", "dimm:DIMM_A1")
    assert r is not None and r.action == "REPLACE_DIMM" and d.state("n") == "degraded"

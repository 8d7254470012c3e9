"""A BMC temperature sensor that reads Critical for one poll is a blip; one that stays Critical is a failure."""

from __future__ import annotations

from redfleet.health import HealthEngine
from redfleet.model.telemetry import Reading, SensorReadings


def _readings(health: str) -> SensorReadings:
    return SensorReadings(bmc="https://127.17.9.1", collected_at="2026-11-22T00:00:00Z", via="redfish", readings=[
        Reading(id="GPU1_Temp", name="GPU1 Temp", kind="temperature", value=91.0 if health != "OK" else 60.0,
                units="Cel", health=health, context="GPU"),
    ])


def _rules(engine: HealthEngine) -> set[str]:
    return {r.rule for r in engine.node_health("n1").reasons}


def test_one_poll_critical_is_a_blip():
    eng = HealthEngine(clock=lambda: 0.0)
    eng.observe_sensors("n1", _readings("OK"), 0.0)
    eng.evaluate(0.0)
    eng.observe_sensors("n1", _readings("Critical"), 10.0)
    eng.evaluate(10.0)
    assert "temperature-sensor-critical" not in _rules(eng)
    eng.observe_sensors("n1", _readings("OK"), 20.0)
    eng.evaluate(20.0)
    eng.evaluate(200.0)
    assert "temperature-sensor-critical" not in _rules(eng)
    assert eng.node_health("n1").state == "healthy"


def test_sustained_critical_is_flagged_when_the_hold_time_is_up():
    eng = HealthEngine(clock=lambda: 0.0)
    eng.observe_sensors("n1", _readings("Critical"), 0.0)
    eng.evaluate(0.0)
    assert "temperature-sensor-critical" not in _rules(eng)
    eng.observe_sensors("n1", _readings("Critical"), 30.0)
    eng.evaluate(30.0)
    assert "temperature-sensor-critical" not in _rules(eng)
    changes = eng.evaluate(61.0)  # no new poll: the engine's own timer looks again
    assert "temperature-sensor-critical" in _rules(eng)
    assert any(c.node == "n1" for c in changes)


def test_disabled_function_health_is_not_a_failure():
    """AMI MegaRAC reports its disabled power-capping control as Critical on a healthy server."""
    readings = SensorReadings(bmc="https://127.17.9.2", collected_at="2026-11-22T00:00:00Z", via="redfish", readings=[
        Reading(id="PowerControl0", name="Chassis Power Control", kind="power", value=210.0, units="W",
                health="Critical", state="Disabled"),
    ])
    eng = HealthEngine(clock=lambda: 0.0)
    eng.observe_sensors("n1", readings, 0.0)
    eng.evaluate(0.0)
    eng.evaluate(3600.0)
    assert eng.node_health("n1").state == "healthy", eng.node_health("n1").reasons
    enabled = readings.model_copy(update={"readings": [readings.readings[0].model_copy(update={"state": "Enabled"})]})
    eng.observe_sensors("n1", enabled, 3601.0)
    eng.evaluate(3601.0)
    assert eng.node_health("n1").state != "healthy"


def test_gpu_uncorrectable_ecc_log_is_not_a_dimm_storm():
    from redfleet.health.model import BmcEvent

    eng = HealthEngine(clock=lambda: 0.0)
    eng.observe_event("n1", BmcEvent(ts=0.0, message="An uncorrectable ECC error was detected on GPU memory "
                                     "(double bit error on the memory cells of GPU1).", severity="Critical"))
    eng.evaluate(0.0)
    assert "dimm-ce-storm-log" not in _rules(eng)
    eng.observe_event("n2", BmcEvent(ts=0.0, message="Correctable memory error rate exceeded for DIMM A1.",
                                     severity="Warning"))
    eng.evaluate(0.0)
    assert "dimm-ce-storm-log" in {r.rule for r in eng.node_health("n2").reasons}


def _inventory(gpu_health: str) -> dict[str, object]:
    return {"gpus": [{"id": "GPU_SXM_3", "name": "GPU_SXM_3", "model": "NVIDIA H100 80GB HBM3",
                      "health": gpu_health, "state": "Enabled"}]}


def _inventory_reads(*reads: tuple[float, str]) -> HealthEngine:
    """An engine that saw these (time, GPU Health) inventory reads, judged after each."""
    eng = HealthEngine(clock=lambda: 0.0)
    for ts, health in reads:
        eng.observe_inventory("n1", _inventory(health), ts)
        eng.evaluate(ts)
        assert "gpu-health" not in _rules(eng), f"flagged at {ts} s, inside the 60 s hold"
    return eng


def test_gpu_critical_for_one_inventory_read_is_a_blip():
    """A GPU's Health rolls up its temperature: an inventory read inside a thermal blip says Critical. The rule
    holds it; the collector's confirmation read (OK) clears it before the hold is up."""
    eng = _inventory_reads((0.0, "Critical"), (30.0, "OK"))
    eng.evaluate(600.0)
    assert "gpu-health" not in _rules(eng) and eng.node_health("n1").state == "healthy"


def test_gpu_critical_on_the_confirmation_read_is_flagged():
    eng = _inventory_reads((0.0, "Critical"), (30.0, "Critical"))
    eng.evaluate(61.0)
    reason = next(r for r in eng.node_health("n1").reasons if r.rule == "gpu-health")
    assert reason.component == "gpu:GPU_SXM_3" and reason.action == "RESET_GPU" and reason.since == 0.0
    assert eng.node_health("n1").state == "unhealthy"

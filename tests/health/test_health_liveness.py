"""Reachability and liveness told apart (BMC unreachable / OS hung / agent silent / node gone), GPU missing,
BMC-reported component health, BMC events, incremental evaluation."""

from __future__ import annotations

from redfleet.health import BmcEvent
from redfleet.health.testing import EngineDriver
from redfleet.model.ingest import GpuIdentity, InbandEvent, IngestBatch, Sample


def _both_alive(d: EngineDriver, node: str, start: float, end: float) -> None:
    d.alive(node, start, end, step=1.0, bmc=True)


def test_bmc_unreachable_while_the_host_runs_is_degraded_not_down():
    d = EngineDriver()
    _both_alive(d, "n", 0, 10)
    t = 11.0
    while t < 60:  # agent keeps reporting, BMC polls fail
        d.heartbeat("n", t, evaluate=False)
        d.bmc("n", t, ok=False, error="timeout: connect")
        if t < 40:
            assert d.rules_firing("n") == set(), "within the 30 s for-duration"
        t += 1
    assert d.rules_firing("n") == {"bmc-unreachable"}
    r = d.reason("n", "bmc-unreachable")
    assert r.component == "bmc" and "agent reporting" in r.message and "timeout" in r.message
    assert d.state("n") == "degraded"
    d.bmc("n", 61.0, ok=True)
    assert d.state("n") == "healthy"


def test_os_hung_reported_in_band_while_the_bmc_answers():
    d = EngineDriver()
    _both_alive(d, "n", 0, 5)
    d.heartbeat("n", 6.0, os_state="hung")
    assert d.rules_firing("n") == {"os-hung"}
    r = d.reason("n", "os-hung")
    assert (r.severity, r.action, r.component) == ("critical", "POWER_CYCLE", "os")
    assert "BMC answers" in r.message and d.state("n") == "unhealthy"


def test_agent_silent_then_os_unresponsive_while_the_bmc_says_power_on():
    d = EngineDriver()
    _both_alive(d, "n", 0, 10)
    t = 11.0
    while t <= 40:  # only the BMC answers now
        d.bmc("n", t, ok=True, power="On")
        t += 1
    assert d.rules_firing("n") == {"agent-silent"}
    assert d.reason("n", "agent-silent").action == "RESTART_AGENT" and d.state("n") == "degraded"
    d.at(10.0 + 89)
    assert "os-unresponsive" not in d.rules_firing("n")
    d.at(10.0 + 91)  # timer-driven: no new observation needed
    assert d.rules_firing("n") == {"os-unresponsive"}
    assert d.state("n") == "unhealthy"
    d.heartbeat("n", 120.0)
    assert d.state("n") == "healthy"


def test_agent_silence_of_a_powered_off_host_is_not_a_failure():
    d = EngineDriver()
    _both_alive(d, "n", 0, 5)
    for t in range(6, 200, 10):
        d.bmc("n", float(t), ok=True, power="Off")
    assert d.rules_firing("n") == set() and d.state("n") == "healthy"


def test_nothing_answers_is_node_unreachable_only():
    d = EngineDriver()
    _both_alive(d, "n", 0, 5)
    for t in range(6, 60):
        d.bmc("n", float(t), ok=False, error="connection refused")
    assert d.rules_firing("n") == {"node-unreachable"}
    assert d.state("n") == "unhealthy"


def test_a_node_never_heard_from_is_unknown():
    d = EngineDriver()
    d.at(0.0)
    assert d.engine.node_health("ghost").state == "unknown"
    for t in range(0, 60, 5):
        d.engine.observe_reachability("ghost", False, float(t), error="connection refused")
        d.at(float(t))
    h = d.engine.node_health("ghost")
    assert h.state == "unknown" and [r.rule for r in h.reasons] == ["node-unreachable"]


def test_the_three_failures_are_told_apart():
    d = EngineDriver()
    for n in ("bmc", "hung", "silent"):
        _both_alive(d, n, 0, 5)
    for t in range(6, 40):
        d.heartbeat("bmc", float(t), evaluate=False)
        d.bmc("bmc", float(t), ok=False, error="timeout")
        d.bmc("hung", float(t), ok=True)
        d.heartbeat("hung", float(t), os_state="hung", evaluate=False)
        d.bmc("silent", float(t), ok=True)
    assert d.rules_firing("bmc") == {"bmc-unreachable"}
    assert d.rules_firing("hung") == {"os-hung"}
    assert d.rules_firing("silent") == {"agent-silent"}


def test_gpu_fallen_off_the_bus_is_missing_from_the_batch():
    d = EngineDriver(gpus=8)
    _both_alive(d, "n", 0, 3)
    ids = [GpuIdentity(gpu=i, model="NVIDIA H100") for i in range(8) if i != 5]
    d.engine.observe_gpus("n", ids, 8)
    d.at(4.0)
    r = d.reason("n", "gpu-missing")
    assert r.component == "gpu:5" and "7 of 8" in r.message and r.action == "RESTART_BM"
    d.engine.observe_gpus("n", 8, 8)  # the count-only form
    d.at(5.0)
    assert d.reason("n", "gpu-missing") is None


def test_component_health_from_inventory_and_sensors():
    d = EngineDriver()
    _both_alive(d, "n", 0, 2)
    inv = {"fans": [{"id": "Fan3", "name": "Fan 3", "health": "Critical", "state": "Enabled"},
                    {"id": "Fan4", "name": "Fan 4", "health": "OK"}],
           "psus": [{"id": "PSU1", "name": "PSU 1", "health": "Critical"}],
           "memory": [{"id": "DIMM_B2", "health": "Warning"}],
           "systems": [{"id": "1", "power_state": "On"}]}
    d.engine.observe_inventory("n", inv, 3.0)
    d.at(3.0)
    assert {(r.rule, r.component) for r in d.reasons("n")} == {
        ("fan-failed", "fan:Fan3"), ("psu-failed", "psu:PSU1"), ("dimm-health", "dimm:DIMM_B2")}
    assert d.reason("n", "fan-failed").classification == "terminal" and d.state("n") == "degraded"
    inv["fans"][0]["health"] = "OK"
    inv["psus"][0]["health"] = "OK"
    inv["memory"][0]["health"] = "OK"
    d.engine.observe_inventory("n", inv, 4.0)
    d.at(4.0)
    assert d.state("n") == "healthy"
    d.engine.observe_sensors("n", {"readings": [{"id": "FAN1", "kind": "fan", "value": 0, "health": "Critical"}]},
                             5.0)
    d.at(5.0)
    assert d.reason("n", "fan-failed", "fan:FAN1") is not None


def test_bmc_events_specific_rule_wins_over_the_catch_all_and_recurrence_escalates():
    d = EngineDriver()
    _both_alive(d, "n", 0, 2)
    d.bmc_event("n", 3.0, "Correctable memory error rate exceeded for DIMM A1.", "iDRAC.2.9.MEM0701", "Warning")
    assert d.rules_firing("n") == {"dimm-ce-storm-log"}
    d.bmc_event("n", 4.0, "The system inlet temperature is greater than the upper critical threshold.",
                "iDRAC.2.9.TMP0121", "Critical")
    r = d.reason("n", "bmc-critical-event")
    assert (r.severity, r.action) == ("warning", "INVESTIGATE") and "inlet temperature" in r.message
    d.bmc_event("n", 5.0, "inlet again", "iDRAC.2.9.TMP0121", "Critical")
    d.bmc_event("n", 6.0, "inlet again", "iDRAC.2.9.TMP0121", "Critical")
    r = d.reason("n", "bmc-critical-event")
    assert (r.severity, r.classification, r.action) == ("critical", "terminal", "CONTACT_SUPPORT")
    d.engine.clear("n", rule="bmc-critical-event")
    d.at(7.0)
    assert d.reason("n", "bmc-critical-event") is None
    assert isinstance(BmcEvent(ts=1.0), BmcEvent)


def test_evaluate_is_incremental():
    d = EngineDriver()
    for i in range(50):
        _both_alive(d, f"n{i}", 0, 1)
    d.at(1.5)
    assert d.engine.evaluated_last == 0, "nothing happened: nothing re-derived"
    for t in (2.0, 3.0, 4.0):  # healthy telemetry from every node: no state change, no re-derivation
        for i in range(50):
            d.gpu(f"n{i}", t, gpu=0, heartbeat=False, DCGM_FI_DEV_GPU_TEMP=60)
        d.engine.evaluate(t)
        assert d.engine.evaluated_last == 0
    d.gpu("n7", 5.0, gpu=0, DCGM_FI_DEV_ECC_DBE_VOL_TOTAL=2)
    assert d.engine.evaluated_last == 1 and d.state("n7") == "unhealthy"
    ch = d.changes[-1]
    assert (ch.node, ch.old, ch.new, ch.action) == ("n7", "healthy", "unhealthy", "RESET_GPU")
    assert ch.added == ("gpu-ecc-dbe@gpu:0",)
    assert d.engine.history("n7")[-1] == ch
    assert d.engine.node_health("n7").to_dict()["reasons"][0]["rule"] == "gpu-ecc-dbe"


def test_observe_batch_feeds_series_events_heartbeat_and_gpus():
    d = EngineDriver()
    b = IngestBatch(node="b1", sent_at=100.0, gpus=[GpuIdentity(gpu=0, model="NVIDIA A100", pci_bus_id="0000:3a:00.0")],
                    gpus_expected=1, uptime_s=1000.0,
                    samples=[Sample(metric="DCGM_FI_DEV_GPU_TEMP", value=50, ts=100.0, gpu=0)],
                    events=[InbandEvent(ts=100.0, raw="NVRM: Xid (PCI:0000:3a:00): 119, pid=1, name=x, GSP RPC")])
    d.engine.observe_batch(b)
    d.at(100.0)
    assert d.reason("b1", "xid.119", "gpu:0").action == "RESET_GPU"
    assert d.engine.series.latest("b1", "DCGM_FI_DEV_GPU_TEMP", gpu=0) == (100.0, 50.0)
    assert d.engine.node_health("unknown-node").state == "unknown"

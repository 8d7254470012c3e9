"""Hub bookkeeping and the Prometheus exposition: reachability events stored on transitions only, BMC sensors and
DCGM fields under Prometheus names with base units, health one-hot per node."""

from __future__ import annotations

import asyncio
from pathlib import Path

from collector_support import Recorder
from cryptography.fernet import Fernet

from redfleet.model.fleetfile import FleetFile
from redfleet.model.ingest import IngestBatch
from redfleet.model.telemetry import Reading, SensorReadings
from redfleet.store import FleetStore, KeyRing
from redfleet.telemetry.hub import Hub
from redfleet.telemetry.metrics import prom_name, render
from redfleet.telemetry.series import SeriesStore


def test_prometheus_names_follow_conventions() -> None:
    assert prom_name("DCGM_FI_DEV_GPU_TEMP")[0] == "redfleet_gpu_temperature_celsius"
    name, _, scale = prom_name("DCGM_FI_DEV_SM_CLOCK")
    assert name == "redfleet_gpu_sm_clock_hertz" and scale == 1e6  # MHz -> Hz, base unit
    assert prom_name("redfish_temperature")[0] == "redfleet_bmc_temperature_celsius"
    assert prom_name("redfish_power")[0] == "redfleet_bmc_power_watts"
    assert prom_name("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE")[0] == "redfleet_dcgm_prof_pipe_tensor_active"
    assert prom_name("REDFLEET_NVME_PERCENT_USED")[0] == "redfleet_inband_nvme_percent_used"


def test_exposition_and_reachability_events(tmp_path: Path) -> None:
    store = FleetStore(f"sqlite:///{tmp_path}/f.db", keyring=KeyRing.from_key(Fernet.generate_key().decode()))
    store.import_fleet(FleetFile.model_validate({"nodes": [{"name": "n1", "bmc_url": "https://127.19.0.61:1"}]}))
    hub = Hub(store, SeriesStore(), Recorder())
    hub.add_node("n1", "https://127.19.0.61:1")
    sr = SensorReadings(bmc="https://127.19.0.61:1", readings=[
        Reading(id="Inlet_Temp", name="Inlet", kind="temperature", value=24.5, units="Cel", context="Intake"),
        Reading(id="PSU1_Power", name="PSU1", kind="power", value=812.0, units="W"),
        Reading(id="Broken", name="Broken", kind="temperature", value=None),
    ])
    assert hub.observe_sensors("n1", sr, now=100.0) == 2
    hub.ingest(IngestBatch.model_validate({"node": "n1", "sent_at": 100.0, "samples": [
        {"metric": "DCGM_FI_DEV_SM_CLOCK", "value": 1980, "ts": 100.0, "gpu": 2}]}), now=100.5)
    for t, ok in ((101, True), (102, False), (103, False), (104, True), (105, True)):
        hub.observe_reachability("n1", ok, now=float(t), error=None if ok else "unreachable: refused")
    text = render(hub).decode()
    assert 'redfleet_bmc_temperature_celsius{context="Intake",node="n1",sensor="Inlet_Temp"} 24.5' in text
    assert 'redfleet_bmc_power_watts{context="",node="n1",sensor="PSU1_Power"} 812.0' in text
    assert 'redfleet_gpu_sm_clock_hertz{gpu="2",node="n1"} 1.98e+09' in text
    assert 'redfleet_node_health{node="n1",state="unknown"} 1.0' in text
    assert 'redfleet_bmc_up{node="n1"} 1.0' in text
    assert "# TYPE redfleet_ingest_samples_total counter" in text
    assert hub.persister is not None
    asyncio.run(hub.persister.flush())
    evs = store.events("n1")
    # one event per transition (down, up again), none for the first contact or repeats
    assert [e.message_id for e in evs] == ["BMC.Reachable", "BMC.Unreachable"], [e.message for e in evs]
    assert evs[1].severity == "Critical" and "refused" in evs[1].message
    store.close()


def test_exposition_modes_and_slices() -> None:
    hub = Hub(None, SeriesStore(), Recorder())
    for node in ("a", "b"):
        hub.ingest(IngestBatch.model_validate({"node": node, "sent_at": 1.0, "samples": [
            {"metric": "DCGM_FI_DEV_GPU_TEMP", "value": 50, "ts": 1.0, "gpu": 0},
            {"metric": "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "value": 0.5, "ts": 1.0, "gpu": 0}]}), now=1.0)
    curated = render(hub).decode()
    assert 'redfleet_gpu_temperature_celsius{gpu="0",node="a"} 50.0' in curated
    assert "tensor_active" not in curated  # unmapped fields only with series=all
    everything = render(hub, series="all").decode()
    assert 'redfleet_dcgm_prof_pipe_tensor_active{gpu="0",node="b"} 0.5' in everything
    none = render(hub, series="none").decode()
    assert "redfleet_gpu_temperature_celsius{" not in none and 'redfleet_node_health{node="a"' in none
    only_b = render(hub, nodes={"b"}).decode()
    assert 'node="b"} 50.0' in only_b and 'redfleet_gpu_temperature_celsius{gpu="0",node="a"}' not in only_b

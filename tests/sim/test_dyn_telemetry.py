"""Live telemetry: deterministic for a seed, moving over time, shaped by power state (no fleet needed)."""

from __future__ import annotations

import itertools

import pytest

from redfleet.sim.dyn_index import FlavorIndex, load_tree
from redfleet.sim.telemetry import Conditions, NodeModel, classify, load, mean_load, smooth_noise


def test_same_seed_same_readings_and_other_seed_differs() -> None:
    a, b, other = NodeModel(7, "node-00003"), NodeModel(7, "node-00003"), NodeModel(8, "node-00003")
    times = [0.0, 12.5, 600.0, 86400.0 * 3 + 17]
    for t in times:
        assert a.gpu_temp(2, t) == b.gpu_temp(2, t)
        assert a.gpu_power(2, t) == b.gpu_power(2, t)
        assert a.inlet(t) == b.inlet(t)
        assert a.fan_ratio(t) == b.fan_ratio(t)
    assert [a.gpu_temp(0, t) for t in times] != [other.gpu_temp(0, t) for t in times]
    # nodes differ from each other too
    assert NodeModel(7, "node-00004").gpu_temp(0, 600.0) != a.gpu_temp(0, 600.0)


def test_readings_move_over_time_and_stay_plausible() -> None:
    m = NodeModel(1, "node-00010")
    temps = [m.gpu_temp(0, t) for t in range(0, 7200, 60)]
    powers = [m.gpu_power(0, t) for t in range(0, 7200, 60)]
    assert len({round(x, 1) for x in temps}) > 20
    assert max(temps) - min(temps) > 10  # jobs start and stop
    assert all(15 < x < 95 for x in temps)
    assert all(30 <= p <= 700 for p in powers)
    loads = [load(1, 42, t) for t in range(0, 20000, 37)]
    assert all(0.0 <= x <= 1.0 for x in loads)
    assert 0.0 < mean_load(1, 42) < 1.0
    # smooth: no jumps between neighbouring seconds
    assert all(abs(smooth_noise(3, 4, t, 10.0) - smooth_noise(3, 4, t + 1, 10.0)) < 0.35 for t in range(100))


def test_power_state_matters() -> None:
    m = NodeModel(5, "node-00001")
    t = 5000.0
    off = Conditions(powered=False, off_for=3600.0)
    assert m.gpu_power(0, t, off) == 0.0
    assert m.fan_ratio(t, off) == 0.0
    assert m.power_ratio(t, off) < 0.1
    assert m.gpu_temp(0, t, off) < m.inlet(t, off) + 3  # cooled down to about the room
    # just after power-off it is still warm
    assert m.gpu_temp(0, t, Conditions(powered=False, off_for=5.0)) > m.gpu_temp(0, t, off)


def test_faults_shape_the_model() -> None:
    m = NodeModel(5, "node-00001")
    t = 1234.0
    assert m.gpu_temp(1, t, Conditions(hot_gpus=frozenset({1}))) >= 88
    assert m.inlet(t, Conditions(inlet_offset=20.0)) > m.inlet(t) + 19
    assert m.fan_ratio(t, Conditions(failed_fans=frozenset({2})), fan=2) == 0.0
    assert m.gpu_power(3, t, Conditions(lost_gpus=frozenset({3}))) == 0.0


def test_energy_counter_is_monotonic() -> None:
    m = NodeModel(9, "node-00002")
    values = [m.energy_joules(t, 700.0, 0.0) for t in range(0, 5000, 7)]
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert values[-1] > 0


@pytest.mark.parametrize(
    ("name", "ctx", "rtype", "units", "kind"),
    [
        ("System Board Inlet Temp", "Intake", None, None, "inlet"),
        ("CPU1 Temp", "CPU", None, None, "cpu_temp"),
        ("TEMP_GB_SXM3", "Intake", None, None, "gpu_temp"),  # AMI says Intake for everything
        ("HGX GPU SXM 1 DRAM 0 Temp 0", "GPU", "Temperature", "Cel", "gpu_mem_temp"),
        ("System Board Fan1A", None, None, "RPM", "fan"),
        ("HGX GPU SXM 1 Power 0", "GPU", "Power", "W", "gpu_power"),
        ("HGX_GPU_SXM_1_Energy_0", "GPU", "EnergyJoules", "J", "energy"),
        ("TEMP_MB_OUTLET", "Intake", None, None, "exhaust"),
        ("TLIMIT_GB_SXM6", "Intake", None, None, "other"),
    ],
)
def test_classify(name: str, ctx: str | None, rtype: str | None, units: str | None, kind: str) -> None:
    assert classify(name, ctx, rtype, units) == kind


def test_flavor_index_reads_the_captures(mockups) -> None:  # type: ignore[no-untyped-def]
    dgx = FlavorIndex.build(load_tree(mockups / "nvidia_viking"))
    assert [g.id for g in dgx.gpus] == [f"GPU_SXM_{i}" for i in range(1, 9)]
    assert all(g.baseboard for g in dgx.gpus)
    assert dgx.sse_uri == "/redfish/v1/EventService/SSE"
    assert len(dgx.xid_logs) == 8 and "hgx" in dgx.logs
    assert dgx.gpu_of("/redfish/v1/Chassis/HGX_GPU_SXM_3/Sensors/HGX_GPU_SXM_3_TEMP_0") == 2
    dell = FlavorIndex.build(load_tree(mockups / "dell"))
    assert dell.dialect == "dell" and len(dell.gpus) == 1 and not dell.gpus[0].baseboard
    assert dell.sse_uri == "/redfish/v1/SSE"
    smc = FlavorIndex.build(load_tree(mockups / "supermicro"))
    assert len(smc.gpus) == 8 and smc.sse_uri is None and smc.dialect == "smc"
    hpe = FlavorIndex.build(load_tree(mockups / "hpe"))
    assert hpe.gpus == [] and hpe.sse_uri is None and hpe.event_version < (1, 3, 0)

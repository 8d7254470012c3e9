"""Warm sensor polls: after a full read the client sends only the reads that gave readings, and reads everything
again when the plan stops fitting (a planned read fails, the chassis list changes, the plan is old)."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from rf_helpers import MOCKUPS, next_address

from redfleet.paths import mockups_dir
from redfleet.redfish import RedfishClient, read_sensors
from redfleet.redfish import sensors as sensors_mod
from redfleet.redfish import uri as U
from redfleet.redfish.fleet import fewer_gc_passes, node_done
from redfleet.redfish.testing import MockupBMC

pytestmark = pytest.mark.skipif(not MOCKUPS, reason="no mockups in ../shared/redfish/mockups")


def _gets(bmc: MockupBMC, since: int) -> list[str]:
    return [p for m, p in bmc.requests[since:] if m == "GET"]


def _readings(sr: Any) -> list[dict[str, Any]]:
    return [r.model_dump() for r in sr.readings]


def _planned_uris(c: RedfishClient) -> list[str]:
    plan = c.sensor_plan
    assert plan is not None
    return [u for r in plan.reads for u in (r.sensors, r.thermal, r.power) if u]


@pytest.mark.parametrize("tree", MOCKUPS)
async def test_warm_read_repeats_only_the_reads_that_gave_readings(tree: str) -> None:
    async with MockupBMC(mockups_dir() / tree, address=next_address()) as bmc, \
            RedfishClient(bmc.url, "root", "calvin") as c:
        n0 = len(bmc.requests)
        cold = await read_sensors(c)
        cold_gets = _gets(bmc, n0)
        n1 = len(bmc.requests)
        warm = await read_sensors(c)
        warm_gets = _gets(bmc, n1)
        planned = _planned_uris(c)

    assert _readings(warm) == _readings(cold)  # a static tree: the very same readings
    assert (warm.via, warm.warnings) == (cold.via, cold.warnings)
    # one request per planned resource (and the further pages a collection announces), nothing else: the chassis
    # list is known
    firsts = [p for p in warm_gets if "$skip=" not in p]
    assert len(firsts) == len(planned)
    assert sorted(U.key(p) for p in firsts) == sorted(U.key(p) for p in planned)
    assert set(warm_gets) <= set(cold_gets)
    assert len(warm_gets) <= len(cold_gets) - 1
    # every planned resource gave readings in the cold read: an empty Sensors collection is not polled
    sources = {U.key(r.source or "") for r in cold.readings}
    for uri in planned:
        assert any(s == U.key(uri) or s.startswith(U.key(uri) + "/") for s in sources), uri


async def test_empty_sensors_collection_is_skipped_but_legacy_kept() -> None:
    if "OpenBMC-stock" not in MOCKUPS:
        pytest.skip("no OpenBMC capture")
    async with MockupBMC(mockups_dir() / "OpenBMC-stock", address=next_address()) as bmc, \
            RedfishClient(bmc.url, "root", "calvin") as c:
        n0 = len(bmc.requests)
        await read_sensors(c)
        assert any(p.split("?")[0].endswith("/Sensors") for p in _gets(bmc, n0))
        n1 = len(bmc.requests)
        await read_sensors(c)
        warm = _gets(bmc, n1)
    assert warm and not any(p.split("?")[0].endswith("/Sensors") for p in warm)
    assert all(p.endswith(("/Thermal", "/Power")) for p in warm)


def _missing(bmc: MockupBMC, path: str, times: int) -> None:
    """``path`` answers 404 for its next ``times`` reads."""
    real, left = bmc.doc, [times]

    def doc(p: str) -> dict[str, Any] | None:
        if U.key(p) == U.key(path) and left[0] > 0:
            left[0] -= 1
            return None
        return real(p)

    bmc.doc = doc  # type: ignore[method-assign]


async def test_planned_read_that_fails_reads_everything_again() -> None:
    async with MockupBMC(mockups_dir() / "hpe", address=next_address()) as bmc, \
            RedfishClient(bmc.url, "root", "calvin") as c:
        cold = await read_sensors(c)
        plan = c.sensor_plan
        thermal = next(r.thermal for r in plan.reads if r.thermal)
        # the Thermal resource answers 404 once (the planned read): the full read that follows finds it again
        _missing(bmc, thermal, 1)
        n0 = len(bmc.requests)
        again = await read_sensors(c)
        assert _readings(again) == _readings(cold)
        assert [p for p in _gets(bmc, n0) if U.key(p) == U.key(thermal)] == [thermal, thermal]
        assert c.sensor_plan is not plan and c.sensor_plan is not None

        # now it is gone for good: the readings of Thermal are missing, and the new plan no longer reads it
        _missing(bmc, thermal, 10**6)
        gone = await read_sensors(c)
        assert not any(r.kind == "temperature" for r in gone.readings)
        assert any(r.kind == "power" for r in gone.readings)
        assert c.sensor_plan is not None and not any(r.thermal for r in c.sensor_plan.reads)
        n1 = len(bmc.requests)
        await read_sensors(c)
        assert not [p for p in _gets(bmc, n1) if U.key(p) == U.key(thermal)]


async def test_changed_chassis_list_reads_everything_again() -> None:
    tree = "nvidia_viking"
    if tree not in MOCKUPS:
        pytest.skip("no DGX capture")
    async with MockupBMC(mockups_dir() / tree, address=next_address()) as bmc, \
            RedfishClient(bmc.url, "root", "calvin") as c:
        cold = await read_sensors(c)
        coll = c.caps.services["Chassis"]
        members = (bmc.doc(coll) or {})["Members"]
        keep = [m for m in members if m["@odata.id"].endswith(("/HGX_GPU_SXM_1", "/HGX_GPU_SXM_2"))]
        assert len(keep) == 2
        bmc.overlay[U.key(coll)] = {"Members": keep, "Members@odata.count": 2}

        # the client still knows the old list: the plan stands
        n0 = len(bmc.requests)
        same = await read_sensors(c)
        assert _readings(same) == _readings(cold)
        assert not [p for p in _gets(bmc, n0) if U.key(p) == U.key(coll)]

        # forgotten (serve does this before each inventory): the list is read again, differs, the plan is remade
        c.forget()
        fewer = await read_sensors(c)
        assert c.sensor_plan is not None
        assert [r.chassis for r in c.sensor_plan.reads] == [m["@odata.id"] for m in keep]
        assert fewer.readings and {(r.source or "").split("/Sensors/")[0] for r in fewer.readings} == \
            {m["@odata.id"] for m in keep}


async def test_old_plan_reads_everything_again(monkeypatch: pytest.MonkeyPatch) -> None:
    async with MockupBMC(mockups_dir() / "dell", address=next_address()) as bmc, \
            RedfishClient(bmc.url, "root", "calvin") as c:
        await read_sensors(c)
        first = c.sensor_plan
        monkeypatch.setattr(sensors_mod, "PLAN_TTL_S", 0.0)
        await read_sensors(c)
        assert c.sensor_plan is not first and c.sensor_plan is not None


async def test_explicit_chassis_list_leaves_the_plan_alone() -> None:
    async with MockupBMC(mockups_dir() / "dell", address=next_address()) as bmc, \
            RedfishClient(bmc.url, "root", "calvin") as c:
        await read_sensors(c)
        plan = c.sensor_plan
        chassis = plan.reads[0].chassis
        sr = await read_sensors(c, chassis=[chassis])
        assert sr.readings and c.sensor_plan is plan


def test_fewer_gc_passes_raises_and_restores_the_threshold() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with fewer_gc_passes(50_000):
            assert gc.get_threshold() == (50_000, 10, 10)
            with fewer_gc_passes(50_000):  # nested / overlapping fleet operations
                assert gc.get_threshold()[0] == 50_000
            assert gc.get_threshold()[0] == 50_000
        assert gc.get_threshold() == (700, 10, 10)
        with pytest.raises(RuntimeError), fewer_gc_passes(50_000):
            raise RuntimeError("boom")
        assert gc.get_threshold() == (700, 10, 10)
        gc.set_threshold(200_000, 10, 10)  # already larger: left alone
        with fewer_gc_passes(50_000):
            assert gc.get_threshold()[0] == 200_000
        assert gc.get_threshold()[0] == 200_000
    finally:
        gc.set_threshold(*before)


def test_finished_nodes_are_kept_from_the_collector_until_the_fleet_operation_ends() -> None:
    """node_done freezes what exists (results so far) while a fleet operation runs; the last one to end unfreezes,
    so cyclic garbage made meanwhile is collected again; outside an operation node_done does nothing."""
    gc.unfreeze()
    node_done()
    assert gc.get_freeze_count() == 0
    with fewer_gc_passes():
        result = [{"reading": float(i)} for i in range(1000)]
        node_done()
        assert gc.get_freeze_count() >= len(result)
        with fewer_gc_passes():  # an overlapping operation ends first: the freeze stays
            node_done()
        assert gc.get_freeze_count() >= len(result)
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("keep", [True, False])
async def test_fleet_poller_keeps_sessions_and_connections_as_told(keep: bool) -> None:
    from redfleet.redfish.fleet import FleetOptions, FleetPoller, NodeTarget

    async with MockupBMC(mockups_dir() / "dell", address=next_address()) as a, \
            MockupBMC(mockups_dir() / "hpe", address=next_address()) as b:
        targets = [NodeTarget("a", a.url, "root", "calvin"), NodeTarget("b", b.url, "root", "calvin")]
        opts = FleetOptions(concurrency=2, tls_mode="insecure", keep_connections=keep)
        async with FleetPoller(targets, opts) as poller:
            assert poller.keep_connections is keep
            first = await poller.poll(read_sensors)
            idle = [len(c.transport._idle) for c in poller.clients.values()]  # type: ignore[attr-defined]
            logins = a.sessions_created + b.sessions_created
            again = await poller.poll(read_sensors)
            assert a.sessions_created + b.sessions_created == logins == 2  # one session per BMC, reused
            tokens = [c._token for c in poller.clients.values()]
        assert all(r.ok for r in first + again) and all(tokens)
        assert [len(r.value.readings) for r in again] == [len(r.value.readings) for r in first]
        assert all(n > 0 for n in idle) if keep else idle == [0, 0]


@pytest.mark.parametrize("tree", MOCKUPS)
async def test_trusted_readings_are_what_validation_builds(tree: str) -> None:
    from redfleet.model.telemetry import READING_FIELDS, Reading

    async with MockupBMC(mockups_dir() / tree, address=next_address()) as bmc, \
            RedfishClient(bmc.url, "root", "calvin") as c:
        sr = await read_sensors(c)
    for r in sr.readings:
        dumped = r.model_dump()
        assert tuple(dumped) == READING_FIELDS  # declaration order, every field
        again = Reading.model_validate(dumped)
        assert again == r and again.model_dump() == dumped
        assert all(type(dumped[k]) in (float, type(None)) for k in
                   ("value", "upper_critical", "upper_fatal", "lower_critical"))
    assert sr.model_dump_json()  # serialises like a validated model


def test_sensor_reading_coerces_odd_values_to_the_declared_types() -> None:
    from redfleet.model.telemetry import Reading
    from redfleet.redfish.sensors import legacy_readings, sensor_reading

    odd = {"@odata.id": "/redfish/v1/Chassis/1/Sensors/T1", "Id": 7, "Name": 12, "Reading": 40,
           "ReadingType": "Temperature", "ReadingUnits": "Cel", "PhysicalContext": "CPU",
           "Status": {"Health": "OK", "State": "Enabled"},
           "Thresholds": {"UpperCritical": {"Reading": 90}, "UpperFatal": {"Reading": "95.5"}}}
    r = sensor_reading(odd)
    assert r["id"] == "7" and r["name"] == "12" and r["value"] == 40.0 and type(r["value"]) is float
    assert (r["upper_critical"], r["upper_fatal"], r["lower_critical"]) == (90.0, 95.5, None)
    assert Reading.trusted(r) == Reading.model_validate(r)
    assert sensor_reading({"Id": "x", "Reading": True})["value"] is None  # a bool is no reading
    legacy = legacy_readings({"@odata.id": "/t", "Fans": [{"Name": "Fan1", "Reading": 5000}]}, None)
    assert Reading.trusted(legacy[0]) == Reading.model_validate(legacy[0])
    assert legacy[0]["upper_critical"] is None and legacy[0]["source"] == "/t#/Fans/0"


async def test_expand_advertised_but_ignored_still_reads_every_sensor() -> None:
    # the capture advertises $expand; this BMC answers the collection with links only, as some firmware does
    async with MockupBMC(mockups_dir() / "dell", address=next_address(), expand=False) as bmc, \
            RedfishClient(bmc.url, "root", "calvin") as c:
        cold = await read_sensors(c)
        n0 = len(bmc.requests)
        warm = await read_sensors(c)
        member_reads = [p for p in _gets(bmc, n0) if "/Sensors/" in p]
    assert cold.readings and _readings(warm) == _readings(cold)
    assert len(member_reads) == len(cold.readings)  # each member fetched, once


async def test_hard_error_in_a_planned_read_is_raised_not_replanned() -> None:
    from redfleet.redfish.client import RetryPolicy
    from redfleet.redfish.errors import Throttled

    async with MockupBMC(mockups_dir() / "hpe", address=next_address()) as bmc, \
            RedfishClient(bmc.url, "root", "calvin", retry=RetryPolicy(attempts=1)) as c:
        await read_sensors(c)
        plan = c.sensor_plan
        bmc.faults.paths = {U.key(plan.reads[0].thermal or plan.reads[0].power or "")}
        bmc.faults.throttle, bmc.faults.retry_after = 5, None
        n0 = len(bmc.requests)
        with pytest.raises(Throttled):
            await read_sensors(c)
        assert len(_gets(bmc, n0)) == len(_planned_uris(c))  # the planned reads only, no full read after them
        assert c.sensor_plan is plan


async def test_sparse_sensors_with_empty_legacy_resources_is_one_read_without_replanning() -> None:
    if "supermicro" not in MOCKUPS:
        pytest.skip("no Supermicro capture")
    async with MockupBMC(mockups_dir() / "supermicro", address=next_address()) as bmc:
        # a token Sensors collection (one sensor) and legacy resources that hold nothing
        bmc.overlay[U.key("/redfish/v1/Chassis/1/Thermal")] = {"Temperatures": [], "Fans": []}
        bmc.overlay[U.key("/redfish/v1/Chassis/1/Power")] = {"PowerControl": [], "Voltages": []}
        async with RedfishClient(bmc.url, "root", "calvin") as c:
            cold = await read_sensors(c)
            plan = c.sensor_plan
            n0 = len(bmc.requests)
            warm = await read_sensors(c)
            warm_gets = _gets(bmc, n0)
    assert cold.readings and _readings(warm) == _readings(cold)
    assert c.sensor_plan is plan  # the plan held: no full read
    assert len(warm_gets) == 1 and "/Sensors" in warm_gets[0]

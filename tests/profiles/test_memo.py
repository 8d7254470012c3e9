"""The verdict memo: a follower's resource judged once per platform and requirement-relevant content, its rows
replayed per node — with each node's own values, and judged again wherever what the requirements read differs."""

from __future__ import annotations

from typing import Any

import pytest

from redfleet.profiles.engine import FleetPlan, Options, Verdict, validate_source
from redfleet.profiles.memo import LEAF, VerdictMemo, project, projection_tree
from redfleet.profiles.profile import load_profile_document

from .test_engine_unit import DictSource

SYS = "/redfish/v1/Systems/1"
RESOURCES = {
    "ComputerSystem": {"PropertyRequirements": {
        "SerialNumber": {},
        "PowerState": {"Comparison": "Equal", "Values": ["On"]},
        "Boot": {"PropertyRequirements": {"BootSourceOverrideMode": {}}},
        "Links": {"PropertyRequirements": {"Chassis": {"Comparison": "LinkToResource", "Values": ["Chassis"]}}},
    }},
}


def _profiles() -> Any:
    return load_profile_document({"ProfileName": "T", "ProfileVersion": "1.0.0", "Resources": RESOURCES})


def _node(serial: str, power: str = "On", chassis_type: str = "#Chassis.v1_10_0.Chassis",
          etag: str = "W/\"1\"") -> DictSource:
    return DictSource({
        "/redfish/v1": {"@odata.id": "/redfish/v1", "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
                        "Vendor": "Acme", "Systems": {"@odata.id": "/redfish/v1/Systems"}},
        "/redfish/v1/Systems": {"@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
                                "Members": [{"@odata.id": SYS}]},
        SYS: {"@odata.id": SYS, "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem", "@odata.etag": etag,
              "SerialNumber": serial, "PowerState": power, "Boot": {"BootSourceOverrideMode": "UEFI", "X": serial},
              "Links": {"Chassis": [{"@odata.id": "/redfish/v1/Chassis/1"}]}},
        "/redfish/v1/Chassis/1": {"@odata.id": "/redfish/v1/Chassis/1", "@odata.type": chassis_type},
    })


def _rows(result: Any) -> list[tuple[Any, ...]]:
    return [(r.uri, r.prop, r.verdict, r.found, r.present, r.messages, r.requirements) for r in result.rows]


async def _fleet(nodes: list[DictSource], mode: str = "strict") -> tuple[list[Any], VerdictMemo]:
    profiles = _profiles()
    memo = VerdictMemo(verify=True)
    options = Options(mode=mode, plan=FleetPlan(memo))
    results = [await validate_source(n, profiles, options, target=f"n{i}") for i, n in enumerate(nodes)]
    return results, memo


@pytest.mark.parametrize("mode", ["strict", "dmtf"])
async def test_followers_replay_with_their_own_values(mode):
    nodes = [_node("SN-A", etag='W/"1"'), _node("SN-B", etag='W/"2"'), _node("SN-C", etag='W/"3"')]
    results, memo = await _fleet(nodes, mode)
    assert memo.hits >= 2 and memo.mismatches == []
    for node, got in zip(nodes, results, strict=True):
        alone = await validate_source(node, _profiles(), Options(mode=mode))
        assert _rows(got) == _rows(alone)
    serials = [next(r.found for r in res.rows if r.prop == "/SerialNumber") for res in results]
    assert serials == ["SN-A", "SN-B", "SN-C"]


async def test_a_value_the_requirements_compare_is_judged_again():
    results, memo = await _fleet([_node("SN-A"), _node("SN-B", power="Off")])
    power = [next(r for r in res.rows if r.prop == "/PowerState") for res in results]
    assert [p.verdict for p in power] == [Verdict.PASS, Verdict.FAIL]
    assert power[1].found == "Off"
    assert memo.mismatches == []


async def test_a_linked_resource_of_another_type_is_judged_again():
    results, memo = await _fleet([_node("SN-A"), _node("SN-B", chassis_type="#Manager.v1_10_0.Manager")])
    link = [next(r for r in res.rows if r.prop == "/Links/Chassis") for res in results]
    assert [x.verdict for x in link] == [Verdict.PASS, Verdict.FAIL]
    assert memo.mismatches == []


def test_projection_keeps_what_requirements_read_and_only_the_type_of_presence_only_values():
    tree, everywhere = projection_tree(_profiles(), "ComputerSystem")
    assert tree["SerialNumber"] == LEAF and tree["PowerState"] is None and "@odata.etag" not in tree
    a = project({"SerialNumber": "SN-A", "PowerState": "On", "@odata.etag": "1", "Boot": {"X": 1}}, tree, everywhere)
    b = project({"SerialNumber": "SN-B", "PowerState": "On", "@odata.etag": "2", "Boot": {"X": 2}}, tree, everywhere)
    c = project({"SerialNumber": "SN-C", "PowerState": "Off"}, tree, everywhere)
    assert a == b != c
    # a link alone shows as the link, any other object as "[Object]": the projection tells them apart
    assert project({"@odata.id": "/x"}, {}, everywhere) != project({"@odata.id": "/x", "Y": 1}, {}, everywhere)


async def test_memo_agrees_with_full_judgement_on_every_simulated_flavor(ocp_profiles, tmp_path):
    """Every replay on simulated BMCs (two per Redfish flavor) is checked against a full judgement."""
    from redfleet.profiles.fleet import Target, validate_fleet
    from redfleet.profiles.profile import load_profile
    from redfleet.sim import SimConfig, SimFleet
    from redfleet.sim.flavors import REDFISH_FLAVORS

    mix = dict.fromkeys(REDFISH_FLAVORS, 2)
    cfg = SimConfig(nodes=sum(mix.values()), mix=mix, port=0, http=True, base_address="127.6.2.1",
                    dynamics=False, cache_dir=tmp_path)
    profiles = load_profile(ocp_profiles / "OCPServerHardwareManagement.v1_1_0.json")
    memo = VerdictMemo(verify=True)
    async with SimFleet(cfg) as fleet:
        targets = [Target(n.name, n.bmc_url, "root", "calvin") for n in fleet.nodes]
        results = await validate_fleet(targets, profiles, Options(mode="dmtf", plan=FleetPlan(memo)),
                                       protocol=False)
    assert [r.error for r in results] == [None] * len(targets)
    assert memo.hits > 300, memo.hits  # (711 when written: most of a follower's judged resources)
    assert memo.mismatches == []

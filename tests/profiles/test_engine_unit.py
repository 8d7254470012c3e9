"""The engine on small hand-made services: every read requirement, comparison, condition, use case, action
parameter and the DMTF-compatible result folding."""

from __future__ import annotations

from typing import Any

import pytest

from redfleet.profiles.engine import Options, Verdict, validate_source
from redfleet.profiles.profile import load_profile_document


class DictSource:
    def __init__(self, docs: dict[str, dict[str, Any]], allow: dict[str, str] | None = None) -> None:
        self.docs = docs
        self.allow = allow or {}

    async def get(self, uri: str) -> dict[str, Any] | None:
        return self.docs.get(uri.rstrip("/") or "/")

    def allow_header(self, uri: str) -> str | None:
        return self.allow.get(uri)


def service(system: dict[str, Any], extra: dict[str, dict[str, Any]] | None = None) -> DictSource:
    docs = {
        "/redfish/v1": {"@odata.id": "/redfish/v1", "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
                        "Systems": {"@odata.id": "/redfish/v1/Systems"}},
        "/redfish/v1/Systems": {"@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
                                "Members": [{"@odata.id": "/redfish/v1/Systems/1"}]},
        "/redfish/v1/Systems/1": {"@odata.id": "/redfish/v1/Systems/1",
                                  "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem", **system},
    }
    docs.update(extra or {})
    return DictSource(docs)


def profile(resources: dict[str, Any], **extra: Any) -> Any:
    return load_profile_document({"ProfileName": "T", "ProfileVersion": "1.0.0", "Resources": resources, **extra})


async def run(resources: dict[str, Any], system: dict[str, Any], mode: str = "strict",
              extra: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    result = await validate_source(service(system, extra), profile(resources), Options(mode=mode))
    return {(r.uri, r.prop if r.uri else r.resource): r for r in result.rows}


SYS = "/redfish/v1/Systems/1"


async def test_read_requirements():
    rows = await run({"ComputerSystem": {"PropertyRequirements": {
        "A": {}, "B": {"ReadRequirement": "Recommended"}, "C": {"ReadRequirement": "IfImplemented"},
        "D": {"ReadRequirement": "Excluded"}, "E": {"ReadRequirement": "Excluded"},
        "F": {"ReadRequirement": "Supported"}, "G": {"ReadRequirement": "None"},
    }}}, {"A": 1, "D": 2})
    assert rows[(SYS, "/A")].verdict == Verdict.PASS
    assert rows[(SYS, "/B")].verdict == Verdict.SKIP
    assert rows[(SYS, "/C")].verdict == Verdict.SKIP
    assert rows[(SYS, "/D")].verdict == Verdict.FAIL
    assert rows[(SYS, "/E")].verdict == Verdict.PASS  # D6: excluded and absent is what was asked
    assert rows[(SYS, "/F")].verdict == Verdict.FAIL  # Supported: absent from every instance
    assert (SYS, "/G") not in rows
    assert rows[(None, "ComputerSystem")].verdict == Verdict.PASS


async def test_excluded_absent_reference_quirk():
    rows = await run({"ComputerSystem": {"PropertyRequirements": {"E": {"ReadRequirement": "Excluded"}}}}, {},
                     mode="dmtf")
    assert rows[(SYS, "/E")].verdict == Verdict.FAIL  # the reference fails an absent excluded property


async def test_if_populated_follows_status():
    req = {"ComputerSystem": {"PropertyRequirements": {"X": {"ReadRequirement": "IfPopulated"}}}}
    assert (await run(req, {"Status": {"State": "Enabled"}}))[(SYS, "/X")].verdict == Verdict.FAIL
    assert (SYS, "/X") not in await run(req, {"Status": {"State": "Absent"}})


@pytest.mark.parametrize("ctype,values,value,ok", [
    ("Equal", ["a"], "a", True), ("Equal", ["a"], "b", False), ("NotEqual", ["a"], "a", False),
    ("GreaterThan", [3], 4, True), ("GreaterThan", [3], 3, False), ("GreaterThanOrEqual", [3], 3, True),
    ("LessThan", [3], 2, True), ("LessThanOrEqual", [3], 4, False), ("Range", [1, 5], 5, True),
    ("Range", [1, 5], 6, False), ("Range", [None, 5], -10, True), ("Pattern", ["^H1[0-9]+"], "H100", True),
    ("Pattern", ["^A"], "H100", False), ("Present", [], 1, True), ("Absent", [], 1, False),
    ("Equal", ["a"], ["a", "b"], False), ("Equal", ["a", "b"], ["a", "b"], True),
])
async def test_comparisons(ctype, values, value, ok):
    rows = await run({"ComputerSystem": {"PropertyRequirements": {"P": {"Comparison": ctype, "Values": values}}}},
                     {"P": value})
    assert rows[(SYS, "/P")].verdict == (Verdict.PASS if ok else Verdict.FAIL)


async def test_range_not_a_number_fails_in_strict():
    rows = await run({"ComputerSystem": {"PropertyRequirements": {"P": {"Comparison": "Range", "Values": [1, 2]}}}},
                     {"P": "x"})
    assert rows[(SYS, "/P")].verdict == Verdict.FAIL


async def test_array_comparison_reference_judges_last_element_only():
    req = {"ComputerSystem": {"PropertyRequirements": {"P": {"Comparison": "Equal", "Values": ["a"]}}}}
    assert (await run(req, {"P": ["b", "a"]}, mode="dmtf"))[(SYS, "/P")].verdict == Verdict.PASS
    assert (await run(req, {"P": ["b", "a"]}))[(SYS, "/P")].verdict == Verdict.FAIL  # D2


async def test_anyof_allof_across_instances():
    req = {"ComputerSystem": {"PropertyRequirements": {
        "T": {"PropertyRequirements": {"C": {"Comparison": "AllOf", "Values": ["CPU", "Intake"]}}},
        "L": {"Comparison": "AnyOf", "Values": ["SSH", "IPMI"]},
    }}}
    rows = await run(req, {"T": [{"C": "CPU"}, {"C": "Intake"}], "L": ["Telnet"]})
    assert rows[(SYS, "/T/0/C")].verdict == Verdict.PASS
    assert rows[(SYS, "/L")].verdict == Verdict.FAIL
    rows = await run(req, {"T": [{"C": "CPU"}], "L": ["SSH"]})
    assert rows[(SYS, "/T/0/C")].verdict == Verdict.FAIL
    assert rows[(SYS, "/L")].verdict == Verdict.PASS


async def test_conditional_requirements():
    req = {"ComputerSystem": {"PropertyRequirements": {
        "SKU": {"ReadRequirement": "Recommended", "ConditionalRequirements": [
            {"CompareProperty": "PartNumber", "CompareType": "Absent", "ReadRequirement": "Mandatory"}]},
        "LED": {"ReadRequirement": "Recommended", "ConditionalRequirements": [
            {"CompareProperty": "SystemType", "CompareType": "AnyOf", "CompareValues": ["Physical"],
             "ReadRequirement": "Mandatory"}]},
    }}}
    rows = await run(req, {"SystemType": "Physical"})
    assert rows[(SYS, "/SKU")].verdict == Verdict.FAIL
    assert rows[(SYS, "/LED")].verdict == Verdict.FAIL  # D1: AnyOf condition applies
    rows = await run(req, {"SystemType": "Physical"}, mode="dmtf")
    assert rows[(SYS, "/LED")].verdict == Verdict.SKIP  # the reference never matches a CompareType AnyOf
    rows = await run(req, {"PartNumber": "x", "SystemType": "Virtual"})
    assert rows[(SYS, "/SKU")].verdict == Verdict.SKIP


async def test_condition_searches_enclosing_objects_in_strict():
    req = {"ComputerSystem": {"PropertyRequirements": {"Boot": {"PropertyRequirements": {
        "X": {"ReadRequirement": "Recommended", "ConditionalRequirements": [
            {"CompareProperty": "Mode", "CompareType": "Equal", "CompareValues": ["UEFI"],
             "ReadRequirement": "Mandatory"}]}}}}}}
    assert (await run(req, {"Mode": "UEFI", "Boot": {}}))[(SYS, "/Boot/X")].verdict == Verdict.FAIL  # D8
    assert (await run(req, {"Mode": "UEFI", "Boot": {}}, mode="dmtf"))[(SYS, "/Boot/X")].verdict == Verdict.SKIP


async def test_replaced_and_replaces():
    req = {"ComputerSystem": {"PropertyRequirements": {
        "Old": {"ReplacedByProperty": "New"}, "Newer": {"ReplacesProperty": "Legacy"}}}}
    rows = await run(req, {"New": 1, "Legacy": 2})
    assert (SYS, "/Old") not in rows
    assert rows[(SYS, "/Newer")].verdict == Verdict.WARN


async def test_min_count_and_min_version():
    req = {"ComputerSystem": {"MinVersion": "1.11.0", "PropertyRequirements": {"M": {"MinCount": 2}}}}
    for mode in ("strict", "dmtf"):  # the failure is filed under "<property> (Write)", as the reference files it
        rows = await run(req, {"M": [1]}, mode=mode)
        assert rows[(SYS, "/M")].verdict == Verdict.PASS, mode
        assert rows[(SYS, "/M (Write)")].verdict == Verdict.FAIL, mode
        assert "Min Count Error" in rows[(SYS, "/M (Write)")].messages[0], mode
        assert rows[(SYS, "")].verdict == Verdict.FAIL, mode  # v1_10_0 < 1.11.0
    assert (SYS, "/M (Write)") not in await run(req, {"M": [1, 2]})


async def test_write_requirements():
    req = {"ComputerSystem": {"PropertyRequirements": {"A": {"WriteRequirement": "Mandatory"},
                                                      "B": {"WriteRequirement": "Mandatory"}}}}
    rows = await run(req, {"A": 1, "B": 2, "@Redfish.WriteableProperties": ["A"]})
    assert rows[(SYS, "/A (Write)")].verdict == Verdict.PASS
    assert rows[(SYS, "/B (Write)")].verdict == Verdict.FAIL
    rows = await run(req, {"A": 1, "B": 2})
    assert rows[(SYS, "/A (Write)")].verdict == Verdict.SKIP


async def test_actions_and_parameters():
    req = {"ComputerSystem": {"ActionRequirements": {
        "Reset": {"Parameters": {"ResetType": {"ParameterValues": ["On", "ForceOff"],
                                               "RecommendedValues": ["Nmi"]}}},
        "Missing": {}, "Maybe": {"ReadRequirement": "Recommended"}}}}
    actions = {"#ComputerSystem.Reset": {"target": "/x", "ResetType@Redfish.AllowableValues": ["On", "ForceOff"]}}
    rows = await run(req, {"Actions": actions})
    assert rows[(SYS, "/Actions/#ComputerSystem.Reset")].verdict == Verdict.PASS
    assert rows[(SYS, "/Actions/#ComputerSystem.Reset/ResetType")].verdict == Verdict.WARN  # no Nmi
    assert rows[(SYS, "/Actions/#ComputerSystem.Missing")].verdict == Verdict.FAIL
    assert rows[(SYS, "/Actions/#ComputerSystem.Maybe")].verdict == Verdict.SKIP
    actions["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"] = ["On"]
    rows = await run(req, {"Actions": actions})
    assert rows[(SYS, "/Actions/#ComputerSystem.Reset/ResetType")].verdict == Verdict.FAIL
    rows = await run(req, {"Actions": actions}, mode="dmtf")
    assert (SYS, "/Actions/#ComputerSystem.Reset/ResetType") not in rows  # D3: the reference does not look


async def test_action_parameters_from_action_info():
    req = {"ComputerSystem": {"ActionRequirements": {"Reset": {"Parameters": {"ResetType": {
        "ParameterValues": ["On"]}}}}}}
    actions = {"#ComputerSystem.Reset": {"target": "/x", "@Redfish.ActionInfo": "/redfish/v1/Systems/1/ResetInfo"}}
    info = {"/redfish/v1/Systems/1/ResetInfo": {"@odata.type": "#ActionInfo.v1_1_0.ActionInfo", "Parameters": [
        {"Name": "ResetType", "AllowableValues": ["On", "ForceOff"]}]}}
    rows = await run(req, {"Actions": actions}, extra=info)
    assert rows[(SYS, "/Actions/#ComputerSystem.Reset/ResetType")].verdict == Verdict.PASS


async def test_use_cases_and_parent_types():
    req = {"Processor": {"UseCases": [{"UseCaseTitle": "GPU", "UseCaseKeyProperty": "ProcessorType",
                                       "UseCaseComparison": "Equal", "UseCaseKeyValues": ["GPU"],
                                       "PropertyRequirements": {"Model": {}}}]},
           "ProcessorMetrics": {"UseCases": [{"UseCaseType": "ProcessorType", "UseCaseKeyValues": ["GPU"],
                                              "PropertyRequirements": {"TemperatureCelsius": {}}}]}}
    extra = {
        "/redfish/v1/Systems/1/Processors": {"@odata.type": "#ProcessorCollection.ProcessorCollection",
                                             "Members": [{"@odata.id": "/redfish/v1/Systems/1/Processors/CPU0"},
                                                         {"@odata.id": "/redfish/v1/Systems/1/Processors/GPU0"}]},
        "/redfish/v1/Systems/1/Processors/CPU0": {"@odata.type": "#Processor.v1_0_0.Processor",
                                                  "ProcessorType": "CPU"},
        "/redfish/v1/Systems/1/Processors/GPU0": {"@odata.type": "#Processor.v1_0_0.Processor",
                                                  "ProcessorType": "GPU", "Model": "H100",
                                                  "Metrics": {"@odata.id": "/redfish/v1/Systems/1/Processors/GPU0/M"}},
        "/redfish/v1/Systems/1/Processors/GPU0/M": {"@odata.type": "#ProcessorMetrics.v1_0_0.ProcessorMetrics"},
    }
    rows = await run(req, {"Processors": {"@odata.id": "/redfish/v1/Systems/1/Processors"}}, extra=extra)
    assert rows[("/redfish/v1/Systems/1/Processors/GPU0", "/Model")].verdict == Verdict.PASS
    assert ("/redfish/v1/Systems/1/Processors/CPU0", "/Model") not in rows
    assert rows[("/redfish/v1/Systems/1/Processors/GPU0/M", "/TemperatureCelsius")].verdict == Verdict.FAIL
    assert rows[(None, "Processor")].found == 1


async def test_missing_mandatory_resource_fails_service_wide():
    rows = await run({"Manager": {}, "Drive": {"ReadRequirement": "Recommended"}}, {})
    assert rows[(None, "Manager")].verdict == Verdict.FAIL
    assert rows[(None, "Drive")].verdict == Verdict.SKIP


async def test_unreadable_root_is_an_error():
    result = await validate_source(DictSource({}), profile({}), Options())
    assert result.error and result.worst == Verdict.FAIL


async def test_follower_waiting_for_its_template_frees_its_fleet_slot():
    """Two slots: the first node of platform A learns it (slow); the second A node waits for the template; while it
    waits, its slot goes to the node of platform B, which finishes before A is learned. Without the waiting room B
    would start only after both A nodes were done."""
    import asyncio

    from redfleet.profiles.engine import WAITING_ROOM, FleetPlan, PlanTemplate, WaitingRoom

    sem = asyncio.Semaphore(2)
    room = WaitingRoom(sem, limit=4)
    plan = FleetPlan()
    events: list[str] = []
    template = PlanTemplate(frozenset({"/redfish/v1"}), frozenset({"/redfish/v1"}))

    async def node(name: str, key: str) -> None:
        WAITING_ROOM.set(room)
        async with sem:
            got = await plan.template_for(key)
            if got is None:
                await asyncio.sleep(0.05 if key == "A" else 0)
                plan.publish(key, template)
                events.append(f"{name} learned {key}")
            else:
                assert got is template
                events.append(f"{name} followed {key}")

    await asyncio.gather(node("a1", "A"), node("a2", "A"), node("b1", "B"))
    assert events == ["b1 learned B", "a1 learned A", "a2 followed A"]
    assert room.waiting == 0 and sem._value == 2  # every slot given back

    full = WaitingRoom(asyncio.Semaphore(1), limit=0)  # no room left: a follower keeps its slot while it waits
    assert await full.enter() is False

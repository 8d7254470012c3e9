"""Profiles: every OCP profile loads (RequiredProfiles resolved from the profile's folder), runs on a mockup, and the
profile redfleet ships is valid against the DMTF profile schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from redfleet.profiles.engine import Options, validate_source
from redfleet.profiles.profile import ProfileError, find_profile, load_profile, shipped_profiles_dir
from redfleet.profiles.source import MockupSource

SHIPPED = shipped_profiles_dir() / "RedfleetNeocloudGpuNode.v1_0_0.json"


def test_shipped_profile_is_valid_against_the_dmtf_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema_mod = pytest.importorskip("redfish_interop_validator.profile_schema")
    doc = json.loads(SHIPPED.read_text())
    errors = list(jsonschema.Draft7Validator(schema_mod.profile_schema).iter_errors(doc))
    assert errors == []


def test_shipped_profile_has_a_purpose_everywhere():
    doc = json.loads(SHIPPED.read_text())
    assert doc["RequiredProfiles"] == {"OCPServerHardwareManagement": {"MinVersion": "1.1.0"}}
    for name, entry in doc["Resources"].items():
        for case in entry.get("UseCases", [entry]):
            assert case.get("Purpose"), name
            for prop, req in case.get("PropertyRequirements", {}).items():
                assert req.get("Purpose") or (name == "Processor" and prop == "Status"), (name, prop)
            for action, req in case.get("ActionRequirements", {}).items():
                assert req.get("Purpose"), (name, action)


def test_every_ocp_profile_loads_and_validates_against_the_schema(ocp_profiles):
    jsonschema = pytest.importorskip("jsonschema")
    schema_mod = pytest.importorskip("redfish_interop_validator.profile_schema")
    for file in sorted(ocp_profiles.glob("*.json")):
        assert not list(jsonschema.Draft7Validator(schema_mod.profile_schema).iter_errors(json.loads(file.read_text())))
        ps = load_profile(file)
        assert ps.main.path == file.resolve()


def test_required_profiles_resolved_from_the_profile_folder(ocp_profiles, tmp_path):
    ps = load_profile(ocp_profiles / "OCPServerHardwareManagement.v1_1_0.json")
    assert [p.label for p in ps.profiles] == ["OCPServerHardwareManagement 1.1.0",
                                              "OCPBaselineHardwareManagement 1.1.0"]
    ours = load_profile("RedfleetNeocloudGpuNode")
    assert [p.name for p in ours.profiles] == ["RedfleetNeocloudGpuNode", "OCPServerHardwareManagement",
                                               "OCPBaselineHardwareManagement"]
    # a newer minor version in the folder is preferred; another major version is not
    base = json.loads((ocp_profiles / "OCPBaselineHardwareManagement.v1_1_0.json").read_text())
    shutil.copy(ocp_profiles / "OCPServerHardwareManagement.v1_1_0.json", tmp_path)
    for version in ("1.2.0", "2.0.0"):
        base["ProfileVersion"] = version
        (tmp_path / f"OCPBaselineHardwareManagement.v{version.replace('.', '_')}.json").write_text(json.dumps(base))
    ps = load_profile(tmp_path / "OCPServerHardwareManagement.v1_1_0.json")
    assert ps.profiles[1].label == "OCPBaselineHardwareManagement 1.2.0"
    assert ps.profiles[1].path == (tmp_path / "OCPBaselineHardwareManagement.v1_2_0.json").resolve()


def test_missing_required_profile_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("REDFLEET_SHARED", str(tmp_path / "nowhere"))
    doc = {"ProfileName": "X", "ProfileVersion": "1.0.0", "RequiredProfiles": {"Nope": {"MinVersion": "1.0.0"}}}
    (tmp_path / "X.v1_0_0.json").write_text(json.dumps(doc))
    with pytest.raises(ProfileError, match=r"requires Nope 1\.0\.0"):
        load_profile(tmp_path / "X.v1_0_0.json")


def test_bad_profile_is_rejected(tmp_path):
    doc = {"ProfileName": "X", "ProfileVersion": "1.0.0",
           "Resources": {"Chassis": {"PropertyRequirements": {"A": {"ReadRequirement": "Sometimes"}}}}}
    (tmp_path / "X.v1_0_0.json").write_text(json.dumps(doc))
    with pytest.raises(ProfileError, match="Sometimes"):
        load_profile(tmp_path / "X.v1_0_0.json")


def test_names_and_dotted_versions(ocp_profiles):
    assert find_profile("OCP_UBB_BaselineManagement", [ocp_profiles], "1.0.0").name == \
        "OCP_UBB_BaselineManagement.v1.0.0.json"
    assert load_profile("OCPServerHardwareManagement@1.1.0").main.version == "1.1.0"
    with pytest.raises(ProfileError):
        load_profile("OCPServerHardwareManagement@9.0.0")


@pytest.mark.parametrize("name", ["OCPBaselineHardwareManagement.v1_1_0.json", "OCPLiquidCoolingBaseline.v1_0_0.json",
                                  "OCPServerHardwareManagement.v1_1_0.json", "OCPServiceBaseline.v1_0_0.json",
                                  "OCP_NIC.v1_0_0.json", "OCP_UBB_BaselineManagement.v1.0.0.json"])
async def test_every_ocp_profile_runs_on_a_mockup(ocp_profiles, mockups, name):
    ps = load_profile(ocp_profiles / name)
    result = await validate_source(MockupSource(mockups / "public-rackmount1"), ps, Options())
    assert result.error is None
    s = result.summary()
    assert sum(s.values()) > 10


async def test_neocloud_profile_on_gpu_mockups(mockups):
    ps = load_profile("RedfleetNeocloudGpuNode")
    result = await validate_source(MockupSource(mockups / "nvidia_viking"), ps, Options())
    rows = {(r.uri, r.prop if r.uri else r.resource): r for r in result.rows}
    assert rows[(None, "Processor")].found >= 8  # GPU_SXM_1..8 found as ProcessorType GPU
    assert rows[(None, "Processor")].verdict.label == "pass"
    assert any(r.purposes for r in result.rows)
    tower = await validate_source(MockupSource(mockups / "public-tower"), ps, Options())
    assert {(r.resource, r.verdict.label) for r in tower.rows if r.uri is None and r.resource == "Processor"} == {
        ("Processor", "pass")}


def test_profile_dir_lists(tmp_path: Path):
    from redfleet.profiles.profile import list_profiles

    names = {n for n, _, _ in list_profiles()}
    assert "RedfleetNeocloudGpuNode" in names

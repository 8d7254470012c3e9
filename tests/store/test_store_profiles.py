"""Profile conformance history (redfleet.store.profiles) on SQLite and PostgreSQL: runs saved and listed, the newest
run per node for the dashboard, drift between a node's last two runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import inspect

from redfleet.store.profiles import latest_profile_runs, profile_drift, profile_history, save_profile_results

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def target(name: str, verdicts: dict[str, str], firmware: str = "1.0", error: str | None = None) -> dict[str, Any]:
    results = [{"resource": "ComputerSystem", "uri": "/redfish/v1/Systems/1", "property": prop,
                "requirement": "Mandatory", "verdict": v, "found": f"value of {prop}"}
               for prop, v in verdicts.items()]
    summary = {k: sum(1 for v in verdicts.values() if v == k) for k in ("pass", "warn", "fail", "not_tested")}
    out = {"target": name, "profile": "OCPServerHardwareManagement 1.1.0", "summary": summary, "results": results,
           "service": {"bmc_firmware": firmware}}
    if error:
        out["error"] = error
    return out


def save(store, targets, when, profile="OCPServerHardwareManagement", mode="strict"):
    return store.transaction(lambda s: save_profile_results(s, targets, profile_name=profile, profile_version="1.1.0",
                                                            mode=mode, validated_at=when))


def test_table_and_index_exist(store):
    insp = inspect(store.engine)
    assert "profile_results" in insp.get_table_names()
    index = {i["name"]: i["column_names"] for i in insp.get_indexes("profile_results")}
    assert index["ix_profile_results_node_profile_at"] == ["node", "profile_name", "validated_at"]


def test_save_and_history(store):
    ids = save(store, [target("gpu-001", {"/A": "pass", "/B": "fail"}),
                       target("gpu-002", {}, error="cannot read the service root /redfish/v1/")], T0)
    assert len(ids) == 2
    save(store, [target("gpu-001", {"/A": "pass", "/B": "pass"})], T0 + timedelta(days=1))
    with store.session() as s:
        runs = profile_history(s, "gpu-001", with_results=True)
        assert [r.validated_at for r in runs] == [T0 + timedelta(days=1), T0]  # newest first, UTC on both back ends
        assert runs[0].summary == {"pass": 2, "warn": 0, "fail": 0, "not_tested": 0}
        assert runs[1].summary == {"pass": 1, "warn": 0, "fail": 1, "not_tested": 0}
        assert runs[1].results is not None and runs[1].results["results"][1]["verdict"] == "fail"
        assert (runs[0].profile_name, runs[0].profile_version, runs[0].mode) == (
            "OCPServerHardwareManagement", "1.1.0", "strict")
        down = profile_history(s, "gpu-002")
        assert down[0].error == "cannot read the service root /redfish/v1/" and down[0].results is None
        assert profile_history(s, "gpu-001", "OtherProfile") == []


def test_latest_per_node_and_profile(store):
    save(store, [target("a", {"/A": "fail"}), target("b", {"/A": "pass"})], T0)
    save(store, [target("a", {"/A": "pass"})], T0 + timedelta(hours=1))
    save(store, [target("a", {"/A": "warn"})], T0 + timedelta(hours=2), profile="RedfleetNeocloudGpuNode")
    with store.session() as s:
        latest = latest_profile_runs(s)
        assert [(r.node, r.profile_name, r.summary["pass"], r.summary["warn"]) for r in latest] == [
            ("a", "OCPServerHardwareManagement", 1, 0), ("a", "RedfleetNeocloudGpuNode", 0, 1),
            ("b", "OCPServerHardwareManagement", 1, 0)]
        assert [r.node for r in latest_profile_runs(s, "RedfleetNeocloudGpuNode")] == ["a"]
        assert latest[0].to_dict()["profile"] == "OCPServerHardwareManagement 1.1.0"


def test_drift_after_a_firmware_update(store):
    save(store, [target("gpu-001", {"/A": "pass", "/B": "pass", "/C": "fail"}, firmware="6.00")], T0)
    with store.session() as s:
        assert profile_drift(s, "gpu-001") is None  # one run: nothing to compare
    save(store, [target("gpu-001", {"/A": "pass", "/B": "fail", "/C": "pass"}, firmware="7.10")],
         T0 + timedelta(days=3))
    with store.session() as s:
        d = profile_drift(s, "gpu-001")
    assert d is not None
    assert (d["before"]["service"]["bmc_firmware"], d["after"]["service"]["bmc_firmware"]) == ("6.00", "7.10")
    assert [(c["property"], c["before"], c["after"]) for c in d["changes"]] == [("/B", "pass", "fail"),
                                                                                ("/C", "fail", "pass")]
    with store.session() as s:
        assert profile_drift(s, "no-such-node") is None

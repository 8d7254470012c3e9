"""``redfleet validate``: mockup trees and a simulated fleet, JSON contract, HTML, saved results and drift, exit
codes."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from redfleet.cli.main import app
from redfleet.profiles import report

runner = CliRunner()


def test_validate_mockup_json_contract(mockups):
    res = runner.invoke(app, ["validate", "--profile", "OCPServerHardwareManagement", "--json",
                              str(mockups / "public-rackmount1")])
    assert res.exit_code == 1, res.output  # the capture fails some requirements
    data = json.loads(res.stdout)
    assert set(data) >= {"target", "profile", "summary", "results"}
    assert data["summary"] == {"pass": 322, "warn": 0, "fail": 15, "not_tested": 59}
    for row in data["results"]:
        assert set(row) >= {"resource", "uri", "property", "requirement", "verdict", "found"}
        assert row["verdict"] in ("pass", "warn", "fail", "not_tested")


def test_validate_dmtf_mode_counts(mockups):
    res = runner.invoke(app, ["validate", "--profile", "OCPServerHardwareManagement", "--mode", "dmtf", "--json",
                              str(mockups / "public-rackmount1")])
    assert json.loads(res.stdout)["summary"] == {"pass": 320, "warn": 0, "fail": 15, "not_tested": 58}


def test_usage_errors_exit_2(tmp_path):
    assert runner.invoke(app, ["validate"]).exit_code == 2
    assert runner.invoke(app, ["validate", "--profile", "NoSuchProfile", str(tmp_path)]).exit_code == 2
    assert runner.invoke(app, ["validate", "--mode", "lax", str(tmp_path)]).exit_code == 2


def test_unreachable_exit_3():
    res = runner.invoke(app, ["validate", "--no-protocol", "--timeout", "2", "http://127.16.129.1:9"])
    assert res.exit_code == 3


def test_list_profiles():
    res = runner.invoke(app, ["validate", "--list-profiles"])
    assert res.exit_code == 0 and "RedfleetNeocloudGpuNode 1.0.0" in res.output


def test_html_save_and_drift(mockups, tmp_path):
    html = tmp_path / "r.html"
    store = tmp_path / "results"
    args = ["validate", "--profile", "OCPServerHardwareManagement", "--html", str(html), "--save", str(store),
            str(mockups / "public-telemetry")]
    assert runner.invoke(app, args).exit_code == 1
    page = html.read_text()
    assert "By vendor, model and firmware" in page and "<table>" in page
    files = list(store.rglob("*.json"))
    assert len(files) == 1
    before = json.loads(files[0].read_text())
    after = json.loads(json.dumps(before))
    after["results"][-1]["verdict"] = "fail" if after["results"][-1]["verdict"] != "fail" else "pass"
    changes = report.drift(before, after)
    assert len(changes) == 1 and changes[0]["before"] != changes[0]["after"]


async def test_simulated_fleet(tmp_path):
    """A fleet file from the simulator, fast mode: per-node results, platform summary, protocol checks."""
    from redfleet.profiles.fleet import Target, fleet_options, validate_fleet
    from redfleet.profiles.profile import load_profile
    from redfleet.sim import SimConfig, SimFleet

    cfg = SimConfig(nodes=3, mix={"openbmc": 2, "ami": 1}, port=0, base_address="127.16.129.10", dynamics=False,
                    cache_dir=tmp_path)
    async with SimFleet(cfg) as fleet:
        targets = [Target(n.name, n.bmc_url, "root", "calvin") for n in fleet.nodes]
        results = await validate_fleet(targets, load_profile("RedfleetNeocloudGpuNode"), fleet_options())
    assert all(r.error is None for r in results)
    assert results[0].summary() == results[1].summary()  # same platform, same verdicts
    assert results[1].resources_read < results[0].resources_read  # the second openbmc node follows the plan
    checks = {r.prop: r.verdict.label for r in results[0].protocol}
    assert checks["TLS"] == "pass" and checks["Sessions"] == "pass" and checks["Authentication"] == "pass"
    data = report.to_json(results)
    assert len(data["by_platform"]) == 2


def test_db_keeps_runs_and_drift_shows_a_firmware_update(mockups, tmp_path):
    """--db saves each run in the fleet store; after a 'firmware update' (the capture edited: new BMC firmware,
    SerialNumber gone) the next run and --drift NODE show the requirement that changed."""
    import shutil

    node = tmp_path / "node-a"
    shutil.copytree(mockups / "public-rackmount1", node)
    db = tmp_path / "fleet.db"
    base = ["validate", "--profile", "OCPServerHardwareManagement", "--db", str(db)]
    first = runner.invoke(app, [*base, "--json", str(node)])
    assert first.exit_code == 1, first.output
    assert "drift" not in json.loads(first.stdout)  # nothing stored before
    res = runner.invoke(app, ["validate", "--db", str(db), "--drift", str(node)])
    assert res.exit_code == 2 and "fewer than two stored runs" in " ".join(res.output.split())

    system = node / "redfish/v1/Systems/437XR1138R2/index.json"
    doc = json.loads(system.read_text())
    del doc["SerialNumber"]
    system.write_text(json.dumps(doc))
    manager = node / "redfish/v1/Managers/BMC/index.json"
    mdoc = json.loads(manager.read_text())
    mdoc["FirmwareVersion"] = "2.00.0-rev1"
    manager.write_text(json.dumps(mdoc))

    second = json.loads(runner.invoke(app, [*base, "--json", str(node)]).stdout)
    assert [(c["property"], c["before"], c["after"]) for c in second["drift"]] == [("/SerialNumber", "pass", "fail")]
    res = runner.invoke(app, ["validate", "--db", str(db), "--drift", str(node), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["profile"] == "OCPServerHardwareManagement"
    assert (d["before"]["service"]["bmc_firmware"], d["after"]["service"]["bmc_firmware"]) == (
        "1.45.455b66-rev4", "2.00.0-rev1")
    assert d["after"]["summary"]["fail"] == d["before"]["summary"]["fail"] + 1
    text = runner.invoke(app, ["validate", "--db", str(db), "--drift", str(node)])
    flat = "".join(text.output.split())
    assert text.exit_code == 0 and "/SerialNumber:pass→fail" in flat and "2.00.0-rev1" in flat
    res = runner.invoke(app, ["validate", "--db", str(db), "--drift", str(node), "--profile",
                              "RedfleetNeocloudGpuNode"])
    assert res.exit_code == 2  # no runs of that profile


def test_workers_spread_a_fleet_over_processes(mockups):
    """--workers 2: the same per-target results, in the same order, as one process."""
    dirs = [str(mockups / m) for m in ("public-telemetry", "public-rackmount1", "public-telemetry", "public-tower")]
    base = ["validate", "--profile", "OCPServerHardwareManagement", "--json", "--full"]
    one = json.loads(runner.invoke(app, [*base, *dirs]).stdout)
    two = json.loads(runner.invoke(app, [*base, "--workers", "2", *dirs]).stdout)
    assert [t["target"] for t in two["targets"]] == dirs
    assert [t["summary"] for t in two["targets"]] == [t["summary"] for t in one["targets"]]
    assert two["targets"][1]["summary"] != two["targets"][0]["summary"]  # different captures, different counts

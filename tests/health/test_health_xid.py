"""The Xid catalog and the Xid rule: buckets -> actions, WORKFLOW_* logic, recurrence, Xid 154."""

from __future__ import annotations

import json

import pytest

from redfleet.health import HealthEngine, XidCatalog, load_rules
from redfleet.health.testing import EngineDriver
from redfleet.health.xid import mask_matches, nvlink_verdicts, parse_xid_line, recovery_action_of
from redfleet.health.xidbuild import CATALOG_PATH, build, dumps, load_catalog

SHIPPED = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
XID_RULE = next(r for r in load_rules(None) if r.kind == "xid")
# Buckets whose policy is a plain action of the same name (the WORKFLOW_* / XID_154 ones are stateful: below)
DIRECT = {"IGNORE", "RESTART_APP", "RESET_GPU", "RESTART_BM", "CONTACT_SUPPORT", "RESTART_VM", "CHECK_UVM",
          "UPDATE_SWFW", "CHECK_MECHANICALS"}


def test_catalog_json_matches_a_fresh_build_of_the_workbook(shared):
    xlsx = shared / "gpu" / "Xid-Catalog.xlsx"
    if not xlsx.is_file():
        pytest.skip(f"{xlsx} absent")
    fresh = build(xlsx)
    assert dumps(fresh) == CATALOG_PATH.read_text(encoding="utf-8"), \
        "xid_catalog.json is stale: run python -m redfleet.health.xidbuild"
    # and the workbook facts it must carry
    assert {x["code"] for x in fresh["xids"]} >= {13, 31, 45, 48, 63, 64, 74, 79, 94, 95, 119, 154}
    assert fresh["buckets"]["WORKFLOW_XID_48"].startswith("Data Center Recovery Action")
    assert {r["xid"] for r in fresh["nvlink5_decode"]} == {144, 145, 146, 147, 148, 149, 150}


def test_catalog_works_without_the_workbook(tmp_path, monkeypatch):
    monkeypatch.setenv("REDFLEET_SHARED", str(tmp_path / "absent"))
    cat = XidCatalog(load_catalog())
    assert cat.immediate_bucket(79) == "RESTART_BM"
    assert cat.mnemonic(48) == "ROBUST_CHANNEL_GPU_ECC_DBE"
    with pytest.raises(FileNotFoundError, match="Xid workbook not found"):
        build()


def _solo_reason(d: EngineDriver, code: int, message: str = ""):
    node = f"n{code}"
    d.alive(node, 0, 2)
    d.xid(node, 3.0, code, gpu=2, message=message)
    d.at(3.0 + XID_RULE.correlate + 1)  # past the solo/not-solo window
    return node, d.reason(node, f"xid.{code}", "gpu:2")


@pytest.mark.parametrize("entry", [x for x in SHIPPED["xids"] if (x["immediate"] in DIRECT)],
                         ids=lambda x: f"xid{x['code']}-{x['immediate']}")
def test_each_direct_bucket_maps_to_its_action(entry):
    d = EngineDriver()
    code, bucket = entry["code"], entry["immediate"]
    if code in XID_RULE.overrides:
        bucket = XID_RULE.overrides[code]
    pol = XID_RULE.buckets[bucket]
    node, reason = _solo_reason(d, code)
    if bucket == "IGNORE":
        assert reason is None and d.state(node) == "healthy"
        return
    assert reason is not None, f"Xid {code} ({bucket}) raised no reason"
    assert reason.action == bucket
    assert (reason.severity, reason.classification) == (pol.severity, pol.classification)
    assert d.state(node) == {"info": "healthy", "warning": "degraded", "critical": "unhealthy"}[pol.severity]
    assert d.engine.xid_verdict(code)["action"] == bucket


def test_every_catalog_bucket_has_a_policy():
    used = {x["immediate"] for x in SHIPPED["xids"] if x["immediate"]} | set(XID_RULE.overrides.values())
    used |= {r["immediate"] for r in SHIPPED["nvlink5_decode"] if r["immediate"]}
    assert used - set(XID_RULE.buckets) == set()
    no_bucket = {x["code"] for x in SHIPPED["xids"] if not x["immediate"]}
    assert no_bucket <= set(XID_RULE.overrides), "codes without a bucket need an override"


def test_workflow_xid45_solo_restarts_fabric_manager_not_solo_is_ignored():
    d = EngineDriver()
    _node, reason = _solo_reason(d, 45)
    assert reason is not None and reason.action == "RESTART_FM"
    d2 = EngineDriver()
    d2.alive("m", 0, 2)
    d2.xid("m", 10.0, 45, gpu=1)
    assert d2.reason("m", "xid.45") is None  # undecided within the correlation window
    d2.xid("m", 12.0, 79, gpu=1)
    d2.at(30.0)
    assert d2.reason("m", "xid.45") is None
    assert d2.reason("m", "xid.79").action == "RESTART_BM"


def test_workflow_xid48_solo_reset_with_63_drain_and_reset_repeat_terminal():
    d = EngineDriver()
    node, reason = _solo_reason(d, 48)
    assert (reason.action, reason.classification) == ("RESET_GPU", "suspect")
    assert reason.details["investigate"] == "RUN_FIELDDIAG"
    d.xid(node, 20.0, 48, gpu=3)
    d.xid(node, 20.5, 63, gpu=3)
    assert d.reason(node, "xid.48", "gpu:3").action == "DRAIN_AND_RESET"
    d.xid(node, 100.0, 48, gpu=2)
    d.xid(node, 200.0, 48, gpu=2)
    r = d.reason(node, "xid.48", "gpu:2")
    assert (r.action, r.classification, r.severity) == ("CONTACT_SUPPORT", "terminal", "critical")
    assert r.details["escalated"] and r.details["count"] == 3


def test_repeated_xid_escalates_and_one_off_does_not():
    d = EngineDriver()
    d.alive("a", 0, 1)
    d.xid("a", 10.0, 13, gpu=0)
    d.xid("a", 20.0, 13, gpu=0)
    r = d.reason("a", "xid.13")
    assert (r.severity, r.action) == ("info", "RESTART_APP") and d.state("a") == "healthy"
    d.xid("a", 30.0, 13, gpu=1)  # another GPU: does not count
    assert d.reason("a", "xid.13", "gpu:0").action == "RESTART_APP"
    d.xid("a", 40.0, 13, gpu=0)
    r = d.reason("a", "xid.13", "gpu:0")
    assert (r.severity, r.classification, r.action) == ("warning", "suspect", "RUN_DIAG")
    assert d.state("a") == "degraded"
    # RESET_GPU repeated climbs the ladder to RESTART_BM, classification one step up
    d.xid("a", 50.0, 119, gpu=4)
    assert d.reason("a", "xid.119").action == "RESET_GPU"
    d.xid("a", 60.0, 119, gpu=4)
    d.xid("a", 70.0, 119, gpu=4)
    r = d.reason("a", "xid.119")
    assert (r.action, r.classification) == ("RESTART_BM", "terminal")
    # outside the recurrence window the count restarts
    d.at(70.0 + XID_RULE.recurrence.window + 1)
    d.xid("a", d.now + 1, 13, gpu=0)
    assert d.reason("a", "xid.13", "gpu:0").action == "RESTART_APP"


def test_xid_hold_expires_on_timer_without_new_data():
    d = EngineDriver()
    d.alive("h", 0, 1)
    d.xid("h", 5.0, 8, gpu=0)
    assert d.reason("h", "xid.8") is not None
    hold = XID_RULE.buckets["RESTART_APP"].hold
    d.engine.observe_agent("h", "up", 5.0 + hold + 1)
    d.at(5.0 + hold + 1)
    assert d.reason("h", "xid.8") is None


def test_xid154_is_the_drivers_verdict_and_clears():
    d = EngineDriver()
    d.alive("v", 0, 1)
    d.xid("v", 10.0, 95, gpu=5)
    assert d.reason("v", "xid.95").action == "RESET_GPU"
    d.xid("v", 10.2, 154, gpu=5, message="GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)")
    r = d.reason("v", "xid.154", "gpu:5")
    assert r.action == "RESTART_BM" and r.severity == "critical"
    assert d.reason("v", "xid.95").action == "RESTART_BM"  # a 154-linked Xid follows the driver
    assert d.engine.node_health("v").action == "RESTART_BM"
    d.xid("v", 11.0, 154, gpu=5, message="GPU recovery action changed from 0x2 (Node Reboot Required) to 0x0 (None)")
    assert d.reason("v", "xid.154") is None
    d.xid("v", 12.0, 154, gpu=5, message="GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)")
    assert d.reason("v", "xid.154").action == "RESET_GPU"
    d.heartbeat("v", 40.0, uptime=500.0)
    d.heartbeat("v", 60.0, uptime=3.0)  # rebooted
    assert d.reason("v", "xid.154") is None and d.reason("v", "xid.95") is None
    assert d.state("v") == "healthy"


def test_xid74_nvlink_registers_decide():
    d = EngineDriver()
    d.alive("l", 0, 1)
    d.xid("l", 5.0, 74, gpu=0, message="NVLink: fatal error detected on link 3(0x0, 0x0, 0x10000, 0x0, 0x0, 0x0, 0x0)")
    r = d.reason("l", "xid.74")
    assert r.action == "RESET_GPU" and r.details["link"] == 3 and r.details["verdicts"] == ["diag_repeat"]
    d.xid("l", 6.0, 74, gpu=1, message="NVLink: error detected on link 1(0x100, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0)")
    assert d.reason("l", "xid.74", "gpu:1").action == "CHECK_MECHANICALS"
    for t in (7.0, 7.1, 7.2):  # bits 0 and 23: safe to ignore, however often
        d.xid("l", t, 74, gpu=2, message="NVLink: error detected on link 2(0x800001, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0)")
    assert d.reason("l", "xid.74", "gpu:2") is None
    for t in (8.0, 9.0, 10.0):  # ECC/parity bit on the same link more than twice: report
        d.xid("l", t, 74, gpu=3, message="NVLink: error on link 4(0x10, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0)")
    assert d.reason("l", "xid.74", "gpu:3").action == "CONTACT_SUPPORT"
    assert nvlink_verdicts("(0x0, 0x0, 0x0, 0x0, 0x100000, 0x0, 0x0)") == {"ignore"}


def test_nvlink5_decode_table_and_xid154_eval():
    d = EngineDriver(model="NVIDIA GB200")
    d.alive("g", 0, 1)
    msg = "145, RLW_SRC_TRACK Fatal XC0 i0 Link 12 (0x00000007 0x00000001 0x0 0x0 0x0 0x0 0x0)"
    d.xid("g", 5.0, 145, gpu=0, message=msg)
    r = d.reason("g", "xid.145")
    assert r.action == "RESET_GPU" and r.details["decoded_bucket"] == "RESET_GPU"
    eval_msg = "145, RLW_SRC_TRACK Nonfatal XC0 i0 Link 12 (0x00000007 0x00000004 0x0 0x0 0x0 0x0 0x0)"
    d.xid("g", 6.0, 145, gpu=1, message=eval_msg)
    r = d.reason("g", "xid.145", "gpu:1")
    assert (r.action, r.severity) == ("RESTART_APP", "info")  # XID_154_EVAL with no Xid 154: RESTART_APP
    d.xid("g", 7.0, 154, gpu=2, message="GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)")
    d.xid("g", 7.5, 145, gpu=2, message=eval_msg)
    assert d.reason("g", "xid.145", "gpu:2").action == "RESET_GPU"
    ignore_msg = "145, RLW_SRC_TRACK Nonfatal (0x00000007 0x00000002 0x0 0x0 0x0 0x0 0x0)"
    d.xid("g", 8.0, 145, gpu=3, message=ignore_msg)
    assert d.reason("g", "xid.145", "gpu:3") is None


def test_kernel_line_is_parsed_and_bus_mapped_to_gpu():
    d = EngineDriver()
    d.alive("k", 0, 1)
    line = "[ 1234.5] NVRM: Xid (PCI:0000:28:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus."
    d.xid("k", 5.0, 79, gpu=None, raw=line)  # bus 0x28 is GPU 1 in the driver's identities
    r = d.reason("k", "xid.79")
    assert r.component == "gpu:1" and r.action == "RESTART_BM" and "fallen off the bus" in r.message
    assert parse_xid_line(line).code == 79
    assert recovery_action_of("GPU recovery action changed from 0x0 (None) to 0x4 (Drain and Reset)") == 4
    assert mask_matches("------000000-------------0000111", 0x7)
    assert not mask_matches("------000000-------------0000111", 0x6)


def test_engine_without_xid_rule_ignores_xids():
    rules = [r for r in load_rules(None) if r.kind != "xid"]
    d = EngineDriver(engine=HealthEngine(rules=rules))
    d.alive("z", 0, 1)
    d.xid("z", 2.0, 79)
    assert d.state("z") == "healthy"

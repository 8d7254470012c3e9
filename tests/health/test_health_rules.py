"""The rules YAML: the built-in file, overrides, and errors that name the rule and the field."""

from __future__ import annotations

import pytest

from redfleet.health import HealthEngine, RulesError, load_rules, loads_rules, parse_duration
from redfleet.health.rules import BUILTIN_RULES
from redfleet.health.testing import EngineDriver


def test_builtin_rules_cover_the_catalogue():
    rules = load_rules(None)
    ids = {r.id for r in rules}
    assert len(ids) == len(rules)
    for needed in ("xid", "gpu-ecc-dbe", "gpu-row-remap-failure", "gpu-retired-pages-dbe", "nvlink-crc-errors",
                   "gpu-temp-critical", "inlet-temp-high", "fan-failed", "psu-failed", "dimm-ce-storm",
                   "nvme-critical-warning", "nvme-spare-low", "bmc-unreachable", "agent-silent", "os-hung",
                   "os-unresponsive", "gpu-missing", "gpu-recovery-action"):
        assert needed in ids, needed
    assert HealthEngine().rules == rules


def _err(text: str) -> str:
    with pytest.raises(RulesError) as e:
        loads_rules(text, origin="my.yaml")
    return str(e.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("rules:\n- {id: hot, kind: metric, metric: X, condition: {type: delta, value: 3}}",
     ["my.yaml", "rule 'hot'", "condition", "needs 'window'"]),
    ("rules:\n- {id: hot, kind: metric, metric: X, condition: {type: threshold, value: 3}, for: 5 minutes}",
     ["rule 'hot'", "'for'", "not a duration"]),
    ("rules:\n- {id: hot, kind: metric, metric: X, condition: {type: threshold, valu: 3}}",
     ["rule 'hot'", "condition.valu", "Extra inputs"]),
    ("rules:\n- {id: hot, kind: metric, metric: X, condition: {type: threshold, value: 3}, severity: fatal}",
     ["rule 'hot'", "'severity'", "'info', 'warning' or 'critical'"]),
    ("rules:\n- {id: ev, kind: event, match: {message: '([unclosed'}}",
     ["rule 'ev'", "match", "not a valid regular expression"]),
    ("rules:\n- {id: x1, kind: metrc, metric: X}", ["rule 'x1'", "'kind'", "metric, event, xid"]),
    ("rules:\n- {kind: metric, metric: X, condition: {type: threshold, value: 1}}", ["rule #1", "'id'"]),
    ("rules:\n- {id: a, kind: node, condition: {type: agent_silent}}\n- {id: a, kind: node, condition: {type: "
     "os_state}}", ["rule 'a'", "duplicate id"]),
    ("rules:\n- {id: Bad Id, kind: node, condition: {type: os_state}}", ["'id'", "pattern"]),
    ("rules: [\n", ["my.yaml", "not valid YAML"]),
    ("version: 2\nrules: []", ["unsupported rules version 2"]),
    ("rules:\n- {id: m, kind: metric, metric: X, condition: {type: threshold, value_by_model: {H100: 3}}}",
     ["rule 'm'", "'default'"]),
])
def test_rule_errors_name_the_rule_and_the_field(text, expected):
    msg = _err(text)
    for part in expected:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_user_file_overrides_and_disables_builtin_rules(tmp_path):
    f = tmp_path / "site.yaml"
    f.write_text(
        "version: 1\nrules:\n"
        "- {id: gpu-temp-critical, kind: metric, metric: DCGM_FI_DEV_GPU_TEMP, for: 0s, severity: critical,\n"
        "   classification: transient, action: CHECK_COOLING, condition: {type: threshold, op: '>=', value: 70}}\n"
        "- {id: agent-silent, kind: node, enabled: false, condition: {type: agent_silent}}\n"
        "- {id: site-power-cap, kind: metric, metric: DCGM_FI_DEV_POWER_USAGE, severity: warning, for: 10s,\n"
        "   action: INVESTIGATE, condition: {type: threshold, op: '>', value: 650},\n"
        "   message: 'GPU {gpu} draws {value:.0f} W'}\n")
    rules = load_rules(f)
    ids = [r.id for r in rules]
    assert "agent-silent" not in ids and "site-power-cap" in ids and ids.count("gpu-temp-critical") == 1
    d = EngineDriver(rules=rules)
    d.gpu("n", 0.0, DCGM_FI_DEV_GPU_TEMP=72)
    assert d.reason("n", "gpu-temp-critical") is not None  # the site's stricter limit, at once
    for t in range(1, 13):
        d.gpu("n", float(t), gpu=1, DCGM_FI_DEV_POWER_USAGE=700)
    assert d.reason("n", "site-power-cap").message == "GPU 1 draws 700 W"
    with pytest.raises(RulesError, match="rules file not found"):
        load_rules(tmp_path / "nope.yaml")


def test_builtin_file_is_valid_yaml_of_version_1():
    assert BUILTIN_RULES.read_text().count("\nversion: 1") == 1


def test_durations():
    assert parse_duration("90s") == 90 and parse_duration("5m") == 300 and parse_duration("2h") == 7200
    assert parse_duration("250ms") == 0.25 and parse_duration(12) == 12.0 and parse_duration("1d") == 86400
    for bad in ("soon", "-5s", -1, True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_event_rule_on_xid_codes_and_message_id():
    rules = loads_rules(
        "rules:\n"
        "- {id: page-on-79, kind: event, component: gpu, severity: critical, classification: suspect,\n"
        "   action: CONTACT_SUPPORT, hold: 2h, match: {source: inband, codes: [79, 154]},\n"
        "   recurrence: {count: 2, window: 1h, then: {action: RESTART_BM}}}\n"
        "- {id: psu-lost, kind: event, component: psu, severity: warning, action: REPLACE_PSU,\n"
        "   match: {source: bmc, message_id: 'PSU0003|PowerSupplyFailed'}}\n", builtin=True)
    d = EngineDriver(rules=rules)
    d.alive("n", 0, 1)
    d.xid("n", 2.0, 13, gpu=1)  # not a code the site rule names
    assert d.reason("n", "page-on-79") is None
    d.xid("n", 3.0, 79, gpu=1)
    r = d.reason("n", "page-on-79", "gpu:1")
    assert r is not None and r.action == "CONTACT_SUPPORT" and r.severity == "critical"
    assert d.reason("n", "xid.79") is not None  # the catalog still judges it too
    d.xid("n", 4.0, 79, gpu=1)
    assert d.reason("n", "page-on-79", "gpu:1").action == "RESTART_BM"
    d.bmc_event("n", 5.0, "Power supply 2 failed.", "iDRAC.2.9.PSU0003", "Critical", component="psu:PSU2")
    assert d.reason("n", "psu-lost", "psu:PSU2") is not None
    assert d.reason("n", "bmc-critical-event") is None  # a specific rule explained it
    d.at(5.0 + 3 * 3600)
    assert d.reason("n", "page-on-79") is None and d.reason("n", "psu-lost") is None  # holds expired


def test_custom_absent_and_rate_conditions():
    rules = loads_rules(
        "rules:\n"
        "- {id: gpu-telemetry-gone, kind: metric, metric: DCGM_FI_DEV_POWER_USAGE, severity: warning,\n"
        "   action: INVESTIGATE, for: 20s, condition: {type: absent}}\n"
        "- {id: pcie-replays, kind: metric, metric: DCGM_FI_DEV_PCIE_REPLAY_COUNTER, severity: warning,\n"
        "   action: CHECK_MECHANICALS, condition: {type: rate, op: '>', value: 10, window: 1m, per: 1m},\n"
        "   message: 'GPU {gpu}: {value:.0f} PCIe replays/min'}\n", builtin=True)
    d = EngineDriver(rules=rules)
    for t in range(0, 10):
        d.gpu("n", float(t), gpu=0, DCGM_FI_DEV_POWER_USAGE=300)
        d.gpu("n", float(t), gpu=1, DCGM_FI_DEV_POWER_USAGE=310)
    for t in range(10, 40):  # GPU 1 stops reporting power; GPU 0 and the agent go on
        d.gpu("n", float(t), gpu=0, DCGM_FI_DEV_POWER_USAGE=300)
        if t < 29:
            assert d.reason("n", "gpu-telemetry-gone") is None
    assert d.reason("n", "gpu-telemetry-gone").component == "gpu:1"
    d.gpu("n", 40.0, gpu=1, DCGM_FI_DEV_POWER_USAGE=305)
    assert d.reason("n", "gpu-telemetry-gone") is None
    v = 0.0
    for t in range(41, 100):  # 5 replays a second = 300 a minute
        v += 5
        d.gpu("n", float(t), gpu=2, DCGM_FI_DEV_PCIE_REPLAY_COUNTER=v, DCGM_FI_DEV_POWER_USAGE=300)
    r = d.reason("n", "pcie-replays")
    assert r.component == "gpu:2" and r.message.endswith("PCIe replays/min") and r.details["value"] > 10
    assert d.reason("n", "pcie-replays").since < 60  # a rate over 10/min after a few seconds of 300/min

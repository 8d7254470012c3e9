"""The remediation policy file: defaults, validation errors that name the field, caps, windows, rung choice."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from redfleet.remediation.policy import PolicyError, load_policy, parse_duration


def test_builtin_policy_ladder_and_triggers() -> None:
    p = load_policy(None)
    assert p.ladder == ["gpu-reset", "reboot", "power-cycle", "reimage", "decommission"]
    assert p.start_rung("RESTART_BM") == "power-cycle" and p.start_rung("CHECK_COOLING") is None
    assert p.next_rung("power-cycle") == "reimage" and p.next_rung("decommission") == "decommission"
    assert p.rung("power-cycle").timeout == 1200.0 and p.rung("power-cycle").retries == 1


@pytest.mark.parametrize(("text", "want"), [("30s", 30.0), ("10m", 600.0), ("2h", 7200.0), ("7d", 604800.0),
                                            (45, 45.0), ("250ms", 0.25)])
def test_durations(text: object, want: float) -> None:
    assert parse_duration(text) == want


@pytest.mark.parametrize(("override", "needle"), [
    ({"ladder": ["reboot", "power-cycle"]}, "last rung must be decommission"),
    ({"ladder": ["reboot", "defrag", "decommission"]}, "unknown rung(s) ['defrag']"),
    ({"triggers": {"RESTART_BM": "reimage-twice"}}, "triggers.RESTART_BM"),
    ({"rungs": {"reboot": {"timeout": "5 parsecs"}}}, "rungs.reboot.timeout"),
    ({"safety": {"max_concurrent": 0}}, "safety.max_concurrent"),
    ({"safety": {"maintenance_windows": [{"days": ["funday"]}]}}, "funday"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_policies_name_the_field(override: dict[str, object], needle: str) -> None:
    with pytest.raises(PolicyError) as exc:
        load_policy(None, overrides=override)
    assert needle in str(exc.value), str(exc.value)


def test_bad_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("ladder: [unclosed\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(PolicyError, match="must be a mapping"):
        load_policy(bad)


def test_caps_take_the_smaller_and_at_least_one() -> None:
    s = load_policy(None, overrides={"safety": {"max_concurrent": 20, "max_concurrent_percent": 5}}).safety
    assert s.cap(10_000) == 20 and s.cap(200) == 10 and s.cap(10) == 1


def test_maintenance_windows_including_over_midnight() -> None:
    p = load_policy(None, overrides={"safety": {"maintenance_windows": [
        {"days": ["sat"], "start": "22:00", "end": "06:00"}]}})
    sat_23 = datetime(2026, 11, 21, 23, 0, tzinfo=UTC)  # a Saturday
    sun_05 = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)
    sun_07 = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
    fri_23 = datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
    assert p.safety.in_window(sat_23) and p.safety.in_window(sun_05)
    assert not p.safety.in_window(sun_07) and not p.safety.in_window(fri_23)
    assert load_policy(None).safety.in_window(sun_07)  # no windows: always


def test_rung_for_takes_the_highest_rung_of_the_critical_reasons() -> None:
    p = load_policy(None)
    xid = {"rule": "xid.79", "component": "gpu:1", "severity": "critical", "action": "RESTART_BM"}
    bmc = {"rule": "bmc-critical-event", "component": "node", "severity": "critical", "action": "CONTACT_SUPPORT"}
    fan = {"rule": "fan-failed", "component": "fan:3", "severity": "critical", "action": "REPLACE_FAN"}
    warm = {"rule": "gpu-hot", "component": "gpu:0", "severity": "warning", "action": "RESET_GPU"}
    assert p.rung_for([xid, bmc]) == ("power-cycle", [xid])  # a generic BMC event chooses nothing
    assert p.rung_for([xid, fan])[0] == "decommission"
    assert p.rung_for([warm]) == (None, [])  # degraded reasons are watched, not acted on
    assert p.rung_for([bmc]) == (None, [])


def test_a_site_file_holds_only_its_differences(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("triggers: {RESTART_BM: reboot, REPLACE_FAN: none}\nsafety: {max_per_rack: 1}\n")
    p = load_policy(site)
    assert p.start_rung("RESTART_BM") == "reboot" and p.start_rung("REPLACE_FAN") is None
    assert p.start_rung("RESET_GPU") == "gpu-reset"  # the built-in triggers stay
    assert p.safety.max_per_rack == 1 and p.safety.max_concurrent == 20
    site.write_text("safety: {max_per_rack: 0}\n")
    with pytest.raises(PolicyError, match=r"site.yaml: safety.max_per_rack"):
        load_policy(site)

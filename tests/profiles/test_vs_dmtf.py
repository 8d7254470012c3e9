"""redfleet and DMTF's rf_interop_validator on the same service (the simulator serving a mockup), row for row.

CI compares one small mockup with both OCP profiles; ``tests/profiles/dmtf_compare.py`` makes the full table on
demand. Every difference in strict mode must be one of the documented deviations (docs/profiles-vs-dmtf.md); dmtf
mode must agree on every row.
"""

from __future__ import annotations

import pytest

pytest.importorskip("redfish_interop_validator")

from .dmtf_compare import compare_one, explain


@pytest.mark.parametrize("profile", ["OCPServer", "UBB"])
def test_agrees_with_dmtf_on_public_telemetry(mockups, profile):
    strict, dmtf = compare_one("public-telemetry", profile)
    assert dmtf.agreement == 1.0, dmtf.differ[:5]
    assert dmtf.only_redfleet == []
    assert dmtf.our_totals == dmtf.ref_totals
    assert strict.agreement >= 0.99
    unexplained = [(k, r, o) for k, r, o in strict.differ if not explain(k, r, o)]
    assert unexplained == [], f"strict-mode differences no documented deviation explains: {unexplained[:5]}"
    extra = [(k, o) for k, o in strict.only_redfleet if not explain(k, "absent", o)]
    assert extra == [], f"rows only redfleet reports that no documented deviation explains: {extra[:5]}"


def test_explain_names_only_documented_deviations():
    assert explain(("/redfish/v1/Systems/1", "/IndicatorLED"), "not_tested", "fail") == "D1"
    assert explain(("/redfish/v1/Systems/1", "/IndicatorLED (Write)"), "absent", "not_tested") == "D1"
    assert explain(("/redfish/v1/Systems/1", "/Actions/#ComputerSystem.Reset/ResetType"), "absent", "pass") == "D3"
    assert explain(("/redfish/v1/Systems/1", "/Actions/#ComputerSystem.Reset"), "absent", "pass") == ""
    assert explain(("/redfish/v1/Systems/1/Memory", "/Members"), "pass", "fail") == ""

"""redfleet and DMTF's rf_interop_validator on the same service (the simulator serving a mockup), row for row.

CI compares one small mockup with both OCP profiles; ``tests/profiles/dmtf_compare.py`` makes the full table on
demand. Every difference in strict mode must be one of the documented deviations (docs/profiles-vs-dmtf.md); dmtf
mode must agree on every row.
"""

from __future__ import annotations

import pytest

pytest.importorskip("redfish_interop_validator")

from .dmtf_compare import compare_one


@pytest.mark.parametrize("profile", ["OCPServer", "UBB"])
def test_agrees_with_dmtf_on_public_telemetry(mockups, profile):
    strict, dmtf = compare_one("public-telemetry", profile)
    assert dmtf.agreement == 1.0, dmtf.differ[:5]
    assert dmtf.only_redfleet == []
    assert dmtf.our_totals == dmtf.ref_totals
    assert strict.agreement >= 0.99
    for (uri, prop), ref, ours in strict.differ:
        # D5: MinCount failures are filed on the property's own row, not on "<property> (Write)"
        assert (prop.endswith(" (Write)") and ours == "absent") or (ref == "pass" and ours == "fail"), (uri, prop)
    for (uri, prop), _verdict in strict.only_redfleet:
        # D1 (IndicatorLED write, once the AnyOf condition applies) and D3 (action parameters)
        assert prop.endswith(" (Write)") or "/Actions/" in prop, (uri, prop)

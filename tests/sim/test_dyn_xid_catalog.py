"""The simulator names Xids the way the health engine's shipped catalog does, with or without ../shared."""

from __future__ import annotations

from redfleet.health.xid import default_catalog
from redfleet.sim.faults import _XIDS, xid_info


def test_codes_beyond_the_simulators_own_come_from_the_shipped_catalog():
    catalog = default_catalog()
    extra = [code for code in catalog.by_code if code not in _XIDS]
    assert extra, "the catalog should know more Xids than the simulator's hand-written examples"
    for code in extra:
        mnemonic, bucket, _text = xid_info(code)
        assert mnemonic == catalog.mnemonic(code)
        assert bucket == ((catalog.entry(code) or {}).get("immediate") or "CONTACT_SUPPORT"), code
    assert xid_info(99999) == ("XID_99999", "CONTACT_SUPPORT", "Xid 99999 event")

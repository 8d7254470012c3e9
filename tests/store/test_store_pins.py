"""TLS pins in the store: trust on first use, a changed certificate waits for an operator, accept flow."""

from __future__ import annotations

import pytest

from redfleet.store import FleetStore, NotFoundError, PinMismatchError

FP_A = "sha256:" + "a1" * 32
FP_B = "sha256:" + "b2" * 32
FP_C = "sha256:" + "c3" * 32


def test_implements_the_client_protocol(store):
    from redfleet.redfish.tls import PinStore

    assert isinstance(store.pin_store(), PinStore)


def test_accept_flow(store: FleetStore, fleet_file, db_url, keyring):
    store.import_fleet(fleet_file)
    pins = store.pin_store()
    url = "https://127.14.0.1:8443/redfish/v1/"
    assert pins.get(url) is None
    pins.put(url, FP_A)  # trust on first use
    assert pins.get("https://127.14.0.1:8443") == FP_A
    assert store.node("gpu-001").tls_fingerprint == FP_A

    # The BMC now shows another certificate: the client refuses it and records it as pending.
    assert pins.record_pending(url, FP_B) is True
    assert pins.record_pending(url, FP_B) is False  # already known
    assert pins.get(url) == FP_A  # still refused
    pending = pins.pending()
    assert [(p.origin, p.nodes, p.pinned, p.pending) for p in pending] == [
        ("https://127.14.0.1:8443", ("gpu-001",), FP_A, FP_B)]
    assert store.node("gpu-001").tls_pending_fingerprint == FP_B

    # The operator checked a different fingerprint out of band: refused, nothing changed.
    with pytest.raises(PinMismatchError, match="awaiting acceptance is " + FP_B):
        pins.accept("gpu-001", FP_C)
    assert pins.get(url) == FP_A

    assert pins.accept("gpu-001", FP_B.replace("sha256:", "").upper(), reason="BMC cert renewed") == FP_B
    assert pins.get(url) == FP_B
    assert pins.pending() == []
    rec = store.node("gpu-001")
    assert rec.tls_fingerprint == FP_B and rec.tls_pending_fingerprint is None
    actions = [a.action for a in store.audit_log(target="https://127.14.0.1:8443")]
    assert actions[:3] == ["tls.accept", "tls.pending", "tls.pin"]
    assert any(a.action == "tls.accept" and a.result == "error" for a in store.audit_log(target="gpu-001"))

    # Nothing pending any more.
    with pytest.raises(NotFoundError, match="no new certificate is awaiting acceptance"):
        pins.accept("gpu-001")

    # Another process (a second store) sees the accepted pin.
    other = FleetStore(db_url, keyring=keyring)
    try:
        assert other.pin_store().get(url) == FP_B
    finally:
        other.close()


def test_unknown_bmc_pins_are_kept(store: FleetStore):
    pins = store.pin_store()
    pins.put("https://127.14.9.9", FP_A)  # an ad-hoc `inventory URL --pin`, no node
    assert pins.get("https://127.14.9.9:443") == FP_A
    pins.put("https://127.14.9.9", FP_A)  # same again: no new audit row
    assert [a.action for a in store.audit_log(target="https://127.14.9.9:443")] == ["tls.pin"]
    assert pins.accept("https://127.14.9.9", FP_C) == FP_C  # an operator pins a known certificate directly
    assert pins.get("https://127.14.9.9") == FP_C
    with pytest.raises(NotFoundError):
        pins.accept("nothing-here")

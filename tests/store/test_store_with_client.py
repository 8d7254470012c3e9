"""The store with the real Redfish client: a captured HGX tree served over TLS, its inventory recorded, a GPU swap
and a firmware update found, and a changed BMC certificate refused until an operator accepts it in the store."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from redfleet.paths import mockups_dir
from redfleet.store import FleetStore

TREE = mockups_dir() / "supermicro"
_addresses = itertools.count(1)


def _address() -> str:
    return f"127.14.200.{next(_addresses)}"


@pytest.fixture
def client_api():
    if not (TREE / "redfish" / "v1").is_dir():
        pytest.skip(f"mockup {TREE} is absent")
    try:
        from redfleet.redfish import RedfishClient, collect_inventory
        from redfleet.redfish.errors import CertificateChanged
        from redfleet.redfish.testing import MockupBMC, self_signed_cert
    except ImportError as exc:
        pytest.skip(f"Redfish client not importable: {exc}")
    return RedfishClient, collect_inventory, CertificateChanged, MockupBMC, self_signed_cert


async def test_collect_record_swap_and_certificate_change(store: FleetStore, client_api, tmp_path):
    RedfishClient, collect_inventory, CertificateChanged, MockupBMC, self_signed_cert = client_api
    address = _address()
    (tmp_path / "c1").mkdir()
    (tmp_path / "c2").mkdir()
    cert1 = self_signed_cert(tmp_path / "c1", address=address)
    cert2 = self_signed_cert(tmp_path / "c2", address=address)
    async with MockupBMC(TREE, address=address, tls_cert=cert1) as bmc:
        fleet = tmp_path / "fleet.yaml"
        fleet.write_text(
            "credentials: {sim: {username: root, password: calvin}}\n"
            f"nodes: [{{name: hgx-1, bmc_url: '{bmc.url}', credential: sim}}]\n"
        )
        await asyncio.to_thread(store.import_fleet, fleet)
        creds = await asyncio.to_thread(store.credentials_for, "hgx-1")
        assert creds is not None
        pins = store.pin_store()

        async def collect():
            async with RedfishClient(bmc.url, creds.username, creds.password.reveal(), pin=True,
                                     pin_store=pins, name="hgx-1") as client:
                return await collect_inventory(client)

        inv = await collect()
        assert len(inv.gpus) == 8
        assert await asyncio.to_thread(store.record_inventory, "hgx-1", inv) == []
        assert store.node("hgx-1").tls_fingerprint is not None  # trust on first use, kept in the store

        # Same hardware again: nothing new.
        assert await asyncio.to_thread(store.record_inventory, "hgx-1", await collect()) == []
        assert len(store.snapshots("hgx-1")) == 1

        # A GPU is swapped and a firmware updated (edited on the collected model).
        swapped = inv.model_copy(deep=True)
        gpu = next(g for g in swapped.gpus if g.serial)
        old_serial = gpu.serial
        gpu.serial = "SWAPPED-0001"
        fw = swapped.firmware[0]
        old_version = fw.version
        fw.version = "99.99"
        changes = await asyncio.to_thread(store.record_inventory, "hgx-1", swapped)
        kinds = {(c.category, c.kind, c.field, c.old, c.new) for c in changes}
        assert ("gpus", "replaced", "serial", old_serial, "SWAPPED-0001") in kinds
        assert ("firmware", "changed", "version", old_version, "99.99") in kinds
        assert len(changes) == 2, [c.summary for c in changes]

        # The BMC's certificate changes: refused, recorded as pending, accepted by an operator, then trusted.
        pinned = store.node("hgx-1").tls_fingerprint
        await bmc.rotate_certificate(cert2)
        with pytest.raises(CertificateChanged) as info:
            await collect()
        assert info.value.expected == pinned
        pins.record_pending(bmc.url, info.value.presented)
        assert store.node("hgx-1").tls_pending_fingerprint == info.value.presented
        with pytest.raises(CertificateChanged):  # still refused until accepted
            await collect()
        pins.accept("hgx-1", info.value.presented, reason="cert renewed")
        assert len((await collect()).gpus) == 8

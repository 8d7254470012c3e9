"""A BMC whose certificate changed while serve runs: refused with a clear error, the new certificate recorded in
the store for an operator (what `redfleet fleet accept-cert` lists), and once the operator accepts it — from
another process, as the CLI does — polled again without restarting serve. In serve's own process and with
collector workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from collector_support import Recorder, until
from cryptography.fernet import Fernet

from redfleet.sim import SimConfig, SimFleet
from redfleet.store import FleetStore, KeyRing
from redfleet.store.targets import targets_from_store
from redfleet.telemetry.collector.poller import Collector, Intervals
from redfleet.telemetry.collector.shards import ShardedCollector
from redfleet.telemetry.hub import Hub
from redfleet.telemetry.series import SeriesStore

pytestmark = pytest.mark.timeout(120)




@pytest.mark.parametrize("workers", [0, 2])
async def test_changed_certificate_waits_for_the_operator_then_polling_resumes(
        cert_cache: Any, tmp_path: Path, workers: int) -> None:
    cfg = SimConfig(mix={"dell": 2, "supermicro": 1}, port=0, base_address=f"127.19.11.{1 + workers * 10}",
                    time_scale=60.0, cache_dir=cert_cache, seed=4)
    key = Fernet.generate_key().decode()
    db = f"sqlite:///{tmp_path}/fleet.db"
    async with SimFleet(cfg) as fleet:
        store = FleetStore(db, keyring=KeyRing.from_key(key), actor="serve")
        store.import_fleet(fleet.fleet_file())
        pins = store.pin_store()
        for n in fleet.nodes:  # pinned already, as serve's earlier polls would have left them
            pins.put(n.bmc_url, n.cert_fingerprint)
        victim = fleet.nodes[0]
        old = pins.get(victim.bmc_url)
        new = fleet.rotate_certificate(victim.name)  # the BMC was re-imaged: a new self-signed certificate
        rec = Recorder()
        hub = Hub(None, SeriesStore(), rec)
        iv = Intervals(sensors=0.3, inventory=3600.0, retry_min_s=0.2, retry_max_s=0.4, pins_s=0.3)
        opts: dict[str, Any] = {"intervals": iv, "pin_store": pins, "events": False, "inventory": False}
        targets = targets_from_store(store)
        coll: Any = ShardedCollector(hub, targets, workers=workers, **opts) if workers else \
            Collector(hub, targets, **opts)
        coll.start()
        try:
            others = [n.name for n in fleet.nodes[1:]]
            await until(lambda: all(rec.samples.get(n) for n in others), 60, "the other BMCs polled")
            refused = await until(lambda: [e for n, ok, e in rec.reach if n == victim.name and not ok], 30,
                                  "the changed certificate refused")
            assert "certificate-changed" in (refused[0] or ""), refused[0]
            assert victim.name not in rec.samples
            # recorded for the operator, in the store
            pending = await until(lambda: [p for p in pins.pending() if victim.name in p.nodes], 10,
                                  "the new certificate listed for acceptance")
            assert pending[0].pending == new and pending[0].pinned == old
            # the operator accepts it from another process (redfleet fleet accept-cert NODE)
            operator = FleetStore(db, keyring=KeyRing.from_key(key), actor="operator")
            assert operator.pin_store().accept(victim.name) == new
            operator.close()
            await until(lambda: rec.samples.get(victim.name), 30, "polled again after the acceptance")
            assert pins.get(victim.bmc_url) == new
        finally:
            await coll.stop()
            store.close()

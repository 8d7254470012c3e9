"""BMCs that misbehave: each failure is a clear, classified error for that node, and the rest of the fleet completes."""

from __future__ import annotations

import time

import pytest
from rf_helpers import MOCKUPS, next_address

from redfleet.paths import mockups_dir
from redfleet.redfish import RedfishClient, RetryPolicy, Timeouts, collect_inventory
from redfleet.redfish.errors import (
    CertificateChanged,
    ConnectionFailed,
    MalformedResponse,
    RequestTimeout,
    SessionLimitExceeded,
    Throttled,
)
from redfleet.redfish.fleet import FleetOptions, NodeTarget, run_fleet
from redfleet.redfish.testing import MockupBMC, MockupTree, cert_fingerprint, self_signed_cert
from redfleet.redfish.tls import MemoryPinStore, TLSPolicy

pytestmark = pytest.mark.skipif("dell" not in MOCKUPS, reason="dell mockup missing")

FAST_RETRY = RetryPolicy(attempts=3, backoff_base=0.01, backoff_max=0.05)
TRANSPORTS = ["fast", "aiohttp"]


@pytest.fixture(scope="module")
def dell() -> MockupTree:
    return MockupTree(mockups_dir() / "dell")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_timeout(dell: MockupTree, transport: str) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc:
        bmc.faults.hang = True
        t0 = time.monotonic()
        with pytest.raises(RequestTimeout) as ei:
            async with RedfishClient(bmc.url, "root", "calvin", timeouts=Timeouts.uniform(0.3), retry=FAST_RETRY,
                                     transport=transport):
                pass
        assert ei.value.kind == "timeout"
        assert "0.3 s" in str(ei.value) and bmc.url.split("//")[1] in str(ei.value)
        assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("status", [503, 429])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_retry_after_honoured(dell: MockupTree, status: int, transport: str) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc:
        bmc.faults.throttle, bmc.faults.throttle_status, bmc.faults.retry_after = 2, status, "0.2"
        t0 = time.monotonic()
        async with RedfishClient(bmc.url, "root", "calvin", retry=RetryPolicy(attempts=4), transport=transport) as c:
            system = await c.get("/redfish/v1/Systems/System.Embedded.1")
        assert system["Id"] == "System.Embedded.1"
        assert c.stats["retries"] == 2
        assert time.monotonic() - t0 >= 0.4  # waited as told, twice
        assert len(bmc.sessions) == 0


async def test_throttle_exhausted_is_clear(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc:
        bmc.faults.throttle, bmc.faults.retry_after = 100, "0.05"
        with pytest.raises(Throttled) as ei:
            async with RedfishClient(bmc.url, "root", "calvin", retry=RetryPolicy(attempts=3)):
                pass
        assert ei.value.kind == "throttled" and ei.value.status == 503
        assert "after 3 attempts" in ei.value.message and "Retry-After" in ei.value.message
        assert "ServiceTemporarilyUnavailable" in ei.value.message


async def test_retry_after_too_long_fails_fast(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc:
        bmc.faults.throttle, bmc.faults.retry_after = 5, "3600"
        t0 = time.monotonic()
        with pytest.raises(Throttled):
            async with RedfishClient(bmc.url, "root", "calvin"):
                pass
        assert time.monotonic() - t0 < 2


async def test_sessions_refused_strict_and_fallback(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc:
        bmc.faults.refuse_sessions = True
        with pytest.raises(SessionLimitExceeded) as ei:
            async with RedfishClient(bmc.url, "root", "calvin", auth="session"):
                pass
        assert ei.value.kind == "session-limit" and "RAC0218" in ei.value.message
        # auto: Basic auth fallback keeps the node usable
        async with RedfishClient(bmc.url, "root", "calvin") as c:
            assert c.auth_used == "basic"
            inv = await collect_inventory(c)
        assert len(inv.gpus) == 1 and inv.bmc.auth == "basic"
        # and when Basic is refused too, the error says both
        bmc.faults.refuse_basic = True
        with pytest.raises(SessionLimitExceeded) as ei:
            async with RedfishClient(bmc.url, "root", "calvin"):
                pass
        assert "Basic auth refused too" in ei.value.message


async def test_sessions_never_leak(dell: MockupTree) -> None:
    """iDRAC refuses logins once 8 sessions exist: 30 clients in a row, 16 at once, errors and cancellations
    inside the block — the table ends empty."""
    import asyncio

    async with MockupBMC(dell, address=next_address(), session_limit=8) as bmc:
        for _ in range(30):
            async with RedfishClient(bmc.url, "root", "calvin") as c:
                await c.get("/redfish/v1/Systems")
        assert len(bmc.sessions) == 0 and bmc.sessions_created == 30
        sem = asyncio.Semaphore(8)

        async def one() -> None:
            async with sem, RedfishClient(bmc.url, "root", "calvin") as c:
                await c.get("/redfish/v1/Chassis")

        await asyncio.gather(*(one() for _ in range(16)))
        assert len(bmc.sessions) == 0
        with pytest.raises(KeyError):
            async with RedfishClient(bmc.url, "root", "calvin"):
                raise KeyError("boom")
        assert len(bmc.sessions) == 0

        async def hang() -> None:
            async with RedfishClient(bmc.url, "root", "calvin"):
                await asyncio.sleep(30)

        task = asyncio.create_task(hang())
        await asyncio.sleep(0.2)
        assert len(bmc.sessions) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(bmc.sessions) == 0


async def test_relogin_when_session_expires(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc, RedfishClient(bmc.url, "root", "calvin") as c:
        bmc.sessions.clear()  # the BMC dropped our session (reset, timeout)
        doc = await c.get("/redfish/v1/Systems", cache=False)
        assert doc["Members"]
        assert c.stats["relogins"] == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_certificate_pinning_and_change(dell: MockupTree, tmp_path, transport: str) -> None:
    cert_a = self_signed_cert(tmp_path, address="127.13.0.1")
    cert_b = self_signed_cert(tmp_path, address="127.13.0.1")
    store = MemoryPinStore()
    async with MockupBMC(dell, address=next_address(), tls_cert=cert_a) as bmc:
        tls = TLSPolicy("pin", pin_store=store)
        async with RedfishClient(bmc.url, "root", "calvin", tls=tls, transport=transport) as c:
            await c.get("/redfish/v1/Systems")
        assert store.get(bmc.url) == cert_fingerprint(cert_a[0])  # trusted on first use
        await bmc.rotate_certificate(cert_b)
        seen = len(bmc.requests)
        with pytest.raises(CertificateChanged) as ei:
            async with RedfishClient(bmc.url, "root", "calvin", tls=tls, transport=transport):
                pass
        e = ei.value
        assert e.kind == "certificate-changed"
        assert e.expected == cert_fingerprint(cert_a[0]) and e.presented == cert_fingerprint(cert_b[0])
        assert "until an operator accepts" in str(e)
        assert len(bmc.requests) == seen  # nothing (no credentials) was sent to the changed BMC
        # the operator accepts the new certificate
        store.put(bmc.url, e.presented)
        async with RedfishClient(bmc.url, "root", "calvin", tls=tls, transport=transport) as c:
            assert (await c.get("/redfish/v1/Systems"))["Members"]


async def test_verify_mode_rejects_self_signed_then_accepts_with_ca(dell: MockupTree, tmp_path) -> None:
    from redfleet.redfish.errors import TLSError

    cert = self_signed_cert(tmp_path, common_name="bmc.test", address="127.13.0.1")
    async with MockupBMC(dell, address="127.13.0.1", tls_cert=cert) as bmc:
        with pytest.raises(TLSError):
            async with RedfishClient(bmc.url, "root", "calvin"):
                pass
        async with RedfishClient(bmc.url, "root", "calvin", verify=cert[0]) as c:
            assert c.caps.vendor == "Dell"
        async with RedfishClient(bmc.url, "root", "calvin", verify=False) as c:
            assert c.caps.vendor == "Dell"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_malformed_body(dell: MockupTree, transport: str) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc:
        bmc.faults.bad_json = True
        with pytest.raises(MalformedResponse) as ei:
            async with RedfishClient(bmc.url, "root", "calvin", transport=transport):
                pass
        assert ei.value.kind == "malformed" and "not JSON" in ei.value.message
        assert len(bmc.sessions) == 0


async def test_connection_dropped(dell: MockupTree) -> None:
    async with MockupBMC(dell, address=next_address()) as bmc:
        bmc.faults.close = True
        with pytest.raises(ConnectionFailed) as ei:
            async with RedfishClient(bmc.url, "root", "calvin", retry=FAST_RETRY):
                pass
        assert ei.value.kind == "unreachable"


async def test_fleet_completes_with_per_node_errors(dell: MockupTree, tmp_path) -> None:
    """Seven BMCs: two healthy, five each failing differently; every node gets its own result."""
    trees = {name: MockupTree(mockups_dir() / name) for name in ("dell", "supermicro")}
    cert_a, cert_b = self_signed_cert(tmp_path), self_signed_cert(tmp_path)
    plan = [("ok-dell", "dell", None), ("ok-smc", "supermicro", None), ("hang", "dell", "hang"),
            ("throttle", "dell", "throttle"), ("nosession", "dell", "refuse"), ("badjson", "supermicro", "bad_json"),
            ("certchange", "dell", "cert")]
    bmcs = []
    pins = MemoryPinStore()
    try:
        for _name, tree, fault in plan:
            bmc = MockupBMC(trees[tree], address=next_address(), tls_cert=cert_a if fault == "cert" else None)
            await bmc.start()
            bmcs.append(bmc)
            if fault == "hang":
                bmc.faults.hang = True
            elif fault == "throttle":
                bmc.faults.throttle, bmc.faults.retry_after = 1000, "0.05"
            elif fault == "refuse":
                bmc.faults.refuse_sessions = bmc.faults.refuse_basic = True
            elif fault == "bad_json":
                bmc.faults.bad_json = True
                bmc.faults.paths = {"/redfish/v1/systems/1/memory"}  # one broken resource, not the root
            elif fault == "cert":
                pins.put(bmc.url, cert_fingerprint(cert_a[0]))
                await bmc.rotate_certificate(cert_b)
        targets = [NodeTarget(n, b.url, "root", "calvin") for (n, _, _), b in zip(plan, bmcs, strict=True)]
        opts = FleetOptions(tls_mode="pin", pin_store=pins, timeouts=Timeouts.uniform(0.5),
                            retry=RetryPolicy(attempts=3, backoff_base=0.01, backoff_max=0.05))
        t0 = time.monotonic()
        results = await run_fleet(targets, collect_inventory, options=opts)
        assert time.monotonic() - t0 < 10
        by = {r.name: r for r in results}
        assert by["ok-dell"].ok and len(by["ok-dell"].value.gpus) == 1
        assert by["ok-smc"].ok and len(by["ok-smc"].value.gpus) == 8
        assert by["hang"].error_dict()["kind"] == "timeout"
        assert by["throttle"].error_dict()["kind"] == "throttled"
        assert by["nosession"].error_dict()["kind"] == "session-limit"
        assert by["certchange"].error_dict()["kind"] == "certificate-changed"
        # a single malformed resource costs that section, not the node: it is reported as a warning
        bad = by["badjson"]
        assert bad.ok and any("not JSON" in w for w in bad.value.bmc.warnings)
        assert len(bad.value.memory) == 0 and len(bad.value.cpus) == 2 and len(bad.value.gpus) == 8
        for b in bmcs:
            assert len(b.sessions) == 0
    finally:
        for b in bmcs:
            await b.stop()

"""The BMC collector against the simulator: sensors reach the series, polls are spread, slow/throttling BMCs are
backed off and recover, unreachable BMCs are reported, SSE is consumed where advertised and push subscriptions are
created (and recreated when the BMC loses them) elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from collector_support import Recorder, until

from redfleet.redfish.fleet import targets_from_fleet
from redfleet.sim import SimConfig, SimFleet
from redfleet.telemetry.collector.poller import Collector, Intervals
from redfleet.telemetry.hub import Hub
from redfleet.telemetry.series import SeriesStore

pytestmark = pytest.mark.timeout(90)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def sim(cert_cache: Any, mix: dict[str, int], base: str, **kw: Any) -> AsyncIterator[SimFleet]:
    cfg = SimConfig(mix=mix, port=0, base_address=base, time_scale=60.0, cache_dir=cert_cache, seed=4, **kw)
    async with SimFleet(cfg) as fleet:
        yield fleet


def make(fleet: SimFleet, **iv: Any) -> tuple[Hub, Recorder, Collector]:
    rec = Recorder()
    hub = Hub(None, SeriesStore(), rec)
    intervals = Intervals(**{"sensors": 0.5, "inventory": 3600.0, "retry_min_s": 0.2, "retry_max_s": 1.0,
                             "jitter": 0.2, **iv})
    coll = Collector(hub, targets_from_fleet(fleet.fleet_file()), intervals=intervals, inventory=False, events=False)
    return hub, rec, coll


async def test_sensors_polled_spread_and_pinned(cert_cache: Any) -> None:
    async with sim(cert_cache, {"dell": 2, "dgx": 2}, "127.19.1.1") as fleet:
        hub, rec, coll = make(fleet, sensors=1.0)
        # when each node's first poll starts (when it ends says more about the first TLS handshakes and logins the
        # simulator serves at once than about the collector's spread)
        first: dict[str, float] = {}
        orig = coll._poll

        async def spy(st: Any, kind: str) -> bool:
            first.setdefault(st.target.name, time.monotonic())
            return await orig(st, kind)

        coll._poll = spy  # type: ignore[method-assign]
        coll.start()
        try:
            await until(lambda: all(rec.samples.get(n.name, 0) > 0 for n in fleet.nodes), what="every node polled")
            await until(lambda: all(s.polls >= 2 for s in coll.state.values()), what="second round")
        finally:
            await coll.stop()
        n = fleet.nodes[0].name
        temps = [k for k in hub.series.keys(n) if k.metric == "redfish_temperature"]
        assert temps, f"no redfish_temperature series for {n}: {hub.series.keys(n)[:5]}"
        assert {"sensor"} <= set(temps[0].labels_dict)
        assert all(ok for _, ok, _ in rec.reach)
        assert rec.power == {n.name: "On" for n in fleet.nodes}  # host power read with the sensors
        # not a thundering herd: first polls spread over the start window, not all at one instant
        stamps = sorted(first.values())
        assert stamps[-1] - stamps[0] > 0.05, stamps


async def test_throttled_bmc_backs_off_and_recovers(cert_cache: Any) -> None:
    async with sim(cert_cache, {"openbmc": 2}, "127.19.2.1") as fleet:
        _hub, rec, coll = make(fleet, sensors=0.3, backoff=2.0, max_backoff=8.0)
        coll.start()
        try:
            await until(lambda: all(s.polls >= 1 for s in coll.state.values()), what="first polls")
            slow = fleet.sim_nodes[0]
            slow.throttle(429, seconds=2 * 60.0)  # 2 real seconds at time_scale 60
            st = coll.state[slow.name]
            await until(lambda: st.throttled >= 1 and st.factor > 1.0, what="backoff on 429")
            assert st.retry_after is not None or st.failures >= 1
            other = coll.state[fleet.sim_nodes[1].name]
            assert other.factor == 1.0  # the healthy BMC keeps its pace
            await until(lambda: st.factor == 1.0 and st.failures == 0, limit=30, what="recovery after throttling")
        finally:
            await coll.stop()
        # throttling is not unreachability
        assert not [r for r in rec.reach if not r[1]]


async def test_slowness_is_judged_per_request_not_per_poll(cert_cache: Any) -> None:
    """Every answer takes 40 ms. An inventory poll is many reads (seconds on a real HGX) and says nothing about the
    BMC's pace: with slow_s = 0.1 s per request the node keeps its intervals through inventory polls. With slow_s
    below the 40 ms it does answer in, its intervals are stretched."""
    async with sim(cert_cache, {"openbmc": 1}, "127.19.6.1", latency="const:40ms") as fleet:
        targets = targets_from_fleet(fleet.fleet_file())
        for slow_s, stretched in ((0.1, False), (0.02, True)):
            hub = Hub(None, SeriesStore(), Recorder())
            inventories: list[str] = []
            orig = hub.observe_inventory

            def spy(node: str, inv: Any, *a: Any, _orig: Any = orig, _seen: list[str] = inventories, **kw: Any) -> Any:
                _seen.append(node)
                return _orig(node, inv, *a, **kw)

            hub.observe_inventory = spy  # type: ignore[method-assign]
            iv = Intervals(sensors=0.3, inventory=0.6, jitter=0.1, slow_s=slow_s, max_backoff=4.0)
            coll = Collector(hub, targets, intervals=iv, inventory=True, events=False)
            st = coll.state[targets[0].name]
            coll.start()
            try:
                if stretched:
                    await until(lambda st=st: st.factor > 1.0, what="intervals stretched for a slow BMC")
                else:
                    await until(lambda st=st, inv=inventories: len(inv) >= 2 and st.polls >= 5,
                                what="two inventory polls and more")
                    assert st.factor == 1.0, f"stretched by {st.factor} though each answer took 40 ms"
                    assert max(coll.poll_durations) > 0.1  # whole polls were slower than slow_s: only the pace counts
            finally:
                await coll.stop()


async def test_unreachable_bmc_reported_and_back(cert_cache: Any) -> None:
    async with sim(cert_cache, {"ami": 2}, "127.19.3.1") as fleet:
        hub, rec, coll = make(fleet)
        coll.start()
        try:
            await until(lambda: all(s.polls >= 1 for s in coll.state.values()), what="first polls")
            down = fleet.sim_nodes[1]
            down.set_down(True)
            await until(lambda: any(n == down.name and not ok for n, ok, _ in rec.reach), what="unreachable seen")
            err = next(e for n, ok, e in rec.reach if n == down.name and not ok)
            assert err and err.split(":")[0] in ("unreachable", "timeout")
            assert hub.nodes[down.name].bmc_ok is False
            up = fleet.sim_nodes[0].name
            assert hub.nodes[up].bmc_ok is True
            down.set_down(False)
            await until(lambda: hub.nodes[down.name].bmc_ok is True, what="reachable again")
        finally:
            await coll.stop()


async def test_sse_consumed_where_advertised(cert_cache: Any) -> None:
    async with sim(cert_cache, {"dell": 1}, "127.19.4.1") as fleet:
        rec = Recorder()
        hub = Hub(None, SeriesStore(), rec)
        seen: list[dict[str, Any]] = []
        orig = hub.observe_bmc_event
        hub.observe_bmc_event = lambda n, ev, src, now=None: (seen.append({"node": n, "src": src, **ev}),  # type: ignore[method-assign]
                                                               orig(n, ev, src, now))
        coll = Collector(hub, targets_from_fleet(fleet.fleet_file()), inventory=False,
                         intervals=Intervals(sensors=5.0, retry_min_s=0.2))
        coll.start()
        try:
            st = coll.state[fleet.nodes[0].name]
            await until(lambda: st.events_mode == "sse", what="SSE chosen for iDRAC")
            await asyncio.sleep(0.5)  # stream connected
            fleet.dynamics.inject(fleet.nodes[0].name, "psu", target=0)  # type: ignore[union-attr]
            ev = await until(lambda: [e for e in seen if e["src"] == "redfish-sse"], what="an SSE event")
        finally:
            await coll.stop()
        assert ev[0]["node"] == fleet.nodes[0].name and ev[0].get("MessageId")


async def test_push_subscription_created_delivered_and_recreated(cert_cache: Any) -> None:
    import uvicorn

    from redfleet.api.app import create_app

    host = "127.19.0.1"
    port = free_port(host)
    async with sim(cert_cache, {"hpe": 1}, "127.19.5.1") as fleet:
        rec = Recorder()
        hub = Hub(None, SeriesStore(), rec)
        node = fleet.nodes[0].name
        hub.add_node(node, fleet.nodes[0].bmc_url)
        app = create_app(None, hub=hub, targets=targets_from_fleet(fleet.fleet_file()), receiver_url=f"http://{host}:{port}",
                         intervals=Intervals(sensors=5.0, retry_min_s=0.2, event_renew_s=0.3), dev_token="t")
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
        task = asyncio.create_task(server.serve())
        try:
            await until(lambda: server.started, what="server up")
            coll = app.state.collector
            st = coll.state[node]
            await until(lambda: st.subscription, what="subscription created")
            assert st.events_mode == "push"
            sim_node = fleet.node(node)
            subs = sim_node.dyn.subs.docs  # type: ignore[union-attr]
            assert [d["Destination"] for d in subs.values()] == [f"http://{host}:{port}/api/v1/redfish/events/{node}"]
            fleet.dynamics.inject(node, "fan", target=0)  # type: ignore[union-attr]
            await until(lambda: hub.events_total > 0, what="a pushed event")
            # the BMC loses the subscription (reset, someone deleted it): redfleet makes a new one
            subs.clear()
            await until(lambda: st.subscriptions_made >= 2 and subs, what="subscription recreated")
            # one of ours with another context (an earlier run's secret) is replaced, not trusted
            from redfleet.telemetry.collector.push import node_context

            next(iter(subs.values()))["Context"] = "redfleet:stale"
            await until(lambda: st.subscriptions_made >= 3 and len(subs) == 1, what="stale subscription replaced")
            assert next(iter(subs.values()))["Context"] == node_context(app.state.push_secret, node)
            # a stranger's POST to the receiver is refused
            import aiohttp

            async with aiohttp.ClientSession() as s, s.post(
                    f"http://{host}:{port}/api/v1/redfish/events/{node}",
                    json={"Context": "guess", "Events": [{"MessageId": "X"}]}) as resp:
                assert resp.status == 403
        finally:
            server.should_exit = True
            await task
        assert subs == {}, "serve left its subscription on the BMC at shutdown"


def spy_inventories(hub: Hub) -> list[dict[str, Any]]:
    """Every inventory the collector hands the hub, in order (the hub still gets it)."""
    seen: list[dict[str, Any]] = []
    orig = hub.observe_inventory

    def spy(node: str, inventory: dict[str, Any], now: float | None = None) -> None:
        seen.append(inventory)
        orig(node, inventory, now)

    hub.observe_inventory = spy  # type: ignore[method-assign]
    return seen


async def test_refresh_polls_now_and_each_inventory_reads_live_values(cert_cache: Any) -> None:
    """The collector keeps one client per BMC; an inventory poll must not be answered from what that client read
    before (a repaired GPU would stay Critical until serve restarts), and refresh() polls at once."""
    async with sim(cert_cache, {"dgx": 1}, "127.19.9.1") as fleet:
        hub, _rec, coll = make(fleet, sensors=3600.0, inventory=3600.0)
        coll.inventory = True
        seen = spy_inventories(hub)
        node = fleet.nodes[0].name

        def gpu_health() -> list[str | None]:
            return [g.get("health") for g in seen[-1]["gpus"]]

        coll.start()
        try:
            await asyncio.sleep(0.2)
            coll.refresh(node)  # rather than at a random point of its first minute
            await until(lambda: seen, 10, "first inventory")
            assert "Critical" not in gpu_health()
            # what the inventory read is not kept in the long-lived client after the poll (memory at fleet scale)
            assert not coll.clients[node]._cache
            fleet.dynamics.inject(node, "xid", gpu=1, xid=48)  # type: ignore[union-attr]
            assert coll.refresh(node) and not coll.refresh("no-such-node")
            await until(lambda: len(seen) >= 2, 10, "refreshed inventory")
            assert "Critical" in gpu_health(), gpu_health()
            fleet.dynamics.clear(node)  # type: ignore[union-attr]
            coll.refresh(node)
            await until(lambda: len(seen) >= 3, 10, "second refresh")
            assert "Critical" not in gpu_health(), gpu_health()
        finally:
            await coll.stop()


async def test_newly_bad_component_is_read_again_soon_once(cert_cache: Any) -> None:
    """An inventory that shows a component newly Critical is read again after ``confirm_s`` rather than an hour
    later (a GPU's Health rolls up a short thermal blip); a part that stays bad does not keep the reads coming."""
    async with sim(cert_cache, {"dgx": 1}, "127.19.9.33") as fleet:
        hub, _rec, coll = make(fleet, sensors=3600.0, inventory=3600.0, confirm_s=0.5)
        coll.inventory = True
        seen = spy_inventories(hub)
        node = fleet.nodes[0].name
        st = coll.state[node]
        coll.start()
        try:
            await asyncio.sleep(0.2)
            coll.refresh(node)
            await until(lambda: seen, 10, "first inventory")
            assert st.confirms == 0 and not st.bad_parts
            fleet.dynamics.inject(node, "xid", gpu=2, xid=48)  # type: ignore[union-attr]
            coll.refresh(node, ("inventory",))
            await until(lambda: len(seen) >= 2, 10, "inventory after the fault")
            assert any(p.startswith("gpu:") for p in st.bad_parts), st.bad_parts
            # no refresh: the collector looks again by itself
            await until(lambda: len(seen) >= 3, 10, "confirmation read")
            assert st.confirms == 1
            await asyncio.sleep(1.5)  # three confirm_s: the part is still bad, but no longer new
            assert len(seen) == 3 and st.confirms == 1, (len(seen), st.confirms)
        finally:
            await coll.stop()


async def test_worker_processes_poll_their_shares_for_serve(cert_cache: Any) -> None:
    """``--collector-workers``: each worker process polls its share of the BMCs and sends what it saw to serve's
    hub; pins made in a worker (trust on first use) land in serve's pin store; refresh() reaches the BMC's worker;
    a worker that dies is started again; stop() ends them all."""
    from redfleet.redfish.tls import MemoryPinStore
    from redfleet.telemetry.collector.shards import ShardedCollector

    async with sim(cert_cache, {"dell": 2, "supermicro": 2, "dgx": 2}, "127.19.9.65") as fleet:
        rec = Recorder()
        hub = Hub(None, SeriesStore(), rec)
        seen = spy_inventories(hub)
        pins = MemoryPinStore()
        iv = Intervals(sensors=0.3, inventory=3600.0, retry_min_s=0.2, retry_max_s=1.0, jitter=0.2)
        targets = targets_from_fleet(fleet.fleet_file())
        coll = ShardedCollector(hub, targets, workers=2, pin_store=pins, restart_s=0.5, intervals=iv, events=False)
        names = {t.name for t in targets}
        coll.start()
        try:
            await until(lambda: set(rec.samples) == names, 60, "sensor samples from every BMC")
            assert {coll.shard_of[n] for n in names} == {0, 1}
            assert all(ok for _, ok, _ in rec.reach)
            await until(lambda: coll.summary()["clients"] == 6, 10, "both workers' counters")
            assert coll.summary()["workers_alive"] == 2
            assert len(pins.items()) == 6, pins.items()  # every BMC pinned, in serve's store
            node = sorted(names)[0]
            before = len(seen)
            assert coll.refresh(node, ("inventory",)) and not coll.refresh("no-such-node")
            await until(lambda: len(seen) > before, 20, "inventory asked through the worker")
            # a worker killed: started again, its BMCs polled again
            dead = coll.workers[0]
            mine = [t.name for t in dead.targets]
            dead.proc.kill()
            await until(lambda: dead.restarts == 1 and coll.summary()["workers_alive"] == 2, 30, "worker restarted")
            counts = {n: rec.samples[n] for n in mine}
            await until(lambda: all(rec.samples[n] > counts[n] for n in mine), 60, "polls after the restart")
        finally:
            await coll.stop()
        assert all(not w.proc.is_alive() for w in coll.workers)


def test_worker_batches_cross_whole_under_uvloop(cert_cache: Any) -> None:
    """uvicorn runs serve on uvloop, which turns a watched fd non-blocking: a worker's batch larger than the pipe's
    buffer (here a second of DGX sensor polls, ~45 KB each, as a start-up burst of inventories is in serve) must
    still arrive whole, the worker kept."""
    uvloop = pytest.importorskip("uvloop")
    from redfleet.telemetry.collector.shards import ShardedCollector

    async def main() -> None:
        async with sim(cert_cache, {"dgx": 2}, "127.19.9.97") as fleet:
            rec = Recorder()
            hub = Hub(None, SeriesStore(), rec)
            seen = spy_inventories(hub)
            targets = targets_from_fleet(fleet.fleet_file())
            coll = ShardedCollector(hub, targets, workers=1, restart_s=0.2, events=False, flush_s=1.0,
                                    intervals=Intervals(sensors=0.05, inventory=3600.0))
            coll.start()
            try:
                await until(lambda: len(rec.samples) == 2, 60, "first sensor polls")
                for t in targets:
                    coll.refresh(t.name, ("inventory",))
                await until(lambda: len(seen) >= 2, 30, "both inventories")
                await until(lambda: sum(rec.samples.values()) > 20 * 503, 30, "a few batches of sensor polls")
                assert coll.workers[0].biggest > 512 * 1024, coll.workers[0].biggest  # past a pipe's buffer
                assert coll.workers[0].restarts == 0 and coll.workers[0].conn is not None
            finally:
                await coll.stop()

    uvloop.run(main())

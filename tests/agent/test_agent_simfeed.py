"""The simulator feeder (and the agent's dcgm-exporter path) against a small SimFleet, pushing into a local
receiver: batches per node, an injected Xid 79 as an event plus a missing GPU, os-hang as hung/stop."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from agent_receiver import Receiver

from redfleet.agent.core import Agent
from redfleet.agent.simfeed import NodeFeedState, SimFeeder, batch_from_inband, encode_batch
from redfleet.model.ingest import IngestBatch
from redfleet.sim import SimConfig, SimFleet

TOKENS = {"node-00001": "t1", "node-00002": "t2", "node-00003": "t3"}


@pytest.fixture
async def fleet() -> AsyncIterator[SimFleet]:
    cfg = SimConfig(nodes=3, port=0, http=True, base_address="127.18.0.1", host_base_address="127.18.1.1",
                    time_scale=50, control_port=0, inband=True, inband_port=0)
    async with SimFleet(cfg) as f:
        yield f


@pytest.fixture
async def rx() -> AsyncIterator[Receiver]:
    r = await Receiver(tokens=TOKENS, host="127.18.0.200").start()
    yield r
    await r.stop()


def _gpu_node(fleet: SimFleet) -> tuple[str, int]:
    """The node with the most GPUs, and its GPU count."""
    counts = {n.name: len(fleet.dynamics.node(n.name).flv.ix.gpus) for n in fleet.nodes}
    name = max(counts, key=lambda k: counts[k])
    assert counts[name] >= 2, f"the 3-node fleet should have a multi-GPU node: {counts}"
    return name, counts[name]


def _last(rx: Receiver, node: str) -> IngestBatch:
    return [b for b in rx.batches if b.node == node][-1]


async def test_one_batch_per_node_per_round_with_per_node_tokens(fleet: SimFleet, rx: Receiver):
    name, n_gpus = _gpu_node(fleet)
    async with SimFeeder(rx.url, TOKENS, fleet=fleet, nvme_every=3600) as feeder:
        st = await feeder.tick()
        assert (st.nodes, st.sent, st.failed) == (3, 3, 0)
        assert sorted(b.node for b in rx.batches) == sorted(TOKENS)
        b = _last(rx, name)
        assert b.source == "sim" and b.agent == "redfleet-sim" and b.os_state == "up"
        assert len(b.gpus) == n_gpus == b.gpus_expected
        temps = [s for s in b.samples if s.metric == "DCGM_FI_DEV_GPU_TEMP"]
        assert sorted(s.gpu for s in temps) == list(range(n_gpus))
        assert all(15 < s.value < 100 for s in temps)
        assert b.nvme and b.nvme[0].smart is not None  # first round carries NVMe logs
        assert any(s.metric == "REDFLEET_NVME_PERCENT_USED" for s in b.samples)
        await feeder.tick()
        assert _last(rx, name).nvme == []  # not again before nvme_every
        assert st.samples == sum(len(x.samples) for x in rx.batches[:3])
        assert set(rx.auth_headers) == {f"Bearer {t}" for t in TOKENS.values()}


@pytest.mark.parametrize("refresh", [None, 3600.0])
async def test_xid79_event_and_missing_gpu(fleet: SimFleet, rx: Receiver, refresh: float | None):
    """Also with readings held for an hour: a fault recomputes the node's fields at once."""
    name, n_gpus = _gpu_node(fleet)
    async with SimFeeder(rx.url, TOKENS, fleet=fleet, nvme_every=3600, refresh=refresh) as feeder:
        await feeder.tick()
        assert _last(rx, name).events == []
        fleet.dynamics.inject(name, "xid", gpu=1, xid=79)
        await feeder.tick()
        b = _last(rx, name)
        x79 = [e for e in b.events if e.code == 79]
        assert len(x79) == 1 and x79[0].kind == "xid" and x79[0].gpu == 1
        assert x79[0].raw and "NVRM: Xid" in x79[0].raw and x79[0].pci_bus_id
        assert [g.gpu for g in b.gpus] == [g for g in range(n_gpus) if g != 1]  # GPU 1 fell off the bus
        assert b.gpus_expected == n_gpus
        assert not any(s.gpu == 1 for s in b.samples)
        await feeder.tick()
        assert not any(e.code == 79 for e in _last(rx, name).events)  # reported once


async def test_refresh_holds_readings_between_faults(fleet: SimFleet, rx: Receiver, monkeypatch):
    import redfleet.sim.inband as inband

    calls: list[int] = []
    real = inband.gpu_fields

    def counting(nd, gpu, t):
        calls.append(gpu)
        return real(nd, gpu, t)

    monkeypatch.setattr(inband, "gpu_fields", counting)
    name, n_gpus = _gpu_node(fleet)
    async with SimFeeder(rx.url, TOKENS, fleet=fleet, nvme_every=3600, refresh=3600) as held, \
            SimFeeder(rx.url, TOKENS, fleet=fleet, nvme_every=3600) as exact:
        await held.tick()
        n = len(calls)
        assert n >= n_gpus
        await held.tick()
        assert len(calls) == n  # held: nothing recomputed, batches still sent
        first, second = [b for b in rx.batches if b.node == name]
        gpu1 = [(x.metric, x.gpu, x.value) for x in first.samples if x.gpu is not None]
        gpu2 = [(x.metric, x.gpu, x.value) for x in second.samples if x.gpu is not None]
        assert gpu2 and gpu2 == gpu1  # held values (the first batch also had the NVMe samples)
        assert {x.ts for x in second.samples} == {second.sent_at} and second.sent_at > first.sent_at  # fresh times
        assert second.uptime_s >= first.uptime_s
        fleet.dynamics.inject(name, "nvlink", gpu=0)
        await held.tick()
        assert len(calls) == n + n_gpus  # the faulty node alone is recomputed at once
        await exact.tick()
        await exact.tick()
        assert len(calls) - (n + n_gpus) == 2 * n  # exact: every GPU every round


@pytest.mark.parametrize("mode", ["report", "stop"])
async def test_os_hang_reports_hung_or_stops(fleet: SimFleet, rx: Receiver, mode: str):
    name, _ = _gpu_node(fleet)
    async with SimFeeder(rx.url, TOKENS, fleet=fleet, hung=mode, nvme_every=3600) as feeder:
        await feeder.tick()
        fleet.dynamics.inject(name, "os-hang")
        n_before = len([b for b in rx.batches if b.node == name])
        st = await feeder.tick()
        mine = [b for b in rx.batches if b.node == name]
        if mode == "report":
            assert len(mine) == n_before + 1
            assert mine[-1].os_state == "hung" and mine[-1].samples == [] and mine[-1].gpus == []
        else:
            assert len(mine) == n_before and st.nodes == 2 and st.skipped == 1  # the heartbeat stops
        fleet.dynamics.clear(name)
        await feeder.tick()
        assert _last(rx, name).os_state == "up" and _last(rx, name).samples


async def test_feed_over_the_control_api(fleet: SimFleet, rx: Receiver):
    assert fleet.control_url
    name, n_gpus = _gpu_node(fleet)
    fleet.dynamics.inject(name, "xid", gpu=0, xid=48)
    async with SimFeeder(rx.url, "ignored", control=fleet.control_url, nvme_every=3600) as feeder:
        feeder.token = TOKENS.__getitem__
        st = await feeder.tick()
        assert st.sent == 3
        b = _last(rx, name)
        assert [(e.gpu, e.code) for e in b.events if e.code == 48] == [(0, 48)]
        assert len(b.gpus) == n_gpus and b.samples


async def test_receiver_down_counts_failures(fleet: SimFleet):
    r = await Receiver(tokens=TOKENS, host="127.18.0.201").start()
    url = r.url
    await r.stop()
    async with SimFeeder(url, TOKENS, fleet=fleet, nvme_every=3600, timeout=1.0) as feeder:
        st = await feeder.tick()
        assert st.sent == 0 and st.failed == 3 and st.statuses == {0: 3}


async def test_agent_scrapes_the_simulated_dcgm_exporter(fleet: SimFleet, rx: Receiver):
    """The real agent's dcgm-exporter path against the simulator's exporter page: the sticky Xid field turns into
    an event once, the lost GPU drops out of the page."""
    name, n_gpus = _gpu_node(fleet)
    url = fleet.dynamics.inband.url(name)
    assert url, "the simulator serves dcgm-exporter text with inband=True"
    ag = Agent(name, source="dcgm-exporter", dcgm_url=url)
    try:
        b1 = await ag.collect()
        assert b1.source == "dcgm-exporter" and len(b1.gpus) == n_gpus and b1.gpus_expected == n_gpus
        assert b1.events == [] and b1.driver_version
        fleet.dynamics.inject(name, "xid", gpu=2, xid=31)
        b2 = await ag.collect()
        assert [(e.gpu, e.code) for e in b2.events if e.kind == "xid"] == [(2, 31)]
        fleet.dynamics.inject(name, "gpu-lost", gpu=3)
        b3 = await ag.collect()
        assert [g.gpu for g in b3.gpus] == [g for g in range(n_gpus) if g != 3] and b3.gpus_expected == n_gpus
        b4 = await ag.collect()
        assert not [e for e in b4.events if e.kind == "xid"]  # sticky value: no repeat
    finally:
        await ag.close()


async def test_cli_once_pushes_and_prints(fleet: SimFleet, rx: Receiver, tmp_path: Path):
    """`redfleet agent --once` as a subprocess: --json prints a valid batch; without it the batch is pushed."""
    name, n_gpus = _gpu_node(fleet)
    url = fleet.dynamics.inband.url(name)
    fixtures = Path(__file__).parent / "fixtures"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    # the root app with `agent` registered (whether or not main.COMMAND_MODULES lists it yet)
    prog = "import redfleet.cli.agent as a, redfleet.cli.main as m; a.register(m.app); m.app()"
    base = [sys.executable, "-c", prog, "agent", "--node", name]
    p = await asyncio.create_subprocess_exec(
        *base, "--once", "--json", "--dcgm-exporter", url, "--kmsg", str(fixtures / "dmesg-xid.txt"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(p.communicate(), 60)
    assert p.returncode == 0, err.decode()
    b = IngestBatch.model_validate(json.loads(out))
    assert b.node == name and len(b.gpus) == n_gpus
    assert [e.code for e in b.events if e.kind == "xid"] == [13, 79, 31, 119, 62]  # --once reads the file whole
    p = await asyncio.create_subprocess_exec(
        *base, "--once", "--server", rx.url, "--token", TOKENS[name], "--source", "nvml",
        "--nvml-module", "nvml_standin", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(p.communicate(), 60)
    assert p.returncode == 0, err.decode()
    got = _last(rx, name)
    assert got.source == "nvml" and len(got.gpus) == 4  # the stand-in's four GPUs
    p = await asyncio.create_subprocess_exec(
        *base, "--once", "--server", rx.url, "--token", "wrong", "--source", "none",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(p.communicate(), 60)
    assert p.returncode == 1 and b"401" in err


async def test_encoded_batch_equals_the_dict_form(fleet: SimFleet):
    name, n_gpus = _gpu_node(fleet)
    fleet.dynamics.inject(name, "xid", gpu=1, xid=48)
    async with SimFeeder("http://127.18.0.9:9", "t", fleet=fleet, refresh=3600) as f:
        st = NodeFeedState()
        doc = f._local_doc(name, st, 100.0, True)
        assert doc["nvme"] and doc["gpus"]
        for now in (100.0, 101.5):  # the second time from the cached fragment, timestamps replaced
            enc = encode_batch(doc, NodeFeedState() if now == 100.0 else st, now)
            assert enc is not None
            body, n_samples, n_events = enc
            want = orjson.loads(orjson.dumps(batch_from_inband(doc, NodeFeedState(), now)))
            got = orjson.loads(body)
            assert got == want
            assert n_samples == len(want["samples"]) > n_gpus * 30 and n_events == len(want["events"]) >= 1
            assert {s["ts"] for s in got["samples"]} == {now}
            IngestBatch.model_validate_json(body)
            if now == 100.0:
                encode_batch(doc, st, now)  # fill st's cache
                st.seen_xids = set()  # (so the Xid line is new again, as for the fresh state it is compared with)


async def test_nvme_fault_sends_the_logs_at_once(fleet: SimFleet, rx: Receiver):
    name = fleet.nodes[0].name
    async with SimFeeder(rx.url, TOKENS, fleet=fleet, nvme_every=3600) as feeder:
        await feeder.tick()
        await feeder.tick()
        assert _last(rx, name).nvme == []  # not due again for an hour
        fleet.dynamics.inject(name, "nvme-wear", target=1)
        await feeder.tick()
        b = _last(rx, name)
        assert len(b.nvme) >= 2 and b.nvme[1].smart["critical_warning"] & 0x4
        warn = {s.labels["device"]: s.value for s in b.samples if s.metric == "REDFLEET_NVME_CRITICAL_WARNING"}
        assert warn["nvme1"] >= 4 and warn["nvme0"] == 0
    async with SimFeeder(rx.url, TOKENS, fleet=fleet, nvme_every=0) as never:
        await never.tick()
        assert _last(rx, name).nvme == []


async def test_cli_sim_feed_one_round(fleet: SimFleet):
    r = await Receiver(tokens="tok", host="127.18.0.202").start()
    try:
        prog = "import redfleet.cli.agent as a, redfleet.cli.main as m; a.register(m.app); m.app()"
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-c", prog, "sim", "feed", "--server", r.url, "--token", "tok", "--control",
            str(fleet.control_url), "--rounds", "1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(p.communicate(), 60)
        assert p.returncode == 0, err.decode()
        assert sorted(b.node for b in r.batches) == sorted(n.name for n in fleet.nodes)
        assert b"sent 3 batches" in out
    finally:
        await r.stop()


@pytest.mark.parametrize("refresh", [None, 3600.0])
async def test_columnar_feed_carries_the_same_readings(fleet: SimFleet, rx: Receiver, refresh: float | None):
    """columnar=True: each node's GPU fields as one row of columns (binary framing), the same values the JSON
    feed sends as samples; held rounds resend them with the round's time; an Xid 79 still arrives at once, the
    lost GPU's columns gone from the layout."""
    name, n_gpus = _gpu_node(fleet)
    async with SimFeeder(rx.url, TOKENS, fleet=fleet, nvme_every=0, columnar=True, refresh=refresh) as feeder:
        st = await feeder.tick(now=1000.0)
        assert (st.nodes, st.sent, st.failed) == (3, 3, 0)
        cols = [c for n, c in rx.columns if n == name][-1]
        assert cols.layout.gpus == tuple(range(n_gpus)) and cols.ts.tolist() == [1000.0]
        assert cols.count == cols.layout.size == n_gpus * len(cols.layout.metrics) >= n_gpus * 30
        st_node = feeder.state[name]
        want = {(m, g): float(v) for g, f in st_node.fields.items() if f for m, v in f.items()}
        got = {(cols.layout.metric_of[c], cols.layout.gpu_of[c]): v for c, v in enumerate(cols.values[0].tolist())}
        assert got == want
        b = _last(rx, name)
        assert len(b.gpus) == n_gpus and b.samples == []  # the GPU fields are in the columns only
        await feeder.tick(now=1001.0)
        again = [c for n, c in rx.columns if n == name][-1]
        assert again.ts.tolist() == [1001.0] and _last(rx, name).sent_at == 1001.0
        if refresh:  # held: the same readings, this round's time
            assert again.values.tolist() == cols.values.tolist()
        fleet.dynamics.inject(name, "xid", gpu=1, xid=79)
        await feeder.tick(now=1002.0)
        b = _last(rx, name)
        assert (1, 79) in [(e.gpu, e.code) for e in b.events if e.kind == "xid"]
        lost = [c for n, c in rx.columns if n == name][-1]
        assert 1 not in lost.layout.gpus and len(lost.layout.gpus) == n_gpus - 1


@pytest.mark.parametrize("refresh", [None, 3600.0])
async def test_columnar_feed_of_a_hung_host_has_no_rows(fleet: SimFleet, rx: Receiver, refresh: float | None):
    name, _ = _gpu_node(fleet)
    async with SimFeeder(rx.url, TOKENS, fleet=fleet, nvme_every=0, columnar=True, refresh=refresh) as feeder:
        await feeder.tick(now=1000.0)
        fleet.dynamics.inject(name, "os-hang")
        n_cols = len([c for n, c in rx.columns if n == name])
        st = await feeder.tick(now=1001.0)
        assert st.failed == 0
        b = _last(rx, name)
        assert b.os_state == "hung" and b.samples == [] and b.gpus == [] and b.sent_at == 1001.0
        assert len([c for n, c in rx.columns if n == name]) == n_cols  # a header alone, no rows
        fleet.dynamics.clear(name)
        await feeder.tick(now=1002.0)
        assert _last(rx, name).os_state == "up"
        assert [c for n, c in rx.columns if n == name][-1].ts.tolist() == [1002.0]

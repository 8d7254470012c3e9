"""Remediation commands end to end: serve's CommandQueue (in a small aiohttp stand-in for serve's ingest endpoint,
wired as serve wires it: acknowledge the batch's results, answer with take()) -> the simulator feeder or the real
agent -> the node -> the result in the next batch.

The real agent's GPU reset and reboot run ``nvidia-smi`` and ``systemctl``: no GPU can be used here, so the tests
put fake ``nvidia-smi``/``systemctl`` scripts on PATH that record how they were called and answer as the real
tools do (nvidia-smi's success and "in use" messages)."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError

from redfleet.agent import actions
from redfleet.agent.actions import REFUSED, CommandRunner, parse_commands
from redfleet.agent.core import Agent
from redfleet.agent.pusher import Pusher
from redfleet.agent.simfeed import SimFeeder
from redfleet.model.ingest import CommandResult, IngestBatch
from redfleet.remediation.commands import CommandOutcome, CommandQueue
from redfleet.sim import SimConfig, SimFleet
from redfleet.sim.dyn_node import FleetDyn

ADDR = "127.4.0.200"


class Serve:
    """serve's ingest endpoint as the lead wires it: results acknowledged, then the node's commands answered."""

    def __init__(self, queue: CommandQueue) -> None:
        self.queue = queue
        self.batches: list[IngestBatch] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{ADDR}:{self.port}"

    async def ingest(self, request: web.Request) -> web.Response:
        try:
            batch = IngestBatch.model_validate_json(await request.read())
        except ValidationError as exc:
            return web.json_response({"detail": str(exc)[:500]}, status=422)
        self.batches.append(batch)
        self.queue.acknowledge(batch.node, batch.command_results)
        body = b'{"accepted_samples":%d,"accepted_events":%d,"node":%s,"commands":%s}' % (
            len(batch.samples), len(batch.events), orjson.dumps(batch.node), orjson.dumps(self.queue.take(batch.node)))
        return web.Response(body=body, content_type="application/json")

    async def start(self) -> Serve:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/api/v1/ingest", self.ingest)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, ADDR, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def results(self, node: str) -> list[Any]:
        return [r for b in self.batches if b.node == node for r in b.command_results]


@pytest.fixture
async def fleet(mockups: Path) -> AsyncIterator[SimFleet]:
    cfg = SimConfig(nodes=6, port=0, http=True, base_address="127.4.2.1", seed=7, time_scale=400.0,
                    control_port=0)
    async with SimFleet(cfg) as f:
        yield f


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    s = await Serve(CommandQueue(redeliver_after=0.3, max_deliveries=2)).start()
    yield s
    await s.stop()


def fd_of(fleet: SimFleet) -> FleetDyn:
    assert isinstance(fleet.dynamics, FleetDyn)
    return fleet.dynamics


def dgx(fleet: SimFleet) -> str:
    return next(n.name for n in fleet.nodes if n.flavor == "dgx")


async def until(cond: Callable[[], Any], step: Callable[[], Any] | None = None, limit: float = 10.0) -> Any:
    """Poll ``cond`` (running ``step`` between polls, e.g. a feeder round) until it is true or ``limit`` passes."""
    end = time.monotonic() + limit
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        if step is not None:
            await step()
        await asyncio.sleep(0.02)


def finished(q: CommandQueue, cid: str) -> Callable[[], CommandOutcome | None]:
    return lambda: q.outcome(cid)


# ---- the simulator feeder ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("refresh", [None, 3600.0])
async def test_feeder_resets_the_gpu_and_reports_in_the_next_batch(fleet: SimFleet, serve: Serve,
                                                                  refresh: float | None) -> None:
    fd = fd_of(fleet)
    name = dgx(fleet)
    dbe = fd.inject(name, "ecc-dbe", gpu=1)
    q = serve.queue
    async with SimFeeder(serve.url, "t", fleet=fleet, nvme_every=0, refresh=refresh) as feeder:
        await feeder.tick()
        await feeder.tick()  # held mode: this round's bodies come from the cache
        cmd = q.submit(name, "gpu-reset", gpu=1, reason="xid 48 on GPU 1")
        st = await feeder.tick()  # the answer carries the command; the feeder runs it
        assert st.commands == 1 and cmd.deliveries == 1
        assert dbe not in fd.node(name).faults
        assert q.outcome(cmd.id) is None  # the result rides in the next batch
        await feeder.tick()
    out = q.outcome(cmd.id)
    assert out is not None and out.ok and "was successfully reset" in out.message and "ecc-dbe" in out.message
    assert [r.id for r in serve.results(name)] == [cmd.id]
    others = [b for b in serve.batches if b.node != name]
    assert others and all(not b.command_results for b in others)
    last = [b for b in serve.batches if b.node == name][-1]
    dbe_vol = [s.value for s in last.samples if s.metric == "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" and s.gpu == 1]
    assert dbe_vol == [0.0]  # fresh readings after the reset, even in held mode


async def test_feeder_reports_a_failed_reset_and_reboots(fleet: SimFleet, serve: Serve) -> None:
    fd = fd_of(fleet)
    name = dgx(fleet)
    fd.inject(name, "gpu-lost", gpu=2)
    q = serve.queue
    async with SimFeeder(serve.url, "t", fleet=fleet, nvme_every=0) as feeder:
        reset = q.submit(name, "gpu-reset", gpu=2, reason="xid 79")
        bad = q.submit(name, "gpu-reset", gpu=63)
        await feeder.tick()
        await feeder.tick()
        out = q.outcome(reset.id)
        assert out is not None and not out.ok and "fallen off the bus" in out.message
        out = q.outcome(bad.id)
        assert out is not None and not out.ok and "no GPU 63" in out.message
        reboot = q.submit(name, "reboot", reason="gpu reset failed")
        await feeder.tick()
        assert fleet.node(name).power_state == "PoweringOff"
        await feeder.tick()  # the agent got its result out before the OS went down
        out = q.outcome(reboot.id)
        assert out is not None and out.ok and "reboot requested" in out.message
        await until(lambda: fd.node(name).os_state() == "up" and not fd.node(name).faults, limit=10)


async def test_hung_node_gives_no_result_and_serve_times_it_out(fleet: SimFleet, serve: Serve) -> None:
    fd = fd_of(fleet)
    name = dgx(fleet)
    fd.inject(name, "os-hang")
    q = serve.queue
    async with SimFeeder(serve.url, "t", fleet=fleet, nvme_every=0, hung="report") as feeder:
        cmd = q.submit(name, "reboot", reason="os hang")
        out = await until(finished(q, cmd.id), feeder.tick, limit=5)
        assert cmd.deliveries == 2  # delivered, not answered, delivered again, then given up
    assert not out.ok and "agent never answered" in out.message
    assert serve.results(name) == []
    assert fleet.node(name).power_state == "On" and fd.node(name).os_state() == "hung"


async def test_a_repeated_delivery_is_answered_from_memory_not_run_twice(fleet: SimFleet, serve: Serve) -> None:
    fd = fd_of(fleet)
    name = dgx(fleet)
    answer = orjson.dumps({"accepted_samples": 0, "accepted_events": 0, "node": name, "commands": [
        {"id": "cmd-1", "kind": "reboot", "gpu": None, "reason": "r", "issued_at": 1.0, "delivery": 1}]})
    async with SimFeeder(serve.url, "t", fleet=fleet, nvme_every=0) as feeder:
        assert await feeder._run_commands([(name, answer)]) == 1
        assert fleet.node(name).power_state == "PoweringOff"
        # the result's batch was lost; serve delivers it again while the host is still going down
        assert await feeder._run_commands([(name, answer.replace(b'"delivery":1', b'"delivery":2'))]) == 1
    assert [h["event"] for h in fd.history if h.get("event") == "os-reboot"] == ["os-reboot"]
    sent = feeder.cmd_results[name]
    assert len(sent) == 2 and sent[0] == sent[1] and sent[0]["ok"]


async def test_remote_feeder_runs_commands_through_the_control_api(fleet: SimFleet, serve: Serve) -> None:
    fd = fd_of(fleet)
    name = dgx(fleet)
    fd.inject(name, "xid", gpu=0, xid=13)
    q = serve.queue
    assert fleet.control_url
    async with SimFeeder(serve.url, "t", control=fleet.control_url, nodes=[name], nvme_every=0) as feeder:
        cmd = q.submit(name, "gpu-reset", gpu=0)
        out = await until(finished(q, cmd.id), feeder.tick, limit=5)
        assert out.ok and "xid" in out.message and fd.node(name).faults == []
        fd.inject(name, "os-hang")
        hung = q.submit(name, "gpu-reset", gpu=0)
        out = await until(finished(q, hung.id), feeder.tick, limit=5)
        assert not out.ok and "never answered" in out.message


def test_answers_without_commands_are_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(_b: bytes) -> Any:
        raise AssertionError("parsed an answer with no commands")

    monkeypatch.setattr(actions.orjson, "loads", boom)
    assert parse_commands(b'{"accepted_samples":3,"accepted_events":0,"node":"n"}') == []
    assert parse_commands(b'{"accepted_samples":3,"accepted_events":0,"node":"n","commands":[]}') == []
    monkeypatch.undo()
    got = parse_commands(b'{"node":"n","commands":[{"id":"c1","kind":"reboot"},{"kind":"reboot"},7]}')
    assert [c["id"] for c in got] == ["c1"]
    assert parse_commands(b'not json "commands"') == []


# ---- the real agent, with fake nvidia-smi / systemctl --------------------------------------------------------------
def fake_tools(tmp_path: Path, *, smi_rc: int = 0, smi_sleep: float = 0.0) -> Path:
    """A bin/ folder with nvidia-smi and systemctl stand-ins recording their arguments in calls.log."""
    b = tmp_path / "bin"
    b.mkdir(parents=True)
    log = tmp_path / "calls.log"
    msg = ("GPU 00000000:3A:00.0 was successfully reset." if smi_rc == 0 else
           "The following GPUs could not be reset:\n  GPU 00000000:3A:00.0: In use by another client")
    for name, rc, body in (("nvidia-smi", smi_rc, msg), ("systemctl", 0, "")):
        p = b / name
        p.write_text(f"#!/bin/sh\necho \"{name} $*\" >> {log}\nsleep {smi_sleep if name == 'nvidia-smi' else 0}\n"
                     f"printf '%s\\n' \"{body}\"\nexit {rc}\n")
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return b


def calls(tmp_path: Path) -> list[str]:
    p = tmp_path / "calls.log"
    return p.read_text().splitlines() if p.exists() else []


def cmd(cid: str, kind: str = "gpu-reset", gpu: int | None = 2) -> dict[str, Any]:
    return {"id": cid, "kind": kind, "gpu": gpu, "reason": "xid 48", "issued_at": 1.0, "delivery": 1}


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    b = fake_tools(tmp_path)
    monkeypatch.setenv("PATH", f"{b}{os.pathsep}{os.environ.get('PATH', '')}")
    return tmp_path


async def test_agent_refuses_without_allow_remediation(tools: Path) -> None:
    r = CommandRunner(allow=False)
    r.offer([cmd("c1"), cmd("c2", "reboot", None)])
    await r.wait_idle()
    got = r.drain()
    assert sorted(x.id for x in got) == ["c1", "c2"]
    assert all(not x.ok and x.message == REFUSED for x in got)
    assert calls(tools) == []
    assert r.drain() == []


async def test_agent_resets_a_gpu_with_nvidia_smi(tools: Path, caplog: pytest.LogCaptureFixture) -> None:
    r = CommandRunner(allow=True, server="http://serve:8080")
    with caplog.at_level("WARNING", logger="redfleet.agent.actions"):
        r.offer([cmd("c1", gpu=2)])
        r.offer([cmd("c1", gpu=2)])  # delivered again while it runs: not run twice
        await r.wait_idle()
    (res,) = r.drain()
    assert res.ok and res.message == "GPU 00000000:3A:00.0 was successfully reset."
    assert calls(tools) == ["nvidia-smi --gpu-reset -i 2"]
    text = caplog.text
    assert "http://serve:8080" in text and "reset GPU 2" in text and "xid 48" in text and "done" in text
    r.offer([cmd("c1", gpu=2)])  # its result was lost: answered again, not run again
    assert [x.id for x in r.drain()] == ["c1"] and len(calls(tools)) == 1


async def test_agent_reports_nvidia_smi_failures_timeouts_and_bad_commands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = fake_tools(tmp_path, smi_rc=255)
    monkeypatch.setenv("PATH", f"{b}{os.pathsep}{os.environ.get('PATH', '')}")
    r = CommandRunner(allow=True)
    r.offer([cmd("c1"), cmd("c2", "power-cycle", None), cmd("c3", gpu=None)])
    await r.wait_idle()
    got = {x.id: x for x in r.drain()}
    assert not got["c1"].ok and "exited 255" in got["c1"].message and "In use by another client" in got["c1"].message
    assert not got["c2"].ok and "unknown command kind 'power-cycle'" in got["c2"].message
    assert not got["c3"].ok and "needs a GPU index" in got["c3"].message
    slow = CommandRunner(allow=True, nvidia_smi=str(fake_tools(tmp_path / "slow", smi_sleep=10) / "nvidia-smi"),
                         gpu_reset_timeout=0.3)
    t0 = time.monotonic()
    slow.offer([cmd("c4")])
    await slow.wait_idle(limit_s=5)
    (res,) = slow.drain()
    assert not res.ok and "timed out after 0.3 s" in res.message and time.monotonic() - t0 < 5
    missing = CommandRunner(allow=True, nvidia_smi=str(tmp_path / "no-such-nvidia-smi"))
    missing.offer([cmd("c5")])
    await missing.wait_idle()
    assert "not found" in missing.drain()[0].message


async def test_reboot_is_never_repeated_across_the_reboot(tools: Path) -> None:
    journal = tools / "state" / "agent-commands.jsonl"
    before = CommandRunner(allow=True, journal=journal)
    before.boot_id = "boot-1"
    before.offer([cmd("r1", "reboot", None)])
    await before.wait_idle()
    # the agent died with the OS before its result went out (no drain); the host comes back with a new boot id
    assert calls(tools) == ["systemctl reboot"]
    after = CommandRunner(allow=True, journal=journal)
    after.boot_id = "boot-2"
    after.offer([cmd("r1", "reboot", None)])
    (res,) = after.drain()
    assert res.ok and calls(tools) == ["systemctl reboot"]
    # a reboot started whose agent died before it finished, with the same boot id: failed, not run again
    journal.write_text('{"id": "r2", "kind": "reboot", "boot_id": "boot-2", "started_at": 1}\n')
    again = CommandRunner(allow=True, journal=journal)
    again.boot_id = "boot-2"
    again.offer([cmd("r2", "reboot", None)])
    (res,) = again.drain()
    assert not res.ok and "did not reboot" in res.message and calls(tools) == ["systemctl reboot"]


async def test_agent_loop_end_to_end(tools: Path, serve: Serve) -> None:
    q = serve.queue
    runner = CommandRunner(allow=True, server=serve.url)
    ag = Agent("gpu-node-1", source="none", commands=runner)
    c = q.submit("gpu-node-1", "gpu-reset", gpu=5, reason="xid 119")
    async with Pusher(serve.url, "t") as p:
        stop = asyncio.Event()
        task = asyncio.create_task(ag.run(p, interval=0.05, stop=stop))
        try:
            out = await until(finished(q, c.id), limit=10)
        finally:
            stop.set()
            await task
            await ag.close()
    assert out.ok and "successfully reset" in out.message
    assert calls(tools) == ["nvidia-smi --gpu-reset -i 5"]
    assert [r.id for r in serve.results("gpu-node-1")] == [c.id]


async def test_agent_stopping_sends_its_last_results_first(serve: Serve) -> None:
    runner = CommandRunner(allow=True)
    runner.ready.append(CommandResult(id="r1", ok=True, message="reboot requested", finished_at=1.0))
    ag = Agent("gpu-node-2", source="none", commands=runner)
    stop = asyncio.Event()
    stop.set()  # systemd stops the agent right after `systemctl reboot` returned
    async with Pusher(serve.url, "t") as p:
        assert await ag.run(p, interval=1.0, stop=stop) == 0
    await ag.close()
    assert [r.id for r in serve.results("gpu-node-2")] == ["r1"]


def test_cli_has_the_remediation_options() -> None:
    from typer.testing import CliRunner

    from redfleet.cli.main import app

    res = CliRunner().invoke(app, ["agent", "--help"], terminal_width=200)
    assert res.exit_code == 0
    for opt in ("--allow-remediation", "--reboot-command", "--command-journal"):
        assert opt in res.output

"""Simulator scale: N BMCs in one process (start-up, RSS, GET req/s over many addresses) vs sushy-emulator --fake.

Every server runs in its own child process, so its RSS and CPU time are read from /proc; the load generator is
Debian's ``wrk`` (one OS thread per connection, each thread pinned to a different BMC address by a Lua
``setup()``), keep-alive on, the same concurrency for every server. Runs, in order:

1. load-generator check: wrk against a trivial asyncio server answering a fixed 2 KB response (shows the
   request rate wrk can drive on this machine, i.e. that the figures below are the servers' and not wrk's);
2. ``redfleet`` simulator, plain HTTP: N BMCs (all six flavors round-robin, live telemetry on), start-up time, RSS
   total and per BMC (marginal over a 6-BMC fleet), then GET ``/redfish/v1/`` and GET each BMC's ComputerSystem,
   ``--concurrency`` connections spread over as many BMC addresses;
3. the same simulator over HTTPS (one self-signed certificate per BMC; TLS handshakes included in the run);
4. ``sushy-emulator --fake`` (sushy-tools, Flask) with ``--sushy-systems`` fake systems (plain HTTP, no auth:
   sushy-tools is given the easier job), GET ``/redfish/v1/`` and GET ``/redfish/v1/Systems/<uuid>`` rotating over
   every system.

    python -m benchmarks sim_bench                      # quick: 1,000 BMCs, 100 sushy systems, 5 s per run
    python -m benchmarks sim_bench --full               # 10,000 BMCs, 1,000 sushy systems, 20 s per run
    python -m benchmarks sim_bench --nodes 10000 --duration 30 --concurrency 64 --json out.json

Goals (issue 2): 10,000 BMCs in <= 2 GB (<= 200 KB a BMC); >= 10x sushy-tools' requests/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SIM_BASE = "127.12.64.1"  # sim-conf's block: 127.12.64.1 .. 127.12.103.16 for 10,000 BMCs
BASELINE_BASE = "127.12.60.1"
TRIVIAL_ADDRESS = "127.12.62.1"
SUSHY_ADDRESS = "127.12.63.1"
USER, PASSWORD = "root", "calvin"
AUTH = "Basic cm9vdDpjYWx2aW4="  # root:calvin

SIM_CHILD = r"""
import asyncio, json, sys, time
t0 = time.monotonic()
from redfleet.sim import SimConfig, SimFleet

async def main():
    spec = json.loads(sys.argv[1])
    cfg = SimConfig(nodes=spec["nodes"], http=spec["http"], base_address=spec["base"], port=0, seed=1,
                    cache_dir=spec["certs"])
    fleet = SimFleet(cfg)
    t1 = time.monotonic()
    await fleet.start()
    t2 = time.monotonic()
    nodes = fleet.sim_nodes
    count = min(spec["picks"], len(nodes))
    step = max(1, len(nodes) // max(1, count))
    targets = []
    for i in range(0, len(nodes), step)[:count]:
        n = nodes[i]
        targets.append([n.address, n.facts.system_path or "/redfish/v1/Systems", n.flavor.name])
    print(json.dumps({"port": fleet.port, "import_s": t1 - t0, "start_s": t2 - t1, "targets": targets}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await fleet.stop()

try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""

TRIVIAL_CHILD = r"""
import asyncio, json, sys
body = b"x" * 2048
response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""
    def data_received(self, data):
        self.buf += data
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4:]
            self.transport.write(response * n)

async def main():
    server = await asyncio.get_running_loop().create_server(Echo, sys.argv[1], 0, backlog=1024)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""

WRK_LUA = r"""
local targets = {TARGETS}
local port = "{PORT}"
local auth = "{AUTH}"
local rotate = {ROTATE}
local counter = 0

function setup(thread)
  counter = counter + 1
  local t = targets[(counter - 1) % #targets + 1]
  local addrs = wrk.lookup(t[1], port)
  thread.addr = addrs[1]
  thread:set("host", t[1])
  thread:set("path", t[2])
  thread:set("tid", counter)
end

function init(args)
  local headers = {["Host"] = host .. ":" .. port}
  if auth ~= "" then headers["Authorization"] = auth end
  hdrs = headers
  req = wrk.format("GET", path, headers)
  i = tid
end

function request()
  if rotate then
    i = i % #targets + 1
    return wrk.format("GET", targets[i][2], hdrs)
  end
  return req
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\n{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


PRIORITY = 0  # --priority: niceness of every server and of wrk (negative = ahead of other load; needs root)


def _set_priority() -> None:
    if PRIORITY:
        os.setpriority(os.PRIO_PROCESS, 0, PRIORITY)


@dataclass
class LoadResult:
    server: str
    what: str
    scheme: str
    addresses: int
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    mbytes_s: float = 0.0
    errors: int = 0
    non_2xx: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    server_cpu: float = 0.0  # CPU seconds of the server process during the run / wall seconds (1.0 = one core)
    loadgen_cpu: float = 0.0  # same for wrk

    @property
    def per_cpu_s(self) -> float:
        """Requests per CPU-second of the server: its efficiency, independent of how much CPU it was given."""
        return self.rps / self.server_cpu if self.server_cpu else 0.0


@dataclass
class ServerInfo:
    name: str
    nodes: int
    start_s: float = 0.0
    rss_mb: float = 0.0
    rss_peak_mb: float = 0.0
    per_bmc_kb: float = 0.0
    marginal_kb: float = 0.0
    notes: str = ""


@dataclass
class Report:
    machine: str
    loadgen: str
    servers: list[ServerInfo] = field(default_factory=list)
    loads: list[LoadResult] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ processes
def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


class Child:
    """A server child process that prints one JSON line when ready and stops when its stdin closes."""

    def __init__(self, args: list[str], ready_timeout: float = 900.0, env: dict[str, str] | None = None) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, preexec_fn=_set_priority)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.ready_s = time.monotonic() - self.started
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"{args[0]} did not start:\n{err[-3000:]}")
        self.info: dict[str, Any] = json.loads(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
                self.proc.wait(60)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()


class SushyEmulator:
    """``sushy-emulator --fake`` with N fake systems (config file: SUSHY_EMULATOR_FAKE_SYSTEMS)."""

    def __init__(self, systems: int, workdir: Path, address: str) -> None:
        import socket

        with socket.socket() as s:
            s.bind((address, 0))
            self.port = s.getsockname()[1]
        self.address = address
        self.uuids = [str(uuid.UUID(int=i + 1, version=4)) for i in range(systems)]
        fake = [{"uuid": u, "name": f"fake-{i:05d}", "power_state": "On", "external_notifier": False,
                 "nics": [{"mac": f"00:5c:52:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                           "ip": "172.22.0.100"}]}
                for i, u in enumerate(self.uuids)]
        config = workdir / "sushy-emulator.conf"
        config.write_text(
            f"SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_FAKE_SYSTEMS = {fake!r}\n"
            f"SUSHY_EMULATOR_STATE_DIR = {str(workdir / 'state')!r}\n"
            f"SUSHY_EMULATOR_LISTEN_IP = {address!r}\nSUSHY_EMULATOR_LISTEN_PORT = {self.port}\n"
        )
        exe = shutil.which("sushy-emulator") or str(Path(sys.executable).parent / "sushy-emulator")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([exe, "--config", str(config), "--fake"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=_set_priority)
        deadline = time.monotonic() + 120
        while True:
            try:
                # the first GET of a system also builds the fake driver (its SQLite state): part of start-up
                with urllib.request.urlopen(
                        f"http://{address}:{self.port}/redfish/v1/Systems/{self.uuids[0]}", timeout=30) as r:
                    if r.status == 200:
                        break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("sushy-emulator did not start") from None
                time.sleep(0.2)
        self.ready_s = time.monotonic() - self.started

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------------------------------ load
def run_wrk(targets: list[tuple[str, str]], port: int, *, scheme: str, duration: float, concurrency: int,
            auth: bool, rotate: bool, server_pid: int, workdir: Path, server: str, what: str) -> LoadResult:
    """wrk with one thread per connection, thread i pinned to targets[i % len] (address, path)."""
    lua_targets = "{" + ", ".join(f'{{"{a}", "{p}"}}' for a, p in targets) + "}"
    script = workdir / "bench.lua"
    script.write_text(WRK_LUA.replace("{TARGETS}", lua_targets).replace("{PORT}", str(port))
                      .replace("{AUTH}", AUTH if auth else "").replace("{ROTATE}", "true" if rotate else "false"))
    url = f"{scheme}://{targets[0][0]}:{port}/"
    cmd = ["wrk", "-t", str(concurrency), "-c", str(concurrency), "-d", f"{duration:g}s", "--timeout", "10s",
           "-s", str(script), url]
    cpu0 = proc_cpu(server_pid)
    wall0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_set_priority)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, _status, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    wall = time.monotonic() - wall0
    server_cpu = proc_cpu(server_pid) - cpu0
    line = next((ln for ln in reversed(out.splitlines()) if ln.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{out[-2000:]}")
    data = json.loads(line)
    seconds = data["duration_us"] / 1e6
    errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    return LoadResult(
        server=server, what=what, scheme=scheme, addresses=len({a for a, _ in targets}),
        requests=data["requests"], seconds=seconds, rps=data["requests"] / seconds,
        mbytes_s=data["bytes"] / seconds / 1e6, errors=errors, non_2xx=data["status"],
        p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000,
        server_cpu=server_cpu / wall, loadgen_cpu=(usage.ru_utime + usage.ru_stime) / wall,
    )


# ------------------------------------------------------------------------------------------ the benchmark
def start_sim(nodes: int, *, http: bool, base: str, picks: int, certs: Path) -> Child:
    spec = {"nodes": nodes, "http": http, "base": base, "picks": picks, "certs": str(certs)}
    return Child([sys.executable, "-c", SIM_CHILD, json.dumps(spec)])


def sim_server_info(child: Child, name: str, nodes: int, baseline_mb: float | None) -> ServerInfo:
    rss, hwm = proc_mem(child.pid)
    info = ServerInfo(name=name, nodes=nodes, start_s=child.ready_s, rss_mb=rss, rss_peak_mb=hwm,
                      per_bmc_kb=rss * 1024 / nodes,
                      notes=f"import {child.info['import_s']:.1f} s + fleet start {child.info['start_s']:.1f} s")
    if baseline_mb is not None and nodes > 6:
        info.marginal_kb = (rss - baseline_mb) * 1024 / (nodes - 6)
    return info


def bench(args: argparse.Namespace) -> Report:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk); it is the load generator of this bench")
    machine = f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"
    if PRIORITY:
        machine += f", servers and wrk at nice {PRIORITY} (ahead of the machine's other load)"
    report = Report(machine=machine,
                    loadgen=f"wrk (Debian), {args.concurrency} connections = {args.concurrency} threads, "
                            "keep-alive, one BMC address per connection")
    conc, dur = args.concurrency, args.duration
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        work = Path(tmp)
        certs = Path(args.cert_cache) if args.cert_cache else work / "certs"

        def say(msg: str) -> None:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

        # 1. what wrk can drive on this machine
        say("load generator check: wrk against a trivial 2 KB responder")
        trivial = Child([sys.executable, "-c", TRIVIAL_CHILD, TRIVIAL_ADDRESS])
        try:
            report.loads.append(run_wrk([(TRIVIAL_ADDRESS, "/")], trivial.info["port"], scheme="http",
                                        duration=dur, concurrency=conc, auth=False, rotate=False,
                                        server_pid=trivial.pid, workdir=work, server="trivial asyncio responder",
                                        what="GET / (2 KB)"))
        finally:
            trivial.close()

        # 2. memory baseline: one BMC of each flavor
        say("simulator baseline: 6 BMCs (one per flavor)")
        base = start_sim(6, http=True, base=BASELINE_BASE, picks=6, certs=certs)
        baseline_mb = proc_mem(base.pid)[0]
        report.servers.append(sim_server_info(base, "redfleet sim (baseline)", 6, None))
        base.close()

        for http in ([True, False] if args.https else [True]):
            scheme = "http" if http else "https"
            say(f"simulator: {args.nodes} BMCs, {scheme}")
            sim = start_sim(args.nodes, http=http, base=SIM_BASE, picks=conc, certs=certs)
            try:
                info = sim_server_info(sim, f"redfleet sim ({scheme})", args.nodes, baseline_mb)
                report.servers.append(info)
                say(f"  up in {info.start_s:.1f} s, RSS {info.rss_mb:.0f} MiB ({info.per_bmc_kb:.0f} KiB/BMC)")
                targets = [(a, p) for a, p, _f in sim.info["targets"]]
                port = sim.info["port"]
                warm = dict(scheme=scheme, concurrency=conc, auth=True, rotate=False, server_pid=sim.pid,
                            workdir=work, server=f"redfleet sim ({scheme})")
                run_wrk([(a, "/redfish/v1/") for a, _ in targets], port, duration=min(2.0, dur), what="warm-up",
                        **warm)
                for what, tlist in (("GET /redfish/v1/", [(a, "/redfish/v1/") for a, _ in targets]),
                                    ("GET ComputerSystem", targets)):
                    result = run_wrk(tlist, port, duration=dur, what=what, **warm)
                    report.loads.append(result)
                    say(f"  {what}: {result.rps:,.0f} req/s, p99 {result.p99_ms:.1f} ms")
                rss, hwm = proc_mem(sim.pid)
                info.rss_peak_mb = hwm
            finally:
                sim.close()

        # 4. sushy-tools
        if not args.skip_sushy:
            say(f"sushy-emulator --fake: {args.sushy_systems} systems")
            emu = SushyEmulator(args.sushy_systems, work, SUSHY_ADDRESS)
            try:
                rss, hwm = proc_mem(emu.pid)
                report.servers.append(ServerInfo(
                    name="sushy-emulator --fake", nodes=args.sushy_systems, start_s=emu.ready_s, rss_mb=rss,
                    rss_peak_mb=hwm, per_bmc_kb=rss * 1024 / args.sushy_systems,
                    notes="one HTTP endpoint for all systems (Flask/werkzeug, threaded), no auth"))
                common = dict(scheme="http", concurrency=conc, auth=False, server_pid=emu.pid, workdir=work,
                              server="sushy-emulator --fake")
                systems = [(SUSHY_ADDRESS, f"/redfish/v1/Systems/{u}") for u in emu.uuids]
                run_wrk([(SUSHY_ADDRESS, "/redfish/v1/")], emu.port, duration=min(2.0, dur), what="warm-up",
                        rotate=False, **common)
                for what, tlist, rotate in (("GET /redfish/v1/", [(SUSHY_ADDRESS, "/redfish/v1/")], False),
                                            ("GET ComputerSystem", systems, True)):
                    result = run_wrk(tlist, emu.port, duration=dur, what=what, rotate=rotate,
                                     **common)
                    report.loads.append(result)
                    say(f"  {what}: {result.rps:,.0f} req/s, p99 {result.p99_ms:.1f} ms")
                info = report.servers[-1]
                info.rss_peak_mb = proc_mem(emu.pid)[1]
            finally:
                emu.close()
    return report


def render(report: Report) -> str:
    lines = [f"machine: {report.machine}", f"load generator: {report.loadgen}", "",
             "| server | BMCs | start-up s | RSS MiB | peak RSS MiB | KiB per BMC | marginal KiB/BMC | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for s in report.servers:
        marginal = f"{s.marginal_kb:.0f}" if s.marginal_kb else "-"
        lines.append(f"| {s.name} | {s.nodes:,} | {s.start_s:.1f} | {s.rss_mb:.0f} | {s.rss_peak_mb:.0f} "
                     f"| {s.per_bmc_kb:.0f} | {marginal} | {s.notes} |")
    lines += ["", "| server | request | addresses | req/s | MB/s | p50 ms | p99 ms | errors | non-2xx "
              "| server CPU (cores) | req per server CPU-s | wrk CPU (cores) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report.loads:
        lines.append(f"| {r.server} | {r.what} | {r.addresses} | {r.rps:,.0f} | {r.mbytes_s:.1f} | {r.p50_ms:.1f} "
                     f"| {r.p99_ms:.1f} | {r.errors} | {r.non_2xx} | {r.server_cpu:.2f} | {r.per_cpu_s:,.0f} "
                     f"| {r.loadgen_cpu:.2f} |")
    ratios = []
    for what in ("GET /redfish/v1/", "GET ComputerSystem"):
        sushy = next((r for r in report.loads if r.server.startswith("sushy") and r.what == what), None)
        for r in report.loads:
            if r.server.startswith("redfleet") and r.what == what and sushy and sushy.rps:
                per_cpu = ""
                if sushy.per_cpu_s and r.per_cpu_s:
                    per_cpu = f"; per server CPU-second {r.per_cpu_s / sushy.per_cpu_s:.1f}x"
                ratios.append(f"{what}, {r.scheme}: redfleet sim {r.rps:,.0f} req/s / sushy-emulator "
                              f"{sushy.rps:,.0f} req/s = **{r.rps / sushy.rps:.1f}x** (goal >= 10x){per_cpu}")
    sim = next((s for s in report.servers if s.name == "redfleet sim (http)"), None)
    if sim:
        ratios.append(f"memory: {sim.rss_mb:,.0f} MiB for {sim.nodes:,} BMCs = {sim.per_bmc_kb:.0f} KiB/BMC "
                      f"(goal <= 200 KB/BMC, <= 2 GB for 10,000)")
    trivial = next((r for r in report.loads if r.server.startswith("trivial")), None)
    best = max((r.rps for r in report.loads if not r.server.startswith("trivial")), default=0.0)
    if trivial and best:
        ratios.append(f"load generator headroom: wrk drives {trivial.rps:,.0f} req/s against a trivial server, "
                      f"{trivial.rps / best:.1f}x the fastest server measured here")
    return "\n".join(lines + [""] + [f"- {r}" for r in ratios])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sim_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000, help="simulated BMCs (default 1,000; --full: 10,000)")
    parser.add_argument("--sushy-systems", type=int, default=100, help="sushy-emulator fake systems (full: 1,000)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run (full: 20)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections (= BMC addresses) (default 64)")
    parser.add_argument("--full", action="store_true", help="--nodes 10000 --sushy-systems 1000 --duration 20")
    parser.add_argument("--no-https", dest="https", action="store_false", help="skip the HTTPS simulator run")
    parser.add_argument("--skip-sushy", action="store_true")
    parser.add_argument("--cert-cache", default=None,
                        help="certificate cache kept between runs (default: a temporary folder, so HTTPS start-up "
                             "includes making N certificates)")
    parser.add_argument("--priority", type=int, default=0,
                        help="niceness for the servers and wrk, e.g. -10 on a shared machine (needs root): every "
                             "server gets the same treatment, other processes on the box are put behind them")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    global PRIORITY
    PRIORITY = args.priority
    if args.full:
        args.nodes, args.sushy_systems, args.duration = max(args.nodes, 10000), 1000, max(args.duration, 20.0)
    report = bench(args)
    print()
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

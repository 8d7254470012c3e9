"""redfleet serve: detection latency (fault injected in the simulator -> node health changed in serve, p50/p99),
ingest throughput (samples per second per core) and serve's RSS, at 1,000 and 10,000 simulated nodes.

Three processes: the simulator (its BMCs + the in-band feeder ``redfleet.agent.simfeed``, in its own thread and
event loop, pushing each node's batch to serve's ingest endpoint, columnar by default), ``redfleet serve`` itself
(polling every BMC's sensors every 10 s, health engine, SQLite store), and this driver, which injects faults
through the simulator's control API at recorded instants and reads the health change's timestamp
(``/api/v1/nodes/{n}/health/history``, stamped by the engine when it judged the change) back from serve. Same
machine, same clock. Agents sample at 1 Hz; with ``--push-every N`` each pushes every N seconds a batch of N rows
of 1 Hz samples, and at once when its node has a fault (as an agent pushing at once on an Xid line would).

    python -m benchmarks serve_bench                     # 1,000 then 10,000 nodes
    python -m benchmarks serve_bench --nodes 200 --faults 20     # small, while developing
    python -m benchmarks serve_bench --no-collect        # in-band only (no BMC polling)
    python -m benchmarks serve_bench --push-every 5      # agents push 5 s of 1 Hz rows at a time

Goal (issue 4): p99 < 2 s at 10,000 nodes with sensors every 10 s and agent GPU telemetry at 1 Hz.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson

GOAL_P99_S = 2.0
SERVE_HOST = "127.19.0.50"
SIM_BASE = "127.19.100.1"
TOKEN = "bench-dev-token"


# ---- the simulator + feeder process ---------------------------------------------------------------------------


PLACEHOLDER = 1234567890.125  # exact in binary: orjson writes it as below, replaced by the round's time
PLACEHOLDER_BYTES = b"1234567890.125"


def cached_feeder_class() -> Any:
    """SimFeeder whose nodes without a fault re-read their in-band state from the simulator only every ``refresh``
    seconds (a share of the fleet per round) and otherwise resend their last readings with the round's timestamps
    (kept as serialized JSON with a placeholder time, so a resend costs one bytes.replace); nodes with a fault are
    read every round, so a fault reaches serve exactly as the simulator shows it. The simulator's in-band model
    costs milliseconds per 8-GPU node: a 1 Hz feed of thousands of nodes from one process would otherwise measure
    the load generator, not serve.

    ``push_every`` N > 1 (columnar only): each node still samples every second but pushes every N seconds, its
    rows of the seconds since its last push in one batch (1 Hz resolution kept), nodes spread over the N rounds; a
    node with a fault (its Xid lines, its changed readings) pushes every round. And :meth:`watch` pushes a node's
    batch within 50 ms of its faults changing, as an agent reading the kernel log pushes at once on an Xid line:
    a node's agent does not wait for 9,999 others' round (whatever ``push_every``)."""
    from redfleet.agent.pusher import PipelinedClient
    from redfleet.agent.simfeed import SimFeeder, TickStats
    from redfleet.telemetry.columns import frame, from_samples

    class CachedFeeder(SimFeeder):  # type: ignore[misc]
        def __init__(self, *a: Any, refresh: float = 30.0, push_every: int = 1, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.refresh = refresh
            self.push_every = max(1, push_every) if self.columnar else 1
            self.templates: dict[str, Any] = {}
            self.cursor = 0
            self.round = 0
            self.times: list[float] = []  # the last push_every round times
            self.last_push: dict[str, int] = {}  # node -> round of its last push
            self.fault_sig: dict[str, Any] = {}  # node -> its faults when watch() last looked
            self.urgent = 0  # batches pushed at once by watch()
            # its own connection: a PipelinedClient's connections serve one post_many at a time
            self.urgent_client = PipelinedClient(self.url, connections=1,
                                                 content_type=self.client.content_type.decode())

        async def close(self) -> None:
            await self.urgent_client.close()
            await super().close()

        def encode(self, b: dict[str, Any]) -> Any:
            """A columnar batch as (header up to its closing brace, columns JSON, one row as float64 bytes), or
            JSON bytes when not columnar (or no per-GPU sample)."""
            if not self.columnar:
                return orjson.dumps(b)
            got = from_samples(b)
            if got is None:  # nothing per GPU (a hung host): the header alone
                return orjson.dumps(b)[:-1], None, b"", 0
            metrics, gpus, rows, rest = got
            row = np.asarray([[np.nan if v is None else v for v in r] for r in rows.values()], dtype="<f8")
            return (orjson.dumps({**b, "samples": rest})[:-1], orjson.dumps({"metrics": metrics, "gpus": gpus}),
                    row[-1].tobytes(), len(metrics) * len(gpus))

        @staticmethod
        def body(enc: Any, times: list[float], now_b: bytes) -> tuple[bytes, int]:
            if isinstance(enc, bytes):
                return enc.replace(PLACEHOLDER_BYTES, now_b), 0
            head, cols, row, width = enc
            if cols is None:
                return frame(head.replace(PLACEHOLDER_BYTES, now_b) + b"}", b""), 0
            header = b"".join((head.replace(PLACEHOLDER_BYTES, now_b), b',"columns":', cols, b',"ts":',
                               orjson.dumps(times), b"}"))
            return frame(header, row * len(times)), width * len(times)

        async def tick(self, now: float | None = None) -> Any:
            t0 = time.perf_counter()
            now = time.time() if now is None else now
            self.round += 1
            every = self.push_every
            self.times = [*self.times, now][-every:]
            names = self.node_names()
            faulty = set(self.fleet.dynamics.faulty)
            per_round = max(1, int(len(names) * self.interval / self.refresh))
            rot = [names[(self.cursor + i) % len(names)] for i in range(min(per_round, len(names)))]
            self.cursor = (self.cursor + per_round) % max(1, len(names))
            fresh = sorted({n for n in names if n in faulty or n not in self.templates} | set(rot))
            st = TickStats()
            now_b = repr(float(now)).encode()
            items = []
            built: dict[str, Any] = {}
            got = []
            for i in range(0, len(fresh), 25):  # in slices: the fault watcher gets its turns in between
                got += await super().build(now, names=fresh[i:i + 25])
                await asyncio.sleep(0)
            for name, b in got:
                st.events += len(b["events"])
                t = {**b, "sent_at": PLACEHOLDER, "events": [], "nvme": [],
                     "samples": [{**x, "ts": PLACEHOLDER} for x in b["samples"]]}
                first = name not in self.templates
                tpl = self.templates[name] = self.encode(t)
                if name in faulty or b["events"] or b["nvme"] or first:
                    # pushed now, with what the simulator shows now (its events, NVMe logs when due)
                    built[name] = self.encode(b) if b["events"] or b["nvme"] or not self.columnar else tpl
            for name in names:
                last = self.last_push.get(name)
                enc = built.get(name)
                if enc is not None:
                    pending = self.round - last - 1 if last is not None else 0
                    if pending > 0 and every > 1 and name in self.templates:  # the seconds not pushed yet, first
                        body, n = self.body(self.templates[name], self.times[-1 - pending:-1], now_b)
                        items.append((body, self.token(name)))
                        st.samples += n
                    body, n = self.body(enc, [now], now_b)
                elif every > 1 and (self.round + zlib.crc32(name.encode())) % every:
                    continue  # not this node's round
                else:
                    tpl = self.templates.get(name)
                    if tpl is None:
                        continue
                    rows = min(every, self.round - last if last is not None else 1)
                    body, n = self.body(tpl, self.times[-rows:], now_b)
                self.last_push[name] = self.round
                st.samples += n
                items.append((body, self.token(name)))
            st.nodes = len(items)
            st.count(await self.client.post_many(items))
            st.seconds = time.perf_counter() - t0
            self._account(st)
            return st

        async def watch(self, stop: asyncio.Event, every: float = 0.05) -> None:
            """Push a node's batch at once when its faults change, as an agent that reads the kernel log and
            pushes at once on an Xid line does, not at its next round (with 10,000 nodes in one process a round
            takes longer than a second)."""
            fd = self.fleet.dynamics
            while not stop.is_set():
                now = time.time()
                sigs = {}
                for name in list(fd.faulty):
                    with contextlib.suppress(Exception):
                        sigs[name] = tuple((f.kind, f.target, f.xid, f.started) for f in fd.node(name).faults)
                todo = sorted(n for n, sig in sigs.items() if self.fault_sig.get(n) != sig)
                self.fault_sig = sigs
                if todo:
                    now_b = repr(float(now)).encode()
                    items = [(self.body(self.encode(b), [now], now_b)[0], self.token(name))
                             for name, b in await SimFeeder.build(self, now, names=todo)]
                    self.urgent += len(items)
                    await self.urgent_client.post_many(items)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)

    return CachedFeeder


async def sim_worker(args: argparse.Namespace) -> None:
    from redfleet.sim import SimConfig, SimFleet

    cfg = SimConfig(mix={args.flavor: args.nodes}, port=0, http=True, base_address=SIM_BASE, time_scale=1.0,
                    control_port=0, seed=11, cache_dir=Path(tempfile.gettempdir()) / "redfleet-bench-certs")
    async with SimFleet(cfg) as fleet:
        await asyncio.to_thread(Path(args.fleet_out).write_text, fleet.fleet_file().to_yaml())
        print(json.dumps({"control": fleet.control_url}), flush=True)
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        serve = json.loads(line)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        # The feeder (the fleet's agents) runs in its own thread with its own event loop: on the simulator's loop
        # its rounds would wait behind the simulated BMCs' request backlog, which no real agent does.
        started: dict[str, Any] = {}
        ready = threading.Event()
        th = threading.Thread(target=asyncio.run, args=(feed(args, fleet, serve, started, ready),), name="feeder",
                              daemon=True)
        th.start()
        await asyncio.to_thread(ready.wait, 30)
        await stop.wait()
        if "loop" in started:
            started["loop"].call_soon_threadsafe(started["stop"].set)
        await asyncio.to_thread(th.join, 15)


async def feed(args: argparse.Namespace, fleet: Any, serve: dict[str, Any], started: dict[str, Any],
               ready: threading.Event) -> None:
    feeder = cached_feeder_class()(serve["url"], serve["token"], fleet=fleet, interval=args.agent_interval,
                                   hung="report", nvme_every=600.0, connections=8, depth=64,
                                   refresh=args.refresh, columnar=args.columnar, push_every=args.push_every)
    stop = asyncio.Event()
    started.update(loop=asyncio.get_running_loop(), stop=stop)
    ready.set()
    stats_path = Path(args.fleet_out).with_suffix(".feeder.json")

    async def report() -> None:
        while not stop.is_set():
            await asyncio.sleep(2.0)
            t = feeder.totals
            stats_path.write_text(json.dumps({"ticks": feeder.ticks, "sent": t.sent, "failed": t.failed,
                                              "pushed_at_once": feeder.urgent,
                                              "samples": t.samples, "seconds": t.seconds,
                                              "statuses": {str(k): v for k, v in t.statuses.items()}}))

    rep = asyncio.create_task(report())
    watcher = asyncio.create_task(feeder.watch(stop))
    await feeder.run(stop)
    rep.cancel()
    watcher.cancel()
    await feeder.close()


# ---- helpers ----------------------------------------------------------------------------------------------------


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None, token: str | None = TOKEN, timeout: float = 30.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
        return json.loads(raw) if raw and resp.headers.get_content_type() == "application/json" else raw


def start_serve(cmd: list[str], env: dict[str, str], url: str,
                log_path: Path) -> tuple[subprocess.Popen[str], float]:
    """Start ``redfleet serve`` and wait until it answers /healthz; (process, seconds it took)."""
    t0 = time.monotonic()
    # its log goes to a file (a pipe nobody reads would stall serve, and its collector workers, once full); the
    # child keeps its own descriptor
    with open(log_path, "w") as log:
        serve = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    for _ in range(1200):
        try:
            http("GET", f"{url}/healthz", token=None, timeout=2)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if serve.poll() is not None:
                raise RuntimeError(f"serve exited: {log_path.read_text()[-3000:]}") from None
            time.sleep(0.25)
    return serve, round(time.monotonic() - t0, 1)


def warm_up(url: str, nodes: int, limit: float, inventories: bool = False) -> float:
    """Wait until every node has been judged (none unknown) and heard from at least once, and with
    ``inventories`` until serve's first inventory of every BMC is written (a start-up burst of ~90 requests per
    BMC, not the steady state measured); seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        st = http("GET", f"{url}/api/v1/status")
        done = (st.get("persisted") or {}).get("inventories", 0) >= nodes if inventories else True
        if st["health"].get("unknown", 0) == 0 and st["batches_total"] >= nodes and done:
            break
        time.sleep(1.0)
    return round(time.monotonic() - t0, 1)


def stop_all(procs: tuple[subprocess.Popen[str] | None, ...], wait: float = 20.0) -> None:
    """SIGTERM each process still running, then wait for it (killed if it outlives ``wait``)."""
    for p in procs:
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        if p is not None:
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                p.kill()


def proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:  # gone (a collector worker that died; serve starts another)
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def collector_workers(pid: int) -> list[int]:
    """serve's collector worker processes (``--collector-workers``): its spawned children."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100.0 * (len(s) - 1))))
    return s[k]


# ---- one scale ---------------------------------------------------------------------------------------------------


def run_scale(args: argparse.Namespace, nodes: int, workdir: Path) -> dict[str, Any]:
    env = {**os.environ, "REDFLEET_KEY": "bench-" + "k" * 38, "PYTHONUNBUFFERED": "1"}
    from cryptography.fernet import Fernet

    env["REDFLEET_KEY"] = Fernet.generate_key().decode()
    fleet_file = workdir / f"fleet-{nodes}.yaml"
    sim = subprocess.Popen([sys.executable, "-m", "benchmarks", "serve_bench", "--worker", "--nodes", str(nodes),
                            "--flavor", args.flavor, "--fleet-out", str(fleet_file),
                            "--agent-interval", str(args.agent_interval), "--refresh", str(args.refresh),
                            "--columnar" if args.columnar else "--no-columnar", "--push-every", str(args.push_every)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    serve: subprocess.Popen[str] | None = None
    out: dict[str, Any] = {"nodes": nodes, "flavor": args.flavor, "collect": args.collect,
                           "encoding": "columnar" if args.columnar else "json"}
    try:
        assert sim.stdout is not None and sim.stdin is not None
        t0 = time.monotonic()
        ready = json.loads(sim.stdout.readline())
        control = ready["control"]
        out["sim_start_s"] = round(time.monotonic() - t0, 1)
        port = free_port(SERVE_HOST)
        url = f"http://{SERVE_HOST}:{port}"
        db = workdir / f"serve-{nodes}.db"
        # `redfleet serve` (through its own Typer command, whether or not the CLI root lists it yet)
        runner = "import typer; from redfleet.cli.serve import serve; typer.run(serve)"
        cmd = [sys.executable, "-c", runner, "--db", f"sqlite:///{db}", "--fleet",
               str(fleet_file), "--listen", f"{SERVE_HOST}:{port}", "--dev-token", TOKEN,
               "--sensors-interval", str(args.sensors_interval), "--inventory-interval", "86400", "--tls", "insecure"]
        if not args.collect:
            cmd.append("--no-collect")
        elif args.collector_workers:
            cmd += ["--collector-workers", str(args.collector_workers)]
        out["collector_workers"] = args.collector_workers if args.collect else 0
        log_path = Path(tempfile.gettempdir()) / f"serve_bench-serve-{nodes}.log"
        out["serve_log"] = str(log_path)
        serve, out["serve_start_s"] = start_serve(cmd, env, url, log_path)
        sim.stdin.write(json.dumps({"url": url, "token": TOKEN}) + "\n")
        sim.stdin.flush()
        # warm-up: every node judged (unknown -> healthy/degraded) before faults
        out["warmup_s"] = warm_up(url, nodes, args.warmup_max, inventories=args.collect and args.settle)
        # steady state: ingest throughput and CPU over a window
        workers = collector_workers(serve.pid)
        st0, cpu0, w0 = http("GET", f"{url}/api/v1/status"), proc_cpu_s(serve.pid), time.monotonic()
        wcpu0 = sum(proc_cpu_s(p) for p in workers)
        time.sleep(args.window)
        st1, cpu1, w1 = http("GET", f"{url}/api/v1/status"), proc_cpu_s(serve.pid), time.monotonic()
        wcpu1 = sum(proc_cpu_s(p) for p in workers)
        out["collector_workers_cpu_cores"] = round((wcpu1 - wcpu0) / (w1 - w0), 2)
        samples = st1["samples_total"] - st0["samples_total"]
        cpu = cpu1 - cpu0
        out["ingest_samples_per_s"] = round(samples / (w1 - w0))
        out["serve_cpu_cores"] = round(cpu / (w1 - w0), 2)
        out["ingest_samples_per_cpu_s"] = round(samples / cpu) if cpu > 0 else None
        out["batches_per_s"] = round((st1["batches_total"] - st0["batches_total"]) / (w1 - w0), 1)
        out["expected_batches_per_s"] = round(nodes / args.agent_interval / args.push_every, 1)
        out["push_every_s"] = args.push_every * args.agent_interval
        out["rss_mib"] = round(proc_rss_mib(serve.pid), 1)
        out["collector"] = st1.get("collector")
        # detection latency: faults at spread instants on distinct nodes
        names = [f"node-{i:05d}" for i in range(1, nodes + 1)]
        victims = random.Random(5).sample(names, min(args.faults, nodes))
        injected: dict[str, float] = {}
        for name in victims:
            injected[name] = time.time()
            http("POST", f"{control}/nodes/{name}/faults", {"kind": args.fault, "gpu": 0, "xid": args.xid},
                 token=None)
            time.sleep(args.fault_gap)
        lat: dict[str, float] = {}
        deadline = time.monotonic() + args.detect_timeout
        while len(lat) < len(victims) and time.monotonic() < deadline:
            for name in victims:
                if name in lat:
                    continue
                hist = http("GET", f"{url}/api/v1/nodes/{name}/health/history?limit=20")
                for ch in reversed(hist):  # oldest first
                    ts = _ts(ch["at"])
                    if ts >= injected[name] - 0.001 and ch["new"] != ch["old"]:
                        lat[name] = ts - injected[name]
                        break
            time.sleep(0.5)
        values = list(lat.values())
        out["faults"] = len(victims)
        out["detected"] = len(values)
        out["latency_p50_s"] = round(statistics.median(values), 3) if values else None
        out["latency_p99_s"] = round(pct(values, 99), 3) if values else None
        out["latency_max_s"] = round(max(values), 3) if values else None
        out["rss_mib_end"] = round(proc_rss_mib(serve.pid), 1)
        feeder_stats = fleet_file.with_suffix(".feeder.json")
        if feeder_stats.exists():
            out["feeder"] = json.loads(feeder_stats.read_text())
        return out
    finally:
        # the agents (feeder) first: stopped together, its last round met a closed serve and warned of refusals
        stop_all((sim,))
        stop_all((serve,))


def push_note(args: argparse.Namespace) -> str:
    if args.push_every == 1:
        return ""
    return (f" and pushes every {args.push_every * args.agent_interval:g} s (rows of 1 Hz samples per batch; at once"
            " on a fault)")


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks serve_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, action="append", help="fleet size (repeatable; default 1000 and 10000)")
    ap.add_argument("--flavor", default="supermicro", help="simulated node flavor (supermicro: 8-GPU HGX host)")
    ap.add_argument("--faults", type=int, default=50, help="faults injected per scale (distinct nodes)")
    ap.add_argument("--fault", default="xid", help="fault kind (sim catalog)")
    ap.add_argument("--xid", type=int, default=79)
    ap.add_argument("--fault-gap", type=float, default=0.1, help="seconds between injections")
    ap.add_argument("--sensors-interval", type=float, default=10.0)
    ap.add_argument("--agent-interval", type=float, default=1.0)
    ap.add_argument("--refresh", type=float, default=30.0,
                    help="fault-free nodes re-read from the simulator every this many seconds (see CachedFeeder)")
    ap.add_argument("--columnar", action=argparse.BooleanOptionalAction, default=True,
                    help="the feeder sends the columnar encoding (--no-columnar: one JSON object per sample)")
    ap.add_argument("--push-every", type=int, default=1,
                    help="agents push every N s, N rows of 1 Hz samples per batch, at once on a fault (columnar)")
    ap.add_argument("--detect-timeout", type=float, default=120.0, help="give up on a fault after this long")
    ap.add_argument("--window", type=float, default=20.0, help="steady-state measuring window (s)")
    ap.add_argument("--warmup-max", type=float, default=300.0)
    ap.add_argument("--settle", action=argparse.BooleanOptionalAction, default=True,
                    help="with --collect, measure after serve's first inventory of every BMC is written")
    ap.add_argument("--collect", action=argparse.BooleanOptionalAction, default=True, help="poll the BMCs")
    ap.add_argument("--collector-workers", type=int, default=0,
                    help="serve polls the BMCs from this many worker processes (their CPU is reported apart)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fleet-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        asyncio.run(sim_worker(argparse.Namespace(**{**vars(args), "nodes": args.nodes[0]})))
        return 0
    scales = args.nodes or [1000, 10000]
    results = []
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        for n in scales:
            print(f"--- {n} nodes ({args.flavor}, sensors every {args.sensors_interval:g} s"
                  f"{'' if args.collect else ' OFF'}, agent samples every {args.agent_interval:g} s"
                  f"{push_note(args)}"
                  f", {'columnar' if args.columnar else 'JSON'} encoding)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                r = run_scale(args, n, Path(tmp))
                results.append(r)
                print(json.dumps(r, indent=1), flush=True)
    print("\nnodes  p50_s   p99_s   vs goal(2 s)  samples/s  samples/cpu-s  serve cores (+workers)  "
          "batches/s (want)  RSS MiB")
    for r in results:
        p99 = r.get("latency_p99_s")
        ratio = f"{GOAL_P99_S / p99:5.1f}x" if p99 else "  n/a"
        print(f"{r['nodes']:>5}  {r.get('latency_p50_s')!s:>6}  {p99!s:>6}  {ratio:>12}  "
              f"{r.get('ingest_samples_per_s', 0):>9}  {r.get('ingest_samples_per_cpu_s')!s:>13}  "
              f"{r.get('serve_cpu_cores')!s:>11} (+{r.get('collector_workers_cpu_cores', 0)!s})  "
              f"{r.get('batches_per_s')!s:>7} ({r.get('expected_batches_per_s')})"
              f"  {r.get('rss_mib')!s:>7}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

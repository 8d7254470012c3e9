"""Simulator feeder throughput: one ingest batch per simulated node per round, 10,000 nodes, into a trivial receiver.

The simulator runs in this process (the feeder reads ``fleet.dynamics`` in-process, as serve's tests and demo do);
the receiver is a separate process (aiohttp: read the body, answer 200), so the figures are the feeder's own.
Reported per mode:

- ``exact``: every node's DCGM fields recomputed every round (the simulator's GPU model is the dominant cost);
- ``held``: fields held up to ``--refresh`` s per node (recomputed at once on any fault change), the way a
  dcgm-exporter scraped faster than its collection interval answers: the feeder's own cost (batch building,
  serialization, HTTP) with ~round/refresh of the nodes recomputed per round;
- the HTTP side alone on the same bodies: redfleet's pipelined client vs a plain aiohttp client (one POST per
  batch, 64 in flight, keep-alive), the peer.

Figures: batches/s, samples/s, seconds per round, whether 10,000 nodes fit in a 1 s round, CPU seconds.

    python -m benchmarks agent_bench                 # 10,000 nodes
    python -m benchmarks agent_bench --quick         # 1,000 nodes
    python -m benchmarks agent_bench --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson

from redfleet.agent.pusher import PipelinedClient, ingest_url
from redfleet.agent.simfeed import SimFeeder
from redfleet.sim import SimConfig, SimFleet

RECEIVER_ADDR = "127.18.0.250"
SIM_BASE = "127.18.16.1"  # 10,000 nodes: 127.18.16.1 … 127.18.55.x, inside this helper's block

RECEIVER = r"""
import asyncio, sys, time, resource
from aiohttp import web
n = {"req": 0, "bytes": 0}
async def ingest(request):
    body = await request.read()
    n["req"] += 1; n["bytes"] += len(body)
    return web.Response(body=b'{"accepted_samples":0,"accepted_events":0,"node":""}', content_type="application/json")
async def stats(request):
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return web.json_response({**n, "cpu_s": ru.ru_utime + ru.ru_stime})
async def main():
    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/api/v1/ingest", ingest)
    app.router.add_get("/stats", stats)
    r = web.AppRunner(app, access_log=None); await r.setup()
    s = web.TCPSite(r, sys.argv[1], 0, backlog=1024); await s.start()
    print(s._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@dataclass
class Row:
    mode: str
    nodes: int
    rounds: int
    batches: int
    samples: int
    wall_s: float
    build_s: float
    send_s: float
    cpu_s: float
    receiver_cpu_s: float
    failed: int
    round_s: list[float] = field(default_factory=list)

    @property
    def batches_per_s(self) -> float:
        return self.batches / self.wall_s if self.wall_s else 0.0

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall_s if self.wall_s else 0.0


def cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def receiver_stats(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/stats") as r:
        data: dict[str, Any] = await r.json()
        return data


async def run_mode(feeder: SimFeeder, mode: str, rounds: int, url: str, paced: bool) -> Row:
    rs0 = await receiver_stats(url)
    c0 = cpu()
    t0 = time.perf_counter()
    build = send = 0.0
    batches = samples = failed = 0
    per_round: list[float] = []
    next_at = time.monotonic()
    for _ in range(rounds):
        st = await feeder.tick()
        build += st.build_s
        send += st.send_s
        batches += st.nodes
        samples += st.samples
        failed += st.failed
        per_round.append(st.seconds)
        if paced:
            next_at += feeder.interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    wall = time.perf_counter() - t0
    c1 = cpu()
    rs1 = await receiver_stats(url)
    return Row(mode, len(feeder.node_names()), rounds, batches, samples, wall, build, send, c1 - c0,
               rs1["cpu_s"] - rs0["cpu_s"], failed, [round(x, 3) for x in per_round])


async def peer_aiohttp(url: str, bodies: list[bytes], concurrency: int = 64) -> tuple[float, int]:
    """The peer: one aiohttp POST per batch, ``concurrency`` in flight over a keep-alive pool."""
    sem = asyncio.Semaphore(concurrency)
    ok = 0
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def one(b: bytes) -> None:
            nonlocal ok
            async with sem, s.post(url, data=b, headers={"Authorization": "Bearer tok",
                                                         "Content-Type": "application/json"}) as r:
                await r.read()
                ok += r.status == 200

        t0 = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return time.perf_counter() - t0, ok


async def main_async(args: argparse.Namespace, base: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    cfg = SimConfig(nodes=args.nodes, port=0, http=True, base_address=SIM_BASE, time_scale=1.0, seed=1)
    async with SimFleet(cfg) as fleet:
        started = time.perf_counter() - t0
        fd: Any = fleet.dynamics
        n_gpus = sum(len(fd.node(n.name).flv.ix.gpus) for n in fleet.nodes)
        print(f"simulator: {args.nodes} nodes, {n_gpus} GPUs, started in {started:.1f} s", flush=True)
        rows: list[Row] = []
        exact = SimFeeder(base, "tok", fleet=fleet, nvme_every=1e9, connections=args.connections,
                          depth=args.depth)
        await run_mode(exact, "warm-up", 1, base, paced=False)
        rows.append(await run_mode(exact, "exact", args.rounds, base, paced=False))
        held = SimFeeder(base, "tok", fleet=fleet, nvme_every=1e9, refresh=args.refresh,
                         connections=args.connections, depth=args.depth)
        await run_mode(held, "warm-up", 1, base, paced=False)
        rows.append(await run_mode(held, f"held({args.refresh:g}s)" + (", 1 Hz paced" if args.paced else ""),
                                   args.held_rounds, base, paced=args.paced))
        # the HTTP side alone: the same bodies through the pipelined client and through the aiohttp peer
        built = await exact.build(names=exact.node_names()[:args.http_nodes])
        bodies = [orjson.dumps(b) for _n, b in built]
        del built
        client = PipelinedClient(ingest_url(base), connections=args.connections, depth=args.depth)
        await client.post_many([(b, "tok") for b in bodies[:100]])
        t, c = time.perf_counter(), cpu()
        statuses = await client.post_many([(b, "tok") for b in bodies])
        pipe_s, pipe_cpu = time.perf_counter() - t, cpu() - c
        await client.close()
        c = cpu()
        peer_s, peer_ok = await peer_aiohttp(ingest_url(base), bodies)
        peer_cpu = cpu() - c
        await exact.close()
        await held.close()
    http = {"batches": len(bodies), "bytes": sum(map(len, bodies)),
            "pipelined_s": round(pipe_s, 3), "pipelined_ok": statuses.count(200),
            "pipelined_batches_per_s": round(len(bodies) / pipe_s), "aiohttp_s": round(peer_s, 3),
            "aiohttp_ok": peer_ok, "aiohttp_batches_per_s": round(len(bodies) / peer_s),
            "ratio": round(peer_s / pipe_s, 2), "pipelined_cpu_s": round(pipe_cpu, 3),
            "aiohttp_cpu_s": round(peer_cpu, 3), "cpu_ratio": round(peer_cpu / max(pipe_cpu, 1e-9), 2)}
    return {"nodes": args.nodes, "gpus": n_gpus, "sim_start_s": round(started, 2),
            "rows": [{**asdict(r), "batches_per_s": round(r.batches_per_s),
                      "samples_per_s": round(r.samples_per_s)} for r in rows], "http": http}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks agent_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3, help="unpaced rounds in exact mode")
    ap.add_argument("--held-rounds", type=int, default=5, help="rounds in held mode")
    ap.add_argument("--refresh", type=float, default=60.0, help="held mode: seconds a node's fields may be held")
    ap.add_argument("--paced", action="store_true", help="held mode: one round per second (when rounds fit)")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--http-nodes", type=int, default=5000, help="batches in the HTTP-only comparison")
    ap.add_argument("--quick", action="store_true", help="1,000 nodes")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if args.quick:
        args.nodes = min(args.nodes, 1000)
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, RECEIVER_ADDR], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        res = asyncio.run(main_async(args, f"http://{RECEIVER_ADDR}:{port}"))
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    finally:
        proc.terminate()
        with contextlib.suppress(Exception):
            proc.wait(5)
    print(f"\n{'mode':<26} {'nodes':>6} {'rounds':>6} {'batches/s':>10} {'samples/s':>11} {'s/round p50':>11} "
          f"{'max':>6} {'build s':>8} {'send s':>7} {'cpu s':>6} {'rx cpu s':>8} {'failed':>6}")
    for r in res["rows"]:
        rs = sorted(r["round_s"])
        print(f"{r['mode']:<26} {r['nodes']:>6} {r['rounds']:>6} {r['batches_per_s']:>10} {r['samples_per_s']:>11} "
              f"{rs[len(rs) // 2]:>11.3f} {rs[-1]:>6.2f} {r['build_s']:>8.2f} {r['send_s']:>7.2f} "
              f"{r['cpu_s']:>6.1f} {r['receiver_cpu_s']:>8.1f} {r['failed']:>6}")
    print(f"feeder peak RSS {res['peak_rss_mb']} MB (simulator included)")
    h = res["http"]
    print(f"\nHTTP only, {h['batches']} batches ({h['bytes'] / 1e6:.0f} MB): pipelined {h['pipelined_batches_per_s']}/s"
          f" ({h['pipelined_cpu_s']} CPU s) vs aiohttp one-POST-each {h['aiohttp_batches_per_s']}/s "
          f"({h['aiohttp_cpu_s']} CPU s): {h['ratio']}x faster, {h['cpu_ratio']}x less client CPU")
    load = os.getloadavg()[0]
    print(f"(load average {load:.1f} on {os.cpu_count()} cores: wall-clock figures are only as good as the machine is "
          "idle; CPU-second figures are the feeder's own)")
    for r in res["rows"]:
        need = r["nodes"]  # batches per second for every node at 1 Hz
        cpu_round = r["cpu_s"] / r["rounds"]
        print(f"{r['mode']}: {r['batches_per_s'] / need:.2f}x of 1 Hz wall-clock for {need} nodes; "
              f"{cpu_round:.2f} feeder CPU-s per round -> {cpu_round:.1f} cores for 1 Hz; "
              f"{r['samples'] / max(r['cpu_s'], 1e-9):.0f} samples and {r['batches'] / max(r['cpu_s'], 1e-9):.0f} "
              "batches per feeder CPU-second")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())

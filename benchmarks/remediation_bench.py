"""Automated remediation at fleet scale: N simulated nodes, F simultaneous Xid 79 faults, every one taken through
cordon -> drain -> BMC power cycle -> wait -> health gate -> uncordon by ``redfleet serve --remediation``.
Prints the control plane's time per phase (p50/p99) with the simulated boot and the policy's deliberate gate
settle taken out, against the issue's goals: fault to cordon < 1 s, control-plane overhead per remediation < 5 s.

Three processes, as in serve_bench: the simulator (BMCs over HTTP + the in-band feed), ``redfleet serve`` (BMC
polling, health engine, remediation controller, SQLite), and this driver (injects through the simulator's control
API, reads the workflows back from serve's API).

    python -m benchmarks remediation_bench                       # 10,000 nodes, 100 faults
    python -m benchmarks remediation_bench --nodes 1000 --faults 50
    python -m benchmarks remediation_bench --wlm slurm           # through a real local slurmctld (root)

The in-band feed here carries the heartbeat, GPU identities and Xid events but not the DCGM samples (``--light``,
default): remediation needs the first three, and serve's ingest of full GPU telemetry at 10,000 nodes is
serve_bench's subject (issue 4), which would otherwise dominate this machine's two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.serve_bench import free_port, http, pct, proc_rss_mib, start_serve, stop_all, warm_up

SERVE_HOST = "127.24.0.50"
SIM_BASE = "127.24.100.1"
TOKEN = "bench-dev-token"
GOAL_CORDON_S = 1.0
GOAL_OVERHEAD_S = 5.0


def light_feeder_class() -> Any:
    from redfleet.agent.simfeed import SimFeeder

    class LightFeeder(SimFeeder):  # type: ignore[misc]
        """Batches without DCGM samples: heartbeat (os_state, uptime), GPU identities, Xid events."""

        def _local_doc(self, name: str, st: Any, wall: float, due_nvme: bool) -> Any:
            doc = super()._local_doc(name, st, wall, due_nvme)
            doc["gpus"] = [{**g, "fields": {}} for g in doc["gpus"]]
            return doc

    return LightFeeder


async def sim_worker(args: argparse.Namespace) -> None:
    from redfleet.sim import SimConfig, SimFleet

    cfg = SimConfig(mix={args.flavor: args.nodes}, port=0, http=True, base_address=SIM_BASE,
                    time_scale=args.time_scale, control_port=0, seed=11,
                    cache_dir=Path(tempfile.gettempdir()) / "redfleet-bench-certs")
    async with SimFleet(cfg) as fleet:
        await asyncio.to_thread(Path(args.fleet_out).write_text, fleet.fleet_file().to_yaml())
        print(json.dumps({"control": fleet.control_url}), flush=True)
        loop = asyncio.get_running_loop()
        serve = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
        cls = light_feeder_class() if args.light else __import__("redfleet.agent.simfeed",
                                                                  fromlist=["SimFeeder"]).SimFeeder
        feeder = cls(serve["url"], serve["token"], fleet=fleet, interval=args.agent_interval, hung="report",
                     nvme_every=0, connections=8, depth=64, refresh=30.0)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await feeder.run(stop)
        await feeder.close()


def write_policy(path: Path, args: argparse.Namespace) -> None:
    path.write_text(json.dumps({  # JSON is YAML
        "health_gate": {"settle": args.settle, "timeout": 300},
        "rungs": {"power-cycle": {"timeout": 600, "retries": 0}},
        "drain": {"timeout": 120},
        "safety": {"max_concurrent": args.faults, "max_concurrent_percent": 100, "max_per_rack": args.faults,
                   "breaker": {"unhealthy_percent": 50, "window": "5m"}},
    }))


def phase_figures(flows: list[dict[str, Any]], injected: dict[str, float], settle: float) -> dict[str, Any]:
    rows: dict[str, list[float]] = {k: [] for k in (
        "inject_to_detect", "detect_to_cordon", "cordon_to_drained", "drained_to_issued", "wait_sim_boot",
        "back_to_gate_passed_minus_settle", "gate_to_uncordon", "total", "control_plane_overhead")}
    for f in flows:
        t = f.get("timings") or {}
        need = ("detected_at", "admitted_at", "cordoned_at", "drained_at", "issued_at", "back_at", "gate_passed_at",
                "uncordoned_at")
        if f["state"] != "succeeded" or any(k not in t for k in need):
            continue
        if f["node"] in injected:
            rows["inject_to_detect"].append(t["detected_at"] - injected[f["node"]])
        rows["detect_to_cordon"].append(t["cordoned_at"] - t["detected_at"])
        rows["cordon_to_drained"].append(t["drained_at"] - t["cordoned_at"])
        rows["drained_to_issued"].append(t["issued_at"] - t["drained_at"])
        rows["wait_sim_boot"].append(t["back_at"] - t["issued_at"])
        rows["back_to_gate_passed_minus_settle"].append(t["gate_passed_at"] - t["back_at"] - settle)
        rows["gate_to_uncordon"].append(t["uncordoned_at"] - t["gate_passed_at"])
        total = t["uncordoned_at"] - t["detected_at"]
        rows["total"].append(total)
        rows["control_plane_overhead"].append(total - (t["back_at"] - t["issued_at"]) - settle)
    return {k: {"n": len(v), "p50": round(statistics.median(v), 3) if v else None,
                "p99": round(pct(v, 99), 3) if v else None} for k, v in rows.items()}


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from cryptography.fernet import Fernet

    env = {**os.environ, "REDFLEET_KEY": Fernet.generate_key().decode(), "PYTHONUNBUFFERED": "1"}
    fleet_file = workdir / "fleet.yaml"
    worker = [sys.executable, "-m", "benchmarks", "remediation_bench", "--worker", "--nodes", str(args.nodes),
              "--flavor", args.flavor, "--fleet-out", str(fleet_file), "--agent-interval", str(args.agent_interval),
              "--time-scale", str(args.time_scale), *([] if args.light else ["--no-light"])]
    sim = subprocess.Popen(worker, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    serve: subprocess.Popen[str] | None = None
    slurm = None
    out: dict[str, Any] = {"nodes": args.nodes, "faults": args.faults, "flavor": args.flavor, "wlm": args.wlm,
                           "collect": args.collect,
                           "light_feed": args.light, "agent_interval_s": args.agent_interval,
                           "gate_settle_s": args.settle}
    try:
        assert sim.stdout is not None and sim.stdin is not None
        t0 = time.monotonic()
        control = json.loads(sim.stdout.readline())["control"]
        out["sim_start_s"] = round(time.monotonic() - t0, 1)
        policy = workdir / "policy.yaml"
        write_policy(policy, args)
        port = free_port(SERVE_HOST)
        url = f"http://{SERVE_HOST}:{port}"
        runner = "import typer; from redfleet.cli.serve import serve; typer.run(serve)"
        cmd = [sys.executable, "-c", runner, "--db", f"sqlite:///{workdir / 'serve.db'}", "--fleet", str(fleet_file),
               "--listen", f"{SERVE_HOST}:{port}", "--dev-token", TOKEN, "--sensors-interval",
               str(args.sensors_interval), "--inventory-interval", "86400", "--tls", "insecure",
               "--remediation", str(policy), "--wlm", args.wlm]
        if not args.collect:
            cmd.append("--no-collect")
        if args.wlm == "slurm":
            from redfleet.remediation.wlm.slurmctl import LocalSlurm

            ok, why = LocalSlurm.available()
            if not ok:
                raise SystemExit(f"--wlm slurm: {why}")
            slurm = LocalSlurm().start([f"node-{i:05d}" for i in range(1, args.nodes + 1)], registered=[])
            cmd += ["--slurm-conf", str(slurm.conf_path)]
        serve, out["serve_start_s"] = start_serve(cmd, env, url, workdir / "serve.log")
        sim.stdin.write(json.dumps({"url": url, "token": TOKEN}) + "\n")
        sim.stdin.flush()
        out["warmup_s"] = warm_up(url, args.nodes, args.warmup_max)
        out["health_before"] = http("GET", f"{url}/api/v1/status")["health"]
        names = [f"node-{i:05d}" for i in range(1, args.nodes + 1)]
        victims = random.Random(5).sample(names, min(args.faults, args.nodes))
        injected: dict[str, float] = {}
        for name in victims:  # as fast as the control API takes them: "simultaneous"
            injected[name] = time.time()
            http("POST", f"{control}/nodes/{name}/faults", {"kind": "xid", "gpu": 0, "xid": 79}, token=None)
        out["inject_spread_s"] = round(max(injected.values()) - min(injected.values()), 3)
        deadline = time.monotonic() + args.timeout
        flows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            flows = [f for f in http("GET", f"{url}/api/v1/remediations?limit=5000") if f["node"] in injected]
            done = [f for f in flows if f["state"] in ("succeeded", "failed", "decommissioned")]
            if len(done) >= len(victims):
                break
            time.sleep(2.0)
        states: dict[str, int] = {}
        for f in flows:
            states[f["state"]] = states.get(f["state"], 0) + 1
        out["workflows"] = states
        out["not_started"] = len(set(victims) - {f["node"] for f in flows})
        out["phases_s"] = phase_figures(flows, injected, args.settle)
        out["rss_mib"] = round(proc_rss_mib(serve.pid), 1)
        st = http("GET", f"{url}/api/v1/remediation/status")
        out["breaker_tripped"] = st["breaker"]["tripped"]
        return out
    finally:
        stop_all((serve, sim), wait=30.0)
        if slurm is not None:
            slurm.stop()


def report(r: dict[str, Any]) -> None:
    print(f"\nremediation at {r['nodes']} nodes, {r['faults']} simultaneous Xid 79 faults (flavor {r['flavor']}, "
          f"wlm {r['wlm']}, agent every {r['agent_interval_s']} s{', light feed' if r['light_feed'] else ''}"
          f"{'' if r['collect'] else ', no BMC polling'})")
    print(f"  start: sim {r['sim_start_s']} s, serve {r['serve_start_s']} s, warm-up {r['warmup_s']} s; "
          f"injected within {r['inject_spread_s']} s; serve RSS {r['rss_mib']} MiB")
    print(f"  workflows: {r['workflows']}, never started: {r['not_started']}, breaker tripped: "
          f"{r['breaker_tripped']}")
    print(f"  {'phase (seconds)':<36} {'n':>5} {'p50':>8} {'p99':>8}")
    for k, v in r["phases_s"].items():
        print(f"  {k:<36} {v['n']:>5} {v['p50']!s:>8} {v['p99']!s:>8}")
    ph = r["phases_s"]
    c99, o99 = ph["detect_to_cordon"]["p99"], ph["control_plane_overhead"]["p99"]
    print(f"  goal fault->cordon < {GOAL_CORDON_S:g} s: p99 {c99} s -> "
          f"{'met' if c99 is not None and c99 < GOAL_CORDON_S else 'NOT met'}")
    print(f"  goal control-plane overhead < {GOAL_OVERHEAD_S:g} s: p99 {o99} s -> "
          f"{'met' if o99 is not None and o99 < GOAL_OVERHEAD_S else 'NOT met'}")
    print("  (overhead = detection to uncordon, minus the simulated boot (issued -> node back) and the gate's "
          "deliberate settle; fault->cordon is from the health verdict)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks remediation_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--faults", type=int, default=100)
    ap.add_argument("--flavor", default="supermicro")
    ap.add_argument("--wlm", default="none", choices=("none", "slurm"))
    ap.add_argument("--agent-interval", type=float, default=2.0)
    ap.add_argument("--sensors-interval", type=float, default=60.0)
    ap.add_argument("--time-scale", type=float, default=10.0, help="simulated boot delays divided by this")
    ap.add_argument("--settle", type=float, default=5.0, help="health gate settle (s)")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--warmup-max", type=float, default=300.0)
    ap.add_argument("--light", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--collect", action=argparse.BooleanOptionalAction, default=True,
                    help="serve polls the BMCs (at 10,000 nodes this needs ~20,000+ open files: a listening socket and "
                         "a keep-alive connection per simulated BMC)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fleet-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(sim_worker(args))
        return 0
    with tempfile.TemporaryDirectory(prefix="redfleet-remediation-bench-") as tmp:
        r = run(args, Path(tmp))
    report(r)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

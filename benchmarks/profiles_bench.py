"""Profile validation at fleet scale: redfleet validating 1,000 simulated BMCs vs DMTF rf_interop_validator on 10.

One run, side by side, against the same simulated fleet (``redfleet sim`` in its own process, every flavor in turn,
plain HTTP on 127.16.136.0/…): first the DMTF tool, as an operator scripts it, on the first ``--dmtf-nodes`` BMCs one
after another; then redfleet on all ``--nodes`` BMCs at once (``--fast``: each platform read in full once, the
others read what mattered, and a resource already judged on a node of its platform with the same requirement-relevant
content is not judged again; ``--concurrency`` BMCs at once, in ``--workers`` processes). Both use OCP Server
1.1.0 (which requires OCP Baseline 1.1.0). redfleet runs in ``dmtf`` mode here so that its pass/warn/fail/not-tested
counts on the DMTF tool's nodes can be checked equal to the tool's own. Goal: the 1,000 finish sooner than the 10.

    python -m benchmarks profiles_bench [--nodes 1000] [--dmtf-nodes 10] [--workers 1] [--concurrency 32]
                                        [--out artifacts/profiles_bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redfleet.model.fleetfile import load_fleet_file
from redfleet.paths import shared_dir
from redfleet.profiles.fleet import Target, fleet_options, validate_fleet, validate_fleet_processes
from redfleet.profiles.fleet import run as run_async
from redfleet.profiles.profile import load_profile

PROFILE = "OCPServerHardwareManagement.v1_1_0.json"
_TOTALS = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sim(nodes: int, port: int, fleet_file: Path, base: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("redfleet") or str(Path(sys.executable).parent / "redfleet")
    proc = subprocess.Popen([exe, "sim", "--nodes", str(nodes), "--http", "--port", str(port), "--base-address", base,
                             "--fleet-out", str(fleet_file), "--time-scale", "100"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"simulator exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        if fleet_file.exists() and fleet_file.stat().st_size > 0:
            try:
                ff = load_fleet_file(fleet_file)
                last = ff.nodes[-1].bmc_url
                with socket.create_connection((last.split("//")[1].split(":")[0], port), timeout=1):
                    return proc
            except Exception:
                pass
        time.sleep(0.5)
    raise RuntimeError("simulator did not come up")


def run_dmtf(url: str, user: str, password: str, profile: Path, logdir: Path) -> tuple[float, dict[str, int] | None]:
    exe = shutil.which("rf_interop_validator") or str(Path(sys.executable).parent / "rf_interop_validator")
    began = time.perf_counter()
    proc = subprocess.run([exe, "-u", user, "-p", password, "-r", url, "--logdir", str(logdir), str(profile)],
                          capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - began
    totals = None
    for line in proc.stdout.splitlines():
        m = _TOTALS.match(line.strip())
        if m:
            totals = dict(zip(("pass", "warn", "fail", "not_tested"), map(int, m.groups()), strict=True))
    return elapsed, totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="profiles_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--dmtf-nodes", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32, help="redfleet: BMCs validated at once (more only "
                        "slows down the first node of each platform, which the others wait for)")
    parser.add_argument("--workers", type=int, default=1, help="redfleet: processes (redfleet validate --workers); "
                        "on a 2-core box one is faster: the simulator needs the other core, and a second process "
                        "learns every platform again and sends its results back through pickle")
    parser.add_argument("--base-address", default="127.16.136.1")
    parser.add_argument("--out", type=Path, default=Path("artifacts/profiles_bench.json"))
    args = parser.parse_args(argv)

    profile_path = shared_dir() / "redfish" / "profiles" / PROFILE
    if not profile_path.exists():
        print(f"OCP profile not found at {profile_path}", file=sys.stderr)
        return 2
    if not (shutil.which("rf_interop_validator") or (Path(sys.executable).parent / "rf_interop_validator").exists()):
        print("rf_interop_validator is not installed (pip install redfish-interop-validator)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="profiles_bench_"))
    fleet_file = work / "fleet.yaml"
    port = free_port()
    print(f"starting {args.nodes} simulated BMCs ...", flush=True)
    t0 = time.perf_counter()
    sim = start_sim(args.nodes, port, fleet_file, args.base_address)
    sim_start = time.perf_counter() - t0
    try:
        ff = load_fleet_file(fleet_file)
        targets = []
        for node in ff.nodes:
            cred = ff.credential_for(node)
            targets.append(Target(node.name, node.bmc_url, cred.username if cred else "root",
                                  cred.resolve_password() if cred else "calvin", {"flavor": node.flavor}))
        # 1. the DMTF tool, one BMC after another
        dmtf_runs = []
        began = time.perf_counter()
        for t in targets[: args.dmtf_nodes]:
            elapsed, totals = run_dmtf(t.location, t.username or "", t.password or "", profile_path, work / "dmtf")
            dmtf_runs.append({"node": t.name, "flavor": t.tags.get("flavor"), "seconds": round(elapsed, 2),
                              "totals": totals})
            print(f"  DMTF {t.name} ({t.tags.get('flavor')}): {elapsed:.1f} s {totals}", flush=True)
        dmtf_total = time.perf_counter() - began

        # 2. redfleet, the whole fleet at once
        profiles = load_profile(profile_path)
        began = time.perf_counter()
        results = validate_fleet_processes(targets, profiles, "dmtf", fast=True, workers=args.workers,
                                           concurrency=args.concurrency, protocol=False)
        ours_total = time.perf_counter() - began
        # Where the counts differ on a DMTF node, read that node again in full (no fleet plan): tells a fleet-mode
        # error apart from a BMC whose state changed between the two tools' reads.
        for entry, r, t in zip(dmtf_runs, results, targets, strict=False):
            if entry["totals"] != r.summary():
                full = run_async(validate_fleet([t], profiles, fleet_options("dmtf", fast=False), protocol=False))
                entry["redfleet_full"] = full[0].summary()
    finally:
        os.killpg(sim.pid, signal.SIGTERM)
        try:
            sim.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(sim.pid, signal.SIGKILL)

    errors = [r for r in results if r.error]
    same = []
    for entry, r in zip(dmtf_runs, results, strict=False):
        entry["redfleet_totals"] = r.summary()
        same.append(entry["totals"] == r.summary())
        if entry["totals"] != r.summary():
            print(f"  counts differ on {entry['node']} ({entry['flavor']}): DMTF {entry['totals']}, redfleet "
                  f"{r.summary()}; a full (not --fast) redfleet read of it now gave {entry.get('redfleet_full')}",
                  flush=True)
    reads = sum(r.resources_read for r in results)
    unread = [r for r in results if r.read_errors]
    report = {
        "nodes": args.nodes, "dmtf_nodes": args.dmtf_nodes, "profile": profiles.label,
        "simulator_start_s": round(sim_start, 1),
        "dmtf_seconds_total": round(dmtf_total, 1), "dmtf_runs": dmtf_runs,
        "redfleet_seconds_total": round(ours_total, 1), "redfleet_resources_read": reads,
        "redfleet_errors": len(errors), "redfleet_first_errors": [e.error for e in errors[:3]],
        "redfleet_nodes_with_read_errors": len(unread),
        "redfleet_first_read_errors": [dict(list(r.read_errors.items())[:2]) for r in unread[:3]],
        "same_counts_on_dmtf_nodes": f"{sum(same)}/{len(same)}",
        "redfleet_per_node_ms": round(1000 * ours_total / max(1, len(results)), 1),
        "dmtf_per_node_s": round(dmtf_total / max(1, len(dmtf_runs)), 1),
        "goal_met": ours_total < dmtf_total,
    }
    print()
    print("| tool | BMCs | wall time | per BMC | requests |")
    print("|---|---:|---:|---:|---:|")
    print(f"| DMTF rf_interop_validator 3.x | {args.dmtf_nodes} | {dmtf_total:.1f} s | "
          f"{report['dmtf_per_node_s']} s | (every resource) |")
    print(f"| redfleet validate --fast | {args.nodes} | {ours_total:.1f} s | {report['redfleet_per_node_ms']} ms | "
          f"{reads} |")
    print()
    print(f"same pass/warn/fail/not-tested counts on the DMTF tool's BMCs: {report['same_counts_on_dmtf_nodes']}; "
          f"redfleet errors: {len(errors)}, nodes with unreadable resources: {len(unread)};\n"
          f"goal (1,000 sooner than 10): {'met' if report['goal_met'] else 'NOT met'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if report["goal_met"] and not errors and not unread else 1


if __name__ == "__main__":
    raise SystemExit(main())

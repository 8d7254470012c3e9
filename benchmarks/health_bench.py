"""Health engine + time series micro-benchmark: observe/evaluate cost per node and the series' memory at fleet scale.

Synthetic 1 Hz GPU telemetry (8 GPUs x 20 DCGM fields per node, realistic mix: noisy gauges, constant counters)
goes through ``SeriesStore.add_many`` and ``HealthEngine.observe_samples`` + ``observe_agent`` and then
``evaluate`` once per simulated second, in one process, timed with ``time.process_time``. Faults (a hot GPU,
a DBE) are injected into a few nodes to time the re-derivation of changed nodes. Memory: the series store is
filled to its full reach (1 min fine + 10 min coarse) for ``--mem-nodes`` nodes and the bytes per series
extrapolated to 10,000 nodes; peer: the naive store (a ``deque(maxlen=600)`` of (ts, value) tuples per series,
10 minutes at full resolution). BMC sensor polls: ``observe_sensors`` on a DGX-sized poll (503 readings of mixed
kinds) vs the same readings keyed afresh on every poll (``series.add_many`` + ``observe_samples`` on new label
dicts, what observe_sensors did before it kept each sensor's key).

    python -m benchmarks health_bench [--nodes 10000] [--rounds 8] [--mem-nodes 100] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redfleet.health import HealthEngine
from redfleet.model.ingest import GpuIdentity
from redfleet.model.telemetry import Reading, SensorReadings
from redfleet.telemetry.series import KeyedSample, SeriesStore

GPUS = 8
# (metric, kind): gauge = changes every second, int = integer gauge (changes every few s), counter = constant
FIELDS: list[tuple[str, str]] = [
    ("DCGM_FI_DEV_GPU_TEMP", "int"), ("DCGM_FI_DEV_MEMORY_TEMP", "int"), ("DCGM_FI_DEV_POWER_USAGE", "gauge"),
    ("DCGM_FI_DEV_GPU_UTIL", "int"), ("DCGM_FI_DEV_MEM_COPY_UTIL", "int"), ("DCGM_FI_DEV_SM_CLOCK", "int"),
    ("DCGM_FI_DEV_FB_USED", "int"), ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge"),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "gauge"), ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "counter"),
    ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter"), ("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", "counter"),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "counter"), ("DCGM_FI_DEV_ROW_REMAP_PENDING", "counter"),
    ("DCGM_FI_DEV_RETIRED_DBE", "counter"), ("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "counter"),
    ("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", "counter"),
    ("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "counter"), ("DCGM_FI_DEV_XID_ERRORS", "counter"),
    ("REDFLEET_GPU_RECOVERY_ACTION", "counter"),
]


@dataclass(slots=True)
class S:
    metric: str
    value: float
    ts: float
    gpu: int | None
    labels: dict[str, str] = field(default_factory=dict)


def make_node(rng: random.Random) -> list[S]:
    out = []
    for g in range(GPUS):
        for name, _kind in FIELDS:
            out.append(S(name, 0.0, 0.0, g))
    return out


def step(samples: list[S], t: float, rng: random.Random) -> None:
    """Advance one node's samples to time t (outside the timed region)."""
    i = 0
    for _g in range(GPUS):
        for _name, kind in FIELDS:
            s = samples[i]
            s.ts = t
            if kind == "gauge":
                s.value = 300.0 + rng.random() * 400.0
            elif kind == "int":
                if rng.random() < 0.3:
                    s.value = float(55 + rng.randrange(10))
            i += 1


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_engine(nodes: int, rounds: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    series = SeriesStore()
    engine = HealthEngine(series=series)
    names = [f"node-{i:05d}" for i in range(nodes)]
    data = {n: make_node(rng) for n in names}
    ids = [GpuIdentity(gpu=g, model="NVIDIA H100 80GB HBM3") for g in range(GPUS)]
    for n in names:
        engine.observe_gpus(n, ids, GPUS)
        engine.observe_reachability(n, True, 0.0, power_state="On")
    engine.evaluate(0.0)
    t_series = t_observe = t_eval = 0.0
    eval_ticks: list[float] = []
    samples_total = 0
    faulty = names[:: max(1, nodes // 20)]  # 20 nodes get a hot GPU 0 from round 2 and a DBE at round 4
    detected, tick_cpu = 0, 0.0
    changes_total = 0
    for r in range(1, rounds + 1):
        t = float(r)
        for n in names:
            step(data[n], t, rng)
        if r >= 2:
            for n in faulty:
                data[n][0].value = 97.0
        if r == 4:
            for n in faulty:
                data[n][10].value = 1.0  # GPU 0 DBE_VOL
        c0 = time.process_time()
        for n in names:
            series.add_many(n, data[n])
        c1 = time.process_time()
        for n in names:
            engine.observe_samples(n, data[n], t)
            engine.observe_agent(n, "up", t)
        c2 = time.process_time()
        changes = engine.evaluate(t)
        c3 = time.process_time()
        changes_total += len(changes)
        if r == 4:
            fs = set(faulty)
            detected = sum(1 for ch in changes if ch.node in fs and ch.new == "unhealthy")
            tick_cpu = c3 - c0
        t_series += c1 - c0
        t_observe += c2 - c1
        t_eval += c3 - c2
        eval_ticks.append(c3 - c2)
        samples_total += nodes * GPUS * len(FIELDS)
    dbe = sum(1 for n in faulty if engine.node_health(n).state == "unhealthy")
    per_batch = nodes * rounds
    return {
        "nodes": nodes, "rounds": rounds, "samples": samples_total,
        "series_add_us_per_sample": t_series / samples_total * 1e6,
        "observe_us_per_sample": t_observe / samples_total * 1e6,
        "observe_us_per_node_batch": t_observe / per_batch * 1e6,
        "evaluate_ms_per_tick_max": max(eval_ticks) * 1e3,
        "evaluate_ms_per_tick_median": sorted(eval_ticks)[len(eval_ticks) // 2] * 1e3,
        "evaluate_us_per_evaluated_node": t_eval / max(1, engine.evaluated_total) * 1e6,
        "evaluated_nodes_total": engine.evaluated_total,
        "changes": changes_total, "faulty_nodes": len(faulty), "faulty_unhealthy": dbe,
        "dbe_detected_in_its_tick": detected, "dbe_tick_cpu_s": tick_cpu,
        "cpu_s_per_second_of_telemetry": (t_series + t_observe + t_eval) / rounds,
        "samples_per_cpu_second": samples_total / (t_series + t_observe + t_eval),
    }


def fill(store_add: Any, nodes: int, seconds: int, seed: int) -> None:
    rng = random.Random(seed)
    data = {f"m{i}": make_node(rng) for i in range(nodes)}
    for t in range(seconds):
        for n, samples in data.items():
            step(samples, float(t), rng)
            store_add(n, samples)


def store_bytes(store: SeriesStore) -> int:
    """Bytes the store holds, object by object (sys.getsizeof; the float objects in each ring's slots too)."""
    total = sys.getsizeof(store._nodes)
    for per in store._nodes.values():
        total += sys.getsizeof(per)
        for key, ring in per.items():
            total += (sys.getsizeof(key) + sys.getsizeof(ring) + sys.getsizeof(ring.buf) + sys.getsizeof(ring.cbuf)
                      + 4 * 24)
    return total


def naive_bytes(naive: dict[Any, deque[tuple[float, float]]]) -> int:
    total = sys.getsizeof(naive)
    for key, d in naive.items():
        total += sys.getsizeof(key) + sys.getsizeof(d) + len(d) * (sys.getsizeof((1.0, 2.0)) + 2 * 24)
    return total


def bench_memory(nodes: int, seconds: int, seed: int) -> dict[str, Any]:
    gc.collect()
    base = rss_mib()
    store = SeriesStore()
    c0 = time.process_time()
    fill(store.add_many, nodes, seconds, seed)
    ours_cpu = time.process_time() - c0
    gc.collect()
    ours_rss = rss_mib() - base
    ours = store_bytes(store) / 2**20
    nseries = store.series_count()
    stats = store.stats()
    del store
    gc.collect()

    naive: dict[tuple[str, str, int | None], deque[tuple[float, float]]] = {}

    def naive_add(node: str, samples: list[S]) -> None:
        for s in samples:
            key = (node, s.metric, s.gpu)
            d = naive.get(key)
            if d is None:
                d = naive[key] = deque(maxlen=600)
            d.append((s.ts, s.value))

    c0 = time.process_time()
    fill(naive_add, nodes, seconds, seed)
    naive_cpu = time.process_time() - c0
    theirs = naive_bytes(naive) / 2**20
    fleet_series = 10_000 * GPUS * len(FIELDS)
    return {
        "mem_nodes": nodes, "seconds_filled": seconds, "series": nseries,
        "series_mib": ours, "series_rss_delta_mib": ours_rss, "series_bytes_per_series": ours * 2**20 / nseries,
        "series_fill_cpu_s": ours_cpu,
        "series_buffer_bytes": stats["buffer_bytes"],
        "series_rss_gib_at_10k_nodes": ours * 2**20 / nseries * fleet_series / 2**30,
        "naive_mib": theirs, "naive_bytes_per_series": theirs * 2**20 / nseries,
        "naive_rss_gib_at_10k_nodes": theirs * 2**20 / nseries * fleet_series / 2**30,
        "naive_fill_cpu_s": naive_cpu,
    }


def bench_sensors(nodes: int = 50, polls: int = 1000) -> dict[str, Any]:
    """CPU per reading of a 503-sensor BMC poll: observe_sensors vs keying every reading afresh."""
    kinds = (("temperature", "GPU"), ("fan", "Intake"), ("voltage", None), ("power", "PowerSupply"))
    rows = [Reading.trusted({
        "id": f"Sensor_{i}", "name": f"Sensor {i}", "kind": kinds[i % 4][0], "value": 40.0 + i % 7, "units": None,
        "health": "OK", "state": "Enabled", "context": kinds[i % 4][1], "upper_critical": None, "upper_fatal": None,
        "lower_critical": None, "source": f"/redfish/v1/Chassis/HGX_Chassis_0/Sensors/Sensor_{i}"})
        for i in range(503)]
    ours, peer = HealthEngine(series=SeriesStore()), HealthEngine(series=SeriesStore())
    readings = SensorReadings(bmc="https://127.0.0.1", via="redfish", readings=rows)

    def fresh(node: str, ts: float) -> None:
        samples = [KeyedSample(f"redfish_{r.kind}", float(r.value or 0.0), ts, None,
                               {"sensor": r.id, **({"context": r.context} if r.context else {})}) for r in rows]
        assert peer.series is not None
        peer.series.add_many(node, samples)
        peer.observe_samples(node, samples, ts)

    out: dict[str, Any] = {"readings_per_poll": len(rows), "polls": polls}
    for name, fn in (("observe_sensors", lambda n, t: ours.observe_sensors(n, readings, t)), ("fresh_keys", fresh)):
        for i in range(nodes):  # first polls: the per-node keys and series are made
            fn(f"n{i}", 0.0)
        t0 = time.process_time()
        for i in range(polls):
            fn(f"n{i % nodes}", 10.0 + i)
        out[f"{name}_us_per_reading"] = (time.process_time() - t0) / polls / len(rows) * 1e6
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks health_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=8, help="simulated seconds of 1 Hz telemetry")
    ap.add_argument("--mem-nodes", type=int, default=100)
    ap.add_argument("--mem-seconds", type=int, default=720, help="long enough to fill both rings")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    mem = bench_memory(args.mem_nodes, args.mem_seconds, args.seed)
    sens = bench_sensors()
    eng = bench_engine(args.nodes, args.rounds, args.seed)
    per_s = GPUS * len(FIELDS) * 10_000
    print(f"health engine, {args.nodes} nodes x {GPUS} GPUs x {len(FIELDS)} fields at 1 Hz, {args.rounds} s "
          f"({eng['samples']:,} samples), one process (CPU time):")
    print(f"  series add_many        {eng['series_add_us_per_sample']:.2f} us/sample")
    print(f"  engine observe         {eng['observe_us_per_sample']:.2f} us/sample "
          f"({eng['observe_us_per_node_batch']:.0f} us per node batch incl. heartbeat)")
    print(f"  evaluate               median {eng['evaluate_ms_per_tick_median']:.1f} ms, max "
          f"{eng['evaluate_ms_per_tick_max']:.1f} ms per tick; {eng['evaluate_us_per_evaluated_node']:.0f} us per "
          f"re-derived node ({eng['evaluated_nodes_total']} re-derived, {eng['changes']} changes)")
    print(f"  faults                 {eng['faulty_unhealthy']}/{eng['faulty_nodes']} injected nodes unhealthy; "
          f"{eng['dbe_detected_in_its_tick']} DBEs reported by the evaluate() of the tick that carried them "
          f"(that tick: {eng['dbe_tick_cpu_s']:.2f} CPU-s for all nodes: series + observe + evaluate)")
    print(f"  total                  {eng['cpu_s_per_second_of_telemetry']:.2f} CPU-s per second of telemetry; "
          f"{eng['samples_per_cpu_second']:,.0f} samples per CPU-second "
          f"(10k nodes need {per_s / eng['samples_per_cpu_second']:.1f} cores)")
    print(f"BMC sensor poll, {sens['readings_per_poll']} readings (a DGX H100), {sens['polls']} polls:")
    print(f"  observe_sensors        {sens['observe_sensors_us_per_reading']:.2f} us/reading "
          f"({sens['observe_sensors_us_per_reading'] * sens['readings_per_poll'] / 1000:.2f} ms per poll)")
    print(f"  peer: keyed per poll   {sens['fresh_keys_us_per_reading']:.2f} us/reading; ratio "
          f"{sens['fresh_keys_us_per_reading'] / sens['observe_sensors_us_per_reading']:.1f}x")
    print(f"memory, {mem['mem_nodes']} nodes filled for {mem['seconds_filled']} s ({mem['series']:,} series):")
    print(f"  SeriesStore            {mem['series_bytes_per_series']:.0f} B/series -> "
          f"{mem['series_rss_gib_at_10k_nodes']:.2f} GiB at 10k nodes (1 min fine + 10 min coarse; "
          f"RSS grew {mem['series_rss_delta_mib']:.0f} MiB for {mem['series_mib']:.0f} MiB counted)")
    print(f"  peer: deque(600) naive {mem['naive_bytes_per_series']:.0f} B/series -> "
          f"{mem['naive_rss_gib_at_10k_nodes']:.2f} GiB at 10k nodes (10 min full resolution)")
    ratio = mem["naive_bytes_per_series"] / mem["series_bytes_per_series"]
    print(f"  ratio                  {ratio:.1f}x less memory; "
          f"fill CPU {mem['series_fill_cpu_s']:.1f} s vs naive {mem['naive_fill_cpu_s']:.1f} s")
    print(f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"engine": eng, "memory": mem, "sensors": sens}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

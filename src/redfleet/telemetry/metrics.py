"""Prometheus exposition of what serve holds (``GET /metrics``), following Prometheus naming conventions: a
``redfleet_`` prefix, base units in the name (``_celsius``, ``_watts``, ``_seconds``, ``_hertz``, ``_bytes``),
``_total`` for counters, labels for node/gpu/sensor.

Values are rendered from the in-memory series at scrape time (nothing is updated on the ingest hot path), so a
Prometheus server keeps the long history while serve keeps minutes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from redfleet.telemetry.hub import HEALTH_STATES, Hub

# DCGM field -> (prometheus name, help, scale to the base unit, counter?)
DCGM: dict[str, tuple[str, str, float, bool]] = {
    "DCGM_FI_DEV_GPU_TEMP": ("redfleet_gpu_temperature_celsius", "GPU temperature", 1.0, False),
    "DCGM_FI_DEV_MEMORY_TEMP": ("redfleet_gpu_memory_temperature_celsius", "GPU memory (HBM) temperature", 1.0,
                                False),
    "DCGM_FI_DEV_POWER_USAGE": ("redfleet_gpu_power_watts", "GPU power draw", 1.0, False),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("redfleet_gpu_energy_joules", "GPU energy since driver load (a counter)",
                                             1e-3, True),
    "DCGM_FI_DEV_SM_CLOCK": ("redfleet_gpu_sm_clock_hertz", "GPU SM clock", 1e6, False),
    "DCGM_FI_DEV_MEM_CLOCK": ("redfleet_gpu_memory_clock_hertz", "GPU memory clock", 1e6, False),
    "DCGM_FI_DEV_GPU_UTIL": ("redfleet_gpu_utilization_ratio", "GPU utilization", 0.01, False),
    "DCGM_FI_DEV_FB_USED": ("redfleet_gpu_framebuffer_used_bytes", "GPU framebuffer used", 1024.0 * 1024.0, False),
    "DCGM_FI_DEV_FB_FREE": ("redfleet_gpu_framebuffer_free_bytes", "GPU framebuffer free", 1024.0 * 1024.0, False),
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": ("redfleet_gpu_ecc_sbe_volatile_errors", "Single-bit ECC errors since boot",
                                      1.0, False),
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": ("redfleet_gpu_ecc_dbe_volatile_errors", "Double-bit ECC errors since boot",
                                      1.0, False),
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": ("redfleet_gpu_ecc_sbe_aggregate_errors", "Single-bit ECC errors, lifetime",
                                      1.0, False),
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": ("redfleet_gpu_ecc_dbe_aggregate_errors", "Double-bit ECC errors, lifetime",
                                      1.0, False),
    "DCGM_FI_DEV_XID_ERRORS": ("redfleet_gpu_last_xid", "Last Xid reported by the driver (sticky value)", 1.0, False),
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": ("redfleet_gpu_row_remap_failure", "Row remapping failed (1) or not (0)", 1.0,
                                      False),
    "DCGM_FI_DEV_ROW_REMAP_PENDING": ("redfleet_gpu_row_remap_pending", "Row remapping pending a reset", 1.0, False),
}
# BMC sensor kind -> (name, help)
BMC_KINDS: dict[str, tuple[str, str]] = {
    "temperature": ("redfleet_bmc_temperature_celsius", "Temperature sensor read from the BMC"),
    "fan": ("redfleet_bmc_fan_speed", "Fan speed read from the BMC (RPM or percent, see the units label)"),
    "power": ("redfleet_bmc_power_watts", "Power reading from the BMC"),
    "voltage": ("redfleet_bmc_voltage_volts", "Voltage reading from the BMC"),
    "current": ("redfleet_bmc_current_amperes", "Current reading from the BMC"),
    "energy": ("redfleet_bmc_energy_joules", "Energy reading from the BMC"),
    "humidity": ("redfleet_bmc_humidity_percent", "Humidity reading from the BMC"),
}
_BAD = re.compile(r"[^a-zA-Z0-9_]")


def prom_name(metric: str) -> tuple[str, str, float]:
    """(prometheus name, help, scale) for a series metric name."""
    if metric in DCGM:
        name, help_, scale, _ = DCGM[metric]
        return name, help_, scale
    if metric.startswith("redfish_"):
        kind = metric[8:]
        if kind in BMC_KINDS:
            name, help_ = BMC_KINDS[kind]
            return name, help_, 1.0
        return f"redfleet_bmc_{_BAD.sub('_', kind).lower()}", f"BMC reading of kind {kind}", 1.0
    if metric.startswith("DCGM_FI_"):
        return f"redfleet_dcgm_{_BAD.sub('_', metric[8:]).lower()}", f"DCGM field {metric}", 1.0
    return f"redfleet_inband_{_BAD.sub('_', metric).lower().removeprefix('redfleet_')}", f"in-band {metric}", 1.0


class HubCollector:
    """A prometheus_client collector over a :class:`Hub` (and, when given, its collector's state)."""

    def __init__(self, hub: Hub, collector: Any = None, series: str = "curated",
                 nodes: set[str] | None = None) -> None:
        if series not in SERIES_MODES:
            raise ValueError(f"series must be one of {', '.join(SERIES_MODES)}, not {series!r}")
        self.hub = hub
        self.collector = collector
        self.series = series
        self.only = nodes

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        health = GaugeMetricFamily("redfleet_node_health", "1 for the node's current health state",
                                   labels=["node", "state"])
        counts = dict.fromkeys(HEALTH_STATES, 0)
        bmc_up = GaugeMetricFamily("redfleet_bmc_up", "1 when the node's BMC answered its last poll",
                                   labels=["node"])
        agent_seen = GaugeMetricFamily("redfleet_agent_last_seen_timestamp_seconds",
                                       "When the node's in-band agent last pushed a batch", labels=["node"])
        for name, st in list(hub.nodes.items()):
            state = hub.health(name)["state"]
            counts[state] = counts.get(state, 0) + 1
            for s in HEALTH_STATES:
                health.add_metric([name, s], 1.0 if s == state else 0.0)
            if st.bmc_ok is not None:
                bmc_up.add_metric([name], 1.0 if st.bmc_ok else 0.0)
            if st.agent_seen is not None:
                agent_seen.add_metric([name], st.agent_seen)
        yield health
        yield bmc_up
        yield agent_seen
        nodes = GaugeMetricFamily("redfleet_nodes", "Nodes by health state", labels=["state"])
        for s, n in counts.items():
            nodes.add_metric([s], float(n))
        yield nodes
        yield CounterMetricFamily("redfleet_ingest_samples_total", "Samples taken in (agents and BMC polls)",
                                  value=hub.samples_total)
        yield CounterMetricFamily("redfleet_ingest_batches_total", "Agent batches accepted", value=hub.batches_total)
        yield CounterMetricFamily("redfleet_events_total", "Events taken in (Xid lines, BMC events)",
                                  value=hub.events_total)
        yield CounterMetricFamily("redfleet_health_changes_total", "Node health changes", value=hub.changes_total)
        yield CounterMetricFamily("redfleet_health_evaluation_seconds_total", "Time spent evaluating rules",
                                  value=hub.evaluate_seconds)
        if self.collector is not None:
            summ = self.collector.summary()
            g = GaugeMetricFamily("redfleet_collector_polls_in_flight", "BMC polls in flight")
            g.add_metric([], float(summ["in_flight"]))
            yield g
            g = GaugeMetricFamily("redfleet_collector_backed_off_nodes", "BMCs polled slower (slow or throttling)")
            g.add_metric([], float(summ["backed_off"]))
            yield g
            g = GaugeMetricFamily("redfleet_collector_failing_nodes", "BMCs whose last poll failed")
            g.add_metric([], float(summ["failing"]))
            yield g
        if self.series != "none":
            yield from self._series()

    def _series(self) -> Iterator[Metric]:
        series = self.hub.series
        families: dict[str, GaugeMetricFamily] = {}
        curated = self.series == "curated"
        for node in series.nodes():
            if self.only is not None and node not in self.only:
                continue
            for key in series.keys(node):
                if curated and key.metric not in DCGM and not key.metric.startswith("redfish_"):
                    continue
                latest = series.latest(node, key.metric, gpu=key.gpu, labels=key.labels_dict)
                if latest is None:
                    continue
                name, help_, scale = prom_name(key.metric)
                lab = dict(key.labels)
                if key.metric.startswith("redfish_"):
                    lab = {"sensor": lab.get("sensor", ""), "context": lab.get("context", "")}
                extra = [k for k in lab if k not in ("node", "gpu")]
                labels = ["node", *(["gpu"] if key.gpu is not None else []), *extra]
                fam_key = name + "|" + ",".join(labels)
                fam = families.get(fam_key)
                if fam is None:
                    if any(f.name == name for f in families.values()):
                        continue  # same name with other labels would break the exposition; keep the first shape
                    fam = families[fam_key] = GaugeMetricFamily(name, help_, labels=labels)
                values = [node, *([str(key.gpu)] if key.gpu is not None else []),
                          *(lab[k] for k in extra)]
                fam.add_metric(values, latest[1] * scale)
        yield from families.values()


SERIES_MODES = ("curated", "all", "none")


def render(hub: Hub, collector: Any = None, *, series: str = "curated", nodes: set[str] | None = None,
           extra: tuple[Any, ...] = ()) -> bytes:
    """The exposition. ``series``: "curated" (GPU fields with a Prometheus name above + every BMC sensor; default),
    "all" (every in-band field too), "none" (fleet and health metrics only). ``nodes``: only these nodes' series
    (a big fleet is better scraped in slices: ``/metrics?rack=...``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub, collector, series=series, nodes=nodes))
    for c in extra:  # other areas' collectors (remediation)
        registry.register(c)
    return generate_latest(registry)

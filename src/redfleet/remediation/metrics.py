"""Prometheus metrics of remediation: MTTR and per-phase durations (histograms over the workflows this serve
finished), workflows by state, the switches. Collected at scrape time from the controller's figures."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


def _histogram(name: str, doc: str, values: Iterable[float], labels: list[str] | None = None,
               label_values: list[str] | None = None, into: HistogramMetricFamily | None = None
               ) -> HistogramMetricFamily:
    h = into or HistogramMetricFamily(name, doc, labels=labels)
    vals = list(values)
    buckets = [(str(b), float(sum(1 for v in vals if v <= b))) for b in BUCKETS]
    buckets.append(("+Inf", float(len(vals))))
    h.add_metric(label_values or [], buckets, sum_value=float(sum(vals)))
    return h


class RemediationCollector:
    def __init__(self, controller: Any) -> None:
        self.c = controller

    def collect(self) -> Iterator[Metric]:
        c = self.c
        yield _histogram("redfleet_remediation_duration_seconds",
                         "Fault detected to workflow finished (MTTR), workflows finished by this serve", c.mttr)
        phases = HistogramMetricFamily("redfleet_remediation_phase_duration_seconds",
                                       "Time spent in each workflow phase", labels=["phase"])
        for phase, vals in c.phase_seconds.items():
            _histogram("", "", vals, label_values=[phase], into=phases)
        yield phases
        active = GaugeMetricFamily("redfleet_remediations_active", "Open workflows by state", labels=["state"])
        states = list(c.open_states().values())
        for s in ("running", "waiting_approval", "paused"):
            active.add_metric([s], float(states.count(s)))
        yield active
        done = CounterMetricFamily("redfleet_remediations_finished", "Workflows finished by outcome",
                                   labels=["outcome"])
        for s in ("succeeded", "decommissioned", "failed"):
            done.add_metric([s], float(c.outcomes.get(s, 0)))
        yield done
        yield GaugeMetricFamily("redfleet_remediation_breaker_tripped", "1 while the circuit breaker is tripped",
                                value=1.0 if c.breaker is not None else 0.0)
        yield GaugeMetricFamily("redfleet_remediation_paused", "1 while automation is paused by an operator",
                                value=1.0 if c.paused is not None else 0.0)
        yield GaugeMetricFamily("redfleet_remediations_deferred", "Nodes waiting for a slot (caps, pause, breaker)",
                                value=float(len(c.deferred)))

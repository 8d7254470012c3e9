"""What NodeModel keeps between instants (job slots, noise lattice points, per-instant values) changes no value."""

from __future__ import annotations

import random

from redfleet.sim.telemetry import ON, Conditions, NodeModel, fbm, load, smooth_noise, u01


def test_kept_values_are_the_computed_ones():
    rng = random.Random(5)
    hot = Conditions(hot_gpus=frozenset({1}), failed_fans=frozenset({0}), inlet_offset=12.0)
    for seed, name in ((1, "node-00001"), (7, "node-04242"), (2**40 + 3, "gpu-a17")):
        m = NodeModel(seed, name)
        times = sorted(rng.uniform(0, 86_400 * 20) for _ in range(150))
        times += [t + d for t in times[:40] for d in (0.001, 0.5, 3.1, 7.0, 19.9, 20.5)]  # near lattice/slot edges
        for t in times:
            c = hot if rng.random() < 0.2 else ON
            assert m.load(t, c) == load(seed & (2**64 - 1), m.node, t)
            rack = 3.0 * (u01(m.seed, m.node, 0x1A) - 0.5)
            assert m.inlet(t, c) == 22.0 + rack + 1.5 * fbm(m.seed, m.node ^ 0x1A1, t, 1800.0) + c.inlet_offset
            for key, period in ((0x6000, 11.0), (0x7400 + 3, 4.0), (12345, 17.0)):
                assert m._noise(m.node ^ key, t, period) == smooth_noise(m.seed, m.node ^ key, t, period)
            for g in range(8):  # the GPU temperature, once through reading() and once directly
                direct = NodeModel(seed, name).gpu_temp(g, t, c)
                assert m.reading("gpu_temp", t, c, g, 5) == direct == m.gpu_temp(g, t, c)
            assert m.reading("gpu_temp", t, c, None, 3) == max(m.gpu_temp(g, t, c) for g in range(8))
            assert m.fan_ratio(t, c, 2) == NodeModel(seed, name).fan_ratio(t, c, 2)
            assert m.power_ratio(t, c) == NodeModel(seed, name).power_ratio(t, c)

"""Per-request latency drawn from a distribution: ``const:20ms``, ``uniform:5ms-50ms``, ``lognormal:50ms,0.5``
(median, sigma), ``exp:30ms`` (mean). Units ``ms`` or ``s`` (default ms). Delays are real time (not scaled)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


def _dur(text: str) -> float:
    text = text.strip().lower()
    if text.endswith("ms"):
        return float(text[:-2]) / 1000.0
    if text.endswith("s"):
        return float(text[:-1])
    return float(text) / 1000.0


@dataclass(frozen=True)
class LatencySpec:
    kind: str  # const | uniform | lognormal | exp
    a: float
    b: float = 0.0

    @classmethod
    def parse(cls, spec: str | float | LatencySpec) -> LatencySpec:
        if isinstance(spec, LatencySpec):
            return spec
        if isinstance(spec, (int, float)):
            return cls("const", float(spec))
        kind, _, args = spec.partition(":")
        kind = kind.strip().lower()
        if not args:
            return cls("const", _dur(kind))
        if kind == "const":
            return cls("const", _dur(args))
        if kind == "uniform":
            lo, _, hi = args.partition("-")
            return cls("uniform", _dur(lo), _dur(hi or lo))
        if kind == "lognormal":
            median, _, sigma = args.partition(",")
            return cls("lognormal", _dur(median), float(sigma or 0.5))
        if kind in ("exp", "exponential"):
            return cls("exp", _dur(args))
        raise ValueError(f"unknown latency distribution {spec!r} (const:, uniform:, lognormal:, exp:)")

    def sample(self, rng: random.Random) -> float:
        if self.kind == "const":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "lognormal":
            return self.a * math.exp(rng.gauss(0.0, self.b))
        return rng.expovariate(1.0 / self.a) if self.a > 0 else 0.0

"""Live telemetry for simulated nodes, computed rather than stored.

Every reading is a pure function of ``(seed, node, sensor, t)``: smooth value noise plus a per-node load cycle
(jobs that start, run at a level and stop), so nothing but a few numbers per node is kept in memory and two runs
with the same ``--seed`` give the same readings at the same simulated time.

The model is deliberately simple physics: inlet air sets the floor, load drives GPU/CPU power and heat, fans
follow the hottest demand, power follows load. Captured readings in a flavor's template are used as the
reference point of each sensor (``value = captured + model(t) - model(reference)`` for temperatures, a ratio for
fans and power), so a Dell keeps reading like a Dell and an HGX like an HGX.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from typing import Any

_M64 = 0xFFFFFFFFFFFFFFFF
_INV64 = 1.0 / 18446744073709551616.0


def mix(x: int) -> int:
    """splitmix64 finaliser: a fast, well-spread 64-bit integer hash."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def key_of(text: str) -> int:
    """A stable integer key for a name (node name, sensor URI); stable across processes, unlike hash()."""
    return zlib.crc32(text.encode()) | (zlib.adler32(text.encode()) << 32)


def u01(*parts: int) -> float:
    """A deterministic uniform number in [0, 1) from integer parts."""
    h = 0
    for p in parts:
        h = mix(h ^ (p & _M64))
    return h * _INV64


def smooth_noise(seed: int, key: int, t: float, period: float) -> float:
    """Value noise in [-1, 1], smooth in t (cosine interpolation between hashed lattice points ``period`` apart)."""
    x = t / period
    i = math.floor(x)
    f = x - i
    # u01(seed, key, i) and u01(seed, key, i + 1), sharing the hash of (seed, key): the hottest code of a Sensors
    # read (every GPU, fan and voltage has its own noise)
    h = mix(mix(seed & _M64) ^ (key & _M64))
    a = mix(h ^ (i & _M64)) * _INV64 * 2.0 - 1.0
    b = mix(h ^ ((i + 1) & _M64)) * _INV64 * 2.0 - 1.0
    w = (1.0 - math.cos(f * math.pi)) * 0.5
    return a + (b - a) * w


def fbm(seed: int, key: int, t: float, period: float) -> float:
    """Two octaves of smooth noise, in [-1, 1]."""
    return (smooth_noise(seed, key, t, period) * 0.7 + smooth_noise(seed, key ^ 0x5A5A, t, period / 4.0) * 0.3)


# --- per-node load cycle -------------------------------------------------------------------------------------------

_LOAD_SALT = 0x10AD


def _slot_len(seed: int, node: int) -> float:
    # each node has its own job length: 5 to 25 minutes of simulated time
    return 300.0 + 1200.0 * u01(seed, node, _LOAD_SALT, 1)


def _slot_level(seed: int, node: int, k: int) -> float:
    if u01(seed, node, _LOAD_SALT, 2, k) < 0.25:
        return 0.03  # idle between jobs
    return 0.55 + 0.45 * u01(seed, node, _LOAD_SALT, 3, k)


def load(seed: int, node: int, t: float) -> float:
    """Host load in [0, 1] at simulated time t: a job level per slot, ramped over 20 s at slot edges, plus jitter."""
    slot = _slot_len(seed, node)
    x = t / slot
    k = math.floor(x)
    into = (x - k) * slot
    level = _slot_level(seed, node, k)
    ramp = 20.0
    if into < ramp:
        prev = _slot_level(seed, node, k - 1)
        w = into / ramp
        w = w * w * (3.0 - 2.0 * w)
        level = prev + (level - prev) * w
    level += 0.04 * smooth_noise(seed, node ^ _LOAD_SALT, t, 7.0)
    return min(1.0, max(0.0, level))


def mean_load(seed: int, node: int) -> float:
    """The long-run mean of ``load`` (used to integrate energy counters without storing history)."""
    return 0.25 * 0.03 + 0.75 * (0.55 + 0.45 * 0.5)


# --- sensor classification -----------------------------------------------------------------------------------------

#: Kinds of readings the model knows. Anything else is left as captured, with a little noise when numeric.
KINDS = (
    "inlet", "exhaust", "cpu_temp", "gpu_temp", "gpu_mem_temp", "dimm_temp", "board_temp", "psu_temp", "drive_temp",
    "fan", "sys_power", "gpu_power", "psu_power", "voltage", "current", "energy", "percent", "other",
)

_RE_INLET = re.compile(r"inlet|intake|ambient|front panel|\bair\b", re.I)
_RE_EXHAUST = re.compile(r"exhaust|outlet", re.I)
_RE_GPU = re.compile(r"gpu|sxm|hbm", re.I)
_RE_GPU_MEM = re.compile(r"dram|hbm|memory", re.I)
_RE_CPU = re.compile(r"cpu|processor|socket|\bp\d\b|vrm", re.I)
_RE_DIMM = re.compile(r"dimm|memory", re.I)
_RE_PSU = re.compile(r"\bps\d|psu|power ?supply|hsc", re.I)
_RE_DRIVE = re.compile(r"ssd|nvme|drive|disk|m\.?2|u\.?2", re.I)
_RE_ENERGY = re.compile(r"energy", re.I)
_RE_NOT_AIR = re.compile(r"board|mb|vr|pcb|pch|nic|cx\d|retimer|nvs|switch|_sw|pex|pdb|osfp|qsfp|ibc|intb|nm_|fpga|hsc",
                         re.I)
_RE_MARGIN = re.compile(r"tlimit|margin|headroom|threshold", re.I)
_RE_TOTAL_POWER = re.compile(r"total|system|platform|chassis|input|consum|node|server", re.I)


def classify(name: str, context: str | None = None, reading_type: str | None = None, units: str | None = None) -> str:
    """The kind of a reading from what the BMC says about it: its name, PhysicalContext, ReadingType, units."""
    ctx = (context or "").lower()
    rt = (reading_type or "").lower()
    un = (units or "").lower()
    nm = name or ""
    if rt in ("energyjoules", "energykwh", "energywh") or _RE_ENERGY.search(nm):
        return "energy"
    if rt == "rotational" or un in ("rpm",) or ("fan" in nm.lower() and rt in ("", "percent", "rotational")):
        return "fan"
    if rt == "temperature" or un in ("cel", "celsius") or "temp" in nm.lower():
        # names first: some BMCs (AMI) say PhysicalContext "Intake" for every temperature
        if _RE_MARGIN.search(nm):
            return "other"
        if _RE_EXHAUST.search(nm):
            return "exhaust"
        if _RE_INLET.search(nm):
            return "inlet"
        if _RE_GPU.search(nm):
            return "gpu_mem_temp" if _RE_GPU_MEM.search(nm) or re.search(r"_M$", nm) else "gpu_temp"
        if _RE_DIMM.search(nm):
            return "dimm_temp"
        if _RE_CPU.search(nm):
            return "cpu_temp"
        if _RE_PSU.search(nm):
            return "psu_temp"
        if _RE_DRIVE.search(nm):
            return "drive_temp"
        if ctx == "exhaust":
            return "exhaust"
        if ctx in ("gpu", "gpusubsystem", "accelerator"):
            return "gpu_temp"
        if ctx == "memory":
            return "dimm_temp"
        if ctx in ("cpu", "cpusubsystem"):
            return "cpu_temp"
        if ctx == "powersupply":
            return "psu_temp"
        if ctx == "storagedevice":
            return "drive_temp"
        if ctx in ("intake", "room") and not _RE_NOT_AIR.search(nm):
            return "inlet"
        return "board_temp"
    if rt == "power" or un == "w":
        if ctx in ("gpu", "gpusubsystem", "accelerator") or _RE_GPU.search(nm):
            return "gpu_power"
        if ctx == "powersupply" or _RE_PSU.search(nm):
            return "psu_power"
        return "sys_power"
    if rt == "voltage" or un == "v":
        return "voltage"
    if rt == "current" or un == "a":
        return "current"
    if rt == "percent" or un == "%":
        return "percent"
    return "other"


# --- the node model ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Conditions:
    """What the model needs to know about a node at an instant (from its power state and active faults)."""

    powered: bool = True
    #: seconds since the host was last powered on (None when off)
    up_for: float | None = None
    #: seconds since the host was last powered off (None when on)
    off_for: float | None = None
    inlet_offset: float = 0.0  # inlet-overtemp adds here
    hot_gpus: frozenset[int] = frozenset()  # gpu-overtemp
    lost_gpus: frozenset[int] = frozenset()  # gpu-lost
    failed_fans: frozenset[int] = frozenset()
    failed_psus: frozenset[int] = frozenset()
    hung: bool = False  # OS hang: load stops, power stays


ON = Conditions()

# Reference state the captured readings are taken to represent (an idle-ish node in a 22 °C room).
_REF_LOAD = 0.1
_REF_INLET = 22.0
_OFF_TAU = 240.0  # seconds for temperatures to settle after power-off
_TEMP_KINDS = frozenset({"inlet", "exhaust", "cpu_temp", "dimm_temp", "board_temp", "psu_temp", "drive_temp",
                         "gpu_temp", "gpu_mem_temp"})
_GPU_TEMPS = frozenset({"gpu_temp", "gpu_mem_temp"})
# the kinds of reading whose model depends on the sensor's index (the others: one value per node, or per GPU)
_INDEXED = frozenset({"cpu_temp", "dimm_temp", "board_temp", "psu_temp", "drive_temp"})
_LATTICE_KEPT = 128  # noises whose lattice points a node keeps (its drivers, its GPUs'; bounded memory per node)
# (base, span) over inlet of each modelled temperature, at the reference state
_HEAT_BASE = {"exhaust": (9.0, 20.0), "cpu_temp": (14.0, 38.0), "dimm_temp": (9.0, 14.0),
              "board_temp": (10.0, 12.0), "psu_temp": (10.0, 12.0), "drive_temp": (10.0, 12.0),
              "gpu_temp": (8.0, 48.0), "gpu_mem_temp": (12.0, 50.0)}


class NodeModel:
    """Readings of one node. Holds two integers; everything else is computed."""

    __slots__ = ("_const", "_lat", "_levels", "_mc", "_mi", "_ml", "_mr", "_mt", "_mu", "node", "seed")

    def __init__(self, seed: int, node_name: str) -> None:
        self.seed = seed & _M64
        self.node = key_of(node_name)
        # the drivers (load, inlet, GPU utilisation) of the last instant asked: one GET of a Thermal resource
        # reads them a few hundred times at the same t
        self._mt: float | None = None
        self._mc: Conditions | None = None
        self._ml: float = 0.0
        self._mi: float = 0.0
        self._mu: dict[int, float] | None = None
        # modelled values of that instant, by (kind, gpu, index): a GPU's sensors share one temperature model
        self._mr: dict[tuple[str, int | None, int], float | None] = {}
        # what the node's noises and load cycle keep between instants (the same numbers, not recomputed):
        # (slot length, rack offset), the last job slots' levels, the lattice points of recent noises
        self._const: tuple[float, float] | None = None
        self._levels: tuple[int, float, float] | None = None
        self._lat: dict[int, tuple[float, int, float, float]] | None = None

    def _noise(self, key: int, t: float, period: float) -> float:
        """``smooth_noise(seed, key, t, period)``, the pair of lattice points around t kept for the next call."""
        x = t / period
        i = math.floor(x)
        f = x - i
        lat = self._lat
        if lat is None:
            lat = self._lat = {}
        hit = lat.get(key)
        if hit is not None and hit[0] == period and hit[1] == i:
            a, b = hit[2], hit[3]
        else:
            h = mix(mix(self.seed) ^ (key & _M64))
            a = mix(h ^ (i & _M64)) * _INV64 * 2.0 - 1.0
            b = mix(h ^ ((i + 1) & _M64)) * _INV64 * 2.0 - 1.0
            if len(lat) >= _LATTICE_KEPT:
                lat.clear()
            lat[key] = (period, i, a, b)
        w = (1.0 - math.cos(f * math.pi)) * 0.5
        return a + (b - a) * w

    def _load(self, t: float) -> float:
        """``load(seed, node, t)`` with the node's constants and the current job slots' levels kept."""
        const = self._const
        if const is None:
            const = self._const = (_slot_len(self.seed, self.node), 3.0 * (u01(self.seed, self.node, 0x1A) - 0.5))
        slot = const[0]
        x = t / slot
        k = math.floor(x)
        into = (x - k) * slot
        levels = self._levels
        if levels is None or levels[0] != k:
            levels = self._levels = (k, _slot_level(self.seed, self.node, k), _slot_level(self.seed, self.node, k - 1))
        level = levels[1]
        ramp = 20.0
        if into < ramp:
            prev = levels[2]
            w = into / ramp
            w = w * w * (3.0 - 2.0 * w)
            level = prev + (level - prev) * w
        level += 0.04 * self._noise(self.node ^ _LOAD_SALT, t, 7.0)
        return min(1.0, max(0.0, level))

    def _at(self, t: float, c: Conditions) -> None:
        if self._mt == t and self._mc is c:
            return
        self._mt = t
        self._mc = c
        self._mu = None
        if self._mr:
            self._mr = {}
        if not c.powered or c.hung:
            self._ml = 0.0
        else:
            lv = self._load(t)
            if c.up_for is not None and c.up_for < 180.0:
                lv *= c.up_for / 180.0  # jobs come back after boot
            self._ml = lv
        if self._const is None:
            self._load(t)
        rack = self._const[1]  # type: ignore[index]
        # fbm(seed, node ^ 0x1A1, t, 1800.0)
        key = self.node ^ 0x1A1
        drift = self._noise(key, t, 1800.0) * 0.7 + self._noise(key ^ 0x5A5A, t, 450.0) * 0.3
        self._mi = 22.0 + rack + 1.5 * drift + c.inlet_offset

    # -- drivers --
    def load(self, t: float, c: Conditions = ON) -> float:
        self._at(t, c)
        return self._ml

    def inlet(self, t: float, c: Conditions = ON) -> float:
        self._at(t, c)
        return self._mi

    def gpu_util(self, gpu: int, t: float, c: Conditions = ON) -> float:
        if gpu in c.lost_gpus:
            return 0.0
        self._at(t, c)
        mu = self._mu
        if mu is None:
            mu = self._mu = {}
        hit = mu.get(gpu)
        if hit is not None:
            return hit
        lv = self._ml
        if lv <= 0.05:
            u = max(0.0, lv)
        else:
            u = min(1.0, max(0.0, lv * (0.92 + 0.08 * self._noise(self.node ^ (gpu + 1) * 0x9, t, 5.0))))
        mu[gpu] = u
        return u

    def _heat(self, base: float, span: float, lv: float, key: int, t: float, c: Conditions, jitter: float) -> float:
        """A component temperature: inlet + base + span·load, relaxing to inlet after power-off."""
        inlet = self.inlet(t, c)
        running = inlet + base + span * lv + jitter * self._noise(self.node ^ key, t, 11.0)
        if c.powered:
            return running
        # exponential settle from the last running temperature (taken at idle load) toward inlet + 1
        off = c.off_for or 0.0
        last = inlet + base + span * 0.1
        settled = inlet + 1.0
        return settled + (last - settled) * math.exp(-off / _OFF_TAU)

    def gpu_temp(self, gpu: int, t: float, c: Conditions = ON) -> float:
        self._at(t, c)
        key = ("~gpu_temp", gpu, 0)
        hit = self._mr.get(key)
        if hit is None:
            hit = self._mr[key] = self._gpu_temp(gpu, t, c)
        return hit

    def _gpu_temp(self, gpu: int, t: float, c: Conditions) -> float:
        v = self._heat(8.0, 48.0, self.gpu_util(gpu, t, c), 0x6000 + gpu, t, c, 1.2)
        if gpu in c.hot_gpus and c.powered:
            v = max(v, 92.0 + 2.0 * self._noise(self.node ^ (0x6100 + gpu), t, 9.0))
        return v

    def gpu_mem_temp(self, gpu: int, t: float, c: Conditions = ON) -> float:
        return self.gpu_temp(gpu, t, c) + 4.0 + 2.0 * self.gpu_util(gpu, t, c)

    def gpu_power(self, gpu: int, t: float, c: Conditions = ON, tdp: float = 700.0) -> float:
        if not c.powered or gpu in c.lost_gpus:
            return 0.0
        idle = max(30.0, 0.1 * tdp)
        u = self.gpu_util(gpu, t, c)
        p = idle + (0.88 * tdp - idle) * u + 0.02 * tdp * self._noise(self.node ^ (0x6200 + gpu), t, 3.0)
        if gpu in c.hot_gpus:
            p *= 0.6  # thermal throttling
        return max(idle * 0.8, p)

    def cpu_temp(self, t: float, c: Conditions = ON, which: int = 0) -> float:
        return self._heat(14.0, 38.0, self.load(t, c), 0x7000 + which, t, c, 1.5)

    def dimm_temp(self, t: float, c: Conditions = ON, which: int = 0) -> float:
        return self._heat(9.0, 14.0, self.load(t, c), 0x7100 + which, t, c, 0.8)

    def board_temp(self, t: float, c: Conditions = ON, which: int = 0) -> float:
        return self._heat(10.0, 12.0, self.load(t, c), 0x7200 + which, t, c, 0.7)

    def exhaust(self, t: float, c: Conditions = ON) -> float:
        return self._heat(9.0, 20.0, self.load(t, c), 0x7300, t, c, 0.8)

    def fan_ratio(self, t: float, c: Conditions = ON, fan: int = 0) -> float:
        """Fan speed relative to the reference state (1.0 = as captured)."""
        self._at(t, c)
        key = ("~fan", None, fan)
        hit = self._mr.get(key)
        if hit is None:
            hit = self._mr[key] = self._fan_ratio(t, c, fan)
        return hit

    def _fan_ratio(self, t: float, c: Conditions, fan: int) -> float:
        if not c.powered:
            return 0.0
        if fan in c.failed_fans:
            return 0.0
        demand = max(self.load(t, c), (self.inlet(t, c) - 20.0) / 20.0, 0.9 if c.hot_gpus else 0.0)
        ref = max(0.3, (_REF_INLET - 20.0) / 20.0)
        # remaining fans speed up when one has failed
        boost = 1.25 if c.failed_fans else 1.0
        r = (0.8 + 0.5 * demand) / (0.8 + 0.5 * ref) * boost
        return max(0.3, r * (1.0 + 0.02 * self._noise(self.node ^ (0x7400 + fan), t, 4.0)))

    def power_ratio(self, t: float, c: Conditions = ON) -> float:
        """Whole-node power relative to the reference state."""
        self._at(t, c)
        hit = self._mr.get(("~power", None, 0))
        if hit is None:
            hit = self._mr[("~power", None, 0)] = self._power_ratio(t, c)
        return hit

    def _power_ratio(self, t: float, c: Conditions) -> float:
        if not c.powered:
            return 0.03  # standby: BMC, fans off
        lv = self.load(t, c)
        r = (0.35 + 0.65 * lv) / (0.35 + 0.65 * _REF_LOAD)
        return r * (1.0 + 0.015 * self._noise(self.node ^ 0x7500, t, 3.0))

    def jitter(self, key: int, t: float, amount: float) -> float:
        return amount * self._noise(self.node ^ key, t, 13.0)

    def energy_joules(self, t: float, watts_ref: float, since: float) -> float:
        """Energy used between simulated times ``since`` and ``t`` at a mean power of ``watts_ref``·mean ratio.

        Monotonic in t (the wobble's derivative is smaller than the mean), deterministic, no history kept.
        """
        if t <= since:
            return 0.0
        ml = mean_load(self.seed, self.node)
        mean_w = watts_ref * (0.35 + 0.65 * ml) / (0.35 + 0.65 * _REF_LOAD)
        period = 600.0
        wobble = 0.3 * mean_w * period / (2 * math.pi)
        phase = u01(self.seed, self.node, 0xE) * 2 * math.pi
        return mean_w * (t - since) + wobble * (math.sin(2 * math.pi * t / period + phase) -
                                                math.sin(2 * math.pi * since / period + phase))

    def counter(self, key: int, t: float, since: float, rate_per_hour: float) -> int:
        """A monotonic event counter (e.g. correctable ECC errors): floor of a per-node Poisson-ish rate.

        Most devices count nothing: only one in ten gets a non-zero background rate.
        """
        if t <= since or rate_per_hour <= 0:
            return 0
        if u01(self.seed, self.node, key, 0xC) > 0.1:
            return 0
        r = rate_per_hour * (0.2 + 1.6 * u01(self.seed, self.node, key, 0xD)) / 3600.0
        return int((t - since) * r)

    def reading(self, kind: str, t: float, c: Conditions = ON, gpu: int | None = None, index: int = 0) -> float | None:
        """The modelled absolute value of a kind of reading (temperatures in °C), or None when not modelled."""
        self._at(t, c)
        key = (kind, gpu, index if kind in _INDEXED else 0)
        memo = self._mr
        if key in memo:
            return memo[key]
        value = memo[key] = self._reading(kind, t, c, gpu, index)
        return value

    def _reading(self, kind: str, t: float, c: Conditions, gpu: int | None, index: int) -> float | None:
        if kind == "inlet":
            return self.inlet(t, c)
        if kind == "exhaust":
            return self.exhaust(t, c)
        if kind == "cpu_temp":
            return self.cpu_temp(t, c, index)
        if kind == "dimm_temp":
            return self.dimm_temp(t, c, index)
        if kind in ("board_temp", "psu_temp", "drive_temp"):
            return self.board_temp(t, c, index)
        if kind == "gpu_temp":
            if gpu is None:
                return max((self.gpu_temp(g, t, c) for g in range(8)), default=None)
            return self.gpu_temp(gpu, t, c)
        if kind == "gpu_mem_temp":
            if gpu is None:
                return max((self.gpu_mem_temp(g, t, c) for g in range(8)), default=None)
            return self.gpu_mem_temp(gpu, t, c)
        return None

    def reference(self, kind: str, gpu: int | None = None, index: int = 0) -> float | None:
        """The model's value of a kind at the reference state (what a captured reading is taken to represent)."""
        if kind == "inlet":
            return _REF_INLET
        base = _HEAT_BASE.get(kind)
        if base is None:
            return None
        return _REF_INLET + base[0] + base[1] * _REF_LOAD


def adjust(model: NodeModel, kind: str, captured: float | int | None, t: float, c: Conditions = ON,
           gpu: int | None = None, index: int = 0, key: int = 0, tdp: float = 700.0) -> float | None:
    """A captured reading moved to simulated time t according to its kind. None stays None (absent sensor)."""
    if captured is None or isinstance(captured, bool) or not isinstance(captured, (int, float)):
        return captured
    cap = float(captured)
    if kind in _TEMP_KINDS:
        now = model.reading(kind, t, c, gpu, index)
        if gpu is not None and kind in _GPU_TEMPS and now is not None:
            # a GPU's own sensors: the model is absolute (H100: ~30 °C idle, ~75 °C busy); captured GPU readings
            # are as often limits or margins as temperatures
            return round(now, 2)
        ref = model.reference(kind, gpu, index)
        if now is None or ref is None:
            return cap
        if cap <= 0:
            cap = ref
        return round(cap + (now - ref), 2)
    if kind == "fan":
        return float(round(cap * model.fan_ratio(t, c, index)))
    if kind == "gpu_power":
        if gpu is None:
            return round(cap * model.power_ratio(t, c), 3)
        return round(model.gpu_power(gpu, t, c, tdp), 3)
    if kind in ("sys_power", "psu_power", "current"):
        return round(cap * model.power_ratio(t, c), 3)
    if kind == "voltage":
        return round(cap * (1.0 + 0.004 * model._noise(model.node ^ key, t, 17.0)), 3)
    if kind == "percent":
        return cap
    return cap


def make_fleet_dynamics(fleet: Any) -> Any:
    """The simulator core's entry point to the dynamic side (see ``redfleet.sim.hooks.load_fleet_dynamics``)."""
    from redfleet.sim.dyn_node import FleetDyn

    return FleetDyn(fleet)

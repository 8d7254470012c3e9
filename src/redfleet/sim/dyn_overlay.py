"""Live values and fault effects written onto a private copy of a resource before it is served.

One function per kind of document (by ``@odata.type``); each reads the node's model at simulated time ``t`` under
its current :class:`~redfleet.sim.telemetry.Conditions` and changes only the readings and Status it knows, so every
vendor's OEM sections stay as captured.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redfleet.sim.telemetry import Conditions, adjust, key_of

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.sim.dyn_node import NodeDyn

Doc = dict[str, Any]
Handler = Callable[["NodeDyn", str, Doc, float, Conditions], "Doc | None"]

_TEMPS = ("inlet", "exhaust", "cpu_temp", "dimm_temp", "board_temp", "psu_temp", "drive_temp", "gpu_temp",
          "gpu_mem_temp")


def _status(obj: Doc, health: str | None = None, state: str | None = None) -> None:
    st = obj.get("Status")
    if not isinstance(st, dict):
        st = {}
        obj["Status"] = st
    if health is not None:
        if "Health" in st or health != "OK":
            st["Health"] = health
        if "HealthRollup" in st:
            st["HealthRollup"] = health
    if state is not None:
        st["State"] = state


def _worse(a: str, b: str) -> str:
    rank = {"OK": 0, "Warning": 1, "Critical": 2}
    return a if rank.get(a, 0) >= rank.get(b, 0) else b


def _reading(nd: NodeDyn, key: str, name: str, ctx: str | None, rtype: str | None, units: str | None,
             value: Any, t: float, c: Conditions, related: str = "") -> tuple[Any, str, int | None]:
    """(new value, kind, gpu) for one reading."""
    kind, gpu, ordinal = nd.flv.ix.sensor_facts(key, name, ctx, rtype, units, related)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return value, kind, gpu
    if kind.startswith("gpu") and gpu is not None:
        if gpu in c.lost_gpus:
            return None, kind, gpu
        tdp = nd.flv.ix.gpus[gpu].tdp if gpu < len(nd.flv.ix.gpus) else 700.0
    else:
        tdp = 700.0
    if kind == "energy":
        return round(float(value) + _energy(nd, t, rtype, units), 3), kind, gpu
    new = adjust(nd.model, kind, value, t, c, gpu, ordinal, key_of(key) & 0xFFFF, tdp)
    if isinstance(value, int) and kind in _TEMPS and isinstance(new, float):
        new = round(new)
    return new, kind, gpu


def _energy(nd: NodeDyn, t: float, rtype: str | None, units: str | None) -> float:
    joules = nd.model.energy_joules(t, 500.0, 0.0)
    u = (units or rtype or "").lower()
    if "kwh" in u:
        return joules / 3.6e6
    if "wh" in u:
        return joules / 3600.0
    return joules


def _fan_failed(nd: NodeDyn, c: Conditions, index: int | None, name: str) -> bool:
    if not c.failed_fans:
        return False
    if index is not None and index in c.failed_fans:
        return True
    for i in c.failed_fans:
        if i < len(nd.flv.ix.fans) and nd.flv.ix.fans[i][2] == name:
            return True
    return False


def _upper_limits(obj: Doc) -> list[float]:
    """Every upper threshold the resource advertises (legacy Thermal keys and Sensor ``Thresholds``)."""
    out = [float(v) for k in ("UpperThresholdFatal", "UpperThresholdCritical", "UpperThresholdNonCritical")
           if isinstance(v := obj.get(k), (int, float))]
    th = obj.get("Thresholds")
    if isinstance(th, dict):
        for k in ("UpperFatal", "UpperCritical", "UpperCaution"):
            lim = th.get(k)
            if isinstance(lim, dict) and isinstance(lim.get("Reading"), (int, float)):
                out.append(float(lim["Reading"]))
    return out


def keep_healthy(obj: Doc, value: Any, kind: str) -> Any:
    """A healthy component stays inside its thresholds: only a fault pushes a reading over one.

    Captured readings sit close to some BMCs' caution limits (an HPE I/O-module sensor at 70 °C with a 75 °C
    caution), so the simulated load swing would otherwise raise alarms on a fleet with no fault at all, and every
    health rule downstream would learn to ignore them. Cumulative counters (energy) are not clamped."""
    if kind == "energy" or not isinstance(value, (int, float)):
        return value
    limits = [lim for lim in _upper_limits(obj) if lim > 0]
    if not limits:
        return value
    ceiling = min(limits) - 1.0
    if value > ceiling:
        return type(value)(ceiling) if isinstance(value, float) else int(ceiling)
    return value


def _threshold_health(obj: Doc, value: Any, health: str, kind: str = "") -> str:
    # Energy sensors are running totals; some AMI BMCs give them thresholds that any totals crosses in time.
    if not isinstance(value, (int, float)) or kind == "energy":
        return health
    for key, sev in (("UpperThresholdFatal", "Critical"), ("UpperThresholdCritical", "Critical"),
                     ("UpperThresholdNonCritical", "Warning")):
        lim = obj.get(key)
        if isinstance(lim, (int, float)) and value >= lim:
            return _worse(health, sev)
    th = obj.get("Thresholds")
    if isinstance(th, dict):
        for key, sev in (("UpperFatal", "Critical"), ("UpperCritical", "Critical"), ("UpperCaution", "Warning")):
            lim = (th.get(key) or {}).get("Reading") if isinstance(th.get(key), dict) else None
            if isinstance(lim, (int, float)) and value >= lim:
                return _worse(health, sev)
    return health


def _force_over(obj: Doc, value: Any, keys: tuple[str, ...] = ("UpperThresholdCritical",)) -> Any:
    """Make an over-temperature read above the part's own critical threshold when it has one."""
    if not isinstance(value, (int, float)):
        return value
    for k in keys:
        lim = obj.get(k)
        if isinstance(lim, (int, float)) and lim > 0 and value < lim + 2:
            return type(value)(lim + 3) if isinstance(value, int) else float(lim) + 3.0
    return value


# ---- legacy Thermal and Power ----------------------------------------------------------------------------------


def thermal(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    gpu_base = nd.flv.ix.gpu_of(path)
    for i, tm in enumerate(doc.get("Temperatures") or []):
        if not isinstance(tm, dict):
            continue
        name = str(tm.get("Name") or "")
        related = " ".join(str(r.get("@odata.id", "")) for r in tm.get("RelatedItem") or [] if isinstance(r, dict))
        key = f"{path}#T{i}"
        v, kind, gpu = _reading(nd, key, name, tm.get("PhysicalContext"), "Temperature", "Cel",
                                tm.get("ReadingCelsius"), t, c, related)
        if gpu is None and gpu_base is not None and kind.startswith("gpu"):
            gpu = gpu_base
        health = "OK"
        if kind == "inlet" and c.inlet_offset:
            v = _force_over(tm, v)
            health = "Warning"
        if kind == "gpu_temp" and (gpu in c.hot_gpus or (gpu is None and c.hot_gpus)):
            v = _force_over(tm, v)
            health = "Critical"
        if gpu is not None and gpu in c.lost_gpus:
            v = None
            _status(tm, "Critical", "Absent" if "Status" in tm else None)
        if health == "OK":
            v = keep_healthy(tm, v, kind)
        if "ReadingCelsius" in tm:
            tm["ReadingCelsius"] = v
        if v is not None and "Status" in tm:
            _status(tm, _threshold_health(tm, v, health))
    for i, fan in enumerate(doc.get("Fans") or []):
        if not isinstance(fan, dict):
            continue
        name = str(fan.get("Name") or fan.get("FanName") or "")
        units = fan.get("ReadingUnits") or "RPM"
        idx = i if path == (nd.flv.ix.fans[0][0] if nd.flv.ix.fans else None) else None
        failed = _fan_failed(nd, c, idx, name)
        v = fan.get("Reading")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if failed:
                v = 0
            elif str(units).lower() == "percent":
                v = min(100, round(v * nd.model.fan_ratio(t, c, i)))
            else:
                v = adjust(nd.model, "fan", v, t, c, None, i)
                v = int(v) if isinstance(v, float) else v
            fan["Reading"] = v
        if "CurrentReading" in fan and isinstance(fan["CurrentReading"], (int, float)):
            fan["CurrentReading"] = 0 if failed else fan.get("Reading", fan["CurrentReading"])
        if failed:
            _status(fan, "Critical")
    if c.failed_fans:
        for r in doc.get("Redundancy") or []:
            if isinstance(r, dict):
                _status(r, "Warning")
    return doc


def power(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    ratio = nd.model.power_ratio(t, c)
    for pc in doc.get("PowerControl") or []:
        if not isinstance(pc, dict):
            continue
        for k in ("PowerConsumedWatts",):
            v = pc.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                pc[k] = round(v * ratio) if isinstance(v, int) else round(v * ratio, 2)
        pm = pc.get("PowerMetrics")
        if isinstance(pm, dict):
            for k, f in (("AverageConsumedWatts", 1.0), ("MinConsumedWatts", 0.93), ("MaxConsumedWatts", 1.08)):
                v = pm.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    pm[k] = round(v * (nd.model.power_ratio(t - 30, c) * f if k != "AverageConsumedWatts"
                                       else ratio))
    psus = [p for p in doc.get("PowerSupplies") or [] if isinstance(p, dict)]
    n = len(psus)
    failed = {i for i in c.failed_psus if i < n}
    share = n / max(1, n - len(failed)) if failed else 1.0
    for i, ps in enumerate(psus):
        dead = i in failed
        for k in ("PowerOutputWatts", "PowerInputWatts", "LastPowerOutputWatts"):
            v = ps.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                ps[k] = 0 if dead else round(v * ratio * share, 1)
        if dead:
            _status(ps, "Critical")
            if isinstance(ps.get("LineInputVoltage"), (int, float)) and c.failed_psus:
                ps["LineInputVoltage"] = ps["LineInputVoltage"]
    if failed:
        for r in doc.get("Redundancy") or []:
            if isinstance(r, dict):
                _status(r, "Warning")
    for i, vo in enumerate(doc.get("Voltages") or []):
        if isinstance(vo, dict) and isinstance(vo.get("ReadingVolts"), (int, float)):
            vo["ReadingVolts"] = adjust(nd.model, "voltage", vo["ReadingVolts"], t, c, None, i,
                                        key_of(f"{path}#V{i}") & 0xFFFF)
    return doc


# ---- Sensor and the *Metrics resources ------------------------------------------------------------------------


def sensor(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc | None:
    name = str(doc.get("Name") or doc.get("Id") or "")
    related = " ".join(str(r.get("@odata.id", "")) for r in doc.get("RelatedItem") or [] if isinstance(r, dict))
    rtype = doc.get("ReadingType")
    v, kind, gpu = _reading(nd, path, name, doc.get("PhysicalContext"), rtype, doc.get("ReadingUnits"),
                            doc.get("Reading"), t, c, related)
    health = "OK"
    if kind == "fan":
        idx = nd.flv.fan_member.get(path)
        if _fan_failed(nd, c, idx, name) or _fan_failed(nd, c, None, name.replace(" ", "_")):
            v = 0.0 if isinstance(v, float) else 0
            health = "Critical"
    if kind == "inlet" and c.inlet_offset:
        v = _force_over_thresholds(doc, v)
        health = "Warning"
    if kind == "gpu_temp" and gpu is not None and gpu in c.hot_gpus:
        v = _force_over_thresholds(doc, v)
        health = "Critical"
    if health == "OK":
        v = keep_healthy(doc, v, kind)
    if "Reading" in doc:
        doc["Reading"] = v
    if gpu is not None and gpu in c.lost_gpus:
        _status(doc, "Critical", "UnavailableOffline" if "Conditions" in (doc.get("Status") or {}) else "Absent")
        return doc
    if "Status" in doc:
        _status(doc, _threshold_health(doc, v, health, kind))
    return doc


def _force_over_thresholds(doc: Doc, v: Any) -> Any:
    th = doc.get("Thresholds")
    if isinstance(th, dict) and isinstance(v, (int, float)):
        crit = th.get("UpperCritical")
        if isinstance(crit, dict) and isinstance(crit.get("Reading"), (int, float)) and v < crit["Reading"] + 2:
            return float(crit["Reading"]) + 3.0
    return v


def environment_metrics(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    gpu = nd.flv.ix.gpu_of(path)
    name = str(doc.get("Name") or "")
    for prop, rtype, units in (("TemperatureCelsius", "Temperature", "Cel"), ("PowerWatts", "Power", "W"),
                               ("EnergyJoules", "EnergyJoules", "J"), ("EnergykWh", "EnergykWh", "kWh"),
                               ("HumidityPercent", None, "%"), ("PowerLimitWatts", "Power", "W")):
        obj = doc.get(prop)
        if not isinstance(obj, dict) or "Reading" not in obj:
            continue
        src = str(obj.get("DataSourceUri") or "")
        label = f"{name} {prop} {src}"
        if gpu is not None and rtype == "Temperature":
            label = f"GPU {name} {src}"
        if prop == "PowerLimitWatts":
            if gpu is not None and gpu in c.lost_gpus:
                obj["Reading"] = None
            else:
                pw = doc.get("PowerWatts")
                if isinstance(pw, dict) and "Reading" in pw:
                    obj["Reading"] = pw["Reading"]
            continue
        key = f"{path}#{prop}"
        if rtype == "Power" and gpu is not None:
            v = None if gpu in c.lost_gpus else round(nd.model.gpu_power(gpu, t, c, nd.flv.ix.gpus[gpu].tdp), 3)
        else:
            v, _k, _g = _reading(nd, key, label, "GPU" if gpu is not None else None, rtype, units, obj.get("Reading"),
                                 t, c)
            if rtype == "Temperature" and gpu is not None:
                if gpu in c.lost_gpus:
                    v = None
                elif gpu in c.hot_gpus and isinstance(v, (int, float)):
                    v = max(v, 92.0)
        obj["Reading"] = v
    return doc


def processor_metrics(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    gpu = nd.flv.ix.gpu_of(path)
    if gpu is None:
        # a CPU: bandwidth and temperature follow load
        lv = nd.model.load(t, c)
        if isinstance(doc.get("BandwidthPercent"), (int, float)):
            doc["BandwidthPercent"] = round(100 * lv, 1)
        if isinstance(doc.get("TemperatureCelsius"), (int, float)):
            doc["TemperatureCelsius"] = round(nd.model.cpu_temp(t, c))
        return doc
    lost = gpu in c.lost_gpus
    g = nd.flv.ix.gpus[gpu]
    util = nd.model.gpu_util(gpu, t, c)
    if "BandwidthPercent" in doc:
        doc["BandwidthPercent"] = None if lost else round(100 * util, 1)
    if "OperatingSpeedMHz" in doc:
        doc["OperatingSpeedMHz"] = None if lost else int(345 + (1980 - 345) * min(1.0, util * 1.2))
    if "TemperatureCelsius" in doc:  # Dell's GPU metrics: flat numbers
        doc["TemperatureCelsius"] = None if lost else round(nd.model.gpu_temp(gpu, t, c))
    if "ConsumedPowerWatt" in doc:
        doc["ConsumedPowerWatt"] = None if lost else round(nd.model.gpu_power(gpu, t, c, g.tdp))
    ecc = nd.ecc(gpu, t)
    cache = doc.get("CacheMetricsTotal")
    if isinstance(cache, dict) and isinstance(cache.get("LifeTime"), dict):
        cache["LifeTime"]["CorrectableECCErrorCount"] = ecc["sbe_agg"]
        cache["LifeTime"]["UncorrectableECCErrorCount"] = ecc["dbe_agg"]
    pcie = doc.get("PCIeErrors")
    if isinstance(pcie, dict):
        for k in ("CorrectableErrorCount", "ReplayCount"):
            if isinstance(pcie.get(k), int):
                pcie[k] = pcie[k] + nd.model.counter(0xCE0 + gpu, t, 0.0, 6.0)
        if lost and isinstance(pcie.get("FatalErrorCount"), int):
            pcie["FatalErrorCount"] += 1
    oem = (doc.get("Oem") or {}).get("Nvidia")
    if isinstance(oem, dict):
        if "ThrottleReasons" in oem:
            oem["ThrottleReasons"] = (["HWThermalSlowdown", "SWThermalSlowdown"] if gpu in c.hot_gpus
                                      else (["SWPowerCap"] if util > 0.85 else ["NA"]))
        for k in ("PCIeRXBytes", "PCIeTXBytes"):
            if isinstance(oem.get(k), int):
                oem[k] = oem[k] + int(t * 2.0e8 * max(0.05, util))
    return doc


def memory_metrics(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    gpu = nd.flv.ix.gpu_of(path)
    if gpu is None:
        return dimm_metrics(nd, path, doc, t, c)
    ecc = nd.ecc(gpu, t)
    life = doc.get("LifeTime")
    if isinstance(life, dict):
        life["CorrectableECCErrorCount"] = ecc["sbe_agg"]
        life["UncorrectableECCErrorCount"] = ecc["dbe_agg"]
    cur = doc.get("CurrentPeriod")
    if isinstance(cur, dict):
        cur["CorrectableECCErrorCount"] = ecc["sbe_vol"]
        cur["UncorrectableECCErrorCount"] = ecc["dbe_vol"]
    util = nd.model.gpu_util(gpu, t, c)
    if "BandwidthPercent" in doc:
        doc["BandwidthPercent"] = None if gpu in c.lost_gpus else round(60 * util, 1)
    if "CapacityUtilizationPercent" in doc:
        doc["CapacityUtilizationPercent"] = None if gpu in c.lost_gpus else round(85 * util)
    return doc


def dimm_metrics(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    idx = nd.flv.dimm_of_metrics.get(path)
    if idx is None:
        return doc
    ce = nd.dimm_ce(idx, t)
    for period in ("LifeTime", "CurrentPeriod"):
        obj = doc.get(period)
        if isinstance(obj, dict) and "CorrectableECCErrorCount" in obj:
            obj["CorrectableECCErrorCount"] = int(obj.get("CorrectableECCErrorCount") or 0) + ce
    hi = doc.get("HealthData")
    if isinstance(hi, dict) and ce and "AlarmTrips" in hi and isinstance(hi["AlarmTrips"], dict):
        hi["AlarmTrips"]["CorrectableECCError"] = True
    return doc


def port_metrics(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    gpu = nd.flv.ix.gpu_of(path)
    if gpu is None:
        return doc
    util = nd.model.gpu_util(gpu, t, c)
    for k in ("RXBytes", "TXBytes"):
        if isinstance(doc.get(k), int):
            doc[k] = doc[k] + int(t * 5.0e9 * max(0.01, util))
    oem = (doc.get("Oem") or {}).get("Nvidia")
    if isinstance(oem, dict):
        err = oem.get("NVLinkErrors")
        if isinstance(err, dict):
            nv = nd.nvlink(gpu, t)
            # the errors land on one link of the GPU: the first port listed
            ports = nd.flv.ix.gpus[gpu].port_metrics
            if ports and path == ports[min(3, len(ports) - 1)]:
                err["DataCRCCount"] = int(err.get("DataCRCCount") or 0) + nv["crc_data"]
                err["FlitCRCCount"] = int(err.get("FlitCRCCount") or 0) + nv["crc_flit"]
                err["ReplayCount"] = int(err.get("ReplayCount") or 0) + nv["replay"]
                err["RecoveryCount"] = int(err.get("RecoveryCount") or 0) + nv["recovery"]
                if nd.has("nvlink", gpu):
                    err["RuntimeError"] = True
    return doc


def thermal_metrics(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    for i, r in enumerate(doc.get("TemperatureReadingsCelsius") or []):
        if not isinstance(r, dict):
            continue
        label = f"{r.get('DeviceName') or ''} {r.get('DataSourceUri') or ''}"
        v, kind, _gpu = _reading(nd, f"{path}#R{i}", label, None, "Temperature", "Cel", r.get("Reading"), t, c)
        if kind == "inlet" and c.inlet_offset and isinstance(v, (int, float)):
            v = max(v, 45.0)
        r["Reading"] = v
    for key in ("TemperatureSummaryCelsius",):
        summ = doc.get(key)
        if isinstance(summ, dict):
            for sub, kind in (("Intake", "inlet"), ("Exhaust", "exhaust"), ("Internal", "board_temp"),
                              ("Ambient", "inlet")):
                obj = summ.get(sub)
                if isinstance(obj, dict) and isinstance(obj.get("Reading"), (int, float)):
                    obj["Reading"] = adjust(nd.model, kind, obj["Reading"], t, c, None, 0, key_of(sub) & 0xFFFF)
    return doc


def fan(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    idx = nd.flv.fan_member.get(path)
    failed = _fan_failed(nd, c, idx, str(doc.get("Name") or ""))
    sp = doc.get("SpeedPercent")
    if isinstance(sp, dict):
        for k in ("Reading", "SpeedRPM"):
            v = sp.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if failed:
                    sp[k] = 0
                elif k == "Reading":
                    sp[k] = min(100.0, round(v * nd.model.fan_ratio(t, c, idx or 0), 1))
                else:
                    sp[k] = round(v * nd.model.fan_ratio(t, c, idx or 0))
    if failed:
        _status(doc, "Critical")
    return doc


def power_supply(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    idx = nd.flv.psu_member.get(path)
    if idx is None:
        base = path.rsplit("/Metrics", 1)[0]
        idx = nd.flv.psu_member.get(base)
    dead = idx is not None and idx in c.failed_psus
    ratio = nd.model.power_ratio(t, c)
    n = max(1, nd.flv.n_psus)
    share = n / max(1, n - len(c.failed_psus)) if c.failed_psus else 1.0
    for k in ("InputPowerWatts", "OutputPowerWatts", "InputCurrentAmps", "OutputPowerWatts"):
        obj = doc.get(k)
        if isinstance(obj, dict) and isinstance(obj.get("Reading"), (int, float)):
            obj["Reading"] = 0.0 if dead else round(obj["Reading"] * ratio * share, 2)
    if dead and not path.endswith("/Metrics"):
        _status(doc, "Critical")
    return doc


def subsystem(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    if (doc.get("@odata.type") or "").find("ThermalSubsystem") >= 0 and (c.failed_fans or c.inlet_offset):
        _status(doc, "Critical" if c.failed_fans else "Warning")
    if (doc.get("@odata.type") or "").find("PowerSubsystem") >= 0 and c.failed_psus:
        _status(doc, "Critical")
        cap = doc.get("CapacityWatts")
        if isinstance(cap, (int, float)):
            doc["CapacityWatts"] = cap
    return doc


def metric_report(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    values = doc.get("MetricValues")
    if not isinstance(values, list) or not values:
        return doc
    stamps: list[datetime.datetime | None] = []
    for mv in values:
        ts = mv.get("Timestamp") if isinstance(mv, dict) else None
        try:
            stamps.append(datetime.datetime.fromisoformat(str(ts).replace("Z", "+00:00")) if ts else None)
        except ValueError:
            stamps.append(None)
    latest = max((s for s in stamps if s is not None), default=None)
    now = datetime.datetime.now(datetime.UTC)
    scale = float(nd.node.fleet.config.time_scale or 1.0)
    for mv, st in zip(values, stamps, strict=False):
        if not isinstance(mv, dict):
            continue
        back = (latest - st).total_seconds() if (latest is not None and st is not None) else 0.0
        t_i = float(round(t - back * scale))  # one model instant per second: readings of a report share it
        if st is not None:
            mv["Timestamp"] = (now - datetime.timedelta(seconds=back)).isoformat(timespec="milliseconds").replace(
                "+00:00", "+00:00")
        prop = str(mv.get("MetricProperty") or "")
        raw = mv.get("MetricValue")
        try:
            num = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        desc = _metric_desc(nd, prop)
        v, _k, _g = _reading(nd, prop, desc[0], desc[1], desc[2], desc[3], num, t_i, c)
        if v is None:
            mv["MetricValue"] = None
            continue
        if isinstance(raw, str):
            decimals = len(raw.split(".", 1)[1]) if "." in raw else 0
            mv["MetricValue"] = f"{float(v):.{decimals}f}"
        else:
            mv["MetricValue"] = v
    return doc


_METRIC_DESC: dict[tuple[int, str], tuple[str, str | None, str | None, str | None]] = {}


def _metric_desc(nd: NodeDyn, prop: str) -> tuple[str, str | None, str | None, str | None]:
    """(name, PhysicalContext, ReadingType, units) of a MetricProperty, read once per flavor."""
    key = (id(nd.flv), prop)
    hit = _METRIC_DESC.get(key)
    if hit is not None:
        return hit
    uri, _, frag = prop.partition("#")
    target = nd.flv.ix.get(uri) or {}
    kind_hint: str | None
    units: str | None
    if frag:
        name = frag
        kind_hint = "Power" if "Watts" in frag else ("Temperature" if "Celsius" in frag else None)
        units = "W" if kind_hint == "Power" else None
    else:
        name = str(target.get("Name") or uri.rsplit("/", 1)[-1])
        kind_hint = target.get("ReadingType")
        units = target.get("ReadingUnits")
    if "PowerControl" in frag or ("Power" in uri and not frag and kind_hint is None):
        kind_hint, units = "Power", "W"
        name = name + " system"
    ctx = target.get("PhysicalContext")
    hit = (name, ctx if isinstance(ctx, str) else None, kind_hint, units)
    if len(_METRIC_DESC) < 100_000:
        _METRIC_DESC[key] = hit
    return hit


# ---- inventory and health ---------------------------------------------------------------------------------------


def gpu_resource(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc | None:
    gpu = nd.flv.ix.gpu_of(path)
    if gpu is None:
        return doc
    g = nd.flv.ix.gpus[gpu]
    if gpu in c.lost_gpus:
        if not g.baseboard:
            return None
        _status(doc, "Critical", "Absent")
        st = doc.get("Status")
        if isinstance(st, dict) and "Conditions" in st:
            st["Conditions"] = [{"Message": f"{g.id} is not reachable (fell off the bus).",
                                 "MessageId": "ResourceEvent.1.0.ResourceErrorsDetected",
                                 "MessageArgs": [f"{g.id} PCIe", "GPU fell off the bus"], "Severity": "Critical",
                                 "Timestamp": _now_iso()}]
        return doc
    health = nd.gpu_health(gpu)
    if health != "OK":
        _status(doc, health)
        st = doc.get("Status")
        if isinstance(st, dict) and "Conditions" in st:
            st["Conditions"] = [{"Message": _condition_text(g.id, f), "Severity": f.severity(),
                                 "MessageId": "ResourceEvent.1.0.ResourceErrorsDetected",
                                 "MessageArgs": [g.id, f.kind], "Timestamp": _now_iso()}
                                for f in nd.gpu_faults(gpu)]
    if "OperatingSpeedMHz" in doc and isinstance(doc.get("OperatingSpeedMHz"), (int, float)):
        doc["OperatingSpeedMHz"] = int(345 + (1980 - 345) * min(1.0, nd.model.gpu_util(gpu, t, c) * 1.2))
    return doc


def _condition_text(gpu_id: str, f: Any) -> str:
    from redfleet.sim.faults import xid_info

    if f.xid is not None:
        mnemonic, _bucket, text = xid_info(int(f.xid))
        return f"{gpu_id}: Xid {f.xid} ({mnemonic}): {text}"
    return f"{gpu_id}: {f.spec.summary}"


def gpu_chassis(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    gpu = nd.flv.ix.gpu_of(path)
    if gpu is None:
        return doc
    if gpu in c.lost_gpus:
        _status(doc, "Critical")
        return doc
    health = nd.gpu_health(gpu)
    if health != "OK":
        _status(doc, health)
    return doc


def dimm(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    idx = nd.flv.dimm_index.get(path)
    if idx is not None:
        h = nd.part_health("dimm", idx)
        if h != "OK":
            _status(doc, h)
    return doc


def drive(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    idx = nd.flv.drive_index.get(path)
    if idx is None:
        return doc
    wear = nd.has("nvme-wear", idx)
    media = nd.has("nvme-media", idx)
    if wear is not None:
        if "PredictedMediaLifeLeftPercent" in doc or doc.get("MediaType") == "SSD":
            doc["PredictedMediaLifeLeftPercent"] = 0
        doc["FailurePredicted"] = True
        _status(doc, "Warning")
    if media is not None:
        doc["FailurePredicted"] = True
        _status(doc, "Critical")
    return doc


def system(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    h = nd.rollup()
    if h != "OK":
        st = doc.get("Status")
        if isinstance(st, dict):
            st["HealthRollup"] = h
            if "Health" in st and h == "Critical":
                st["Health"] = "Critical"
    return doc


def chassis(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    if c.failed_fans or c.failed_psus or c.inlet_offset:
        st = doc.get("Status")
        if isinstance(st, dict):
            sev = "Critical" if (c.failed_fans or c.failed_psus) else "Warning"
            if "HealthRollup" in st:
                st["HealthRollup"] = sev
            st["Health"] = sev
    return doc


def subscriptions(nd: NodeDyn, path: str, doc: Doc, t: float, c: Conditions) -> Doc:
    subs = nd.subs
    members = [] if subs is None else [{"@odata.id": p} for p in subs.paths()]
    doc["Members"] = members
    doc["Members@odata.count"] = len(members)
    return doc


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


HANDLERS: dict[str, Handler] = {
    "Thermal": thermal,
    "Power": power,
    "Sensor": sensor,
    "EnvironmentMetrics": environment_metrics,
    "ProcessorMetrics": processor_metrics,
    "MemoryMetrics": memory_metrics,
    "PortMetrics": port_metrics,
    "MetricReport": metric_report,
    "ThermalMetrics": thermal_metrics,
    "Fan": fan,
    "PowerSupply": power_supply,
    "PowerSupplyMetrics": power_supply,
    "ThermalSubsystem": subsystem,
    "PowerSubsystem": subsystem,
    "Drive": drive,
    "Gpu": gpu_resource,
    "GpuChassis": gpu_chassis,
    "Dimm": dimm,
    "DimmMetrics": dimm_metrics,
    "System": system,
    "Chassis": chassis,
    "Subscriptions": subscriptions,
}

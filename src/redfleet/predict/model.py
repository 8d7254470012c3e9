"""A deterministic degradation model of one datacenter NVMe SSD, for the simulator and the tests.

``DriveModel(seed, path).state_at(t_days)`` gives the drive's SMART/Health (02h) and OCP C0h fields at day
``t_days`` of the simulation. The same seed, path and day always give the same numbers; every counter is
non-decreasing in time, whatever order the days are asked in. Paths:

``healthy``
    Normal service: wear from a modest write rate, a few grown bad blocks (a slow Poisson process), soft-ECC
    and PCIe correctable counts that grow with use, and — for about one drive in five — sporadic uncorrectable
    reads that never become a trend (field studies find such errors in 20–60 % of drives that never fail:
    Schroeder, Lagisetty & Merchant, FAST 2016).
``wearout``
    A write-heavy drive that runs through its rated program/erase cycles: percentage used passes 100, erase
    counts approach the NAND rating, grown bad blocks accelerate with wear and eat the spare pool; the drive
    fails (read-only) at ``failure_day`` when the spare is about gone.
``badblocks``
    From ``onset_day`` a die or plane starts shedding blocks: bad user/system NAND blocks grow exponentially,
    XOR (die-level parity) recoveries and later uncorrectable reads follow, available spare drops below its
    threshold around ``failure_day``.
``media``
    Sudden media failure: healthy until ``onset_day``, then a burst of uncorrectable reads, media and data
    integrity errors and end-to-end detected errors; reliability-degraded critical warning; fails within
    days (``failure_day``).

After ``failure_day`` the counters freeze and the critical warning shows read-only media; ``state.failed``
is True.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Literal

from redfleet.predict.layout import OCP_C0_BY_KEY, OCP_LATEST_VERSION, OCP_VERSION_SPEC
from redfleet.predict.logs import encode_ocp_c0, encode_smart

Path = Literal["healthy", "wearout", "badblocks", "media"]
PATHS: tuple[str, ...] = ("healthy", "wearout", "badblocks", "media")

_UNIT = 512_000  # bytes in an NVMe data unit


@dataclass(frozen=True)
class DriveSpec:
    """What kind of drive: a 3.84 TB TLC U.2/E1.S datacenter SSD by default."""

    capacity_bytes: int = 3_840_000_000_000
    rated_pe_cycles: int = 3000  # TLC
    spare_blocks: int = 2400  # blocks the drive can retire before its spare is gone
    spare_thresh: int = 10  # % (02h Available Spare Threshold)
    total_media_dies: int = 64
    die_failure_tolerance: int = 2
    write_amplification: float = 2.5
    model: str = "REDFLEET DC3840 TLC"
    firmware: str = "RF1.4.2"
    form_factor: int = 0x2  # reported in C0h 2.7 byte 223


@dataclass
class DriveState:
    """The drive at one instant: ``smart`` (02h) and ``ocp`` (C0h, all versions' fields) field dicts."""

    t_days: float
    path: str
    smart: dict[str, Any]
    ocp: dict[str, Any]
    failed: bool = False
    serial: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def smart_log_bytes(self) -> bytes:
        """The raw 512-byte NVMe SMART/Health (02h) log."""
        return encode_smart(self.smart)

    def ocp_c0_bytes(self, version: int = 4) -> bytes:
        """The raw 512-byte OCP C0h log as a drive of that log page version (2..6) returns it."""
        return encode_ocp_c0(self.ocp, version, drop_unknown=True)

    def nvme_cli_smart_json(self) -> dict[str, Any]:
        """``nvme smart-log -o json`` output for this state."""
        from redfleet.predict.jsonfmt import nvme_cli_smart_log

        return nvme_cli_smart_log(self.smart)

    def nvme_cli_ocp_json(self, version: int = 4, style: str = "snake") -> dict[str, Any]:
        """``nvme ocp smart-add-log -o json`` output (style "snake" or "human") for a log page version."""
        from redfleet.predict.jsonfmt import nvme_cli_ocp_c0

        return nvme_cli_ocp_c0(self.ocp_fields(version), "human" if style == "human" else "snake")

    def smartctl_json(self, device: str = "/dev/nvme0") -> dict[str, Any]:
        """``smartctl -j -a`` output for this state."""
        from redfleet.predict.jsonfmt import smartctl_json

        return smartctl_json(self.smart, model=str(self.info.get("model", "")), serial=self.serial,
                             firmware=str(self.info.get("firmware", "")), device=device)

    def ocp_fields(self, version: int = 4) -> dict[str, Any]:
        """The C0h fields that exist in a log page version, plus ``log_page_version``."""
        out = {k: v for k, v in self.ocp.items() if k in OCP_C0_BY_KEY and OCP_C0_BY_KEY[k].since <= version}
        out["log_page_version"] = version
        return out


def _stream_seed(*parts: object) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


class _Arrivals:
    """Unit-rate Poisson arrivals, drawn once and kept: count(L) is the number of arrivals up to L."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._sums: list[float] = []

    def count(self, cumulative: float) -> int:
        if cumulative <= 0:
            return 0
        while not self._sums or self._sums[-1] <= cumulative:
            last = self._sums[-1] if self._sums else 0.0
            self._sums.append(last + self._rng.expovariate(1.0))
        return bisect_right(self._sums, cumulative)


class DriveModel:
    """One simulated drive; see the module docstring for the paths.

    ``seed`` (int or str) fixes everything random about the drive. ``age_days`` is its age at simulation day
    0 (so a fleet can mix new and old drives). ``onset_day`` / ``failure_day`` override the drawn ones.
    """

    def __init__(
        self,
        seed: int | str,
        path: str = "healthy",
        *,
        age_days: float | None = None,
        onset_day: float | None = None,
        failure_day: float | None = None,
        spec: DriveSpec | None = None,
    ) -> None:
        if path not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}, not {path!r}")
        self.seed = seed
        self.path = path
        self.spec = spec or DriveSpec()
        rng = random.Random(_stream_seed(seed, "params"))
        self.age_days = float(age_days) if age_days is not None else rng.uniform(30, 900)
        self.serial = f"RF{_stream_seed(seed, 'serial') % 10**10:010d}"
        # Workload: drive writes per day and reads relative to writes.
        if path == "wearout":
            self.dwpd = rng.uniform(2.5, 4.0)
        else:
            self.dwpd = rng.lognormvariate(math.log(0.35), 0.6)
        self.read_ratio = rng.uniform(1.5, 4.0)
        self.temp_base_c = rng.uniform(33, 45)
        self.sporadic_ue = rng.random() < (0.2 if path in ("healthy", "media") else 0.5)
        self.ue_rate = rng.uniform(1 / 400, 1 / 60) if self.sporadic_ue else 0.0  # uncorrectables/day
        self.healthy_bb_rate = rng.choice([0.0, rng.uniform(0.002, 0.05)])  # grown bad blocks/day
        self.pcie_rate = rng.choice([0.0, 0.0, rng.uniform(0.01, 2.0)])  # correctable errors/day
        self.throttle_rate = rng.choice([0.0, 0.0, 0.0, rng.uniform(0.002, 0.03)])  # events/day
        self.power_cycle_rate = rng.uniform(0.005, 0.05)
        self.unsafe_rate = rng.uniform(0.0005, 0.004)
        self.initial_bad_system = rng.randint(0, 3)
        self.initial_bad_user = rng.randint(0, 12)
        if path == "healthy":
            self.onset_day: float | None = None
            self.failure_day: float | None = None
        elif path == "wearout":
            fd = failure_day if failure_day is not None else rng.uniform(120, 420)
            # Choose the write rate so that the rated P/E cycles are reached ~10 % before failure.
            total_days = self.age_days + fd
            self.dwpd = self.spec.rated_pe_cycles * 1.10 / (total_days * self.spec.write_amplification)
            self.onset_day = onset_day if onset_day is not None else max(0.0, fd - rng.uniform(60, 120))
            self.failure_day = fd
        elif path == "badblocks":
            self.onset_day = onset_day if onset_day is not None else rng.uniform(20, 300)
            self.failure_day = failure_day if failure_day is not None else self.onset_day + rng.uniform(25, 90)
        else:  # media
            self.onset_day = onset_day if onset_day is not None else rng.uniform(20, 350)
            self.failure_day = failure_day if failure_day is not None else self.onset_day + rng.uniform(1, 14)
        if self.failure_day is not None and self.onset_day is not None and self.failure_day < self.onset_day:
            raise ValueError("failure_day must not come before onset_day")
        self._arrivals: dict[str, _Arrivals] = {}
        self.firmware_uuid = str(uuid.UUID(int=_stream_seed(seed, "fwuuid") << 64 | _stream_seed(seed, "fw2")))

    # -- helpers -------------------------------------------------------------------------------------------
    def _count(self, name: str, cumulative: float) -> int:
        arrivals = self._arrivals.get(name)
        if arrivals is None:
            arrivals = self._arrivals[name] = _Arrivals(_stream_seed(self.seed, self.path, name))
        return arrivals.count(cumulative)

    def _progress(self, t: float) -> float:
        """0 before onset, rising to 1 at failure (for the failing paths)."""
        if self.onset_day is None or self.failure_day is None or t <= self.onset_day:
            return 0.0
        span = max(self.failure_day - self.onset_day, 1e-6)
        return min(1.0, (t - self.onset_day) / span)

    def _bad_block_intensity(self, t: float) -> float:
        """Expected grown bad user blocks by day t (simulation day, 0 = start)."""
        life = self.age_days + t
        base = self.initial_bad_user + self.healthy_bb_rate * life
        usable = self.spec.spare_blocks * (1 - self.spec.spare_thresh / 100)
        if self.path == "wearout" and self.onset_day is not None and self.failure_day is not None:
            # Accelerating with wear: reaches ~the spare threshold at failure.
            p = self._progress(t)
            return base + usable * (math.expm1(4 * p) / math.expm1(4)) * 1.03
        if self.path == "badblocks" and self.onset_day is not None and self.failure_day is not None:
            p = self._progress(t)
            return base + usable * (math.expm1(5 * p) / math.expm1(5)) * 1.03
        if self.path == "media":
            return base + 6 * self._progress(t)
        return base

    # -- the state -----------------------------------------------------------------------------------------
    def state_at(self, t_days: float) -> DriveState:
        """The drive's health fields at simulation day ``t_days`` (>= 0; fractions allowed)."""
        if t_days < 0:
            raise ValueError("t_days must be >= 0")
        failed = self.failure_day is not None and t_days >= self.failure_day
        t = min(t_days, self.failure_day) if failed and self.failure_day is not None else t_days
        spec = self.spec
        life = self.age_days + t
        hours = int(life * 24)
        p = self._progress(t)

        # Wear: host writes, NAND writes, erase counts, percentage used.
        host_written = self.dwpd * spec.capacity_bytes * life
        nand_written = host_written * spec.write_amplification
        host_read = host_written * self.read_ratio
        avg_erase = nand_written / spec.capacity_bytes
        percent_used = min(255, int(100 * avg_erase / spec.rated_pe_cycles))

        # Grown bad blocks and spare.
        bad_user = self._count("bad_user", self._bad_block_intensity(t))
        bad_system = self.initial_bad_system + self._count("bad_system", 0.01 * self._bad_block_intensity(t))
        consumed = bad_user + bad_system
        avail_spare = max(0, 100 - math.ceil(100 * consumed / spec.spare_blocks)) if consumed else 100
        bad_user_norm = max(0, 100 - (100 * bad_user) // spec.spare_blocks)
        bad_system_norm = max(0, 100 - (100 * bad_system) // max(1, spec.spare_blocks // 20))

        # Error counters.
        soft_ecc_rate = 3.0 + 40.0 * (avg_erase / spec.rated_pe_cycles) ** 2
        soft_ecc = int(soft_ecc_rate * life * (1 + 20 * p * p))
        xor_intensity = 0.002 * life + 0.02 * max(0, bad_user - self.initial_bad_user)
        ue_intensity = self.ue_rate * life
        e2e_intensity = 0.0
        if self.path == "badblocks":
            ue_intensity += 40 * max(0.0, p - 0.35) ** 2
        elif self.path == "wearout":
            ue_intensity += 25 * max(0.0, p - 0.5) ** 2
        elif self.path == "media" and self.onset_day is not None and t >= self.onset_day:
            since = t - self.onset_day
            ue_intensity += 12 + 30 * since  # a burst, then a steady stream
            e2e_intensity = 2 + 3 * since
            xor_intensity += 5 + 10 * since
        xor = self._count("xor", xor_intensity)
        uncorrectable = self._count("ue", ue_intensity)
        e2e_detected = self._count("e2e", e2e_intensity)
        e2e_corrected = self._count("e2e_corr", 0.5 * e2e_intensity)
        media_errors = uncorrectable + e2e_detected
        pcie = self._count("pcie", self.pcie_rate * life)
        throttles = min(255, self._count("throttle", self.throttle_rate * life))
        power_cycles = 1 + self._count("power", self.power_cycle_rate * life)
        unsafe = self._count("unsafe", self.unsafe_rate * life)
        err_log = media_errors + self._count("errlog", 0.01 * life)
        refresh = int(0.5 * life * (1 + avg_erase / spec.rated_pe_cycles))

        # Temperature: a daily swing around the drive's own mean.
        temp_c = round(self.temp_base_c + 4 * math.sin(2 * math.pi * t_days) + (3 if self.path == "media" and p
                                                                                  else 0))
        temp_k = temp_c + 273

        # Critical warning bits.
        cw = 0
        if avail_spare < spec.spare_thresh:
            cw |= 0x01
        if temp_c >= 70:
            cw |= 0x02
        if (self.path == "media" and self.onset_day is not None and t >= self.onset_day + 1) or failed:
            cw |= 0x04
        if failed:
            cw |= 0x08

        smart = {
            "critical_warning": cw,
            "temperature": temp_k,
            "avail_spare": avail_spare,
            "spare_thresh": spec.spare_thresh,
            "percent_used": percent_used,
            "endurance_grp_critical_warning_summary": 0,
            "data_units_read": int(host_read // _UNIT),
            "data_units_written": int(host_written // _UNIT),
            "host_read_commands": int(host_read // 65536),
            "host_write_commands": int(host_written // 131072),
            "controller_busy_time": int(life * 24 * 60 * 0.15),
            "power_cycles": power_cycles,
            "power_on_hours": hours,
            "unsafe_shutdowns": unsafe,
            "media_errors": media_errors,
            "num_err_log_entries": err_log,
            "warning_temp_time": 0,
            "critical_comp_time": 0,
            "temperature_sensor_1": temp_k + 2,
            "temperature_sensor_2": temp_k - 3,
            "thm_temp1_trans_count": throttles,
            "thm_temp2_trans_count": 0,
            "thm_temp1_total_time": throttles * 37,
            "thm_temp2_total_time": 0,
        }
        ocp = {
            "physical_media_units_written": int(nand_written),
            "physical_media_units_read": int(host_read * 1.02),
            "bad_user_nand_blocks_raw": bad_user,
            "bad_user_nand_blocks_normalized": bad_user_norm,
            "bad_system_nand_blocks_raw": bad_system,
            "bad_system_nand_blocks_normalized": bad_system_norm,
            "xor_recovery_count": xor,
            "uncorrectable_read_errors": uncorrectable,
            "soft_ecc_error_count": soft_ecc,
            "end_to_end_detected_errors": e2e_detected,
            "end_to_end_corrected_errors": e2e_corrected,
            "system_data_percent_used": min(100, int(percent_used * 0.6)),
            "refresh_count": refresh,
            "max_user_data_erase_count": int(avg_erase * 1.15),
            "min_user_data_erase_count": int(avg_erase * 0.85),
            "thermal_throttling_events": throttles,
            "current_throttling_status": 1 if temp_c >= 70 else 0,
            "errata_version_field": 0,
            "point_version_field": 0,
            "minor_version_field": 5,
            "major_version_field": 2,
            "pcie_correctable_errors": pcie,
            "incomplete_shutdowns": unsafe,
            "percent_free_blocks": max(0, min(100, 12 - percent_used // 20)),
            "capacitor_health": 100,
            "nvme_base_errata_version": 0,
            "nvme_command_set_errata_version": 0,
            "nvme_over_pcie_errata_version": 0,
            "nvme_mi_errata_version": 0,
            "unaligned_io": 0,
            "security_version_number": 1,
            "nuse_namespace_utilization": spec.capacity_bytes // 4096 * 3 // 5,
            "plp_start_count": unsafe + power_cycles,
            "endurance_estimate": spec.capacity_bytes * spec.rated_pe_cycles // int(spec.write_amplification),
            "pcie_link_retraining_count": self._count("retrain", 0.002 * life),
            "power_state_change_count": power_cycles * 2,
            "lowest_permitted_firmware_revision": int.from_bytes(spec.firmware.encode()[:8].ljust(8, b" "),
                                                                 "little"),
            "total_media_dies": spec.total_media_dies,
            "total_die_failure_tolerance": spec.die_failure_tolerance,
            "media_dies_offline": (1 if self.path == "badblocks" and p > 0.6 else 0) + (1 if failed else 0),
            "max_temperature_recorded": int(self.temp_base_c + 12),
            "form_factor": spec.form_factor,
            "nand_avg_erase_count": int(avg_erase),
            "command_timeouts": self._count("timeouts", 0.0005 * life + (3 * p if self.path != "wearout" else 0)),
            "sys_area_program_fail_count_raw": self._count("sys_prog", 0.002 * self._bad_block_intensity(t)),
            "sys_area_program_fail_count_noralized": 100,
            "sys_area_uncorrectable_read_count_raw": 0,
            "sys_area_uncorrectable_read_count_noralized": 100,
            "sys_area_erase_fail_count_raw": self._count("sys_erase", 0.002 * self._bad_block_intensity(t)),
            "sys_area_erase_fail_count_noralized": 100,
            "max_peak_power_capability": 25,
            "current_max_avg_power": 14,
            "lifetime_power_consumed": int(life * 24 * 11 / 1000),
            "dssd_firmware_revision": spec.firmware,
            "dssd_firmware_build_uuid": self.firmware_uuid,
            "dssd_firmware_build_label": f"{spec.firmware}-release",
            "die_in_use_bad_nand_block_raw": bad_user,
            "die_in_use_bad_nand_block_normalized": bad_user_norm,
        }
        return DriveState(
            t_days=t_days, path=self.path, smart=smart, ocp=ocp, failed=failed, serial=self.serial,
            info={"model": spec.model, "firmware": spec.firmware, "onset_day": self.onset_day,
                  "failure_day": self.failure_day, "age_days": self.age_days, "dwpd": round(self.dwpd, 3)},
        )

    def history(self, days: int, *, step: float = 1.0, start: float = 0.0) -> list[DriveState]:
        """States at start, start+step, … up to ``days`` (inclusive)."""
        n = int((days - start) / step) + 1
        return [self.state_at(start + i * step) for i in range(n)]


__all__ = ["OCP_LATEST_VERSION", "OCP_VERSION_SPEC", "PATHS", "DriveModel", "DriveSpec", "DriveState"]

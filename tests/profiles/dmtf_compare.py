"""redfleet's profile engine against DMTF's rf_interop_validator, requirement by requirement.

Both read the same service over HTTP (the simulator's mockup mode when it is installed, else the static mockup
server beside this file). A "requirement" is one result row of the reference: a (URI, property) pair, or a
resource type service-wide. For each row the reference reports we look up redfleet's verdict; rows only redfleet
reports (checks the reference does not make, deviation D3) are listed apart.

Full table, on demand (slow: the reference reads every resource one at a time)::

    .venv/bin/python tests/profiles/dmtf_compare.py [--mockups dell,hpe] [--profiles OCPServer,UBB] [--out FILE]

It prints the Markdown that ``docs/profiles-vs-dmtf.md`` embeds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redfleet.paths import shared_dir
from redfleet.profiles.engine import Options, validate_source
from redfleet.profiles.profile import load_profile
from redfleet.profiles.source import HttpAuth, HttpSource

PROFILES = {
    "OCPServer": "OCPServerHardwareManagement.v1_1_0.json",
    "UBB": "OCP_UBB_BaselineManagement.v1.0.0.json",
}

# Runs the reference in its own process (it keeps its state in module globals) and prints its result rows.
_DRIVER = r"""
import json, sys, os, logging
import redfish
from redfish_interop_validator import logger, profile
from redfish_interop_validator.system_under_test import SystemUnderTest
profile_path, rhost, logdir = sys.argv[1], sys.argv[2], sys.argv[3]
logger.logger = redfish.redfish_logger(os.path.join(logdir, "dmtf.log"), "%(message)s", logging.INFO)
logger.log_print = lambda *a, **k: None
profile.load_profile(os.path.dirname(profile_path) or ".", os.path.basename(profile_path))
sut = SystemUnderTest(rhost, sys.argv[4], sys.argv[5], 30, "Session", None, None, None, ["LogEntry", "20"], False)
sut.validate(None, "/redfish/v1/", "/redfish/v1/")
sut.apply_global_checks()
rows = []
for uri, res in sut._resources.items():
    for prop, r in res["Results"].items():
        rows.append({"uri": uri, "prop": prop, "verdict": r["Result"].name, "value": r["Value"],
                     "message": r["Message"]})
for rtype, r in sut._service_resource_results["Results"].items():
    rows.append({"uri": None, "prop": rtype, "verdict": r["Result"].name, "value": None, "message": r["Message"]})
totals = {"PASS": sut.pass_count, "WARN": sut.warn_count, "FAIL": sut.fail_count, "SKIP": sut.skip_count}
print(json.dumps({"rows": rows, "totals": totals}))
"""

_NAMES = {"SKIP": "not_tested", "PASS": "pass", "WARN": "warn", "FAIL": "fail"}


def profiles_dir() -> Path:
    return shared_dir() / "redfish" / "profiles"


def run_dmtf(profile_path: Path, base_url: str, python: str = sys.executable) -> dict[str, Any]:
    """The reference's rows: {(uri|None, prop): verdict}, its totals, and how long it took."""
    with tempfile.TemporaryDirectory() as logdir:
        began = time.perf_counter()
        proc = subprocess.run([python, "-c", _DRIVER, str(profile_path), base_url, logdir, USER, PASSWORD],
                              capture_output=True,
                              text=True, timeout=3600)
        elapsed = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"rf_interop_validator failed: {proc.stderr[-2000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = {(r["uri"], r["prop"]): {"verdict": _NAMES[r["verdict"]], "message": r["message"], "value": r["value"]}
            for r in data["rows"]}
    totals = {_NAMES[k]: v for k, v in data["totals"].items()}
    return {"rows": rows, "totals": totals, "elapsed": elapsed}


async def run_redfleet(profile_path: Path, base_url: str, mode: str) -> dict[str, Any]:
    profiles = load_profile(profile_path)
    began = time.perf_counter()
    async with HttpSource(base_url, HttpAuth(USER, PASSWORD)) as source:
        result = await validate_source(source, profiles, Options(mode=mode), target=base_url)
    elapsed = time.perf_counter() - began
    rows = {}
    for r in result.rows:
        key = (r.uri, r.prop if r.uri is not None else r.resource)
        rows[key] = {"verdict": r.verdict.label, "message": "\n".join(r.messages), "value": r.found}
    return {"rows": rows, "totals": result.summary(), "elapsed": elapsed, "error": result.error}


@dataclass
class Comparison:
    mockup: str
    profile: str
    mode: str
    reference_rows: int = 0
    agree: int = 0
    differ: list[tuple[Any, str, str]] = field(default_factory=list)  # (key, reference, redfleet)
    only_redfleet: list[tuple[Any, str]] = field(default_factory=list)
    ref_totals: dict[str, int] = field(default_factory=dict)
    our_totals: dict[str, int] = field(default_factory=dict)
    ref_seconds: float = 0.0
    our_seconds: float = 0.0

    @property
    def agreement(self) -> float:
        return self.agree / self.reference_rows if self.reference_rows else 1.0


def compare(mockup: str, profile: str, mode: str, ref: dict[str, Any], ours: dict[str, Any]) -> Comparison:
    c = Comparison(mockup, profile, mode, ref_totals=ref["totals"], our_totals=ours["totals"],
                   ref_seconds=ref["elapsed"], our_seconds=ours["elapsed"])
    for key, r in ref["rows"].items():
        c.reference_rows += 1
        o = ours["rows"].get(key)
        got = o["verdict"] if o else "absent"
        if got == r["verdict"]:
            c.agree += 1
        else:
            c.differ.append((key, r["verdict"], got))
    for key, o in ours["rows"].items():
        if key not in ref["rows"]:
            c.only_redfleet.append((key, o["verdict"]))
    return c


def explain(key: Any, ref: str, ours: str) -> str:
    """The documented deviation (docs/profiles-vs-dmtf.md) that explains a strict-mode difference; '' when none does.
    ``ref`` is "absent" for a row only redfleet reports."""
    _uri, prop = key
    if ref == "absent":
        if prop.endswith("/IndicatorLED (Write)"):
            return "D1"  # the AnyOf condition (SystemType Physical) makes IndicatorLED writable
        if "/Actions/#" in prop and prop.count("/") >= 3:
            return "D3"  # action parameter values
        return ""
    if prop in ("/IndicatorLED", "/Thermal", "/Power") and ref in ("not_tested", "pass") and ours == "fail":
        return "D1"  # Recommended made Mandatory by an AnyOf condition the reference never applies
    return ""


USER, PASSWORD = "root", "calvin"


async def serve(mockup_dir: Path, address: str = "127.16.130.1") -> tuple[Any, str]:
    """Serve a mockup over HTTP: the simulator's mockup mode when it is installed, else the static server beside
    this file."""
    try:
        from redfleet.sim import SimConfig, SimFleet

        cfg = SimConfig(mockup=mockup_dir, port=0, http=True, base_address=address, dynamics=False,
                        cache_dir=Path(tempfile.mkdtemp()), user=USER, password=PASSWORD)
        fleet = SimFleet(cfg)
        await fleet.start()
        return fleet, fleet.nodes[0].bmc_url
    except ImportError:
        sys.path.insert(0, str(Path(__file__).parent))
        from mockup_server import start  # type: ignore[import-not-found]

        runner, url = await start(mockup_dir, host=address)
        return runner, url


async def stop(server: Any) -> None:
    for name in ("stop", "cleanup", "close"):
        fn = getattr(server, name, None)
        if fn is not None:
            await fn()
            return


def compare_one(mockup: str, profile_key: str, modes: tuple[str, ...] = ("strict", "dmtf")) -> list[Comparison]:
    mockup_dir = shared_dir() / "redfish" / "mockups" / mockup
    profile_path = profiles_dir() / PROFILES[profile_key]

    async def go() -> list[Comparison]:
        server, url = await serve(mockup_dir)
        try:
            ref = await asyncio.to_thread(run_dmtf, profile_path, url)
            out = []
            for mode in modes:
                ours = await run_redfleet(profile_path, url, mode)
                out.append(compare(mockup, profile_key, mode, ref, ours))
            return out
        finally:
            await stop(server)

    return asyncio.run(go())


def markdown(results: list[Comparison]) -> str:
    lines = [
        "# redfleet vs rf_interop_validator, every mockup and profile",
        "",
        "Generated by `tests/profiles/dmtf_compare.py` (see [profiles-vs-dmtf.md](profiles-vs-dmtf.md)). Differences "
        "are labelled with the deviation that explains them.",
        "",
        "| mockup | profile | mode | reference rows | agree | differ | agreement | only redfleet | "
        "reference pass/warn/fail/not tested | redfleet pass/warn/fail/not tested | reference s | redfleet s |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    tot_rows = tot_agree = 0
    for c in results:
        rt, ot = c.ref_totals, c.our_totals
        lines.append(
            f"| {c.mockup} | {c.profile} | {c.mode} | {c.reference_rows} | {c.agree} | {len(c.differ)} | "
            f"{100 * c.agreement:.2f}% | {len(c.only_redfleet)} | "
            f"{rt.get('pass')}/{rt.get('warn')}/{rt.get('fail')}/{rt.get('not_tested')} | "
            f"{ot.get('pass')}/{ot.get('warn')}/{ot.get('fail')}/{ot.get('not_tested')} | "
            f"{c.ref_seconds:.1f} | {c.our_seconds:.2f} |"
        )
        if c.mode == "strict":
            tot_rows += c.reference_rows
            tot_agree += c.agree
    if tot_rows:
        lines.append("")
        lines.append(f"Strict mode overall: {tot_agree}/{tot_rows} = {100 * tot_agree / tot_rows:.3f}% agreement.")
    lines.append("")
    lines.append("Differences (strict mode), by reference verdict → redfleet verdict:")
    lines.append("")
    for c in results:
        if c.mode != "strict" or not (c.differ or c.only_redfleet):
            continue
        lines.append(f"- **{c.mockup} / {c.profile}**:")
        for key, r, o in c.differ:
            lines.append(f"  - `{key[0]}` `{key[1]}`: {r} → {o} ({explain(key, r, o) or 'UNEXPLAINED'})")
        counts = Counter(o for _, o in c.only_redfleet)
        if c.only_redfleet:
            keys = ", ".join(f"`{k[1]}` ({explain(k, 'absent', o) or 'UNEXPLAINED'})" for k, o in c.only_redfleet[:6])
            lines.append(f"  - only redfleet ({dict(counts)}): {keys}" + (" …" if len(c.only_redfleet) > 6 else ""))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mockups", default=",".join(sorted(p.name for p in (shared_dir() / "redfish" / "mockups")
                                                            .iterdir() if p.is_dir())))
    parser.add_argument("--profiles", default="OCPServer,UBB")
    parser.add_argument("--out", help="write the Markdown table here as well")
    parser.add_argument("--json", help="write every difference as JSON here")
    args = parser.parse_args()
    results: list[Comparison] = []
    for mockup in args.mockups.split(","):
        for prof in args.profiles.split(","):
            print(f"comparing {mockup} / {prof} ...", file=sys.stderr, flush=True)
            results.extend(compare_one(mockup, prof))
    text = markdown(results)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps([{
            "mockup": c.mockup, "profile": c.profile, "mode": c.mode, "agreement": c.agreement,
            "differ": [[list(k), r, o] for k, r, o in c.differ],
            "only_redfleet": [[list(k), o] for k, o in c.only_redfleet],
        } for c in results], indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

"""DMTF Redfish Service Validator against the simulator, flavor by flavor, beside the capture it was built from.

For each flavor the validator (PyPI ``redfish-service-validator``, offline: ``--skipschema --schema_directory
../shared/redfish/csdl``) runs twice, at the same time:

* against one simulated BMC of that flavor (``SimFleet``, dynamic behaviour on, HTTPS with its own certificate);
* against the flavor's source mockup served *as captured* by a static file server (this module): every GET answers
  the captured ``index.json``/``index.xml`` byte for byte; the only additions are what a client needs to get in at
  all (a trailing slash and, as the real iLO does, letter case do not matter; a session login answers 201).

The requirement: simulated FAIL <= as-captured FAIL, and PASS > 0 (the validator exits 0 with 0 passes when it has
no schemas). FAIL/WARN rows come from the validator's Excel report, so a regression names its URI and property.

    python -m benchmarks sim_conformance                 # every flavor, print the table
    python -m benchmarks sim_conformance --write         # ... and rewrite docs/sim-conformance.md
    python -m benchmarks sim_conformance --flavors ami --details
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "sim-conformance.md"
FLAVORS = ("dell", "hpe", "supermicro", "dgx", "ami", "openbmc")
BASE_ADDRESS = "127.12.200.1"  # sim-conf's block; static servers at +0, simulated BMCs at +1 (2 per flavor)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SUMMARY = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*$")


# ------------------------------------------------------------------------------------------ static "as captured"
class StaticTree:
    """Serve a Redfish-Mockup-Creator "tall" tree exactly as captured (GET only)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.exact: dict[str, Path] = {}
        self.folded: dict[str, Path] = {}
        for dirpath, _dirs, files in os.walk(root):
            for name in ("index.json", "index.xml"):
                if name in files:
                    rel = "/" + Path(dirpath).relative_to(root).as_posix()
                    rel = rel.rstrip("/") or "/"
                    self.exact[rel] = Path(dirpath) / name
                    self.folded.setdefault(rel.lower(), Path(dirpath) / name)
                    break
        self.session_doc = self._first_session()

    def _first_session(self) -> dict[str, Any] | None:
        coll = self.lookup("/redfish/v1/SessionService/Sessions")
        if coll is None or coll.suffix != ".json":
            return None
        members = json.loads(coll.read_text()).get("Members") or []
        for member in members:
            path = self.lookup(str(member.get("@odata.id", "")))
            if path is not None:
                doc: dict[str, Any] = json.loads(path.read_text())
                return doc
        return None

    def lookup(self, path: str) -> Path | None:
        path = path.split("?", 1)[0].rstrip("/") or "/"
        return self.exact.get(path) or self.folded.get(path.lower())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers = {"OData-Version": "4.0", "Cache-Control": "no-cache"}
        if request.method == "POST" and request.path.rstrip("/").lower().endswith("/sessionservice/sessions"):
            doc = self.session_doc or {"@odata.id": "/redfish/v1/SessionService/Sessions/1", "Id": "1"}
            headers.update({"X-Auth-Token": "as-captured", "Location": doc.get("@odata.id", "")})
            return web.json_response(doc, status=201, headers=headers)
        if request.method == "DELETE":
            return web.Response(status=204, headers=headers)
        if request.method not in ("GET", "HEAD"):
            return web.json_response({"error": {"code": "Base.1.0.OperationNotAllowed"}}, status=405, headers=headers)
        path = request.path
        if path.rstrip("/") == "/redfish":
            return web.json_response({"v1": "/redfish/v1/"}, headers=headers)
        found = self.lookup(path)
        if found is None:
            return web.json_response({"error": {"code": "Base.1.0.ResourceMissingAtURI"}}, status=404, headers=headers)
        ctype = "application/xml" if found.suffix == ".xml" else "application/json"
        return web.Response(body=found.read_bytes(), content_type=ctype, charset="utf-8", headers=headers)


async def start_static(tree: Path, address: str, port: int = 0) -> tuple[web.AppRunner, str]:
    static = StaticTree(tree)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", static.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, address, port)
    await site.start()
    server: Any = site._server
    assert server is not None and server.sockets
    bound = server.sockets[0].getsockname()[1]
    return runner, f"http://{address}:{bound}"


# ------------------------------------------------------------------------------------------ the validator
@dataclass
class ValidatorRun:
    target: str
    passed: int = 0
    warned: int = 0
    failed: int = 0
    not_tested: int = 0
    returncode: int = 0
    seconds: float = 0.0
    fails: list[tuple[str, str, str]] = field(default_factory=list)  # (uri, property, message)
    warns: list[tuple[str, str, str]] = field(default_factory=list)
    error: str | None = None
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and self.passed > 0


def parse_summary(text: str) -> tuple[int, int, int, int] | None:
    """(PASS, WARN, FAIL, NOT TESTED) from the validator's console summary table."""
    for line in ANSI.sub("", text).splitlines():
        m = SUMMARY.match(line.strip())
        if m:
            a, b, c, d = (int(g) for g in m.groups())
            return a, b, c, d
    return None


# The validator's console entry point, with its HTML/Excel report writers replaced by a JSON dump of the FAIL/WARN
# rows: the reports take minutes to write (4 of the 6 minutes on the ami tree) and we only need those rows. The
# summary table it prints is untouched; if the validator's internals change, the patch is skipped and the Excel
# report is read instead.
DRIVER = """
import json, sys
from pathlib import Path
from redfish_service_validator import console_scripts
try:
    from redfish_service_validator import report

    def _dump(sut, report_dir, *args, **kwargs):
        rows = []
        for uri, res in sut._resources.items():
            for prop, r in (res.get("Results") or {}).items():
                if r.get("Result") in ("FAIL", "WARN"):
                    rows.append([r["Result"], uri, prop[1:] if prop else "-", r.get("Message") or ""])
        out = Path(report_dir) / "fail-warn.json"
        out.write_text(json.dumps(rows))
        return out

    report.html_report = _dump
    report.xlsx_report = lambda *args, **kwargs: "(skipped)"
except Exception:
    pass
sys.argv[0] = "rf_service_validator"
console_scripts.main()
"""


def parse_dump(report_dir: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]] | None:
    files = sorted(report_dir.rglob("fail-warn.json"))
    if not files:
        return None
    rows = json.loads(files[-1].read_text())
    fails = [(u, p, m) for r, u, p, m in rows if r == "FAIL"]
    warns = [(u, p, m) for r, u, p, m in rows if r == "WARN"]
    return fails, warns


def parse_xlsx(report_dir: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """FAIL and WARN rows (uri, property, message) of the validator's Excel report."""
    try:
        import openpyxl
    except ImportError:  # pragma: no cover
        return [], []
    files = sorted(report_dir.rglob("*.xlsx"))
    if not files:
        return [], []
    wb = openpyxl.load_workbook(files[-1], read_only=True)
    fails: list[tuple[str, str, str]] = []
    warns: list[tuple[str, str, str]] = []
    if "Results" not in wb.sheetnames:
        return fails, warns
    uri = ""
    for row in wb["Results"].iter_rows(min_row=2, values_only=True):
        if len(row) < 9:
            continue
        if row[1]:
            uri = str(row[1])
        result = str(row[7] or "")
        entry = (uri, str(row[5] or ""), str(row[8] or ""))
        if result == "FAIL":
            fails.append(entry)
        elif result == "WARN":
            warns.append(entry)
    return fails, warns


def schema_dir() -> Path:
    from redfleet.paths import shared_dir

    return shared_dir() / "redfish" / "csdl"


async def run_validator(url: str, logdir: Path, *, user: str = "root", password: str = "calvin",
                        authtype: str = "Basic", limit_s: float = 900.0, schemas: Path | None = None,
                        payload: tuple[str, str] | None = None) -> ValidatorRun:
    """Run ``rf_service_validator`` (as a subprocess) against ``url``; parse counts and FAIL/WARN rows."""
    os.makedirs(logdir, exist_ok=True)
    cmd = [
        sys.executable, "-c", DRIVER,
        "--rhost", url, "--user", user, "--password", password, "--authtype", authtype,
        "--logdir", str(logdir), "--skipschema", "--schema_directory", str(schemas or schema_dir()), "--timeout", "60",
    ]
    if payload:
        cmd += ["--payload", *payload]
    env = dict(os.environ, PYTHONWARNINGS="ignore", NO_COLOR="1")
    started = time.monotonic()
    run = ValidatorRun(target=url)
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                cwd=str(logdir), env=env)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        run.error = f"validator timed out after {limit_s:.0f} s"
        return run
    run.seconds = time.monotonic() - started
    run.returncode = proc.returncode or 0
    text = out.decode("utf-8", "replace")
    run.log_tail = ANSI.sub("", text)[-3000:]
    summary = parse_summary(text)
    if summary is None:
        run.error = "no summary table in the validator output"
        return run
    run.passed, run.warned, run.failed, run.not_tested = summary
    run.fails, run.warns = parse_dump(logdir) or parse_xlsx(logdir)
    if run.passed == 0:
        run.error = "PASS = 0: the validator found no schemas (check --schema_directory)"
    return run


# ------------------------------------------------------------------------------------------ one flavor
@dataclass
class FlavorResult:
    flavor: str
    mockup: str
    resources: int
    sim: ValidatorRun
    captured: ValidatorRun

    @property
    def ok(self) -> bool:
        return self.sim.ok and self.captured.error is None and self.sim.failed <= self.captured.failed

    def extra_fails(self) -> list[tuple[str, str, str]]:
        """FAIL rows the simulator has and the capture has not (by URI case-folded and property)."""
        seen = Counter((u.lower().rstrip("/"), p) for u, p, _ in self.captured.fails)
        out = []
        for u, p, m in self.sim.fails:
            key = (u.lower().rstrip("/"), p)
            if seen[key]:
                seen[key] -= 1
            else:
                out.append((u, p, m))
        return out


def _address(base: str, offset: int) -> str:
    return str(ipaddress.IPv4Address(base) + offset)


async def check_flavor(flavor: str, logroot: Path, *, base_address: str = BASE_ADDRESS, http: bool = False,
                       limit_s: float = 900.0) -> FlavorResult:
    from redfleet.sim import SimConfig, SimFleet, get_flavor

    fl = get_flavor(flavor)
    tree = fl.mockup_path()
    static_address = _address(base_address, 0)
    sim_address = _address(base_address, 1)
    runner, static_url = await start_static(tree, static_address)
    cfg = SimConfig(nodes=1, mix={flavor: 1}, base_address=sim_address, port=0, http=http, seed=1,
                    cache_dir=logroot / "certs")
    try:
        async with SimFleet(cfg) as fleet:
            sim_url = fleet.nodes[0].bmc_url
            sim_run, cap_run = await asyncio.gather(
                run_validator(sim_url, logroot / flavor / "sim", limit_s=limit_s),
                run_validator(static_url, logroot / flavor / "captured", limit_s=limit_s),
            )
    finally:
        await runner.cleanup()
    resources = sum(1 for _ in tree.rglob("index.json"))
    return FlavorResult(flavor, fl.mockup, resources, sim_run, cap_run)


async def check_flavors(flavors: list[str], logroot: Path, *, jobs: int = 2, http: bool = False,
                        limit_s: float = 900.0) -> list[FlavorResult]:
    sem = asyncio.Semaphore(max(1, jobs))

    async def one(i: int, flavor: str) -> FlavorResult:
        async with sem:
            base = _address(BASE_ADDRESS, 4 * i)
            return await check_flavor(flavor, logroot, base_address=base, http=http, limit_s=limit_s)

    return list(await asyncio.gather(*(one(i, f) for i, f in enumerate(flavors))))


# ------------------------------------------------------------------------------------------ report
def render_table(results: list[FlavorResult]) -> str:
    lines = [
        "| flavor | capture (resources) | sim PASS | sim WARN | sim FAIL | captured PASS | captured WARN "
        "| captured FAIL | sim FAIL ≤ captured | validator s (sim / captured) |",
        "|---|---|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for r in results:
        verdict = "yes" if r.ok else "**NO**"
        if r.sim.error or r.captured.error:
            verdict += f" ({r.sim.error or r.captured.error})"
        lines.append(
            f"| {r.flavor} | `{r.mockup}` ({r.resources}) | {r.sim.passed} | {r.sim.warned} | {r.sim.failed} "
            f"| {r.captured.passed} | {r.captured.warned} | {r.captured.failed} | {verdict} "
            f"| {r.sim.seconds:.0f} / {r.captured.seconds:.0f} |"
        )
    return "\n".join(lines)


def render_fail_classes(results: list[FlavorResult]) -> str:
    """Per flavor: FAIL rows grouped by property, sim vs captured (what the two runs disagree on)."""
    out = []
    for r in results:
        sim = Counter(p for _u, p, _m in r.sim.fails)
        cap = Counter(p for _u, p, _m in r.captured.fails)
        keys = sorted(set(sim) | set(cap), key=lambda k: (-(sim[k] + cap[k]), k))
        if not keys:
            continue
        out.append(f"\n**{r.flavor}** — FAIL rows by property (sim / captured):\n")
        for k in keys[:15]:
            out.append(f"- `{k or '(resource)'}`: {sim[k]} / {cap[k]}")
        extra = r.extra_fails()
        if extra:
            out.append(f"- only in the sim ({len(extra)}), first ones:")
            for u, p, m in extra[:8]:
                out.append(f"  - `{u}` `{p}`: {m[:200]}")
    return "\n".join(out)


DOC_HEAD = """# Simulator conformance: DMTF Redfish Service Validator, per flavor

Each simulated flavor is validated by DMTF's `rf_service_validator` (PyPI `redfish-service-validator` {version}),
offline (`--skipschema --schema_directory ../shared/redfish/csdl`), and so is the captured tree it is built from,
served as captured by a static file server (`benchmarks/sim_conformance.py`: GET returns the captured file byte for
byte; trailing slash and letter case do not matter, as on the real BMCs). The simulator must not add FAILs: **sim FAIL ≤
captured FAIL**, with PASS > 0 (the validator passes a service with 0 PASS when it finds no schemas; that is
treated as a failure).

Login is HTTP Basic (`--authtype Basic`). With a Session login the `ami` capture's `SessionTimeout` of 30 s
runs out while the validator spends about a minute on the BIOS attribute registry without sending a request; the
simulator then answers 401 for the rest of the run, exactly as the real MegaRAC would, and that is not what this
table compares.

Regenerate: `python -m benchmarks sim_conformance --write` (about {minutes} minutes for all six flavors).
CI: `tests/sim/test_conf_validator.py` runs the `{ci_flavor}` flavor.

Measured {date}, {host}:

"""


DOC_NOTES = """
## Reading the table

- FAIL rows are the capture's own: the same URI and property fail in both runs (see below). They are what the real
  firmware serves (iDRAC `ReleaseDate` values that do not match the date-time pattern, iLO PCIe `ClassCode`/`DeviceId`
  not in `0x..` form, drive `DurableName`s outside the schema pattern, a Supermicro `Ports` link that is not a
  PortCollection, OEM actions the schema does not define) plus log entries listed by a collection but absent from
  the truncated capture. The simulator keeps them on purpose: clients must survive them.
- PASS counts differ a little because a freshly started simulated BMC does not carry the EventService
  subscriptions and Sessions that the capture-time clients had open (supermicro: 16 subscriptions; dell: 1
  subscription and 3 sessions), and because it serves live values (telemetry, log entries that grow, the
  validator's own session) where the capture has frozen ones.
- hpe: the capture links `/redfish/v1/Registries/%23SmartStorageMessages.v2_0_1.SmartStorageMessages`; the static
  server cannot resolve the percent-encoded `#` (one resource FAIL in the captured run) while the simulator serves
  it, and the validator then flags its `@odata.id` (one property FAIL in the simulated run).
- Login: HTTP Basic, see above; the simulator's Session login is exercised by tests/sim/test_conf_clients.py
  (sushy, DMTF redfish).
"""


def render_doc(results: list[FlavorResult], ci_flavor: str = "openbmc") -> str:
    try:
        from importlib.metadata import version

        vv = version("redfish-service-validator")
    except Exception:  # pragma: no cover
        vv = "?"
    minutes = max(1, round(sum(max(r.sim.seconds, r.captured.seconds) for r in results) / 60 / 2))
    head = DOC_HEAD.format(version=vv, minutes=minutes, ci_flavor=ci_flavor,
                           date=time.strftime("%Y-%m-%d"), host=f"{os.cpu_count()} CPUs")
    notes = render_fail_classes(results)
    body = head + render_table(results) + "\n" + DOC_NOTES
    if notes:
        body += "\n## Where the FAILs are\n" + notes + "\n"
    return body


RUN_FIELDS = ("target", "passed", "warned", "failed", "not_tested", "returncode", "seconds", "error")


def result_to_json(r: FlavorResult) -> dict[str, Any]:
    return {"flavor": r.flavor, "mockup": r.mockup, "resources": r.resources, "ok": r.ok,
            "sim": {k: getattr(r.sim, k) for k in RUN_FIELDS} | {"fails": r.sim.fails, "warns": r.sim.warns},
            "captured": {k: getattr(r.captured, k) for k in RUN_FIELDS}
            | {"fails": r.captured.fails, "warns": r.captured.warns}}


def result_from_json(d: dict[str, Any]) -> FlavorResult:
    def run(x: dict[str, Any]) -> ValidatorRun:
        v = ValidatorRun(**({"target": ""} | {k: x[k] for k in RUN_FIELDS if k in x}))
        v.fails = [tuple(f) for f in x.get("fails", [])]
        v.warns = [tuple(f) for f in x.get("warns", [])]
        return v

    sim, captured = run(d["sim"]), run(d["captured"])
    if "sim_fails" in d:  # first format: FAIL rows beside the counts
        sim.fails = [tuple(f) for f in d["sim_fails"]]
        captured.fails = [tuple(f) for f in d["captured_fails"]]
    mockup, resources = d.get("mockup"), d.get("resources")
    if mockup is None or resources is None:
        from redfleet.sim import get_flavor

        tree = get_flavor(d["flavor"]).mockup_path()
        mockup, resources = tree.name, sum(1 for _ in tree.rglob("index.json"))
    return FlavorResult(d["flavor"], mockup, resources, sim, captured)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sim_conformance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flavors", default=",".join(FLAVORS), help="comma-separated (default: all six)")
    parser.add_argument("--jobs", type=int, default=3, help="flavors validated at the same time")
    parser.add_argument("--logdir", type=Path, default=None, help="keep the validator reports here")
    parser.add_argument("--write", action="store_true", help=f"rewrite {DOC.relative_to(ROOT)}")
    parser.add_argument("--details", action="store_true", help="print FAIL rows only the sim has")
    parser.add_argument("--http", action="store_true", help="plain HTTP simulated BMCs (default HTTPS)")
    parser.add_argument("--limit-s", type=float, default=3600.0, help="time limit of one validator run (s)")
    parser.add_argument("--json", type=Path, default=None, help="write the raw results as JSON")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None,
                        help="do not run: render earlier --json results (several files are merged, flavor order kept)")
    args = parser.parse_args(argv)
    flavors = [f.strip() for f in args.flavors.split(",") if f.strip()]
    if args.from_json:
        loaded = {d["flavor"]: result_from_json(d) for p in args.from_json for d in json.loads(p.read_text())}
        results = [loaded[f] for f in flavors if f in loaded]
    else:
        with contextlib.ExitStack() as stack:
            logroot = args.logdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rf-validator-")))
            results = asyncio.run(check_flavors(flavors, logroot, jobs=args.jobs, http=args.http,
                                                limit_s=args.limit_s))
    print(render_table(results))
    if args.details:
        print(render_fail_classes(results))
    if args.json:
        args.json.write_text(json.dumps([result_to_json(r) for r in results], indent=1))
    if args.write:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(render_doc(results))
        print(f"wrote {DOC}")
    for r in results:
        if r.sim.error or r.captured.error:
            print(f"{r.flavor}: {r.sim.error or r.captured.error}\n{(r.sim if r.sim.error else r.captured).log_tail}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())

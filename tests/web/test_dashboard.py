"""The dashboard end to end, in Debian's headless Chromium driven by Playwright.

One stack for the module, demo-style: a simulated fleet of 40 Redfish BMCs (every Redfish flavor, on 127.3.0.0/16)
inventoried into a SQLite fleet store, ``redfleet serve`` (create_app + uvicorn) collecting from it on 127.0.0.1,
and the simulator's in-band feeder. The stack runs its own event loop in a thread; the tests drive the browser
from the main thread. Screenshots of each page go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CHROMIUM = "/usr/bin/chromium"
NODES = 40
SIM_BASE = "127.3.0.1"
DEV = "web-e2e-admin"
VIEWER = "web-e2e-viewer-token"
OPERATOR = "web-e2e-operator-token"
RED, GREEN = "rgb(210, 60, 60)", "rgb(46, 157, 79)"  # app.css --bad, --ok
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(pred: Callable[[], Any], limit: float, what: str, every: float = 0.2) -> Any:
    end = time.monotonic() + limit
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {limit} s")
        time.sleep(every)


class Stack:
    """Simulator + store + serve + feeder on an event loop of their own (a thread)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.fleet: Any = None
        self.store: Any = None
        self.app: Any = None
        self.gpu_nodes: list[str] = []
        self.thread = threading.Thread(target=self._thread, name="web-e2e-stack", daemon=True)

    def start(self, limit: float = 120.0) -> None:
        self.thread.start()
        if not self.ready.wait(limit):
            raise RuntimeError(f"the simulated fleet and serve did not start within {limit} s")
        if self.error is not None:
            raise RuntimeError(f"the stack failed to start: {self.error!r}") from self.error

    def close(self) -> None:
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the stack's loop thread (the simulator's state belongs to it)."""
        assert self.loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def inject(self, node: str, kind: str, **kw: Any) -> Any:
        return self.call(lambda: self.fleet.dynamics.inject(node, kind, **kw))

    def _thread(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        import uvicorn

        from redfleet.agent.simfeed import SimFeeder
        from redfleet.api.app import create_app
        from redfleet.cli.serve import targets_from_store
        from redfleet.redfish import collect_inventory
        from redfleet.redfish.fleet import FleetOptions, run_fleet, targets_from_fleet
        from redfleet.remediation.policy import RUNGS, load_policy
        from redfleet.sim import SimConfig, SimFleet
        from redfleet.store import FleetStore, KeyRing
        from redfleet.store.tokens import create_token
        from redfleet.telemetry.collector.poller import Intervals

        # Every rung waits for an operator: a faulty node stays faulty (and red) until the test approves. Caps and
        # breaker sized for a 40-node fleet where the tests fault several nodes on purpose.
        RUNGS_NEED_APPROVAL = load_policy(None, overrides={
            "approval_required": list(RUNGS),
            "safety": {"max_concurrent_percent": 50, "max_per_rack": 20, "breaker": {"unhealthy_percent": 50}}})
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        cfg = SimConfig(nodes=NODES, port=0, base_address=SIM_BASE, time_scale=10.0, cache_dir=self.tmp / "certs",
                        seed=3)
        async with SimFleet(cfg) as fleet:
            self.fleet = fleet
            store = self.store = FleetStore(f"sqlite:///{self.tmp}/fleet.db",
                                            keyring=KeyRing.from_key(Fernet.generate_key().decode()), actor="web-e2e")
            ff = fleet.fleet_file()
            store.import_fleet(ff)
            results = await run_fleet(targets_from_fleet(ff), collect_inventory,
                                      options=FleetOptions(concurrency=64, tls_mode="pin", pin_store=store.pin_store()))
            for r in results:
                if r.ok and r.value is not None:
                    store.record_inventory(r.name, r.value, reason="web e2e sweep")
                    if r.value.gpus:
                        self.gpu_nodes.append(r.name)
            store.transaction(lambda s: (create_token(s, "web-viewer", "viewer", token=VIEWER),
                                         create_token(s, "web-operator", "operator", token=OPERATOR)))
            self._seed_conformance(store)
            self._seed_ssd(store)
            app = self.app = create_app(store, targets=targets_from_store(store), dev_token=DEV,
                                        intervals=Intervals(sensors=2.0, inventory=3600.0),
                                        receiver_url=self.url, evaluate_interval=0.1, persist_interval=0.2,
                                        remediation=RUNGS_NEED_APPROVAL, remediation_tick=0.2)
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                   access_log=False))
            serve_task = asyncio.create_task(server.serve())
            for _ in range(400):
                if server.started or serve_task.done():
                    break
                await asyncio.sleep(0.05)
            if not server.started:
                await serve_task
                raise RuntimeError(f"serve did not start on {self.url}")
            async with SimFeeder(self.url, DEV, fleet=fleet, interval=0.5, nvme_every=1e9) as feeder:
                feed_task = asyncio.create_task(feeder.run(self.stop))
                self.ready.set()
                try:
                    await self.stop.wait()
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(feed_task, 10)
                    server.should_exit = True
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(serve_task, 15)
                    store.close()

    @staticmethod
    def _seed_ssd(store: Any) -> None:
        """Three drives' SMART logs (nvme-cli smart-log fields) over four days: one wearing out fast, two quiet.
        Written before serve starts: the SSD API's own writes are not retried when SQLite is busy (reported)."""
        from datetime import UTC, datetime, timedelta

        from redfleet.store.ssd import append_sample

        start = datetime.now(UTC) - timedelta(days=4)
        wear = {"SSD-BAD": [(80, 0, 100), (85, 2, 90), (91, 9, 60), (96, 30, 20)],
                "SSD-OK1": [(3, 0, 100)] * 4, "SSD-OK2": [(10, 0, 100), (10, 0, 100), (11, 0, 100), (11, 0, 100)]}

        def write(session: Any) -> None:
            for drive, days in wear.items():
                for day, (used, errors, spare) in enumerate(days):
                    smart = {"critical_warning": 0, "temperature": 310, "avail_spare": spare, "spare_thresh": 10,
                             "percent_used": used, "data_units_read": 1000, "data_units_written": 2000 * (day + 1),
                             "power_on_hours": 1000 + 24 * day, "unsafe_shutdowns": 1, "media_errors": errors,
                             "num_err_log_entries": errors}
                    append_sample(session, drive, start + timedelta(days=day), smart=smart, source="sim",
                                  node_id="node-00005")

        store.transaction(write)

    @staticmethod
    def _seed_conformance(store: Any) -> None:
        """Two stored ``redfleet validate`` results (one conformant, one failing) for the conformance page."""
        from redfleet.store.profiles import save_profile_results

        def target(node: str, fail: bool) -> dict[str, Any]:
            row = {"resource": "Chassis", "uri": "/redfish/v1/Chassis/1", "property": "IndicatorLED",
                   "requirement": "ReadRequirement Mandatory", "verdict": "fail" if fail else "pass",
                   "found": None, "present": False, "message": "missing", "purpose": None}
            return {"target": node, "profile": "OCPBaselineHardwareManagement 1.0",
                    "summary": {"pass": 10, "warn": 0, "fail": 1 if fail else 0, "not_tested": 2},
                    "results": [row], "service": {"manufacturer": "Sim", "model": "SimBoard", "bmc_firmware": "1.0"}}

        store.transaction(lambda s: save_profile_results(
            s, [target("node-00001", False), target("node-00002", True)],
            profile_name="OCPBaselineHardwareManagement", profile_version="1.0", mode="strict"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mockups: Path) -> Iterator[Stack]:
    st = Stack(tmp_path_factory.mktemp("web-e2e"))
    st.start()
    try:
        yield st
    finally:
        st.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def page_as(browser: Any, stack: Stack, token: str, path: str = "/") -> Any:
    """A fresh browser context logged in with ``token`` through ``/?token=`` (the wall-screen login)."""
    ctx = browser.new_context(viewport={"width": 1366, "height": 850})
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    sep = "&" if "?" in path else "?"
    page.goto(f"{stack.url}{path}{sep}token={token}")
    assert "token=" not in page.url, page.url
    return page


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def has_route(stack: Stack, path: str, method: str = "get") -> bool:
    """Whether serve has the route (the remediation API lands separately; guarded until it does)."""
    return method in (stack.app.openapi().get("paths", {}).get(path) or {})


def api_status(page: Any, method: str, path: str, body: dict[str, Any] | None = None,
               csrf: bool = True) -> int:
    """The status of a fetch made from the page with only the dashboard cookie (as a script in it could)."""
    return int(page.evaluate(
        """async ([m, p, b, csrf]) => {
             const h = {"Content-Type": "application/json"};
             if (csrf) h["X-Redfleet-CSRF"] = "1";
             const r = await fetch(p, {method: m, headers: h, body: b ? JSON.stringify(b) : undefined,
                                       credentials: "same-origin"});
             return r.status; }""", [method, path, body, csrf]))


def cell_state(page: Any, node: str) -> str:
    cls = page.get_attribute(f'a.c[data-n="{node}"]', "class") or ""
    return next((c[2:] for c in cls.split() if c.startswith("s-")), "")


# ----------------------------------------------------------------------------------------------------- tests


def test_login_by_form_and_by_token_in_url(stack: Stack, browser: Any) -> None:
    ctx = browser.new_context()
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    # no cookie: any page sends to /login, remembering where
    page.goto(f"{stack.url}/ssd")
    assert "/login" in page.url and "next=%2Fssd" in page.url, page.url
    page.fill("#token", "not-a-token")
    page.click("#login-submit")
    assert "unknown or revoked" in page.inner_text("#login-error")
    shot(page, "login")
    page.fill("#token", VIEWER)
    page.click("#login-submit")
    page.wait_for_url(f"{stack.url}/ssd")
    cookie = next(c for c in ctx.cookies() if c["name"] == "redfleet_token")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict", cookie
    assert "viewer" in page.inner_text("#who")
    # the cookie is not readable by scripts
    assert "redfleet_token" not in page.evaluate("document.cookie")
    page.goto(f"{stack.url}/logout")
    assert "/login" in page.url
    page.goto(f"{stack.url}/")
    assert "/login" in page.url
    ctx.close()
    # ?token= logs in directly and the token leaves the URL; a bad one is refused
    page = page_as(browser, stack, OPERATOR, "/conformance")
    assert page.url == f"{stack.url}/conformance"
    assert "operator" in page.inner_text("#who")
    page.context.close()
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"{stack.url}/?token=wrong")
    assert "unknown or revoked" in page.inner_text("#login-error")
    ctx.close()


def test_overview_renders_every_node(stack: Stack, browser: Any) -> None:
    page = page_as(browser, stack, VIEWER)
    page.wait_for_selector("body[data-drawn]")
    names = page.eval_on_selector_all("a.c", "els => els.map(e => e.dataset.n)")
    assert sorted(names) == sorted(n.name for n in stack.fleet.nodes)
    assert len(names) == NODES
    counts = [int(x) for x in page.eval_on_selector_all("#counts .chip b", "els => els.map(e => e.textContent)")]
    assert sum(counts) == NODES, counts
    # nodes get judged (cells leave grey) as serve hears the BMCs and agents
    wait_for(lambda: page.eval_on_selector_all("a.c.s-unknown", "els => els.length") == 0, 40,
             "every cell judged (not grey)", every=0.5)
    colours = page.eval_on_selector_all("a.c.s-healthy", "els => els.map(e => getComputedStyle(e).backgroundColor)")
    assert colours and set(colours) == {GREEN}, set(colours)
    # rack layout: the simulator's racks are there, each a column of cells
    racks = page.eval_on_selector_all(".rack", "els => els.map(e => e.dataset.rack)")
    assert len(racks) >= 1 and all(racks), racks
    # search by name narrows the view; by serial too
    page.fill("#f-search", "node-00007")
    assert page.inner_text("#f-count").startswith("1 of 40")
    rec = next(r for r in stack.store.nodes() if r.serial)
    page.fill("#f-search", rec.serial.lower())
    assert int(page.inner_text("#f-count").split()[0]) >= 1
    assert rec.name in page.eval_on_selector_all("a.c:not(.off)", "els => els.map(e => e.dataset.n)")
    page.fill("#f-search", "")
    # filter by vendor: exactly that vendor's nodes stay lit
    vendors = [o for o in page.eval_on_selector_all("#f-vendor option", "els => els.map(e => e.value)") if o]
    assert vendors, "no vendors in the filter"
    page.select_option("#f-vendor", vendors[0])
    lit = set(page.eval_on_selector_all("a.c:not(.off)", "els => els.map(e => e.dataset.n)"))
    assert lit == {r.name for r in stack.store.nodes() if r.vendor == vendors[0]}
    page.select_option("#f-vendor", "")
    assert "remediation not enabled" in page.inner_text("#breaker") or "breaker:" in page.inner_text("#breaker")
    shot(page, "overview")
    # a node's inventory tables: its GPUs with their serials and locations, as the store has them
    node = stack.gpu_nodes[1]
    page.click(f'a.c[data-n="{node}"]')
    page.wait_for_url(f"{stack.url}/nodes/{node}")
    inv = stack.store.latest_inventory(node)
    gpus = page.inner_text('details[data-section="GPUs"]')
    serials = [g["serial"] for g in inv["gpus"] if g.get("serial")]
    assert serials and all(sn in gpus for sn in serials), (serials, gpus[:400])
    for section in ("Systems", "CPUs", "DIMMs", "Drives", "NICs", "PSUs", "Fans", "Firmware"):
        assert page.locator(f'details[data-section="{section}"]').count() == 1, section
    page.context.close()


def test_injected_fault_turns_cell_red_and_shows_on_node_page(stack: Stack, browser: Any) -> None:
    assert stack.gpu_nodes, "no GPU node in the simulated fleet"
    node = stack.gpu_nodes[0]
    page = page_as(browser, stack, VIEWER)
    page.wait_for_selector("body[data-drawn]")
    assert cell_state(page, node) != "unhealthy"
    stack.inject(node, "xid", gpu=0, xid=79)
    # the overview polls every 5 s: the cell turns red without a reload
    wait_for(lambda: cell_state(page, node) == "unhealthy", 30, f"{node}'s cell red after Xid 79", every=0.5)
    assert page.eval_on_selector(f'a.c[data-n="{node}"]', "e => getComputedStyle(e).backgroundColor") == RED
    shot(page, "overview-fault")
    page.click(f'a.c[data-n="{node}"]')
    page.wait_for_url(f"{stack.url}/nodes/{node}")
    assert page.inner_text("#health-state") == "unhealthy"
    reasons = page.inner_text("#reasons")
    assert "xid.79" in reasons and "gpu:0" in reasons, reasons
    page.wait_for_selector("#plots figure", timeout=20_000)
    # the remediation controller: the fault's workflow shows in the queue
    assert has_route(stack, "/api/v1/remediations")
    rp = page.context.new_page()
    rp.goto(f"{stack.url}/remediation")
    wait_for(lambda: rp.locator(f'#rem-approvals-table tr[data-node="{node}"]').count() > 0, 30,
             f"{node} waiting for approval in the remediation queue")
    shot(rp, "remediation-fault")
    rp.close()
    # and on the node page, its timeline of steps (the page polls every 5 s)
    page.wait_for_selector("#remediation .workflow tr.step", timeout=30_000)
    assert "xid.79" in page.inner_text("#remediation")
    shot(page, "node-fault")
    page.context.close()


def test_operator_can_act_from_node_page(stack: Stack, browser: Any) -> None:
    node = "node-00003"
    page = page_as(browser, stack, OPERATOR, f"/nodes/{node}")
    assert page.locator("#power-cycle").is_visible()
    # cancelling the confirmation does nothing
    page.click('button.lifecycle[data-state="maintenance"]')
    page.click("#confirm-cancel")
    wait_for(lambda: page.inner_text("#action-result") == "cancelled", 5, "the page says cancelled")
    assert next(r for r in stack.store.nodes() if r.name == node).state == "active"
    # a lifecycle change, confirmed, goes through the API with the cookie (and the CSRF header)
    page.click('button.lifecycle[data-state="maintenance"]')
    page.click("#confirm-ok")
    wait_for(lambda: page.inner_text("#action-result").startswith("done"), 10, "lifecycle change done")
    assert next(r for r in stack.store.nodes() if r.name == node).state == "maintenance"
    page.click('button.lifecycle[data-state="active"]')
    page.click("#confirm-ok")
    wait_for(lambda: next(r for r in stack.store.nodes() if r.name == node).state == "active", 10, "back to active")
    # the same request without the CSRF header is refused: a cross-site form could not send it
    assert api_status(page, "POST", f"/api/v1/nodes/{node}/state", {"state": "retired"}, csrf=False) == 403
    # power cycle, with its confirmation step
    page.click("#power-cycle")
    assert "Power cycle" in page.inner_text("#confirm-text")
    page.click("#confirm-ok")
    wait_for(lambda: page.inner_text("#action-result") not in ("", "working…"), 60, "power-cycle answered")
    shot(page, "node-operator")
    result = page.inner_text("#action-result")
    assert result.startswith("done: cycle"), result
    # boot override, once, from PXE: the simulated BMC's ComputerSystem shows it
    page.click("#boot-pxe")
    assert "PXE" in page.inner_text("#confirm-text")
    page.click("#confirm-ok")
    wait_for(lambda: page.inner_text("#action-result").startswith(("done: boot", "refused")), 60, "boot answered")
    assert page.inner_text("#action-result").startswith("done: boot pxe"), page.inner_text("#action-result")
    audit = [a for a in stack.store.audit_log(target=node) if a.action == "node.boot"]
    assert audit and audit[0].result == "ok" and audit[0].actor.startswith("api:")
    page.context.close()


def test_viewer_sees_no_actions_and_is_refused(stack: Stack, browser: Any) -> None:
    node = "node-00004"
    page = page_as(browser, stack, VIEWER, f"/nodes/{node}")
    assert page.locator("#actions").count() == 0
    assert page.locator("button.power").count() == 0
    shot(page, "node-viewer")
    # forcing the request from the page (cookie + CSRF header) is refused by the API's role check
    assert api_status(page, "POST", f"/api/v1/nodes/{node}/state", {"state": "maintenance"}) == 403
    if has_route(stack, "/api/v1/nodes/{name}/power", "post"):
        assert api_status(page, "POST", f"/api/v1/nodes/{node}/power", {"action": "cycle"}) == 403
    assert next(r for r in stack.store.nodes() if r.name == node).state == "active"
    # the remediation page shows no pause/resume/reset buttons to a viewer
    page.goto(f"{stack.url}/remediation")
    assert page.locator("#rem-actions").count() == 0
    page.context.close()


def test_remediation_ssd_and_conformance_pages(stack: Stack, browser: Any) -> None:
    page = page_as(browser, stack, OPERATOR, "/remediation")
    if has_route(stack, "/api/v1/remediation/status"):
        page.wait_for_selector("#rem-breaker")
        assert page.locator("#rem-pause").is_visible()
        # pause, confirmed: the controller says paused; resume again
        page.click("#rem-pause")
        page.click("#confirm-ok")
        wait_for(lambda: page.inner_text("#rem-paused") == "paused", 10, "remediation paused")
        shot(page, "remediation-paused")
        page.click("#rem-resume")
        page.click("#confirm-ok")
        wait_for(lambda: page.inner_text("#rem-paused") == "running", 10, "remediation resumed")
        # a fault of its own: its workflow waits for approval, and the operator approves it from the queue
        node = stack.gpu_nodes[-1]
        stack.inject(node, "xid", gpu=0, xid=79)
        button = f'#rem-approvals-table tr[data-node="{node}"] button.approve'
        wait_for(lambda: page.locator(button).count() > 0, 30, f"{node} waiting for approval")
        wid = page.get_attribute(button, "data-id")
        page.click(button)
        page.click("#confirm-ok")
        wait_for(lambda: page.locator(f'button.approve[data-id="{wid}"]').count() == 0, 15, f"#{wid} approved")
        assert page.inner_text("#action-result") == "done"
    else:
        page.wait_for_selector("#rem-disabled")
    shot(page, "remediation")
    page.goto(f"{stack.url}/ssd")
    page.wait_for_selector("#ssd-drives")
    ranked = page.eval_on_selector_all("#ssd-drives tr.drive", "els => els.map(e => e.dataset.id)")
    assert ranked[0] == "SSD-BAD" and set(ranked) == {"SSD-BAD", "SSD-OK1", "SSD-OK2"}, ranked
    first = page.inner_text('#ssd-drives tr[data-id="SSD-BAD"]')
    assert "REPLACE" in first and "uncorrectable" in first, first
    page.click('#ssd-drives tr[data-id="SSD-BAD"] a.drive-link')
    page.wait_for_selector("#ssd-plots figure")
    captions = page.eval_on_selector_all("#ssd-plots figcaption", "els => els.map(e => e.textContent)")
    assert {"percent_used", "avail_spare", "media_errors"} <= set(captions), captions
    shot(page, "ssd")
    page.goto(f"{stack.url}/conformance")
    page.wait_for_selector("#conf-nodes-table")
    plat = page.inner_text("#conf-platforms-table")
    assert "SimBoard" in plat and "Chassis IndicatorLED" in plat, plat
    row = page.inner_text('#conf-nodes-table tr[data-node="node-00002"]')
    assert "1 failing" in row, row
    assert "conformant" in page.inner_text('#conf-nodes-table tr[data-node="node-00001"]')
    shot(page, "conformance")
    page.context.close()

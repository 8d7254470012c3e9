"""CLI: ``redfleet remediation list|show|approve|pause|resume|reset-breaker|status|rma`` — talk to a running
``redfleet serve`` (its REST API), so that every change goes through the same roles and audit as the API.

Exit codes: 0 done; 1 the server refused or failed (the message says why); 2 bad usage; 3 not found;
4 the server could not be reached.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

DEFAULT_API = "http://127.0.0.1:8080"
STATE_COLOUR = {"running": "cyan", "waiting_approval": "magenta", "paused": "yellow", "succeeded": "green",
                "decommissioned": "red", "failed": "red"}

remediation = typer.Typer(help="Automated remediation on a running `redfleet serve`: workflows, approvals, the "
                               "global pause and the circuit breaker.", no_args_is_help=True)

ApiOpt = typer.Option(None, "--api", envvar="REDFLEET_API", help=f"serve's base URL (default {DEFAULT_API}).")
TokenOpt = typer.Option(None, "--token", envvar="REDFLEET_TOKEN", help="API token (viewer to read, operator to act).")
JsonOpt = typer.Option(False, "--json", help="Machine-readable output.")


class ApiError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def call(api: str | None, token: str | None, method: str, path: str, body: dict[str, Any] | None = None,
         timeout: float = 15.0) -> Any:
    base = (api or os.environ.get("REDFLEET_API") or DEFAULT_API).rstrip("/")
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail")
        except Exception:
            detail = exc.reason
        raise ApiError(f"{method} {path}: {exc.code} {detail}", 3 if exc.code == 404 else 1) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(f"cannot reach redfleet serve at {base}: {reason}", 4) from None


def _run(fn: Any) -> Any:
    try:
        return fn()
    except ApiError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code) from None


def _ago(ts: str | None) -> str:
    if not ts:
        return ""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")


def _dur(f: dict[str, Any]) -> str:
    if not f.get("finished_at"):
        return ""
    a = datetime.fromisoformat(f["started_at"].replace("Z", "+00:00"))
    b = datetime.fromisoformat(f["finished_at"].replace("Z", "+00:00"))
    return f"{(b - a).total_seconds():.1f}s"


@remediation.command("list")
def list_cmd(api: str = ApiOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
             state: str = typer.Option(None, "--state", help="running | waiting_approval | paused | succeeded | "
                                                             "decommissioned | failed"),
             node: str = typer.Option(None, "--node"), active: bool = typer.Option(False, "--active"),
             limit: int = typer.Option(50, "--limit", min=1, max=5000)) -> None:
    """Workflows, newest first."""
    q = {k: v for k, v in {"state": state, "node": node, "limit": limit,
                           "active": "true" if active else None}.items() if v is not None}
    flows = _run(lambda: call(api, token, "GET", "/api/v1/remediations?" + urllib.parse.urlencode(q)))
    if as_json:
        typer.echo(json.dumps(flows, indent=2))
        return
    t = Table(title=f"remediation workflows ({len(flows)})")
    for col in ("id", "node", "state", "phase", "rung", "trigger", "started", "took", "last step"):
        t.add_column(col)
    for f in flows:
        last = f["steps"][-1] if f["steps"] else {}
        colour = STATE_COLOUR.get(f["state"], "white")
        t.add_row(str(f["id"]), f["node"], f"[{colour}]{f['state']}[/]", f["phase"], f["rung"] or "",
                  str(f["trigger"].get("action") or ""), _ago(f["started_at"]), _dur(f),
                  f"{last.get('name', '')} {last.get('result', '')}")
    Console().print(t)


@remediation.command("show")
def show_cmd(workflow: int = typer.Argument(..., help="Workflow id."), api: str = ApiOpt, token: str = TokenOpt,
             as_json: bool = JsonOpt) -> None:
    """One workflow with every step, its result and duration."""
    f = _run(lambda: call(api, token, "GET", f"/api/v1/remediations/{workflow}"))
    if as_json:
        typer.echo(json.dumps(f, indent=2))
        return
    c = Console()
    colour = STATE_COLOUR.get(f["state"], "white")
    c.print(f"[bold]#{f['id']}[/] {f['node']}: [{colour}]{f['state']}[/] (phase {f['phase']}, rung {f['rung']}, "
            f"wlm {f['wlm']}{', dry run' if f['dry_run'] else ''})")
    for r in f["trigger"].get("reasons") or []:
        c.print(f"  why: {r.get('rule')}@{r.get('component')} — {r.get('message')} → {r.get('action')}")
    if f.get("approval"):
        c.print(f"  [magenta]waiting for approval of {f['approval']['rung']}[/]: "
                f"redfleet remediation approve {f['id']}")
    if f.get("error"):
        c.print(f"  [red]error[/]: {f['error']}")
    t = Table()
    for col in ("step", "rung", "result", "started", "duration", "detail"):
        t.add_column(col)
    for s in f["steps"]:
        detail = ", ".join(f"{k}={v}" for k, v in (s.get("detail") or {}).items())[:80]
        t.add_row(s["name"], s.get("rung") or "", s["result"], _ago(s["started_at"]),
                  f"{s['duration_s']:.2f}s" if s.get("duration_s") is not None else "", detail)
    c.print(t)
    if f.get("rma_id"):
        c.print(f"  RMA record #{f['rma_id']}: redfleet remediation rma {f['rma_id']} --json")


@remediation.command("approve")
def approve_cmd(workflow: int = typer.Argument(...), comment: str = typer.Option(None, "--comment"),
                api: str = ApiOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Approve the rung a workflow waits on (operator)."""
    f = _run(lambda: call(api, token, "POST", f"/api/v1/remediations/{workflow}/approve", {"comment": comment}))
    typer.echo(json.dumps(f, indent=2) if as_json else f"#{f['id']} {f['node']}: approved, now {f['state']}")


def _status_line(st: dict[str, Any]) -> str:
    if not st.get("enabled", True):
        return "automated remediation is not enabled on this server"
    b = st["breaker"]
    return (f"automation {'PAUSED (' + str(st.get('paused_reason')) + ')' if st['paused'] else 'running'}; "
            f"breaker {'TRIPPED: ' + str(b.get('reason')) if b['tripped'] else 'closed'}; "
            f"{st['active']} active, {st['waiting_approval']} waiting approval, {st.get('deferred', 0)} deferred")


@remediation.command("status")
def status_cmd(api: str = ApiOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Switches, breaker, caps, MTTR and per-phase durations."""
    st = _run(lambda: call(api, token, "GET", "/api/v1/remediation/status"))
    if as_json:
        typer.echo(json.dumps(st, indent=2))
        return
    c = Console()
    c.print(_status_line(st))
    if st.get("enabled", True):
        m = st["mttr_s"]
        c.print(f"MTTR over {m['count']} workflows: p50 {m['p50']} s, p90 {m['p90']} s, p99 {m['p99']} s")
        t = Table(title="per-phase durations (s)")
        for col in ("phase", "count", "p50", "p99"):
            t.add_column(col)
        for p, v in st["phases_s"].items():
            t.add_row(p, str(v["count"]), str(v["p50"]), str(v["p99"]))
        c.print(t)


@remediation.command("pause")
def pause_cmd(reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log)."),
              api: str = ApiOpt, token: str = TokenOpt) -> None:
    """Pause all automation (operator)."""
    typer.echo(_status_line(_run(lambda: call(api, token, "POST", "/api/v1/remediation/pause", {"reason": reason}))))


@remediation.command("resume")
def resume_cmd(api: str = ApiOpt, token: str = TokenOpt) -> None:
    """Resume automation after a pause (operator)."""
    typer.echo(_status_line(_run(lambda: call(api, token, "POST", "/api/v1/remediation/resume"))))


@remediation.command("reset-breaker")
def reset_breaker_cmd(api: str = ApiOpt, token: str = TokenOpt) -> None:
    """Close a tripped circuit breaker once the shared cause is understood (operator)."""
    typer.echo(_status_line(_run(lambda: call(api, token, "POST", "/api/v1/remediation/reset-breaker"))))


@remediation.command("rma")
def rma_cmd(record: int = typer.Argument(None, help="RMA id: its evidence bundle as JSON."),
            node: str = typer.Option(None, "--node"), api: str = ApiOpt, token: str = TokenOpt,
            as_json: bool = JsonOpt) -> None:
    """RMA records (decommissioned nodes); with an id, the record and its evidence bundle (JSON)."""
    if record is not None:
        typer.echo(json.dumps(_run(lambda: call(api, token, "GET", f"/api/v1/rma/{record}")), indent=2,
                              sort_keys=True))
        return
    q = urllib.parse.urlencode({"node": node} if node else {})
    recs = _run(lambda: call(api, token, "GET", f"/api/v1/rma?{q}"))
    if as_json:
        typer.echo(json.dumps(recs, indent=2))
        return
    t = Table(title=f"RMA records ({len(recs)})")
    for col in ("id", "node", "created", "workflow", "parts", "reason"):
        t.add_column(col)
    for r in recs:
        parts = ", ".join(f"{p.get('component')} {p.get('serial') or ''}".strip() for p in r["parts"])[:60]
        t.add_row(str(r["id"]), r["node"], _ago(r["created_at"]), str(r["workflow_id"]), parts, r["reason"][:60])
    Console().print(t)


def register(app: typer.Typer) -> None:
    app.add_typer(remediation, name="remediation")

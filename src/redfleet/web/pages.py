"""Dashboard routes: login by API token (form or ``?token=``), the cookie, and the pages.

The cookie holds the API token itself (HttpOnly, SameSite=Strict): the API and the pages then share one notion of
who is calling (:func:`redfleet.api.auth.principal` reads the same cookie), and revoking the token logs the browser
out at once, with no session table to keep in step. Pages are rendered on the server; the parts that must stay
live (rack view, plots, remediation, actions) are plain JavaScript calling the same REST API.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from redfleet.api.auth import COOKIE, Principal, resolve_token

HERE = Path(__file__).parent
COOKIE_MAX_AGE = 12 * 3600
DASHBOARD_ROLES = ("viewer", "operator", "admin")
SECTIONS = ("systems", "cpus", "gpus", "memory", "drives", "nics", "psus", "fans", "firmware")
SECTION_TITLES = {"systems": "Systems", "cpus": "CPUs", "gpus": "GPUs", "memory": "DIMMs", "drives": "Drives",
                  "nics": "NICs", "psus": "PSUs", "fans": "Fans", "firmware": "Firmware"}

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


def _when(ts: Any) -> str:
    if isinstance(ts, datetime):
        return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(ts, int | float) and math.isfinite(ts):
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "" if ts is None else str(ts)


_env.filters["when"] = _when


def table(items: list[Any]) -> tuple[list[str], list[list[str]]]:
    """An inventory section as a table: the scalar fields any item has (in first-seen order) and the rows; nested
    values are shown compactly rather than dropped."""
    cols: dict[str, None] = {}
    dicts = [i for i in items if isinstance(i, dict)]
    for item in dicts:
        for k, v in item.items():
            if v not in (None, "", [], {}):
                cols.setdefault(k, None)
    names = list(cols)

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, dict):
            return ", ".join(f"{k}={x}" for k, x in v.items() if x not in (None, "", [], {}))
        if isinstance(v, list):
            return ", ".join(cell(x) for x in v)
        return str(v)

    return names, [[cell(item.get(k)) for k in names] for item in dicts]


def render(template: str, request: Request, who: Principal | None, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    html = _env.get_template(template).render(
        request=request, who=who, can_act=bool(who and who.allows("operator")), path=request.url.path, **ctx)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def set_login(resp: Response, request: Request, token: str) -> Response:
    resp.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE, httponly=True, samesite="strict", path="/",
                    secure=_secure(request))
    return resp


def _safe_next(target: str | None) -> str:
    """Only a path on this server (no scheme, no //host): a login link must not redirect elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def _check(request: Request, token: str) -> tuple[Principal | None, str | None]:
    token = token.strip()
    if not token:
        return None, "enter an API token"
    try:
        p = await resolve_token(request, token)
    except Exception as exc:  # the store is down: say so instead of a 500
        return None, f"the token could not be checked: {exc}"
    if p is None:
        return None, "unknown or revoked API token"
    if p.role not in DASHBOARD_ROLES:
        return None, f"a {p.role} token cannot use the dashboard (viewer, operator or admin needed)"
    return p, None


async def current(request: Request) -> Principal | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    p, _ = await _check(request, token)
    return p


class LoginNeeded(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


async def page_user(request: Request) -> Principal:
    """The dashboard user, or a redirect: ``?token=`` logs in and drops the token from the URL; no valid cookie
    goes to /login."""
    q = request.query_params
    if "token" in q:
        p, err = await _check(request, q["token"])
        rest = [(k, v) for k, v in q.multi_items() if k != "token"]
        here = request.url.path + ("?" + urlencode(rest) if rest else "")
        if p is None:
            raise LoginNeeded(render("login.html", request, None, 401, error=err, next=here))
        raise LoginNeeded(set_login(RedirectResponse(here, status_code=303), request, q["token"].strip()))
    p = await current(request)
    if p is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        resp = RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
        if request.cookies.get(COOKIE):
            resp.delete_cookie(COOKIE, path="/")
        raise LoginNeeded(resp)
    return p


def mount(app: FastAPI) -> None:
    """Add the dashboard's pages and static files to the serve app."""
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(LoginNeeded)
    async def login_needed(_request: Request, exc: LoginNeeded) -> Response:
        return exc.response

    @app.get("/login", include_in_schema=False)
    async def login_form(request: Request) -> Response:
        return render("login.html", request, await current(request), next=_safe_next(request.query_params.get("next")),
                      error=None)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if origin not in (None, "null") and origin.split("://", 1)[-1] != host:
            return render("login.html", request, None, 403, error="cross-origin login refused", next="/")
        body = (await request.body())[:16384].decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        nxt = _safe_next(form.get("next"))
        p, err = await _check(request, form.get("token", ""))
        if p is None:
            return render("login.html", request, None, 401, error=err, next=nxt)
        return set_login(RedirectResponse(nxt, status_code=303), request, form["token"].strip())

    @app.api_route("/logout", methods=["GET", "POST"], include_in_schema=False)
    async def logout() -> Response:
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @app.get("/", include_in_schema=False)
    async def overview(request: Request) -> Response:
        who = await page_user(request)
        return render("overview.html", request, who)

    @app.get("/nodes/{name}", include_in_schema=False)
    async def node_page(request: Request, name: str) -> Response:
        who = await page_user(request)
        state = request.app.state
        hub = state.hub
        recs = await state.node_cache.get()
        rec = recs.get(name)
        if rec is None and name not in hub.nodes:
            recs = await state.node_cache.get(force=True)
            rec = recs.get(name)
            if rec is None:
                return render("notfound.html", request, who, 404, what=f"no node {name!r}")
        store = state.store
        inv: dict[str, Any] | None = None
        events: list[Any] = []
        history: list[Any] = []
        if store is not None and rec is not None:
            inv = await run_in_threadpool(store.latest_inventory, name)
            events = await run_in_threadpool(lambda: store.events(name, limit=100))
            from redfleet.store.health import health_history

            history = await run_in_threadpool(store.transaction, lambda s: health_history(s, name, limit=20),
                                              write=False)
        st = hub.nodes.get(name)
        sections = [(SECTION_TITLES[k], *table(list((inv or {}).get(k) or []))) for k in SECTIONS]
        bmc = (inv or {}).get("bmc") or {}
        return render("node.html", request, who, name=name, rec=rec, status=st, health=hub.health(name),
                      sections=sections, bmc=bmc, events=events, history=history, now=time.time())

    @app.get("/remediation", include_in_schema=False)
    async def remediation(request: Request) -> Response:
        return render("remediation.html", request, await page_user(request))

    @app.get("/ssd", include_in_schema=False)
    async def ssd(request: Request) -> Response:
        return render("ssd.html", request, await page_user(request))

    @app.get("/conformance", include_in_schema=False)
    async def conformance(request: Request) -> Response:
        return render("conformance.html", request, await page_user(request))

"""The simulator's control API (mounted by the core on ``--control-port``, loopback only).

    GET    /                              what is here
    GET    /nodes                         every node: flavor, addresses, power, OS state, active faults
    GET    /nodes/{name}                  one node, with its pending (lemon) refails
    GET    /nodes/{name}/inband           the in-band view: OS state, DCGM fields per GPU, Xid lines, NVMe logs
    GET    /nodes/{name}/metrics          the node's dcgm-exporter page (also served on host:9400 with --inband)
    POST   /nodes/{name}/faults           {"kind": "xid", "gpu": 2, "xid": 79, "persistent": false,
                                           "duration": "10m", "target": 1, "params": {...}}  -> 201 the fault
    DELETE /nodes/{name}/faults[/{id}]    clear all (or one) faults; ?repair=false keeps a lemon from refailing
    POST   /nodes/{name}/clear            same as DELETE /nodes/{name}/faults
    POST   /nodes/{name}/power            {"reset_type": "PowerCycle"} (the ComputerSystem.Reset of the BMC)
    POST   /nodes/{name}/gpu-reset        {"gpu": 2}: nvidia-smi --gpu-reset from the host -> the faults it cleared
    POST   /nodes/{name}/os-reboot        systemctl reboot from the host (a GracefulRestart) -> 202
    GET    /faults                        active faults fleet-wide, pending refails, recent history
    GET    /faults/catalog                every kind: target, surfaces, cleared_by_power_cycle
    POST   /scenario                      a scenario (YAML or JSON body) to run now; GET /scenario: its state
    GET    /healthz

Errors are JSON ``{"error": "..."}`` with 400 (bad request), 404 (unknown node or fault) or 409 (the node cannot
do it now: its OS is hung, down or booting, or the GPU is off the bus).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
import yaml
from aiohttp import web

from redfleet.sim.dyn_node import FleetDyn, UserError
from redfleet.sim.faults import CATALOG, PUBLIC_KINDS, TESTING_KINDS

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.sim.fleet import SimFleet

Doc = dict[str, Any]

_FD_KEY: web.AppKey[FleetDyn] = web.AppKey("fleet_dyn", FleetDyn)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data, option=orjson.OPT_INDENT_2),
                        content_type="application/json")


def _error(message: str, status: int = 400) -> web.Response:
    return _json({"error": message}, status)


def _fd(request: web.Request) -> FleetDyn:
    return request.app[_FD_KEY]


async def _body(request: web.Request) -> Doc:
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise UserError(f"body is neither JSON nor YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UserError("body must be a JSON object")
    return data


def _truthy(v: Any) -> bool:
    return str(v).lower() in ("1", "true", "yes", "on")


async def index(request: web.Request) -> web.Response:
    return _json({"service": "redfleet simulator control API", "kinds": list(PUBLIC_KINDS),
                  "testing_kinds": list(TESTING_KINDS), "doc": (__doc__ or "").strip().splitlines()})


async def nodes(request: web.Request) -> web.Response:
    fd = _fd(request)
    flt = request.query.get("faulty")
    out = []
    names = sorted(fd.faulty) if flt and _truthy(flt) else list(fd.nodes)
    for name in names:
        nd = fd.nodes[name]
        s = nd.summary()
        n = nd.node
        s["bmc_url"] = fd.fleet.bmc_url(n) if hasattr(fd.fleet, "bmc_url") else None
        if fd.inband is not None:
            s["metrics_url"] = fd.inband.url(name)
        out.append(s)
    return _json(out)


async def node(request: web.Request) -> web.Response:
    fd = _fd(request)
    nd = fd.node(request.match_info["name"])
    s = nd.summary()
    s["pending"] = [p for p in fd.pending_json() if p["node"] == nd.node.name]
    s["xid_lines"] = list(nd.xids or ())
    if fd.inband is not None:
        s["metrics_url"] = fd.inband.url(nd.node.name)
    return _json(s)


async def inband(request: web.Request) -> web.Response:
    from redfleet.sim.inband import inband_json

    fd = _fd(request)
    nd = fd.node(request.match_info["name"])
    return _json(inband_json(nd, nvme=request.query.get("nvme") not in ("0", "false")))


async def metrics(request: web.Request) -> web.Response:
    from redfleet.sim.inband import metrics_text

    nd = _fd(request).node(request.match_info["name"])
    if nd.os_state() in ("down", "hung"):
        return _error(f"{nd.node.name}: the host OS is {nd.os_state()}; its exporter does not answer", 503)
    return web.Response(body=metrics_text(nd).encode(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def add_fault(request: web.Request) -> web.Response:
    fd = _fd(request)
    name = request.match_info["name"]
    body = await _body(request)
    kind = body.get("kind")
    if not isinstance(kind, str):
        raise UserError("'kind' is required: one of " + ", ".join(PUBLIC_KINDS))
    f = fd.inject(name, kind, gpu=body.get("gpu"), xid=body.get("xid"), persistent=bool(body.get("persistent")),
                  target=body.get("target"), duration=body.get("duration"), params=body.get("params") or {})
    return _json(f.to_json(), 201)


async def clear(request: web.Request) -> web.Response:
    fd = _fd(request)
    name = request.match_info["name"]
    fid = request.match_info.get("fid")
    repair = request.query.get("repair", "true")
    kind = request.query.get("kind")
    if request.method == "POST":
        body = await _body(request)
        kind = body.get("kind", kind)
        repair = str(body.get("repair", repair))
        fid = body.get("id", fid)
    gone = fd.clear(name, fault_id=int(fid) if fid is not None else None, kind=kind, repair=_truthy(repair))
    return _json({"node": name, "cleared": [f.to_json() for f in gone],
                  "pending": [p for p in fd.pending_json() if p["node"] == name]})


async def power(request: web.Request) -> web.Response:
    fd = _fd(request)
    nd = fd.node(request.match_info["name"])
    body = await _body(request)
    rt = str(body.get("reset_type") or body.get("ResetType") or "PowerCycle")
    nd.node.reset(rt)
    return _json({"node": nd.node.name, "reset_type": rt, "power_state": nd.node.power_state}, 202)


async def gpu_reset(request: web.Request) -> web.Response:
    fd = _fd(request)
    name = request.match_info["name"]
    body = await _body(request)
    gpu = body.get("gpu")
    if isinstance(gpu, bool) or not isinstance(gpu, int):
        raise UserError(f"'gpu' must be a GPU index (an integer), not {gpu!r}")
    gone = fd.gpu_reset(name, gpu)
    return _json({"node": name, "gpu": gpu, "cleared": [f.to_json() for f in gone],
                  "pending": [p for p in fd.pending_json() if p["node"] == name]})


async def os_reboot(request: web.Request) -> web.Response:
    fd = _fd(request)
    name = request.match_info["name"]
    fd.os_reboot(name)
    nd = fd.node(name)
    return _json({"node": name, "power_state": nd.node.power_state, "os_state": nd.os_state()}, 202)


async def faults(request: web.Request) -> web.Response:
    fd = _fd(request)
    return _json({"active": fd.all_faults(), "pending": fd.pending_json(), "history": list(fd.history)[-100:],
                  "lemons": sorted(n for n in fd.nodes if fd.is_lemon(n))})


async def catalog(request: web.Request) -> web.Response:
    return _json([s.to_json() for s in CATALOG.values()])


async def scenario_post(request: web.Request) -> web.Response:
    from redfleet.sim.scenario import ScenarioRunner, parse_scenario

    fd = _fd(request)
    raw = await request.read()
    try:
        data = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as exc:
        raise UserError(f"scenario is not YAML/JSON: {exc}") from None
    steps = parse_scenario(data, known_nodes=set(fd.nodes))
    if fd.scenario is not None:
        fd.scenario.stop()
    fd.scenario = ScenarioRunner(fd, steps)
    fd.scenario.start()
    return _json(fd.scenario.state(), 201)


async def scenario_get(request: web.Request) -> web.Response:
    fd = _fd(request)
    return _json(fd.scenario.state() if fd.scenario is not None else {"steps": [], "running": False})


async def healthz(request: web.Request) -> web.Response:
    fd = _fd(request)
    return _json({"ok": True, "nodes": len(fd.nodes), "faulty": len(fd.faulty), "sim_time": round(fd.now(), 3)})


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        resp: web.StreamResponse = await handler(request)
        return resp
    except UserError as exc:
        return _error(str(exc), exc.status)
    except (ValueError, TypeError) as exc:
        return _error(str(exc), 400)


def build_control_app(fleet: SimFleet | FleetDyn) -> web.Application:
    """The control API for a fleet (the core mounts it on ``--control-port``)."""
    fd = fleet if isinstance(fleet, FleetDyn) else getattr(fleet, "dynamics", None)
    if not isinstance(fd, FleetDyn):
        raise RuntimeError("the control API needs the fleet's dynamics (SimConfig.dynamics must not be False)")
    app = web.Application(middlewares=[_errors])
    app[_FD_KEY] = fd
    r = app.router
    r.add_get("/", index)
    r.add_get("/healthz", healthz)
    r.add_get("/nodes", nodes)
    r.add_get("/nodes/{name}", node)
    r.add_get("/nodes/{name}/inband", inband)
    r.add_get("/nodes/{name}/metrics", metrics)
    r.add_post("/nodes/{name}/faults", add_fault)
    r.add_delete("/nodes/{name}/faults", clear)
    r.add_delete("/nodes/{name}/faults/{fid}", clear)
    r.add_post("/nodes/{name}/clear", clear)
    r.add_post("/nodes/{name}/power", power)
    r.add_post("/nodes/{name}/gpu-reset", gpu_reset)
    r.add_post("/nodes/{name}/os-reboot", os_reboot)
    r.add_get("/faults", faults)
    r.add_get("/faults/catalog", catalog)
    r.add_post("/scenario", scenario_post)
    r.add_get("/scenario", scenario_get)
    return app

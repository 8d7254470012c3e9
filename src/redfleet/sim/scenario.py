"""Scenario files: faults on a timeline.

A scenario is YAML (or JSON): a list of steps, or a mapping with ``steps:`` (``name:`` and ``description:``
are free text). Each step happens ``at`` a simulated time after the
scenario starts (``30s``, ``5m``, ``1h``, or seconds); ``--time-scale`` makes it come sooner in real time::

    name: gpu-trouble
    steps:
      - at: 30s
        node: node-00003
        kind: xid
        xid: 79
        gpu: 2
      - {at: 2m, node: node-00007, kind: fan, target: 1, duration: 10m}
      - {at: 5m, node: node-00003, action: clear}
      - {at: 6m, node: node-00003, action: power, reset_type: PowerCycle}
      - {at: 8m, nodes: [node-00010, node-00011], kind: bmc-throttle, params: {status: 503}}

``action`` is ``fault`` (the default when ``kind`` is given), ``clear`` or ``power``. ``persistent``,
``duration``, ``target`` (fan/PSU/DIMM/drive index), ``gpu`` and ``params`` are passed to the fault engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from redfleet.sim.dyn_node import UserError
from redfleet.sim.faults import CATALOG, parse_duration

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.sim.dyn_node import FleetDyn

log = logging.getLogger("redfleet.sim.scenario")


@dataclass
class Step:
    at: float
    node: str
    action: str = "fault"  # fault | clear | power
    kind: str | None = None
    gpu: int | None = None
    target: int | None = None
    xid: int | None = None
    persistent: bool = False
    duration: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    reset_type: str = "PowerCycle"
    done: bool = False
    result: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "node": self.node, "action": self.action, "kind": self.kind, "gpu": self.gpu,
                "target": self.target, "xid": self.xid, "persistent": self.persistent, "duration": self.duration,
                "done": self.done, "result": self.result}


def parse_scenario(data: Any, known_nodes: set[str] | None = None) -> list[Step]:
    """Steps from a loaded YAML/JSON document; raises UserError with the step number on a bad step."""
    if isinstance(data, dict):
        steps_raw = data.get("steps", data.get("faults"))
    else:
        steps_raw = data
    if not isinstance(steps_raw, list):
        raise UserError("a scenario is a list of steps (or a mapping with 'steps:')")
    steps: list[Step] = []
    for i, raw in enumerate(steps_raw, 1):
        if not isinstance(raw, dict):
            raise UserError(f"step {i}: expected a mapping like {{at: 30s, node: node-00001, kind: xid}}")
        try:
            at = parse_duration(raw.get("at", 0))
        except ValueError:
            raise UserError(f"step {i}: 'at' must be a time like 30s, 5m, 1h or seconds") from None
        names = raw.get("nodes") or [raw.get("node")]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise UserError(f"step {i}: give 'node: NAME' or 'nodes: [NAME, ...]'")
        kind = raw.get("kind")
        action = str(raw.get("action") or ("fault" if kind else "")).lower()
        if action not in ("fault", "clear", "power"):
            raise UserError(f"step {i}: action must be fault, clear or power")
        if action == "fault" and kind not in CATALOG:
            raise UserError(f"step {i}: unknown fault kind {kind!r}; known: {', '.join(CATALOG)}")
        dur = raw.get("duration")
        for name in names:
            if known_nodes is not None and name not in known_nodes:
                raise UserError(f"step {i}: no node named {name!r} in this fleet")
            steps.append(Step(
                at=at, node=name, action=action, kind=kind, gpu=_opt_int(raw.get("gpu")),
                target=_opt_int(raw.get("target")), xid=_opt_int(raw.get("xid")),
                persistent=bool(raw.get("persistent", False)),
                duration=parse_duration(dur) if dur not in (None, "") else None,
                params=dict(raw.get("params") or {}), reset_type=str(raw.get("reset_type") or "PowerCycle")))
    steps.sort(key=lambda s: s.at)
    return steps


def _opt_int(v: Any) -> int | None:
    return None if v is None or v == "" else int(v)


def load_scenario(path: str | Path) -> list[Step]:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read scenario {p}: {exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{p}: not valid YAML: {exc}") from None
    return parse_scenario(data)


class ScenarioRunner:
    """Runs steps at their simulated times (one asyncio task)."""

    def __init__(self, fleet_dyn: FleetDyn, steps: list[Step]) -> None:
        self.fd = fleet_dyn
        self.steps = steps
        self.started_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.started_at = self.fd.now()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def state(self) -> dict[str, Any]:
        return {"running": self.running, "started_at": self.started_at,
                "steps": [s.to_json() for s in self.steps]}

    def _do(self, s: Step) -> None:
        fd = self.fd
        try:
            if s.action == "fault":
                assert s.kind is not None
                f = fd.inject(s.node, s.kind, gpu=s.gpu, xid=s.xid, persistent=s.persistent, target=s.target,
                              duration=s.duration, params=s.params)
                s.result = f"fault {f.id}"
            elif s.action == "clear":
                gone = fd.clear(s.node, kind=s.kind)
                s.result = f"cleared {len(gone)}"
            else:
                fd.node(s.node).node.reset(s.reset_type)
                s.result = s.reset_type
        except UserError as exc:
            s.result = f"error: {exc}"
            log.warning("scenario step at %ss on %s: %s", s.at, s.node, exc)
        s.done = True

    async def _run(self) -> None:
        assert self.started_at is not None
        scale = float(self.fd.fleet.config.time_scale or 1.0)
        for s in self.steps:
            wait = (self.started_at + s.at - self.fd.now()) / scale
            if wait > 0:
                await asyncio.sleep(wait)
            with contextlib.suppress(Exception):
                self._do(s)

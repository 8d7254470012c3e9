"""The simulator's in-band side, fed into ``redfleet serve`` through the same ingest protocol as the real agent.

One :class:`~redfleet.model.ingest.IngestBatch` per simulated node per interval, built from the node's in-band
state: read in-process from ``fleet.dynamics`` when given a running :class:`~redfleet.sim.SimFleet`, or over the
simulator's control API (``GET /nodes/{n}/inband``) when given its URL.

- GPU fields become samples under their DCGM names; a GPU that fell off the bus (gpu-lost, Xid 79) is absent from
  ``gpus`` while ``gpus_expected`` keeps the full count; new ``NVRM: Xid`` lines become ``xid`` events (parsed by
  :mod:`redfleet.agent.kmsg`, so the simulator and the real agent agree).
- A hung or powered-off host: with ``hung="report"`` (default) the node's batches carry ``os_state`` ``hung`` /
  ``down`` and no samples (readings would be stale); with ``hung="stop"`` the node sends nothing at all, as a real
  agent on a hung host would (serve then sees the heartbeat stop).
- NVMe logs (nvme-cli JSON from the predict DriveModel) ride along every ``nvme_every`` seconds (0: never) and at
  once when a node's faults change (in-process); they cost ~25 ms per node to build and change slowly, so above
  200 nodes the first reports are spread over the period instead of all coming in the first round.
- Scale: batches are serialized with orjson straight from the in-band dict (the receiver validates them) and
  POSTed over a few keep-alive connections with HTTP/1.1 pipelining (:class:`~.pusher.PipelinedClient`).
  In-process, the GPU identity labels are read once per node, and ``refresh`` (default: every round) bounds how
  often each node's DCGM fields are recomputed: the simulator's model costs ~0.2 ms per GPU, so 10,000 nodes
  exactly at 1 Hz need several cores. With ``refresh=10`` a node's readings are held up to 10 s (batches still go
  out every interval, as a dcgm-exporter scraped faster than its own collection interval answers with held
  values), but any change of the node's fault set, Xid lines, power or boot state recomputes them at once, so a
  fault is never delayed.
- Remediation commands in serve's answers (``"commands"``: GPU reset, OS reboot) are run on the simulated node
  as its agent would run them (in-process: ``FleetDyn.gpu_reset`` / ``os_reboot``; remote: the control API's
  ``POST /nodes/{n}/gpu-reset`` and ``/os-reboot``), and each result rides in that node's next batch
  (``command_results``). A host whose OS is hung, down or booting has no agent running: the command gets no
  result at all (serve times it out). An id already run is answered from memory, never run twice. An answer
  with no commands costs one substring test.
"""


from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import orjson

from redfleet.agent.actions import Remembered, check_command, parse_commands
from redfleet.agent.fields import NVME_METRICS
from redfleet.agent.kmsg import bus_key, parse_dmesg_line, xid_event
from redfleet.agent.pusher import PipelinedClient, ingest_url
from redfleet.model.ingest import CommandResult
from redfleet.telemetry import columns

log = logging.getLogger("redfleet.agent.simfeed")

Doc = dict[str, Any]
TokenSpec = str | Mapping[str, str] | Callable[[str], str]
SIM_AGENT = "redfleet-sim"
_COMMANDS_KEY = b'"commands"'


@dataclass
class TickStats:
    nodes: int = 0  # batches built
    sent: int = 0  # accepted (2xx)
    failed: int = 0  # transport errors or non-2xx
    skipped: int = 0  # hung/down nodes with hung="stop"
    samples: int = 0
    events: int = 0
    seconds: float = 0.0
    commands: int = 0  # commands run on simulated nodes (results go in the next batch)
    build_s: float = 0.0  # reading the simulator + building and serializing batches
    send_s: float = 0.0  # HTTP
    statuses: dict[int, int] = field(default_factory=dict)

    def count(self, statuses: list[int]) -> None:
        """Tally the HTTP answers of a round (0: no answer)."""
        for code in statuses:
            self.statuses[code] = self.statuses.get(code, 0) + 1
            if 200 <= code < 300:
                self.sent += 1
            else:
                self.failed += 1


def _token_fn(token: TokenSpec) -> Callable[[str], str]:
    if isinstance(token, str):
        return lambda _n: token
    if isinstance(token, Mapping):
        return lambda n: token[n]
    return token


class NodeFeedState:
    __slots__ = ("body", "body_n", "body_up", "bus_to_gpu", "fields", "fields_at", "frag", "frag_gen", "frag_n",
                 "gen", "labels", "last_nvme", "nvme_sig", "seen_xids", "sig")

    def __init__(self) -> None:
        self.seen_xids: set[str] = set()
        self.last_nvme = -1e18
        self.bus_to_gpu: dict[str, int] = {}  # remembered, so an Xid of a GPU gone from the bus still names it
        self.labels: dict[int, Doc] = {}  # per GPU: static identity labels (UUID, bus, model), read once
        self.fields: dict[int, Doc | None] | None = None  # last computed DCGM fields per GPU (None: off the bus)
        self.fields_at = -1e18
        self.sig: tuple[Any, ...] | None = None
        self.gen = 0  # bumped at each computation of ``fields``
        self.frag: Any = None  # the GPU samples as JSON, timestamps a placeholder (see encode_batch); columnar:
        # (columns JSON, the row as float64 bytes)
        self.frag_n = 0
        self.frag_gen = -1
        self.nvme_sig: Any = None  # the fault set when NVMe logs were last read
        self.body: Any = None  # held mode: the last batch with placeholder times (SimFeeder._held_fast); columnar:
        # (header, rows) framed when sent
        self.body_n = 0
        self.body_up = False


def batch_from_inband(doc: Doc, state: NodeFeedState, now: float, *, nvme: bool = True,
                      hung: str = "report", gpu_samples: bool = True) -> Doc | None:
    """One batch (as a dict in IngestBatch's shape) from an in-band document; None when the node sends nothing.
    ``gpu_samples=False`` leaves the GPU field samples out (:func:`encode_batch` splices them in as bytes)."""
    os_state = doc.get("os_state") or "up"
    silent = os_state in ("hung", "down")
    if silent and hung == "stop":
        return None
    gpus: list[Doc] = []
    samples: list[Doc] = []
    by_bus = state.bus_to_gpu
    if not silent:
        for g in doc.get("gpus") or ():
            idx = int(g["gpu"])
            gpus.append({"gpu": idx, "uuid": g.get("UUID"), "pci_bus_id": g.get("pci_bus_id"),
                         "model": g.get("modelName")})
            k = bus_key(g.get("pci_bus_id"))
            if k:
                by_bus[k] = idx
            if gpu_samples:
                samples.extend([{"metric": k, "value": v, "ts": now, "gpu": idx}
                                for k, v in (g.get("fields") or {}).items()])
    events: list[Doc] = []
    lines = doc.get("xid_lines") or ()
    if lines:
        current = set(lines)
        for line in lines:
            if line in state.seen_xids:
                continue
            rec = parse_dmesg_line(line, 0.0)
            ev = xid_event(rec.message if rec else line, now, by_bus, raw=line)
            if ev is not None:
                events.append(ev.model_dump())
        state.seen_xids = current
    nvme_reports: list[Doc] = []
    if nvme and not silent and doc.get("nvme"):
        for d in doc["nvme"]:
            nvme_reports.append({k: d.get(k) for k in ("device", "serial", "model", "firmware", "smart", "ocp_c0h",
                                                       "raw")})
            smart = d.get("smart") or {}
            dev = str(d.get("device", "")).rsplit("/", 1)[-1]
            for key, metric in NVME_METRICS.items():
                v = smart.get(key)
                if isinstance(v, int | float):
                    samples.append({"metric": metric, "value": v - 273 if key == "temperature" else v, "ts": now,
                                    "labels": {"device": dev}})
    return {
        "protocol": 1, "node": doc["node"], "sent_at": now, "agent": SIM_AGENT, "source": "sim",
        "os_state": os_state, "uptime_s": doc.get("uptime_s"), "driver_version": doc.get("driver_version"),
        "gpus": gpus, "gpus_expected": doc.get("gpus_expected"), "samples": samples, "events": events,
        "nvme": nvme_reports,
    }


_TS_SENTINEL = -1.2345678901234567e-300
_TS_KEY = b'"ts":' + orjson.dumps(_TS_SENTINEL)
_NOW = -7.654321098765432e-299  # placeholders in cached bodies: sent_at and sample times, uptime
_NOW_B = orjson.dumps(_NOW)
_UP = -3.141592653589793e-297
_UP_B = orjson.dumps(_UP)


def encode_batch(doc: Doc, state: NodeFeedState, now: float, *, nvme: bool = True,
                 hung: str = "report", columnar: bool = False) -> tuple[bytes, int, int] | None:
    """The batch as JSON bytes (and its sample and event counts), as :func:`batch_from_inband` would give it.
    The GPU samples are serialized once per computation of the node's fields (``doc["_gen"]``) with a placeholder
    timestamp, then only the timestamp is replaced: a held node costs a byte replace, not 300 dicts.
    ``columnar``: the GPU fields as one row of columns in the binary framing (:mod:`redfleet.telemetry.columns`;
    sent with its Content-Type), the row packed once per computation of the fields."""
    b = batch_from_inband(doc, state, now, nvme=nvme, hung=hung, gpu_samples=False)
    if b is None:
        return None
    if columnar:
        return _encode_columnar(doc, b, state, now)
    frag = b"[]"
    n_gpu = 0
    if doc.get("os_state") not in ("hung", "down"):
        gen = doc.get("_gen")
        if gen is not None and state.frag_gen == gen and state.frag is not None:
            frag, n_gpu = state.frag, state.frag_n
        else:
            rows = [{"metric": k, "value": v, "ts": _TS_SENTINEL, "gpu": int(g["gpu"])}
                    for g in doc.get("gpus") or () for k, v in (g.get("fields") or {}).items()]
            frag, n_gpu = orjson.dumps(rows), len(rows)
            if gen is not None:
                state.frag, state.frag_n, state.frag_gen = frag, n_gpu, gen
    body = orjson.dumps(b)
    if n_gpu:
        inner = frag[1:-1].replace(_TS_KEY, b'"ts":' + orjson.dumps(now))
        body = body.replace(b'"samples":[', b'"samples":[' + inner + (b"," if b["samples"] else b""), 1)
    return body, n_gpu + len(b["samples"]), len(b["events"])


def _encode_columnar(doc: Doc, b: Doc, state: NodeFeedState, now: float) -> tuple[bytes, int, int]:
    """The binary columnar body (:data:`redfleet.telemetry.columns.BINARY_TYPE`): see :func:`columnar_parts`."""
    header, rows, n, n_events = columnar_parts(doc, b, state, now)
    return columns.frame(header, rows), n, n_events


def columnar_parts(doc: Doc, b: Doc, state: NodeFeedState, now: float) -> tuple[bytes, bytes, int, int]:
    """(JSON header, float64 rows, values, events) of a node's batch ``b`` with the GPU fields of ``doc`` as one
    row of columns; the row is packed once per computation of the fields (``doc["_gen"]``)."""
    gpus = [] if doc.get("os_state") in ("hung", "down") else [g for g in doc.get("gpus") or () if g.get("fields")]
    if not gpus:
        return orjson.dumps(b), b"", len(b["samples"]), len(b["events"])
    gen = doc.get("_gen")
    if gen is not None and state.frag_gen == gen and state.frag is not None:
        cols, rows = state.frag
        n_gpu = state.frag_n
    else:
        metrics = list(gpus[0]["fields"])
        if any(list(g["fields"]) != metrics for g in gpus):  # not one layout: the per-sample encoding
            b["samples"] = [{"metric": k, "value": v, "ts": now, "gpu": int(g["gpu"])}
                            for g in gpus for k, v in g["fields"].items()] + b["samples"]
            return orjson.dumps(b), b"", len(b["samples"]), len(b["events"])
        row = [float(g["fields"][m]) for g in gpus for m in metrics]
        cols = orjson.dumps({"metrics": metrics, "gpus": [int(g["gpu"]) for g in gpus]})
        rows = np.asarray(row, dtype="<f8").tobytes()
        n_gpu = len(row)
        if gen is not None:
            state.frag, state.frag_n, state.frag_gen = (cols, rows), n_gpu, gen
    header = orjson.dumps(b)[:-1] + b',"columns":' + cols + b',"ts":[' + orjson.dumps(now) + b"]}"
    return header, rows, n_gpu + len(b["samples"]), len(b["events"])


class SimFeeder:
    """Feeds ``serve`` (``server``: its base URL) with one batch per simulated node per ``interval``.

    Source: ``fleet`` (a started SimFleet, read in-process) or ``control`` (the simulator's control API URL).
    ``token``: one bearer token for every node, a {node: token} mapping, or a function node → token.
    ``refresh``: seconds a node's DCGM fields may be held in-process while its fault state is unchanged (see the
    module docstring); default: recomputed every round.
    """

    def __init__(self, server: str, token: TokenSpec, *, fleet: Any = None, control: str | None = None,
                 nodes: list[str] | None = None, interval: float = 1.0, nvme_every: float = 300.0,
                 hung: str = "report", connections: int = 8, depth: int = 64, timeout: float = 10.0,
                 control_concurrency: int = 32, refresh: float | None = None, chunk: int = 500,
                 stagger_nvme: bool | None = None, columnar: bool = False) -> None:
        if (fleet is None) == (control is None):
            raise ValueError("give either fleet (in-process) or control (the simulator's control API URL)")
        if hung not in ("report", "stop"):
            raise ValueError(f"hung must be 'report' or 'stop', not {hung!r}")
        self.url = ingest_url(server)
        self.token = _token_fn(token)
        self.fleet = fleet
        self.control = control.rstrip("/") if control else None
        self.nodes = nodes
        self.interval = interval
        # (named hold_s, not refresh: subclasses elsewhere (benchmarks/serve_bench.py) keep their own `refresh`)
        self.hold_s = refresh or 0.0  # 0: recomputed every round
        self.nvme_every = nvme_every
        self.hung = hung
        self.columnar = columnar
        self.client = PipelinedClient(self.url, connections=connections, depth=depth, timeout=timeout,
                                      content_type=columns.BINARY_TYPE if columnar else "application/json")
        self.state: dict[str, NodeFeedState] = {}
        self.control_concurrency = control_concurrency
        self.chunk = max(1, chunk)
        # first NVMe reports: all in the first round for small fleets (tests, demo), spread over nvme_every for
        # large ones (the DriveModel costs ~25 ms per node)
        self.stagger_nvme = stagger_nvme if stagger_nvme is not None else len(self.node_names()) > 200
        self.session: aiohttp.ClientSession | None = None
        self.totals = TickStats()
        self.ticks = 0
        self.cmd_results: dict[str, list[Doc]] = {}  # node -> command results for its next batch
        self.cmd_done: dict[str, Remembered] = {}  # node -> results of the command ids it ran

    async def close(self) -> None:
        await self.client.close()
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def __aenter__(self) -> SimFeeder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- reading the simulator ---------------------------------------------------------------------------------
    def node_names(self) -> list[str]:
        if self.nodes is not None:
            return self.nodes
        if self.fleet is not None:
            return [n.name for n in self.fleet.nodes]
        return []

    async def _control_names(self) -> list[str]:
        assert self.session is not None
        async with self.session.get(f"{self.control}/nodes") as resp:
            resp.raise_for_status()
            doc = await resp.json()
        items = doc if isinstance(doc, list) else doc.get("nodes", doc.get("Members", []))
        return [n["name"] if isinstance(n, dict) else str(n) for n in items]

    def _local_doc(self, name: str, st: NodeFeedState, wall: float, due_nvme: bool) -> Doc:
        """The node's in-band document, as :func:`redfleet.sim.inband.inband_json` builds it, with the GPU labels
        cached and the fields held up to ``refresh`` seconds while nothing about the node's faults changed."""
        from redfleet.sim.inband import DRIVER_VERSION, gpu_fields, gpu_labels

        fd = self.fleet.dynamics
        if fd is None or not hasattr(fd, "node"):
            raise RuntimeError("the SimFleet has no dynamic side (start it with dynamics enabled)")
        nd = fd.node(name)
        t = nd.now()
        state = nd.os_state(t)
        xids = nd.xids
        faults = tuple((f.kind, f.target, f.xid, f.started) for f in nd.faults)
        sig = (nd.node.power_state, nd.boot_at, faults, len(xids) if xids else 0, xids[-1] if xids else None, state)
        # NVMe logs when due, and at once when the node's faults changed (an NVMe fault must not wait)
        with_nvme = self.nvme_every > 0 and (due_nvme or (st.nvme_sig is not None and st.nvme_sig != faults))
        gpus_ix = nd.flv.ix.gpus
        if st.fields is None or sig != st.sig or wall - st.fields_at >= self.hold_s:
            first = st.fields is None
            st.fields = {g.index: gpu_fields(nd, g.index, t) for g in gpus_ix} \
                if state in ("up", "booting", "hung") else {}
            # the first time, nodes start at spread-out points of their hold window: no fleet-wide recompute burst
            st.fields_at = wall - (zlib.crc32(name.encode()) % 1000) / 1000.0 * self.hold_s if first else wall
            st.sig = sig
            st.gen += 1
        gpus: list[Doc] = []
        for g in gpus_ix:
            f = st.fields.get(g.index)
            if f is None:
                continue
            lab = st.labels.get(g.index)
            if lab is None:
                lab = st.labels[g.index] = gpu_labels(nd, g.index)
            gpus.append({**lab, "fields": f})
        return {
            "node": name, "os_state": state, "power_state": nd.node.power_state,
            "uptime_s": None if nd.boot_at is None or state == "down" else round(max(0.0, t - nd.boot_at), 1),
            "driver_version": DRIVER_VERSION if gpus_ix else None, "gpus": gpus, "gpus_expected": len(gpus_ix),
            "xid_lines": list(xids or ()), "nvme": self._nvme(nd, t, st, wall, faults) if with_nvme else [],
            "stale": state == "hung", "_gen": st.gen,
        }

    def _learn_buses(self, name: str, st: NodeFeedState) -> None:
        with contextlib.suppress(Exception):
            for g in self.fleet.dynamics.node(name).flv.ix.gpus:
                st.bus_to_gpu[f"0000:{int(g.pci_bus):02x}:00"] = int(g.index)

    @staticmethod
    def _nvme(nd: Any, t: float, st: NodeFeedState, wall: float, faults: Any) -> list[Doc]:
        from redfleet.sim.inband import nvme_drives

        st.last_nvme = wall
        st.nvme_sig = faults
        return nvme_drives(nd, t)

    async def _inband_remote(self, name: str, with_nvme: bool, sem: asyncio.Semaphore) -> Doc | None:
        assert self.session is not None
        async with sem:
            try:
                async with self.session.get(f"{self.control}/nodes/{name}/inband") as resp:
                    if resp.status != 200:
                        return None
                    return await resp.json(loads=orjson.loads)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("in-band state of %s: %s", name, exc)
                return None

    # ---- one round ---------------------------------------------------------------------------------------------
    async def _names(self) -> list[str]:
        if self.fleet is not None or self.nodes is not None:
            return self.node_names()
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return await self._control_names()

    async def build(self, now: float | None = None, names: list[str] | None = None) -> list[tuple[str, Doc]]:
        """The batches of one round for ``names`` (default: every node), as (node name, batch dict)."""
        now = time.time() if now is None else now
        if names is None:
            names = await self._names()
        out: list[tuple[str, Doc]] = []
        for name, doc, with_nvme in await self._docs(now, names):
            if doc is None:
                continue
            st = self.state[name]
            b = batch_from_inband(doc, st, now, nvme=with_nvme, hung=self.hung)
            if with_nvme and doc.get("nvme"):
                st.last_nvme = now
            if b is not None:
                out.append((name, b))
        return out

    async def _docs(self, now: float, names: list[str]) -> list[tuple[str, Doc | None, bool]]:
        docs: list[tuple[str, Doc | None, bool]] = []
        if self.fleet is not None:
            for name in names:
                st = self.state.get(name)
                if st is None:
                    st = self.state[name] = NodeFeedState()
                    self._learn_buses(name, st)
                    if self.stagger_nvme:  # first reports spread over the period, not all in the first round
                        st.last_nvme = now - (zlib.crc32(name.encode() + b"nvme") % 1000) / 1000.0 * self.nvme_every
                doc = self._local_doc(name, st, now, now - st.last_nvme >= self.nvme_every)
                docs.append((name, doc, bool(doc["nvme"])))
        else:
            if self.session is None:
                self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
            sem = asyncio.Semaphore(self.control_concurrency)
            flags = []
            for name in names:
                st = self.state.setdefault(name, NodeFeedState())
                flags.append(self.nvme_every > 0 and now - st.last_nvme >= self.nvme_every)
            got = await asyncio.gather(*(self._inband_remote(n, f, sem) for n, f in zip(names, flags, strict=True)))
            docs = [(n, d, f) for n, d, f in zip(names, got, flags, strict=True)]
        return docs

    async def tick(self, now: float | None = None) -> TickStats:
        """One round: a batch per node, built, serialized and sent ``chunk`` nodes at a time (bounded memory)."""
        t0 = time.perf_counter()
        now = time.time() if now is None else now
        names = await self._names()
        st = TickStats()
        for i in range(0, len(names), self.chunk):
            part = names[i:i + self.chunk]
            b0 = time.perf_counter()
            items: list[tuple[bytes, str]] = []
            who: list[str] = []  # the node of each item
            if self.fleet is not None and self.hold_s > 0:
                part = self._held_fast(now, part, st, items, who)
            for name, doc, with_nvme in await self._docs(now, part):
                if doc is None:
                    continue
                nst = self.state[name]
                enc = encode_batch(doc, nst, now, nvme=with_nvme, hung=self.hung, columnar=self.columnar)
                if with_nvme and doc.get("nvme"):
                    nst.last_nvme = now
                if enc is None:
                    continue
                body, n_samples, n_events = enc
                st.samples += n_samples
                st.events += n_events
                items.append((body, self.token(name)))
                who.append(name)
                if self.hold_s > 0 and self.fleet is not None:
                    self._cache_body(doc, nst, with_nvme, n_events)
            if self.cmd_results:
                self.attach_results(items, who)
            b1 = time.perf_counter()
            st.nodes += len(items)
            answers: list[bytes] = []
            statuses = await self.client.post_many(items, answers=answers)
            st.build_s += b1 - b0
            st.send_s += time.perf_counter() - b1
            st.commands += await self.handle_answers(who, answers)
            st.count(statuses)
        st.skipped = len(names) - st.nodes
        st.seconds = time.perf_counter() - t0
        self._account(st)
        return st

    # ---- held nodes: the whole batch cached as bytes ----------------------------------------------------------
    def _held_fast(self, now: float, names: list[str], st: TickStats, items: list[tuple[bytes, str]],
                   who: list[str] | None = None) -> list[str]:
        """Batches of nodes whose fields are held and whose state did not change: the cached body with the time
        stamps (and uptime) replaced. Returns the nodes that need the full path."""
        fd = self.fleet.dynamics
        rest: list[str] = []
        now_b = orjson.dumps(now)
        for name in names:
            ns = self.state.get(name)
            if ns is None or ns.body is None or now - ns.fields_at >= self.hold_s or (
                    self.nvme_every > 0 and now - ns.last_nvme >= self.nvme_every):
                rest.append(name)
                continue
            nd = fd.node(name)
            t = nd.now()
            state = nd.os_state(t)
            xids = nd.xids
            sig = (nd.node.power_state, nd.boot_at, tuple((f.kind, f.target, f.xid, f.started) for f in nd.faults),
                   len(xids) if xids else 0, xids[-1] if xids else None, state)
            if sig != ns.sig:
                rest.append(name)
                continue
            held = ns.body
            body = (held[0] if self.columnar else held).replace(_NOW_B, now_b)
            if ns.body_up:
                up = None if nd.boot_at is None or state == "down" else round(max(0.0, t - nd.boot_at), 1)
                body = body.replace(_UP_B, orjson.dumps(up))
            if self.columnar:
                body = columns.frame(body, held[1])
            st.samples += ns.body_n
            items.append((body, self.token(name)))
            if who is not None:
                who.append(name)
        return rest

    def _cache_body(self, doc: Doc, ns: NodeFeedState, with_nvme: bool, n_events: int) -> None:
        """Keep this round's batch as bytes with placeholder times, for the rounds its fields are held. Not when it
        carried events or NVMe logs (those go out once)."""
        ns.body = None
        if with_nvme or n_events or doc.get("_gen") is None:
            return
        up = doc.get("uptime_s")
        held = {**doc, "uptime_s": _UP if up is not None else None}
        if self.columnar:
            b = batch_from_inband(held, ns, _NOW, nvme=False, hung=self.hung, gpu_samples=False)
            if b is None or b["events"]:
                return
            header, rows, n, _ = columnar_parts(held, b, ns, _NOW)
            ns.body, ns.body_n, ns.body_up = (header, rows), n, up is not None
            return
        enc = encode_batch(held, ns, _NOW, nvme=False)
        if enc is None or enc[2]:
            return
        ns.body, ns.body_n, ns.body_up = enc[0], enc[1], up is not None

    def _account(self, st: TickStats) -> None:
        self.ticks += 1
        t = self.totals
        t.nodes += st.nodes
        t.sent += st.sent
        t.failed += st.failed
        t.skipped += st.skipped
        t.samples += st.samples
        t.events += st.events
        t.seconds += st.seconds
        t.commands += st.commands
        t.build_s += st.build_s
        t.send_s += st.send_s
        for k, v in st.statuses.items():
            t.statuses[k] = t.statuses.get(k, 0) + v

    # ---- remediation commands from serve's answers ---------------------------------------------------------------
    def attach_results(self, items: list[tuple[bytes, str]], who: list[str]) -> None:
        """Splice each node's pending command results into its batch (``who[i]`` is the node of ``items[i]``; a
        batch is a JSON object, its closing brace the last byte). A subclass with its own round calls this before
        ``post_many`` and :meth:`handle_answers` after it."""
        for i, name in enumerate(who):
            res = self.cmd_results.pop(name, None)
            if res:
                body, tok = items[i]
                items[i] = (body[:-1] + b',"command_results":' + orjson.dumps(res) + b"}", tok)

    async def handle_answers(self, who: list[str], answers: list[bytes]) -> int:
        """Run the commands in serve's answers (``answers[i]`` answered ``who[i]``'s batch); returns how many."""
        todo = [(who[i], a) for i, a in enumerate(answers) if _COMMANDS_KEY in a]
        return await self._run_commands(todo) if todo else 0

    async def _run_commands(self, todo: list[tuple[str, bytes]]) -> int:
        """Run the commands in these answers; returns how many ran (or were answered from memory)."""
        n = 0
        for name, answer in todo:
            for cmd in parse_commands(answer):
                cid = str(cmd["id"])
                done = self.cmd_done.setdefault(name, Remembered(64))
                r = done.get(cid)
                if r is None:
                    problem = check_command(cmd)
                    got = (False, problem) if problem is not None else await self._execute(name, cmd)
                    if got is None:  # the node's agent is not running (hung, down, booting): no answer
                        log.info("simfeed: %s cannot run command %s (%s): its OS is not up", name, cid,
                                 cmd.get("kind"))
                        continue
                    r = CommandResult(id=cid, ok=got[0], message=got[1], finished_at=time.time())
                    done.put(r)
                    log.info("simfeed: %s ran command %s (%s, reason: %s): %s", name, cid, cmd.get("kind"),
                             cmd.get("reason"), r.message)
                self.cmd_results.setdefault(name, []).append(r.model_dump())
                n += 1
        return n

    async def _execute(self, name: str, cmd: Doc) -> tuple[bool, str] | None:
        """(ok, message) of running one command on the simulated node; None when its agent could not run it."""
        kind = cmd["kind"]
        gpu = cmd.get("gpu")
        if self.fleet is not None:
            from redfleet.sim.dyn_node import UserError

            fd = self.fleet.dynamics
            try:
                nd = fd.node(name)
            except UserError as exc:
                return False, str(exc)
            if nd.os_state() != "up":
                return None
            try:
                if kind == "gpu-reset":
                    index = int(gpu or 0)  # check_command made sure it is an index
                    gone = fd.gpu_reset(name, index)
                    bus = nd.flv.ix.gpus[index].pci_bus
                    msg = f"GPU 00000000:{int(bus):02X}:00.0 was successfully reset."
                    if gone:
                        msg += " (simulator: cleared " + ", ".join(sorted({f.kind for f in gone})) + ")"
                else:
                    fd.os_reboot(name)
                    msg = "reboot requested (systemctl reboot)"
            except UserError as exc:
                return False, str(exc)
            st = self.state.get(name)
            if st is not None:  # the readings changed (counters reset, faults gone): no held values
                st.sig = None
                st.body = None
            return True, msg
        return await self._execute_remote(name, kind, gpu)

    async def _execute_remote(self, name: str, kind: str, gpu: Any) -> tuple[bool, str] | None:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        url = f"{self.control}/nodes/{name}/" + ("gpu-reset" if kind == "gpu-reset" else "os-reboot")
        try:
            async with self.session.post(url, json={"gpu": gpu} if kind == "gpu-reset" else {}) as resp:
                doc = await resp.json(loads=orjson.loads, content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # the simulator is out of reach: no answer now; serve delivers the command again
            log.warning("simfeed: %s: %s", url, exc)
            return None
        err = str(doc.get("error", "")) if isinstance(doc, dict) else ""
        if status == 409 and "host OS is" in err:
            return None
        if status >= 300:
            return False, err or f"simulator answered {status}"
        if kind == "gpu-reset":
            cleared = sorted({c.get("kind") for c in doc.get("cleared") or ()})
            return True, f"GPU {gpu} was successfully reset." + (
                f" (simulator: cleared {', '.join(cleared)})" if cleared else "")
        return True, "reboot requested (systemctl reboot)"

    async def run(self, stop: asyncio.Event | None = None, *, rounds: int | None = None) -> TickStats:
        """Tick every ``interval`` seconds until ``stop`` is set (or ``rounds`` rounds); returns the totals.
        A round that takes longer than the interval is followed at once by the next (no burst catch-up)."""
        stop = stop or asyncio.Event()
        next_at = time.monotonic()
        n = 0
        while not stop.is_set() and (rounds is None or n < rounds):
            try:
                st = await self.tick()
                if st.failed:
                    log.warning("simfeed: %d of %d batches not accepted (%s; last transport error: %s)",
                                st.failed, st.nodes, st.statuses, self.client.last_error)
            except Exception:
                log.exception("simfeed round failed")
            n += 1
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at = time.monotonic()
                delay = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        return self.totals

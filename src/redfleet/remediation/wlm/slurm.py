"""Slurm behind :class:`~redfleet.remediation.wlm.base.WorkloadManager`, through ``scontrol`` and ``squeue``.

Slurm 22.05 (Debian bookworm) has no ``scontrol --json`` and ``sinfo --json`` ignores node filters (it dumps the
whole cluster), so the adapter reads one node with ``scontrol show node -o NODE`` and parses its one-line
``Key=Value`` form; the free-text ``Reason`` is cut out first using Slurm's own ``[user@time]`` suffix.

Rules (from the remediation issue):

* a cordon is ours only when the Reason starts with :data:`REASON_PREFIX`; an operator's DRAIN/DOWN is left alone
  and never resumed. A DOWN that slurmctld set by itself (``Not responding`` and the like) is nobody's decision, so
  cordon takes it over with our reason;
* a node that never registered (state UNKNOWN) cannot be RESUMEd: it is set DOWN (keeping our reason) first;
* every call has a timeout; transient failures (controller not answering) are retried a bounded number of times.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from redfleet.remediation.wlm.base import REASON_PREFIX, DrainProgress, WlmError, WlmNodeStatus

# Reasons slurmctld writes by itself when it downs or drains a node; taking these over is not undoing an operator.
SLURM_OWN_REASONS = frozenset(
    {
        "not responding",
        "node unexpectedly rebooted",
        "kill task failed",
        "batch job complete failure",
        "prolog error",
        "epilog error",
        "node silently failed and came back",
    }
)
# stderr fragments that mean "the controller did not answer, try again" rather than "it said no".
_TRANSIENT = (
    "unable to contact slurm controller",
    "socket timed out",
    "zero bytes were transmitted",
    "connection refused",
    "connection reset",
    "resource temporarily unavailable",
    "slurmctld not responding",
    "communication connection failure",
    "transport endpoint",
)
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# "Reason=<text> [user@2026-11-22T20:28:54]": the text runs to Slurm's suffix and the end of the line (or to one of
# the few fields 22.05 prints after it), so spaces and "=" inside the text do not split it.
_REASON = re.compile(
    r"(?:^|\s)Reason=(?P<text>.*?)(?: \[(?P<user>[^\[\]@\s]+)@(?P<time>[0-9T:\-]+)\])?(?=\s*$|\s+(?:Comment|Extra)=)"
)
_FIELD = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=(\S*)")
_BUSY_FLAGS = ("ALLOCATED", "MIXED", "COMPLETING")
_CORDON_FLAGS = ("DRAIN", "DOWN", "FAIL")


@dataclass(frozen=True)
class _Run:
    rc: int
    out: str
    err: str


def parse_node_line(line: str) -> dict[str, str]:
    """Parse one ``scontrol show node -o`` line into ``{key: value}`` (``Reason`` without its ``[user@time]``;
    the suffix is kept as ``ReasonUser`` / ``ReasonTime``)."""
    fields: dict[str, str] = {}
    text = line.strip()
    match = _REASON.search(text)
    if match:
        fields["Reason"] = match.group("text").strip()
        if match.group("user"):
            fields["ReasonUser"] = match.group("user")
            fields["ReasonTime"] = match.group("time")
        text = text[: match.start()] + " " + text[match.end() :]
    for key, value in _FIELD.findall(text):
        fields.setdefault(key, value)
    return fields


def status_from_fields(node: str, fields: dict[str, str], running: int = 0) -> WlmNodeStatus:
    """Turn parsed scontrol fields into :class:`WlmNodeStatus` (pure; the tests use it without Slurm too)."""
    state = fields.get("State", "")
    parts = _state_parts(state)
    reason = fields.get("Reason") or None
    cordoned = any(flag in parts for flag in _CORDON_FLAGS)
    ours = cordoned and reason is not None and reason.startswith(REASON_PREFIX)
    busy = any(flag in parts for flag in _BUSY_FLAGS)
    return WlmNodeStatus(
        node=node,
        known=True,
        cordoned=cordoned,
        ours=ours,
        drained=cordoned and not busy and running == 0,
        reason=reason,
        state=state or None,
        running=running,
        raw=dict(fields),
    )


def _state_parts(state: str) -> set[str]:
    # "DOWN*+DRAIN" -> {"DOWN", "DRAIN", "NOT_RESPONDING"}; "*" is Slurm's short mark for not responding.
    parts = set()
    for part in state.upper().split("+"):
        if part.endswith("*"):
            parts.add("NOT_RESPONDING")
            part = part.rstrip("*")
        if part:
            parts.add(part)
    return parts


def _is_slurm_own(reason: str | None) -> bool:
    return reason is not None and reason.strip().lower() in SLURM_OWN_REASONS


class SlurmManager:
    """Drain/resume Slurm nodes for redfleet with ``scontrol`` (see the module docstring for the rules)."""

    name = "slurm"

    def __init__(
        self,
        *,
        scontrol: str = "scontrol",
        conf: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        node_map: Callable[[str], str] | None = None,
        concurrency: int = 8,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.scontrol = scontrol
        # squeue is found beside scontrol when scontrol is given as a path.
        folder = os.path.dirname(scontrol)
        self.squeue = os.path.join(folder, "squeue") if folder else "squeue"
        self.conf = conf
        self.timeout = timeout
        self.retries = retries
        self.node_map = node_map or (lambda node: node)
        self.backoff = 0.5  # seconds before the first retry; doubles after each
        # slurmctld answers one RPC at a time under its locks: a hundred simultaneous scontrol processes are no faster
        # than a few, and each would spend its timeout queueing. So at most `concurrency` run at once, first come
        # first served, and the timeout covers only a command's own run.
        self.concurrency = concurrency
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        # Reads of many nodes at once (a hundred workflows polling their drains) share one `scontrol show node`:
        # requests arriving within `batch_window` go out as one call naming up to `batch_max` nodes.
        self.batch_window = 0.02
        self.batch_max = 200
        self._reads: dict[str, list[asyncio.Future[dict[str, str] | None]]] = {}
        self._read_flush: asyncio.Task[None] | None = None
        self._updates: dict[tuple[str, ...], list[tuple[str, str, asyncio.Future[None]]]] = {}
        self._update_flush: asyncio.Task[None] | None = None
        self.show_calls = 0
        self.update_calls = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- running Slurm's commands --
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.conf:
            env["SLURM_CONF"] = str(self.conf)
        return env

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:  # a semaphore belongs to one event loop
            self._slots = (loop, asyncio.Semaphore(self.concurrency))
        return self._slots[1]

    async def _run_once(self, argv: list[str]) -> _Run:
        async with self._semaphore():
            return await self._run_now(argv)

    async def _run_now(self, argv: list[str]) -> _Run:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env(),
            )
        except FileNotFoundError as exc:
            raise WlmError(
                f"{argv[0]} not found: is the Slurm client (slurm-client) installed?", retryable=False
            ) from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), timeout=5)
            return _Run(rc=-1, out="", err=f"no answer within {self.timeout:g} s")
        rc = proc.returncode if proc.returncode is not None else -1
        return _Run(rc=rc, out=out.decode(errors="replace"), err=err.decode(errors="replace").strip())

    async def _run(self, argv: list[str], node: str, what: str) -> _Run:
        """Run with bounded retries on transient failures; return the final result (rc may be non-zero for a
        definite refusal, which the caller interprets). Raise WlmError once retries are spent."""
        delay = self.backoff
        last = _Run(rc=-1, out="", err="")
        for attempt in range(self.retries + 1):
            last = await self._run_once(argv)
            if last.rc == 0 or not _transient(last):
                return last
            if attempt < self.retries:
                await asyncio.sleep(delay)
                delay *= 2
        raise WlmError(
            f"slurm: {what} for node {node} failed after {self.retries + 1} attempt(s): {last.err or 'no output'}",
            node=node,
            retryable=True,
        )

    def _slurm_name(self, node: str) -> str:
        name = self.node_map(node)
        # A hostlist expression ("n[1-4]", "a,b") would make scontrol act on several nodes at once.
        if not _NODE_NAME.match(name):
            raise WlmError(f"slurm: node {node} maps to {name!r}, which is not a single Slurm node name",
                           node=node, retryable=False)
        return name

    # -- reading --
    async def _show(self, node: str, name: str) -> dict[str, str] | None:
        fut: asyncio.Future[dict[str, str] | None] = asyncio.get_running_loop().create_future()
        self._reads.setdefault(name, []).append(fut)
        if self._read_flush is None or self._read_flush.done():
            self._read_flush = asyncio.create_task(self._flush_reads())
        return await fut

    async def _flush_reads(self) -> None:
        await asyncio.sleep(self.batch_window)
        while self._reads:
            names = list(self._reads)[: self.batch_max]
            waiting = {n: self._reads.pop(n) for n in names}
            try:
                found = await self._show_many(names)
            except Exception as exc:
                for futs in waiting.values():
                    for f in futs:
                        if not f.done():
                            f.set_exception(exc)
                continue
            for n, futs in waiting.items():
                for f in futs:
                    if not f.done():
                        f.set_result(found.get(n))

    async def _show_many(self, names: list[str]) -> dict[str, dict[str, str] | None]:
        """One ``scontrol show node -o a,b,c``; a name Slurm does not know makes it refuse the whole list, so then
        each is asked alone (and the unknown one answers None)."""
        if len(names) == 1:
            return {names[0]: await self._show_one(names[0], names[0])}
        self.show_calls += 1
        run = await self._run([self.scontrol, "show", "node", "-o", ",".join(names)], names[0],
                              f"scontrol show node ({len(names)} nodes)")
        if run.rc != 0:
            results = await asyncio.gather(*(self._show_one(n, n) for n in names), return_exceptions=True)
            out: dict[str, dict[str, str] | None] = {}
            for n, r in zip(names, results, strict=True):
                if isinstance(r, BaseException):
                    raise r
                out[n] = r
            return out
        by_name: dict[str, dict[str, str] | None] = dict.fromkeys(names)
        for line in run.out.splitlines():
            fields = parse_node_line(line)
            if fields.get("NodeName") in by_name:
                by_name[fields["NodeName"]] = fields
        return by_name

    async def _show_one(self, node: str, name: str) -> dict[str, str] | None:
        self.show_calls += 1
        run = await self._run([self.scontrol, "show", "node", "-o", name], node, "scontrol show node")
        if run.rc != 0:
            said = (run.err or run.out).strip()  # 22.05 prints "Node X not found" on stdout
            if "not found" in said.lower() or "invalid node name" in said.lower():
                return None
            raise WlmError(f"slurm: scontrol show node {name} (node {node}) failed: {said or f'rc={run.rc}'}",
                           node=node, retryable=False)
        for line in run.out.splitlines():
            fields = parse_node_line(line)
            if fields.get("NodeName") == name:
                return fields
        raise WlmError(f"slurm: scontrol show node {name} (node {node}) printed no line for it: {run.out[:200]!r}",
                       node=node, retryable=False)

    async def _running(self, node: str, name: str, fields: dict[str, str]) -> int:
        """Jobs still on the node. Only asks squeue when scontrol shows the node busy (saves a call per status)."""
        parts = _state_parts(fields.get("State", ""))
        alloc = _int(fields.get("CPUAlloc"))
        if alloc == 0 and not any(flag in parts for flag in _BUSY_FLAGS):
            return 0
        run = await self._run(
            [self.squeue, "-h", "-w", name, "-t", "RUNNING,COMPLETING,SUSPENDED,CONFIGURING,STOPPED", "-o", "%i"],
            node,
            "squeue",
        )
        if run.rc != 0:
            raise WlmError(f"slurm: squeue -w {name} (node {node}) failed: {run.err or f'rc={run.rc}'}",
                           node=node, retryable=False)
        jobs = sum(1 for line in run.out.splitlines() if line.strip())
        # A job that is completing may have left squeue while its CPUs are still allocated: count it as one.
        return max(jobs, 1 if alloc > 0 or "COMPLETING" in parts else 0)

    async def status(self, node: str) -> WlmNodeStatus:
        name = self._slurm_name(node)
        fields = await self._show(node, name)
        if fields is None:
            return WlmNodeStatus(node=node, known=False, cordoned=False, ours=False, drained=False)
        return status_from_fields(node, fields, await self._running(node, name, fields))

    async def _known_status(self, node: str, action: str) -> tuple[str, WlmNodeStatus]:
        name = self._slurm_name(node)
        fields = await self._show(node, name)
        if fields is None:
            raise WlmError(f"slurm: cannot {action} node {node}: Slurm has no node named {name}",
                           node=node, retryable=False)
        return name, status_from_fields(node, fields, await self._running(node, name, fields))

    # -- changing --
    async def _update(self, node: str, name: str, *args: str) -> None:
        """Updates with the same arguments (a storm's DRAINs with one reason, RESUMEs) arriving within the batch
        window go out as one ``scontrol update NodeName=a,b,c ...``; if Slurm refuses the list, each node is
        updated alone, so a refusal is still that node's own."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._updates.setdefault(args, []).append((node, name, fut))
        if self._update_flush is None or self._update_flush.done():
            self._update_flush = asyncio.create_task(self._flush_updates())
        await fut

    async def _flush_updates(self) -> None:
        await asyncio.sleep(self.batch_window)
        while self._updates:
            args, waiting = self._updates.popitem()
            for i in range(0, len(waiting), self.batch_max):
                chunk = waiting[i:i + self.batch_max]
                task = asyncio.create_task(self._apply_update(args, chunk))
                self._tasks.add(task)  # held until done: a task nobody references may be collected mid-way
                task.add_done_callback(self._tasks.discard)

    async def _apply_update(self, args: tuple[str, ...], chunk: list[tuple[str, str, asyncio.Future[None]]]) -> None:
        names = list(dict.fromkeys(n for _, n, _ in chunk))
        try:
            if len(names) > 1:
                self.update_calls += 1
                run = await self._run([self.scontrol, "update", f"NodeName={','.join(names)}", *args], chunk[0][0],
                                      f"scontrol update {args[0]} ({len(names)} nodes)")
                if run.rc == 0:
                    for _, _, f in chunk:
                        if not f.done():
                            f.set_result(None)
                    return
            results = await asyncio.gather(*(self._update_one(node, name, *args) for node, name, _ in chunk),
                                           return_exceptions=True)
            for (_, _, f), r in zip(chunk, results, strict=True):
                if f.done():
                    continue
                if isinstance(r, BaseException):
                    f.set_exception(r)
                else:
                    f.set_result(None)
        except BaseException as exc:
            for _, _, f in chunk:
                if not f.done():
                    f.set_exception(exc)

    async def _update_one(self, node: str, name: str, *args: str) -> None:
        self.update_calls += 1
        run = await self._run([self.scontrol, "update", f"NodeName={name}", *args], node, f"scontrol update {args[0]}")
        if run.rc != 0:
            raise WlmError(f"slurm: scontrol update NodeName={name} {args[0]} (node {node}) refused: "
                           f"{run.err or f'rc={run.rc}'}", node=node, retryable=False)

    async def cordon(self, node: str, reason: str) -> WlmNodeStatus:
        name, current = await self._known_status(node, "cordon")
        if current.ours and "DRAIN" in _state_parts(current.state or ""):
            return current  # already ours: idempotent, keep the first reason and its timestamp
        if current.cordoned and not current.ours and not _is_slurm_own(current.reason):
            return current  # an operator's drain/down: leave it and their reason alone
        await self._update(node, name, "State=DRAIN", f"Reason={_our_reason(reason)}")
        _, after = await self._known_status(node, "cordon")
        return after

    async def drain(self, node: str) -> DrainProgress:
        _, current = await self._known_status(node, "drain")
        if not current.cordoned:
            return DrainProgress(done=False, running=current.running,
                                 message=f"node {node} is not cordoned in Slurm (State={current.state}); cordon first")
        if current.drained:
            return DrainProgress(done=True, running=0, message=f"node {node} is drained (State={current.state})")
        return DrainProgress(
            done=False,
            running=current.running,
            message=f"node {node}: {current.running} job(s) still running (State={current.state})",
        )

    async def uncordon(self, node: str) -> bool:
        name, current = await self._known_status(node, "uncordon")
        if not current.cordoned or not current.ours:
            return False  # not cordoned, or an operator's cordon: never undo it
        parts = _state_parts(current.state or "")
        # Slurm refuses RESUME for a node that never registered (UNKNOWN); DOWN first makes it resumable. DOWN on a
        # node with jobs would kill them, so only when nothing runs there.
        if ("UNKNOWN" in parts or "FUTURE" in parts) and current.running == 0:
            await self._update(node, name, "State=DOWN", f"Reason={current.reason}")
        try:
            await self._update(node, name, "State=RESUME")
        except WlmError as exc:
            if "invalid node state" not in str(exc).lower():
                raise
            # Look again before anything else: a timed-out attempt may have gone through, and Slurm's refusal can
            # itself clear the drain. Only a node that is still ours and idle gets the DOWN-then-RESUME path.
            _, now = await self._known_status(node, "uncordon")
            if not now.cordoned:
                return True
            if not now.ours or now.running:
                raise
            await self._update(node, name, "State=DOWN", f"Reason={now.reason}")
            await self._update(node, name, "State=RESUME")
        return True

    async def set_verdict(self, node: str, healthy: bool, message: str) -> None:
        return None  # Slurm has nowhere to show it beyond our Reason

    async def close(self) -> None:
        return None


def _our_reason(reason: str) -> str:
    # One line, no control characters, bounded: Slurm stores the Reason verbatim and prints it in one-line output.
    text = " ".join(reason.split())[:200]
    return f"{REASON_PREFIX} {text}".rstrip() if text else REASON_PREFIX


def _transient(run: _Run) -> bool:
    if run.rc == -1:
        return True  # our own timeout
    err = run.err.lower()
    return any(fragment in err for fragment in _TRANSIENT)


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


"""Remediation commands on the node: what the agent does with the commands in serve's ingest answers.

serve puts the commands waiting for this node in its answer to each batch (``"commands": [{"id", "kind", "gpu",
"reason", "issued_at", "delivery"}]``, see :mod:`redfleet.remediation.commands`); the agent answers each with a
:class:`~redfleet.model.ingest.CommandResult` in its next batch.

- Nothing runs unless the agent was started with ``--allow-remediation``; otherwise every command is answered
  "refused" at once, so serve's workflow moves on instead of waiting for a timeout.
- ``gpu-reset`` runs ``nvidia-smi --gpu-reset -i N`` (120 s timeout; nvidia-smi refuses while processes use the
  GPU, and its words become the result's message); ``reboot`` runs ``systemctl reboot`` (or the configured command).
- Each id runs once. serve delivers a command again when it saw no result (an answer or a batch can be lost), so
  the agent keeps the ids it ran with their results and answers a repeat from there. With a journal file the ids
  also survive the agent itself: a reboot kills the agent before its result may have gone out, and the command
  delivered again after the boot must be answered "done", not rebooted a second time (the journal's boot id tells
  a reboot that happened from one that did not).
- Every command is logged with who asked (serve's URL), what, why (the reason serve gave) and the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import orjson

from redfleet.model.ingest import CommandResult

log = logging.getLogger("redfleet.agent.actions")

Doc = dict[str, Any]

GPU_RESET_TIMEOUT_S = 120.0
REBOOT_TIMEOUT_S = 60.0
REMEMBER = 256  # ids (with their results) kept for answering repeats
JOURNAL_KEEP = 200  # records kept when the journal file is compacted
REFUSED = "refused: remediation is disabled on this agent (start it with --allow-remediation to allow it)"
_KEY = b'"commands"'


def parse_commands(body: bytes) -> list[Doc]:
    """The commands in an ingest answer (an empty list for an answer with none, cheaply: most answers carry
    none, and a feeder reads 10,000 of them a second)."""
    if _KEY not in body:
        return []
    if b'"commands":[]' in body:
        return []
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        log.warning("serve's answer is not JSON: %r", body[:200])
        return []
    cmds = doc.get("commands") if isinstance(doc, dict) else None
    if not isinstance(cmds, list):
        return []
    out = []
    for c in cmds:
        if isinstance(c, dict) and isinstance(c.get("id"), str) and c["id"]:
            out.append(c)
        else:
            log.warning("ignoring a command without an id: %r", c)
    return out


def check_command(cmd: Doc) -> str | None:
    """What is wrong with a command (None when it can be run)."""
    kind = cmd.get("kind")
    if kind == "gpu-reset":
        gpu = cmd.get("gpu")
        if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
            return f"gpu-reset needs a GPU index, got {gpu!r}"
        return None
    if kind == "reboot":
        return None
    return f"unknown command kind {kind!r} (this agent knows gpu-reset and reboot)"


def describe(cmd: Doc) -> str:
    return f"reset GPU {cmd.get('gpu')}" if cmd.get("kind") == "gpu-reset" else str(cmd.get("kind"))


class Remembered:
    """Results of the commands already run, by id (bounded; oldest forgotten first)."""

    def __init__(self, keep: int = REMEMBER) -> None:
        self.keep = keep
        self.results: OrderedDict[str, CommandResult] = OrderedDict()

    def get(self, cid: str) -> CommandResult | None:
        return self.results.get(cid)

    def put(self, r: CommandResult) -> None:
        self.results[r.id] = r
        while len(self.results) > self.keep:
            self.results.popitem(last=False)


def current_boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


class CommandJournal:
    """An append-only JSON-lines file of the commands this agent started and finished, so a command that was
    running when the agent stopped (a reboot always is) is not run again after the agent comes back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, Doc] = {}
        self._lines = 0
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                    self.records[rec["id"]] = {**self.records.get(rec["id"], {}), **rec}
                    self._lines += 1

    def write(self, rec: Doc) -> None:
        self.records[rec["id"]] = {**self.records.get(rec["id"], {}), **rec}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())  # the reboot that follows must not lose this line
        self._lines += 1
        if self._lines > 5 * JOURNAL_KEEP:
            self._compact()

    def _compact(self) -> None:
        keep = list(self.records.items())[-JOURNAL_KEEP:]
        self.records = dict(keep)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for _, r in keep))
        os.replace(tmp, self.path)
        self._lines = len(keep)

    def outcome_after_restart(self, cid: str, boot_id: str | None) -> CommandResult | None:
        """The result of a command this journal knows, for a repeat delivery: its recorded result, or, for one
        started and never finished (the agent stopped while it ran), what can be said without running it again."""
        rec = self.records.get(cid)
        if rec is None:
            return None
        if "ok" in rec:
            return CommandResult(id=cid, ok=bool(rec["ok"]), message=str(rec.get("message", "")),
                                 finished_at=float(rec.get("finished_at") or time.time()))
        now = time.time()
        if rec.get("kind") == "reboot":
            if boot_id and rec.get("boot_id") and boot_id != rec["boot_id"]:
                return CommandResult(id=cid, ok=True, message="rebooted: the host is back with a new boot id",
                                     finished_at=now)
            return CommandResult(id=cid, ok=False, message="reboot was started but the host did not reboot "
                                 "(same boot id); not started again", finished_at=now)
        return CommandResult(id=cid, ok=False, message="the agent stopped while this command ran; its outcome is "
                             "unknown and it is not run again", finished_at=now)


class CommandRunner:
    """Runs the commands in serve's answers (in the background: the heartbeat never waits for a GPU reset) and
    holds their results for the next batch (:meth:`drain`)."""

    def __init__(self, *, allow: bool = False, server: str | None = None, nvidia_smi: str = "nvidia-smi",
                 reboot_command: Sequence[str] = ("systemctl", "reboot"),
                 gpu_reset_timeout: float = GPU_RESET_TIMEOUT_S, reboot_timeout: float = REBOOT_TIMEOUT_S,
                 journal: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        if not reboot_command:
            raise ValueError("reboot_command must name a program")
        self.allow = allow
        self.server = server or "serve"
        self.nvidia_smi = nvidia_smi
        self.reboot_command = list(reboot_command)
        self.gpu_reset_timeout = gpu_reset_timeout
        self.reboot_timeout = reboot_timeout
        self.clock = clock
        self.journal = CommandJournal(journal) if journal is not None else None
        self.boot_id = current_boot_id()
        self.done = Remembered()
        self.ready: list[CommandResult] = []  # results for the next batch
        self.running: dict[str, asyncio.Task[None]] = {}
        # held around nvidia-smi --gpu-reset: the agent releases its own NVML session there (nvidia-smi refuses to
        # reset a GPU any other client holds, a monitoring one included)
        self.gpu_reset_guard: Callable[[], AbstractAsyncContextManager[Any]] | None = None

    # ---- from serve's answers --------------------------------------------------------------------------------
    def on_answer(self, body: bytes) -> None:
        """Pusher's answer hook: run the commands the answer carries (needs the running event loop)."""
        cmds = parse_commands(body)
        if cmds:
            self.offer(cmds)

    def offer(self, cmds: list[Doc]) -> None:
        for cmd in cmds:
            cid = str(cmd["id"])
            if cid in self.running:
                continue  # delivered again while it runs: its result will go out when it finishes
            prior = self.done.get(cid) or (self.journal.outcome_after_restart(cid, self.boot_id)
                                           if self.journal is not None else None)
            if prior is not None:
                log.info("command %s delivered again (delivery %s): answering with its result, not running it "
                         "again", cid, cmd.get("delivery"))
                self.done.put(prior)
                self.ready.append(prior)
                continue
            self.running[cid] = asyncio.get_running_loop().create_task(self._run(cmd))

    def drain(self) -> list[CommandResult]:
        """Results not sent yet (they go in the next batch; a lost batch is covered by serve's redelivery)."""
        out, self.ready = self.ready, []
        return out

    async def wait_idle(self, limit_s: float = 5.0) -> None:
        """Wait (bounded) for the commands running now."""
        tasks = list(self.running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=limit_s)

    async def close(self) -> None:
        for t in list(self.running.values()):
            t.cancel()
        for t in list(self.running.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # ---- running -----------------------------------------------------------------------------------------------
    async def _run(self, cmd: Doc) -> None:
        cid = str(cmd["id"])
        try:
            r = await self.run_one(cmd)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must still answer serve
            log.exception("command %s failed", cid)
            r = CommandResult(id=cid, ok=False, message=f"agent error: {type(exc).__name__}: {exc}",
                              finished_at=self.clock())
        finally:
            self.running.pop(cid, None)
        self.done.put(r)
        self.ready.append(r)

    async def run_one(self, cmd: Doc) -> CommandResult:
        cid = str(cmd["id"])
        what = describe(cmd)
        why = str(cmd.get("reason") or "no reason given")
        log.warning("remediation command %s from %s: %s; reason: %s (issued at %s, delivery %s)", cid, self.server,
                    what, why, cmd.get("issued_at"), cmd.get("delivery"))
        problem = check_command(cmd)
        if problem is not None:
            return self._finish(cmd, False, problem)
        if not self.allow:
            return self._finish(cmd, False, REFUSED)
        if self.journal is not None:
            self.journal.write({"id": cid, "kind": cmd["kind"], "gpu": cmd.get("gpu"), "reason": why,
                                "server": self.server, "started_at": self.clock(), "boot_id": self.boot_id})
        if cmd["kind"] == "gpu-reset":
            argv = [self.nvidia_smi, "--gpu-reset", "-i", str(int(cmd["gpu"]))]
            guard = self.gpu_reset_guard() if self.gpu_reset_guard is not None else contextlib.nullcontext()
            async with guard:
                ok, message = await run_program(argv, self.gpu_reset_timeout)
        else:
            ok, message = await run_program(self.reboot_command, self.reboot_timeout)
            if ok:
                message = f"reboot requested ({' '.join(self.reboot_command)}): {message}".rstrip(": ")
        return self._finish(cmd, ok, message)

    def _finish(self, cmd: Doc, ok: bool, message: str) -> CommandResult:
        r = CommandResult(id=str(cmd["id"]), ok=ok, message=message[-3000:], finished_at=self.clock())
        (log.warning if ok else log.error)("remediation command %s (%s, asked by %s): %s: %s", r.id, describe(cmd),
                                          self.server, "done" if ok else "FAILED", r.message)
        if self.journal is not None and (self.allow or self.journal.records.get(r.id)):
            self.journal.write({"id": r.id, "ok": ok, "message": r.message, "finished_at": r.finished_at})
        return r


async def run_program(argv: Sequence[str], limit_s: float) -> tuple[bool, str]:
    """Run a program with a timeout; (exit status 0, its output or the reason it failed)."""
    try:
        # its own process group, so a timeout kills what it started too (a child left holding the output pipe
        # would keep us waiting past the timeout)
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                    start_new_session=True)
    except FileNotFoundError:
        return False, f"{argv[0]}: not found on PATH"
    except OSError as exc:
        return False, f"{argv[0]}: cannot run: {exc}"
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5.0)
        return False, f"{' '.join(argv)}: timed out after {limit_s:g} s (killed)"
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0:
        return False, f"{' '.join(argv)} exited {proc.returncode}: {text}"
    return True, text

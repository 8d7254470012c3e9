"""In-band remediation commands: serve's side of "reset GPU N" and "reboot the OS" through the node's agent.

There is no channel from serve to an agent other than the ingest answer: the agent POSTs a batch every second,
and serve answers with the commands waiting for that node (``IngestResult.commands``). The agent runs them and
puts a :class:`~redfleet.model.ingest.CommandResult` for each in its next batch, which serve hands to
:meth:`CommandQueue.acknowledge`.

Delivery is at least once: an answer can be lost (a connection dropped after the server wrote it), so a command
with no result is delivered again after ``redeliver_after`` seconds, at most ``max_deliveries`` times; then it is
failed with "agent never answered". Agents remember the ids they ran and answer a repeated id with the result
they already have instead of running it again (a reboot must never be repeated because an answer was lost).
A command that no answer ever carried (the node's agent is silent: hung, powered off) is failed after
``deliver_within`` seconds rather than delivered late: a reboot asked for an hour ago is not wanted any more.

A command that is still running when it is delivered again gets no answer from the agent until it finishes, so
``redeliver_after * max_deliveries`` must exceed the longest a command may run on the node (the agent allows
``nvidia-smi --gpu-reset`` 120 s): with the defaults (30 s × 3 = 90 s) a reset that takes over 90 s is reported
"agent never answered" before its result comes; serve should use ``max_deliveries=5`` or more where resets are
slow.

Everything is in memory and guarded by one lock; ``take`` for a node with nothing pending is a dictionary lookup
(it runs for every ingest, 10,000 nodes a second).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from redfleet.model.ingest import CommandResult

CommandKind = Literal["gpu-reset", "reboot"]
KINDS: tuple[str, ...] = ("gpu-reset", "reboot")
MAX_GPU_INDEX = 63  # no node has more GPUs than this; a larger index is a typo, not a GPU
KEEP_OUTCOMES = 50_000  # finished outcomes remembered (oldest forgotten first)


@dataclass
class AgentCommand:
    id: str
    node: str
    kind: CommandKind
    gpu: int | None
    reason: str
    issued_at: float
    delivered_at: float | None = None  # the last delivery
    deliveries: int = 0

    def to_wire(self) -> dict[str, Any]:
        """The command as an ingest answer carries it."""
        return {"id": self.id, "kind": self.kind, "gpu": self.gpu, "reason": self.reason,
                "issued_at": self.issued_at, "delivery": self.deliveries}


@dataclass
class CommandOutcome:
    id: str
    ok: bool
    message: str
    finished_at: float


class CommandQueue:
    """Commands waiting for (or delivered to and not yet answered by) each node's agent."""

    def __init__(self, *, redeliver_after: float = 30.0, max_deliveries: int = 3,
                 clock: Callable[[], float] = time.time, deliver_within: float | None = None) -> None:
        if redeliver_after <= 0:
            raise ValueError(f"redeliver_after must be > 0 seconds, not {redeliver_after!r}")
        if max_deliveries < 1:
            raise ValueError(f"max_deliveries must be >= 1, not {max_deliveries!r}")
        self.redeliver_after = float(redeliver_after)
        self.max_deliveries = int(max_deliveries)
        self.deliver_within = float(deliver_within) if deliver_within is not None \
            else self.redeliver_after * self.max_deliveries
        if self.deliver_within <= 0:
            raise ValueError(f"deliver_within must be > 0 seconds, not {deliver_within!r}")
        self.clock = clock
        self._lock = threading.Lock()
        self._by_node: dict[str, dict[str, AgentCommand]] = {}  # node -> id -> command (insertion order)
        self._node_of: dict[str, str] = {}  # pending id -> node
        self._outcomes: OrderedDict[str, CommandOutcome] = OrderedDict()

    # ---- issuing ---------------------------------------------------------------------------------------------
    def submit(self, node: str, kind: str, *, gpu: int | None = None, reason: str = "") -> AgentCommand:
        """Queue a command for ``node``'s agent; it goes out in the answer to that node's next batch."""
        if not isinstance(node, str) or not node:
            raise ValueError("node must be a non-empty node name")
        if kind not in KINDS:
            raise ValueError(f"unknown command kind {kind!r}: use one of {', '.join(KINDS)}")
        if kind == "gpu-reset":
            if gpu is None:
                raise ValueError("gpu-reset needs gpu: the index of the GPU to reset")
            if isinstance(gpu, bool) or not isinstance(gpu, int) or not 0 <= gpu <= MAX_GPU_INDEX:
                raise ValueError(f"gpu must be a GPU index 0..{MAX_GPU_INDEX}, not {gpu!r}")
        elif gpu is not None:
            raise ValueError(f"{kind} acts on the whole node: gpu must be None, not {gpu!r}")
        if not isinstance(reason, str):
            raise ValueError(f"reason must be text, not {type(reason).__name__}")
        cmd = AgentCommand(id=f"cmd-{uuid.uuid4().hex}", node=node, kind=kind,  # type: ignore[arg-type]
                           gpu=gpu, reason=reason[:500], issued_at=self.clock())
        with self._lock:
            self._by_node.setdefault(node, {})[cmd.id] = cmd
            self._node_of[cmd.id] = node
        return cmd

    # ---- the ingest path ----------------------------------------------------------------------------------------
    def take(self, node: str) -> list[dict[str, Any]]:
        """Commands for this node's ingest answer (JSON-ready): new ones, and delivered ones whose result is
        overdue (again, up to ``max_deliveries`` deliveries in all). Marks them delivered."""
        if not self._by_node.get(node):  # the hot path: nothing for this node, no lock
            return []
        out: list[dict[str, Any]] = []
        with self._lock:
            cmds = self._by_node.get(node)
            if not cmds:
                return []
            now = self.clock()
            for cmd in list(cmds.values()):
                if cmd.delivered_at is None:
                    if now - cmd.issued_at >= self.deliver_within:
                        self._finish(cmd, False, f"never delivered: {node}'s agent did not check in within "
                                                 f"{self.deliver_within:g} s", now)
                        continue
                elif now - cmd.delivered_at < self.redeliver_after:
                    continue  # delivered, its result not overdue yet
                elif cmd.deliveries >= self.max_deliveries:
                    self._finish(cmd, False, self._silence(cmd), now)
                    continue
                cmd.delivered_at = now
                cmd.deliveries += 1
                out.append(cmd.to_wire())
        return out

    def acknowledge(self, node: str, results: Iterable[CommandResult]) -> None:
        """Record the results ``node``'s agent sent. Results for ids this queue does not hold for that node
        (unknown, finished already, or another node's) are ignored: an agent cannot answer for another node."""
        if not results:
            return
        with self._lock:
            for r in results:
                if self._node_of.get(r.id) != node:
                    continue
                cmd = self._by_node[node][r.id]
                self._finish(cmd, bool(r.ok), r.message, float(r.finished_at))

    # ---- reading --------------------------------------------------------------------------------------------------
    def outcome(self, command_id: str) -> CommandOutcome | None:
        """The command's outcome; None while it is pending (waiting for delivery or for its result). An id this
        queue does not know (issued before serve restarted: the queue is in memory; or finished long ago) gets a
        failed outcome saying so, so a resumed workflow moves on instead of waiting for a result that cannot
        come; the command is not sent again."""
        with self._lock:
            done = self._outcomes.get(command_id)
            if done is not None:
                return done
            node = self._node_of.get(command_id)
            if node is None:
                return CommandOutcome(id=command_id, ok=False, finished_at=self.clock(),
                                      message=f"unknown command {command_id!r}: not in this serve's queue (issued "
                                              "before serve restarted, or finished long ago); not sent again")
            self._expire(self._by_node[node][command_id], self.clock())
            return self._outcomes.get(command_id)

    def pending(self, node: str | None = None) -> list[AgentCommand]:
        """Commands not finished yet (for one node, or all), oldest first. Overdue ones are failed first, so a
        node whose agent went silent does not keep a command pending for ever."""
        with self._lock:
            now = self.clock()
            groups = [self._by_node.get(node) or {}] if node is not None else list(self._by_node.values())
            for cmds in groups:
                for cmd in list(cmds.values()):
                    self._expire(cmd, now)
            out = [c for cmds in groups for c in cmds.values()]
        return sorted(out, key=lambda c: c.issued_at)

    def cancel(self, command_id: str, reason: str = "cancelled") -> CommandOutcome | None:
        """Give up on a pending command (e.g. the workflow moved on); its late result will be ignored. Returns
        the outcome (the existing one when it had finished already), None for an id this queue never had."""
        with self._lock:
            node = self._node_of.get(command_id)
            if node is None:
                return self._outcomes.get(command_id)
            cmd = self._by_node[node][command_id]
            self._finish(cmd, False, reason, self.clock())
            return self._outcomes[command_id]

    # ---- internals (under the lock) ---------------------------------------------------------------------------
    def _silence(self, cmd: AgentCommand) -> str:
        return (f"agent never answered: delivered {cmd.deliveries} time(s), no result within "
                f"{self.redeliver_after:g} s of the last delivery")

    def _expire(self, cmd: AgentCommand, now: float) -> None:
        if cmd.delivered_at is None:
            if now - cmd.issued_at >= self.deliver_within:
                self._finish(cmd, False, f"never delivered: {cmd.node}'s agent did not check in within "
                                         f"{self.deliver_within:g} s", now)
        elif cmd.deliveries >= self.max_deliveries and now - cmd.delivered_at >= self.redeliver_after:
            self._finish(cmd, False, self._silence(cmd), now)

    def _finish(self, cmd: AgentCommand, ok: bool, message: str, finished_at: float) -> None:
        cmds = self._by_node.get(cmd.node)
        if cmds is not None:
            cmds.pop(cmd.id, None)
            if not cmds:
                del self._by_node[cmd.node]  # keeps take()'s lock-free check an empty lookup
        self._node_of.pop(cmd.id, None)
        self._outcomes[cmd.id] = CommandOutcome(id=cmd.id, ok=ok, message=message, finished_at=finished_at)
        while len(self._outcomes) > KEEP_OUTCOMES:
            self._outcomes.popitem(last=False)

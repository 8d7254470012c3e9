"""A throwaway Slurm cluster on this machine, for the tests and the demo.

:class:`LocalSlurm` writes a minimal ``slurm.conf`` into its own temporary folder, starts ``slurmctld -D`` (and,
for the nodes asked for, a real ``slurmd -D -N <node>`` so that node registers and runs real jobs), and stops
everything it started. Several instances can run side by side: each has its own folder, its own ports and its own
``ClusterName``. The other configured nodes never register, which is what a powered-off node looks like to Slurm.

Slurm needs root here (``AuthType=auth/none`` with ``SlurmUser=root``) and refuses to start while 127.0.0.1 is the
only address on ``lo``, so :meth:`LocalSlurm.start` adds 127.0.0.2 first when ``lo`` has no second address.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
# Node addresses come from the loopback block reserved for this area (127.0.0.3-127.0.0.30; .2 is the second
# address lo needs). Nodes may share an address: each node has its own port.
_ADDR_FIRST, _ADDR_LAST = 3, 30
_SECOND_LO = "127.0.0.2"
_ids = itertools.count(1)
_ports_lock = threading.Lock()
_ports_given: set[int] = set()


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in _SBIN:  # slurmctld/slurmd live in sbin, often not on a non-root PATH
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def _free_port() -> int:
    """A TCP port free now on every address (the daemons bind 0.0.0.0), never handed out twice per process."""
    with _ports_lock:
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("", 0))
                port = int(sock.getsockname()[1])
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise RuntimeError("no free TCP port found for the local Slurm cluster")


def ensure_second_loopback() -> None:
    """Add 127.0.0.2/8 to ``lo`` unless it already has an address besides 127.0.0.1 (slurmctld needs one)."""
    ip = _which("ip")
    if ip is None:
        raise RuntimeError("the 'ip' command (iproute2) is missing; cannot add 127.0.0.2 to lo for slurmctld")
    shown = subprocess.run([ip, "-4", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True, timeout=10)
    addrs = [part.split("/")[0] for line in shown.stdout.splitlines() for part in line.split() if "/" in part]
    if any(a.startswith("127.") and a != "127.0.0.1" for a in addrs):
        return
    added = subprocess.run(
        [ip, "addr", "add", f"{_SECOND_LO}/8", "dev", "lo"], capture_output=True, text=True, timeout=10
    )
    if added.returncode != 0 and "File exists" not in added.stderr:
        raise RuntimeError(f"could not add {_SECOND_LO}/8 to lo: {added.stderr.strip()}")


class LocalSlurm:
    """A private slurmctld (+ optional slurmd) for tests: ``with LocalSlurm() as s: s.start(["n1", "n2"])``.

    ``start(nodes, registered=None)`` configures ``nodes``; ``registered`` names the nodes that get a real slurmd
    (default: the first node; ``[]`` for none). Use :attr:`conf_path` / :attr:`env` with ``scontrol`` or
    ``SlurmManager(conf=...)``. :meth:`stop` (also on ``__exit__``) kills every process this instance started,
    jobs included, and deletes the folder.
    """

    def __init__(self, *, message_timeout: int = 2, start_timeout: float = 20.0) -> None:
        # A short MessageTimeout makes a client give up quickly when the controller is gone (Slurm's default 10 s
        # would make each failing scontrol call take ~9 s).
        self.message_timeout = message_timeout
        self.start_timeout = start_timeout
        self.cluster = f"rf{os.getpid() % 100000}x{next(_ids)}"
        self.dir: Path | None = None
        self.nodes: list[str] = []
        self.registered: list[str] = []
        self.ctld_port = 0
        self.slurmd_port = 0
        self.node_ports: dict[str, int] = {}
        self._ctld: subprocess.Popen[bytes] | None = None
        self._slurmds: dict[str, subprocess.Popen[bytes]] = {}
        self._token = ""

    # -- availability ----------------------------------------------------------------------------------------------
    @staticmethod
    def available() -> tuple[bool, str]:
        """(True, "") when a local cluster can run here, else (False, why) for ``pytest.skip``."""
        missing = [name for name in ("slurmctld", "slurmd", "scontrol", "sbatch", "squeue") if _which(name) is None]
        if missing:
            return False, f"Slurm is not installed (missing {', '.join(missing)}; apt-get install slurm-wlm)"
        if os.geteuid() != 0:
            return False, "a local slurmctld with AuthType=auth/none must run as root"
        if _which("ip") is None:
            return False, "the 'ip' command is missing (needed to add 127.0.0.2 to lo for slurmctld)"
        return True, ""

    # -- paths and environment --------------------------------------------------------------------------------------
    @property
    def conf_path(self) -> Path:
        if self.dir is None:
            raise RuntimeError("LocalSlurm is not started")
        return self.dir / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """The environment for Slurm's client commands (and the marker that finds this cluster's processes)."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf_path)
        env["REDFLEET_LOCALSLURM"] = self._token
        return env

    def node_addr(self, node: str) -> str:
        return _addr(self.nodes.index(node))

    def _conf_text(self) -> str:
        assert self.dir is not None
        d = self.dir
        lines = [
            f"ClusterName={self.cluster}",
            "SlurmctldHost=localhost",
            "AuthType=auth/none",
            "CredType=cred/none",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={self.ctld_port}",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool' / '%n'}",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={d / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'slurmd-%n.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            # A node that registers with a valid config returns to service even after it was DOWN.
            "ReturnToService=2",
            f"MessageTimeout={self.message_timeout}",
            "SlurmdTimeout=300",
            "KillWait=2",
            "MinJobAge=2",
        ]
        lines.append(f"SlurmdPort={self.slurmd_port}")
        for index, node in enumerate(self.nodes):
            # CPUs=1 RealMemory=1 fit any machine, so a registering slurmd is never marked INVALID. Each real slurmd
            # gets its own port (they share the machine); nodes that never register share SlurmdPort.
            port = f" Port={self.node_ports[node]}" if node in self.node_ports else ""
            lines.append(f"NodeName={node} NodeAddr={_addr(index)}{port} CPUs=1 RealMemory=1 State=UNKNOWN")
        lines.append("PartitionName=all Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        return "\n".join(lines) + "\n"

    # -- lifecycle ----------------------------------------------------------------------------------------------------
    def start(self, nodes: Sequence[str], registered: Sequence[str] | None = None) -> LocalSlurm:
        if self._ctld is not None:
            raise RuntimeError("LocalSlurm is already started")
        ok, why = self.available()
        if not ok:
            raise RuntimeError(why)
        if not nodes:
            raise ValueError("LocalSlurm needs at least one node")
        self.nodes = list(nodes)
        self.registered = list(nodes[:1] if registered is None else registered)
        unknown = [n for n in self.registered if n not in self.nodes]
        if unknown:
            raise ValueError(f"registered nodes {unknown} are not among the configured nodes")
        ensure_second_loopback()
        self.dir = Path(tempfile.mkdtemp(prefix=f"redfleet-slurm-{self.cluster}-"))
        self._token = f"{self.cluster}:{self.dir}"
        (self.dir / "state").mkdir()
        for node in self.registered:
            (self.dir / "spool" / node).mkdir(parents=True)
        self.ctld_port = _free_port()
        self.slurmd_port = _free_port()
        self.node_ports = {node: _free_port() for node in self.registered}
        self.conf_path.write_text(self._conf_text())
        try:
            self._ctld = self._spawn([_need("slurmctld"), "-D", "-f", str(self.conf_path)], "slurmctld.out")
            self._wait_controller()
            for node in self.registered:
                self._slurmds[node] = self._spawn(
                    [_need("slurmd"), "-D", "-N", node, "-f", str(self.conf_path)], f"slurmd-{node}.out"
                )
            for node in self.registered:
                self._wait_registered(node)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, argv: list[str], out_name: str) -> subprocess.Popen[bytes]:
        assert self.dir is not None
        with open(self.dir / out_name, "wb") as out:
            return subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                start_new_session=True,
            )

    def scontrol(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run ``scontrol`` against this cluster (for tests that play the operator)."""
        return self.run("scontrol", *args, timeout=timeout)

    def run(self, command: str, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run one of Slurm's client commands (scontrol, sbatch, squeue, scancel) against this cluster."""
        return subprocess.run(
            [_need(command), *args], capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )

    def _log_tail(self, name: str) -> str:
        if self.dir is None:
            return ""
        parts = []
        for file in (self.dir / name, self.dir / name.replace(".out", ".log")):
            with contextlib.suppress(OSError):
                parts.append(file.read_text(errors="replace")[-1500:])
        return "\n".join(parts)

    def _wait_controller(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self._ctld is not None
            if self._ctld.poll() is not None:
                raise RuntimeError(f"slurmctld exited with {self._ctld.returncode}: {self._log_tail('slurmctld.out')}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self.scontrol("ping", timeout=5).returncode == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"slurmctld did not answer within {self.start_timeout:.0f} s")

    def _wait_registered(self, node: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        state = "?"
        while time.monotonic() < deadline:
            proc = self._slurmds[node]
            if proc.poll() is not None:
                raise RuntimeError(f"slurmd for {node} exited with {proc.returncode}: "
                                   f"{self._log_tail(f'slurmd-{node}.out')}")
            shown = self.scontrol("show", "node", "-o", node, timeout=5)
            for field in shown.stdout.split():
                if field.startswith("State="):
                    state = field[len("State="):]
            up = state.startswith(("IDLE", "MIXED", "ALLOCATED")) and "NOT_RESPONDING" not in state
            if shown.returncode == 0 and up:
                return
            time.sleep(0.2)
        raise RuntimeError(f"slurmd for {node} did not register within {self.start_timeout:.0f} s (State={state})")

    @property
    def controller_pid(self) -> int | None:
        """slurmctld's pid while it runs (tests pause it with SIGSTOP to play a controller that hangs)."""
        return self._ctld.pid if self._ctld is not None and self._ctld.poll() is None else None

    def stop_controller(self) -> None:
        """Stop slurmctld only (slurmd and jobs keep running): what a controller outage looks like."""
        if self._ctld is not None:
            _terminate(self._ctld)

    def stop(self) -> None:
        """Stop slurmd(s), their job steps, and slurmctld; then delete the folder. Safe to call twice."""
        for proc in self._slurmds.values():
            _terminate(proc)
        self._slurmds.clear()
        self._kill_marked()  # slurmstepd and job processes are re-parented away from slurmd; find them by marker
        if self._ctld is not None:
            _terminate(self._ctld)
            self._ctld = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _kill_marked(self) -> None:
        """Kill the processes carrying this instance's marker in their environment (slurmstepd and jobs)."""
        if not self._token:
            return
        marker = f"REDFLEET_LOCALSLURM={self._token}".encode()
        own = os.getpid()
        for _ in range(3):  # a step may fork while we look; a few passes catch the late ones
            pids = []
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) == own:
                    continue
                try:
                    environ = (entry / "environ").read_bytes()
                except OSError:
                    continue
                if marker in environ.split(b"\0"):
                    pids.append(int(entry.name))
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def __enter__(self) -> LocalSlurm:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _addr(index: int) -> str:
    return f"127.0.0.{_ADDR_FIRST + index % (_ADDR_LAST - _ADDR_FIRST + 1)}"


def _need(name: str) -> str:
    path = _which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (apt-get install slurm-wlm)")
    return path


def _terminate(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGCONT)  # a paused daemon would never act on SIGTERM
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=grace)

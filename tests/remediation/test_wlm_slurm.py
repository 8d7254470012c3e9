"""SlurmManager against a real slurmctld (Debian's slurm-wlm) started by LocalSlurm; skips when Slurm is absent.

Node c1 runs a real slurmd (it registers and runs jobs); c2..c4 never register, like powered-off nodes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from redfleet.remediation.wlm.base import REASON_PREFIX, WlmError, WorkloadManager
from redfleet.remediation.wlm.slurm import SlurmManager, parse_node_line, status_from_fields
from redfleet.remediation.wlm.slurmctl import LocalSlurm

NODES = ["c1", "c2", "c3", "c4"]


@pytest.fixture
def slurm() -> Iterator[LocalSlurm]:
    ok, why = LocalSlurm.available()
    if not ok:
        pytest.skip(why)
    with LocalSlurm() as cluster:
        cluster.start(NODES, registered=["c1"])
        yield cluster


@pytest.fixture
def wlm(slurm: LocalSlurm) -> SlurmManager:
    return SlurmManager(conf=str(slurm.conf_path), timeout=5.0, retries=1)


def node_fields(slurm: LocalSlurm, node: str) -> dict[str, str]:
    shown = slurm.scontrol("show", "node", "-o", node)
    assert shown.returncode == 0, shown.stderr
    return parse_node_line(shown.stdout)


def wait_for(check: Callable[[], object], what: str, deadline_s: float = 20.0) -> object:
    """Poll ``check`` (sync, for the operator's side of a test) until it is truthy or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(0.2)


# -- parsing (no Slurm needed) ---------------------------------------------------------------------------------------
def test_parse_reason_with_spaces_equals_and_suffix() -> None:
    line = (
        "NodeName=n7 CoresPerSocket=1  CPUAlloc=0 CPUTot=1 State=IDLE+DRAIN ThreadsPerCore=1 Partitions=all  "
        "ExtSensorsTemp=n/s Reason=redfleet: xid 79 gpu=3 [fell off bus] [root@2026-11-22T20:28:54]"
    )
    fields = parse_node_line(line)
    assert fields["NodeName"] == "n7"
    assert fields["State"] == "IDLE+DRAIN"
    assert fields["Reason"] == "redfleet: xid 79 gpu=3 [fell off bus]"
    assert fields["ReasonUser"] == "root"
    assert "gpu" not in fields  # text inside the reason is not a field
    status = status_from_fields("n7", fields)
    assert status.cordoned and status.ours and status.drained
    # 22.05 prints Comment/Extra after the Reason when they are set (seen on a real slurmctld).
    tail = parse_node_line("NodeName=n8 State=UNKNOWN+DRAIN Reason=redfleet: x=1 y [root@2026-11-22T20:37:16] "
                           "Comment=hello world Extra=e1")
    assert tail["Reason"] == "redfleet: x=1 y" and tail["Extra"] == "e1"


def test_state_words_map_to_cordon_and_drain() -> None:
    busy = status_from_fields("n", {"State": "MIXED+DRAIN", "Reason": "redfleet: x"}, running=2)
    assert busy.cordoned and busy.ours and not busy.drained and busy.running == 2
    down = status_from_fields("n", {"State": "DOWN*+DRAIN", "Reason": "operator: psu"})
    assert down.cordoned and not down.ours and down.drained
    idle = status_from_fields("n", {"State": "IDLE"})
    assert not idle.cordoned and not idle.drained
    completing = status_from_fields("n", {"State": "IDLE+COMPLETING+DRAIN", "Reason": "redfleet: x"})
    assert not completing.drained


# -- against slurmctld -----------------------------------------------------------------------------------------------
async def test_is_a_workload_manager(wlm: SlurmManager) -> None:
    assert isinstance(wlm, WorkloadManager)
    assert wlm.name == "slurm"


async def test_cordon_sets_drain_with_our_prefix(slurm: LocalSlurm, wlm: SlurmManager) -> None:
    status = await wlm.cordon("c2", "xid 79 on GPU 3")
    assert status.known and status.cordoned and status.ours
    fields = node_fields(slurm, "c2")
    assert "DRAIN" in fields["State"].split("+")
    assert fields["Reason"] == f"{REASON_PREFIX} xid 79 on GPU 3"


async def test_cordon_is_idempotent_and_keeps_first_reason(slurm: LocalSlurm, wlm: SlurmManager) -> None:
    await wlm.cordon("c2", "first")
    before = node_fields(slurm, "c2")
    await asyncio.sleep(1.1)  # Slurm's reason timestamp has 1 s resolution: a second update would show a later time
    again = await wlm.cordon("c2", "second")
    after = node_fields(slurm, "c2")
    assert again.ours and again.reason == f"{REASON_PREFIX} first"
    assert after["Reason"] == before["Reason"] and after["ReasonTime"] == before["ReasonTime"]


async def test_operator_drain_is_never_taken_over_or_resumed(slurm: LocalSlurm, wlm: SlurmManager) -> None:
    done = slurm.scontrol("update", "NodeName=c3", "State=DRAIN", "Reason=ops: bad fan, ticket 4411")
    assert done.returncode == 0, done.stderr
    status = await wlm.cordon("c3", "xid 48")
    assert status.cordoned and not status.ours
    assert status.reason == "ops: bad fan, ticket 4411"
    assert await wlm.uncordon("c3") is False
    fields = node_fields(slurm, "c3")
    assert "DRAIN" in fields["State"] and fields["Reason"] == "ops: bad fan, ticket 4411"


async def test_operator_down_is_left_alone(slurm: LocalSlurm, wlm: SlurmManager) -> None:
    assert slurm.scontrol("update", "NodeName=c3", "State=DOWN", "Reason=ops: rack work").returncode == 0
    status = await wlm.cordon("c3", "xid 48")
    assert status.cordoned and not status.ours and status.reason == "ops: rack work"
    assert await wlm.uncordon("c3") is False
    assert node_fields(slurm, "c3")["State"].startswith("DOWN")


async def test_slurms_own_down_reason_is_taken_over(slurm: LocalSlurm, wlm: SlurmManager) -> None:
    # slurmctld writes "Not responding" itself when a node dies; that is nobody's decision, so redfleet cordons.
    assert slurm.scontrol("update", "NodeName=c4", "State=DOWN", "Reason=Not responding").returncode == 0
    status = await wlm.cordon("c4", "node unreachable")
    assert status.ours and status.reason == f"{REASON_PREFIX} node unreachable"
    assert await wlm.uncordon("c4") is True


async def test_never_registered_node_is_resumed_via_down(slurm: LocalSlurm, wlm: SlurmManager) -> None:
    # What the adapter works around, shown on c3: Slurm refuses a plain RESUME of a never-registered node.
    assert slurm.scontrol("update", "NodeName=c3", "State=DRAIN", "Reason=x").returncode == 0
    plain = slurm.scontrol("update", "NodeName=c3", "State=RESUME")
    assert plain.returncode != 0 and "invalid node state" in plain.stderr.lower()
    await wlm.cordon("c2", "power cycle")
    state = node_fields(slurm, "c2")["State"]
    assert state.startswith("UNKNOWN") and "DRAIN" in state
    assert await wlm.uncordon("c2") is True
    after = await wlm.status("c2")
    assert not after.cordoned and after.reason is None, after.state
    assert await wlm.uncordon("c2") is False  # nothing of ours left to undo


async def test_half_done_uncordon_is_finished(slurm: LocalSlurm, wlm: SlurmManager) -> None:
    # A restart between our DOWN and our RESUME leaves the node DOWN with our reason: still ours, so resume it.
    assert slurm.scontrol("update", "NodeName=c2", "State=DOWN", f"Reason={REASON_PREFIX} x").returncode == 0
    assert await wlm.uncordon("c2") is True
    assert not (await wlm.status("c2")).cordoned


async def test_registered_node_cordon_drain_uncordon(slurm: LocalSlurm, wlm: SlurmManager) -> None:
    status = await wlm.cordon("c1", "xid 79")
    assert status.state == "IDLE+DRAIN" and status.drained
    progress = await wlm.drain("c1")
    assert progress.done and progress.running == 0
    assert await wlm.uncordon("c1") is True
    # Slurm marks a resumed node NOT_RESPONDING until its next ping of slurmd answers.
    wait_for(lambda: node_fields(slurm, "c1")["State"] == "IDLE", "c1 back to IDLE")


async def test_drain_waits_for_a_running_job(slurm: LocalSlurm, wlm: SlurmManager) -> None:
    sub = slurm.run("sbatch", "--parsable", "--wrap", "sleep 60", "-w", "c1", "-o", "/dev/null")
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip().split(";")[0]
    wait_for(lambda: slurm.run("squeue", "-h", "-j", job, "-o", "%T").stdout.strip() == "RUNNING", "job to run")
    status = await wlm.cordon("c1", "xid 79")
    assert status.ours and not status.drained and status.running == 1
    assert "DRAIN" in (status.state or "")
    progress = await wlm.drain("c1")
    assert not progress.done and progress.running == 1 and "c1" in progress.message
    assert slurm.run("scancel", job).returncode == 0
    deadline = time.monotonic() + 20
    while not (progress := await wlm.drain("c1")).done:
        assert time.monotonic() < deadline, f"drain not done after the job was cancelled: {progress}"
        await asyncio.sleep(0.2)
    assert progress.running == 0
    assert await wlm.uncordon("c1") is True


async def test_drain_of_an_uncordoned_node_is_not_done(wlm: SlurmManager) -> None:
    progress = await wlm.drain("c1")
    assert not progress.done and "not cordoned" in progress.message


async def test_uncordon_of_an_idle_node_changes_nothing(slurm: LocalSlurm, wlm: SlurmManager) -> None:
    assert await wlm.uncordon("c1") is False
    assert node_fields(slurm, "c1")["State"] == "IDLE"


async def test_unknown_node_is_named_in_the_error(wlm: SlurmManager) -> None:
    status = await wlm.status("nosuch9")
    assert not status.known
    with pytest.raises(WlmError, match="nosuch9") as err:
        await wlm.cordon("nosuch9", "x")
    assert err.value.node == "nosuch9" and not err.value.retryable


async def test_node_map_and_hostlist_guard(slurm: LocalSlurm) -> None:
    mapped = SlurmManager(conf=str(slurm.conf_path), node_map={"gpu-0007": "c2"}.get)  # type: ignore[arg-type]
    status = await mapped.cordon("gpu-0007", "mapped")
    assert status.node == "gpu-0007" and status.ours
    assert node_fields(slurm, "c2")["Reason"] == f"{REASON_PREFIX} mapped"
    wide = SlurmManager(conf=str(slurm.conf_path), node_map=lambda _: "c[1-4]")
    with pytest.raises(WlmError, match="not a single Slurm node name"):
        await wide.cordon("gpu-0008", "x")
    assert "DRAIN" not in node_fields(slurm, "c1")["State"]


async def test_controller_down_fails_after_bounded_retries(slurm: LocalSlurm) -> None:
    slurm.stop_controller()
    wlm = SlurmManager(conf=str(slurm.conf_path), timeout=4.0, retries=1)
    start = time.monotonic()
    with pytest.raises(WlmError) as err:
        await wlm.cordon("c2", "x")
    elapsed = time.monotonic() - start
    assert err.value.retryable and err.value.node == "c2"
    assert "2 attempt(s)" in str(err.value) and "c2" in str(err.value)
    assert elapsed < 2 * 4.0 + wlm.backoff + 1.0


async def test_hanging_controller_hits_our_timeout(slurm: LocalSlurm) -> None:
    pid = slurm.controller_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # connections are accepted by the kernel but never answered
    try:
        wlm = SlurmManager(conf=str(slurm.conf_path), timeout=1.0, retries=1)
        start = time.monotonic()
        with pytest.raises(WlmError, match="no answer within 1 s"):
            await wlm.status("c1")
        assert time.monotonic() - start < 2 * 1.0 + wlm.backoff + 1.5
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_missing_scontrol_is_a_clear_error() -> None:
    wlm = SlurmManager(scontrol="/nonexistent/scontrol", retries=0)
    with pytest.raises(WlmError, match="not found") as err:
        await wlm.status("c1")
    assert not err.value.retryable


def test_two_clusters_side_by_side_and_cleanup() -> None:
    ok, why = LocalSlurm.available()
    if not ok:
        pytest.skip(why)
    with LocalSlurm() as one, LocalSlurm() as two:
        one.start(["x1"], registered=[])
        two.start(["y1"], registered=[])
        assert one.ctld_port != two.ctld_port and one.conf_path != two.conf_path
        assert node_fields(one, "x1")["NodeName"] == "x1"
        assert two.scontrol("show", "node", "-o", "x1").returncode != 0  # each answers only for its own nodes
        pids = [one.controller_pid, two.controller_pid]
        folder = one.conf_path.parent
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not folder.exists()


# -- without Slurm: availability and retry counting --------------------------------------------------------------------
def test_available_explains_why_not(monkeypatch: pytest.MonkeyPatch) -> None:
    import redfleet.remediation.wlm.slurmctl as slurmctl

    monkeypatch.setattr(slurmctl, "_which", lambda name: None)
    ok, why = LocalSlurm.available()
    assert not ok and "slurmctld" in why and "not installed" in why
    monkeypatch.setattr(slurmctl, "_which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(slurmctl.os, "geteuid", lambda: 1000)
    ok, why = LocalSlurm.available()
    assert not ok and "root" in why


def counting_scontrol(folder: Path, message: str) -> tuple[Path, Path]:
    """A stand-in scontrol that only counts its calls and fails with ``message`` on stderr; the real-controller
    tests above cover the behaviour, this pins the exact number of attempts."""
    calls, fake = folder / "calls", folder / "scontrol"
    fake.write_text(f"#!/bin/sh\necho x >> {calls}\necho '{message}' >&2\nexit 1\n")
    fake.chmod(0o755)
    return fake, calls


async def test_transient_errors_are_retried_a_bounded_number_of_times(tmp_path: Path) -> None:
    fake, calls = counting_scontrol(tmp_path, "slurm_load_node error: Unable to contact slurm controller (connect")
    wlm = SlurmManager(scontrol=str(fake), retries=2, timeout=5.0)
    wlm.backoff = 0.01
    with pytest.raises(WlmError, match="3 attempt") as err:
        await wlm.status("n1")
    assert err.value.retryable and err.value.node == "n1"
    assert len(calls.read_text().split()) == 3


async def test_a_refusal_is_not_retried(tmp_path: Path) -> None:
    fake, calls = counting_scontrol(tmp_path, "slurm_load_node error: Access/permission denied")
    wlm = SlurmManager(scontrol=str(fake), retries=2, timeout=5.0)
    with pytest.raises(WlmError, match="permission denied") as err:
        await wlm.status("n1")
    assert not err.value.retryable
    assert len(calls.read_text().split()) == 1


def live_marked_pids(marker: bytes) -> list[int]:
    """Processes (not zombies) whose environment carries a LocalSlurm marker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except OSError:
            continue
        found.append(int(entry.name))
    return found


def test_stop_kills_a_running_job_and_the_daemons() -> None:
    ok, why = LocalSlurm.available()
    if not ok:
        pytest.skip(why)
    with LocalSlurm() as cluster:
        cluster.start(["j1"])
        marker = f"REDFLEET_LOCALSLURM={cluster.env['REDFLEET_LOCALSLURM']}".encode()
        sub = cluster.run("sbatch", "--parsable", "--wrap", "sleep 120", "-w", "j1", "-o", "/dev/null")
        assert sub.returncode == 0, sub.stderr
        job = sub.stdout.strip().split(";")[0]
        wait_for(lambda: cluster.run("squeue", "-h", "-j", job, "-o", "%T").stdout.strip() == "RUNNING", "job to run")
        assert len(live_marked_pids(marker)) >= 2  # slurmd, slurmstepd, the job's shell and sleep
    assert live_marked_pids(marker) == []


async def test_at_most_concurrency_commands_run_at_once(tmp_path: Path) -> None:
    # Stand-in scontrol that records how many copies of itself are running, then answers "not found".
    running, seen = tmp_path / "running", tmp_path / "seen"
    running.mkdir()
    fake = tmp_path / "scontrol"
    fake.write_text(
        f'#!/bin/sh\ntouch {running}/$$\nls {running} | wc -l >> {seen}\nsleep 0.2\nrm -f {running}/$$\n'
        'echo "Node $4 not found"\nexit 1\n'
    )
    fake.chmod(0o755)
    wlm = SlurmManager(scontrol=str(fake), concurrency=3)
    statuses = await asyncio.gather(*(wlm.status(f"n{i}") for i in range(9)))
    assert all(not s.known for s in statuses)
    counts = [int(x) for x in seen.read_text().split()]
    # one batched read of all nine (refused: a name is unknown), then each alone to find which: never > 3 at once
    assert len(counts) == 10 and max(counts) <= 3


async def test_simultaneous_reads_share_one_scontrol_call(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "scontrol"
    # answers `scontrol show node -o a,b,c` with one line per node, as Slurm does for a list
    fake.write_text(
        f'#!/bin/sh\necho "$4" >> {calls}\n'
        'for n in $(echo "$4" | tr , " "); do echo "NodeName=$n Arch=x86_64 CPUAlloc=0 State=IDLE Reason=none"; done\n'
    )
    fake.chmod(0o755)
    wlm = SlurmManager(scontrol=str(fake))
    statuses = await asyncio.gather(*(wlm.status(f"n{i}") for i in range(50)))
    assert [s.node for s in statuses] == [f"n{i}" for i in range(50)]
    assert all(s.known and s.state == "IDLE" and not s.cordoned for s in statuses)
    lines = calls.read_text().split()
    assert len(lines) == 1 and len(lines[0].split(",")) == 50


async def test_simultaneous_drains_with_one_reason_are_one_update(slurm: LocalSlurm) -> None:
    wlm = SlurmManager(conf=str(slurm.conf_path))
    before = wlm.update_calls
    nodes = [n for n in slurm.nodes if n != "c1"][:3]
    statuses = await asyncio.gather(*(wlm.cordon(n, "RESTART_BM xid.79") for n in nodes))
    assert all(s.ours and s.reason == "redfleet: RESTART_BM xid.79" for s in statuses), statuses
    assert wlm.update_calls - before == 1
    assert all(await asyncio.gather(*(wlm.uncordon(n) for n in nodes)))

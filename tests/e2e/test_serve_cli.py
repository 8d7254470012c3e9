"""`redfleet serve --db URL --fleet FILE --listen HOST:PORT [--dev-token T]` as scripts use it: a subprocess on
loopback; the fleet is imported, the API answers with the dev token, a first admin token is printed when no token
exists, /metrics is open."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
HOST = "127.19.0.40"
RUNNER = "import typer; from redfleet.cli.serve import serve; typer.run(serve)"  # until the CLI root lists serve

FLEET = """version: 1
credentials:
  lab: {username: root, password: calvin}
nodes:
  - {name: gpu-a, bmc_url: "https://127.19.0.41:1", credential: lab, rack: r1, position: 1}
  - {name: gpu-b, bmc_url: "https://127.19.0.42:1", credential: lab, rack: r1, position: 2}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    (tmp_path / "fleet.yaml").write_text(FLEET)
    port = free_port()
    env = {**os.environ, "REDFLEET_KEY": Fernet.generate_key().decode()}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, "--db", f"sqlite:///{tmp_path}/fleet.db", "--fleet",
                             str(tmp_path / "fleet.yaml"), "--listen", f"{HOST}:{port}", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://{HOST}:{port}"
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if get(f"{url}/healthz")[0] == 200:
                return proc, url
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("serve did not answer /healthz within 60 s")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def test_serve_with_dev_token(tmp_path: Path) -> None:
    proc, url = start(tmp_path, "--dev-token", "let-me-in")
    try:
        assert get(f"{url}/api/v1/nodes")[0] == 401
        status, body = get(f"{url}/api/v1/nodes", "let-me-in")
        assert status == 200
        nodes = json.loads(body)
        assert [n["name"] for n in nodes] == ["gpu-a", "gpu-b"]
        assert nodes[0]["bmc_url"] == "https://127.19.0.41:1"
        assert nodes[0]["health"]["state"] in ("unknown", "healthy", "degraded", "unhealthy")
        assert get(f"{url}/metrics")[0] == 200  # unauthenticated by default
        status, body = get(f"{url}/openapi.json")
        assert status == 200 and "/api/v1/nodes/{name}/health/history" in json.loads(body)["paths"]
    finally:
        out = stop(proc)
    assert "fleet" in out and "2 added" in out, out
    assert "first admin token" not in out  # a dev token was given


def test_serve_prints_a_first_admin_token(tmp_path: Path) -> None:
    proc, url = start(tmp_path, "--no-collect")
    try:
        assert proc.stdout is not None
        line = ""
        end = time.monotonic() + 10
        while "first admin token" not in line and time.monotonic() < end:
            line = proc.stdout.readline()
        m = re.search(r"first admin token .*: (rft_\S+)", line)
        assert m, f"no first admin token printed: {line!r}"
        status, body = get(f"{url}/api/v1/tokens", m.group(1))
        assert status == 200 and [t["role"] for t in json.loads(body)] == ["admin"]
    finally:
        stop(proc)


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_serve_with_collector_workers(tmp_path: Path) -> None:
    """--collector-workers 2: the BMCs are polled from two worker processes, what they find reaches the API, and
    stopping serve stops them."""
    proc, url = start(tmp_path, "--dev-token", "t", "--collector-workers", "2")
    try:
        end = time.monotonic() + 60
        status: dict[str, object] = {}
        nodes: list[dict[str, object]] = []
        while time.monotonic() < end:
            status = json.loads(get(f"{url}/api/v1/status", "t")[1])
            nodes = json.loads(get(f"{url}/api/v1/nodes", "t")[1])
            coll = status.get("collector") or {}
            if isinstance(coll, dict) and coll.get("workers_alive") == 2 and coll.get("failing") == 2 and \
                    all(n["bmc_reachable"] is False for n in nodes):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"workers did not report the unreachable BMCs: {status}, {nodes}")
        # (multiprocessing's resource tracker is a child too; it ends with serve on its own)
        workers = [p for p in children(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2, workers
    finally:
        out = stop(proc)
    assert "collected by 2 worker processes" in out, out
    time.sleep(0.5)
    assert not [p for p in workers if Path(f"/proc/{p}").exists()], "collector workers outlived serve"

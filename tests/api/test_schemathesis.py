"""schemathesis against serve's own OpenAPI: a live uvicorn on loopback with a small fleet and the real health
engine; every operation fuzzed (bounded examples); no answer may be a server error (5xx)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_support import DEV

from redfleet.store import FleetStore

pytestmark = pytest.mark.timeout(300)
HOST = "127.19.0.30"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live(store: FleetStore) -> Iterator[str]:
    import uvicorn

    from redfleet.api.app import create_app

    app = create_app(store, dev_token=DEV)  # the real HealthEngine over a SeriesStore
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning", access_log=False))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    end = time.monotonic() + 20
    while not server.started and time.monotonic() < end:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        t.join(10)


def run_schemathesis(url: str, tmp_path: Path, *extra: str, examples: int = 6) -> tuple[int, str, str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    if exe is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    junit_path = tmp_path / "junit.xml"
    cmd = [exe, "run", f"{url}/openapi.json", "--checks", "not_a_server_error", "-H", f"Authorization: Bearer {DEV}",
           "--max-examples", str(examples), "--seed", "4", "--request-timeout", "10", "--report", "junit",
           "--report-junit-path", str(junit_path), "--no-color", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    return proc.returncode, proc.stdout + proc.stderr, junit_path.read_text() if junit_path.exists() else ""


@pytest.mark.slow
def test_no_server_errors(live: str, tmp_path: Path) -> None:
    # The SSD router (redfleet.api.ssd, mounted here, owned by the ssd area) is fuzzed by the test below.
    # Power and boot act on a BMC; this fixture has none reachable, so their documented answer is 502 (the
    # remediation e2e and dashboard tests drive them against simulated BMCs).
    rc, out, junit = run_schemathesis(live, tmp_path, "--exclude-path-regex",
                                      "^/api/v1/ssd|^/api/v1/nodes/[^/]+/(power|boot)$")
    assert rc == 0, f"schemathesis found problems:\n{out[-6000:]}"
    # it did exercise the API (every operation, not an empty schema)
    assert junit.count("<testcase") >= 14, junit[:2000]
    assert "/api/v1/ingest" in junit and "/api/v1/nodes/{name}" in junit


@pytest.mark.slow
def test_ssd_routes_no_server_errors(live: str, tmp_path: Path) -> None:
    rc, out, _ = run_schemathesis(live, tmp_path, "--include-path-regex", "^/api/v1/ssd", examples=4)
    assert rc == 0, f"schemathesis found problems in the SSD routes:\n{out[-6000:]}"

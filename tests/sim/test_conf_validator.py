"""DMTF Redfish Service Validator: the simulator adds no FAIL to what its capture already has (openbmc flavor), and
the PASS > 0 guard catches a validator that found no schemas. Full table: benchmarks/sim_conformance.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_conformance() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sim_conformance", ROOT / "benchmarks" / "sim_conformance.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


conf = load_conformance()


@pytest.fixture(scope="module")
def csdl(shared: Path) -> Path:
    path = shared / "redfish" / "csdl"
    if not any(path.glob("*.xml")):
        pytest.skip(f"no CSDL schemas in {path}")
    return path


def validator_available() -> bool:
    return importlib.util.find_spec("redfish_service_validator") is not None


pytestmark = pytest.mark.skipif(not validator_available(), reason="redfish-service-validator is not installed")


@pytest.mark.slow  # about 40 s on an idle machine, 90 s on a loaded 2-CPU one
async def test_openbmc_sim_has_no_more_validator_fails_than_its_capture(csdl: Path, mockups: Path, tmp_path: Path):
    result = await conf.check_flavor("openbmc", tmp_path, base_address="127.12.220.1", limit_s=600)
    for run in (result.sim, result.captured):
        assert run.error is None, f"{run.target}: {run.error}\n{run.log_tail}"
        assert run.passed > 0
    assert result.sim.failed <= result.captured.failed, conf.render_fail_classes([result])
    assert result.ok
    assert "| openbmc |" in conf.render_table([result])


async def test_pass_zero_guard_when_the_validator_finds_no_schemas(mockups: Path, tmp_path: Path):
    tree = mockups / "public-telemetry"
    runner, url = await conf.start_static(tree, "127.12.220.10")
    empty = tmp_path / "no-schemas"
    empty.mkdir()
    try:
        run = await conf.run_validator(url, tmp_path / "log", schemas=empty, limit_s=300,
                                       payload=("Single", "/redfish/v1/"))
    finally:
        await runner.cleanup()
    assert run.passed == 0 and run.failed == 0  # what the validator reports: nothing to fail, exit code 0
    assert not run.ok and run.error is not None and "PASS = 0" in run.error


def test_summary_and_static_tree_parsing(mockups: Path):
    table = (
        "+------+\n|     PASS     |     WARN     |     FAIL     |  NOT TESTED  |\n+---+\n"
        "| \x1b[32m   19794    \x1b[0m | \x1b[33m    341     \x1b[0m | \x1b[31m    127     \x1b[0m |    14425     |\n"
    )
    assert conf.parse_summary(table) == (19794, 341, 127, 14425)
    assert conf.parse_summary("no table") is None
    static = conf.StaticTree(mockups / "DL325")
    # iLO links are lower-case with a trailing slash; the static server resolves them as the real iLO does
    assert static.lookup("/redfish/v1/systems/1/") == static.lookup("/redfish/v1/Systems/1")
    assert static.lookup("/redfish/v1/$metadata") is not None
    assert static.lookup("/redfish/v1/NoSuchThing") is None

"""The on-demand evaluation's parts, on a handful of rows (the full run: evaluation/ssd/run.py)."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from redfleet.predict.scoring import Thresholds, point

RUN = Path(__file__).resolve().parents[2] / "evaluation" / "ssd" / "run.py"


@pytest.fixture(scope="module")
def ev():
    spec = importlib.util.spec_from_file_location("ssd_eval_run", RUN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ROW = {"model": "C1", "failure_time": "2019-03-02 10:00:00", "r_5": "140", "n_5": "97", "r_187": "12", "r_197": "",
       "r_184": "0", "r_program": "3", "r_erase": "1", "n_blocks": "95", "n_wearout": "1", "r_9": "20000",
       "r_12": "30", "r_174": "5", "r_241": "1024000", "r_242": "2048000", "r_195": "7", "r_199": "2",
       "r_183": "0", "n_175": ""}


def test_mapping(ev):
    smart, ocp = ev.map_alibaba(ROW)
    assert smart["avail_spare"] == 95 and smart["percent_used"] == 100 and smart["media_errors"] == 12
    assert smart["critical_warning"] == 0 and smart["data_units_written"] == 1024
    assert ocp["bad_user_nand_blocks_raw"] == 140 and ocp["uncorrectable_read_errors"] == 12
    assert ocp["pcie_correctable_errors"] == 2 and "capacitor_health" not in ocp
    assert ev.has_precursor(ROW)
    assert not ev.has_precursor({"n_blocks": "100", "n_wearout": "90"})


def test_baselines(ev):
    assert ev.vendor_static({"critical_warning": 0, "avail_spare": 100, "spare_thresh": 10, "percent_used": 100}, {})
    assert not ev.vendor_static({"critical_warning": 0, "avail_spare": 50, "spare_thresh": 10, "percent_used": 5}, {})
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    falling = [point(t0 + timedelta(days=d), {"avail_spare": 40 - 2 * d, "spare_thresh": 10, "percent_used": 5}, {})
               for d in range(10)]
    assert ev.ceph_devicehealth(falling)  # reaches the threshold within 4 weeks
    steady = [point(t0 + timedelta(days=d), {"avail_spare": 90, "spare_thresh": 10, "percent_used": 5}, {})
              for d in range(10)]
    assert not ev.ceph_devicehealth(steady)


def test_population_and_judge(ev):
    drives = ev.healthy_population(30, 60, seed=1)
    for d in drives:
        a, b = d.state(0), d.state(60)
        assert b[1]["bad_user_nand_blocks_raw"] >= a[1]["bad_user_nand_blocks_raw"]
        assert b[1]["uncorrectable_read_errors"] >= a[1]["uncorrectable_read_errors"]
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    v = ev.judge([point(t0, *drives[0].state(10))], Thresholds())
    assert 0 <= v.risk <= 1


def test_alibaba_rows(ev, shared):
    data = shared / "ssd" / "alibaba_ssd_failure_tag.csv.zip"
    if not data.is_file():
        pytest.skip("Alibaba data absent")
    rows = ev.load_alibaba(data)[:300]
    out = ev.run_alibaba(rows, Thresholds())
    assert out["groups"]["all"]["n"] == 300

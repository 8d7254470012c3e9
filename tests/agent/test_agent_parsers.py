"""Parsers on recorded output formats: dcgm-exporter text exposition, /dev/kmsg records, dmesg, journalctl JSON,
nvme-cli JSON (the predict package's fixtures reused by path)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from redfleet.agent import fields
from redfleet.agent.dcgm import ExpositionError, XidTracker, convert, parse_exposition
from redfleet.agent.kmsg import (
    KmsgSource,
    bus_key,
    parse_journal_line,
    parse_kmsg_record,
    parse_text,
    parse_xid,
    xid_events,
)
from redfleet.agent.nvme import NvmeCliError, NvmeCollector, parse_list, report_from, samples_of
from redfleet.model.ingest import IngestBatch
from redfleet.predict import LogFormatError, encode_smart

FIX = Path(__file__).parent / "fixtures"
PREDICT_FIX = Path(__file__).parent.parent / "predict" / "fixtures"
BOOT = 1_700_000_000.0


# ---- fields --------------------------------------------------------------------------------------------------
def test_fields_resolve_by_name_id_case_and_old_namespace():
    assert fields.resolve("DCGM_FI_DEV_GPU_TEMP").id == 150
    assert fields.resolve(150).name == "DCGM_FI_DEV_GPU_TEMP"
    assert fields.resolve("395").name == "DCGM_FI_DEV_ROW_REMAP_FAILURE"
    assert fields.resolve("dcgm_fi_dev_xid_errors").id == 230
    assert fields.resolve("dcgm_gpu_temp").name == "DCGM_FI_DEV_GPU_TEMP"  # dcgm-exporter 1.x
    assert fields.resolve("not_a_field") is None
    assert len(fields.BY_ID) == len([f for f in fields.FIELDS if f.id is not None])  # ids unique


def test_fields_cover_every_default_counter(shared):
    """Every counter dcgm-exporter exports by default, and every RAS counter it leaves commented out, has a row."""
    rows = [ln.lstrip("# ").split(",") for ln in (shared / "gpu" / "dcgm-exporter-default-counters.csv")
            .read_text().splitlines() if ln.lstrip("# ").startswith("DCGM_FI_DEV_") and ln.count(",") >= 2]
    on = [r[0].strip() for r in rows if r[1].strip() != "label"]
    assert len(on) > 20
    ras = [n for n in on if any(k in n for k in ("ECC", "RETIRED", "REMAP", "XID", "NVLINK_CRC", "REPLAY",
                                                  "RECOVERY"))]
    assert len(ras) >= 12
    assert [n for n in on if "_L0" not in n and n not in fields.BY_NAME] == []


# ---- dcgm-exporter -------------------------------------------------------------------------------------------
def test_dcgm_default_page_h100():
    s = convert((FIX / "dcgm-exporter-3.3-default-h100.txt").read_text(), now=1000.0)
    assert s.hostname == "gpu-node-017"  # "Hostname" label
    assert s.driver_version == "535.161.08"
    assert sorted(s.gpus) == [0, 1]
    assert s.gpus[1].uuid == "GPU-b81f4e2a-3c5d-47e9-a0b6-c2d8e4f60a15"
    assert s.gpus[1].pci_bus_id == "00000000:2A:00.0"
    assert s.gpus[0].model == "NVIDIA H100 80GB HBM3"
    by = {(x.metric, x.gpu): x for x in s.samples}
    assert by[("DCGM_FI_DEV_GPU_TEMP", 1)].value == 61
    assert by[("DCGM_FI_DEV_POWER_USAGE", 1)].value == pytest.approx(612.408)
    assert by[("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 0)].value == 4810772356021
    assert by[("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 1)].value == pytest.approx(0.512207)
    assert by[("DCGM_FI_DEV_XID_ERRORS", 1)].labels == {}  # err_code/err_msg labels are not kept
    assert s.xid_values == {0: 0, 1: 31}
    # the default list has no ECC / retired pages / NVLink error counters: nothing invented
    assert not any("ECC" in x.metric or "RETIRED" in x.metric or "CRC" in x.metric for x in s.samples)
    assert all(x.ts == 1000.0 for x in s.samples)
    assert len(s.samples) == 2 * 25


def test_dcgm_k8s_page_lowercase_hostname_pods_mig_xid_count():
    s = convert((FIX / "dcgm-exporter-k8s-ras-a100.txt").read_text(), now=1000.0)
    assert s.hostname == "dgx-a100-03"  # "hostname" label
    temps = [x for x in s.samples if x.metric == "DCGM_FI_DEV_GPU_TEMP"]
    assert [(t.gpu, t.value) for t in temps] == [(0, 57.0), (1, 33.0)]  # one per GPU, not one per pod container
    power = next(x for x in s.samples if x.metric == "DCGM_FI_DEV_POWER_USAGE")
    assert power.ts == pytest.approx(1732270000.123)  # the exposition timestamp (ms) is honoured
    mig = [x for x in s.samples if x.metric == "DCGM_FI_PROF_GR_ENGINE_ACTIVE"]
    assert [x.labels["gpu_i_id"] for x in mig] == ["1", "2"]
    assert {x.metric for x in s.samples} >= {"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_ROW_REMAP_PENDING",
                                             "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"}
    assert s.xid_counts == {(1, 48): 1.0}
    assert s.ignored == 1  # dcgm_exporter_build_info (with escaped quotes in a label) parsed and skipped


def test_exposition_errors_name_the_line():
    with pytest.raises(ExpositionError, match="line 2"):
        parse_exposition('# HELP x y\nDCGM_FI_DEV_GPU_TEMP{gpu="0" 31\n')
    with pytest.raises(ExpositionError, match="not a number"):
        parse_exposition("DCGM_FI_DEV_GPU_TEMP{gpu=\"0\"} hot\n")
    assert parse_exposition('m{a="x\\"y",b="c\\\\d"} 1\n')[0].labels == {"a": 'x"y', "b": "c\\d"}


def _page(xids: dict[int, int], counts: dict[tuple[int, int], int] | None = None) -> str:
    lines = [f'DCGM_FI_DEV_XID_ERRORS{{gpu="{g}",pci_bus_id="00000000:{0x18 + g:02X}:00.0",Hostname="n"}} {v}'
             for g, v in xids.items()]
    for (g, x), c in (counts or {}).items():
        lines.append(f'DCGM_EXP_XID_ERRORS_COUNT{{gpu="{g}",xid="{x}"}} {c}')
    return "\n".join(lines) + "\n"


def test_xid_sticky_value_becomes_one_event_per_change():
    t = XidTracker()
    assert t.update(convert(_page({0: 79, 1: 0})), 1.0) == []  # first scrape: a baseline, maybe weeks old
    assert t.update(convert(_page({0: 79, 1: 0})), 2.0) == []  # sticky: same value, no new event
    ev = t.update(convert(_page({0: 79, 1: 48})), 3.0)
    assert [(e.gpu, e.code, e.pci_bus_id) for e in ev] == [(1, 48, "0000:19:00.0")]
    assert "48" in ev[0].message and ev[0].kind == "xid"
    assert t.update(convert(_page({0: 79, 1: 48})), 4.0) == []
    assert t.update(convert(_page({0: 0, 1: 48})), 5.0) == []  # back to 0 (driver reload): no event
    assert [e.code for e in t.update(convert(_page({0: 13, 1: 48})), 6.0)] == [13]


def test_xid_count_metric_counts_repeats():
    t = XidTracker()
    t.update(convert(_page({0: 13}, {(0, 13): 1})), 1.0)
    ev = t.update(convert(_page({0: 13}, {(0, 13): 3})), 2.0)  # same sticky value, the window count rose
    assert [(e.gpu, e.code) for e in ev] == [(0, 13)]


# ---- kernel log ----------------------------------------------------------------------------------------------
def test_parse_xid_forms():
    x = parse_xid("NVRM: Xid (PCI:0000:3a:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.")
    assert (x.pci, x.code, x.pid, x.process, x.text) == ("0000:3a:00", 79, None, None, "GPU has fallen off the bus.")
    x = parse_xid("NVRM: Xid (PCI:0000:18:00): 13, pid=48211, name=python3, Graphics Exception: ESR 0x52df30")
    assert (x.code, x.pid, x.process) == (13, 48211, "python3")
    x = parse_xid("NVRM: Xid (0000:03:00): 62, Internal micro-controller halt")
    assert (x.pci, x.code, x.pid, x.text) == ("0000:03:00", 62, None, "Internal micro-controller halt")
    assert parse_xid("NVRM: GPU 0000:2a:00.0: GPU has fallen off the bus.") is None
    assert parse_xid("usb 1-1: new high-speed USB device") is None


def test_bus_key_agrees_across_nvrm_nvml_dcgm():
    assert bus_key("0000:3a:00") == bus_key("00000000:3A:00.0") == bus_key("PCI:0000:3a:00") == "0000:3a:00"
    assert bus_key("garbage") is None


def test_kmsg_records_with_continuations():
    recs = list(parse_text((FIX / "kmsg-records.txt").read_text(), BOOT))
    assert len(recs) == 7  # continuation lines (" SUBSYSTEM=pci") are not records
    assert recs[1].priority == 4 and recs[1].seq == 3302
    assert recs[1].ts == pytest.approx(BOOT + 1218734.021977)
    assert "\x1b[0m" in recs[6].message  # \x1b escape undone
    ev = xid_events(recs, {"0000:18:00": 0, "0000:2a:00": 1})
    assert [(e.code, e.gpu) for e in ev] == [(13, 0), (13, 0), (79, 1), (48, None)]
    assert ev[2].pci_bus_id == "0000:2a:00.0"
    assert ev[0].raw.startswith("NVRM: Xid (PCI:0000:18:00): 13, pid=48211")
    assert "python3" in ev[0].message
    assert parse_kmsg_record("garbage without a semicolon", BOOT) is None
    assert parse_kmsg_record("x,y,z;msg", BOOT) is None


def test_dmesg_lines():
    ev = xid_events(parse_text((FIX / "dmesg-xid.txt").read_text(), BOOT))
    assert [e.code for e in ev] == [13, 79, 31, 119, 62]
    assert ev[1].ts == pytest.approx(BOOT + 1302550.117840)
    assert all(e.gpu is None for e in ev)  # no GPU map given


def test_journal_json_lines_including_byte_array_message():
    lines = (FIX / "journal-kernel-xid.jsonl").read_text().splitlines()
    recs = [parse_journal_line(ln) for ln in lines]
    assert recs[0].ts == pytest.approx(1732269105.115712) and recs[0].priority == 4
    ev = xid_events([r for r in recs if r], {"0000:2a:00": 1})
    assert [(e.code, e.gpu) for e in ev] == [(94, None), (79, 1)]  # the non-UTF-8 MESSAGE (byte list) decoded
    assert parse_journal_line("not json") is None
    assert parse_journal_line('{"MESSAGE": 5}') is None


def test_kmsg_source_follows_a_file(tmp_path):
    p = tmp_path / "kmsg.txt"
    p.write_text("4,1,1000000,-;NVRM: Xid (PCI:0000:18:00): 13, pid=1, name=a, old one\n")
    src = KmsgSource(str(p), boot=BOOT)  # from the end, like /dev/kmsg
    assert src.read() == []
    with p.open("a") as fh:
        fh.write("4,2,2000000,-;NVRM: Xid (PCI:0000:18:00): 79, pid='<unknown>', name=<unknown>, GPU has fall")
    assert src.read() == []  # a partial line waits for its end
    with p.open("a") as fh:
        fh.write("en off the bus.\n")
    recs = src.read()
    assert [parse_xid(r.message).code for r in recs] == [79]
    assert recs[0].message.endswith("GPU has fallen off the bus.")
    src.close()
    src2 = KmsgSource(str(p), boot=BOOT, from_start=True)
    assert len(src2.read()) == 2
    src2.close()


# ---- nvme-cli ------------------------------------------------------------------------------------------------
def test_nvme_list_2x():
    devs = parse_list(json.loads((FIX / "nvme-cli-2.8-list.json").read_text()))
    assert [d["device"] for d in devs] == ["/dev/nvme0", "/dev/nvme1"]
    assert devs[0]["serial"] == "S64HNE0T512345" and devs[0]["firmware"] == "GDC7302Q"


def test_nvme_report_from_nvme_cli_json_uses_predict_decoders():
    smart = json.loads((PREDICT_FIX / "nvme-cli-1.16-smart-log.json").read_text())
    ocp = json.loads((PREDICT_FIX / "nvme-cli-2.16-ocp-smart-add-log-v5-snake.json").read_text())
    r = report_from("/dev/nvme0", smart=smart, ocp=ocp, serial="S1")
    assert r.smart == smart and r.ocp_c0h == ocp
    by = {s.metric: s.value for s in samples_of(r, 5.0)}
    assert by["REDFLEET_NVME_TEMPERATURE_CELSIUS"] == 309 - 273
    assert by["REDFLEET_NVME_PERCENT_USED"] == 3 and by["REDFLEET_NVME_AVAIL_SPARE_PERCENT"] == 100
    assert all(s.labels == {"device": "nvme0"} for s in samples_of(r, 5.0))
    with pytest.raises(LogFormatError):
        report_from("/dev/nvme0", smart={"critical_warning": 0})  # predict says what is missing
    with pytest.raises(LogFormatError):
        report_from("/dev/nvme0", ocp=smart)  # a 02h log where C0h was asked for


def test_nvme_raw_pages():
    smart = json.loads((PREDICT_FIX / "nvme-cli-1.16-smart-log.json").read_text())
    page = encode_smart(smart)
    r = report_from("/dev/nvme1", raw_smart=page)
    assert r.raw == {"smart_02h": page.hex()}
    assert {s.metric: s.value for s in samples_of(r, 1.0)}["REDFLEET_NVME_POWER_ON_HOURS"] == 17432
    with pytest.raises(LogFormatError):
        report_from("/dev/nvme1", raw_smart=b"\x00" * 100)


async def test_nvme_collector_runs_nvme_cli_and_survives_a_non_ocp_drive():
    smart = (PREDICT_FIX / "nvme-cli-1.16-smart-log.json").read_bytes()
    ocp = (PREDICT_FIX / "nvme-cli-2.16-ocp-smart-add-log-v5-snake.json").read_bytes()
    calls: list[list[str]] = []

    async def runner(argv: list[str]) -> bytes:
        calls.append(argv)
        if argv[1] == "list":
            return (FIX / "nvme-cli-2.8-list.json").read_bytes()
        if argv[1] == "smart-log":
            return smart
        if argv[1:3] == ["ocp", "smart-add-log"]:
            if argv[3] == "/dev/nvme1":
                raise NvmeCliError("nvme ocp smart-add-log /dev/nvme1: exit 1: Invalid Field in Command")
            return ocp
        raise AssertionError(argv)

    c = NvmeCollector(runner=runner)
    reports, errors = await c.collect()
    assert errors == []
    assert [(r.device, r.serial, r.ocp_c0h is not None) for r in reports] == [
        ("/dev/nvme0", "S64HNE0T512345", True), ("/dev/nvme1", "S64HNE0T512377", False)]
    n = len(calls)
    await c.collect()
    assert ["ocp", "smart-add-log", "/dev/nvme1", "-o", "json"] not in [a[1:] for a in calls[n:]]  # not asked again
    IngestBatch(node="n", sent_at=1.0, nvme=reports)  # fits the protocol


async def test_nvme_collector_reports_bad_output_per_drive():
    async def runner(argv: list[str]) -> bytes:
        if argv[1] == "list":
            return (FIX / "nvme-cli-2.8-list.json").read_bytes()
        if argv[2] == "/dev/nvme1":
            return b"NVMe status: Invalid Namespace or Format(0x400b)"
        return (PREDICT_FIX / "nvme-cli-1.16-smart-log.json").read_bytes()

    reports, errors = await NvmeCollector(runner=runner, ocp=False).collect()
    assert [r.device for r in reports] == ["/dev/nvme0"]
    assert len(errors) == 1 and "/dev/nvme1" in errors[0] and "not JSON" in errors[0]


async def test_journal_source_reads_a_command_output():
    from redfleet.agent.kmsg import JournalSource

    src = JournalSource(["cat", str(FIX / "journal-kernel-xid.jsonl")])
    await src.start()
    await src.wait_done(10.0)
    recs = src.read()
    await src.stop()
    assert len(recs) == 3
    assert [e.code for e in xid_events(recs)] == [94, 79]
    assert src.read() == []

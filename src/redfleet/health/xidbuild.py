"""Build the package's Xid catalog (``redfleet/health/data/xid_catalog.json``) from NVIDIA's workbook.

    python -m redfleet.health.xidbuild [--xlsx PATH] [--out PATH] [--check]

The workbook (``shared/gpu/Xid-Catalog.xlsx``) is not shipped; the JSON is, so the health engine works without
``../shared``. ``--check`` exits 1 when the shipped JSON differs from a fresh build.

Sheets read: "Xids" (one row per code: mnemonic, description, which GPUs it applies to, the immediate and the
investigatory resolution buckets, its Xid 154 linkage, trigger conditions), "Resolution Buckets" (what each bucket
means) and "Xid 144-150 Decode" (NVLink5 Xids: IntrInfo bit masks and Error Status -> bucket).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"
CATALOG_PATH = DATA_DIR / "xid_catalog.json"
SCHEMA_VERSION = 1


def default_xlsx() -> Path:
    from redfleet.paths import shared_dir

    return shared_dir() / "gpu" / "Xid-Catalog.xlsx"


def _s(v: Any) -> str | None:
    if v is None:
        return None
    text = str(v).replace("\r\n", "\n").strip()
    return text or None


def _header_index(header: tuple[Any, ...], *needles: str) -> int:
    """Column whose header (whitespace-normalized, lower case) contains all needles."""
    for i, h in enumerate(header):
        norm = " ".join(str(h or "").split()).lower()
        if all(n.lower() in norm for n in needles):
            return i
    raise ValueError(f"Xid workbook: no column with {' + '.join(needles)!r} in header {header!r}")


def build(xlsx: Path | None = None) -> dict[str, Any]:
    """The catalog as a JSON-ready dict (deterministic: same workbook -> same dict)."""
    import openpyxl

    path = Path(xlsx) if xlsx else default_xlsx()
    if not path.is_file():
        raise FileNotFoundError(f"Xid workbook not found at {path} (set REDFLEET_SHARED or pass --xlsx)")
    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        rows = list(wb["Xids"].iter_rows(values_only=True))
        header = rows[0]
        c_code = _header_index(header, "code")
        c_mn = _header_index(header, "mnemonic")
        c_desc = _header_index(header, "description")
        c_imm = _header_index(header, "resolution bucket", "immediate")
        c_inv = _header_index(header, "resolution bucket", "investigatory")
        c_154 = _header_index(header, "xid 154")
        c_trig = _header_index(header, "trigger")
        applies = [(i, " ".join(str(h).split()).split()[-1]) for i, h in enumerate(header)
                   if h and str(h).lower().startswith("applies to")]
        xids: list[dict[str, Any]] = []
        for row in rows[1:]:
            if row[c_code] is None:
                continue
            code = int(str(row[c_code]).strip())
            xids.append({
                "code": code,
                "mnemonic": _s(row[c_mn]),
                "description": _s(row[c_desc]),
                "applies_to": {name: str(row[i]).strip().upper() == "YES" for i, name in applies},
                "immediate": _s(row[c_imm]),
                "investigatory": _s(row[c_inv]),
                "xid154_linkage": _s(row[c_154]),
                "trigger": _s(row[c_trig]),
            })
        xids.sort(key=lambda x: x["code"])

        buckets: dict[str, str] = {}
        for row in list(wb["Resolution Buckets"].iter_rows(values_only=True))[1:]:
            name, text = _s(row[0]), _s(row[1])
            if name and name not in buckets:
                buckets[name] = text or ""

        decode: list[dict[str, Any]] = []
        drows = list(wb["Xid 144-150 Decode"].iter_rows(values_only=True))
        dh = drows[0]
        d_v1 = _header_index(dh, "(v1", "intrinfo decode")
        d_v2 = _header_index(dh, "(v2", "intrinfo decode")
        d_status = _header_index(dh, "error status")
        d_imm = _header_index(dh, "resolution bucket", "recovery action")
        d_a2v1 = _header_index(dh, "(v1", "action 2")
        d_a2v2 = _header_index(dh, "(v2", "action 2")
        d_a2 = next(i for i, h in enumerate(dh) if " ".join(str(h or "").split()).lower() == "action 2")
        d_inv = _header_index(dh, "resolution bucket", "investigatory")
        d_sev = _header_index(dh, "severity")
        d_hw = _header_index(dh, "hw/sw")
        d_lr = _header_index(dh, "local/remote")
        for row in drows[1:]:
            if row[0] is None:
                continue
            statuses = [s.strip() for s in (_s(row[d_status]) or "").split("/") if s.strip()]
            decode.append({
                "xid": int(str(row[0]).strip()),
                "subcode": _s(row[1]),
                "intrinfo_v1": _s(row[d_v1]),
                "intrinfo_v2": _s(row[d_v2]),
                "error_status": [int(s, 16) for s in statuses] or None,
                "immediate": _s(row[d_imm]),
                "action2_intrinfo_v1": _s(row[d_a2v1]),
                "action2_intrinfo_v2": _s(row[d_a2v2]),
                "action2": _s(row[d_a2]),
                "investigatory": _s(row[d_inv]),
                "severity": _s(row[d_sev]),
                "hw_sw": _s(row[d_hw]),
                "impact": _s(row[d_lr]),
            })
    finally:
        wb.close()
    return {
        "schema_version": SCHEMA_VERSION,
        "source": "NVIDIA Xid-Catalog.xlsx (sheets: Xids, Resolution Buckets, Xid 144-150 Decode)",
        "buckets": buckets,
        "xids": xids,
        "nvlink5_decode": decode,
    }


def dumps(catalog: dict[str, Any]) -> str:
    return json.dumps(catalog, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


def load_catalog(path: Path | None = None) -> dict[str, Any]:
    """The shipped catalog; when it is missing, build it from the workbook (first run) and write it."""
    p = Path(path) if path else CATALOG_PATH
    if p.is_file():
        data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
        return data
    cat = build()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(dumps(cat), encoding="utf-8")
    except OSError:
        pass
    return cat


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m redfleet.health.xidbuild", description=__doc__.split("\n")[0])
    ap.add_argument("--xlsx", type=Path, default=None, help="the workbook (default: shared/gpu/Xid-Catalog.xlsx)")
    ap.add_argument("--out", type=Path, default=CATALOG_PATH, help=f"output JSON (default {CATALOG_PATH})")
    ap.add_argument("--check", action="store_true", help="compare with the existing JSON; exit 1 when different")
    args = ap.parse_args(argv)
    text = dumps(build(args.xlsx))
    if args.check:
        old = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if old != text:
            print(f"{args.out} differs from a fresh build of the workbook; regenerate it", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    cat = json.loads(text)
    print(f"wrote {args.out}: {len(cat['xids'])} Xids, {len(cat['buckets'])} buckets, "
          f"{len(cat['nvlink5_decode'])} NVLink5 decode rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

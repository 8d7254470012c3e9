"""Reports of a validation run: JSON (the ``--json`` contract), rich tables, a self-contained HTML page, a summary by
vendor / model / firmware, and results kept on disk so that drift (after a firmware update) is visible.

``--json`` contract, one object per target::

    {"target", "profile", "summary": {"pass", "warn", "fail", "not_tested"},
     "results": [{"resource", "uri", "property", "requirement", "verdict", "found", ...}], ...}

Counting is the DMTF tool's: one result per (URI, property) and one per resource type service-wide.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from redfleet.profiles.engine import TargetResult

VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "not_tested": "dim"}


def result_dict(result: TargetResult | dict[str, Any]) -> dict[str, Any]:
    return result if isinstance(result, dict) else result.to_json()


def to_json(results: Iterable[TargetResult], when: dt.datetime | None = None) -> dict[str, Any]:
    when = when or dt.datetime.now(dt.UTC)
    targets = [r.to_json() for r in results]
    return {
        "generated_at": when.isoformat(timespec="seconds"),
        "targets": targets,
        "by_platform": platform_summary(targets),
    }


def platform_key(target: dict[str, Any]) -> tuple[str, str, str]:
    info = target.get("service") or {}
    return (str(info.get("manufacturer") or "?"), str(info.get("model") or "?"),
            str(info.get("bmc_firmware") or "?"))


def platform_summary(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nodes grouped by (vendor, model, BMC firmware): how many conform, and the failures they share."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for t in targets:
        groups[platform_key(t)].append(t)
    out = []
    for (vendor, model, firmware), items in sorted(groups.items()):
        fails: dict[str, int] = defaultdict(int)
        for t in items:
            for r in t["results"]:
                if r["verdict"] == "fail":
                    fails[f"{r['resource']} {r['property'] or '(resource)'}"] += 1
        top = sorted(fails.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        out.append({
            "vendor": vendor, "model": model, "firmware": firmware, "nodes": len(items),
            "conformant": sum(1 for t in items if t["summary"]["fail"] == 0 and not t.get("error")),
            "unreachable": sum(1 for t in items if t.get("error")),
            "pass": sum(t["summary"]["pass"] for t in items),
            "warn": sum(t["summary"]["warn"] for t in items),
            "fail": sum(t["summary"]["fail"] for t in items),
            "not_tested": sum(t["summary"]["not_tested"] for t in items),
            "common_failures": [{"requirement": k, "nodes": v} for k, v in top],
        })
    return out


# ---- results kept for the dashboard and for drift ------------------------------------------------------------

def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "target"


def save_results(results: Iterable[TargetResult | dict[str, Any]], directory: str | Path,
                 when: dt.datetime | None = None) -> list[Path]:
    """Keep each target's result as ``<dir>/<target>/<profile>/<UTC time>.json``; returns the files written.

    This is the function the fleet store calls (or replaces) to record conformance history; one file per
    (target, profile, run) is the same shape as one row of the table it would need.
    """
    when = when or dt.datetime.now(dt.UTC)
    stamp = when.strftime("%Y%m%dT%H%M%S%fZ")
    written = []
    for res in results:
        data = dict(result_dict(res))
        data["validated_at"] = when.isoformat(timespec="seconds")
        folder = Path(directory) / _safe(str(data["target"])) / _safe(str(data["profile"]))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stamp}.json"
        path.write_text(json.dumps(data, indent=1, default=str))
        written.append(path)
    return written


def history(directory: str | Path, target: str, profile: str) -> list[Path]:
    folder = Path(directory) / _safe(target) / _safe(profile)
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def previous_result(directory: str | Path, target: str, profile: str) -> dict[str, Any] | None:
    files = history(directory, target, profile)
    if not files:
        return None
    return json.loads(files[-1].read_text())


def drift(before: dict[str, Any] | TargetResult, after: dict[str, Any] | TargetResult) -> list[dict[str, Any]]:
    """Requirements whose verdict (or found value) changed between two runs on the same target."""
    old = {(r["uri"], r["property"], r["resource"]): r for r in result_dict(before)["results"]}
    new = {(r["uri"], r["property"], r["resource"]): r for r in result_dict(after)["results"]}
    changes = []
    for key in sorted(set(old) | set(new), key=lambda k: tuple(str(x) for x in k)):
        a, b = old.get(key), new.get(key)
        va = a["verdict"] if a else "absent"
        vb = b["verdict"] if b else "absent"
        if va != vb or (a and b and a.get("found") != b.get("found") and va != "pass"):
            changes.append({"uri": key[0], "property": key[1], "resource": key[2], "before": va, "after": vb,
                            "found_before": a.get("found") if a else None,
                            "found_after": b.get("found") if b else None})
    return changes


# ---- HTML ----------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2733;background:#f6f8fa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px} .meta{color:#5b6b7c;font-size:13px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px;margin-bottom:8px}
th,td{border-bottom:1px solid #e3e8ee;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6} .pass{color:#13703a;font-weight:600} .fail{color:#b3261e;font-weight:700}
.warn{color:#8a5a00;font-weight:700} .not_tested{color:#7a8794} code{font-size:12px}
details{background:#fff;border:1px solid #e3e8ee;border-radius:6px;margin:8px 0;padding:6px 10px}
summary{cursor:pointer;font-weight:600} .pill{display:inline-block;border-radius:10px;padding:0 8px;margin-left:6px;
font-size:12px;background:#eef2f6} .msg{color:#5b6b7c;font-size:12px;white-space:pre-wrap}
"""


def _pill(summary: dict[str, int]) -> str:
    return "".join(f'<span class="pill {k}">{k.replace("_", " ")} {summary.get(k, 0)}</span>'
                   for k in ("pass", "warn", "fail", "not_tested"))


def _rows_html(rows: list[dict[str, Any]]) -> str:
    out = ["<table><tr><th>verdict</th><th>resource</th><th>URI</th><th>property</th><th>found</th>"
           "<th>requirement</th></tr>"]
    order = {"fail": 0, "warn": 1, "not_tested": 2, "pass": 3}
    for r in sorted(rows, key=lambda r: (order[r["verdict"]], str(r["uri"]), r["property"])):
        found = "" if not r.get("present") and r["uri"] is not None else json.dumps(r.get("found"))
        if r["uri"] is not None and not r.get("present"):
            found = "(absent)"
        msg = r.get("message") or ""
        purpose = r.get("purpose") or ""
        out.append(
            f'<tr><td class="{r["verdict"]}">{r["verdict"].replace("_", " ")}</td>'
            f"<td>{html.escape(str(r['resource']))}</td><td><code>{html.escape(str(r['uri'] or '(service)'))}"
            f"</code></td><td><code>{html.escape(r['property'])}</code></td><td><code>{html.escape(found)}</code>"
            f"</td><td>{html.escape(r.get('requirement') or '')}"
            + (f'<div class="msg">{html.escape(msg)}</div>' if r["verdict"] in ("fail", "warn") else "")
            + (f'<div class="msg">Purpose: {html.escape(purpose)}</div>' if purpose else "")
            + "</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def html_report(results: Iterable[TargetResult | dict[str, Any]], title: str = "redfleet profile conformance",
                when: dt.datetime | None = None) -> str:
    when = when or dt.datetime.now(dt.UTC)
    targets = [result_dict(r) for r in results]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><div class='meta'>{len(targets)} target(s) · generated "
             f"{when.isoformat(timespec='seconds')} · verdicts counted as DMTF rf_interop_validator counts</div>"]
    parts.append("<h2>By vendor, model and firmware</h2><table><tr><th>vendor</th><th>model</th><th>BMC firmware</th>"
                 "<th>nodes</th><th>conformant</th><th>pass</th><th>warn</th><th>fail</th><th>not tested</th>"
                 "<th>most common failures</th></tr>")
    for g in platform_summary(targets):
        common = "<br>".join(f"{html.escape(c['requirement'])} ({c['nodes']})" for c in g["common_failures"])
        parts.append(f"<tr><td>{html.escape(g['vendor'])}</td><td>{html.escape(g['model'])}</td>"
                     f"<td>{html.escape(g['firmware'])}</td><td>{g['nodes']}</td><td>{g['conformant']}</td>"
                     f"<td class='pass'>{g['pass']}</td><td class='warn'>{g['warn']}</td>"
                     f"<td class='fail'>{g['fail']}</td><td class='not_tested'>{g['not_tested']}</td>"
                     f"<td>{common}</td></tr>")
    parts.append("</table><h2>Targets</h2>")
    for t in targets:
        head = f"{html.escape(str(t['target']))} — {html.escape(str(t['profile']))}"
        if t.get("error"):
            parts.append(f"<details open><summary>{head} <span class='pill fail'>unreachable</span></summary>"
                         f"<div class='msg'>{html.escape(t['error'])}</div></details>")
            continue
        info = t.get("service") or {}
        meta = " · ".join(f"{k}: {html.escape(str(v))}" for k, v in info.items())
        parts.append(f"<details{' open' if t['summary']['fail'] else ''}><summary>{head}{_pill(t['summary'])}"
                     f"</summary><div class='meta'>{meta}</div>")
        proto = t.get("protocol")
        if proto:
            parts.append(f"<h3>Protocol checks {_pill(proto['summary'])}</h3>" + _rows_html(proto["results"]))
        parts.append("<h3>Profile requirements</h3>" + _rows_html(t["results"]) + "</details>")
    parts.append("</body></html>")
    return "".join(parts)

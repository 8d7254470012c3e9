// SSD risk: drives ranked REPLACE / WATCH / MONITOR with reasons; a drive's trend plots on click.
"use strict";
(() => {
  const $ = id => document.getElementById(id);
  // SMART / OCP fields worth a trend line, when a drive reports them.
  // (nvme-cli smart-log names as stored, and their smartctl / OCP spellings.)
  const TREND = ["percent_used", "percentage_used", "avail_spare", "available_spare", "media_errors",
                 "media_and_data_integrity_errors", "num_err_log_entries", "critical_warning", "temperature",
                 "data_units_written", "unsafe_shutdowns"];

  async function load() {
    const f = $("ssd-filter").value;
    const r = await RF.api("/api/v1/ssd/drives?limit=500" + (f ? `&recommendation=${f}` : ""));
    if (!r.ok) { $("ssd-table").innerHTML = `<p class="muted">${r.status === 404 || r.status === 503 ? "no SSD data on this server" : RF.esc(RF.detail(r.data))}</p>`; return; }
    const c = r.data.counts || {};
    $("ssd-counts").innerHTML = ["REPLACE", "WATCH", "MONITOR"].map(k =>
      `<span class="chip rec-${k}">${k} <b>${c[k] ?? 0}</b></span>`).join("");
    $("ssd-table").innerHTML = RF.table(["rank", "drive", "node", "slot", "model", "risk", "recommendation", "reasons"],
      r.data.drives.map(d => `<tr class="drive" data-id="${RF.esc(d.drive_id)}"><td>${d.rank}</td><td><a href="#" class="drive-link">${RF.esc(d.drive_id)}</a></td>` +
        `<td>${d.node_id ? `<a href="/nodes/${encodeURIComponent(d.node_id)}">${RF.esc(d.node_id)}</a>` : ""}</td><td>${RF.esc(d.slot || "")}</td>` +
        `<td>${RF.esc(d.model || "")}</td><td>${(+d.risk).toFixed(3)}</td><td><span class="badge rec-${RF.esc(d.recommendation)}">${RF.esc(d.recommendation)}</span></td>` +
        `<td>${(d.reasons || []).map(RF.esc).join("<br>")}</td></tr>`), "ssd-drives");
  }

  async function detail(id) {
    const r = await RF.api(`/api/v1/ssd/drives/${encodeURIComponent(id)}/history?limit=2000`);
    $("ssd-detail").hidden = false;
    $("ssd-title").textContent = `Trends: ${id}`;
    if (!r.ok) { $("ssd-plots").innerHTML = `<p class="error">${RF.esc(RF.detail(r.data))}</p>`; return; }
    const samples = r.data.samples || [];
    const fields = new Map();
    for (const s of samples) {
      const t = RF.iso(s.collected_at);
      for (const part of [s.smart || {}, s.ocp || {}]) for (const [k, v] of Object.entries(part)) {
        if (typeof v !== "number" || !TREND.includes(k)) continue;
        if (!fields.has(k)) fields.set(k, []);
        fields.get(k).push([t, v]);
      }
    }
    const keys = TREND.filter(k => fields.has(k)).slice(0, 6);
    $("ssd-plots").innerHTML = keys.map((k, i) => `<div class="plotbox" id="ssd-plot-${i}"></div>`).join("") || `<p class="muted">no numeric trend fields</p>`;
    keys.forEach((k, i) => RF.plot($(`ssd-plot-${i}`), k, [{label: k, points: fields.get(k)}]));
  }

  $("ssd-table").addEventListener("click", e => {
    const row = e.target.closest("tr.drive");
    if (!row) return;
    e.preventDefault();
    detail(row.dataset.id);
  });
  $("ssd-filter").addEventListener("change", load);
  load().catch(e => { $("ssd-table").innerHTML = `<p class="error">${RF.esc(e.message || e)}</p>`; });
})();

// redfleet dashboard: shared helpers (no framework; every page works from the same small set).
"use strict";
const RF = (() => {
  const canAct = document.body.dataset.canAct === "yes";

  // Calls the REST API with the dashboard cookie. Writes carry the CSRF header the API demands of cookie-only
  // requests (a cross-site form cannot send it).
  async function api(path, opts = {}) {
    const init = {credentials: "same-origin", headers: {"Accept": "application/json"}, method: opts.method || "GET"};
    if (init.method !== "GET") {
      init.headers["X-Redfleet-CSRF"] = "1";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body || {});
    }
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), opts.timeout || 15000);
    init.signal = ctl.signal;
    try {
      const r = await fetch(path, init);
      if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); }
      let data = null;
      const text = await r.text();
      try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
      return {ok: r.ok, status: r.status, data};
    } finally { clearTimeout(timer); }
  }

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
  }

  function detail(d) {
    if (d == null) return "";
    if (typeof d === "string") return d;
    if (d.detail !== undefined) return typeof d.detail === "string" ? d.detail : JSON.stringify(d.detail);
    return JSON.stringify(d);
  }

  function dur(s) {
    if (s == null || !isFinite(s)) return "–";
    if (s < 1) return (s * 1000).toFixed(0) + " ms";
    if (s < 120) return s.toFixed(1) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  const iso = t => (t ? Date.parse(t) / 1000 : null);
  const time = t => (t == null ? "–" : new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19));

  // A confirmation step for actions: resolves true only when the user presses Confirm.
  function confirmAction(text) {
    const dlg = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    return new Promise(resolve => {
      dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), {once: true});
      dlg.returnValue = "";
      dlg.showModal();
    });
  }

  const COLORS = ["#2a7de1", "#e8743b", "#19a979", "#945ecf", "#ed4a7b", "#13a4b4", "#6c8893", "#d6b800",
                  "#525df4", "#bf399e"];

  // A small SVG line plot: series = [{label, points: [[t, v], ...]}]; x is epoch seconds.
  function plot(el, title, series, opts = {}) {
    const W = opts.width || 460, H = opts.height || 170, L = 54, R = 8, T = 18, B = 22;
    const pts = series.flatMap(s => s.points);
    let html = `<figure class="plot"><figcaption>${esc(title)}</figcaption>`;
    if (!pts.length) { el.innerHTML = html + `<p class="muted">no data</p></figure>`; return; }
    let x0 = Math.min(...pts.map(p => p[0])), x1 = Math.max(...pts.map(p => p[0]));
    let y0 = Math.min(...pts.map(p => p[1])), y1 = Math.max(...pts.map(p => p[1]));
    if (opts.xmin != null) x0 = Math.min(x0, opts.xmin);
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y1 += 1; y0 -= 1; }
    const pad = (y1 - y0) * 0.08; y0 -= pad; y1 += pad;
    const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
    const sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
    let svg = `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">`;
    for (let i = 0; i <= 3; i++) {
      const y = y0 + (y1 - y0) * i / 3;
      svg += `<line class="gridline" x1="${L}" x2="${W - R}" y1="${sy(y)}" y2="${sy(y)}"/>` +
             `<text x="${L - 4}" y="${sy(y) + 3}" text-anchor="end">${+y.toPrecision(3)}</text>`;
    }
    // x labels: time of day within a day, the date beyond (SSD trends span weeks)
    const xl = t => (x1 - x0 > 86400 ? time(t).slice(5, 10) : time(t).slice(11, 16));
    svg += `<text x="${L}" y="${H - 6}">${esc(xl(x0))}</text>` +
           `<text x="${W - R}" y="${H - 6}" text-anchor="end">${esc(xl(x1))}</text>`;
    series.forEach((s, i) => {
      const c = COLORS[i % COLORS.length];
      if (opts.dots) {
        svg += s.points.map(p => `<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="2.5" fill="${c}"/>`).join("");
      } else {
        const d = s.points.map((p, j) => (j ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join("");
        svg += `<path d="${d}" stroke="${c}" fill="none" stroke-width="1.5"/>`;
      }
    });
    svg += "</svg>";
    const legend = series.length > 1 ? `<div class="legend">${series.slice(0, 10).map((s, i) =>
      `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(s.label)}</span>`).join("")}</div>` : "";
    el.innerHTML = html + svg + legend + "</figure>";
  }

  function table(cols, rows, id) {
    return `<table class="grid"${id ? ` id="${id}"` : ""}><thead><tr>${cols.map(c => `<th>${esc(c)}</th>`).join("")}</tr></thead>` +
      `<tbody>${rows.length ? rows.join("") : `<tr class="empty"><td colspan="${cols.length}">none</td></tr>`}</tbody></table>`;
  }

  function say(text, ok) {
    const el = document.getElementById("action-result");
    if (!el) return;
    el.textContent = text;
    el.className = "result " + (ok ? "ok" : "error");
  }

  return {api, esc, detail, dur, iso, time, confirmAction, plot, table, say, canAct};
})();

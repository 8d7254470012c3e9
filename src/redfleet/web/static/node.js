// Node page: live plots of the last hour, live health, the remediation timeline and (operators) actions.
"use strict";
(() => {
  const node = document.getElementById("node").dataset.node;
  const enc = encodeURIComponent(node);
  // What to plot, best first: GPU telemetry (DCGM field names) then the BMC's own sensors.
  const WANTED = [/GPU_TEMP$/, /POWER_USAGE$/, /GPU_UTIL$/, /MEMORY_TEMP$/, /temperature/i, /fan/i, /power/i];
  let metrics = [];

  function pickMetrics(list) {
    const names = [...new Set(list.map(m => m.metric))];
    const out = [];
    for (const re of WANTED) {
      for (const n of names) if (re.test(n) && !out.includes(n)) { out.push(n); break; }
      if (out.length >= 6) break;
    }
    return out;
  }

  async function plots() {
    const box = document.getElementById("plots");
    if (!metrics.length) {
      const r = await RF.api(`/api/v1/nodes/${enc}`);
      if (!r.ok) { box.innerHTML = `<p class="error">${RF.esc(RF.detail(r.data))}</p>`; return; }
      metrics = pickMetrics(r.data.metrics || []);
      box.innerHTML = metrics.map((m, i) => `<div class="plotbox" id="plot-${i}"></div>`).join("") ||
        `<p class="muted">no telemetry yet</p>`;
    }
    const now = Date.now() / 1000;
    await Promise.all(metrics.map(async (m, i) => {
      const r = await RF.api(`/api/v1/nodes/${enc}/metrics?metric=${encodeURIComponent(m)}&seconds=3600`);
      if (!r.ok) return;
      const series = (r.data.series || []).slice(0, 10).map(s => ({
        label: s.gpu != null ? `GPU ${s.gpu}` : (Object.values(s.labels || {}).join(" ") || m),
        points: s.points.map(p => [p[0], p[1]])}));
      RF.plot(document.getElementById(`plot-${i}`), m, series);
    }));
    document.getElementById("plots-note").textContent = `updated ${RF.time(now).slice(11)} UTC`;
  }

  async function health() {
    const r = await RF.api(`/api/v1/nodes/${enc}`);
    if (!r.ok) return;
    const h = r.data.health;
    const badge = document.getElementById("health-state");
    badge.textContent = h.state;
    badge.className = `badge s-${h.state}`;
    const rows = (h.reasons || []).map(x => `<tr class="sev-${RF.esc(x.severity)}"><td>${RF.esc(x.severity)}</td><td>${RF.esc(x.rule)}</td>` +
      `<td>${RF.esc(x.component)}</td><td>${RF.esc(x.message)}</td><td>${RF.esc(x.action || "")}</td></tr>`);
    document.querySelector("#reasons tbody").innerHTML = rows.join("") ||
      `<tr class="empty"><td colspan="5">no reasons: ${RF.esc(h.state)}</td></tr>`;
    document.getElementById("lifecycle").textContent = r.data.lifecycle;
  }

  function stepRows(w) {
    const now = Date.now() / 1000;
    const t0 = RF.iso(w.started_at);
    const end = RF.iso(w.finished_at) || now;
    const span = Math.max(end - t0, 1);
    return (w.steps || []).map(s => {
      const a = RF.iso(s.started_at), b = RF.iso(s.finished_at) || now;
      const left = (a - t0) / span * 100, width = Math.max((b - a) / span * 100, 0.5);
      return `<tr class="step r-${RF.esc(s.result)}"><td>${RF.esc(s.name)}</td><td>${RF.esc(s.result)}</td><td>${RF.dur(b - a)}</td>` +
        `<td class="gantt"><span style="left:${left.toFixed(2)}%;width:${width.toFixed(2)}%"></span></td></tr>`;
    });
  }

  async function remediation() {
    const box = document.getElementById("remediation");
    const r = await RF.api(`/api/v1/remediations?node=${enc}&limit=20`);
    if (r.status === 404) { box.innerHTML = `<p class="muted" id="rem-disabled">remediation not enabled</p>`; return; }
    if (!r.ok) { box.innerHTML = `<p class="error">${RF.esc(RF.detail(r.data))}</p>`; return; }
    const wfs = r.data || [];
    if (!wfs.length) { box.innerHTML = `<p class="muted">no remediation workflows for this node</p>`; return; }
    box.innerHTML = wfs.map(w => {
      const d = (RF.iso(w.finished_at) || Date.now() / 1000) - RF.iso(w.started_at);
      const why = ((w.trigger || {}).reasons || []).map(x => `${x.rule}: ${x.message}`).join("; ");
      return `<div class="workflow" data-id="${w.id}"><h3>#${w.id} <span class="badge w-${RF.esc(w.state)}">${RF.esc(w.state)}</span> ` +
        `phase ${RF.esc(w.phase)}${w.rung ? ` · rung ${RF.esc(w.rung)}` : ""}${w.dry_run ? " · dry run" : ""} · ${RF.dur(d)}</h3>` +
        `<p class="muted">started ${RF.esc(w.started_at)} · ${RF.esc(why)}</p>` +
        RF.table(["step", "result", "duration", "timeline"], stepRows(w)) + "</div>";
    }).join("");
  }

  async function act(path, body, text) {
    if (!(await RF.confirmAction(text))) { RF.say("cancelled", false); return; }
    RF.say("working…", true);
    const r = await RF.api(path, {method: "POST", body, timeout: 60000});
    if (r.status === 404 && path.endsWith("/power") && !(r.data && /node/.test(RF.detail(r.data)))) {
      RF.say("power actions are not available on this server yet", false); return;
    }
    RF.say(r.ok ? `done: ${body.action || body.state || "boot " + body.target}` +
                  (r.data && r.data.reset_type ? ` (${r.data.reset_type})` : "")
                : `refused (${r.status}): ${RF.detail(r.data)}`, r.ok);
    health();
  }

  const actions = document.getElementById("actions");
  if (actions) {
    actions.addEventListener("click", e => {
      const b = e.target.closest("button");
      if (!b) return;
      if (b.classList.contains("power")) {
        act(`/api/v1/nodes/${enc}/power`, {action: b.dataset.action}, `${b.textContent.trim()}: ${node}?`);
      } else if (b.classList.contains("boot")) {
        act(`/api/v1/nodes/${enc}/boot`, {target: b.dataset.target, once: true, reason: "dashboard"},
            `Boot ${node} from ${b.textContent.trim()} on its next start?`);
      } else if (b.classList.contains("lifecycle")) {
        act(`/api/v1/nodes/${enc}/state`, {state: b.dataset.state, reason: "dashboard"}, `Set ${node} to ${b.dataset.state}?`);
      }
    });
  }
  plots().catch(() => {});
  remediation().catch(() => {});
  setInterval(() => { plots().catch(() => {}); health().catch(() => {}); remediation().catch(() => {}); }, 5000);
})();

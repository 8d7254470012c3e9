// Remediation queue: controller status, approvals, active and recent workflows, MTTR and phase durations.
"use strict";
(() => {
  const $ = id => document.getElementById(id);

  function wfRow(w, approve) {
    const d = (RF.iso(w.finished_at) || Date.now() / 1000) - RF.iso(w.started_at);
    const why = ((w.trigger || {}).reasons || []).slice(0, 2).map(x => `${x.rule}: ${x.message}`).join("; ");
    const btn = approve && RF.canAct ? `<button class="approve" data-id="${w.id}">Approve</button>` : "";
    return `<tr data-node="${RF.esc(w.node)}"><td>#${w.id}</td><td><a href="/nodes/${encodeURIComponent(w.node)}">${RF.esc(w.node)}</a></td>` +
      `<td><span class="badge w-${RF.esc(w.state)}">${RF.esc(w.state)}</span></td><td>${RF.esc(w.phase)}</td>` +
      `<td>${RF.esc(w.rung || (w.approval || {}).rung || "")}</td><td>${RF.esc((w.trigger || {}).action || "")}</td>` +
      `<td>${RF.esc(why)}</td><td>${RF.esc((w.started_at || "").replace("T", " ").slice(0, 19))}</td><td>${RF.dur(d)}</td><td>${btn}</td></tr>`;
  }
  const COLS = ["id", "node", "state", "phase", "rung", "action", "why", "started (UTC)", "duration", ""];

  function status(s) {
    const br = s.breaker || {};
    const phases = Object.entries(s.phases_s || {}).map(([k, v]) => `<tr><td>${RF.esc(k)}</td><td>${v.count}</td><td>${RF.dur(v.p50)}</td><td>${RF.dur(v.p99)}</td></tr>`);
    $("rem-status").innerHTML = `<h1>Remediation</h1><div class="counts">` +
      `<span class="chip ${s.paused ? "s-degraded" : "s-healthy"}" id="rem-paused">${s.paused ? "paused" : "running"}</span>` +
      `<span class="chip ${br.tripped ? "s-unhealthy" : "s-healthy"}" id="rem-breaker">breaker ${br.tripped ? "TRIPPED" : "closed"}</span>` +
      (s.dry_run ? `<span class="chip s-unknown">dry run</span>` : "") +
      `<span class="chip">active <b>${s.active}</b></span><span class="chip">waiting approval <b>${s.waiting_approval}</b></span></div>` +
      (s.paused ? `<p>paused by ${RF.esc(s.paused_by || "?")}: ${RF.esc(s.paused_reason || "")}</p>` : "") +
      (br.tripped ? `<p class="error">breaker tripped ${RF.esc(br.tripped_at || "")}: ${RF.esc(br.reason || "")}</p>` : "") +
      `<p class="muted">breaker threshold ${br.threshold_percent ?? "–"}% in ${RF.dur(br.window_s)} (${br.unhealthy_in_window ?? 0} now) · caps: ` +
      `${(s.caps || {}).max_concurrent ?? "–"} at once, ${(s.caps || {}).max_percent ?? "–"}%, ${(s.caps || {}).max_per_rack ?? "–"} per rack</p>` +
      `<p>MTTR p50 ${RF.dur((s.mttr_s || {}).p50)} · p90 ${RF.dur((s.mttr_s || {}).p90)} · p99 ${RF.dur((s.mttr_s || {}).p99)} (${(s.mttr_s || {}).count || 0} repairs)</p>` +
      RF.table(["phase", "count", "p50", "p99"], phases);
  }

  function plots(wfs) {
    const done = wfs.filter(w => w.finished_at);
    const box = $("rem-plots");
    box.innerHTML = `<div class="plotbox" id="plot-mttr"></div><div class="plotbox" id="plot-phases"></div>`;
    RF.plot($("plot-mttr"), "time to repair (s) by finish time",
      [{label: "workflows", points: done.map(w => [RF.iso(w.finished_at), RF.iso(w.finished_at) - RF.iso(w.started_at)]).sort((a, b) => a[0] - b[0])}], {dots: true});
    const byStep = new Map();
    for (const w of wfs) for (const s of w.steps || []) {
      if (!s.finished_at) continue;
      const b = RF.iso(s.finished_at);
      if (!byStep.has(s.name)) byStep.set(s.name, []);
      byStep.get(s.name).push([b, b - RF.iso(s.started_at)]);
    }
    RF.plot($("plot-phases"), "step durations (s) by finish time",
      [...byStep.entries()].map(([k, v]) => ({label: k, points: v.sort((a, b) => a[0] - b[0])})), {dots: true});
  }

  async function load() {
    const st = await RF.api("/api/v1/remediation/status");
    if (st.status === 404) {
      $("rem-status").innerHTML = `<h1>Remediation</h1><p class="muted" id="rem-disabled">remediation not enabled on this server</p>`;
      for (const id of ["rem-approvals", "rem-active", "rem-recent", "rem-plots"]) $(id).innerHTML = `<p class="muted">–</p>`;
      return;
    }
    if (!st.ok) { $("rem-status").innerHTML = `<p class="error">${RF.esc(RF.detail(st.data))}</p>`; return; }
    if (st.data.enabled === false) {
      $("rem-status").innerHTML = `<h1>Remediation</h1><p class="muted" id="rem-disabled">automated remediation not enabled on this server (serve --remediation); stored workflows below</p>`;
    } else {
      status(st.data);
      if ($("rem-actions")) $("rem-actions").hidden = false;
    }
    const all = await RF.api("/api/v1/remediations?limit=200");
    const wfs = all.ok ? all.data : [];
    const active = wfs.filter(w => ["running", "waiting_approval", "paused"].includes(w.state));
    $("rem-approvals").innerHTML = RF.table(COLS, wfs.filter(w => w.state === "waiting_approval").map(w => wfRow(w, true)), "rem-approvals-table");
    $("rem-active").innerHTML = RF.table(COLS, active.map(w => wfRow(w, false)), "rem-active-table");
    $("rem-recent").innerHTML = RF.table(COLS, wfs.filter(w => !active.includes(w)).map(w => wfRow(w, false)), "rem-recent-table");
    plots(wfs);
  }

  document.addEventListener("click", async e => {
    const b = e.target.closest("button[data-op], button.approve");
    if (!b) return;
    let path, body = {}, text;
    if (b.classList.contains("approve")) {
      path = `/api/v1/remediations/${b.dataset.id}/approve`; body = {comment: "approved from the dashboard"};
      text = `Approve workflow #${b.dataset.id}?`;
    } else {
      path = `/api/v1/remediation/${b.dataset.op}`; text = `${b.textContent.trim()} remediation?`;
      if (b.dataset.op === "pause") body = {reason: "paused from the dashboard"};
    }
    if (!(await RF.confirmAction(text))) { RF.say("cancelled", false); return; }
    const r = await RF.api(path, {method: "POST", body});
    RF.say(r.ok ? "done" : `refused (${r.status}): ${RF.detail(r.data)}`, r.ok);
    load();
  });
  load().catch(e => { $("rem-status").innerHTML = `<p class="error">${RF.esc(e.message || e)}</p>`; });
  setInterval(() => load().catch(() => {}), 5000);
})();

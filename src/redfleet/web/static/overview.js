// Fleet overview: every node a cell in its rack, coloured by health. Built as one HTML string (one layout pass
// for 10,000 cells), filtered by toggling a class, refreshed by changing only the cells whose state changed.
"use strict";
(() => {
  const racksEl = document.getElementById("racks");
  const tip = document.getElementById("tip");
  let data = null, cells = [], stateFilter = "";

  function persona(tags) {
    for (const t of tags) if (t.startsWith("persona:")) return t.slice(8);
    return "";
  }

  function options(sel, values, label) {
    const cur = sel.value;
    const sorted = [...values].filter(v => v).sort((a, b) => a.localeCompare(b, undefined, {numeric: true}));
    sel.innerHTML = `<option value="">${label}</option>` + sorted.map(v => `<option>${RF.esc(v)}</option>`).join("");
    if (sorted.includes(cur)) sel.value = cur;
  }

  function draw(d) {
    data = d;
    const n = d.count, byRack = new Map();
    for (let i = 0; i < n; i++) {
      const r = d.rack[i] || "";
      let list = byRack.get(r);
      if (!list) byRack.set(r, list = []);
      list.push(i);
    }
    const racks = [...byRack.keys()].sort((a, b) => (a === "") - (b === "") || a.localeCompare(b, undefined, {numeric: true}));
    const parts = [];
    for (const r of racks) {
      const idx = byRack.get(r);
      idx.sort((a, b) => (d.position[a] ?? 1e9) - (d.position[b] ?? 1e9) || (d.names[a] < d.names[b] ? -1 : 1));
      parts.push(`<div class="rack${r ? "" : " unracked"}" data-rack="${RF.esc(r)}"><div class="rname">${RF.esc(r || "no rack")}</div><div class="cells">`);
      for (const i of idx) parts.push(`<a class="c s-${d.state[i]}" href="/nodes/${encodeURIComponent(d.names[i])}" data-i="${i}" data-n="${RF.esc(d.names[i])}"></a>`);
      parts.push("</div></div>");
    }
    racksEl.classList.toggle("big", n <= 2000);  // a small fleet gets cells big enough to aim at
    racksEl.innerHTML = parts.join("");
    cells = new Array(n);
    for (const el of racksEl.querySelectorAll("a.c")) cells[+el.dataset.i] = el;
    const tags = new Set(d.tags.flat());
    options(document.getElementById("f-vendor"), new Set(d.vendor), "all vendors");
    options(document.getElementById("f-model"), new Set(d.model), "all models");
    options(document.getElementById("f-rack"), new Set(d.rack), "all racks");
    options(document.getElementById("f-persona"), new Set(d.tags.map(persona)), "all personas");
    options(document.getElementById("f-tag"), new Set([...tags].filter(t => !t.startsWith("persona:"))), "all tags");
    summary(d);
    filter();
  }

  function summary(d) {
    for (const b of document.querySelectorAll("#counts .chip")) {
      b.querySelector("b").textContent = d.counts[b.dataset.state] ?? 0;
      b.classList.toggle("on", b.dataset.state === stateFilter);
    }
    const el = document.getElementById("breaker");
    const br = d.breaker;
    if (!br) {
      el.textContent = d.paused == null ? "breaker: remediation not enabled" : "breaker: –";
      el.className = "breaker";
    } else {
      el.textContent = `breaker: ${br.tripped ? "TRIPPED" : "closed"}` + (br.reason ? ` — ${br.reason}` : "") +
        (d.paused ? " · remediation paused" : "");
      el.className = "breaker " + (br.tripped ? "tripped" : "closed");
    }
  }

  function filter() {
    if (!data) return;
    const d = data;
    const q = document.getElementById("f-search").value.trim().toLowerCase();
    const v = document.getElementById("f-vendor").value, m = document.getElementById("f-model").value;
    const r = document.getElementById("f-rack").value, p = document.getElementById("f-persona").value;
    const t = document.getElementById("f-tag").value;
    const any = q || v || m || r || p || t || stateFilter;
    let shown = 0;
    for (let i = 0; i < d.count; i++) {
      const ok = !any || ((!q || d.names[i].toLowerCase().includes(q) || (d.serial[i] || "").toLowerCase().includes(q)) &&
        (!v || d.vendor[i] === v) && (!m || d.model[i] === m) && (!r || d.rack[i] === r) &&
        (!p || d.tags[i].includes("persona:" + p)) && (!t || d.tags[i].includes(t)) &&
        (!stateFilter || d.state[i] === stateFilter));
      if (ok) shown++;
      const el = cells[i];
      if (el && el.classList.contains("off") === ok) el.classList.toggle("off", !ok);
    }
    for (const rack of racksEl.children) {
      const vis = !any || rack.querySelector("a.c:not(.off)") !== null;
      rack.classList.toggle("hide", !vis);
    }
    document.getElementById("f-count").textContent = any ? `${shown} of ${d.count} nodes` : `${d.count} nodes`;
  }

  function update(d) {
    const same = data && d.count === data.count && d.names.every((x, i) => x === data.names[i]);
    if (!same) { draw(d); return; }
    for (let i = 0; i < d.count; i++) {
      if (d.state[i] !== data.state[i]) cells[i].className = `c s-${d.state[i]}` + (cells[i].classList.contains("off") ? " off" : "");
    }
    data = d;
    summary(d);
    filter();
  }

  function drawn() {
    // Measured from navigation start (performance.now's origin) to the frame after the cells were laid out.
    requestAnimationFrame(() => setTimeout(() => {
      window.RF_DRAWN_MS = performance.now();
      document.body.dataset.drawn = String(data ? data.count : 0);
    }, 0));
  }

  async function first() {
    try {
      const r = await window.RF_OVERVIEW;
      if (r.status === 401) { location.href = "/login?next=/"; return; }
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      draw(await r.json());
    } catch (e) {
      racksEl.innerHTML = `<p class="error">the overview could not be loaded: ${RF.esc(e.message || e)}</p>`;
    }
    drawn();
  }

  async function poll() {
    const r = await RF.api("/api/v1/overview").catch(() => null);
    if (r && r.ok) update(r.data);
  }

  for (const id of ["f-vendor", "f-model", "f-rack", "f-persona", "f-tag"]) document.getElementById(id).addEventListener("change", filter);
  document.getElementById("f-search").addEventListener("input", filter);
  document.getElementById("counts").addEventListener("click", e => {
    const b = e.target.closest(".chip");
    if (!b) return;
    stateFilter = stateFilter === b.dataset.state ? "" : b.dataset.state;
    summary(data || {counts: {}, breaker: null, paused: null});
    filter();
  });
  racksEl.addEventListener("mouseover", e => {
    const el = e.target.closest("a.c");
    if (!el || !data) { tip.hidden = true; return; }
    const i = +el.dataset.i, d = data;
    tip.innerHTML = `<b>${RF.esc(d.names[i])}</b> <span class="badge s-${d.state[i]}">${d.state[i]}</span>` +
      (d.action[i] ? ` → ${RF.esc(d.action[i])}` : "") +
      `<br>${RF.esc(d.vendor[i] || "?")} ${RF.esc(d.model[i] || "")} · ${RF.esc(d.rack[i] || "no rack")}` +
      (d.position[i] != null ? ` U${d.position[i]}` : "") + (d.serial[i] ? `<br>serial ${RF.esc(d.serial[i])}` : "") +
      (d.tags[i].length ? `<br>${d.tags[i].map(RF.esc).join(", ")}` : "");
    const rc = el.getBoundingClientRect();
    tip.style.left = Math.min(rc.right + 6, innerWidth - 280) + "px";
    tip.style.top = (rc.top + scrollY) + "px";
    tip.hidden = false;
  });
  racksEl.addEventListener("mouseleave", () => { tip.hidden = true; });
  first();
  setInterval(poll, 5000);
})();

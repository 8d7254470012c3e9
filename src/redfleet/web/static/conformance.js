// Profile conformance: per vendor/model/firmware, and per node with the failing requirements.
"use strict";
(() => {
  const $ = id => document.getElementById(id);
  let nodes = [];

  function drawNodes() {
    const q = $("conf-search").value.trim().toLowerCase();
    const rows = nodes.filter(n => !q || n.node.toLowerCase().includes(q)).map(n => {
      const fails = (n.failing || []).map(f => `<li><b>${RF.esc(f.resource)}</b> ${RF.esc(f.property || "(resource)")}: ${RF.esc(f.requirement || "")}` +
        (f.found != null ? ` — found ${RF.esc(JSON.stringify(f.found))}` : "") + `</li>`).join("");
      const ok = n.summary.fail === 0 && !n.error;
      return `<tr data-node="${RF.esc(n.node)}"><td><a href="/nodes/${encodeURIComponent(n.node)}">${RF.esc(n.node)}</a></td>` +
        `<td>${RF.esc(n.profile)} ${RF.esc(n.profile_version)}</td><td>${RF.esc(n.vendor)} · ${RF.esc(n.model)} · ${RF.esc(n.firmware)}</td>` +
        `<td><span class="badge ${ok ? "s-healthy" : "s-unhealthy"}">${ok ? "conformant" : (n.error ? "unreadable" : n.summary.fail + " failing")}</span></td>` +
        `<td>${n.summary.pass}/${n.summary.warn}/${n.summary.fail}/${n.summary.not_tested}</td>` +
        `<td>${RF.esc(n.validated_at.replace("T", " ").slice(0, 19))}</td>` +
        `<td>${n.error ? RF.esc(n.error) : (fails ? `<details><summary>${n.failing.length} failing</summary><ul>${fails}</ul></details>` : "")}</td></tr>`;
    });
    $("conf-nodes").innerHTML = RF.table(["node", "profile", "platform", "verdict", "pass/warn/fail/n.t.", "validated (UTC)", "failing requirements"], rows, "conf-nodes-table");
  }

  async function load() {
    const r = await RF.api("/api/v1/profiles/conformance");
    if (!r.ok) { $("conf-platforms").innerHTML = `<p class="muted">${r.status === 404 ? "conformance not available on this server" : RF.esc(RF.detail(r.data))}</p>`; return; }
    nodes = r.data.nodes;
    $("conf-platforms").innerHTML = nodes.length ? RF.table(["vendor", "model", "BMC firmware", "nodes", "conformant", "unreadable", "fail", "common failures"],
      r.data.platforms.map(p => `<tr><td>${RF.esc(p.vendor)}</td><td>${RF.esc(p.model)}</td><td>${RF.esc(p.firmware)}</td><td>${p.nodes}</td>` +
        `<td>${p.conformant}</td><td>${p.unreachable}</td><td>${p.fail}</td><td>${p.common_failures.map(c => `${RF.esc(c.requirement)} (${c.nodes})`).join("<br>")}</td></tr>`), "conf-platforms-table")
      : `<p class="muted">no conformance runs stored yet: run <code>redfleet validate --db …</code></p>`;
    drawNodes();
  }
  $("conf-search").addEventListener("input", drawNodes);
  load().catch(e => { $("conf-platforms").innerHTML = `<p class="error">${RF.esc(e.message || e)}</p>`; });
})();

// stalwart dashboard: renders /v1/summary, then keeps it live over server-sent events.
"use strict";
const $ = (id) => document.getElementById(id);
const fmt = (v, digits = 0) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const pct = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(1) + " %");
const mib = (v) => (v === null || v === undefined ? "–" : (v / 1048576).toFixed(1) + " MiB");

function text(id, value) { const el = $(id); if (el && el.textContent !== value) el.textContent = value; }

function li(list, items, render) {
  const ul = $(list);
  ul.replaceChildren(...items.map((item) => { const el = document.createElement("li"); render(el, item); return el; }));
}

function render(s) {
  text("node", s.node);
  const ready = $("ready");
  ready.textContent = s.ready ? "ready" : "not ready";
  ready.className = "badge " + (s.ready ? "ok" : "bad");
  const b = s.business, y = s.system;
  text("tasks_completed", fmt(b.tasks_completed));
  text("tasks_failed", fmt(b.tasks_failed));
  text("success_rate", pct(b.success_rate));
  text("cost_today_usd", "$" + fmt(b.cost_today_usd, 4));
  text("model_latency_avg_s", y.model_latency_avg_s === null ? "–" : fmt(y.model_latency_avg_s * 1000, 0) + " ms");
  text("model_errors", fmt(y.model_errors));
  text("model_error_rate", pct(y.model_error_rate));
  text("breakers_open", fmt(y.breakers_open));
  text("fallbacks", fmt(y.fallbacks));
  text("restarts", fmt(y.restarts));
  text("agents_running", fmt(y.agents_running));
  const body = $("agents");
  body.replaceChildren(...s.agents.map((a) => {
    const tr = document.createElement("tr");
    tr.dataset.agent = a.name;
    tr.dataset.restarts = a.restarts;
    for (const v of [a.name, a.state, a.pid ?? "–", a.restarts, fmt(a.cpu_seconds, 2), mib(a.rss_bytes), fmt(a.open_fds), fmt(a.connections)]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    return tr;
  }));
  li("alerts_active", s.alerts.active, (el, a) => {
    el.className = a.severity;
    el.textContent = `${a.severity.toUpperCase()} ${a.name} ${Object.entries(a.labels).filter(([k]) => k !== "alertname" && k !== "severity").map(([k, v]) => k + "=" + v).join(" ")} value=${fmt(a.value, 2)}`;
  });
  li("alerts_recent", s.alerts.recent.slice().reverse(), (el, n) => {
    el.className = n.severity;
    el.textContent = `${new Date(n.status === "resolved" ? n.ends_at * 1000 : n.starts_at * 1000).toLocaleTimeString()} ${n.status} ${n.severity} ${n.name}`;
  });
  li("degradation_list", s.degradations.slice().reverse(), (el, d) => {
    el.textContent = `${new Date(d.ts * 1000).toLocaleTimeString()} ${d.event} ${d.component ?? d.agent ?? ""}`;
  });
  document.body.dataset.updated = String(Date.now());
}

// the server embeds the first summary in the page: numbers at first paint, no extra round trip
const initial = document.getElementById("initial");
if (initial) render(JSON.parse(initial.textContent));
else fetch("/v1/summary").then((r) => r.json()).then(render).catch(() => {});
// the nodes sharing this node's store (docs/cluster.md), refreshed every 2 s
function cluster() {
  fetch("/v1/cluster").then((r) => r.json()).then((c) => {
    li("cluster_nodes", c.nodes, (el, n) => {
      el.className = n.alive ? "" : "critical";
      const agents = (n.info && n.info.agents) ? n.info.agents.join(", ") : "";
      el.textContent = `${n.id}${n.self ? " (this node)" : ""} ${n.alive ? "alive" : "silent"} ${agents}`;
    });
  }).catch(() => {});
}
cluster();
setInterval(cluster, 2000);
const source = new EventSource("/v1/events");
source.addEventListener("summary", (e) => render(JSON.parse(e.data)));
source.onopen = () => { const el = $("live"); el.textContent = "live"; el.className = "badge ok"; };
source.onerror = () => { const el = $("live"); el.textContent = "reconnecting"; el.className = "badge bad"; };

// stalwart dashboard: renders /v1/summary, then keeps it live over server-sent events;
// lists recent tasks (/v1/tasks) and shows a task's journal (/v1/tasks/{id}/journal).
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
  li("breaker_list", y.breakers ?? [], (el, b) => { el.className = b.state; el.textContent = `${b.dependency} ${b.state}`; });
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

// an answer of 401 means the session ended (the API token changed): show the login form
function getJSON(url) {
  return fetch(url).then((r) => {
    if (r.status === 401) { location.reload(); throw new Error("logged out"); }
    return r.json().then((body) => ({ status: r.status, body }));
  });
}
const secs = (v) => (v === null || v === undefined ? "–" : v < 1 ? (v * 1000).toFixed(0) + " ms" : v.toFixed(1) + " s");
function cell(tr, value, cls) {
  const td = document.createElement("td"); td.textContent = value; if (cls) td.className = cls; tr.appendChild(td); return td;
}
let selected = null;
function tasks() {
  getJSON("/v1/tasks?limit=20").then(({ status, body }) => {
    if (status !== 200) { text("tasks_note", body.error || "tasks unavailable"); return; }
    text("tasks_note", body.count ? "" : "no tasks yet");
    $("task_rows").replaceChildren(...body.tasks.map((t) => {
      const tr = document.createElement("tr");
      tr.dataset.task = t.id;
      tr.dataset.status = t.status;
      if (t.id === selected) tr.className = "selected";
      cell(tr, t.id); cell(tr, t.agent); cell(tr, t.status, t.status); cell(tr, t.attempts);
      cell(tr, new Date(t.created_at * 1000).toLocaleTimeString()); cell(tr, secs(t.duration_s));
      const act = cell(tr, "");
      if (["pending", "running", "awaiting_approval"].includes(t.status)) {
        act.appendChild(button("Cancel", "cancel", () => post("/v1/tasks/" + encodeURIComponent(t.id) + "/cancel")));
      }
      tr.addEventListener("click", () => journal(t.id));
      return tr;
    }));
  }).catch(() => {});
}
function journal(id) {
  selected = id;
  for (const tr of $("task_rows").children) tr.className = tr.dataset.task === id ? "selected" : "";
  getJSON("/v1/tasks/" + encodeURIComponent(id) + "/journal").then(({ status, body }) => {
    const box = $("journal");
    box.hidden = false;
    text("journal_task", id);
    if (status !== 200) { text("journal_status", body.error || "unavailable"); $("journal_steps").replaceChildren(); return; }
    const badge = $("journal_status");
    badge.textContent = body.task.status;
    badge.className = "badge " + (body.task.status === "succeeded" ? "ok" : ["failed", "quarantined"].includes(body.task.status) ? "bad" : "");
    $("journal_unknown").hidden = !body.task.outcome_unknown;
    const err = body.error, errBox = $("journal_error");
    errBox.hidden = !err;
    errBox.textContent = err ? [err.type + ": " + err.message, err.last_error ? "last error: " + err.last_error.message : "", err.traceback || ""].filter(Boolean).join("\n") : "";
    const effects = body.unknown_effects || [];
    if (effects.length) errBox.hidden = false, errBox.textContent += (errBox.textContent ? "\n" : "") + effects.map((e) => `outcome unknown: ${e.tool} (key ${e.key})`).join("\n");
    $("journal_steps").replaceChildren(...body.steps.map((s) => {
      const tr = document.createElement("tr");
      tr.dataset.seq = s.seq;
      cell(tr, s.seq); cell(tr, s.kind); cell(tr, s.name); cell(tr, s.status, s.status); cell(tr, secs(s.duration_s));
      const pre = document.createElement("pre"); pre.textContent = JSON.stringify(s.value, null, 1);
      cell(tr, "").appendChild(pre);
      return tr;
    }));
    box.dataset.task = id;
  }).catch(() => {});
}
// Changing anything (cancel, approve, deny) needs the API token as a bearer header: the
// login cookie is accepted for reads only (CSRF). It is asked once and kept in this tab.
function apiToken() {
  let t = sessionStorage.getItem("stalwart_token");
  if (!t) {
    t = prompt("API token (kept in this browser tab only)");
    if (t) sessionStorage.setItem("stalwart_token", t);
  }
  return t;
}
function button(label, cls, onclick) {
  const b = document.createElement("button");
  b.textContent = label; b.className = cls; b.dataset.action = cls;
  b.addEventListener("click", (e) => { e.stopPropagation(); onclick(); });
  return b;
}
function post(url) {
  const t = apiToken();
  if (!t) return Promise.resolve();
  return fetch(url, {
    method: "POST",
    headers: { "Authorization": "Bearer " + t, "Content-Type": "application/json" },
    body: JSON.stringify({ by: "dashboard" }),
  }).then((r) => {
    if (r.status === 401) sessionStorage.removeItem("stalwart_token");
    return r.json().then((b) => { if (!r.ok) alert(b.error || ("HTTP " + r.status)); });
  }).catch(() => {}).then(() => { tasks(); approvals(); });
}
function approvals() {
  getJSON("/v1/approvals?status=pending").then(({ status, body }) => {
    if (status !== 200) { text("approvals_note", body.error || "approvals unavailable"); $("approval_rows").replaceChildren(); return; }
    text("approvals_note", body.count ? "" : "no held calls waiting");
    $("approval_rows").replaceChildren(...body.approvals.map((a) => {
      const tr = document.createElement("tr");
      tr.dataset.approval = a.id;
      cell(tr, a.id); cell(tr, a.task_id); cell(tr, a.tool); cell(tr, a.reason);
      cell(tr, new Date(a.created * 1000).toLocaleTimeString());
      cell(tr, a.deadline ? new Date(a.deadline * 1000).toLocaleString() : "–");
      const act = cell(tr, "");
      const base = "/v1/approvals/" + encodeURIComponent(a.id);
      act.appendChild(button("Approve", "approve", () => post(base + "/approve")));
      act.appendChild(button("Deny", "deny", () => post(base + "/deny")));
      return tr;
    }));
  }).catch(() => {});
}
tasks();
setInterval(tasks, 2000);
approvals();
setInterval(approvals, 2000);
const source = new EventSource("/v1/events");
source.addEventListener("summary", (e) => render(JSON.parse(e.data)));
source.addEventListener("logout", () => { source.close(); location.reload(); });  // token rotated
source.onopen = () => { const el = $("live"); el.textContent = "live"; el.className = "badge ok"; };
source.onerror = () => { const el = $("live"); el.textContent = "reconnecting"; el.className = "badge bad"; };

// buraq dashboard: polls the JSON API and swaps in server-drawn SVG charts. No framework, no network
// beyond this server. Text goes in with textContent only; SVG comes from our own server, escaped there.
"use strict";

const OVERVIEW_EVERY = 1000, CHARTS_EVERY = 2000, DLQ_EVERY = 5000, BENCH_EVERY = 30000;
const CHART_KEYS = ["throughput", "latency", "utilisation", "depth", "dlq"];
let csrf = "", hasBench = false;
const cards = new Map();

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) { window.location.assign("/login"); throw new Error("logged out"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function post(path, body) {
  return api(path, { method: "POST", body: JSON.stringify(body),
                     headers: { "Content-Type": "application/json", "X-Buraq-CSRF": csrf } });
}

function fmt(value, digits = 1) {
  if (value === null || value === undefined) return "–";
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en");
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

function stat(label, testid) {
  const value = el("b", { "data-testid": testid, text: "–" });
  return [el("div", { class: "stat" }, value, el("span", { text: label })), value];
}

function card(pipeline) {
  const fields = {};
  const stats = el("div", { class: "stats" });
  for (const [key, label] of [["processed", "processed/s"], ["failed", "failed/s"], ["retried", "retried/s"],
                              ["p50", "latency p50 ms"], ["p99", "latency p99 ms"], ["busy", "busy / slots"],
                              ["depth", "queue depth"], ["pending", "pending"], ["delayed", "delayed"],
                              ["dlq", "dead-lettered"], ["oldest", "oldest pending s"], ["total", "processed total"]]) {
    const [box, value] = stat(label, `${key}`);
    if (key === "busy") { fields.bar = el("i"); box.append(el("div", { class: "bar" }, fields.bar)); }
    fields[key] = value;
    stats.append(box);
  }
  const charts = el("div", { class: "charts", "data-testid": "charts" });
  fields.charts = {};
  for (const key of CHART_KEYS) {
    fields.charts[key] = el("div", { "data-chart": key });
    charts.append(fields.charts[key]);
  }
  fields.patterns = el("tbody");
  fields.entries = el("tbody");
  fields.dlqTotal = el("span", { text: "" });
  const dlq = el("details", { "data-testid": "dead-letters" },
    el("summary", {}, "Dead letters ", fields.dlqTotal),
    el("h4", { text: "Failure patterns" }),
    el("table", {}, el("thead", {}, el("tr", {}, ...["reason", "error type", "count", "sample", ""].map(
      (h) => el("th", { text: h })))), fields.patterns),
    el("h4", { text: "Newest entries" }),
    el("table", {}, el("thead", {}, el("tr", {}, ...["entry", "task", "attempts", "reason", "error", ""].map(
      (h) => el("th", { text: h })))), fields.entries));
  const root = el("article", { class: "card pipeline", "data-pipeline": pipeline.name },
    el("h2", {}, pipeline.name, el("small", { text: `${pipeline.handler} · ${pipeline.stream}` })),
    stats, charts, dlq);
  document.getElementById("pipelines").append(root);
  return fields;
}

function showOverview(data) {
  hasBench = data.has_bench;
  document.getElementById("meta").textContent =
    `v${data.version} · ${data.processes} process(es) · ${data.pipelines.length} pipeline(s) · ` +
    `updated ${new Date(data.at * 1000).toLocaleTimeString()}`;
  for (const p of data.pipelines) {
    if (!cards.has(p.name)) cards.set(p.name, card(p));
    const f = cards.get(p.name);
    f.processed.textContent = fmt(p.rates.processed);
    f.failed.textContent = fmt(p.rates.failed);
    f.retried.textContent = fmt(p.rates.retried);
    f.p50.textContent = fmt(p.latency_ms.p50, 2);
    f.p99.textContent = fmt(p.latency_ms.p99, 2);
    f.busy.textContent = `${fmt(p.busy, 0)} / ${fmt(p.slots, 0)}`;
    f.bar.style.width = `${Math.round(100 * p.utilisation)}%`;
    f.depth.textContent = fmt(p.queue.depth, 0);
    f.pending.textContent = fmt(p.queue.pending, 0);
    f.delayed.textContent = fmt(p.queue.delayed, 0);
    f.dlq.textContent = fmt(p.queue.dlq, 0);
    f.oldest.textContent = fmt(p.queue.oldest_pending_age, 1);
    f.total.textContent = fmt(p.totals.processed, 0);
  }
}

async function refreshOverview() {
  const dot = document.getElementById("status");
  try {
    showOverview(await api("/api/overview"));
    dot.className = "dot live";
  } catch (error) {
    dot.className = "dot down";
  }
}

async function refreshCharts() {
  for (const [name, f] of cards) {
    try {
      const svgs = await api(`/api/pipelines/${encodeURIComponent(name)}/charts?seconds=300`);
      for (const key of CHART_KEYS) f.charts[key].innerHTML = svgs[key];
    } catch (error) { /* the overview's dot already says we are offline */ }
  }
}

function actionButton(label, handler, testid) {
  const button = el("button", { "data-testid": testid, text: label });
  button.addEventListener("click", handler);
  return button;
}

async function refreshDeadLetters() {
  for (const [name, f] of cards) {
    let data;
    try { data = await api(`/api/pipelines/${encodeURIComponent(name)}/dlq?count=20`); } catch (error) { continue; }
    f.dlqTotal.textContent = `(${data.total})`;
    f.patterns.replaceChildren(...data.patterns.map((p) => el("tr", {},
      el("td", { text: p.reason }), el("td", { text: p.error_type }), el("td", { text: String(p.count) }),
      el("td", { class: "error", text: p.sample.error, title: p.sample.error }),
      el("td", {}, actionButton("Replay these", () => act(name, "replay", { error_type: p.error_type }),
                                "replay-pattern")))));
    f.entries.replaceChildren(...data.entries.map((row) => el("tr", { "data-entry": row.entry },
      el("td", { text: row.entry }), el("td", { text: row.id || "?" }), el("td", { text: row.attempts || "?" }),
      el("td", { text: row.reason || "?" }),
      el("td", { class: "error", text: `${row.error_type || ""}: ${row.error || ""}`, title: row.error || "" }),
      el("td", {}, actionButton("Inspect", () => inspect(name, row.entry), "inspect-entry")))));
  }
}

function describe(selection) {
  if (selection.ids || selection.entries) return `${(selection.ids || selection.entries).length} dead-lettered task(s)`;
  if (selection.error_type) return `every dead-lettered ${selection.error_type}`;
  if (selection.reason) return `every dead-lettered task with reason ${selection.reason}`;
  return "every dead-lettered task";
}

async function act(pipeline, action, selection, label) {
  const verb = action === "replay" ? "Replay (back onto the stream, attempt 1)" : "Delete for good";
  if (!window.confirm(`${verb}: ${label || describe(selection)} in ${pipeline}?`)) return null;
  const result = await post(`/api/pipelines/${encodeURIComponent(pipeline)}/dlq/${action}`, selection);
  await refreshDeadLetters();
  return result;
}

async function inspect(pipeline, entry) {
  const data = await api(`/api/pipelines/${encodeURIComponent(pipeline)}/dlq/${encodeURIComponent(entry)}`);
  const row = data.entries[0];
  const dialog = document.getElementById("inspect");
  document.getElementById("inspect-title").textContent = `${pipeline}: task ${row.id || "?"}`;
  const fields = document.getElementById("inspect-fields");
  fields.replaceChildren();
  for (const [key, value] of Object.entries(row)) {
    if (key === "payload" || key === "traceback") continue;
    const shown = key === "failed_at" ? new Date(Number(value) * 1000).toISOString() : value;
    fields.append(el("dt", { text: key }), el("dd", { text: shown }));
  }
  let payload = row.payload ?? "(no payload)";
  try { payload = JSON.stringify(JSON.parse(payload), null, 2); } catch (error) { /* show it as stored */ }
  document.getElementById("inspect-payload").textContent = payload;
  document.getElementById("inspect-traceback").textContent = row.traceback || "";
  const result = document.getElementById("inspect-result");
  result.textContent = "";
  const buttons = [document.getElementById("inspect-replay"), document.getElementById("inspect-purge")];
  for (const button of buttons) button.disabled = false;
  const run = (action) => async () => {
    try {
      const outcome = await act(pipeline, action, { entries: [entry] }, `task ${row.id || entry}`);
      if (!outcome) return;
      result.textContent = action === "replay" ? `replayed: ${outcome.replayed.join(", ") || "none"}`
                                               : `deleted: ${outcome.deleted}`;
      for (const button of buttons) button.disabled = true;  // the entry has left the DLQ
    } catch (error) { result.textContent = `failed: ${error.message}`; }
  };
  buttons[0].onclick = run("replay");
  buttons[1].onclick = run("purge");
  dialog.showModal();
}

async function refreshBench() {
  if (!hasBench) return;  // no result yet: asking would only log a 404 in the console
  const body = document.getElementById("bench-body");
  let data;
  try { data = await api("/api/bench"); } catch (error) { return; }
  const r = data.result, m = r.machine || {};
  body.className = "";
  body.replaceChildren(
    el("p", { class: "muted", text: `${r.finished_at || "?"} · ${m.cpu || "?"} · ${m.cores || "?"} cores · ` +
                                    `Python ${m.python || "?"} · Redis ${m.redis || "?"} · buraq ${m.buraq || "?"}` }),
    el("div", { class: "charts" }, Object.assign(el("div"), { innerHTML: data.charts.rates }),
                                    Object.assign(el("div"), { innerHTML: data.charts.latency })));
}

async function start() {
  const session = await api("/api/session");
  csrf = session.csrf;
  document.getElementById("logout").hidden = !session.token_required;
  document.getElementById("inspect-close").addEventListener("click", () => document.getElementById("inspect").close());
  await refreshOverview();
  await Promise.all([refreshCharts(), refreshDeadLetters(), refreshBench()]);
  setInterval(refreshOverview, OVERVIEW_EVERY);
  setInterval(refreshCharts, CHARTS_EVERY);
  setInterval(refreshDeadLetters, DLQ_EVERY);
  setInterval(refreshBench, BENCH_EVERY);
}

document.addEventListener("DOMContentLoaded", () => { start().catch(() => {}); });

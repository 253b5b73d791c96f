// gru's web console. Reads this agent's JSON routes, polls every 2 s, draws with the DOM
// and hand-made SVG. No dependencies, nothing loaded from elsewhere.
"use strict";

const POLL_MS = 2000;
const SPAN_MS = 15 * 60 * 1000;
const MIN_SPAN_MS = 60 * 1000;
const SECRET_KEY = "gru-secret";
const PALETTE = ["#2459c7", "#d9480f", "#2b8a3e", "#ae3ec9", "#0b7285", "#e67700", "#5f3dc4", "#c2255c"];
const SVG = "http://www.w3.org/2000/svg";

const state = {
  overview: null,
  samples: [],        // this agent's history samples, oldest first
  thresholds: {},
  lastSampleAt: 0,
  failures: 0,
};

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  for (const child of children) if (child) node.append(child);
  return node;
}

function clock(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false });
}

function secret() { return sessionStorage.getItem(SECRET_KEY) || ""; }

function notice(text, isError) {
  const box = $("notice");
  box.textContent = text;
  box.className = isError ? "notice error" : "notice";
  box.hidden = !text;
}

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

// ---- operator actions -------------------------------------------------------------------

async function command(node, body, label) {
  if (!secret()) { notice("enter the cluster secret first: actions need it", true); return; }
  notice(`${label} on ${node}…`);
  try {
    const response = await fetch(`/gru/v1/cluster/nodes/${encodeURIComponent(node)}/commands`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${secret()}` },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (response.ok) notice(`${label} on ${node}: accepted`);
    else notice(`${label} on ${node}: ${answer.error || response.status}`, true);
  } catch (err) {
    notice(`${label} on ${node}: ${err.message}`, true);
  }
  poll();
}

function setupAuth() {
  const input = $("secret");
  const forget = $("secret-forget");
  const show = () => {
    const has = !!secret();
    forget.hidden = !has;
    input.placeholder = has ? "secret set for this tab" : "needed for actions";
    document.body.classList.toggle("unlocked", has);
    for (const button of document.querySelectorAll("button[data-command]")) button.disabled = !has;
  };
  $("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value.trim()) sessionStorage.setItem(SECRET_KEY, input.value.trim());
    input.value = "";
    show();
  });
  forget.addEventListener("click", () => { sessionStorage.removeItem(SECRET_KEY); show(); });
  show();
  return show;
}
let refreshAuth = () => {};

function commandButton(label, title, node, body) {
  return el("button", {
    type: "button", title, "data-command": body.name, "data-node": node,
    "data-service": body.service, disabled: !secret(),
    onclick: () => command(node, body, title),
  }, label);
}

// ---- the cluster map --------------------------------------------------------------------

function serviceNames(overview) {
  const names = new Set(Object.keys(overview.services || {}));
  for (const node of overview.nodes) {
    for (const name of Object.keys((node.services && node.services.services) || {})) names.add(name);
  }
  return [...names].sort();
}

function renderMap(overview) {
  const services = serviceNames(overview);
  const head = el("tr", {}, el("th", { text: "node" }),
    ...services.map((s) => {
      const bounds = overview.services[s];
      const total = overview.nodes.reduce((n, node) => n + runningOf(node, s), 0);
      const range = bounds ? ` [${bounds.min_instances}–${bounds.max_instances ?? "∞"}]` : "";
      return el("th", { "data-service": s }, s, el("div", { class: "count", text: `${total} running${range}` }));
    }));
  const rows = overview.nodes.map((node) => {
    const reachable = !node.error;
    const badges = [
      el("span", { class: `badge ${node.active ? "active" : "inactive"}`, text: node.active ? "active" : "inactive" }),
      reachable ? null : el("span", { class: "badge unreachable", text: "unreachable", title: node.error }),
      drainBadge(node.drain),
    ];
    const nodeCell = el("th", { class: "node-cell", scope: "row" },
      el("div", { class: "node-name", text: node.node }), ...badges,
      el("div", { class: "node-meta", text: `${node.address}:${node.port}` }),
      usageLine(node.usage),
      el("div", { class: "node-actions" },
        commandButton("start agent", "start agent", node.node, { name: "start" }),
        commandButton("stop agent", "stop agent", node.node, { name: "stop" })));
    const cells = services.map((s) => {
      const view = node.services && node.services.services && node.services.services[s];
      const instances = (view && view.instances) || [];
      const base = (node.base_services || []).includes(s);
      return el("td", { class: "cell", "data-node": node.node, "data-service": s },
        el("div", { class: "instances" }, ...instances.map((i) => el("span", {
          class: "instance", "data-state": i.state, "data-instance": i.instance,
          "data-condition": i.condition || "ready",
          title: `${i.instance} · ${i.state}${i.condition && i.condition !== "ready" ? " · " + i.condition : ""}${i.address ? " · " + i.address : ""} · since ${clock(i.started_at)}`,
        }))),
        el("div", { class: "count" }, `${instances.length}`, base ? el("span", { class: "badge base", text: "base" }) : null),
        el("div", { class: "cell-actions" },
          commandButton("+", `start ${s}`, node.node, { name: "start-service", service: s }),
          commandButton("−", `stop ${s}`, node.node, { name: "stop-service", service: s })));
    });
    return el("tr", {
      class: `node${node.active ? "" : " inactive"}${reachable ? "" : " unreachable"}`,
      "data-node": node.node, "data-active": String(node.active),
    }, nodeCell, ...cells);
  });
  const table = rows.length
    ? el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows))
    : el("p", { class: "empty", text: "no node has registered in this cluster" });
  $("map").replaceChildren(table);
}

/** "draining" while a drained node still moves instances, "drained" once it has none. */
function drainBadge(drain) {
  if (!drain) return null;
  const state = drain.done ? "drained" : "draining";
  return el("span", {
    class: `badge ${state}`, "data-drain": state, text: state,
    title: `since ${clock(drain.since)}${drain.remove ? " (idle: it leaves once drained)" : ""}`,
  });
}

/** The node's use: CPU cores used of its cores, memory used, cores no pinned instance holds. */
function usageLine(usage) {
  if (!usage) return null;
  const mib = (bytes) => `${Math.round(bytes / (1 << 20))} MiB`;
  return el("div", {
    class: "node-usage", "data-cpu-used": usage.cpu_used_cores, "data-memory-used": usage.memory_used_bytes,
    "data-free-cores": usage.free_cores,
    text: `CPU ${usage.cpu_used_cores.toFixed(2)}/${usage.cpus} · mem ${mib(usage.memory_used_bytes)}/${mib(usage.memory_bytes)} · ${usage.free_cores} free cores`,
  });
}

function runningOf(node, service) {
  const view = node.services && node.services.services && node.services.services[service];
  return view ? view.running || 0 : 0;
}

// ---- decisions and events ---------------------------------------------------------------

function allDecisions(overview) {
  const out = [];
  for (const node of overview.nodes) {
    for (const d of node.decisions || []) out.push({ node: node.node, ...d });
  }
  return out.sort((a, b) => b.at - a.at);
}

function actionText(action) {
  if (!action) return "";
  switch (action.kind) {
    case "scale-out": return `scale-out +${action.count}`;
    case "scale-in": return `scale-in −${action.count}`;
    case "swap": return `swap ${action.stop} → ${action.start}`;
    default: return action.kind;
  }
}

function fillSelect(select, values) {
  const current = select.value;
  const wanted = ["", ...values];
  const have = [...select.options].map((o) => o.value);
  if (wanted.join("\n") !== have.join("\n")) {
    select.replaceChildren(...wanted.map((v) => el("option", { value: v, text: v || "all" })));
    select.value = wanted.includes(current) ? current : "";
  }
}

function renderDecisions(overview) {
  fillSelect($("filter-node"), overview.nodes.map((n) => n.node));
  fillSelect($("filter-service"), serviceNames(overview));
  const node = $("filter-node").value;
  const service = $("filter-service").value;
  const rows = allDecisions(overview)
    .filter((d) => (!node || d.node === node) && (!service || d.service === service))
    .slice(0, 100)
    .map((d) => el("tr", { "data-node": d.node, "data-service": d.service },
      el("td", { class: "time", text: clock(d.at) }),
      el("td", { text: d.node }),
      el("td", { text: d.service }),
      el("td", { text: actionText(d.action) + (d.dry_run ? " (dry run)" : "") }),
      el("td", { class: "why", text: d.reason })));
  const body = $("decisions").tBodies[0];
  body.replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: 5, class: "empty", text: "no scaling decision in the last 15 minutes" }))]));
}

function renderEvents(overview) {
  const events = [];
  for (const node of overview.nodes) {
    for (const a of (node.actions && node.actions.actions) || []) events.push({ node: node.node, ...a });
  }
  events.sort((a, b) => b.at - a.at);
  const rows = events.slice(0, 100).map((a) => el("tr", { "data-node": a.node },
    el("td", { class: "time", text: clock(a.at) }),
    el("td", { text: a.node }),
    el("td", { text: a.action }),
    el("td", { text: a.service }),
    el("td", { text: a.instance || "" }),
    el("td", { class: a.result === "ok" ? "result-ok" : a.result.startsWith("failed") ? "result-failed" : "", text: a.result })));
  $("events").tBodies[0].replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: 6, class: "empty", text: "no action yet" }))]));
}

// ---- charts -----------------------------------------------------------------------------

const W = 640, H = 220, PAD = { left: 34, right: 34, top: 12, bottom: 22 };

// The time axis: the last 15 minutes, or less while the history is younger (at least a
// minute), so that a new cluster's first minutes are not a sliver at the right edge.
function span(now) {
  const oldest = state.samples.length ? state.samples[0].at : now;
  return Math.min(SPAN_MS, Math.max(MIN_SPAN_MS, now - oldest));
}

function ago(ms) {
  if (ms <= 0) return "now";
  return ms >= 120000 ? `−${Math.round(ms / 60000)} min` : `−${Math.round(ms / 1000)} s`;
}

function chart(service, now, decisions) {
  const spanMs = span(now);
  const from = now - spanMs;
  const x = (t) => PAD.left + ((t - from) / spanMs) * (W - PAD.left - PAD.right);
  const y01 = (v) => H - PAD.bottom - v * (H - PAD.top - PAD.bottom);
  const samples = state.samples.filter((s) => s.at >= from && s.services[service]);
  const maxInstances = Math.max(1, ...samples.map((s) => s.services[service].instances),
    ...(state.overview.services[service] && state.overview.services[service].max_instances
      ? [state.overview.services[service].max_instances] : []));
  const yInst = (n) => H - PAD.bottom - (n / maxInstances) * (H - PAD.top - PAD.bottom);
  const parts = [];
  parts.push(svg("line", { class: "axis", x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom }));
  parts.push(svg("line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom }));
  parts.push(svg("line", { class: "axis", x1: W - PAD.right, y1: PAD.top, x2: W - PAD.right, y2: H - PAD.bottom }));
  for (const v of [0, 0.5, 1]) {
    parts.push(svg("text", { class: "tick", x: PAD.left - 4, y: y01(v) + 3, "text-anchor": "end" }, document.createTextNode(v)));
  }
  for (const n of [0, maxInstances]) {
    parts.push(svg("text", { class: "tick", x: W - PAD.right + 4, y: yInst(n) + 3 }, document.createTextNode(n)));
  }
  for (let step = 0; step <= 3; step += 1) {
    const before = Math.round((spanMs * (3 - step)) / 3);
    parts.push(svg("text", { class: "tick", x: x(now - before), y: H - 6, "text-anchor": step === 0 ? "start" : step === 3 ? "end" : "middle" },
      document.createTextNode(ago(before))));
  }
  const thresholds = state.thresholds[service] || {};
  const names = Object.keys(thresholds).sort();
  const legend = [el("span", {}, el("i", { class: "instances-key" }), "instances (right axis)")];
  names.forEach((name, index) => {
    const color = PALETTE[index % PALETTE.length];
    // One line per stretch of samples with a value: an unavailable value is a gap.
    const stretches = [[]];
    for (const s of samples) {
      const v = s.services[service].values[name];
      if (v === null || v === undefined) { if (stretches[stretches.length - 1].length) stretches.push([]); continue; }
      stretches[stretches.length - 1].push(`${x(s.at).toFixed(1)},${y01(Math.min(1, Math.max(0, v))).toFixed(1)}`);
    }
    for (const points of stretches.filter((p) => p.length)) {
      if (points.length === 1) {
        const [px, py] = points[0].split(",");
        parts.push(svg("circle", { class: "value-dot", fill: color, cx: px, cy: py, r: 2, "data-value": name }));
      } else {
        parts.push(svg("polyline", { class: "value-line", stroke: color, points: points.join(" "), "data-value": name }));
      }
    }
    const limits = thresholds[name];
    for (const [key, label] of [["scale_out", "out"], ["scale_in", "in"]]) {
      if (limits[key] === null || limits[key] === undefined) continue;
      parts.push(svg("line", { class: "threshold", stroke: color, x1: PAD.left, x2: W - PAD.right,
        y1: y01(limits[key]), y2: y01(limits[key]), "data-threshold": `${name}:${label}` }));
      legend.push(el("span", {}, el("i", { class: "dashed", "data-color": color }), `${name} ${label} ${limits[key]}`));
    }
    legend.push(el("span", {}, el("i", { "data-color": color }), name));
  });
  if (samples.length) {
    let path = "";
    samples.forEach((s, i) => {
      const px = x(s.at).toFixed(1), py = yInst(s.services[service].instances).toFixed(1);
      path += i === 0 ? `M${px},${py}` : `H${px}V${py}`;
    });
    path += `H${x(now).toFixed(1)}`;
    parts.push(svg("path", { class: "instances-line", d: path }));
  }
  const marks = decisions.filter((d) => d.service === service && d.at >= from);
  for (const d of marks) {
    const px = x(d.at);
    const title = svg("title", {});
    title.textContent = `${clock(d.at)} ${d.node}: ${actionText(d.action)} — ${d.reason}`;
    const up = !d.action || d.action.kind !== "scale-in";
    parts.push(svg("g", { class: "decision-mark", "data-kind": d.action ? d.action.kind : "", "data-node": d.node, "data-at": d.at },
      title,
      svg("line", { class: "decision", x1: px, x2: px, y1: PAD.top, y2: H - PAD.bottom }),
      svg("path", { class: "decision-head", d: up ? `M${px - 5},${PAD.top + 8}L${px},${PAD.top}L${px + 5},${PAD.top + 8}Z`
        : `M${px - 5},${PAD.top}L${px},${PAD.top + 8}L${px + 5},${PAD.top}Z` })));
  }
  legend.push(el("span", {}, el("i", { class: "decision-key" }), `decisions (${marks.length})`));
  const figure = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${service} over the last ${ago(spanMs).slice(1)}` }, ...parts);
  const card = el("div", { class: "chart", "data-service": service },
    el("h3", { text: service }), figure, el("div", { class: "legend" }, ...legend));
  // Legend swatches take their colour from the data (no inline style attributes: CSP).
  for (const swatch of card.querySelectorAll("i[data-color]")) {
    const color = swatch.getAttribute("data-color");
    if (swatch.classList.contains("dashed")) swatch.style.borderColor = color;
    else swatch.style.background = color;
  }
  return card;
}

function renderCharts(overview) {
  const now = overview.at;
  const decisions = allDecisions(overview);
  const services = serviceNames(overview);
  $("charts-node").textContent = overview.served_by;
  $("charts").replaceChildren(...(services.length
    ? services.map((s) => chart(s, now, decisions))
    : [el("p", { class: "empty", text: "no service is configured" })]));
}

// ---- polling ----------------------------------------------------------------------------

async function poll() {
  try {
    const since = state.lastSampleAt ? `?since=${state.lastSampleAt}` : "";
    const [overview, history] = await Promise.all([getJson("/gru/v1/cluster"), getJson(`/gru/v1/history${since}`)]);
    for (const sample of history.samples) {
      if (sample.at > state.lastSampleAt) { state.samples.push(sample); state.lastSampleAt = sample.at; }
    }
    state.samples = state.samples.filter((s) => s.at >= overview.at - SPAN_MS);
    state.thresholds = history.thresholds || {};
    state.overview = overview;
    state.failures = 0;
    $("cluster-name").textContent = overview.cluster;
    $("served-by").textContent = `served by ${overview.served_by}`;
    document.title = `gru · ${overview.cluster}`;
    renderMap(overview);
    renderCharts(overview);
    renderDecisions(overview);
    renderEvents(overview);
    refreshAuth();
    const live = $("live");
    live.textContent = `updated ${clock(overview.at)}`;
    live.classList.remove("stale");
    document.body.dataset.updatedAt = String(overview.at);
  } catch (err) {
    state.failures += 1;
    const live = $("live");
    live.textContent = `no answer (${state.failures}): ${err.message}`;
    live.classList.add("stale");
  }
}

let timer = null;
function start() {
  refreshAuth = setupAuth();
  $("filter-node").addEventListener("change", () => state.overview && renderDecisions(state.overview));
  $("filter-service").addEventListener("change", () => state.overview && renderDecisions(state.overview));
  poll();
  timer = setInterval(poll, POLL_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) { clearInterval(timer); timer = null; }
    else if (!timer) { poll(); timer = setInterval(poll, POLL_MS); }
  });
}

document.addEventListener("DOMContentLoaded", start);

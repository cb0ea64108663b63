// runbook dashboard: vanilla JS, no build step, no network beyond this
// server. Routes: #/ (runs) and #/runs/<id> (one run). Live updates come
// from /api/v1/stream (Server-Sent Events: alert, run, event).
"use strict";

const PHASES = ["PRE-FLIGHT", "PLAN", "ACT", "TEST", "REPORT"];
const view = document.getElementById("view");
const alerts = document.getElementById("alerts");
const live = document.getElementById("live");
const state = { route: null, runs: new Map(), pending: new Map(), statusFilter: "", nextOffset: null, runID: null };

// el builds an element: el("td", {class: "x", "data-a": 1}, child, "text", ...).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function badge(status) { return el("span", { class: "badge", "data-status": status }, status || "?"); }

function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? "" : d.toLocaleString();
}
function fmtClock(t) {
  const d = new Date(t);
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}
function fmtDuration(ms) {
  if (!(ms >= 0)) return "";
  const s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  if (h) return `${h}h ${m}m ${s % 60}s`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}
function runDuration(r) {
  if (!r.started) return "";
  const end = r.ended ? new Date(r.ended) : new Date();
  return fmtDuration(end - new Date(r.started));
}

async function getJSON(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  if (!res.ok) {
    let msg = res.status + " " + res.statusText;
    try { msg = (await res.json()).error || msg; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return res.json();
}

// ---- routing ----

function route() {
  const h = location.hash.replace(/^#/, "") || "/";
  const m = h.match(/^\/runs\/([A-Za-z0-9_-]+)$/);
  if (m) { state.route = "run"; state.runID = m[1]; showRun(m[1]); }
  else { state.route = "runs"; state.runID = null; showRuns(); }
}
window.addEventListener("hashchange", route);

// ---- runs list ----

async function showRuns(append) {
  const q = new URLSearchParams({ limit: "50" });
  if (state.statusFilter) q.set("status", state.statusFilter);
  if (append && state.nextOffset != null) q.set("offset", String(state.nextOffset));
  let page;
  try { page = await getJSON("/api/v1/runs?" + q); }
  catch (e) { view.replaceChildren(el("p", { class: "error" }, "Cannot list runs: " + e.message)); return; }
  if (state.route !== "runs") return;
  if (!append) state.runs.clear();
  for (const r of page.runs) state.runs.set(r.run_id, r);
  state.nextOffset = page.next_offset ?? null;
  renderRuns();
  // A run announced by the stream but not yet in the read model: again soon.
  for (const [id, n] of state.pending) {
    if (state.runs.has(id) || n >= 10) state.pending.delete(id);
    else { state.pending.set(id, n + 1); clearTimeout(listRefresh); listRefresh = setTimeout(() => showRuns(), 300); }
  }
}

function renderRuns() {
  const filter = el("select", { id: "status-filter" },
    el("option", { value: "" }, "every status"),
    ["SUBMITTED", "PREFLIGHT", "AWAITING_APPROVAL", "WAITING_WINDOW", "DEPLOYING", "VERIFYING", "ROLLING_BACK",
      "SUCCESS", "ROLLED_BACK", "ROLLBACK_FAILED", "FAILED", "REJECTED", "EXPIRED", "CANCELLED", "INVALID"]
      .map(s => el("option", { value: s, selected: s === state.statusFilter }, s)));
  filter.addEventListener("change", () => { state.statusFilter = filter.value; showRuns(); });
  const rows = [...state.runs.values()].sort((a, b) => (b.started || "").localeCompare(a.started || "") || a.run_id.localeCompare(b.run_id));
  const body = el("tbody", {}, rows.map(runRow));
  const more = state.nextOffset != null ? el("button", { id: "more" }, "more") : null;
  if (more) more.addEventListener("click", () => showRuns(true));
  view.replaceChildren(...[
    el("div", { class: "toolbar" }, el("h2", {}, "Runs"), filter, el("span", { class: "muted" }, `${rows.length} shown`)),
    el("table", { id: "runs" },
      el("thead", {}, el("tr", {}, ["Status", "Phase", "Change", "Title", "Started", "Duration", "Run"].map(h => el("th", {}, h)))),
      body),
    rows.length ? null : el("p", { class: "muted", id: "no-runs" }, "No runs yet: submit a plan with `runbook submit`."),
    more].filter(Boolean));
}

function runRow(r) {
  return el("tr", { "data-run-id": r.run_id, "data-status": r.status },
    el("td", { class: "status" }, badge(r.status)),
    el("td", { class: "phase" }, r.phase),
    el("td", {}, el("a", { href: "#/runs/" + r.run_id }, r.change_id || "(none)")),
    el("td", {}, r.title),
    el("td", {}, fmtTime(r.started)),
    el("td", { class: "duration", "data-started": r.started, "data-ended": r.ended || "" }, runDuration(r)),
    el("td", { class: "muted" }, el("a", { href: "#/runs/" + r.run_id }, r.run_id)));
}

// A run changed status: update its row, or fetch the list when it is new.
let listRefresh = null;
function onRunChange(c) {
  if (state.route !== "runs") return;
  const r = state.runs.get(c.run_id);
  if (!r) {
    if (!state.statusFilter || c.status === state.statusFilter) state.pending.set(c.run_id, state.pending.get(c.run_id) || 0);
    clearTimeout(listRefresh);
    listRefresh = setTimeout(() => showRuns(), 200);
    return;
  }
  r.status = c.status; r.phase = c.phase;
  if (["SUCCESS", "ROLLED_BACK", "ROLLBACK_FAILED", "FAILED", "REJECTED", "EXPIRED", "CANCELLED", "INVALID"].includes(c.status)) r.ended = c.time;
  const tr = document.querySelector(`#runs tr[data-run-id="${CSS.escape(c.run_id)}"]`);
  if (tr) tr.replaceWith(runRow(r));
  if (state.statusFilter && c.status !== state.statusFilter) {
    clearTimeout(listRefresh);
    listRefresh = setTimeout(() => showRuns(), 200);
  }
}

// In-progress durations tick.
setInterval(() => {
  for (const td of document.querySelectorAll("#runs td.duration")) {
    if (!td.dataset.ended) td.textContent = runDuration({ started: td.dataset.started });
  }
}, 1000);

// ---- one run ----

// The read model may lag the stream by a moment: a page refreshed for
// event seq that does not have it yet tries again, a few times.
let runRefresh = null, wantSeq = 0, retries = 0;
function refreshRunSoon(id, seq) {
  if (state.route !== "run" || state.runID !== id) return;
  if (seq > wantSeq) { wantSeq = seq; retries = 0; }
  clearTimeout(runRefresh);
  runRefresh = setTimeout(() => showRun(id, true), 250);
}

async function showRun(id, quiet) {
  if (!quiet) view.replaceChildren(el("p", { class: "muted" }, "Loading run " + id + "…"));
  let run, metrics;
  try {
    [run, metrics] = await Promise.all([getJSON("/api/v1/runs/" + id), getJSON("/api/v1/runs/" + id + "/metrics")]);
  } catch (e) {
    if (state.runID === id) view.replaceChildren(el("p", { class: "error", id: "run-error" }, "Run " + id + ": " + e.message), el("p", {}, el("a", { href: "#/" }, "back to the runs")));
    return;
  }
  if (state.route !== "run" || state.runID !== id) return;
  const open = new Set([...document.querySelectorAll("#steps details[open]")].map(d => d.dataset.key));
  view.replaceChildren(renderRun(run, metrics, open));
  if (!quiet) { wantSeq = 0; retries = 0; }
  if (run.last_seq < wantSeq && retries++ < 10) {
    clearTimeout(runRefresh);
    runRefresh = setTimeout(() => showRun(id, true), 300);
  }
}

function renderRun(r, metrics, open) {
  const cur = PHASES.indexOf(r.phase);
  const phases = el("div", { class: "phases", id: "phases" }, PHASES.map((p, i) =>
    el("span", { class: i < cur ? "done" : i === cur ? "current" : "", "data-phase": p }, p)));
  const s = r.state || {};
  const facts = el("dl", { class: "facts" },
    el("dt", {}, "Run"), el("dd", {}, r.run_id),
    el("dt", {}, "Change"), el("dd", {}, `${r.change_id || ""} ${r.title || ""}`),
    el("dt", {}, "Requester"), el("dd", {}, r.requester || ""),
    el("dt", {}, "Risk"), el("dd", {}, r.risk_level || "not assessed"),
    el("dt", {}, "Started"), el("dd", {}, fmtTime(r.started)),
    el("dt", {}, "Ended"), el("dd", {}, r.ended ? fmtTime(r.ended) + " (" + runDuration(r) + ")" : "in progress"),
    s.waiting_for ? [el("dt", {}, "Waiting for"), el("dd", {}, s.waiting_for.join(", "))] : null,
    s.rollback_reason ? [el("dt", {}, "Rollback"), el("dd", {}, s.rollback_reason)] : null,
    s.final_reason ? [el("dt", {}, "Outcome"), el("dd", { id: "final-reason" }, s.final_reason)] : null);

  return el("div", { id: "run", "data-run-id": r.run_id, "data-status": r.status },
    el("div", { class: "card" },
      el("div", { class: "toolbar" }, el("a", { href: "#/" }, "← runs"), el("h2", { class: "flush" }, r.title || r.run_id), badge(r.status)),
      phases, facts,
      el("p", {}, el("a", { href: `/api/v1/runs/${r.run_id}/report` }, "report JSON"), " · ",
        el("a", { href: `/api/v1/runs/${r.run_id}/events` }, "events"), " · ",
        el("a", { href: `/api/v1/runs/${r.run_id}/summary` }, "QC summary"))),
    section("Timeline", el("ol", { id: "timeline" }, r.timeline.map(t =>
      el("li", { "data-type": t.type, "data-seq": t.seq },
        el("span", { class: "muted" }, fmtClock(t.time)),
        el("span", { class: "muted" }, t.phase),
        el("span", { class: "type" }, t.type),
        el("span", { class: "text" }, t.text))))),
    section("Pre-flight checks", table("checks", ["Check", "Kind", "Status", "Value", "Threshold", "ms", "Message"], r.checks, c => [
      c.name + (c.blocking ? "" : " (non-blocking)"), c.kind, badge(c.status), c.value, c.threshold, c.duration_ms, c.message])),
    section("Approvals", table("approvals", ["Decision", "Role", "Approver", "Comment / reason", "Time"], r.approvals, a => [
      badge(a.decision), a.role, a.approver, a.reason || a.comment, fmtTime(a.time)])),
    section("Steps", table("steps", ["Phase", "Step", "Status", "Attempt", "ms", "Output"], r.steps, st => ({
      "data-step-phase": st.phase, "data-step-list": st.list, "data-step-index": st.index, "data-step-name": st.name,
      "data-step-status": st.status, "data-manual": st.manual }), st => {
      const key = `${st.phase}/${st.list}/${st.index}`;
      const out = st.output_tail || st.error ? el("details", { "data-key": key, open: open.has(key) },
        el("summary", {}, st.error ? "error and output" : "output"),
        st.error ? el("pre", {}, st.error + (st.exit_code ? ` (exit ${st.exit_code})` : "")) : null,
        st.output_tail ? el("pre", {}, st.output_tail) : null) : "";
      // A described (manual) step was never executed: its note, not a duration.
      const ms = st.manual ? el("span", { class: "manual" }, st.note) : st.duration_ms;
      return [st.phase + (st.list && st.list !== "steps" && st.list !== st.phase ? "/" + st.list : ""), `${st.index + 1}. ${st.name}`, badge(st.status), st.attempt, ms, out];
    })),
    section("Metrics over the watch window", renderCharts(metrics)),
    section("Threshold violations", table("violations", ["Time", "Severity", "Metric", "Value", "Threshold", "Source", "Auto-rollback"], r.violations, v => [
      fmtClock(v.time), badge(v.severity), v.metric, v.value_text, v.threshold_text, v.source, v.auto_rollback ? "yes" : ""])),
    section("Tests", [
      table("tests", ["Test", "Type", "Status", "ms", "Details"], r.tests,
        t => ({ "data-test-type": t.type, "data-test-name": t.name, "data-test-status": t.status }),
        t => [t.name, t.type, badge(t.status), t.duration_ms, t.error || t.details]),
      r.load ? el("p", { id: "load", "data-status": r.load.status }, badge(r.load.status),
        ` load test: ${r.load.text}`,
        r.load.reason && r.load.status !== "STOPPED" ? " — " + r.load.reason : "") : null]),
    renderReport(r),
    section("QC summary", r.qc_summary ? el("pre", { id: "qc-summary" }, r.qc_summary) : el("p", { class: "muted", id: "qc-summary-pending" }, "The QC summary comes with the report, when the run ends.")));
}

function section(title, body) { return el("div", { class: "card" }, el("h2", {}, title), body); }

// table lists rows, one cell per head; attrs (optional) gives each row's
// attributes (data-* for the tests to read).
function table(id, heads, rows, attrs, cells) {
  if (!cells) { cells = attrs; attrs = () => ({}); }
  if (!rows || !rows.length) return el("p", { class: "muted", id: id + "-none" }, "none");
  return el("table", { id }, el("thead", {}, el("tr", {}, heads.map(h => el("th", {}, h)))),
    el("tbody", {}, rows.map(row => el("tr", attrs(row), cells(row).map(c => el("td", {}, c))))));
}

// renderReport shows what the run's report says besides its steps and
// tests: the verdict, the QC metrics, the rollback (its verification, or
// that nothing was undone), the operator's to-do and the issues. The read
// API builds it with the reporter's own fold; while the run is in
// progress it is a preview.
function renderReport(r) {
  const rep = r.report;
  if (!rep) return section("Report", el("p", { class: "error", id: "report-error" }, "The report cannot be built: " + (r.report_error || "unknown error")));
  const sum = rep.summary, cur = rep.metrics.current, rb = rep.rollback, tr = sum.test_results;
  const field = (name, label, value, attrs) => [el("dt", {}, label), el("dd", Object.assign({ "data-field": name }, attrs || {}), value)];
  const facts = el("dl", { class: "facts", id: "report-summary" },
    field("status", "Status", badge(rep.deployment.status)),
    field("overall_status", "Overall", sum.overall_status),
    field("performance_status", "Performance", sum.performance_status + (sum.performance_reason ? " — " + sum.performance_reason : "")),
    field("critical_issues", "Critical issues", String(sum.critical_issues)),
    field("test_results", "Tests", `${tr.passed} passed, ${tr.failed} failed of ${tr.total}`),
    field("api_health", "API", cur.api_health),
    field("db_health", "Database", cur.db_health),
    field("cache_health", "Cache", cur.cache_health),
    r.qc_metrics.flatMap(m => field(m.metric, m.metric === "error_rate" ? "Error rate" : "P95 response time",
      m.text + (m.source ? ` (from ${m.source})` : ""), { "data-metric": m.metric, "data-value": m.value === null ? "" : String(m.value) })));
  const parts = [facts];
  if (r.nothing_undone) parts.push(el("p", { class: "error", id: "nothing-undone" }, r.nothing_undone));
  if (rb.executed || rb.reason || rb.nothing_undone) {
    parts.push(el("h3", {}, "Rollback"), el("dl", { class: "facts", id: "report-rollback", "data-executed": rb.executed },
      field("executed", "Executed", rb.executed ? "yes" : "no"),
      rb.reason ? field("reason", "Reason", rb.reason) : null,
      rb.requested_by ? field("requested_by", "Requested by", rb.requested_by) : null,
      rb.duration ? field("duration", "Took", rb.duration) : null));
    const v = rb.verification;
    if (v) {
      parts.push(el("p", { id: "rollback-verification", "data-status": v.status }, badge(v.status),
        ` verification: re-ran ${v.suites.join(", ")} after the rollback: ${v.passed} passed, ${v.failed} failed`),
      table("verify-tests", ["Test", "Status", "ms", "Details"], v.tests,
        t => ({ "data-test-name": t.name, "data-test-status": t.status }),
        t => [t.name, badge(t.status), t.duration_ms, t.error || t.details]));
    }
  }
  if (rep.operator_todo.length) {
    parts.push(el("h3", {}, "The operator's to-do"), el("ol", { id: "operator-todo" }, rep.operator_todo.map(d =>
      el("li", { "data-step": d.step, "data-phase": d.phase }, el("strong", {}, d.step), ` (${d.phase}) — ${d.note}`))));
  }
  parts.push(el("h3", {}, "Issues"), table("issues", ["Severity", "Type", "Message"], rep.issues,
    i => ({ "data-severity": i.severity, "data-type": i.type }), i => [badge(i.severity), i.type, i.message]));
  return el("div", { class: "card", id: "report", "data-final": r.report_final },
    el("h2", {}, r.report_final ? "Report" : "Report (preview: the run is in progress)"), parts);
}

// fmtMetric prints a value of metric in its one unit, as the server's
// plan.FormatMetric does: units[metric] = {scale, suffix, decimals} from the
// read API (error_rate 0.3 → "30%").
function fmtMetric(metric, v, units) {
  const u = (units || {})[metric];
  if (typeof v !== "number" || !u) return fmtNum(v);
  let x = v * u.scale;
  if (u.decimals >= 0) { const p = 10 ** u.decimals; x = Math.round(x * p) / p; }
  return String(x) + u.suffix;
}

function fmtNum(v) {
  if (typeof v !== "number") return "";
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return String(Number(a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(1) : v.toPrecision(2)));
}

// ---- charts (inline SVG) ----

const SVGNS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f5fbf", "#1f8f4e", "#7a4fbf", "#00838f"]; // as .legend .s0-.s3 in style.css

function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function renderCharts(m) {
  const metrics = new Set([...m.series.map(s => s.metric), ...m.violations.map(v => v.metric)]);
  if (!metrics.size) return el("p", { class: "muted", id: "metrics-none" }, "No samples yet: the monitor samples during the watch window after the deploy.");
  const note = m.window.start ? el("p", { class: "muted" }, `Window ${fmtClock(m.window.start)} → ${m.window.end ? fmtClock(m.window.end) : "…"}` +
    (m.window.planned ? ` (planned ${m.window.planned}, every ${m.window.interval})` : "") + (m.window.done ? "" : " — in progress") +
    (m.deploy && !m.deploy.judged ? `; shaded: the deploy ${fmtClock(m.deploy.start)} → ${m.deploy.end ? fmtClock(m.deploy.end) : "…"}, its samples recorded, not judged` : "")) : null;
  return [note, el("div", { class: "charts", id: "charts" }, [...metrics].sort().map(name => chart(name, m)))];
}

function chart(name, m) {
  const W = 360, H = 170, L = 48, R = 8, T = 10, B = 22;
  const series = m.series.filter(s => s.metric === name);
  const viol = m.violations.filter(v => v.metric === name);
  // The plan's limits (plan.Monitor.Limits): what the monitor enforced.
  const gate = (m.limits || []).find(l => l.metric === name);
  const thr = m.thresholds[name], lim = m.rollback_limits[name] ?? gate?.critical, below = !!gate?.below;
  const times = [...series.flatMap(s => s.points.map(p => Date.parse(p.t))), ...viol.map(v => Date.parse(v.time))];
  let t0 = m.window.start ? Date.parse(m.window.start) : Math.min(...times);
  let t1 = m.window.end ? Date.parse(m.window.end) : Math.max(...times);
  if (times.length) { t0 = Math.min(t0, ...times); t1 = Math.max(t1, ...times); }
  if (m.deploy) t0 = Math.min(t0, Date.parse(m.deploy.start));
  if (!(t1 > t0)) t1 = t0 + 1000;
  const vals = [...series.flatMap(s => s.points.map(p => p.v)), ...viol.map(v => v.value)];
  let vmax = Math.max(0, ...vals, thr ?? 0);
  if (lim !== undefined && lim <= vmax * 1.5) vmax = Math.max(vmax, lim);
  vmax = vmax > 0 ? vmax * 1.08 : 1;
  const x = t => L + (t - t0) / (t1 - t0) * (W - L - R);
  const y = v => T + (1 - v / vmax) * (H - T - B);
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": name });
  g.append(svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fafbfc", stroke: "#d8dce3" }));
  if (m.deploy) {
    // The deploy (deploy.started → deploy.done): its samples are recorded,
    // not judged, unless the plan judges from deploy.started.
    const d0 = x(Date.parse(m.deploy.start)), d1 = x(m.deploy.end ? Date.parse(m.deploy.end) : t1);
    const what = m.deploy.judged ? "deploy (judged: monitor.start deploy_started)" : "deploy: samples recorded, not judged";
    g.append(svg("rect", { class: "deploy-span", x: d0, y: T, width: Math.max(d1 - d0, 1), height: H - T - B, fill: "#e3e7ee", "fill-opacity": 0.8 },
      svg("title", {}, what)));
    g.append(svg("text", { x: d0 + 2, y: T + 9, "font-size": 9, fill: "#6b7280" }, m.deploy.judged ? "deploy (judged)" : "deploy"));
  }
  for (const f of [0, 0.5, 1]) {
    const v = vmax * f;
    g.append(svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end", "font-size": 9, fill: "#6b7280" }, fmtMetric(name, Number(v.toPrecision(3)), m.units)));
  }
  g.append(svg("text", { x: L, y: H - 6, "font-size": 9, fill: "#6b7280" }, fmtClock(t0).slice(0, 8)));
  g.append(svg("text", { x: W - R, y: H - 6, "font-size": 9, fill: "#6b7280", "text-anchor": "end" }, fmtClock(t1).slice(0, 8)));
  const hline = (v, color, label, cls) => {
    if (v === undefined || v > vmax) return;
    g.append(svg("line", { class: cls, x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: color, "stroke-dasharray": "5 3", "stroke-width": 1.5 }));
    g.append(svg("text", { x: W - R - 2, y: y(v) - 3, "text-anchor": "end", "font-size": 9, fill: color }, `${label} ${fmtMetric(name, v, m.units)}`));
  };
  hline(thr, "#c62828", below ? "minimum" : "threshold", "threshold");
  hline(lim, "#b26a00", gate && !gate.rollback ? "critical" : gate?.shadow ? "would roll back" : "rollback", "rollback-limit");
  series.forEach((s, i) => {
    const pts = s.points.map(p => `${x(Date.parse(p.t)).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    g.append(svg("polyline", { class: "series", "data-source": s.source, points: pts, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.6 }));
    for (const p of s.points) g.append(svg("circle", { cx: x(Date.parse(p.t)), cy: y(p.v), r: 1.8, fill: COLORS[i % COLORS.length] }));
  });
  for (const v of viol) {
    g.append(svg("circle", { class: "violation", cx: x(Date.parse(v.time)), cy: y(Math.min(v.value, vmax)), r: 4, fill: "none", stroke: "#c62828", "stroke-width": 2 },
      svg("title", {}, v.text)));
  }
  // Colours by class, never a style attribute: the Content-Security-Policy
  // allows no inline style.
  const legend = el("div", { class: "legend" }, series.map((s, i) => el("span", { class: "s" + (i % COLORS.length) }, `● ${s.source} (${s.points.length}) `)),
    viol.length ? el("span", { class: "viol" }, `○ ${viol.length} violations`) : null);
  return el("div", { class: "chart", "data-metric": name }, el("h3", {}, name), g, legend);
}

// ---- live alerts and the stream ----

function addAlert(a) {
  document.getElementById("alerts-empty")?.remove();
  const li = el("li", { "data-run-id": a.run_id, "data-metric": a.metric, "data-seq": a.seq },
    el("span", { class: "when" }, fmtClock(a.time)),
    badge(a.severity), " ",
    el("a", { href: "#/runs/" + a.run_id }, a.run_id), " ",
    el("span", { class: "text" }, a.text));
  alerts.prepend(li);
  while (alerts.children.length > 100) alerts.lastElementChild.remove();
}

function connect() {
  const es = new EventSource("/api/v1/stream");
  let opened = false;
  es.onopen = () => {
    live.dataset.state = "open"; live.textContent = "live";
    // Back after a drop (server restart, slow client cut off): what
    // changed meanwhile did not come over the stream; reload the page.
    if (opened) route();
    opened = true;
  };
  es.onerror = () => { live.dataset.state = "error"; live.textContent = "reconnecting"; };
  es.addEventListener("alert", e => {
    const a = JSON.parse(e.data);
    addAlert(a);
    refreshRunSoon(a.run_id, a.seq);
  });
  es.addEventListener("run", e => onRunChange(JSON.parse(e.data)));
  es.addEventListener("event", e => { const n = JSON.parse(e.data); refreshRunSoon(n.run_id, n.seq); });
}

connect();
route();

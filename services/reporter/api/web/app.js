// runbook dashboard: vanilla JS, no build step, no network beyond this
// server. Routes: #/ (runs) and #/runs/<id> (one run). Live updates come
// from /api/v1/stream (Server-Sent Events: alert, run, event).
"use strict";

const view = document.getElementById("view");
const alerts = document.getElementById("alerts");
const live = document.getElementById("live");
const state = {
  route: null, runs: new Map(), pending: new Map(), statusFilter: "", changeFilter: "", nextOffset: null, runID: null,
  // Times read in UTC (ISO 8601, as the CLI prints them) unless the
  // operator chose local time (kept in this browser).
  local: localStorage.getItem("runbook.time") === "local",
  me: null,   // GET /api/v1/me: who the token names and what they may do
  key: null,  // {pub, sign}: the identity's key, loaded by the operator, in memory only
  form: {},   // what was typed into the Act card, kept across live re-renders
  actResult: null, // the Act card's answer paragraph (of state.actResult.dataset.run)
  keyRow: null,    // the Act card's key loader
};

// kept makes an input keep its value across the live re-renders.
function kept(input) {
  if (state.form[input.id] !== undefined) {
    input.value = state.form[input.id];
    if (input.value === "" && input.options) input.selectedIndex = 0; // an option no longer offered
  }
  input.addEventListener("input", () => { state.form[input.id] = input.value; });
  input.addEventListener("change", () => { state.form[input.id] = input.value; });
  return input;
}

// el builds an element: el("td", {class: "x", "data-a": 1}, child, "text", ...).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function badge(status) { return el("span", { class: "badge", "data-status": status }, status || "?"); }

const pad = (n, w = 2) => String(n).padStart(w, "0");

// fmtTime is an ISO 8601 time: UTC ("2026-01-02T15:04:05Z") by default,
// or local with its offset ("2026-01-02T16:04:05+01:00").
function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t);
  if (isNaN(d)) return "";
  if (!state.local) return d.toISOString().replace(/\.\d{3}Z$/, "Z");
  const off = -d.getTimezoneOffset(), sign = off < 0 ? "-" : "+";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
    `${sign}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
}
// fmtClock is the time of day with milliseconds, "15:04:05.123Z" in UTC.
function fmtClock(t) {
  const d = new Date(t);
  if (isNaN(d)) return "";
  if (!state.local) return d.toISOString().slice(11, 23) + "Z";
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

const tzButton = document.getElementById("tz");
function showTZ() {
  tzButton.textContent = state.local ? "local time" : "UTC";
  tzButton.dataset.tz = state.local ? "local" : "utc";
  tzButton.title = "times are shown in " + (state.local ? "this browser's local time" : "UTC") + "; click for " + (state.local ? "UTC" : "local time");
}
tzButton.addEventListener("click", () => {
  state.local = !state.local;
  localStorage.setItem("runbook.time", state.local ? "local" : "utc");
  showTZ();
  if (state.route === "runs") renderRuns(); // at once, from what the page holds
  else route();
});
showTZ();

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
  if (state.changeFilter) q.set("change_id", state.changeFilter);
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

const STATUSES = ["SUBMITTED", "PREFLIGHT", "AWAITING_APPROVAL", "WAITING_WINDOW", "DEPLOYING", "VERIFYING", "ROLLING_BACK",
  "SUCCESS", "ROLLED_BACK", "ROLLBACK_FAILED", "FAILED", "REJECTED", "EXPIRED", "CANCELLED", "INVALID"];
const FINAL = ["SUCCESS", "ROLLED_BACK", "ROLLBACK_FAILED", "FAILED", "REJECTED", "EXPIRED", "CANCELLED", "INVALID"];

function renderRuns() {
  const filter = el("select", { id: "status-filter", "aria-label": "status" },
    el("option", { value: "" }, "every status"),
    STATUSES.map(s => el("option", { value: s, selected: s === state.statusFilter }, s)));
  filter.addEventListener("change", () => { state.statusFilter = filter.value; showRuns(); });
  // The change id filter: exact, as the API's change_id= (e.g. CR-2025-001).
  const change = el("input", { id: "change-filter", type: "search", placeholder: "change id, e.g. CR-2025-001", value: state.changeFilter, "aria-label": "change id" });
  change.addEventListener("change", () => { state.changeFilter = change.value.trim(); showRuns(); });
  const rows = [...state.runs.values()].sort((a, b) => (b.started || "").localeCompare(a.started || "") || a.run_id.localeCompare(b.run_id));
  const body = el("tbody", {}, rows.map(runRow));
  const more = state.nextOffset != null ? el("button", { id: "more" }, "more") : null;
  if (more) more.addEventListener("click", () => showRuns(true));
  const filtered = state.statusFilter || state.changeFilter;
  view.replaceChildren(...[
    el("div", { class: "toolbar" }, el("h2", {}, "Runs"), filter, change, el("span", { class: "muted", id: "runs-count" }, `${rows.length} shown`)),
    el("table", { id: "runs" },
      el("thead", {}, el("tr", {}, ["Run", "Status", "Phase", "Change", "Title", "Started", "Duration"].map(h => el("th", {}, h)))),
      body),
    rows.length ? null : el("p", { class: "muted", id: "no-runs" }, filtered ? "No run matches the filters." : "No runs yet: submit a plan with `runbook submit`."),
    more].filter(Boolean));
}

function runRow(r) {
  return el("tr", { "data-run-id": r.run_id, "data-status": r.status, "data-change-id": r.change_id },
    el("td", { class: "run-id" }, el("a", { href: "#/runs/" + r.run_id }, r.run_id)),
    el("td", { class: "status" }, badge(r.status)),
    el("td", { class: "phase" }, r.phase),
    el("td", {}, r.change_id || "(none)"),
    el("td", {}, r.title),
    el("td", { class: "time" }, fmtTime(r.started)),
    el("td", { class: "duration", "data-started": r.started, "data-ended": r.ended || "" }, runDuration(r)));
}

// A run changed status: update its row, or fetch the list when it is new.
let listRefresh = null;
function onRunChange(c) {
  if (state.route !== "runs") return;
  const r = state.runs.get(c.run_id);
  if (!r) {
    if ((!state.statusFilter || c.status === state.statusFilter) && !state.changeFilter) state.pending.set(c.run_id, state.pending.get(c.run_id) || 0);
    clearTimeout(listRefresh);
    listRefresh = setTimeout(() => showRuns(), 200);
    return;
  }
  r.status = c.status; r.phase = c.phase;
  if (FINAL.includes(c.status)) r.ended = c.time;
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
  // The phase bar (the read API's PhaseBarFor): where the run stands, or
  // where it stopped.
  const words = { done: "done", current: "in progress", pending: "not yet", stopped: "stopped here", skipped: "never reached" };
  const phases = el("div", { class: "phases", id: "phases" }, (r.phase_bar || []).map(p =>
    el("span", { class: p.state, "data-phase": p.phase, "data-state": p.state, title: `${p.phase}: ${words[p.state] || p.state}` },
      p.phase, p.state === "stopped" ? " ✗" : "")));
  const s = r.state || {};
  const facts = el("dl", { class: "facts" },
    el("dt", {}, "Run"), el("dd", { id: "run-id" }, r.run_id),
    el("dt", {}, "Change"), el("dd", {}, `${r.change_id || ""} ${r.title || ""}`),
    el("dt", {}, "Requester"), el("dd", {}, r.requester || ""),
    el("dt", {}, "Risk"), el("dd", {}, r.risk_level || "not assessed"),
    el("dt", {}, "Started"), el("dd", { class: "time" }, fmtTime(r.started)),
    el("dt", {}, "Ended"), el("dd", { class: "time" }, r.ended ? fmtTime(r.ended) + " (" + runDuration(r) + ")" : "in progress"),
    s.waiting_for ? [el("dt", {}, "Waiting for"), el("dd", { id: "waiting-for" }, s.waiting_for.join(", "))] : null,
    s.rollback_reason ? [el("dt", {}, "Rollback"), el("dd", {}, s.rollback_reason)] : null,
    s.final_reason ? [el("dt", {}, "Outcome"), el("dd", { id: "final-reason" }, s.final_reason)] : null);

  return el("div", { id: "run", "data-run-id": r.run_id, "data-status": r.status },
    el("div", { class: "card" },
      el("div", { class: "toolbar" }, el("a", { href: "#/" }, "← runs"), el("h2", { class: "flush" }, r.run_id), badge(r.status),
        el("span", { class: "muted" }, r.title || "")),
      phases, facts,
      el("p", {}, el("a", { href: `/api/v1/runs/${r.run_id}/report` }, "report JSON"), " · ",
        el("a", { href: `/api/v1/runs/${r.run_id}/events` }, "events"), " · ",
        el("a", { href: `/api/v1/runs/${r.run_id}/summary` }, "QC summary"))),
    renderActions(r),
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
    section("Alerts", table("violations", ["Time", "Severity", "Metric", "Value", "Threshold", "Auto-rollback", "Alert"], r.violations,
      v => ({ "data-seq": v.seq, "data-metric": v.metric, "data-source": v.source }), v => [
      fmtTime(v.time), badge(v.severity), v.metric, v.value_text, v.threshold_text, v.auto_rollback ? "yes" : "", v.text]), "every threshold violation of the run, oldest first"),
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

function section(title, body, note) {
  return el("div", { class: "card" }, el("h2", {}, title), note ? el("p", { class: "muted" }, note) : null, body);
}

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

// ---- acting on a run ----
//
// Approve, reject, cancel and roll back as the signed-in identity (the
// token of /login). The read API builds the decision exactly as the CLI
// does and answers its signing bytes; this page signs them with the
// identity's own Ed25519 key (its nkey seed file, loaded once and kept in
// this page's memory only: never sent, never stored) and posts the
// signature, which the server, the deployer and audit verify check
// against the keyring. docs/security.md, "Acting from the dashboard".

const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
function base32Decode(s) {
  const out = [];
  let bits = 0, acc = 0;
  for (const c of s) {
    const v = B32.indexOf(c);
    if (v < 0) throw new Error("not base32: " + c);
    acc = (acc << 5) | v; bits += 5;
    if (bits >= 8) { bits -= 8; out.push((acc >> bits) & 0xff); }
  }
  return new Uint8Array(out);
}
function base32Encode(b) {
  let out = "", bits = 0, acc = 0;
  for (const x of b) {
    acc = (acc << 8) | x; bits += 8;
    while (bits >= 5) { bits -= 5; out += B32[(acc >> bits) & 31]; }
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31];
  return out;
}
// crc16 is nkeys' checksum (CRC-16/XMODEM), stored little-endian.
function crc16(b) {
  let crc = 0;
  for (const x of b) {
    crc ^= x << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}
const PREFIX_SEED = 18 << 3, PREFIX_USER = 20 << 3;
const b64 = bytes => btoa(String.fromCharCode(...bytes));
const unb64 = s => Uint8Array.from(atob(s), c => c.charCodeAt(0));
const unb64url = s => unb64(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));

// loadKey reads a user nkey seed ("SU…", as runbook identity create
// writes it) and returns {pub, sign}: its public nkey ("U…") and a signer
// holding a non-extractable WebCrypto Ed25519 key.
async function loadKey(text) {
  const m = String(text).match(/SU[A-Z2-7]{56}/);
  if (!m) throw new Error("no user nkey seed (SU…) in what was given: load the .nk file `runbook identity create` wrote for you");
  const raw = base32Decode(m[0]);
  const body = raw.slice(0, 34), sum = raw[34] | (raw[35] << 8);
  if (raw.length < 36 || crc16(body) !== sum) throw new Error("the seed's checksum is wrong: it was mistyped or cut");
  if ((raw[0] & 248) !== PREFIX_SEED || (((raw[0] & 7) << 5) | ((raw[1] & 248) >> 3)) !== PREFIX_USER) throw new Error("not a user seed (SU…)");
  const pkcs8 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20, ...raw.slice(2, 34)]);
  // Imported once extractable to learn the public key, then again
  // non-extractable for signing; only the latter is kept.
  const probe = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", probe);
  const pubRaw = new Uint8Array([PREFIX_USER, ...unb64url(jwk.x)]);
  const c = crc16(pubRaw);
  const pub = base32Encode(new Uint8Array([...pubRaw, c & 0xff, c >> 8]));
  const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
  pkcs8.fill(0); raw.fill(0);
  return { pub, sign: async bytes => new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, bytes)) };
}

async function postJSON(path, body) {
  const res = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify(body) });
  let out = {};
  try { out = await res.json(); } catch (_) { /* not JSON */ }
  return { ok: res.ok, status: res.status, body: out };
}

// act prepares a decision, signs it with the loaded key and posts it; it
// answers {ok, text}: the server's sentence (the CLI's).
async function act(runID, req) {
  if (!state.key) return { ok: false, text: "Load your key first (your identity's .nk file): decisions are signed with it in this browser." };
  const prep = await postJSON(`/api/v1/runs/${runID}/decisions/prepare`, req);
  if (!prep.ok) return { ok: false, text: prep.body.error || `${prep.status}` };
  const p = prep.body;
  if (p.key !== state.key.pub) return { ok: false, text: `the loaded key ${state.key.pub.slice(0, 12)}… is not ${p.identity}'s (${p.key.slice(0, 12)}…): load ${p.identity}'s own key` };
  const sig = await state.key.sign(unb64(p.signing_bytes));
  const res = await postJSON(`/api/v1/runs/${runID}/decisions`, Object.assign({}, req,
    { decision: p.decision, time: p.time, nonce: p.nonce, signature: b64(sig) }));
  return { ok: res.ok, text: res.ok ? res.body.text : (res.body.error || `${res.status}`), refused: !!p.refusal };
}

async function loadMe() {
  try { state.me = await getJSON("/api/v1/me"); } catch (e) { state.me = { actions: [], why: e.message }; }
}

// confirmDialog asks before a cancel or a rollback; resolves true on yes.
function confirmDialog(question, yes) {
  return new Promise(resolve => {
    const yesB = el("button", { id: "confirm-yes", class: "danger" }, yes);
    const noB = el("button", { id: "confirm-no" }, "Keep the run going");
    const d = el("dialog", { id: "confirm" }, el("p", {}, question), el("div", { class: "toolbar" }, yesB, noB));
    const done = v => { d.close(); d.remove(); resolve(v); };
    yesB.addEventListener("click", () => done(true));
    noB.addEventListener("click", () => done(false));
    d.addEventListener("cancel", () => done(false));
    document.body.append(d);
    d.showModal();
  });
}

// showAct writes an answer (res: {ok, text, pending}) of action into the
// Act card.
function showAct(res, action) {
  const p = state.actResult;
  if (!p) return;
  p.textContent = res.text;
  p.dataset.outcome = res.pending ? "pending" : res.ok ? "ok" : "refused";
  p.dataset.action = action || "";
  p.className = res.pending ? "muted" : res.ok ? "ok" : "error";
}

// keyLoader is the one "load your key" row of the page: loadKey on the
// chosen file, checked against the signed-in identity's public key.
function keyLoader(me, show) {
  // show: showAct
  if (state.keyRow) return state.keyRow;
  const keyState = el("span", { id: "key-state", "data-loaded": "no" }, "no key loaded");
  const file = el("input", { id: "key-file", type: "file", accept: ".nk,.seed,text/plain" });
  file.addEventListener("change", async () => {
    const f = file.files[0];
    file.value = "";
    if (!f) return;
    try {
      const k = await loadKey(await f.text());
      if (me.public_key && k.pub !== me.public_key) throw new Error(`this key (${k.pub.slice(0, 12)}…) is not ${me.identity}'s (${me.public_key.slice(0, 12)}…)`);
      state.key = k;
      keyState.textContent = `key ${k.pub.slice(0, 12)}… loaded (in this page only)`;
      keyState.dataset.loaded = "yes";
      show({ ok: true, text: `${me.identity}'s key is loaded: decisions are signed with it here.` }, "key");
    } catch (e) { show({ ok: false, text: "Cannot load the key: " + e.message }, "key"); }
  });
  state.keyRow = el("div", { class: "toolbar" }, el("label", {}, "Your key (.nk) ", file), keyState);
  return state.keyRow;
}

function renderActions(r) {
  const me = state.me || { actions: [] };
  const final = FINAL.includes(r.status), s = r.state || {};
  // The answer paragraph and the key loader are the same nodes across the
  // live re-renders: a file being chosen or an answer being written is not
  // lost when the run's page refreshes.
  if (!state.actResult || state.actResult.dataset.run !== r.run_id) {
    state.actResult = el("p", { id: "act-result", "aria-live": "polite", "data-run": r.run_id });
  }
  const result = state.actResult, show = showAct;
  const busy = async (btn, action, fn) => {
    btn.disabled = true;
    show({ pending: true, text: `${action}: signing with your key…` }, action);
    try { show(await fn(), action); } catch (e) { show({ ok: false, text: e.message }, action); } finally { btn.disabled = false; }
    refreshRunSoon(r.run_id, r.last_seq + 1);
  };
  const who = me.identity
    ? el("p", { id: "whoami", "data-identity": me.identity, "data-role": me.role || "" }, "Signed in as ", el("strong", {}, me.identity), me.role ? ` (${me.role})` : "",
      me.why ? el("span", { class: "muted" }, " — " + me.why) : "")
    : el("p", { id: "whoami", class: "muted" }, me.why || "Sign in (/login) with your token to act on runs.");
  if (!me.actions.length) return section("Act", who);
  if (final) return section("Act", [who, el("p", { class: "muted", id: "act-closed" }, `The run ended ${r.status}: there is nothing to decide.`), result]);

  const rows = [keyLoader(me, showAct)];
  const can = a => me.actions.includes(a);
  const roleSelect = (id, roles) => kept(el("select", { id, "aria-label": "role" }, roles.map(x => el("option", { value: x }, x))));
  if (!s.deploy_started && (can("approve") || can("reject"))) {
    const waiting = (s.waiting_for || []).filter(x => x !== "change_window");
    const required = s.approvals_required || [];
    if (can("approve") && waiting.length) {
      const role = roleSelect("approve-role", waiting);
      const comment = kept(el("input", { id: "approve-comment", placeholder: "comment (optional)" }));
      const b = el("button", { id: "approve", class: "primary" }, "Approve");
      b.addEventListener("click", () => busy(b, "approve", () => act(r.run_id, { action: "approve", role: role.value, comment: comment.value })));
      rows.push(el("div", { class: "toolbar" }, b, "as", role, comment));
    }
    if (can("reject") && required.length) {
      const role = roleSelect("reject-role", required);
      const reason = kept(el("input", { id: "reject-reason", placeholder: "why (required)" }));
      const b = el("button", { id: "reject", class: "danger" }, "Reject");
      b.addEventListener("click", () => busy(b, "reject", () => act(r.run_id, { action: "reject", role: role.value, reason: reason.value })));
      rows.push(el("div", { class: "toolbar" }, b, "as", role, reason));
    }
  }
  if (can("cancel") || can("rollback")) {
    const reason = kept(el("input", { id: "stop-reason", placeholder: "why (required for a rollback)" }));
    const parts = [];
    if (can("cancel")) {
      const b = el("button", { id: "cancel", class: "danger" }, "Cancel…");
      b.addEventListener("click", async () => {
        const q = s.deploy_started
          ? `Cancel ${r.run_id}? Its deploy started: cancelling means rolling it back (the plan's rollback steps run).`
          : `Cancel ${r.run_id}? It ends CANCELLED before its deploy; nothing is changed.`;
        if (await confirmDialog(q, "Yes, cancel the run")) busy(b, "cancel", () => act(r.run_id, { action: "cancel", reason: reason.value }));
        else show({ ok: true, text: "Not cancelled." }, "cancel");
      });
      parts.push(b);
    }
    if (can("rollback")) {
      const b = el("button", { id: "rollback", class: "danger" }, "Roll back…");
      b.addEventListener("click", async () => {
        const q = `Roll back ${r.run_id}? The deployer stops a running step and runs the plan's rollback steps, once.`;
        if (await confirmDialog(q, "Yes, roll it back")) busy(b, "rollback", () => act(r.run_id, { action: "rollback", reason: reason.value }));
        else show({ ok: true, text: "Not rolled back." }, "rollback");
      });
      parts.push(b);
    }
    rows.push(el("div", { class: "toolbar" }, parts, reason));
  }
  return section("Act", [who, rows, result]);
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
  // Scaled to the data, with headroom: a 5 ms latency is not drawn flat
  // against a 3 s rollback limit. A limit near the data (up to twice its
  // maximum) is brought into view; one far above is an edge marker at the
  // top, labelled with its value.
  const dataMax = Math.max(0, ...vals);
  const lines = [
    { v: thr, color: "#c62828", label: below ? "minimum" : "threshold", cls: "threshold" },
    { v: lim, color: "#b26a00", label: gate && !gate.rollback ? "critical" : gate?.shadow ? "would roll back" : "rollback", cls: "rollback-limit" },
  ].filter(l => typeof l.v === "number" && isFinite(l.v));
  let vmax = dataMax;
  for (const l of lines) if (dataMax === 0 || l.v <= dataMax * 2) vmax = Math.max(vmax, l.v);
  vmax = vmax > 0 ? vmax * 1.15 : 1;
  const x = t => L + (t - t0) / (t1 - t0) * (W - L - R);
  const y = v => T + (1 - v / vmax) * (H - T - B);
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": name, "data-vmax": vmax });
  g.append(svg("rect", { class: "plot", x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fafbfc", stroke: "#d8dce3" }));
  if (m.deploy) {
    // The deploy (deploy.started → deploy.done): its samples are recorded,
    // not judged, unless the plan judges from deploy.started.
    const d0 = x(Date.parse(m.deploy.start)), d1 = x(m.deploy.end ? Date.parse(m.deploy.end) : t1);
    const what = m.deploy.judged ? "deploy (judged: monitor.start deploy_started)" : "deploy: samples recorded, not judged";
    g.append(svg("rect", { class: "deploy-span", x: d0, y: T, width: Math.max(d1 - d0, 1), height: H - T - B, fill: "#e3e7ee", "fill-opacity": 0.8 },
      svg("title", {}, what)));
    g.append(svg("text", { x: d0 + 2, y: H - B - 3, "font-size": 9, fill: "#6b7280" }, m.deploy.judged ? "deploy (judged)" : "deploy"));
  }
  for (const f of [0, 0.5, 1]) {
    const v = vmax * f;
    g.append(svg("text", { class: "tick", x: L - 4, y: y(v) + 3, "text-anchor": "end", "font-size": 9, fill: "#6b7280" }, fmtMetric(name, Number(v.toPrecision(3)), m.units)));
  }
  g.append(svg("text", { x: L, y: H - 6, "font-size": 9, fill: "#6b7280" }, fmtClock(t0).slice(0, 8)));
  g.append(svg("text", { x: W - R, y: H - 6, "font-size": 9, fill: "#6b7280", "text-anchor": "end" }, fmtClock(t1).slice(0, 8)));
  // Lines in range; edge markers above it. Their labels, right-aligned,
  // are spread apart vertically so none overlaps another.
  const labels = [];
  for (const l of lines) {
    const text = `${l.label} ${fmtMetric(name, l.v, m.units)}`;
    if (l.v <= vmax) {
      g.append(svg("line", { class: l.cls, x1: L, x2: W - R, y1: y(l.v), y2: y(l.v), stroke: l.color, "stroke-dasharray": "5 3", "stroke-width": 1.5 }));
      labels.push({ want: y(l.v) - 3, text, color: l.color, cls: l.cls, edge: false });
    } else {
      g.append(svg("path", { class: l.cls + " edge-marker", d: `M${W - R - 6},${T + 7} l6,-6 l6,6 z`, fill: l.color, transform: "translate(-6,0)" },
        svg("title", {}, `${text}: above the chart (the data peaks at ${fmtMetric(name, dataMax, m.units)})`)));
      labels.push({ want: T + 9, text: text + " ↑", color: l.color, cls: l.cls, edge: true });
    }
  }
  labels.sort((a, b) => a.want - b.want);
  const gap = 11, top = T + 9, bottom = H - B - 2;
  labels.forEach((lb, i) => { lb.y = Math.max(lb.want, top, i ? labels[i - 1].y + gap : top); });
  for (let i = labels.length - 1; i >= 0; i--) { // pushed past the bottom: back up
    const limit = i === labels.length - 1 ? bottom : labels[i + 1].y - gap;
    if (labels[i].y > limit) labels[i].y = limit;
  }
  for (const lb of labels) {
    g.append(svg("text", { class: "limit-label " + lb.cls + (lb.edge ? " edge" : ""), x: W - R - (lb.edge ? 16 : 2), y: lb.y, "text-anchor": "end", "font-size": 9, fill: lb.color }, lb.text));
  }
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

// addAlert shows one alert, newest on top. A client gets the latest
// alerts again each time it (re)connects: one already shown is skipped.
function addAlert(a) {
  if (alerts.querySelector(`li[data-seq="${a.seq}"]`)) return;
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
loadMe().then(route);

// OpenPTL dashboard: a few pages over the JSON API of the same service.
// No framework, no CDN: every element is built with textContent (never
// innerHTML with data), and the URL holds every filter so a view can be shared.
"use strict";

const $main = () => document.getElementById("main");
const $status = () => document.getElementById("status");

/** Creates an element: h("a", {href: "/"}, "text", child, ...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const query = () => new URLSearchParams(location.search);

/** The as_of / known_at of the whole page (the "as known at" picker). */
function when() {
  const q = query();
  const out = {};
  if (q.get("as_of")) out.as_of = q.get("as_of");
  if (q.get("known_at")) out.known_at = q.get("known_at");
  return out;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `The service answered ${status}.`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, params, init) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const url = q.toString() ? `${path}?${q}` : path;
  const res = await fetch(url, Object.assign({ headers: { accept: "application/json" } }, init || {}));
  const text = await res.text();
  const body = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

function label(code) {
  return String(code).replace(/_/g, " ");
}

function rag(value) {
  return value ? h("span", { class: `rag ${value}` }, value) : "";
}

function pct(value) {
  return value === null || value === undefined ? "–" : `${value}%`;
}

function bar(percent, target) {
  const el = h("div", { class: `bar ${percent !== null && target !== undefined ? (percent >= target ? "good" : "bad") : ""}`, role: "img",
    "aria-label": percent === null ? "no data" : `${percent}%${target !== undefined ? ` against a target of ${target}%` : ""}` });
  const fill = h("span");
  fill.style.width = `${Math.max(0, Math.min(100, percent || 0))}%`;
  el.append(fill);
  if (target !== undefined) {
    const mark = h("i");
    mark.style.left = `${target}%`;
    el.append(mark);
  }
  return el;
}

function table(caption, headers, rows) {
  return h("div", { class: "table-wrap" },
    h("table", {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col", class: x.num ? "num" : null, "aria-sort": x.sorted || null },
        x.onsort ? h("a", { href: "#", onclick: (e) => { e.preventDefault(); x.onsort(); }, title: `Sort by ${x.label}` }, x.label, x.sorted ? " ▼" : "") : (x.label || x))))),
      h("tbody", {}, rows)));
}

function status(text) {
  $status().textContent = text;
}

function showError(err) {
  return h("div", { class: "error", role: "alert" }, err.message || String(err));
}

/** Navigates within the dashboard, keeping as_of / known_at. */
function go(path, params) {
  const q = new URLSearchParams(params || {});
  for (const [k, v] of Object.entries(when())) if (!q.has(k)) q.set(k, v);
  const url = q.toString() ? `${path}?${q}` : path;
  history.pushState(null, "", url);
  render();
}

// ---------------------------------------------------------------- PTL page

const WORKLISTS = [
  ["", "Everyone on the PTL"], ["ptl_meeting", "PTL meeting"], ["over_62", "Over 62 days"], ["105+", "Over 104 days"],
  ["no_next_action", "No next action"], ["next_action_overdue", "Next action overdue"], ["escalated", "Escalated"],
  ["milestone_overdue", "Milestone overdue"], ["subsequent_treatment", "Subsequent treatment"],
  ["fit_below_10", "Lower GI, FIT below 10"], // the FIT page's safety-netting worklist (fit.js)
];
const PTL_FILTERS = ["trust", "alliance", "tumour_site", "route", "band", "rag", "escalated", "no_next_action", "milestone_overdue", "next_action_overdue", "worklist", "sort", "cursor"];
let meta = null;
let shownPosition = null;

async function loadMeta() {
  if (!meta) meta = await api("/v1/meta");
  return meta;
}

function ptlParams() {
  const q = query();
  const params = {};
  for (const k of PTL_FILTERS.concat(["as_of", "known_at"])) if (q.get(k)) params[k] = q.get(k);
  return params;
}

function select(name, title, options, current) {
  return h("label", {}, title,
    h("select", { name, id: `f-${name}` },
      h("option", { value: "" }, "Any"),
      options.map((o) => h("option", { value: o, selected: o === current }, label(o)))));
}

function check(name, title, current) {
  return h("label", { class: "check" }, h("input", { type: "checkbox", name, value: "true", checked: current === "true", id: `f-${name}` }), title);
}

async function renderPtl() {
  const [m, page] = await Promise.all([loadMeta(), api("/v1/ptl", Object.assign({ limit: 100 }, ptlParams()))]);
  shownPosition = page.position;
  sessionStorage.setItem("openptl-ptl", location.pathname + location.search);
  const q = query();
  const main = $main();
  main.replaceChildren();
  main.append(h("h1", {}, "Patient tracking list"),
    h("p", { class: "sub", id: "ptl-summary" },
      `${page.total} pathways as of ${page.as_of}`, page.known_at ? `, as known at ${page.known_at}` : "", "."));

  const bandClass = { "0-28": "b0", "29-62": "b29", "63-104": "b63", "105+": "b105" };
  main.append(h("div", { class: "cards", id: "bands" }, m.bands.map((band) => [band, page.bands[band] ?? 0]).map(([band, n]) =>
    h("div", { class: `card ${bandClass[band] || ""}` },
      h("a", { href: "#", "data-band": band, onclick: (e) => { e.preventDefault(); const p = ptlParams(); delete p.cursor; p.band = band; go("/", p); } },
        h("div", { class: "n" }, n), h("div", {}, `${band} days`))))));

  main.append(h("ul", { class: "worklists", "aria-label": "Worklists" }, WORKLISTS.map(([code, title]) => h("li", {},
    h("a", { href: code ? `/?worklist=${encodeURIComponent(code)}` : "/", "aria-current": (q.get("worklist") || "") === code ? "true" : null,
      onclick: (e) => { e.preventDefault(); go("/", code ? { worklist: code } : {}); } }, title)))));

  const form = h("form", { class: "filters", method: "get", action: "/", id: "filters" },
    select("trust", "Trust", m.trusts, q.get("trust")),
    select("tumour_site", "Tumour site", m.tumour_sites, q.get("tumour_site")),
    select("route", "Route", m.routes, q.get("route")),
    select("band", "Wait band", m.bands, q.get("band")),
    select("rag", "RAG", m.rags, q.get("rag")),
    h("label", {}, "Sort", h("select", { name: "sort", id: "f-sort" },
      [["days_waited", "Longest wait"], ["next_breach", "Soonest breach"], ["referred_on", "Oldest referral"]]
        .map(([v, t]) => h("option", { value: v, selected: (q.get("sort") || "days_waited") === v }, t)))),
    check("escalated", "Escalated", q.get("escalated")),
    check("no_next_action", "No next action", q.get("no_next_action")),
    check("milestone_overdue", "Milestone overdue", q.get("milestone_overdue")),
    q.get("worklist") ? h("input", { type: "hidden", name: "worklist", value: q.get("worklist") }) : null,
    h("button", { type: "submit" }, "Apply filters"),
    h("button", { type: "button", class: "secondary", onclick: () => go("/", {}) }, "Clear"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = {};
    for (const [k, v] of new FormData(form).entries()) if (v) p[k] = v;
    go("/", p);
  });
  main.append(form);

  const csv = new URLSearchParams(ptlParams());
  csv.delete("cursor");
  csv.set("format", "csv");
  main.append(h("div", { class: "actions" },
    h("a", { href: `/v1/ptl?${csv}`, id: "csv", download: "ptl.csv" }, "Export this view as CSV"),
    page.next_cursor ? h("a", { href: "#", id: "next-page", onclick: (e) => { e.preventDefault(); go("/", Object.assign(ptlParams(), { cursor: page.next_cursor })); } }, "Next 100 rows") : null,
    q.get("cursor") ? h("a", { href: "#", onclick: (e) => { e.preventDefault(); const p = ptlParams(); delete p.cursor; go("/", p); } }, "First page") : null));

  const sortedBy = q.get("sort") || "days_waited";
  const sortBy = (sort) => () => { const p = ptlParams(); delete p.cursor; p.sort = sort; go("/", p); };
  const sortable = (label, sort, num) => ({ label, num, onsort: sortBy(sort), sorted: sortedBy === sort ? (sort === "days_waited" ? "descending" : "ascending") : null });
  const headers = ["Pathway", "NHS number", "Trust", "Tumour site", "Route", sortable("FDS days", "days_waited", true),
    sortable("62-day days", "days_waited", true), "Band", "RAG", "Next milestone", sortable("Next breach", "next_breach"), "Transfer",
    "Last note", "Next action", "Owner", "Escalated"];
  const rows = page.rows.map((r) => h("tr", { "data-pathway": r.pathway_id },
    h("td", { class: "nowrap" }, h("a", { href: `/pathways/${encodeURIComponent(r.pathway_id)}`, onclick: (e) => { e.preventDefault(); go(`/pathways/${encodeURIComponent(r.pathway_id)}`); } }, r.pathway_id)),
    h("td", { class: "nowrap" }, r.nhs_number), h("td", {}, r.trust), h("td", {}, label(r.tumour_site)), h("td", {}, label(r.route)),
    h("td", { class: "num" }, r.fds_days ?? "–"), h("td", { class: "num" }, r.d62_days ?? "–"),
    h("td", {}, r.band || "–"), h("td", {}, rag(r.rag)),
    h("td", {}, r.next_milestone ? [label(r.next_milestone.name), " ", h("span", { class: r.next_milestone.status === "overdue" ? "flag" : "muted" }, `due ${r.next_milestone.due_date}`)] : "–"),
    h("td", { class: "nowrap" }, r.next_breach_date ? [r.next_breach_date, h("div", { class: "muted" }, r.next_breach_clock, r.next_breach_plan_id ? ` ${r.next_breach_plan_id}` : "")] : "–",
      r.subsequent ? h("div", { class: r.subsequent.status === "open_breached" ? "flag subsequent" : "muted subsequent" },
        `awaiting ${r.subsequent.plan_id} (${label(r.subsequent.modality)}): ${r.subsequent.days} days`) : null),
    h("td", {}, r.transferred ? ["Yes", r.handover_date ? h("div", { class: "muted" }, `day 38: ${r.handover_date}`) : null] : ""),
    h("td", { class: "note" }, r.last_note || ""),
    h("td", { class: "note" }, r.next_action || "", r.next_action_due ? h("div", { class: r.next_action_overdue ? "flag" : "muted" }, `due ${r.next_action_due}`) : null),
    h("td", {}, r.owner || ""),
    h("td", {}, r.escalated ? h("span", { class: "flag" }, "Escalated") : "")));
  main.append(table(`PTL rows ${page.rows.length} of ${page.total}`, headers, rows.length ? rows : [h("tr", {}, h("td", { colspan: headers.length }, "No pathways match these filters."))]));
  status(`Showing the log up to position ${page.position}. Updated ${new Date().toLocaleTimeString("en-GB")}.`);
}

// ------------------------------------------------------------ pathway page

function describe(data) {
  return Object.entries(data || {}).map(([k, v]) => `${label(k)}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("; ");
}

async function renderPathway(id, notice) {
  await loadMeta();
  const at = when();
  const [view, stored] = await Promise.all([
    api(`/v1/pathways/${encodeURIComponent(id)}`, at),
    api(`/v1/pathways/${encodeURIComponent(id)}/events`),
  ]);
  const main = $main();
  main.replaceChildren();
  main.append(h("p", {}, h("a", { href: "/", onclick: (e) => { e.preventDefault(); history_back(); } }, "← Back to the PTL")));
  main.append(h("h1", {}, `Pathway ${view.pathway_id}`));
  if (notice) main.append(notice);
  main.append(h("dl", { class: "facts" },
    h("dt", {}, "NHS number"), h("dd", {}, view.nhs_number || ""),
    h("dt", {}, "Trust"), h("dd", {}, view.trust, view.transferred ? ` (referred at ${view.referring_trust})` : ""),
    h("dt", {}, "Tumour site"), h("dd", {}, label(view.tumour_site)),
    h("dt", {}, "Route"), h("dd", {}, label(view.route)),
    h("dt", {}, "Referred"), h("dd", {}, view.referred_on),
    h("dt", {}, "Status"), h("dd", {}, label(view.status), view.on_ptl ? " (on the PTL)" : " (off the PTL)"),
    h("dt", {}, "FIT band"), h("dd", {}, label(view.fit_band)),
    h("dt", {}, "Next breach"), h("dd", {}, view.next_breach ? `${view.next_breach.date} (${view.next_breach.clock}${view.next_breach.plan_id ? ` ${view.next_breach.plan_id}` : ""})` : "–"),
    h("dt", {}, "As of"), h("dd", {}, view.as_of, at.known_at ? `, as known at ${at.known_at}` : "")));

  const clockRows = ["fds", "d31", "d62"].map((name) => {
    const c = view.clocks[name];
    return h("tr", { "data-clock": name },
      h("th", { scope: "row" }, { fds: "FDS (28 days)", d31: "31-day", d62: "62-day" }[name]),
      h("td", {}, label(c.status)), h("td", {}, c.start || "–"), h("td", {}, c.stop || "–"),
      h("td", {}, c.stop_reason ? label(c.stop_reason) : "–"), h("td", { class: "num" }, c.adjustment_days ?? "–"),
      h("td", { class: "num" }, c.days ?? "–"), h("td", { class: "num" }, c.target_days ?? "–"), h("td", {}, c.target_date || "–"),
      h("td", {}, c.allocation ? c.allocation.map((a) => `${a.trust} ${a.share} ${a.breached ? "breach" : "met"}`).join("; ") : ""));
  });
  main.append(table("Clocks", ["Clock", "Status", "Start", "Stop", "Stop reason", { label: "Adjustment", num: true },
    { label: "Days", num: true }, { label: "Target", num: true }, "Target date", "Allocation"], clockRows));

  // Every treatment's 31-day period (SPEC 2.12): the first, then the subsequent ones.
  main.append(h("h2", {}, "Treatment periods (31-day)"));
  main.append(view.treatment_periods && view.treatment_periods.length
    ? table(null, ["Treatment", "Plan", "Modality", "Status", "Start", "Start reason", "Stop", { label: "Adjustment", num: true },
      { label: "Days", num: true }, "Target date"],
    view.treatment_periods.map((p) => h("tr", { "data-period": p.plan_id || "first" },
      h("td", {}, label(p.treatment)), h("td", {}, p.plan_id || "–"), h("td", {}, label(p.modality)),
      h("td", { class: p.status === "breached" || p.status === "open_breached" ? "flag" : null }, label(p.status)),
      h("td", {}, p.start || "–"), h("td", {}, p.start_reason ? label(p.start_reason) : "–"), h("td", {}, p.stop || "–"),
      h("td", { class: "num" }, p.adjustment_days ?? "–"), h("td", { class: "num" }, p.days ?? "–"), h("td", {}, p.target_date || "–"))))
    : h("p", { class: "muted", id: "no-periods" }, "No decision to treat yet."));

  main.append(h("h2", {}, "BPTP milestones"));
  main.append(view.milestones.length ? table(null, ["Milestone", { label: "Due day", num: true }, "Due date", "Met on", "Status"],
    view.milestones.map((ms) => h("tr", {}, h("td", {}, label(ms.name)), h("td", { class: "num" }, ms.due_day), h("td", {}, ms.due_date),
      h("td", {}, ms.met_on || "–"), h("td", { class: ms.status === "overdue" || ms.status === "missed" ? "flag" : null }, label(ms.status)))))
    : h("p", { class: "muted" }, "This route has no milestones."));
  if (view.transfers && view.transfers.length) {
    main.append(h("h2", {}, "Transfers"), h("ul", {}, view.transfers.map((t) => h("li", {}, `${t.occurred_on}: ${t.from_trust} → ${t.to_trust}`))),
      view.handover_date ? h("p", {}, `Day-38 handover date: ${view.handover_date}`) : null);
  }

  main.append(h("h2", {}, "Add a tracking note"));
  const now = new Date();
  const today = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}-${String(now.getDate()).padStart(2, "0")}`;
  const form = h("form", { class: "filters", id: "note-form" },
    h("label", {}, "Note (required)", h("textarea", { name: "text", id: "note-text", required: true, maxlength: 2000, rows: 2, cols: 40 })),
    h("label", {}, "Next action", h("input", { type: "text", name: "next_action", id: "note-next-action", maxlength: 200 })),
    h("label", {}, "Next action due", h("input", { type: "date", name: "next_action_due", id: "note-due" })),
    h("label", {}, "Owner", h("input", { type: "text", name: "owner", id: "note-owner", maxlength: 100 })),
    h("label", {}, "Date", h("input", { type: "date", name: "occurred_on", value: today, id: "note-date", required: true })),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "escalated", value: "true", id: "note-escalated" }), "Escalate"),
    h("button", { type: "submit", id: "note-submit" }, "Add note"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const data = { text: f.get("text") };
    for (const k of ["next_action", "next_action_due", "owner"]) if (f.get(k)) data[k] = f.get(k);
    if (f.get("escalated")) data.escalated = true;
    try {
      const out = await api("/v1/events", null, {
        method: "POST", headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ pathway_id: id, type: "tracking_note_added", occurred_on: f.get("occurred_on"), data }),
      });
      await renderPathway(id, h("div", { class: "ok", role: "status" }, `Note added (version ${out.appended[0].version}).`));
    } catch (err) {
      form.before(showError(err));
    }
  });
  main.append(form);

  main.append(h("h2", {}, "Timeline"));
  main.append(h("ol", { class: "timeline", reversed: true }, stored.events.slice().reverse().map((ev) =>
    h("li", { class: ev.voided_by ? "voided" : null },
      h("div", { class: "what" }, h("strong", {}, `${ev.occurred_on} ${label(ev.type)}`), " ", describe(ev.data)),
      h("div", { class: "meta" }, `recorded ${ev.recorded_at} by ${ev.actor}, version ${ev.version}, position ${ev.position}`),
      (ev.corrected_by || []).map((c) => h("div", { class: "meta" }, `Corrected by ${c.actor} at ${c.recorded_at}: ${c.reason}`)),
      ev.voided_by ? h("div", { class: "meta flag" }, `Voided by ${ev.voided_by.actor} at ${ev.voided_by.recorded_at}: ${ev.voided_by.reason}`) : null))));
  status(`Pathway version ${view.version}.`);
}

/** Back to the PTL view the user came from (filters kept). */
function history_back() {
  const url = sessionStorage.getItem("openptl-ptl") || "/";
  history.pushState(null, "", url);
  render();
}

// ---------------------------------------------------------- standards page

function months(end, n) {
  const [y, m] = end.split("-").map(Number);
  const out = [];
  for (let i = n - 1; i >= 0; i--) {
    const d = new Date(Date.UTC(y, m - 1 - i, 1));
    out.push(`${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`);
  }
  return out;
}

function chart(title, points, target) {
  const w = 420, hgt = 150, pad = 28, bw = (w - pad * 2) / points.length;
  const y = (v) => hgt - pad - (v / 100) * (hgt - pad * 2);
  const el = svg("svg", { class: "chart", viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, role: "img",
    "aria-label": `${title}: ${points.map((p) => `${p.label} ${p.value === null ? "no data" : p.value + "%"}`).join(", ")}` });
  el.append(svg("line", { x1: pad, x2: w - pad, y1: y(0), y2: y(0), stroke: "#4c6272" }));
  points.forEach((p, i) => {
    const v = p.value || 0;
    el.append(svg("rect", { x: pad + i * bw + 4, y: y(v), width: bw - 8, height: y(0) - y(v), fill: p.value !== null && p.value >= target ? "#007f3b" : "#d5281b" }));
    el.append(svg("text", { x: pad + i * bw + bw / 2, y: hgt - 8, "text-anchor": "middle" }, p.label.slice(2)));
    if (p.value !== null) el.append(svg("text", { x: pad + i * bw + bw / 2, y: y(v) - 3, "text-anchor": "middle" }, `${Math.round(p.value)}`));
  });
  el.append(svg("line", { x1: pad, x2: w - pad, y1: y(target), y2: y(target), stroke: "#212b32", "stroke-dasharray": "4 3" }));
  el.append(svg("text", { x: w - pad, y: y(target) - 3, "text-anchor": "end" }, `target ${target}%`));
  return el;
}

async function renderStandards() {
  const at = when();
  const q = query();
  const today = at.as_of || new Date().toISOString().slice(0, 10);
  const period = q.get("period") || today.slice(0, 7);
  const trust = q.get("trust") || "";
  const m = await loadMeta();
  const base = Object.assign({}, at, trust ? { trust } : {});
  const clocks = [["fds", "Faster Diagnosis Standard (28 days)"], ["d31", "31-day (every treatment, from decision or ECAD)"], ["d62", "62-day (referral to treatment)"]];
  const trend = months(period, 6);
  const reports = await Promise.all(clocks.map(([c]) => api(`/v1/standards/${c}`, Object.assign({ period }, base))));
  const trends = await Promise.all(clocks.map(([c]) => Promise.all(trend.map((p) => api(`/v1/standards/${c}`, Object.assign({ period: p }, base))))));
  const main = $main();
  main.replaceChildren();
  main.append(h("h1", {}, "Performance against the standards"));
  const form = h("form", { class: "filters", id: "standards-form" },
    h("label", {}, "Month", h("input", { type: "month", name: "period", value: period, id: "period" })),
    select("trust", "Trust", m.trusts, trust),
    h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (e) => { e.preventDefault(); const p = {}; for (const [k, v] of new FormData(form).entries()) if (v) p[k] = v; go("/standards", p); });
  main.append(form);
  const grid = h("div", { class: "grid" });
  clocks.forEach(([c, title], i) => {
    const r = reports[i];
    const target = r.thresholds.operational ?? r.thresholds.standard;
    const panel = h("section", { class: "panel", "aria-labelledby": `h-${c}`, id: `standard-${c}` },
      h("h2", { id: `h-${c}` }, title),
      h("p", {}, h("strong", { class: "big" }, pct(r.percent)), ` within ${r.target_days} days in ${r.period}: ${r.within_target} of ${r.total}. `,
        `National standard ${r.thresholds.standard}%`, r.thresholds.operational ? `, operational target ${r.thresholds.operational}%` : "", "."),
      chart(`${title}, last six months`, trends[i].map((x) => ({ label: x.period, value: x.percent })), target),
      table("By trust", ["Trust", { label: "Stopped", num: true }, { label: "Within", num: true }, { label: "%", num: true }, "", c === "fds" ? { label: "Excluded", num: true } : null].filter(Boolean),
        r.by_trust.map((t) => h("tr", {}, h("td", {}, t.trust), h("td", { class: "num" }, t.total), h("td", { class: "num" }, t.within_target),
          h("td", { class: "num" }, pct(t.percent)), h("td", {}, bar(t.percent, target)), c === "fds" ? h("td", { class: "num" }, t.excluded ?? 0) : null))),
      table("By tumour site", ["Tumour site", { label: "Stopped", num: true }, { label: "%", num: true }, ""],
        r.by_tumour_site.map((t) => h("tr", {}, h("td", {}, label(t.tumour_site)), h("td", { class: "num" }, t.total), h("td", { class: "num" }, pct(t.percent)), h("td", {}, bar(t.percent, target))))));
    if (r.by_treatment) {
      // The combined 31-day standard as the national statistics split it (SPEC 4.4).
      const halves = [["first_definitive", "First definitive treatment"], ["subsequent", "Subsequent treatment"]];
      panel.append(table("First definitive and subsequent treatments", ["Treatment", { label: "Treated", num: true }, { label: "Within", num: true }, { label: "%", num: true }, ""],
        halves.map(([k, t]) => h("tr", { "data-treatment": k }, h("td", {}, t), h("td", { class: "num" }, r.by_treatment[k].total),
          h("td", { class: "num" }, r.by_treatment[k].within_target), h("td", { class: "num" }, pct(r.by_treatment[k].percent)), h("td", {}, bar(r.by_treatment[k].percent, target))))));
      const groups = [["surgery", "Surgery"], ["anticancer_drug", "Anti-cancer drug"], ["radiotherapy", "Radiotherapy"], ["other", "Other"]];
      panel.append(table("By modality", ["Modality", { label: "First %", num: true }, { label: "Subsequent %", num: true }, { label: "Treated", num: true }, { label: "%", num: true }, ""],
        groups.map(([k, t]) => h("tr", { "data-modality": k }, h("td", {}, t),
          h("td", { class: "num" }, pct(r.by_treatment.first_definitive.by_modality[k].percent)),
          h("td", { class: "num" }, pct(r.by_treatment.subsequent.by_modality[k].percent)),
          h("td", { class: "num" }, r.by_modality[k].total), h("td", { class: "num" }, pct(r.by_modality[k].percent)), h("td", {}, bar(r.by_modality[k].percent, target))))));
    }
    if (r.by_outcome) {
      panel.append(table("Diagnosed and ruled out", ["Outcome", { label: "Stopped", num: true }, { label: "%", num: true }, ""],
        [["diagnosed", "Cancer diagnosed"], ["ruled_out", "Cancer ruled out"]].map(([k, t]) => h("tr", {}, h("td", {}, t),
          h("td", { class: "num" }, r.by_outcome[k].total), h("td", { class: "num" }, pct(r.by_outcome[k].percent)), h("td", {}, bar(r.by_outcome[k].percent, target))))));
    }
    grid.append(panel);
  });
  main.append(grid);
  status(`Clocks stopped in ${period}, as of ${at.as_of || "today"}.`);
}

// --------------------------------------------------------- milestones page

async function renderMilestones() {
  const at = when();
  const q = query();
  const m = await loadMeta();
  const params = Object.assign({}, at);
  for (const k of ["period", "trust", "tumour_site"]) if (q.get(k)) params[k] = q.get(k);
  const r = await api("/v1/milestones", params);
  const main = $main();
  main.replaceChildren();
  main.append(h("h1", {}, "Best Practice Timed Pathway milestones"));
  const form = h("form", { class: "filters", id: "milestones-form" },
    h("label", {}, "Referred in (month)", h("input", { type: "month", name: "period", value: q.get("period") || "", id: "period" })),
    select("trust", "Trust", m.trusts, q.get("trust")),
    select("tumour_site", "Tumour site", m.tumour_sites, q.get("tumour_site")),
    h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (e) => { e.preventDefault(); const p = {}; for (const [k, v] of new FormData(form).entries()) if (v) p[k] = v; go("/milestones", p); });
  main.append(form);
  main.append(h("p", {}, h("strong", {}, pct(r.percent)), ` of ${r.decided} pathways with every milestone decided met them all (${r.meeting_all}); ${r.pathways} pathways in all.`));
  const fit = r.fit;
  main.append(h("section", { class: "panel", id: "fit" }, h("h2", {}, "Lower GI: FIT before referral (CAN-04)"),
    h("p", {}, `${pct(fit.percent)} of ${fit.lower_gi_urgent_referrals} urgent lower GI referrals had a FIT result in the ${fit.indicator_days} days before referral.`),
    table("FIT band mix", ["Band", { label: "Referrals", num: true }, ""], Object.entries(fit.bands).map(([band, n]) =>
      h("tr", {}, h("td", {}, label(band)), h("td", { class: "num" }, n), h("td", {}, bar(fit.lower_gi_urgent_referrals ? (100 * n) / fit.lower_gi_urgent_referrals : 0)))))));
  const grid = h("div", { class: "grid" });
  for (const site of r.by_tumour_site) {
    grid.append(h("section", { class: "panel", "data-site": site.tumour_site },
      h("h2", {}, label(site.tumour_site)),
      h("p", {}, `${site.pathways} pathways; meeting every milestone: ${pct(site.percent)}.`),
      table(null, ["Milestone", { label: "Day", num: true }, { label: "Met", num: true }, { label: "Missed", num: true }, { label: "Overdue", num: true },
        { label: "Pending", num: true }, { label: "N/A", num: true }, { label: "% met", num: true }, ""],
        site.milestones.map((ms) => h("tr", {}, h("td", {}, label(ms.name)), h("td", { class: "num" }, ms.due_day), h("td", { class: "num" }, ms.met),
          h("td", { class: "num" }, ms.missed), h("td", { class: "num" }, ms.overdue), h("td", { class: "num" }, ms.pending), h("td", { class: "num" }, ms.not_applicable),
          h("td", { class: "num" }, pct(ms.percent_met)), h("td", {}, bar(ms.percent_met)))))));
  }
  main.append(grid);
  main.append(table("Pathways meeting every milestone, by trust", ["Trust", { label: "Pathways", num: true }, { label: "Decided", num: true }, { label: "Meeting all", num: true }, { label: "%", num: true }, ""],
    r.by_trust.map((t) => h("tr", {}, h("td", {}, t.trust), h("td", { class: "num" }, t.pathways), h("td", { class: "num" }, t.decided), h("td", { class: "num" }, t.meeting_all), h("td", { class: "num" }, pct(t.percent)), h("td", {}, bar(t.percent))))));
  status(`As of ${r.position ? "log position " + r.position : "now"}.`);
}

// ------------------------------------------------------------------ wiring

function setWhenForm() {
  const at = when();
  document.getElementById("as_of").value = at.as_of || "";
  const known = document.getElementById("known_at");
  if (at.known_at) {
    const d = new Date(at.known_at);
    const local = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
    known.value = local;
  } else known.value = "";
  for (const a of document.querySelectorAll("nav a")) {
    const page = location.pathname === "/" ? "ptl" : location.pathname.slice(1).split("/")[0];
    if (a.dataset.nav === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
    const q = new URLSearchParams(when());
    a.href = (a.dataset.nav === "ptl" ? "/" : `/${a.dataset.nav}`) + (q.toString() ? `?${q}` : "");
  }
}

function renderSignIn(message) {
  const form = h("form", { class: "filters", id: "sign-in" },
    h("label", {}, "Access token", h("input", { type: "password", name: "token", id: "token", required: true, autocomplete: "current-password", size: 60 })),
    h("button", { type: "submit", id: "sign-in-submit" }, "Sign in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/v1/session", null, {
        method: "POST", headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ token: new FormData(form).get("token") }),
      });
      meta = null;
      render();
    } catch (err) {
      renderSignIn(err.message);
    }
  });
  $main().replaceChildren(h("h1", {}, "Sign in to OpenPTL"),
    h("p", {}, "Paste the access token your OpenPTL administrator gave you. It is kept in a secure cookie for this browser session."),
    message ? h("div", { class: "error", role: "alert" }, message) : null, form);
  document.getElementById("token").focus();
  status("Not signed in.");
}

async function signOut() {
  await fetch("/v1/session", { method: "DELETE" });
  meta = null;
  shownPosition = null;
  render();
}

/** A banner when a page shows the past, so nobody mistakes it for today. */
function pastBanner() {
  const at = when();
  if (!at.as_of && !at.known_at) return null;
  const parts = [];
  if (at.as_of) parts.push(`as of ${at.as_of}`);
  if (at.known_at) parts.push(`as known at ${new Date(at.known_at).toLocaleString("en-GB")}`);
  return h("div", { class: "past", role: "note", id: "past-banner" },
    `You are looking at the service ${parts.join(", ")}: live updates are paused. `,
    h("a", { href: "#", onclick: (e) => { e.preventDefault(); document.getElementById("now").click(); } }, "Back to today, now"));
}

async function render() {
  setWhenForm();
  const path = location.pathname;
  try {
    if (path === "/") await renderPtl();
    else if (path.startsWith("/pathways/")) await renderPathway(decodeURIComponent(path.slice("/pathways/".length)));
    else if (path === "/standards") await renderStandards();
    else if (path === "/milestones") await renderMilestones();
    else if (path === "/fit") await renderFit(); // fit.js
    else $main().replaceChildren(h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "/" }, "Go to the PTL")));
  } catch (err) {
    if (err.status === 401) renderSignIn();
    else $main().replaceChildren(showError(err));
  }
  const banner = pastBanner();
  if (banner && !document.getElementById("token")) $main().prepend(banner);
  const who = document.getElementById("who");
  if (meta && who) who.replaceChildren(`${meta.actor} (${label(meta.role)}) `, h("button", { type: "button", class: "secondary", id: "sign-out", onclick: signOut }, "Sign out"));
  else if (who) who.replaceChildren();
  document.body.dataset.ready = "true";
}

/** Live PTL: re-draws when new events are projected (today's view only). */
async function poll() {
  if (location.pathname === "/" && !query().get("as_of") && !query().get("known_at") && shownPosition !== null) {
    try {
      const ready = await api("/readyz");
      if (ready.projected_position > shownPosition && !document.activeElement.closest("form")) await renderPtl();
    } catch (_) { status("The service is not answering; retrying."); }
  }
  setTimeout(poll, 5000);
}

document.addEventListener("DOMContentLoaded", () => {
  const whenForm = document.getElementById("when");
  whenForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = query();
    q.delete("cursor");
    const asOf = document.getElementById("as_of").value;
    const known = document.getElementById("known_at").value;
    asOf ? q.set("as_of", asOf) : q.delete("as_of");
    known ? q.set("known_at", new Date(known).toISOString()) : q.delete("known_at");
    history.pushState(null, "", `${location.pathname}${q.toString() ? "?" + q : ""}`);
    render();
  });
  document.getElementById("now").addEventListener("click", () => {
    const q = query();
    q.delete("as_of"); q.delete("known_at"); q.delete("cursor");
    history.pushState(null, "", `${location.pathname}${q.toString() ? "?" + q : ""}`);
    render();
  });
  window.addEventListener("popstate", render);
  render();
  setTimeout(poll, 5000);
});

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
  // A page of past views queues behind the server's past-view limit: a
  // read refused `busy` waits as long as it is told and asks again.
  const read = !init || !init.method || init.method === "GET";
  if (res.status === 429 && read && body && body.error && body.error.code === "busy" && (init?.attempt || 0) < 5) {
    const wait = Math.min(Number(res.headers.get("retry-after")) || 1, 10);
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    return api(path, params, Object.assign({}, init, { attempt: (init?.attempt || 0) + 1 }));
  }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

// Codes read as words: `lower_gi` "lower GI", `ct_colonography` "CT colonography".
const ACRONYMS = { ct: "CT", mri: "MRI", mpmri: "mpMRI", ogd: "OGD", gi: "GI", fit: "FIT", pet: "PET", mdt: "MDT", fds: "FDS", ecad: "ECAD", cns: "CNS", gp: "GP", ods: "ODS", nhs: "NHS", cup: "CUP", ebus: "EBUS" };

function label(code) {
  return String(code).split("_").map((w) => ACRONYMS[w] || w).join(" ");
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
const PTL_FILTERS = ["trust", "alliance", "tumour_site", "route", "band", "rag", "escalated", "no_next_action", "milestone_overdue", "next_action_overdue", "worklist", "min_breach_risk", "sort", "cursor"];
let meta = null;
let shownPosition = null;

async function loadMeta() {
  if (!meta) {
    const [m, session] = await Promise.all([api("/v1/meta"), api("/v1/session")]);
    // The trusts this user covers ("*" for every trust): forms are offered
    // only where the server would accept the write.
    m.scope = session.trusts;
    meta = m;
  }
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
  // Rows whose 62-day clock is not running (only the FDS, or a 31-day
  // period, runs) have no wait band: say how many, so the cards add up.
  const banded = m.bands.reduce((sum, band) => sum + (page.bands[band] ?? 0), 0);
  if (!q.get("band") && page.total > banded) {
    main.append(h("p", { class: "hint", id: "unbanded" },
      `${page.total - banded} of the ${page.total} pathways have no wait band: their 62-day clock is not running (only the FDS or a 31-day treatment period is).`));
  }

  main.append(h("ul", { class: "worklists", "aria-label": "Worklists" }, WORKLISTS.map(([code, title]) => h("li", {},
    h("a", { href: code ? `/?worklist=${encodeURIComponent(code)}` : "/", "aria-current": (q.get("worklist") || "") === code ? "true" : null,
      onclick: (e) => { e.preventDefault(); go("/", code ? { worklist: code } : {}); } }, title))),
    // The PTL's own worklist (decision 154), riskiest first; the chip keeps this view's
    // trust and tumour site.
    h("li", {}, h("a", { href: "/?worklist=likely_to_breach&sort=breach_risk", id: "likely-to-breach",
      "aria-current": q.get("worklist") === "likely_to_breach" ? "true" : null,
      onclick: (e) => {
        e.preventDefault();
        const p = { worklist: "likely_to_breach", sort: "breach_risk" };
        for (const k of ["trust", "tumour_site"]) if (q.get(k)) p[k] = q.get(k);
        go("/", p);
      } },
      "Likely to breach"))));

  const form = h("form", { class: "filters", method: "get", action: "/", id: "filters" },
    select("trust", "Trust", m.trusts, q.get("trust")),
    select("tumour_site", "Tumour site", m.tumour_sites, q.get("tumour_site")),
    select("route", "Route", m.routes, q.get("route")),
    select("band", "Wait band", m.bands, q.get("band")),
    select("rag", "RAG", m.rags, q.get("rag")),
    h("label", {}, "Sort", h("select", { name: "sort", id: "f-sort" },
      [["days_waited", "Longest wait"], ["next_breach", "Soonest breach"], ["referred_on", "Oldest referral"], ["breach_risk", "Highest breach risk"]]
        .map(([v, t]) => h("option", { value: v, selected: (q.get("sort") || "days_waited") === v }, t)))),
    h("label", {}, "Breach risk above (%)", h("input", { type: "number", name: "min_breach_risk", id: "f-min_breach_risk",
      min: "0", max: "100", step: "5", value: q.get("min_breach_risk") || "" })),
    check("escalated", "Escalated", q.get("escalated")),
    check("no_next_action", "No next action", q.get("no_next_action")),
    check("milestone_overdue", "Milestone overdue", q.get("milestone_overdue")),
    check("next_action_overdue", "Next action overdue", q.get("next_action_overdue")),
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

  // Coordinators open pathways here; anyone who may add notes can run a
  // PTL meeting over the worklist shown.
  const live = !q.get("as_of") && !q.get("known_at");
  const referralPanel = h("section", { class: "panel form-panel", id: "referral-panel", hidden: true, "aria-labelledby": "referral-heading" });
  const mayRefer = live && m && ["coordinator", "admin"].includes(m.role) && (m.scope === "*" || (Array.isArray(m.scope) && m.scope.length > 0));
  const newReferral = mayRefer ? h("button", { type: "button", id: "new-referral", "aria-controls": "referral-panel",
    onclick: () => openReferralPanel(referralPanel, newReferral) }, "New referral") : null;
  const startMeeting = live && page.total > 0 && m && ["coordinator", "manager", "admin"].includes(m.role)
    ? h("button", { type: "button", class: "secondary", id: "start-meeting", onclick: () => {
      sessionStorage.removeItem(MEETING_KEY);
      const p = ptlParams(); delete p.cursor; p.meeting = "1"; go("/", p);
    } }, `Start PTL meeting (${page.total})`) : null;
  if (newReferral || startMeeting) main.append(h("div", { class: "actions" }, newReferral, startMeeting), referralPanel);

  const csv = new URLSearchParams(ptlParams());
  csv.delete("cursor");
  csv.set("format", "csv");
  main.append(h("div", { class: "actions" },
    h("a", { href: `/v1/ptl?${csv}`, id: "csv", download: "ptl.csv" }, "Export this view as CSV"),
    page.next_cursor ? h("a", { href: "#", id: "next-page", onclick: (e) => { e.preventDefault(); go("/", Object.assign(ptlParams(), { cursor: page.next_cursor })); } }, "Next 100 rows") : null,
    q.get("cursor") ? h("a", { href: "#", onclick: (e) => { e.preventDefault(); const p = ptlParams(); delete p.cursor; go("/", p); } }, "First page") : null));

  const sortedBy = q.get("sort") || "days_waited";
  const sortBy = (sort) => () => { const p = ptlParams(); delete p.cursor; p.sort = sort; go("/", p); };
  const descending = ["days_waited", "breach_risk"];
  const sortable = (label, sort, num) => ({ label, num, onsort: sortBy(sort), sorted: sortedBy === sort ? (descending.includes(sort) ? "descending" : "ascending") : null });
  const headers = ["Pathway", "NHS number", "Trust", "Tumour site", "Route", { label: "FDS days", num: true },
    sortable("62-day days", "days_waited", true), "Band", "RAG", "Next milestone", sortable("Next breach", "next_breach"),
    sortable("Breach risk", "breach_risk", true), "Transfer",
    "Last note", "Next action", "Owner", "Escalated"];
  const rows = page.rows.map((r) => h("tr", { "data-pathway": r.pathway_id },
    h("td", { class: "nowrap" }, h("a", { href: `/pathways/${encodeURIComponent(r.pathway_id)}`, onclick: (e) => { e.preventDefault(); go(`/pathways/${encodeURIComponent(r.pathway_id)}`); } }, r.pathway_id)),
    h("td", { class: "nowrap" }, r.nhs_number), h("td", {}, r.trust),
    h("td", {}, label(r.tumour_site), r.tumour_site === "lower_gi"
      // The safety-netting review (fit_below_10) needs the FIT and how far the colonoscopy went.
      ? h("div", { class: "muted fit-colonoscopy" }, `FIT ${r.fit_band ? label(r.fit_band) : "none"}; colonoscopy ${r.colonoscopy ? label(r.colonoscopy) : "not requested"}`)
      : null),
    h("td", {}, label(r.route)),
    h("td", { class: "num" }, r.fds_days ?? "–"), h("td", { class: "num" }, r.d62_days ?? "–"),
    h("td", {}, r.band || "–"), h("td", {}, rag(r.rag)),
    h("td", {}, r.next_milestone ? [label(r.next_milestone.name), " ", h("span", { class: r.next_milestone.status === "overdue" ? "flag" : "muted" }, `due ${r.next_milestone.due_date}`)] : "–"),
    h("td", { class: "nowrap" }, r.next_breach_date ? [r.next_breach_date, h("div", { class: "muted" }, r.next_breach_clock, r.next_breach_plan_id ? ` ${r.next_breach_plan_id}` : "")] : "–",
      r.subsequent ? h("div", { class: r.subsequent.status === "open_breached" ? "flag subsequent" : "muted subsequent" },
        `awaiting ${r.subsequent.plan_id} (${label(r.subsequent.modality)}): ${r.subsequent.days} days`) : null),
    ptlRiskCell(r), // forecast.js
    h("td", {}, r.transferred ? ["Yes", r.handover_date ? h("div", { class: "muted" }, `day 38: ${r.handover_date}`) : null] : ""),
    h("td", { class: "note" }, r.last_note || ""),
    h("td", { class: "note" }, r.next_action || "", r.next_action_due ? h("div", { class: r.next_action_overdue ? "flag" : "muted" }, `due ${r.next_action_due}`) : null),
    h("td", {}, r.owner || ""),
    h("td", {}, r.escalated ? h("span", { class: "flag" }, "Escalated") : "")));
  main.append(table(`PTL rows ${page.rows.length} of ${page.total}`, headers, rows.length ? rows : [h("tr", {}, h("td", { colspan: headers.length }, "No pathways match these filters."))]));
  status(`Showing the log up to position ${page.position}. Updated ${new Date().toLocaleTimeString("en-GB")}.`);
}

// ------------------------------------------------------------ pathway page

/** Human names of the event types (SPEC 3.2), in the order of the catalogue. */
const EVENT_NAMES = {
  referral_received: "Referral received", consultant_upgraded: "Consultant upgrade", fit_result_recorded: "FIT result",
  triage_completed: "Triage completed", appointment_attended: "Appointment attended", appointment_missed: "Appointment missed",
  diagnostic_requested: "Diagnostic test requested", diagnostic_performed: "Diagnostic test performed",
  diagnostic_reported: "Diagnostic test reported", mdt_discussed: "Discussed at MDT", diagnosis_communicated: "Diagnosis communicated",
  fds_excluded: "Excluded from the Faster Diagnosis Standard", decision_to_treat: "Decision to treat",
  treatment_offer_declined: "Treatment offer declined", treatment_started: "Treatment started",
  pathway_transferred: "Transferred to another trust", tumour_site_changed: "Tumour site changed", pathway_closed: "Pathway closed",
  tracking_note_added: "Tracking note", event_corrected: "Correction of an event", event_voided: "Void of an event",
};
const AMENDMENTS = ["event_corrected", "event_voided"];

/** Labels of the data fields, in the order a form shows them. */
const FIELD_LABELS = {
  nhs_number: "NHS number", trust: "Trust", tumour_site: "Tumour site", route: "Route", screening_programme: "Screening programme",
  referrer: "Referring GP practice (ODS code)", nhs_number_status: "NHS number trace status", value_ug_per_g: "FIT value (µg Hb/g)", not_appropriate: "FIT not appropriate",
  kind: "Appointment type", mode: "How the patient was seen", test: "Test", request_id: "Request id", outcome: "Outcome",
  method: "How the patient was told", icd10: "Diagnosis (ICD-10 code)", treatment: "First or subsequent treatment",
  plan_id: "Plan name (subsequent treatments)", modality: "Modality", earliest_clinically_appropriate_date: "Earliest clinically appropriate date (ECAD)",
  care_setting: "Care setting", offered_on: "Offered on", available_from: "Available from", setting: "Setting",
  to_trust: "New trust (ODS code)", reason: "Reason", text: "Note", next_action: "Next action", next_action_due: "Next action due",
  owner: "Owner", escalated: "Escalate", corrects: "Event corrected", voids: "Event voided", new_occurred_on: "New date", new_data: "New details",
};

/** The units shown beside a number field. */
const UNITS = { value_ug_per_g: "µg Hb/g" };

function eventName(type) {
  return EVENT_NAMES[type] || label(type);
}

function fieldLabel(name) {
  return FIELD_LABELS[name] || label(name);
}

function codeLabel(code) {
  const text = label(code);
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Today's date in London (YYYY-MM-DD): the service's day, whatever the browser's time zone. */
/** The date in London (YYYY-MM-DD) now, or at the moment `at` (an ISO timestamp). */
function todayIso(at) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: "Europe/London", year: "numeric", month: "2-digit", day: "2-digit" }).format(at ? new Date(at) : new Date());
}

function describe(data) {
  return Object.entries(data || {}).filter(([k]) => !["corrects", "voids", "new_data"].includes(k))
    .map(([k, v]) => `${fieldLabel(k)}: ${typeof v === "object" ? JSON.stringify(v) : typeof v === "boolean" ? (v ? "yes" : "no") : (/^[a-z0-9_]+$/.test(String(v)) && k !== "value_ug_per_g" ? label(v) : v)}`).join("; ");
}

// The event forms are generated from the API's own OpenAPI document, so the
// closed vocabularies (tests, modalities, outcomes…) have one source of truth.
let eventSchemas = null;

async function loadSchemas() {
  if (eventSchemas) return eventSchemas;
  const doc = await api("/v1/openapi.json");
  const out = new Map();
  for (const env of doc.components.schemas.Envelope.oneOf) {
    const type = env.properties.type.enum[0];
    const data = env.properties.data;
    const fields = {};
    let required = [];
    if (data.oneOf) for (const part of data.oneOf) Object.assign(fields, part.properties || {});
    else { Object.assign(fields, data.properties || {}); required = data.required || []; }
    const order = Object.keys(FIELD_LABELS);
    const names = Object.keys(fields).sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99));
    out.set(type, { names, fields, required });
  }
  eventSchemas = out;
  return out;
}

/** The trusts the signed-in user may record referrals for. */
function ownTrusts() {
  if (!meta) return [];
  if (Array.isArray(meta.scope)) return meta.scope.slice().sort();
  return meta.trusts || [];
}

/** What the signed-in role may record (mirrors access::Principal::may_write). */
function canRecord(trust) {
  return !!meta && ["coordinator", "admin"].includes(meta.role) && coversTrust(trust);
}

function canNote(trust) {
  return !!meta && ["coordinator", "manager", "admin"].includes(meta.role) && coversTrust(trust);
}

function coversTrust(trust) {
  return meta.scope === "*" || (Array.isArray(meta.scope) && meta.scope.includes(trust));
}

/** NHS number Modulus 11 (SPEC 2.11): a hint while typing; the server decides. */
function nhsNumberValid(text) {
  const d = String(text).replace(/\s/g, "");
  if (!/^[0-9]{10}$/.test(d)) return false;
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += Number(d[i]) * (10 - i);
  let check = 11 - (sum % 11);
  if (check === 11) check = 0;
  return check !== 10 && check === Number(d[9]);
}

let fieldSeq = 0;

/**
 * One labelled field, NHS design system style: label, hint, error message
 * above the control. `api` is the field's name in the API's error details.
 */
function field(apiName, title, control, hint) {
  const id = control.id || `fld-${++fieldSeq}`;
  control.id = id;
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  const isCheck = control.type === "checkbox";
  const wrap = h("div", { class: `field${isCheck ? " field-check" : ""}`, "data-field": apiName },
    isCheck ? null : h("label", { for: id }, title),
    hint ? h("div", { class: "hint", id: hintId }, hint) : null,
    h("p", { class: "field-error", id: errorId, hidden: true }),
    control,
    isCheck ? h("label", { for: id }, title) : null);
  return wrap;
}

function todayMax(input) {
  input.max = todayIso();
  return input;
}

/** Date fields that name a day still to come (no "today at most" on them). */
const FUTURE_DATES = ["earliest_clinically_appropriate_date", "available_from", "next_action_due"];

/**
 * A date box whose typing is not a real date (31/02/2027): the browser
 * reports such a date as empty, and it would be left out without a word.
 * Returns the error to show at it, or null.
 */
function badDate(root) {
  for (const el of root.querySelectorAll("input[type=date]")) {
    if (el.closest("[hidden]") || !(el.validity && el.validity.badInput)) continue;
    const field = el.closest("[data-field]")?.dataset.field || el.name;
    return { message: "Enter a real date, for example 28/02/2027.", body: { error: { details: { field } } } };
  }
  return null;
}

/** The control for one data field of an event schema. */
function control(type, name, schema, required, value, idPrefix) {
  const id = `${idPrefix}-${name}`;
  if (type === "referral_received" && name === "trust") {
    const trusts = ownTrusts();
    if (trusts.length) {
      return h("select", { id, name, required: true },
        trusts.length > 1 ? h("option", { value: "" }, "Choose a trust") : null,
        trusts.map((t) => h("option", { value: t, selected: t === value }, t)));
    }
  }
  if (schema.enum && schema.type === "boolean") {
    return h("input", { type: "checkbox", id, name, value: "true", checked: value === true });
  }
  if (schema.enum) {
    return h("select", { id, name, required: !!required },
      h("option", { value: "" }, required ? "Choose…" : "Not recorded"),
      schema.enum.map((code) => h("option", { value: code, selected: code === value }, codeLabel(code))));
  }
  if (schema.type === "boolean") return h("input", { type: "checkbox", id, name, value: "true", checked: value === true });
  if (schema.format === "date") {
    const input = h("input", { type: "date", id, name, value: value || "", required: !!required });
    return FUTURE_DATES.includes(name) ? input : todayMax(input);
  }
  if (schema.type === "number" || schema.type === "integer") {
    return h("input", { type: "number", id, name, value: value ?? "", min: schema.minimum ?? null, step: "any", inputmode: "decimal", required: !!required, class: "short" });
  }
  if (schema.type === "object") return null;
  if ((schema.maxLength || 0) > 200) {
    return h("textarea", { id, name, rows: name === "text" ? 3 : 2, cols: 50, maxlength: schema.maxLength, required: !!required }, value || "");
  }
  return h("input", { type: "text", id, name, value: value ?? "", maxlength: schema.maxLength || null, required: !!required, autocomplete: "off",
    inputmode: name === "nhs_number" ? "numeric" : null, spellcheck: "false" });
}

/**
 * The fields of one event type. `apiPrefix` is where the API reports them
 * (`data` for a new event, `data.new_data` for a correction).
 */
function eventFields(schemas, type, values, apiPrefix, idPrefix) {
  const s = schemas.get(type);
  const out = [];
  for (const name of s.names) {
    const schema = s.fields[name];
    const required = s.required.includes(name);
    const input = control(type, name, schema, required, values ? values[name] : undefined, idPrefix);
    if (!input) continue;
    input.dataset.kind = schema.type || "string";
    const title = `${fieldLabel(name)}${required || input.type === "checkbox" ? "" : " (optional)"}`;
    let hint = null;
    if (UNITS[name]) hint = `In ${UNITS[name]}.`;
    if (name === "plan_id") hint = "Required for a subsequent treatment, for example adjuvant-chemo.";
    if (name === "earliest_clinically_appropriate_date") hint = "Subsequent treatments only: when the patient is fit to start it.";
    if (name === "nhs_number") hint = "10 digits. Checked as you type; the service decides.";
    const wrap = field(`${apiPrefix}.${name}`, title, input, hint);
    if (name === "nhs_number") {
      const check = h("p", { class: "hint live", id: `${input.id}-check`, "aria-live": "polite" });
      wrap.append(check);
      input.setAttribute("aria-describedby", `${input.id}-hint ${input.id}-check`);
      input.addEventListener("input", () => {
        const digits = input.value.replace(/\s/g, "");
        if (digits.length < 10) { check.textContent = ""; check.className = "hint live"; }
        else if (nhsNumberValid(digits)) { check.textContent = "Modulus 11 check passed."; check.className = "hint live valid"; }
        else { check.textContent = "This is not a valid NHS number: check the digits."; check.className = "hint live invalid"; }
      });
    }
    if (name === "screening_programme") wrap.dataset.when = "route=screening";
    out.push(wrap);
  }
  return out;
}

/** Reads the data of the fields under `root`, as the API wants it. */
function readFields(root) {
  const data = {};
  for (const el of root.querySelectorAll("input, select, textarea")) {
    if (!el.name || el.closest("[hidden]")) continue;
    if (el.type === "checkbox") { if (el.checked) data[el.name] = true; continue; }
    const v = el.value.trim();
    if (v === "") continue;
    data[el.name] = el.dataset.kind === "number" || el.dataset.kind === "integer" ? Number(v) : v;
  }
  return data;
}

/** Clears the errors of a form (summary and fields). */
function clearErrors(form) {
  form.querySelector(".error-summary")?.remove();
  for (const w of form.querySelectorAll(".field--error")) {
    w.classList.remove("field--error");
    const p = w.querySelector(".field-error");
    p.hidden = true;
    p.replaceChildren();
    const c = w.querySelector("input, select, textarea");
    c.removeAttribute("aria-invalid");
    c.setAttribute("aria-describedby", (c.getAttribute("aria-describedby") || "").split(" ").filter((x) => x && !x.endsWith("-error")).join(" "));
  }
}

/** The field an API error names (SPEC 4.3 `details.field`), if any. */
function errorField(err) {
  const e = err.body && err.body.error;
  if (!e) return null;
  if (e.details && e.details.field) return e.details.field;
  if (["occurred_in_future", "occurred_before_referral"].includes(e.code)) return "occurred_on";
  if (e.code === "pathway_exists") return "pathway_id";
  return null;
}

/** Finds the field wrapper for an API field name, trying shorter names too. */
function findField(form, name) {
  let n = name;
  while (n) {
    const w = form.querySelector(`[data-field="${CSS.escape(n)}"], [data-alias~="${CSS.escape(n)}"]`);
    if (w && !w.closest("[hidden]")) return w;
    n = n.includes(".") ? n.slice(0, n.lastIndexOf(".")) : "";
  }
  return null;
}

/**
 * Shows an error the NHS design system way: a summary at the top of the form
 * (announced), and for a field error the message above that field, with
 * focus moved to it. `extra` adds content to the summary.
 */
function showFormError(form, err, title, extra) {
  clearErrors(form);
  let message = err.message || String(err);
  const wrap = errorField(err) ? findField(form, errorField(err)) : null;
  if (wrap) {
    // The API names the field by its path (`data.nhs_number`); say what the
    // form calls it.
    const title = (wrap.querySelector("label")?.textContent || "").replace(/ \(optional\)$/, "");
    if (title) message = message.split(`\`${errorField(err)}\``).join(title);
  }
  // The API writes codes as `code`; a coordinator reads them plain.
  message = message.replace(/`([^`]*)`/g, "$1");
  const summary = h("div", { class: "error-summary", role: "alert", tabindex: "-1", "aria-labelledby": `${form.id}-problem` },
    h("h3", { id: `${form.id}-problem` }, title || "There is a problem"));
  if (wrap) {
    const c = wrap.querySelector("input, select, textarea");
    summary.append(h("ul", {}, h("li", {}, h("a", { href: `#${c.id}`, onclick: (e) => { e.preventDefault(); c.focus(); } }, message))));
    wrap.classList.add("field--error");
    const p = wrap.querySelector(".field-error");
    p.replaceChildren(h("span", { class: "visually-hidden" }, "Error: "), message);
    p.hidden = false;
    c.setAttribute("aria-invalid", "true");
    c.setAttribute("aria-describedby", `${(c.getAttribute("aria-describedby") || "")} ${p.id}`.trim());
    form.prepend(summary);
    c.focus();
  } else {
    summary.append(h("p", {}, message));
    if (extra) summary.append(extra);
    form.prepend(summary);
    summary.focus();
  }
}

async function postEvent(envelope) {
  return api("/v1/events", null, {
    method: "POST", headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(envelope),
  });
}

/**
 * Posts from a form; a version conflict lists what changed meanwhile and
 * lets the user record on top of it (the form keeps what was typed).
 */
async function submitEvent(form, ctx, envelope, done) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    envelope.expected_version = ctx.version;
    const out = await postEvent(envelope);
    await done(out.appended[out.appended.length - 1]);
  } catch (err) {
    if (err.status === 401) { renderSignIn(); return; }
    if (ctx.version === 0 && err.body && err.body.error && err.body.error.code === "version_conflict") {
      // A new pathway whose id is taken: nothing was recorded.
      showFormError(form, { message: "A pathway with this id exists already: nothing was recorded. Choose another id.",
        body: { error: { details: { field: "pathway_id" } } } });
    } else if (err.body && err.body.error && err.body.error.code === "version_conflict") {
      const current = err.body.error.details.current_version;
      let newer = [];
      try {
        const stored = await api(`/v1/pathways/${encodeURIComponent(ctx.id)}/events`);
        newer = stored.events.filter((ev) => ev.version > ctx.version);
      } catch (_) { /* the list is a courtesy */ }
      const seen = ctx.version;
      ctx.version = current;
      showFormError(form, { message: `Nothing was recorded. ${current - seen} event${current - seen === 1 ? " was" : "s were"} added since you opened it; check them below, then record again if your event is still right.` },
        "This pathway changed since you opened it",
        h("ul", { class: "newer", id: "conflict-events" }, newer.map((ev) => h("li", {}, `${ev.occurred_on} ${eventName(ev.type)} (by ${ev.actor})${describe(ev.data) ? ": " + describe(ev.data) : ""}`))));
    } else {
      showFormError(form, err);
    }
  } finally {
    button.disabled = false;
  }
}

/** The data and date every view now gives each event (after corrections). */
function effective(events) {
  const out = new Map();
  for (const ev of events) {
    if (ev.type === "event_corrected") {
      const target = out.get(ev.data.corrects);
      if (!target) continue;
      if (ev.data.new_occurred_on) target.occurred_on = ev.data.new_occurred_on;
      if (ev.data.new_data) target.data = ev.data.new_data;
    } else out.set(ev.event_id, { type: ev.type, occurred_on: ev.occurred_on, data: ev.data });
  }
  return out;
}

/**
 * The record / correct / void panel of a pathway page. `mode` is
 * {kind: "record"} or {kind: "correct"|"void", event}.
 */
async function openEventPanel(panel, ctx, mode) {
  const schemas = await loadSchemas();
  const form = h("form", { class: "event-form", id: "event-form", novalidate: true });
  const fields = h("div", { id: "event-fields" });
  const submit = h("button", { type: "submit", id: "event-submit" }, "Record");
  const close = () => { panel.replaceChildren(); panel.hidden = true; ctx.opener?.focus(); };
  let current = null;
  const eff = effective(ctx.events);
  const visible = ctx.events.filter((ev) => !AMENDMENTS.includes(ev.type) && !ev.voided_by);
  // Named so two of one kind on one day can be told apart (a transfer by
  // where it went, a treatment by its plan).
  const title = (ev) => {
    const now = eff.get(ev.event_id) || ev;
    const which = now.data?.to_trust ? ` to ${now.data.to_trust}` : now.data?.plan_id ? ` (${now.data.plan_id})` : "";
    return `${eventName(ev.type)}${which} of ${now.occurred_on}`;
  };

  const showType = (type) => {
    current = type;
    fields.replaceChildren();
    submit.hidden = false;
    clearErrors(form);
    if (!type) { submit.hidden = true; return; }
    if (type === "referral_received") {
      fields.append(h("p", { class: "hint" }, "A pathway has one referral. Correct it from the timeline below, or start a new pathway with New referral on the PTL page."));
      submit.hidden = true;
      return;
    }
    if (AMENDMENTS.includes(type)) {
      const pick = h("select", { id: "event-target", name: "target", required: true },
        h("option", { value: "" }, "Choose an event"),
        visible.filter((ev) => type === "event_corrected" || ev.type !== "referral_received").map((ev) => h("option", { value: ev.event_id }, title(ev))));
      pick.addEventListener("change", () => {
        const ev = ctx.events.find((x) => x.event_id === pick.value);
        if (ev) openEventPanel(panel, ctx, { kind: type === "event_corrected" ? "correct" : "void", event: ev });
      });
      fields.append(field("data.target", type === "event_corrected" ? "Event to correct" : "Event to void", pick));
      submit.hidden = true;
      return;
    }
    const date = h("input", { type: "date", id: "ev-occurred_on", name: "occurred_on", value: todayIso(), required: true, max: todayIso() });
    fields.append(field("occurred_on", "Date it happened", date));
    fields.append(...eventFields(schemas, type, null, "data", "ev"));
  };

  let heading;
  if (mode.kind === "record") {
    heading = h("h2", { id: "event-heading", tabindex: "-1" }, "Record an event");
    const groups = [
      ["Referral and appointments", ["referral_received", "consultant_upgraded", "fit_result_recorded", "triage_completed", "appointment_attended", "appointment_missed"]],
      ["Tests and diagnosis", ["diagnostic_requested", "diagnostic_performed", "diagnostic_reported", "mdt_discussed", "diagnosis_communicated", "fds_excluded"]],
      ["Treatment", ["decision_to_treat", "treatment_offer_declined", "treatment_started"]],
      ["Pathway", ["pathway_transferred", "tumour_site_changed", "pathway_closed", "tracking_note_added"]],
      ["Amend the record", ["event_corrected", "event_voided"]],
    ];
    const grouped = new Set(groups.flatMap(([, t]) => t));
    const others = [...schemas.keys()].filter((t) => !grouped.has(t));
    const select = h("select", { id: "event-type", name: "type", required: true },
      h("option", { value: "" }, "Choose an event"),
      groups.map(([g, types]) => h("optgroup", { label: g }, types.filter((t) => schemas.has(t)).map((t) => h("option", { value: t }, eventName(t))))),
      others.map((t) => h("option", { value: t }, eventName(t))));
    select.addEventListener("change", () => showType(select.value));
    form.append(field("type", "Event", select), fields);
    submit.hidden = true;
  } else if (mode.kind === "correct") {
    const ev = mode.event;
    const now = eff.get(ev.event_id);
    heading = h("h2", { id: "event-heading", tabindex: "-1" }, `Correct: ${title(ev)}`);
    current = ev.type;
    submit.textContent = "Save correction";
    const date = h("input", { type: "date", id: "ev-occurred_on", name: "new_occurred_on", value: now.occurred_on, required: true, max: todayIso() });
    const dateField = field("data.new_occurred_on", "Date it happened", date);
    dateField.dataset.alias = "occurred_on";
    fields.append(dateField, ...eventFields(schemas, ev.type, now.data, "data.new_data", "ev"));
    fields.append(field("data.reason", "Reason for the correction", h("textarea", { id: "ev-reason", name: "reason", required: true, maxlength: 500, rows: 2, cols: 50 }),
      "Required: say why, for the audit trail."));
    form.append(fields);
  } else {
    const ev = mode.event;
    heading = h("h2", { id: "event-heading", tabindex: "-1" }, `Void: ${title(ev)}`);
    current = "event_voided";
    submit.textContent = "Void this event";
    submit.className = "warning";
    fields.append(h("p", {}, "Every view will treat this event as never having happened. It stays in the log."),
      field("data.reason", "Reason for voiding", h("textarea", { id: "ev-reason", name: "reason", required: true, maxlength: 500, rows: 2, cols: 50 }),
        "Required: say why, for the audit trail."));
    form.append(fields);
  }
  form.append(h("div", { class: "actions" }, submit, h("button", { type: "button", class: "secondary", id: "event-cancel", onclick: close }, "Cancel")));

  // Showing the fields of a screening programme only for screening referrals.
  form.addEventListener("change", (e) => {
    if (e.target.name === "route") for (const w of form.querySelectorAll("[data-when='route=screening']")) w.hidden = e.target.value !== "screening";
  });

  const done = async (appended, what) => {
    pendingNotice = `${what} recorded (version ${appended.version}).`;
    await renderPathway(ctx.id, appended.position);
  };

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const bad = badDate(form);
    if (bad) return showFormError(form, bad);
    if (mode.kind === "record") {
      if (!current) return showFormError(form, { message: "Choose the event to record.", body: { error: { details: { field: "type" } } } });
      const f = new FormData(form);
      const data = readFields(fields);
      delete data.occurred_on;
      await submitEvent(form, ctx, { pathway_id: ctx.id, type: current, occurred_on: f.get("occurred_on"), data },
        (a) => done(a, `${eventName(current)} on ${f.get("occurred_on")}`));
    } else if (mode.kind === "correct") {
      const ev = mode.event;
      const before = eff.get(ev.event_id);
      const reason = form.querySelector("#ev-reason").value.trim();
      if (!reason) return showFormError(form, { message: "Enter the reason for the correction.", body: { error: { details: { field: "data.reason" } } } });
      const newDate = form.querySelector("#ev-occurred_on").value;
      const newData = readFields(fields);
      delete newData.new_occurred_on;
      delete newData.reason;
      const data = { corrects: ev.event_id, reason };
      if (newDate !== before.occurred_on) data.new_occurred_on = newDate;
      if (JSON.stringify(sortKeys(newData)) !== JSON.stringify(sortKeys(before.data))) data.new_data = newData;
      if (!data.new_occurred_on && !data.new_data) {
        return showFormError(form, { message: "Change the date or a detail to correct this event, or cancel.", body: { error: { details: { field: "data.new_occurred_on" } } } });
      }
      await submitEvent(form, ctx, { pathway_id: ctx.id, type: "event_corrected", occurred_on: todayIso(), data },
        (a) => done(a, `Correction of ${title(ev)}`));
    } else {
      const ev = mode.event;
      const reason = form.querySelector("#ev-reason").value.trim();
      if (!reason) return showFormError(form, { message: "Enter the reason for voiding this event.", body: { error: { details: { field: "data.reason" } } } });
      // A confirmation naming the event and its date.
      const confirm = h("div", { class: "confirm", role: "alertdialog", "aria-labelledby": "void-confirm-text", id: "void-confirm", tabindex: "-1" },
        h("p", { id: "void-confirm-text" }, h("strong", {}, `Void ${title(ev)}?`), " Every view will treat it as never having happened."),
        h("div", { class: "actions" },
          h("button", { type: "button", class: "warning", id: "void-confirm-yes", onclick: async () => {
            confirm.remove();
            await submitEvent(form, ctx, { pathway_id: ctx.id, type: "event_voided", occurred_on: todayIso(), data: { voids: ev.event_id, reason } },
              (a) => done(a, `Void of ${title(ev)}`));
          } }, "Yes, void it"),
          h("button", { type: "button", class: "secondary", id: "void-confirm-no", onclick: () => { confirm.remove(); submit.focus(); } }, "No, keep it")));
      form.querySelector("#void-confirm")?.remove();
      form.append(confirm);
      confirm.focus();
    }
  });

  panel.replaceChildren(heading, form);
  panel.hidden = false;
  if (mode.kind === "record") form.querySelector("#event-type").focus();
  else heading.focus();
}

/**
 * The stored history as the view's moment saw it (SPEC 4: `known_at` hides
 * what was recorded after it, amendments included; `as_of` ignores events
 * dated after it, by their date as amended then).
 */
function historyAt(events, at) {
  const known = at.known_at ? Date.parse(at.known_at) : Infinity;
  const seen = (e) => Date.parse(e.recorded_at) <= known;
  const recorded = events.filter(seen).map((ev) => Object.assign({}, ev, {
    corrected_by: ev.corrected_by ? ev.corrected_by.filter(seen) : ev.corrected_by,
    voided_by: ev.voided_by && seen(ev.voided_by) ? ev.voided_by : null,
  }));
  if (!at.as_of) return recorded;
  const eff = effective(recorded);
  return recorded.filter((ev) => AMENDMENTS.includes(ev.type) || (eff.get(ev.event_id) || ev).occurred_on <= at.as_of);
}

function sortKeys(o) {
  return Object.fromEntries(Object.entries(o || {}).sort(([a], [b]) => a.localeCompare(b)));
}

/** A notice for the next render of a page (after a write). */
let pendingNotice = null;

function clocksTable(view) {
  const clockRows = ["fds", "d31", "d62"].map((name) => {
    const c = view.clocks[name];
    return h("tr", { "data-clock": name, "data-status": c.status },
      h("th", { scope: "row" }, { fds: "FDS (28 days)", d31: "31-day", d62: "62-day" }[name]),
      h("td", {}, label(c.status)), h("td", {}, c.start || "–"), h("td", {}, c.stop || "–"),
      h("td", {}, c.stop_reason ? label(c.stop_reason) : "–"), h("td", { class: "num" }, c.adjustment_days ?? "–"),
      h("td", { class: "num" }, c.days ?? "–"), h("td", { class: "num" }, c.target_days ?? "–"), h("td", {}, c.target_date || "–"),
      h("td", {}, c.allocation ? c.allocation.map((a) => `${a.trust} ${a.share} ${a.breached ? "breach" : "met"}`).join("; ") : "–"));
  });
  return table("Clocks", ["Clock", "Status", "Start", "Stop", "Stop reason", { label: "Adjustment", num: true },
    { label: "Days", num: true }, { label: "Target", num: true }, "Target date", "Allocation"], clockRows);
}

function milestonesTable(view) {
  return view.milestones.length ? table(null, ["Milestone", { label: "Due day", num: true }, "Due date", "Met on", "Status"],
    view.milestones.map((ms) => h("tr", {}, h("td", {}, label(ms.name)), h("td", { class: "num" }, ms.due_day), h("td", {}, ms.due_date),
      h("td", {}, ms.met_on || "–"), h("td", { class: ms.status === "overdue" || ms.status === "missed" ? "flag" : null }, label(ms.status)))))
    : h("p", { class: "muted" }, "This route has no milestones.");
}

/**
 * The data of the pathway's last tracking note as it stands (corrections
 * applied, voided ones passed over): its next action, owner and escalation
 * are the pathway's until the next note.
 */
function lastNote(events) {
  const eff = effective(events);
  const notes = events.filter((ev) => ev.type === "tracking_note_added" && !ev.voided_by);
  const last = notes[notes.length - 1];
  return last ? (eff.get(last.event_id) || last).data : {};
}

/**
 * The note form (coordinators and managers), on the pathway page and in
 * meetings. A note sets the pathway's next action, owner and escalation
 * (the last note's hold), so the form starts with the current ones: a
 * note that should keep them keeps them, and clearing one is a choice.
 */
function noteForm(ctx, idPrefix, done) {
  const now = lastNote(ctx.events || []);
  const form = h("form", { class: "event-form", id: `${idPrefix}-form`, novalidate: true },
    field("data.text", "Note", h("textarea", { name: "text", id: `${idPrefix}-text`, required: true, maxlength: 2000, rows: 2, cols: 50 })),
    h("div", { class: "row" },
      field("data.next_action", "Next action (optional)", h("input", { type: "text", name: "next_action", id: `${idPrefix}-next-action`, maxlength: 200, size: 30, value: now.next_action || "" })),
      field("data.next_action_due", "Next action due (optional)", h("input", { type: "date", name: "next_action_due", id: `${idPrefix}-due`, value: now.next_action_due || "" })),
      field("data.owner", "Owner (optional)", h("input", { type: "text", name: "owner", id: `${idPrefix}-owner`, maxlength: 100, size: 20, value: now.owner || "" })),
      field("occurred_on", "Date", todayMax(h("input", { type: "date", name: "occurred_on", value: todayIso(), id: `${idPrefix}-date`, required: true })))),
    field("data.escalated", "Escalate", h("input", { type: "checkbox", name: "escalated", value: "true", id: `${idPrefix}-escalated`, checked: now.escalated === true })),
    h("p", { class: "hint", id: `${idPrefix}-carry` }, "Next action, due date, owner and escalation start as the last note left them; the new note replaces them, so clear one to remove it."),
    h("div", { class: "actions" }, h("button", { type: "submit", id: `${idPrefix}-submit` }, "Add note")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const bad = badDate(form);
    if (bad) return showFormError(form, bad);
    const f = new FormData(form);
    const data = {};
    for (const k of ["text", "next_action", "next_action_due", "owner"]) if (String(f.get(k) || "").trim()) data[k] = String(f.get(k)).trim();
    if (f.get("escalated")) data.escalated = true;
    if (!data.text) return showFormError(form, { message: "Enter the note.", body: { error: { details: { field: "data.text" } } } });
    await submitEvent(form, ctx, { pathway_id: ctx.id, type: "tracking_note_added", occurred_on: f.get("occurred_on"), data }, (a) => done(a, data));
  });
  return form;
}

async function renderPathway(id, minPosition) {
  await loadMeta();
  const at = when();
  const extra = minPosition ? { min_position: minPosition } : {};
  // Everything the page shows is fetched first, together, so the page is
  // drawn whole in one step: never a heading without its forms.
  const [view, stored, risk] = await Promise.all([
    api(`/v1/pathways/${encodeURIComponent(id)}`, Object.assign({}, at, extra)),
    api(`/v1/pathways/${encodeURIComponent(id)}/events`, extra),
    riskSection(id, at), // forecast.js; advisory, never throws
  ]);
  const main = $main();
  main.replaceChildren();
  main.append(h("p", {}, h("a", { href: "/", id: "back-to-ptl", onclick: (e) => { e.preventDefault(); history_back(); } }, "← Back to the PTL")));
  main.append(h("h1", {}, `Pathway ${view.pathway_id}`));
  if (pendingNotice) { main.append(h("div", { class: "ok", role: "status", id: "notice" }, pendingNotice)); pendingNotice = null; }
  main.append(h("dl", { class: "facts" },
    h("dt", {}, "NHS number"), h("dd", {}, view.nhs_number || ""),
    h("dt", {}, "Trust"), h("dd", {}, view.trust, view.transferred ? ` (referred at ${view.referring_trust})` : ""),
    h("dt", {}, "Tumour site"), h("dd", {}, label(view.tumour_site)),
    h("dt", {}, "Route"), h("dd", {}, label(view.route)),
    h("dt", {}, "Referred"), h("dd", {}, view.referred_on),
    h("dt", {}, "Status"), h("dd", { id: "pathway-status" }, label(view.status), view.on_ptl ? " (on the PTL)" : " (off the PTL)"),
    h("dt", {}, "FIT band"), h("dd", {}, label(view.fit_band)),
    ...(view.fds_exclusion ? [h("dt", {}, "Excluded from the FDS"),
      h("dd", { id: "fds-exclusion" }, `${view.fds_exclusion.date}, ${label(view.fds_exclusion.reason)}`)] : []),
    h("dt", {}, "Next breach"), h("dd", {}, view.next_breach ? `${view.next_breach.date} (${view.next_breach.clock}${view.next_breach.plan_id ? ` ${view.next_breach.plan_id}` : ""})` : "–"),
    h("dt", {}, "As of"), h("dd", {}, view.as_of, at.known_at ? `, as known at ${at.known_at}` : "")));

  // Writes act on the history shown: its last version is the expected one.
  const version = stored.events.length ? stored.events[stored.events.length - 1].version : view.version;
  const ctx = { id, version, events: stored.events, opener: null };
  const live = !at.as_of && !at.known_at;
  const panel = h("section", { class: "panel form-panel", id: "event-panel", hidden: true, "aria-labelledby": "event-heading" });
  if (live && canRecord(view.trust)) {
    const open = h("button", { type: "button", id: "record-event", "aria-controls": "event-panel", onclick: () => { ctx.opener = open; openEventPanel(panel, ctx, { kind: "record" }); } }, "Record an event");
    main.append(h("div", { class: "actions" }, open), panel);
  }

  main.append(clocksTable(view));
  if (risk) main.append(risk);

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
  main.append(milestonesTable(view));
  if (view.transfers && view.transfers.length) {
    main.append(h("h2", {}, "Transfers"), h("ul", {}, view.transfers.map((t) => h("li", {}, `${t.occurred_on}: ${t.from_trust} → ${t.to_trust}`))),
      view.handover_date ? h("p", {}, `Day-38 handover date: ${view.handover_date}`) : null);
  }

  if (live && canNote(view.trust)) {
    main.append(h("h2", { id: "note-heading" }, "Add a tracking note"));
    main.append(noteForm(ctx, "note", async (a) => {
      pendingNotice = `Note added (version ${a.version}).`;
      await renderPathway(id, a.position);
    }));
  }

  main.append(h("h2", {}, "Timeline"));
  const shown = historyAt(stored.events, at);
  if (!live) {
    main.append(h("p", { class: "hint", id: "timeline-when" },
      at.known_at ? `As known at ${at.known_at}: events and amendments recorded later are not shown.` : "",
      at.as_of ? ` Events dated after ${at.as_of} are not shown.` : ""));
  }
  const eff = effective(shown);
  const byId = new Map(shown.map((ev) => [ev.event_id, ev]));
  const writer = live && canRecord(view.trust);
  main.append(h("ol", { class: "timeline", reversed: true }, shown.slice().reverse().map((ev) => {
    const amended = ev.voided_by || (ev.corrected_by && ev.corrected_by.length);
    const now = eff.get(ev.event_id);
    let what;
    if (AMENDMENTS.includes(ev.type)) {
      const target = byId.get(ev.data.corrects || ev.data.voids);
      what = h("div", { class: "what" }, h("strong", {}, `${ev.occurred_on} ${eventName(ev.type)}`), " ",
        target ? `${eventName(target.type)} of ${target.occurred_on}` : "", `: ${ev.data.reason}`);
    } else {
      what = h("div", { class: amended ? "what amended" : "what" }, h("strong", {}, `${ev.occurred_on} ${eventName(ev.type)}`), " ", describe(ev.data));
    }
    const name = `${eventName(ev.type)} of ${now ? now.occurred_on : ev.occurred_on}`;
    return h("li", { class: ev.voided_by ? "voided" : ev.corrected_by ? "corrected" : null, "data-event": ev.event_id, "data-type": ev.type },
      amended ? h("span", { class: "visually-hidden" }, ev.voided_by ? "Voided: " : "Corrected, originally: ") : null,
      what,
      !ev.voided_by && ev.corrected_by && now ? h("div", { class: "now" }, h("strong", {}, `Now: ${now.occurred_on} ${eventName(ev.type)}`), " ", describe(now.data)) : null,
      h("div", { class: "meta" }, `recorded ${ev.recorded_at} by ${ev.actor}, version ${ev.version}, position ${ev.position}`),
      (ev.corrected_by || []).map((c) => h("div", { class: "meta amendment" }, `Corrected by ${c.actor} at ${c.recorded_at}: ${c.reason}`)),
      ev.voided_by ? h("div", { class: "meta flag amendment" }, `Voided by ${ev.voided_by.actor} at ${ev.voided_by.recorded_at}: ${ev.voided_by.reason}`) : null,
      writer && !ev.voided_by && !AMENDMENTS.includes(ev.type) ? h("div", { class: "actions small" },
        h("button", { type: "button", class: "secondary", "data-action": "correct", "aria-label": `Correct ${name}`,
          onclick: (e) => { ctx.opener = e.currentTarget; openEventPanel(panel, ctx, { kind: "correct", event: ev }); panel.scrollIntoView(); } }, "Correct"),
        ev.type !== "referral_received" ? h("button", { type: "button", class: "secondary", "data-action": "void", "aria-label": `Void ${name}`,
          onclick: (e) => { ctx.opener = e.currentTarget; openEventPanel(panel, ctx, { kind: "void", event: ev }); panel.scrollIntoView(); } }, "Void") : null) : null);
  })));
  status(`Pathway version ${view.version}.`);
}

// ------------------------------------------------------ new referral (PTL)

/** A pathway id to suggest: trust, date and a short random part (editable). */
function suggestPathwayId(trust) {
  const n = new Uint16Array(1);
  crypto.getRandomValues(n);
  return `${trust || "NEW"}-${todayIso().replace(/-/g, "")}-${String(n[0] % 10000).padStart(4, "0")}`;
}

async function openReferralPanel(panel, opener) {
  const schemas = await loadSchemas();
  const fields = h("div", { id: "referral-fields" });
  const pathwayId = h("input", { type: "text", id: "ref-pathway_id", name: "pathway_id", required: true, maxlength: 64, autocomplete: "off", spellcheck: "false" });
  const date = todayMax(h("input", { type: "date", id: "ref-occurred_on", name: "occurred_on", value: todayIso(), required: true }));
  fields.append(...eventFields(schemas, "referral_received", null, "data", "ref"));
  const form = h("form", { class: "event-form", id: "referral-form", novalidate: true },
    field("pathway_id", "Pathway id", pathwayId, "Suggested from the trust and today's date; use the trust's own referral id if it has one."),
    field("occurred_on", "Date the referral was received", date),
    fields,
    h("div", { class: "actions" }, h("button", { type: "submit", id: "referral-submit" }, "Record the referral"),
      h("button", { type: "button", class: "secondary", id: "referral-cancel", onclick: () => { panel.hidden = true; panel.replaceChildren(); opener.focus(); } }, "Cancel")));
  const trust = form.querySelector("#ref-trust");
  pathwayId.value = suggestPathwayId(trust && trust.value);
  pathwayId.addEventListener("input", () => { pathwayId.dataset.edited = "true"; });
  trust?.addEventListener("change", () => { if (!pathwayId.dataset.edited) pathwayId.value = suggestPathwayId(trust.value); });
  for (const w of form.querySelectorAll("[data-when='route=screening']")) w.hidden = true;
  form.addEventListener("change", (e) => {
    if (e.target.name === "route") for (const w of form.querySelectorAll("[data-when='route=screening']")) w.hidden = e.target.value !== "screening";
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const bad = badDate(form);
    if (bad) return showFormError(form, bad);
    const id = pathwayId.value.trim();
    const ctx = { id, version: 0 };
    const data = readFields(fields);
    if (data.nhs_number) data.nhs_number = data.nhs_number.replace(/\s/g, "");
    await submitEvent(form, ctx, { pathway_id: id, type: "referral_received", occurred_on: date.value, data }, async (a) => {
      pendingNotice = `Referral recorded: pathway ${id} opened.`;
      history.pushState(null, "", `/pathways/${encodeURIComponent(id)}`);
      setWhenForm();
      await renderPathway(id, a.position);
      document.body.dataset.ready = "true";
    });
  });
  panel.replaceChildren(h("h2", { id: "referral-heading", tabindex: "-1" }, "New referral"), form);
  panel.hidden = false;
  panel.querySelector("#ref-nhs_number").focus();
}

// ------------------------------------------------------------ PTL meeting

const MEETING_KEY = "openptl-meeting";

function meetingKey() {
  const q = query();
  q.delete("meeting");
  q.delete("cursor");
  return q.toString();
}

function loadMeeting() {
  try { return JSON.parse(sessionStorage.getItem(MEETING_KEY)); } catch (_) { return null; }
}

function saveMeeting(state) {
  sessionStorage.setItem(MEETING_KEY, JSON.stringify(state));
}

/** Steps through the pathways of a worklist, one at a time. */
async function renderMeeting() {
  await loadMeta();
  let state = loadMeeting();
  if (!state || state.key !== meetingKey()) {
    const params = ptlParams();
    delete params.cursor;
    const page = await api("/v1/ptl", Object.assign({ limit: 1000 }, params));
    state = { key: meetingKey(), ids: page.rows.map((r) => r.pathway_id), index: 0, changes: {}, started: new Date().toISOString() };
    saveMeeting(state);
  }
  if (state.index >= state.ids.length) return renderMeetingSummary(state);
  const id = state.ids[state.index];
  state.reached = Math.max(state.reached || 0, state.index + 1);
  saveMeeting(state);
  const main = $main();
  const [view, stored] = await Promise.all([
    api(`/v1/pathways/${encodeURIComponent(id)}`, Object.assign({}, when(), state.position ? { min_position: state.position } : {})),
    api(`/v1/pathways/${encodeURIComponent(id)}/events`, state.position ? { min_position: state.position } : {}),
  ]);
  const step = (delta) => {
    state.index = Math.max(0, Math.min(state.ids.length, state.index + delta));
    saveMeeting(state);
    renderMeeting().then(() => (document.getElementById("meeting-pathway") || document.getElementById("summary-heading"))?.focus()).catch((err) => $main().replaceChildren(showError(err)));
  };
  const finish = () => { state.index = state.ids.length; saveMeeting(state); renderMeeting().then(() => document.getElementById("summary-heading")?.focus()); };
  const worklist = WORKLISTS.find(([c]) => c === (query().get("worklist") || ""));
  main.replaceChildren(
    h("p", {}, h("a", { href: "/", id: "leave-meeting", onclick: (e) => { e.preventDefault(); sessionStorage.removeItem(MEETING_KEY); const p = ptlParams(); delete p.cursor; go("/", p); } }, "← Leave the meeting")),
    h("h1", {}, `PTL meeting: ${worklist ? worklist[1] : "this worklist"}`,
      Object.entries(ptlParams()).filter(([k]) => !["worklist", "sort", "cursor", "as_of", "known_at"].includes(k)).map(([k, v]) => `, ${label(k)} ${v}`).join("")),
    h("nav", { class: "meeting-nav", "aria-label": "Meeting" },
      h("button", { type: "button", class: "secondary", id: "meeting-prev", disabled: state.index === 0, onclick: () => step(-1) }, "← Previous"),
      h("p", { id: "meeting-position", "aria-live": "polite" }, `${state.index + 1} of ${state.ids.length}`),
      h("button", { type: "button", id: "meeting-next", onclick: () => step(1) }, state.index + 1 === state.ids.length ? "Finish: summary →" : "Next →"),
      h("button", { type: "button", class: "secondary", id: "meeting-finish", onclick: finish }, "End meeting"),
      h("p", { class: "hint", id: "meeting-keys" }, "Keys: ", h("kbd", {}, "N"), " next, ", h("kbd", {}, "P"), " previous, ", h("kbd", {}, "E"), " end (outside a text box).")));
  const done = state.changes[id] || [];
  const notes = stored.events.filter((ev) => ev.type === "tracking_note_added" && !ev.voided_by).slice(-3).reverse();
  const version = stored.events.length ? stored.events[stored.events.length - 1].version : view.version;
  const ctx = { id, version, events: stored.events };
  const section = h("section", { class: "panel meeting", "aria-labelledby": "meeting-pathway" },
    h("h2", { id: "meeting-pathway", tabindex: "-1" }, `Pathway `, h("a", { href: `/pathways/${encodeURIComponent(id)}` }, id)),
    h("dl", { class: "facts" },
      h("dt", {}, "NHS number"), h("dd", {}, view.nhs_number || ""),
      h("dt", {}, "Trust"), h("dd", {}, view.trust),
      h("dt", {}, "Tumour site"), h("dd", {}, label(view.tumour_site)),
      h("dt", {}, "Route"), h("dd", {}, label(view.route)),
      h("dt", {}, "Referred"), h("dd", {}, view.referred_on),
      h("dt", {}, "Next breach"), h("dd", {}, view.next_breach ? `${view.next_breach.date} (${view.next_breach.clock})` : "–")),
    clocksTable(view),
    h("h3", {}, "Milestones"), milestonesTable(view),
    h("h3", {}, "Last notes"),
    notes.length ? h("ul", { class: "notes", id: "meeting-notes" }, notes.map((n) => h("li", {}, h("strong", {}, n.occurred_on), ` ${n.data.text}`,
      n.data.next_action ? ` Next action: ${n.data.next_action}${n.data.next_action_due ? ` by ${n.data.next_action_due}` : ""}.` : "",
      n.data.owner ? ` Owner: ${n.data.owner}.` : "", n.data.escalated ? " Escalated." : "", h("span", { class: "muted" }, ` (${n.actor})`))))
      : h("p", { class: "muted", id: "meeting-notes" }, "No notes yet."),
    done.length ? h("div", { class: "ok", role: "status", id: "meeting-saved" }, `Saved in this meeting: ${done.map((d) => d.text).join("; ")}`) : null);
  if (canNote(view.trust) && !when().as_of && !when().known_at) {
    section.append(h("h3", {}, "Note, next action, owner"), noteForm(ctx, "meeting-note", async (a, data) => {
      state.changes[id] = (state.changes[id] || []).concat([data]);
      state.position = a.position;
      saveMeeting(state);
      await renderMeeting();
      document.getElementById("meeting-next")?.focus();
    }));
  }
  main.append(section);
  status(`PTL meeting: pathway ${state.index + 1} of ${state.ids.length}.`);
}

function renderMeetingSummary(state) {
  const main = $main();
  const changed = state.ids.filter((id) => (state.changes[id] || []).length);
  main.replaceChildren(
    h("h1", { id: "summary-heading", tabindex: "-1" }, "PTL meeting summary"),
    h("p", { id: "meeting-summary-count" }, `${state.reached || 0} of ${state.ids.length} pathways reviewed; ${changed.length} changed in the meeting.`),
    changed.length ? table("Changed in the meeting", ["Pathway", "Note", "Next action", "Due", "Owner", "Escalated"],
      changed.flatMap((id) => state.changes[id].map((d) => h("tr", { "data-pathway": id },
        h("td", {}, h("a", { href: `/pathways/${encodeURIComponent(id)}` }, id)), h("td", {}, d.text), h("td", {}, d.next_action || ""),
        h("td", {}, d.next_action_due || ""), h("td", {}, d.owner || ""), h("td", {}, d.escalated ? "Yes" : "")))))
      : h("p", { class: "muted" }, "Nothing was changed."),
    h("div", { class: "actions" },
      state.ids.length ? h("button", { type: "button", class: "secondary", id: "meeting-back", onclick: () => { state.index = state.ids.length - 1; saveMeeting(state); renderMeeting(); } }, "← Back to the last pathway") : null,
      h("button", { type: "button", id: "meeting-close", onclick: () => { sessionStorage.removeItem(MEETING_KEY); const p = ptlParams(); delete p.cursor; go("/", p); } }, "Close the meeting")));
  status("PTL meeting finished.");
}

/** Escape closes an open form panel (as its Cancel button does). */
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape") return;
  const panel = e.target.closest && e.target.closest(".form-panel:not([hidden])");
  const cancel = panel && panel.querySelector("#event-cancel, #referral-cancel");
  if (cancel) { e.preventDefault(); cancel.click(); }
});

/** Keyboard shortcuts of the meeting (not while typing). */
document.addEventListener("keydown", (e) => {
  if (!query().get("meeting") || e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
  const button = { n: "meeting-next", p: "meeting-prev", e: "meeting-finish" }[e.key.toLowerCase()];
  const el = button && document.getElementById(button);
  if (el && !el.disabled) { e.preventDefault(); el.click(); }
});

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
  // The target's label sits in a right margin of its own, level with its
  // line, so it never covers the last bar's value.
  const w = 420, hgt = 150, pad = 28, right = 70, bw = (w - pad - right) / points.length;
  const y = (v) => hgt - pad - (v / 100) * (hgt - pad * 2);
  const el = svg("svg", { class: "chart", viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, role: "img",
    "aria-label": `${title}: ${points.map((p) => `${p.label} ${p.value === null ? "no data" : p.value + "%"}`).join(", ")}` });
  el.append(svg("line", { x1: pad, x2: w - right, y1: y(0), y2: y(0), stroke: "#4c6272" }));
  points.forEach((p, i) => {
    const v = p.value || 0;
    el.append(svg("rect", { x: pad + i * bw + 4, y: y(v), width: bw - 8, height: y(0) - y(v), fill: p.value !== null && p.value >= target ? "#007f3b" : "#d5281b" }));
    el.append(svg("text", { x: pad + i * bw + bw / 2, y: hgt - 8, "text-anchor": "middle" }, p.label.slice(2)));
    if (p.value !== null) el.append(svg("text", { x: pad + i * bw + bw / 2, y: y(v) - 3, "text-anchor": "middle" }, `${Math.round(p.value)}`));
  });
  el.append(svg("line", { x1: pad, x2: w - right, y1: y(target), y2: y(target), stroke: "#212b32", "stroke-dasharray": "4 3" }));
  el.append(svg("text", { x: w - right + 4, y: y(target) + 4, "text-anchor": "start" }, `target ${target}%`));
  return el;
}

async function renderStandards() {
  const at = when();
  const q = query();
  const today = at.as_of || todayIso();
  const period = q.get("period") || today.slice(0, 7);
  const trust = q.get("trust") || "";
  const m = await loadMeta();
  const base = Object.assign({}, at, trust ? { trust } : {});
  const clocks = [["fds", "Faster Diagnosis Standard (28 days)"], ["d31", "31-day (every treatment, from decision or ECAD)"], ["d62", "62-day (referral to treatment)"]];
  const trend = months(period, 6);
  const reports = await Promise.all(clocks.map(([c]) => api(`/v1/standards/${c}`, Object.assign({ period }, base))));
  const trends = await Promise.all(clocks.map(([c]) => Promise.all(trend.map((p) => api(`/v1/standards/${c}`, Object.assign({ period: p }, base))))));
  // The month-end projection against target (forecast.js), for this month and later ones.
  const projecting = period >= (at.as_of || todayIso()).slice(0, 7);
  const projections = await Promise.all(clocks.map(([c], i) => projecting
    ? projectionLine(c, period, base, reports[i].thresholds.operational ?? reports[i].thresholds.standard) : null));
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
    // Every count links to the clocks it counts (clocks.js).
    const scope = trust ? { trust } : {};
    const count = (n, filters) => clocksLink(n, c, period, Object.assign({}, scope, filters));
    const panel = h("section", { class: "panel", "aria-labelledby": `h-${c}`, id: `standard-${c}` },
      h("h2", { id: `h-${c}` }, title),
      h("p", {}, h("strong", { class: "big" }, pct(r.percent)), ` within ${r.target_days} days in ${r.period}: `, count(r.within_target, { outcome: "within_target" }), " of ", count(r.total, {}),
        "; breached ", count(r.breached, { outcome: "breached" }), ". ",
        `National standard ${r.thresholds.standard}%`, r.thresholds.operational ? `, operational target ${r.thresholds.operational}%` : "", "."),
      projections[i],
      chart(`${title}, last six months`, trends[i].map((x) => ({ label: x.period, value: x.percent })), target),
      table("By trust", ["Trust", { label: "Stopped", num: true }, { label: "Within", num: true }, { label: "Breached", num: true }, { label: "%", num: true }, "", c === "fds" ? { label: "Excluded", num: true } : null].filter(Boolean),
        r.by_trust.map((t) => h("tr", { "data-trust": t.trust }, h("td", {}, t.trust), h("td", { class: "num" }, count(t.total, { trust: t.trust })),
          h("td", { class: "num" }, count(t.within_target, { trust: t.trust, outcome: "within_target" })),
          h("td", { class: "num" }, count(t.breached, { trust: t.trust, outcome: "breached" })),
          h("td", { class: "num" }, pct(t.percent)), h("td", {}, bar(t.percent, target)),
          c === "fds" ? h("td", { class: "num" }, count(t.excluded ?? 0, { trust: t.trust, outcome: "excluded" })) : null))),
      table("By tumour site", ["Tumour site", { label: "Stopped", num: true }, { label: "Breached", num: true }, { label: "%", num: true }, ""],
        r.by_tumour_site.map((t) => h("tr", {}, h("td", {}, label(t.tumour_site)), h("td", { class: "num" }, count(t.total, { tumour_site: t.tumour_site })),
          h("td", { class: "num" }, count(t.breached, { tumour_site: t.tumour_site, outcome: "breached" })),
          h("td", { class: "num" }, pct(t.percent)), h("td", {}, bar(t.percent, target))))));
    if (r.by_treatment) {
      // The combined 31-day standard as the national statistics split it (SPEC 4.4).
      const halves = [["first_definitive", "First definitive treatment"], ["subsequent", "Subsequent treatment"]];
      panel.append(table("First definitive and subsequent treatments", ["Treatment", { label: "Treated", num: true }, { label: "Within", num: true }, { label: "%", num: true }, ""],
        halves.map(([k, t]) => h("tr", { "data-treatment": k }, h("td", {}, t), h("td", { class: "num" }, count(r.by_treatment[k].total, { treatment: k })),
          h("td", { class: "num" }, count(r.by_treatment[k].within_target, { treatment: k, outcome: "within_target" })), h("td", { class: "num" }, pct(r.by_treatment[k].percent)), h("td", {}, bar(r.by_treatment[k].percent, target))))));
      const groups = [["surgery", "Surgery"], ["anticancer_drug", "Anti-cancer drug"], ["radiotherapy", "Radiotherapy"], ["other", "Other"]];
      panel.append(table("By modality", ["Modality", { label: "First %", num: true }, { label: "Subsequent %", num: true }, { label: "Treated", num: true }, { label: "%", num: true }, ""],
        groups.map(([k, t]) => h("tr", { "data-modality": k }, h("td", {}, t),
          h("td", { class: "num" }, r.by_treatment.first_definitive.by_modality[k].total ? count(pct(r.by_treatment.first_definitive.by_modality[k].percent), { treatment: "first_definitive", modality: k }) : "–"),
          h("td", { class: "num" }, r.by_treatment.subsequent.by_modality[k].total ? count(pct(r.by_treatment.subsequent.by_modality[k].percent), { treatment: "subsequent", modality: k }) : "–"),
          h("td", { class: "num" }, count(r.by_modality[k].total, { modality: k })), h("td", { class: "num" }, pct(r.by_modality[k].percent)), h("td", {}, bar(r.by_modality[k].percent, target))))));
    }
    if (r.excluded_by_reason) {
      // Exclusions are counted apart and audited by reason (SPEC 2.2).
      const reasons = [["patient_choice", "Patient choice"], ["clinical_reason", "Clinical reason"], ["other", "Other"]];
      panel.append(table("Excluded from the standard", ["Reason", { label: "Excluded", num: true }],
        reasons.map(([k, t]) => h("tr", { "data-exclusion-reason": k }, h("td", {}, t),
          h("td", { class: "num" }, count(r.excluded_by_reason[k], { exclusion_reason: k }))))));
    }
    if (r.by_outcome) {
      panel.append(table("Diagnosed and ruled out", ["Outcome", { label: "Stopped", num: true }, { label: "%", num: true }, ""],
        [["diagnosed", "Cancer diagnosed"], ["ruled_out", "Cancer ruled out"]].map(([k, t]) => h("tr", {}, h("td", {}, t),
          h("td", { class: "num" }, count(r.by_outcome[k].total, { fds_outcome: k })), h("td", { class: "num" }, pct(r.by_outcome[k].percent)), h("td", {}, bar(r.by_outcome[k].percent, target))))));
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
        // Every count links to its pathways (clocks.js).
        site.milestones.map((ms) => h("tr", { "data-milestone": ms.name }, h("td", {}, label(ms.name)), h("td", { class: "num" }, ms.due_day),
          ...["met", "missed", "overdue", "pending", "not_applicable"].map((st) => h("td", { class: "num" },
            pathwaysLink(ms[st], { tumour_site: site.tumour_site, milestone: ms.name, status: st, period: q.get("period"), trust: q.get("trust") }))),
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
    if (path === "/" && query().get("meeting")) await renderMeeting();
    else if (path === "/") await renderPtl();
    else if (path.startsWith("/pathways/")) await renderPathway(decodeURIComponent(path.slice("/pathways/".length)));
    else if (path === "/standards") await renderStandards();
    else if (path === "/standards/clocks") await renderClocks(); // clocks.js
    else if (path === "/milestones") await renderMilestones();
    else if (path === "/milestones/pathways") await renderMilestonePathways(); // clocks.js
    else if (path === "/fit") await renderFit(); // fit.js
    else if (path === "/risks") await renderRisks(); // forecast.js
    else if (path === "/returns") await renderReturns(); // returns.js
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
  if (location.pathname === "/" && !query().get("meeting") && !document.querySelector(".form-panel:not([hidden])") && !query().get("as_of") && !query().get("known_at") && shownPosition !== null) {
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

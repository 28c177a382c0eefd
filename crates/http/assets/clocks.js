// OpenPTL dashboard: the clocks behind a standards figure (decision 187).
// Loaded after app.js and drawn with its helpers (h, api, when, query,
// table, go, status, label, pct); app.js's router calls renderClocks() for
// /standards/clocks, and the standards page links its figures here with
// clocksLink(). Every element is built with textContent, as in app.js.
"use strict";

/** The filters of a list, in the order its heading names them. */
const CLOCK_FILTERS = ["trust", "tumour_site", "outcome", "fds_outcome", "treatment", "modality"];
const STANDARD_NAMES = { fds: "Faster Diagnosis Standard", d31: "31-day standard", d62: "62-day standard" };
const OUTCOME_NAMES = { breached: "breached", within_target: "within target", excluded: "excluded" };

/**
 * A figure of the standards page as a link to the clocks it counts:
 * `filters` names the split (trust, tumour_site, outcome, ...).
 */
function clocksLink(text, standard, period, filters) {
  const params = Object.assign({ standard, period }, filters);
  for (const k of Object.keys(params)) if (params[k] === undefined || params[k] === "") delete params[k];
  const q = new URLSearchParams(params);
  for (const [k, v] of Object.entries(when())) q.set(k, v);
  return h("a", { href: `/standards/clocks?${q}`, class: "figure-link", title: "List these clocks",
    onclick: (e) => { e.preventDefault(); go("/standards/clocks", params); } }, String(text));
}

/** The list's parameters for the API, from the page's URL. */
function clocksParams() {
  const q = query();
  const out = Object.assign({}, when());
  if (q.get("period")) out.period = q.get("period");
  for (const k of CLOCK_FILTERS) if (q.get(k)) out[k] = q.get(k);
  return out;
}

async function renderClocks() {
  const q = query();
  const standard = q.get("standard") || "fds";
  const params = clocksParams();
  const list = await api(`/v1/standards/${encodeURIComponent(standard)}/clocks`, params);
  const main = $main();
  main.replaceChildren();
  const what = CLOCK_FILTERS.filter((k) => params[k]).map((k) => k === "outcome" ? OUTCOME_NAMES[params[k]] || params[k] : label(params[k]));
  main.append(h("h1", {}, `${STANDARD_NAMES[standard] || standard}: clocks counted in ${list.period}`));
  main.append(h("p", { id: "clocks-summary" },
    `${list.total} ${list.total === 1 ? "clock" : "clocks"}${what.length ? ` (${what.join(", ")})` : ""}`,
    list.share !== list.total ? `, counting ${list.share} after transfers share them between trusts` : "", ". ",
    h("a", { href: "#", onclick: (e) => { e.preventDefault(); const p = {}; for (const k of ["period", "trust"]) if (params[k]) p[k] = params[k]; go("/standards", p); } }, "Back to the standards")));
  const csv = new URLSearchParams(Object.assign({}, params, { format: "csv" }));
  main.append(h("div", { class: "actions" },
    h("a", { href: `/v1/standards/${encodeURIComponent(standard)}/clocks?${csv}`, id: "clocks-csv", download: `${standard}-${list.period}-clocks.csv` }, "Export this list as CSV")));
  const extra = standard === "fds" ? ["Told"] : standard === "d31" ? ["Treatment", "Modality", "Plan"] : [];
  const headers = ["Pathway", "NHS number", "Trust", "Tumour site", "Route", "Start", "Stop", { label: "Days", num: true },
    { label: "Target", num: true }, "Outcome", { label: "Share", num: true }, ...extra];
  const rows = list.rows.map((r) => h("tr", { "data-pathway": r.pathway_id, "data-outcome": r.outcome },
    h("td", { class: "nowrap" }, h("a", { href: `/pathways/${encodeURIComponent(r.pathway_id)}`, onclick: (e) => { e.preventDefault(); go(`/pathways/${encodeURIComponent(r.pathway_id)}`); } }, r.pathway_id)),
    h("td", { class: "nowrap" }, r.nhs_number), h("td", {}, r.trust), h("td", {}, label(r.tumour_site)), h("td", {}, label(r.route)),
    h("td", { class: "nowrap" }, r.start || "–"), h("td", { class: "nowrap" }, r.stop || "–",
      r.stop_reason ? h("div", { class: "muted" }, label(r.stop_reason)) : null),
    h("td", { class: "num" }, r.outcome === "excluded" ? "–" : r.days), h("td", { class: "num" }, r.target_days),
    h("td", {}, r.outcome === "breached" ? h("span", { class: "flag" }, "Breached") : OUTCOME_NAMES[r.outcome]),
    h("td", { class: "num" }, r.share),
    ...(standard === "fds" ? [h("td", {}, r.fds_outcome ? label(r.fds_outcome) : "–")] : []),
    ...(standard === "d31" ? [h("td", {}, label(r.treatment)), h("td", {}, label(r.modality)), h("td", {}, r.plan_id || "")] : [])));
  main.append(table(`Clocks ${list.total}`, headers, rows.length ? rows : [h("tr", {}, h("td", { colspan: headers.length }, "No clocks are counted in this figure."))]));
  status(`Showing the log up to position ${list.position}.`);
}

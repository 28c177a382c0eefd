// OpenPTL dashboard: the lists behind the figures. The clocks behind a
// standards figure (decision 187) and the pathways behind a milestone
// figure (decision 190). Loaded after app.js and drawn with its helpers (h,
// api, when, query, table, go, status, label, pct); app.js's router calls
// renderClocks() for /standards/clocks and renderMilestonePathways() for
// /milestones/pathways, and the standards and milestones pages link their
// figures here with clocksLink() and pathwaysLink(). Every element is built
// with textContent, as in app.js.
"use strict";

/** The filters of a list, in the order its summary names them, with their names. */
const CLOCK_FILTERS = ["trust", "alliance", "tumour_site", "outcome", "fds_outcome", "exclusion_reason", "treatment", "modality"];
const FILTER_NAMES = { trust: "trust", alliance: "alliance", tumour_site: "tumour site", outcome: "outcome",
  fds_outcome: "outcome told", exclusion_reason: "excluded for", treatment: "treatment", modality: "modality group" };
const STANDARD_NAMES = { fds: "Faster Diagnosis Standard", d31: "31-day standard", d62: "62-day standard" };
const OUTCOME_NAMES = { breached: "breached", within_target: "within target", excluded: "excluded" };

/**
 * Lines of a list the page shows at first, and each "Show more" adds
 * (decision 214): an alliance's month is some 300,000 clocks, too many to
 * send and draw at once. The CSV export holds every line. (A `let`: the
 * browser test draws pages of one line.)
 */
let LIST_PAGE = 1000;

/**
 * Below a list's table (`wrap`, drawn with the first page's rows): how
 * many of its lines it shows, and a button that asks `path` for the next
 * page and adds its rows (`row` draws one). A list of today is made again
 * for each page, so its total is the last page's: the button goes when a
 * page comes back empty or the lines shown reach it.
 */
function moreLines(wrap, list, path, params, row, noun) {
  const tbody = wrap.querySelector("tbody");
  let shown = list.rows.length;
  let total = list.total;
  let done = shown >= total;
  const note = h("div", { id: "list-more" });
  const update = (error) => {
    note.replaceChildren(h("p", {}, `Showing ${shown} of ${total} ${noun}. `,
      done ? null : h("button", { type: "button", id: "list-more-button", onclick: async (e) => {
        e.currentTarget.disabled = true;
        try {
          const page = await api(path, Object.assign({}, params, { offset: shown, limit: LIST_PAGE }));
          tbody.append(...page.rows.map(row));
          shown += page.rows.length;
          total = page.total;
          done = page.rows.length === 0 || shown >= total;
          update();
        } catch (err) {
          update(err);
        }
      } }, `Show ${Math.min(LIST_PAGE, total - shown)} more`)),
      error ? showError(error) : null);
  };
  update();
  return note;
}

/**
 * A figure of the standards page as a link to the clocks it counts:
 * `filters` names the split (trust, tumour_site, outcome, ...).
 */
function clocksLink(text, standard, period, filters) {
  // Analysts see figures, not patients (the list would be refused); an
  // empty figure has nothing behind it.
  if (Number(text) === 0 || (meta && meta.role === "analyst")) return String(text);
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
  const path = `/v1/standards/${encodeURIComponent(standard)}/clocks`;
  const list = await api(path, Object.assign({ limit: LIST_PAGE }, params));
  const main = $main();
  main.replaceChildren();
  const what = CLOCK_FILTERS.filter((k) => params[k]).map((k) => `${FILTER_NAMES[k]} ${k === "outcome" ? OUTCOME_NAMES[params[k]] || params[k] : k === "trust" || k === "alliance" ? params[k] : label(params[k])}`);
  // Why the lines and the figure may differ: a transferred pathway's
  // 62-day outcome is shared (½ each), or charged to one trust (0 to the
  // other); an excluded clock counts in no figure but "excluded".
  const halves = list.shared_lines;
  const uncharged = list.charged_elsewhere_lines;
  const why = [halves ? `${halves} shared half and half after a transfer` : "", uncharged ? `${uncharged} charged to another trust after a transfer (share 0)` : ""].filter(Boolean);
  main.append(h("h1", {}, `${STANDARD_NAMES[standard] || standard}: clocks counted in ${list.period}`));
  main.append(h("p", { id: "clocks-summary" },
    `${list.total} ${list.total === 1 ? "clock" : "clocks"}${what.length ? ` (${what.join("; ")})` : ""}`,
    params.outcome === "excluded" || params.exclusion_reason ? ", excluded from the standard" : why.length ? `, counting ${list.share}: ${why.join(", ")}` : "", ". ",
    h("a", { href: "#", onclick: (e) => { e.preventDefault(); const p = {}; for (const k of ["period", "trust"]) if (params[k]) p[k] = params[k]; go("/standards", p); } }, "Back to the standards")));
  const csv = new URLSearchParams(Object.assign({}, params, { format: "csv" }));
  main.append(h("div", { class: "actions" },
    h("a", { href: `/v1/standards/${encodeURIComponent(standard)}/clocks?${csv}`, id: "clocks-csv", download: `${standard}-${list.period}-clocks.csv` }, "Export this list as CSV")));
  const extra = standard === "fds" ? ["Outcome told", "Excluded for"] : standard === "d31" ? ["Treatment", "Modality", "Plan", "Clock started by"] : [];
  const headers = ["Pathway", "NHS number", "Trust", "Now at", "Tumour site", "Route", "Start", "Stop", { label: "Days", num: true },
    { label: "Target", num: true }, "Outcome", { label: "Share", num: true }, ...extra];
  const others = (r) => (r.allocation || []).filter((a) => a.trust !== r.trust).map((a) => `${a.trust} ${a.share}`).join(", ");
  const row = (r) => h("tr", { "data-pathway": r.pathway_id, "data-outcome": r.outcome },
    h("td", { class: "nowrap" }, h("a", { href: `/pathways/${encodeURIComponent(r.pathway_id)}`, onclick: (e) => { e.preventDefault(); go(`/pathways/${encodeURIComponent(r.pathway_id)}`); } }, r.pathway_id)),
    h("td", { class: "nowrap" }, r.nhs_number), h("td", {}, r.trust), h("td", {}, r.current_trust === r.trust ? "" : r.current_trust),
    h("td", {}, label(r.tumour_site)), h("td", {}, label(r.route)),
    h("td", { class: "nowrap" }, r.start || "–"), h("td", { class: "nowrap" }, r.stop || "–",
      r.stop_reason ? h("div", { class: "muted" }, label(r.stop_reason)) : null),
    h("td", { class: "num" }, r.outcome === "excluded" ? "–" : r.days,
      r.adjustment_days ? h("div", { class: "muted" }, `${r.adjustment_days} adjusted`) : null),
    h("td", { class: "num" }, r.target_days),
    h("td", {}, r.outcome === "breached" ? h("span", { class: "flag" }, "Breached") : OUTCOME_NAMES[r.outcome]),
    h("td", { class: "num" }, r.share, others(r) ? h("div", { class: "muted" }, `and ${others(r)}`) : null),
    ...(standard === "fds" ? [h("td", {}, r.fds_outcome ? label(r.fds_outcome) : "–"),
      h("td", {}, r.exclusion_reason ? label(r.exclusion_reason) : "–")] : []),
    ...(standard === "d31" ? [h("td", {}, label(r.treatment)), h("td", {}, label(r.modality)), h("td", {}, r.plan_id || ""),
      h("td", {}, r.start_reason ? label(r.start_reason) : "")] : []));
  const rows = list.rows.map(row);
  const wrap = table(`The clocks behind the figure (${list.total})`, headers, rows.length ? rows : [h("tr", {}, h("td", { colspan: headers.length }, "No clocks are counted in this figure."))]);
  main.append(wrap);
  if (list.total > rows.length) main.append(moreLines(wrap, list, path, params, row, "clocks"));
  status(`Showing the log up to position ${list.position}.`);
}

// ------------------------------------------------ pathways behind a milestone

const MILESTONE_STATUS_NAMES = { met: "met", missed: "missed", overdue: "overdue", pending: "pending", not_applicable: "not applicable" };

/** A milestone figure as a link to its pathways (`filters`: tumour_site, milestone, status, period, trust). */
function pathwaysLink(n, filters) {
  if (Number(n) === 0 || (meta && meta.role === "analyst")) return String(n);
  const params = Object.assign({}, filters);
  for (const k of Object.keys(params)) if (params[k] === undefined || params[k] === "" || params[k] === null) delete params[k];
  const q = new URLSearchParams(params);
  for (const [k, v] of Object.entries(when())) q.set(k, v);
  return h("a", { href: `/milestones/pathways?${q}`, class: "figure-link", title: "List these pathways",
    onclick: (e) => { e.preventDefault(); go("/milestones/pathways", params); } }, String(n));
}

async function renderMilestonePathways() {
  const q = query();
  const params = Object.assign({}, when());
  for (const k of ["tumour_site", "milestone", "status", "period", "trust", "alliance"]) if (q.get(k)) params[k] = q.get(k);
  const list = await api("/v1/milestones/pathways", Object.assign({ limit: LIST_PAGE }, params));
  const main = $main();
  main.replaceChildren();
  const site = label(params.tumour_site);
  main.append(h("h1", {}, `${site.charAt(0).toUpperCase()}${site.slice(1)}: ${label(params.milestone)}${params.status ? `, ${MILESTONE_STATUS_NAMES[params.status]}` : ""}`));
  const scope = [params.period ? `referred in ${params.period}` : "referred in any month", params.trust ? `trust ${params.trust}` : "", params.alliance ? `alliance ${params.alliance}` : ""].filter(Boolean);
  main.append(h("p", { id: "pathways-summary" }, `${list.total} ${list.total === 1 ? "pathway" : "pathways"} (${scope.join("; ")}). `,
    h("a", { href: "#", onclick: (e) => { e.preventDefault(); const p = {}; for (const k of ["period", "trust", "tumour_site"]) if (params[k]) p[k] = params[k]; go("/milestones", p); } }, "Back to the milestones")));
  const csv = new URLSearchParams(Object.assign({}, params, { format: "csv" }));
  main.append(h("div", { class: "actions" }, h("a", { href: `/v1/milestones/pathways?${csv}`, id: "pathways-csv", download: "" }, "Export this list as CSV")));
  const headers = ["Pathway", "NHS number", "Trust", "Route", "Referred", { label: "Due day", num: true }, "Due", "Met", "Status", { label: "Days late", num: true }, "FDS"];
  const row = (r) => h("tr", { "data-pathway": r.pathway_id, "data-status": r.status },
    h("td", { class: "nowrap" }, h("a", { href: `/pathways/${encodeURIComponent(r.pathway_id)}`, onclick: (e) => { e.preventDefault(); go(`/pathways/${encodeURIComponent(r.pathway_id)}`); } }, r.pathway_id)),
    h("td", { class: "nowrap" }, r.nhs_number), h("td", {}, r.trust), h("td", {}, label(r.route)), h("td", { class: "nowrap" }, r.referred_on),
    h("td", { class: "num" }, r.due_day), h("td", { class: "nowrap" }, r.due_date), h("td", { class: "nowrap" }, r.met_on || "–"),
    h("td", {}, r.status === "overdue" || r.status === "missed" ? h("span", { class: "flag" }, MILESTONE_STATUS_NAMES[r.status]) : MILESTONE_STATUS_NAMES[r.status]),
    h("td", { class: "num" }, r.days_late ?? "–"), h("td", {}, label(r.fds_status)));
  const rows = list.rows.map(row);
  const wrap = table(`The pathways behind the figure (${list.total})`, headers, rows.length ? rows : [h("tr", {}, h("td", { colspan: headers.length }, "No pathways are counted in this figure."))]);
  main.append(wrap);
  if (list.total > rows.length) main.append(moreLines(wrap, list, "/v1/milestones/pathways", params, row, "pathways"));
  status(`Showing the log up to position ${list.position}.`);
}

// OpenPTL dashboard: breach forecasts (issue 24). Loaded after app.js and
// drawn with its helpers (h, api, when, query, select, table, bar, pct, go,
// status, loadMeta, label); app.js's router calls renderRisks() for
// /risks, renderPtl() calls ptlRiskCell() for each row, renderPathway() calls
// riskSection() and renderStandards() calls projectionLine(). Every element is built with textContent, as in app.js.
"use strict";

/** A breach risk as the PTL shows it: a percentage, flagged from 50%. */
function riskCell(risk) {
  return h("td", { class: risk >= 50 ? "num flag" : "num", "data-risk": String(risk) }, `${risk.toFixed(1)}%`);
}

/** The likely-to-breach worklist: running clocks by breach risk, riskiest first. */
async function renderRisks() {
  const at = when();
  const q = query();
  const m = await loadMeta();
  const params = Object.assign({}, at);
  for (const k of ["trust", "tumour_site", "clock"]) if (q.get(k)) params[k] = q.get(k);
  params.min_risk = q.get("min_risk") || "50";
  params.limit = "500";
  const list = await api("/v1/breach-risks", params);
  const main = $main();
  main.replaceChildren();
  main.append(h("h1", {}, "Likely to breach"));
  main.append(h("p", { class: "muted" }, "Running clocks not yet past their target, by the chance they breach it if nothing changes, learnt from the alliance's own pathways (see docs/forecast.md). Advice only: no clock changes."));
  const form = h("form", { class: "filters", id: "risks-form" },
    select("trust", "Trust", m.trusts, q.get("trust") || ""),
    select("tumour_site", "Tumour site", m.tumour_sites, q.get("tumour_site") || ""),
    select("clock", "Clock", ["fds", "d62", "d31"], q.get("clock") || ""),
    h("label", {}, "Breach risk above (%)", h("input", { type: "number", name: "min_risk", id: "min_risk", min: "0", max: "100", step: "5", value: params.min_risk })),
    h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (e) => { e.preventDefault(); const p = {}; for (const [k, v] of new FormData(form).entries()) if (v) p[k] = v; go("/risks", p); });
  main.append(form);
  main.append(list.rows.length
    ? table(`${list.total} running clocks with a breach risk of ${list.min_risk}% or more`,
      ["Pathway", "Clock", "Trust", "Tumour site", { label: "Days", num: true }, { label: "Target", num: true }, { label: "Breach risk", num: true }, "Main reason"],
      list.rows.map((r) => h("tr", { "data-pathway": r.pathway_id, "data-clock": r.clock },
        h("td", {}, h("a", { href: `/pathways/${encodeURIComponent(r.pathway_id)}` }, r.pathway_id)),
        h("td", {}, r.clock), h("td", {}, r.trust), h("td", {}, label(r.tumour_site)),
        h("td", { class: "num" }, r.days), h("td", { class: "num" }, r.target_days), riskCell(r.breach_risk), h("td", {}, r.reason))))
    : h("p", { class: "muted", id: "no-risks" }, "No running clock at or above that risk."));
  status(`Breach risks as of ${list.as_of}.`);
}

/** The pathway page's section: each running clock's risk and main reason. */
async function riskSection(id, at) {
  let list;
  try {
    list = await api("/v1/breach-risks", Object.assign({ pathway_id: id, min_risk: "0" }, at));
  } catch (_) {
    return null; // advisory: the page stands without it
  }
  const section = h("section", { id: "breach-risk", "aria-labelledby": "breach-risk-heading" }, h("h2", { id: "breach-risk-heading" }, "Breach risk"));
  section.append(list.rows.length
    ? table(null, ["Clock", { label: "Days", num: true }, { label: "Target", num: true }, { label: "Breach risk", num: true }, "Main reason"],
      list.rows.map((r) => h("tr", { "data-risk-clock": r.clock }, h("td", {}, r.clock), h("td", { class: "num" }, r.days),
        h("td", { class: "num" }, r.target_days), riskCell(r.breach_risk), h("td", {}, r.reason))))
    : h("p", { class: "muted" }, "No running clock."));
  return section;
}

/** The standards page's projection of one standard's month end, against its target. */
async function projectionLine(clock, period, base, target) {
  let p;
  try {
    p = await api(`/v1/forecast/${clock}`, Object.assign({ period }, base));
  } catch (_) {
    return null;
  }
  if (p.percent === null || p.percent === undefined) return null;
  const below = p.percent < target;
  return h("p", { class: below ? "projection flag" : "projection", id: `projection-${clock}` },
    h("strong", {}, `Projected month end: ${pct(p.percent)}`),
    p.low !== null ? ` (80% interval ${pct(p.low)}–${pct(p.high)})` : "",
    `, ${below ? "below" : "at or above"} the target of ${target}%: ${p.stopped_within_target} of ${p.stopped} stopped so far, about ${Math.round(p.expected_stops)} more expected (${Math.round(p.expected_breaches)} breached).`);
}

/** The PTL's "Breach risk" cell: the row's riskiest running clock, as the server gives it
 * (decision 154); a dash when no clock runs. */
function ptlRiskCell(r) {
  if (r.breach_risk === null || r.breach_risk === undefined) return h("td", { class: "num ptl-risk" }, "–");
  const clock = r.breach_risk_plan_id ? `${r.breach_risk_clock} ${r.breach_risk_plan_id}` : r.breach_risk_clock;
  return h("td", { class: r.breach_risk >= 50 ? "num ptl-risk flag" : "num ptl-risk", "data-risk": String(r.breach_risk), "data-risk-clock": r.breach_risk_clock },
    `${r.breach_risk.toFixed(0)}%`, h("div", { class: "muted" }, clock));
}

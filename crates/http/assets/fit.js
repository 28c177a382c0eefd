// OpenPTL dashboard: the FIT page (issue 25). Loaded after app.js and drawn
// with its helpers (h, api, when, query, select, table, bar, pct, chart,
// months, go, status, loadMeta, label); app.js's router calls renderFit().
// Every element is built with textContent, as in app.js.
"use strict";

const FIT_BANDS = [["below_10", "FIT < 10"], ["10_to_100", "FIT 10–100"], ["above_100", "FIT > 100"],
  ["none", "No FIT"], ["not_appropriate", "FIT not appropriate"]];
const FIT_TESTS = { colonoscopy: "Colonoscopy", flexible_sigmoidoscopy: "Flexible sigmoidoscopy", ct_colonography: "CT colonography" };

/** A test's figures in a FIT report (colonoscopy unless named). */
function fitTest(r, test) {
  return r.tests.find((t) => t.test === (test || "colonoscopy"));
}

/** The share of colonoscopies with a FIT result (100 − without), for charts where higher is better. */
function withFitShare(t) {
  return t && t.without_fit_percent !== null ? Math.round((100 - t.without_fit_percent) * 10) / 10 : null;
}

async function renderFit() {
  const at = when();
  const q = query();
  const today = at.as_of || todayIso();
  const period = q.get("period") || today.slice(0, 7);
  const params = Object.assign({}, at);
  for (const k of ["trust", "alliance"]) if (q.get(k)) params[k] = q.get(k);
  const m = await loadMeta();
  const trend = months(period, 6);
  // The month shown is one of the trend's: asked for once.
  const others = trend.filter((p) => p !== period);
  const [r, rest] = await Promise.all([
    api("/v1/fit", Object.assign({ period }, params)),
    Promise.all(others.map((p) => api("/v1/fit", Object.assign({ period: p }, params)))),
  ]);
  const byMonth = new Map(others.map((p, i) => [p, rest[i]]));
  byMonth.set(period, r);
  const trends = trend.map((p) => byMonth.get(p));
  let below10 = null;
  try {
    below10 = (await api("/v1/ptl", Object.assign({ worklist: "fit_below_10", limit: 1 }, params))).total;
  } catch (_) {
    below10 = null; // a role that may not list patients sees the figures only
  }
  const t = r.targets;
  const main = $main();
  main.replaceChildren();
  main.append(h("h1", {}, "FIT and the lower GI pathway"));
  const form = h("form", { class: "filters", id: "fit-form" },
    h("label", {}, "Referred in (month)", h("input", { type: "month", name: "period", value: period, id: "period" })),
    select("trust", "Trust", m.trusts, q.get("trust")),
    // An alliance the URL names is kept when the form is sent again.
    q.get("alliance") ? h("input", { type: "hidden", name: "alliance", value: q.get("alliance") }) : null,
    h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (e) => { e.preventDefault(); const p = {}; for (const [k, v] of new FormData(form).entries()) if (v) p[k] = v; go("/fit", p); });
  main.append(form);
  const csv = new URLSearchParams(Object.assign({ period, format: "csv" }, params));
  main.append(h("p", {},
    h("a", { href: "/", id: "fit-worklist", onclick: (e) => { e.preventDefault(); const scope = {}; for (const k of ["trust", "alliance"]) if (q.get(k)) scope[k] = q.get(k); go("/", Object.assign({ worklist: "fit_below_10" }, scope)); } },
      "Safety-netting worklist: open lower GI pathways with FIT below 10"),
    below10 === null ? "" : ` (${below10} today). `,
    " ", h("a", { href: `/v1/fit?${csv}`, id: "fit-csv", download: `fit-${period}.csv` }, "Download CSV")));

  const colonoscopy = fitTest(r);
  const grid = h("div", { class: "grid" });
  grid.append(h("section", { class: "panel", id: "fit-with" }, h("h2", {}, "Referrals with a FIT result"),
    h("p", {}, h("strong", { class: "big" }, pct(r.with_fit_percent)),
      ` of ${r.referrals} urgent lower GI referrals in ${r.period} had a FIT result on or before referral (target at least ${t.with_fit_percent}%). `,
      `${pct(r.indicator_percent)} within the ${r.indicator_days} days before referral (primary care indicator); `,
      `${r.not_appropriate} recorded as FIT not appropriate; ${r.fit_after_referral} with a first FIT after referral.`),
    chart("Referrals with a FIT result, last six months", trends.map((x) => ({ label: x.period, value: x.with_fit_percent })), t.with_fit_percent)));
  grid.append(h("section", { class: "panel", id: "fit-colonoscopy" }, h("h2", {}, "Colonoscopies without a FIT result"),
    h("p", {}, h("strong", { class: "big" }, pct(colonoscopy.without_fit_percent)),
      ` of ${colonoscopy.pathways} colonoscopies on these referrals had no FIT result on the day (target fewer than ${t.colonoscopies_without_fit_percent}%); `,
      `${colonoscopy.on_fit_below_10} on a FIT below 10.`),
    chart("Colonoscopies with a FIT result, last six months", trends.map((x) => ({ label: x.period, value: withFitShare(fitTest(x)) })), 100 - t.colonoscopies_without_fit_percent)));
  main.append(grid);

  main.append(table("FIT band at triage (referrals not triaged: the latest result)", ["Band", { label: "Referrals", num: true }, { label: "%", num: true }, ""],
    FIT_BANDS.map(([b, name]) => h("tr", { "data-band": b }, h("td", {}, name), h("td", { class: "num" }, r.at_triage.counts[b]),
      h("td", { class: "num" }, pct(r.at_triage.percent[b])), h("td", {}, bar(r.at_triage.percent[b]))))));
  main.append(table("Tests by the FIT band on the day of the test", ["Test", { label: "Done", num: true }].concat(FIT_BANDS.map(([, name]) => ({ label: name, num: true })), [{ label: "% without FIT", num: true }]),
    r.tests.map((x) => h("tr", { "data-test": x.test }, h("td", {}, FIT_TESTS[x.test] || label(x.test)), h("td", { class: "num" }, x.pathways),
      FIT_BANDS.map(([b]) => h("td", { class: "num" }, x.bands.counts[b])), h("td", { class: "num" }, pct(x.without_fit_percent))))));
  main.append(h("div", { id: "fit-by-trust" }, table("By trust at referral", ["Trust", { label: "Referrals", num: true }, { label: "With FIT %", num: true }, "",
    { label: `${r.indicator_days}-day %`, num: true }, { label: "Colonoscopies", num: true }, { label: "Without FIT %", num: true }, { label: "On FIT < 10", num: true }],
  r.by_trust.map((x) => {
    const c = fitTest(x);
    return h("tr", { "data-trust": x.trust }, h("td", {}, x.trust), h("td", { class: "num" }, x.referrals), h("td", { class: "num" }, pct(x.with_fit_percent)),
      h("td", {}, bar(x.with_fit_percent, t.with_fit_percent)), h("td", { class: "num" }, pct(x.indicator_percent)),
      h("td", { class: "num" }, c.pathways), h("td", { class: "num" }, pct(c.without_fit_percent)), h("td", { class: "num" }, c.on_fit_below_10));
  }))));
  status(`Lower GI urgent referrals received in ${r.period}, as of ${at.as_of || "today"}.`);
}

// OpenPTL dashboard: the national returns (decision 199). The weekly PTL
// return (CANPTL) of a chosen Sunday, drawn as tables, and the monthly
// Cancer Waiting Times data set submission of a chosen month, to download.
// Loaded after app.js and drawn with its helpers (h, api, when, query,
// select, table, months, go, status, loadMeta, label, todayIso); app.js's
// router calls renderReturns(). Every element is built with textContent.
"use strict";

const RETURN_BANDS = ["0-28", "29-62", "63-104", "105+"];
const SEEN_MEDIA = [["face_to_face", "Face to face"], ["virtual", "Virtual"], ["not_recorded", "Not recorded"]];

/** The Sunday on or before `iso` (YYYY-MM-DD): the end of its week; null for no date. */
function sundayOnOrBefore(iso) {
  const d = new Date(`${iso}T00:00:00Z`);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(iso || "") || Number.isNaN(d.getTime())) return null;
  d.setUTCDate(d.getUTCDate() - d.getUTCDay());
  return d.toISOString().slice(0, 10);
}

/** A date as a coordinator reads it: "Sunday 29 November 2026". */
function longDate(iso) {
  return new Date(`${iso}T00:00:00Z`).toLocaleDateString("en-GB", { weekday: "long", day: "numeric", month: "long", year: "numeric", timeZone: "UTC" });
}

/** A count cell. */
function num(n, attrs) {
  return h("td", Object.assign({ class: "num" }, attrs || {}), n);
}

async function renderReturns() {
  const at = when();
  const q = query();
  // The page's date: its "as of", else the day of its "as known at" (as
  // the API takes it), else today.
  const today = at.as_of || todayIso(at.known_at);
  const latest = sundayOnOrBefore(today);
  // Any day picked stands for the week it ends (the return is a Sunday's).
  const weekEnding = sundayOnOrBefore(q.get("week_ending")) || latest;
  const period = q.get("period") || months(today.slice(0, 7), 2)[0];
  const scope = {};
  for (const k of ["trust", "alliance"]) if (q.get(k)) scope[k] = q.get(k);
  const scopeText = scope.trust ? `trust ${scope.trust}` : scope.alliance ? `alliance ${scope.alliance}` : "every trust you may see";
  const m = await loadMeta();
  const params = Object.assign({ week_ending: weekEnding }, scope);
  if (at.known_at) params.known_at = at.known_at;
  const main = $main();
  const form = h("form", { class: "filters", id: "returns-form" },
    h("label", {}, "Week ending (a Sunday)", h("input", { type: "date", name: "week_ending", value: weekEnding, max: today, id: "week_ending" })),
    h("label", {}, "CWT submission month", h("input", { type: "month", name: "period", value: period, id: "period" })),
    select("trust", "Trust", m.trusts, q.get("trust")),
    // An alliance the URL names is kept when the form is sent again.
    q.get("alliance") ? h("input", { type: "hidden", name: "alliance", value: q.get("alliance") }) : null,
    h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = {};
    for (const [k, v] of new FormData(form).entries()) if (v) p[k] = k === "week_ending" ? sundayOnOrBefore(v) || latest : v;
    go("/returns", p);
  });
  let r;
  try {
    r = await api("/v1/returns/canptl", params);
  } catch (err) {
    if (err.status === 401) throw err;
    // The form stays, so that another week can be picked.
    main.replaceChildren(h("h1", {}, "National returns"), form, showError(err));
    return;
  }
  main.replaceChildren(h("h1", {}, "National returns"), form);

  // ------------------------------------------------------- weekly return
  const withDtt = r.with_decision_to_treat;
  const without = r.without_decision_to_treat;
  const waiting = withDtt.total + without.total;
  const json = new URLSearchParams(params);
  main.append(h("section", { class: "panel", id: "canptl" },
    h("h2", {}, `Weekly PTL return (CANPTL): week ending ${longDate(r.week_ending)}`),
    h("p", { id: "canptl-summary" },
      `Monday ${r.week_starting} to Sunday ${r.week_ending}, `,
      r.week_ending === todayIso() && !at.known_at ? "so far: the week ends at 23:59 tonight. " : "as at 23:59 on the Sunday. ",
      `For ${scopeText}. `,
      h("strong", {}, waiting), ` on the 62-day waiting list at the week's end (${withDtt.total} with a decision to treat, ${without.total} without); `,
      h("strong", {}, r.backlog_over_62), ` waiting over 62 days, of whom ${r.over_104} over 104 days.`),
    h("p", {}, h("a", { href: `/v1/returns/canptl?${json}`, id: "canptl-json", download: `canptl-${r.week_ending}.json` }, "Download the return (JSON)"))));

  main.append(h("div", { id: "canptl-bands" }, table("62-day waiting list at the week's end, by days waited",
    ["Days waited", { label: "With a decision to treat", num: true }, { label: "Without", num: true }, { label: "All", num: true }],
    RETURN_BANDS.map((b) => h("tr", { "data-band": b }, h("td", {}, b),
      num(withDtt.by_band[b] || 0, { "data-with": "" }), num(without.by_band[b] || 0, { "data-without": "" }),
      num((withDtt.by_band[b] || 0) + (without.by_band[b] || 0)))).concat([
      h("tr", { class: "total" }, h("th", { scope: "row" }, "All"), num(withDtt.total), num(without.total), num(waiting))]))));

  const sites = [...new Set(Object.keys(withDtt.by_tumour_site).concat(Object.keys(without.by_tumour_site)))].sort();
  const siteBand = (site, b) => ((withDtt.by_tumour_site[site] || {})[b] || 0) + ((without.by_tumour_site[site] || {})[b] || 0);
  const siteDtt = (site) => RETURN_BANDS.reduce((n, b) => n + ((withDtt.by_tumour_site[site] || {})[b] || 0), 0);
  main.append(h("div", { id: "canptl-sites" }, table("62-day waiting list at the week's end, by tumour site",
    ["Tumour site"].concat(RETURN_BANDS.map((b) => ({ label: b, num: true })), [{ label: "All", num: true }, { label: "With a decision to treat", num: true }]),
    sites.length ? sites.map((site) => h("tr", { "data-site": site }, h("td", {}, label(site)),
      RETURN_BANDS.map((b) => num(siteBand(site, b))), num(RETURN_BANDS.reduce((n, b) => n + siteBand(site, b), 0)), num(siteDtt(site))))
      : [h("tr", {}, h("td", { colspan: RETURN_BANDS.length + 3 }, "Nobody on the 62-day waiting list."))])));

  const grid = h("div", { class: "grid" });
  const passed = Object.entries(r.passed_28_days_by_tumour_site).sort();
  grid.append(h("section", { class: "panel", id: "canptl-passed-28" }, h("h2", {}, "Passed 28 days in the week"),
    h("p", {}, h("strong", {}, r.passed_28_days), " Faster Diagnosis Standard clocks passed day 28 without a diagnosis communicated."),
    table(null, ["Tumour site", { label: "Clocks", num: true }],
      passed.length ? passed.map(([site, n]) => h("tr", { "data-site": site }, h("td", {}, label(site)), num(n)))
        : [h("tr", {}, h("td", { colspan: 2 }, "None in the week."))])));
  grid.append(h("section", { class: "panel", id: "canptl-referrals" }, h("h2", {}, "Referrals in the week"),
    table(null, ["Route", { label: "Referrals", num: true }],
      Object.entries(r.referrals_by_route).map(([route, n]) => h("tr", { "data-route": route }, h("td", {}, label(route)), num(n)))
        .concat([h("tr", { "data-route": "upgrade" }, h("td", {}, "Consultant upgrades"), num(r.upgrades))]))));
  main.append(grid);

  const seen = r.first_seen;
  main.append(h("div", { id: "canptl-first-seen" }, table(`First seen in the week: ${seen.total} patients on the cancer routes`,
    ["Route"].concat(SEEN_MEDIA.map(([, name]) => ({ label: name, num: true })), [{ label: "All", num: true }]),
    Object.entries(seen.by_route).map(([route, media]) => h("tr", { "data-route": route }, h("td", {}, label(route)),
      SEEN_MEDIA.map(([medium]) => num(media[medium] || 0)), num(SEEN_MEDIA.reduce((n, [medium]) => n + (media[medium] || 0), 0))))
      .concat([h("tr", { class: "total" }, h("th", { scope: "row" }, "All"), SEEN_MEDIA.map(([medium]) => num(seen.by_medium[medium] || 0)), num(seen.total))]))));

  // ------------------------------------------------- monthly submission
  const cwt = new URLSearchParams(Object.assign({ period, format: "csv" }, scope, at));
  main.append(h("section", { class: "panel", id: "cwt" }, h("h2", {}, `Cancer Waiting Times data set submission: ${period}`),
    h("p", {}, "One record per pathway and treatment period treated in the month, or per pathway whose Faster Diagnosis pathway ended in it, ",
      "in the national data items. ",
      "Patient identifiers are shown as your role allows."),
    h("p", {}, h("a", { href: `/v1/returns/cwt?${cwt}`, id: "cwt-csv", download: `cwt-${period}.csv` }, `Download the ${period} submission (CSV)`))));
  status(`Weekly return of the week ending ${r.week_ending}${at.known_at ? ", as known at " + new Date(at.known_at).toLocaleString("en-GB") : ""}; log position ${r.position ?? "now"}.`);
}

//! `GET /v1/fit` (issue 25): the month's FIT report for lower GI urgent
//! referrals, by trust at referral and overall, as JSON or (with
//! `format=csv` or `Accept: text/csv`) as CSV, one line per trust then
//! the total. Parameters are checked like every view's.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use openptl_app::App;
use openptl_rules::fit::{FitFigures, FitReport, REPORT_BANDS};

use crate::auth::Auth;
use crate::csv::Csv;
use crate::views::{
    check_known, csv_response, opt, period, trusts, view_at, wants_csv, with_position, Params,
};
use crate::HttpError;

/// The parameters `GET /v1/fit` takes.
pub(crate) const FIT_PARAMS: &[&str] = &[
    "period",
    "trust",
    "alliance",
    "as_of",
    "known_at",
    "min_position",
    "format",
];

/// `GET /v1/fit?period=YYYY-MM&trust=&alliance=&as_of=&known_at=`.
pub async fn get_fit(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    check_known(&params, FIT_PARAMS)?;
    let csv = wants_csv(&headers, &params)?;
    let (report, position) = app
        .fit(
            &view_at(&params)?,
            period(&params)?,
            &trusts(&app, &params)?,
            &principal,
        )
        .await?;
    if csv {
        return Ok(csv_response(
            fit_csv(&report),
            &format!("fit-{}.csv", report.period),
        ));
    }
    Ok(Json(with_position(report, position)?).into_response())
}

/// The report as CSV: a line per trust, then `all`.
pub fn fit_csv(report: &FitReport) -> String {
    let mut header: Vec<String> = [
        "period",
        "trust",
        "referrals",
        "with_fit",
        "with_fit_percent",
        "with_fit_target_percent",
        "with_fit_target_met",
        "not_appropriate",
        "fit_after_referral",
        "within_indicator_days",
        "indicator_percent",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    header.extend(REPORT_BANDS.iter().map(|b| format!("at_triage_{b}")));
    for t in &report.overall.tests {
        let test = t.test;
        header.push(format!("{test}_pathways"));
        header.extend(REPORT_BANDS.iter().map(|b| format!("{test}_{b}")));
        header.push(format!("{test}_without_fit"));
        header.push(format!("{test}_without_fit_percent"));
        header.push(format!("{test}_on_fit_below_10"));
    }
    header.push("colonoscopies_without_fit_target_percent".into());
    header.push("colonoscopies_without_fit_target_met".into());
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut out = Csv::new(&header);
    let lines = report
        .by_trust
        .iter()
        .map(|t| (t.trust.as_str(), &t.figures))
        .chain([("all", &report.overall)]);
    for (trust, f) in lines {
        out.row(line(report, trust, f));
    }
    out.finish()
}

fn line(report: &FitReport, trust: &str, f: &FitFigures) -> Vec<String> {
    let mut row = vec![
        report.period.to_string(),
        trust.to_string(),
        f.referrals.to_string(),
        f.with_fit.to_string(),
        opt(f.with_fit_percent),
        report.targets.with_fit_percent.to_string(),
        opt(f.with_fit_target_met),
        f.not_appropriate.to_string(),
        f.fit_after_referral.to_string(),
        f.within_indicator_days.to_string(),
        opt(f.indicator_percent),
    ];
    let count = |mix: &openptl_rules::fit::BandMix, band: &str| {
        mix.counts.get(band).copied().unwrap_or(0).to_string()
    };
    row.extend(REPORT_BANDS.iter().map(|b| count(&f.at_triage, b.as_str())));
    let mut colonoscopy_met = None;
    for t in &f.tests {
        row.push(t.pathways.to_string());
        row.extend(REPORT_BANDS.iter().map(|b| count(&t.bands, b.as_str())));
        row.push(t.without_fit.to_string());
        row.push(opt(t.without_fit_percent));
        row.push(t.on_fit_below_10.to_string());
        colonoscopy_met = colonoscopy_met.or(t.without_fit_target_met);
    }
    row.push(report.targets.colonoscopies_without_fit_percent.to_string());
    row.push(opt(colonoscopy_met));
    row
}

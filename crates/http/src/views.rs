//! The view endpoints of SPEC 4.4: query parameters in, JSON or CSV out.
//! Every parameter is checked; an unknown one is refused (a typo must not
//! silently show the whole PTL).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use openptl_app::Failure;
use openptl_app::{App, AppError, Cursor, PtlQuery, PtlSort, TrustFilter, ViewAt, Worklist};
use openptl_rules::{ClockKind, OdsCode, Period, Rag, Route, TumourSite, WaitBand};
use serde_json::json;

use crate::auth::Auth;
use crate::csv::Csv;
use crate::{invalid, ApiError, HttpError};

/// Rows per PTL page unless `limit` says otherwise, and the most allowed.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

pub(crate) type Params = HashMap<String, String>;

pub(crate) fn check_known(params: &Params, allowed: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&str> = params
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    unknown.sort_unstable();
    match unknown.first() {
        None => Ok(()),
        Some(first) => Err(invalid(
            first,
            format!(
                "is not a parameter of this view; use {}",
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// A comma-separated list of codes.
fn codes<T>(
    params: &Params,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> Result<Vec<T>, ApiError> {
    let Some(value) = params.get(name) else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| parse(v).ok_or_else(|| invalid(name, format!("must be one of {expected}"))))
        .collect()
}

fn boolean(params: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    params
        .get(name)
        .map(|v| match v.as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(invalid(name, "must be `true` or `false`")),
        })
        .transpose()
}

/// A percentage from 0 to 100 (decimals allowed).
pub(crate) fn percent(params: &Params, name: &str) -> Result<Option<f64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or_else(|| invalid(name, "must be a percentage from 0 to 100"))
        })
        .transpose()
}

fn date(params: &Params, name: &str) -> Result<Option<chrono::NaiveDate>, ApiError> {
    params
        .get(name)
        .map(|v| {
            openptl_rules::date::parse(v)
                .ok_or_else(|| invalid(name, "must be a date written YYYY-MM-DD"))
        })
        .transpose()
}

fn timestamp(params: &Params, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .get(name)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    invalid(
                        name,
                        "must be an RFC 3339 timestamp such as 2025-03-03T12:00:00Z",
                    )
                })
        })
        .transpose()
}

pub(crate) fn period(params: &Params) -> Result<Option<Period>, ApiError> {
    params
        .get("period")
        .map(|v| {
            Period::parse(v).ok_or_else(|| invalid("period", "must be a month written YYYY-MM"))
        })
        .transpose()
}

pub(crate) fn view_at(params: &Params) -> Result<ViewAt, ApiError> {
    Ok(ViewAt {
        as_of: date(params, "as_of")?,
        known_at: timestamp(params, "known_at")?,
        min_position: crate::min_position(params)?,
    })
}

/// `trust` (comma-separated ODS codes) and `alliance` (a configured name):
/// the trusts a view covers; both given means trusts of the list in the alliance.
pub(crate) fn trusts(app: &App, params: &Params) -> Result<TrustFilter, ApiError> {
    let listed = codes(
        params,
        "trust",
        |v| OdsCode::parse(v).map(|c| c.as_str().to_string()),
        "ODS codes of 3 to 5 letters and digits",
    )?;
    let mut set: Option<HashSet<String>> =
        (!listed.is_empty()).then(|| listed.into_iter().collect());
    if let Some(name) = params.get("alliance") {
        let members = app.config().alliances.get(name).ok_or_else(|| {
            invalid(
                "alliance",
                format!(
                    "must name a configured alliance: {}",
                    app.config()
                        .alliances
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let members: HashSet<String> = members.iter().map(|c| c.as_str().to_string()).collect();
        set = Some(match set {
            Some(listed) => listed.intersection(&members).cloned().collect(),
            None => members,
        });
    }
    Ok(TrustFilter(set))
}

pub(crate) fn one_site(params: &Params) -> Result<Option<TumourSite>, ApiError> {
    params
        .get("tumour_site")
        .map(|v| {
            TumourSite::parse(v).ok_or_else(|| {
                invalid(
                    "tumour_site",
                    format!("must be one of {}", TumourSite::expected()),
                )
            })
        })
        .transpose()
}

pub(crate) fn wants_csv(headers: &HeaderMap, params: &Params) -> Result<bool, ApiError> {
    if let Some(format) = params.get("format") {
        return match format.as_str() {
            "csv" => Ok(true),
            "json" => Ok(false),
            _ => Err(invalid("format", "must be `json` or `csv`")),
        };
    }
    Ok(headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv")))
}

/// A CSV file's name from its parts (what it holds: a view, its filters,
/// its moment), joined by `-`, keeping only characters safe in a file name
/// and a `Content-Disposition` header, and ending `-{last}.csv`.
pub(crate) fn csv_file_name(mut parts: Vec<String>, last: &str) -> String {
    parts.push(format!("{last}.csv"));
    parts
        .join("-")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
        .collect()
}

pub(crate) fn csv_response(body: String, filename: &str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

const PTL_PARAMS: &[&str] = &[
    "trust",
    "alliance",
    "tumour_site",
    "route",
    "band",
    "rag",
    "escalated",
    "no_next_action",
    "next_action_overdue",
    "milestone_overdue",
    "worklist",
    "min_breach_risk",
    "sort",
    "limit",
    "cursor",
    "as_of",
    "known_at",
    "min_position",
    "format",
];

/// Parameters of the standards and milestones views.
const AGGREGATE_PARAMS: &[&str] = &[
    "period",
    "trust",
    "alliance",
    "tumour_site",
    "as_of",
    "known_at",
    "min_position",
];

/// `field` is not one of `codes`.
fn not_one_of<'a>(field: &str, codes: impl Iterator<Item = &'a str>) -> ApiError {
    let listed: Vec<String> = codes.map(|c| format!("`{c}`")).collect();
    invalid(field, format!("must be one of {}", listed.join(", ")))
}

/// Parses the PTL query string (SPEC 4.4).
pub fn ptl_query(app: &App, params: &Params) -> Result<PtlQuery, ApiError> {
    check_known(params, PTL_PARAMS)?;
    let sort = match params.get("sort") {
        None => PtlSort::default(),
        Some(v) => PtlSort::parse(v)
            .ok_or_else(|| not_one_of("sort", PtlSort::ALL.iter().map(|(c, _)| *c)))?,
    };
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                invalid(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let worklist = params
        .get("worklist")
        .map(|v| {
            Worklist::parse(v)
                .ok_or_else(|| not_one_of("worklist", Worklist::ALL.iter().map(|(c, _)| *c)))
        })
        .transpose()?;
    let cursor = params
        .get("cursor")
        .map(|v| {
            Cursor::parse(v).ok_or_else(|| {
                invalid(
                    "cursor",
                    "is not a cursor this service gave out; start again without it",
                )
            })
        })
        .transpose()?;
    Ok(PtlQuery {
        at: view_at(params)?,
        trusts: trusts(app, params)?,
        tumour_sites: codes(
            params,
            "tumour_site",
            TumourSite::parse,
            &TumourSite::expected(),
        )?,
        routes: codes(params, "route", Route::parse, &Route::expected())?,
        bands: codes(params, "band", WaitBand::parse, &WaitBand::expected())?,
        rags: codes(params, "rag", Rag::parse, &Rag::expected())?,
        escalated: boolean(params, "escalated")?,
        no_next_action: boolean(params, "no_next_action")?.unwrap_or(false),
        next_action_overdue: boolean(params, "next_action_overdue")?.unwrap_or(false),
        milestone_overdue: boolean(params, "milestone_overdue")?.unwrap_or(false),
        worklist,
        min_breach_risk: percent(params, "min_breach_risk")?,
        sort,
        limit: Some(limit),
        cursor,
    })
}

/// `GET /v1/ptl`: a page of the single PTL as JSON, or every matching row as CSV.
pub async fn get_ptl(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    let mut query = ptl_query(&app, &params)?;
    let csv = wants_csv(&headers, &params)?;
    if csv && !params.contains_key("limit") {
        query.limit = None;
    }
    let page = app.ptl(&query, &principal).await?;
    if !csv {
        return Ok(Json(page).into_response());
    }
    // An export is every row: written off the async workers, through the
    // views' gate.
    Ok(app
        .off_workers(move || {
            let mut out = Csv::new(&[
                "pathway_id",
                "nhs_number",
                "trust",
                "tumour_site",
                "route",
                "referred_on",
                "status",
                "fds_status",
                "fds_days",
                "d62_status",
                "d62_days",
                "d31_status",
                "d31_days",
                "band",
                "rag",
                "next_milestone",
                "next_milestone_due",
                "milestone_overdue",
                "next_breach_clock",
                "next_breach_date",
                "transferred",
                "handover_date",
                "decision_to_treat",
                "fit_band",
                "last_note",
                "next_action",
                "next_action_due",
                "next_action_overdue",
                "owner",
                "escalated",
                "next_breach_plan_id",
                "subsequent_plan_id",
                "subsequent_modality",
                "subsequent_status",
                "subsequent_days",
                "subsequent_breach_date",
                "colonoscopy",
                "breach_risk",
                "breach_risk_clock",
                "breach_risk_plan_id",
            ]);
            for e in &page.rows {
                let r = &e.row;
                out.row(&[
                    e.pathway_id.clone(),
                    e.nhs_number.clone(),
                    r.trust.clone(),
                    r.tumour_site.to_string(),
                    r.route.to_string(),
                    r.referred_on.to_string(),
                    r.status.to_string(),
                    r.fds_status.to_string(),
                    opt(r.fds_days),
                    r.d62_status.to_string(),
                    opt(r.d62_days),
                    r.d31_status.to_string(),
                    opt(r.d31_days),
                    opt(r.band),
                    r.rag.to_string(),
                    opt(r.next_milestone.as_ref().map(|m| &m.name)),
                    opt(r.next_milestone.as_ref().map(|m| m.due_date)),
                    r.milestone_overdue.to_string(),
                    opt(r.next_breach_clock),
                    opt(r.next_breach_date),
                    r.transferred.to_string(),
                    opt(r.handover_date),
                    r.decision_to_treat.to_string(),
                    r.fit_band.to_string(),
                    opt(r.last_note.as_ref()),
                    opt(r.next_action.as_ref()),
                    opt(r.next_action_due),
                    r.next_action_overdue.to_string(),
                    opt(r.owner.as_ref()),
                    r.escalated.to_string(),
                    opt(r.next_breach_plan_id.as_ref()),
                    opt(r.subsequent.as_ref().map(|p| &p.plan_id)),
                    opt(r.subsequent.as_ref().map(|p| p.modality)),
                    opt(r.subsequent.as_ref().map(|p| p.status)),
                    opt(r.subsequent_days),
                    opt(r.subsequent.as_ref().and_then(|p| p.breach_date)),
                    opt(r.colonoscopy.map(|c| c.as_str())),
                    opt(e.breach_risk),
                    opt(e.breach_risk_clock),
                    opt(e.breach_risk_plan_id.as_ref()),
                ]);
            }
            csv_response(out.finish(), &format!("ptl-{}.csv", page.as_of))
        })
        .await?)
}

pub(crate) fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// `GET /v1/standards/{fds|d31|d62}`.
pub async fn get_standards(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    crate::PathText(standard): crate::PathText,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    check_known(&params, AGGREGATE_PARAMS)?;
    let standard = ClockKind::parse(&standard).ok_or(ApiError::NotFound)?;
    let (report, position) = app
        .standards(
            &view_at(&params)?,
            standard,
            period(&params)?,
            &trusts(&app, &params)?,
            one_site(&params)?,
            &principal,
        )
        .await?;
    Ok(Json(with_position(report, position)?).into_response())
}

/// `GET /v1/milestones`.
pub async fn get_milestones(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    check_known(&params, AGGREGATE_PARAMS)?;
    let (report, position) = app
        .milestones(
            &view_at(&params)?,
            period(&params)?,
            &trusts(&app, &params)?,
            one_site(&params)?,
            &principal,
        )
        .await?;
    Ok(Json(with_position(report, position)?).into_response())
}

/// `GET /v1/returns/canptl?week_ending=` (JSON).
pub async fn get_canptl(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    check_known(
        &params,
        &[
            "week_ending",
            "trust",
            "alliance",
            "known_at",
            "min_position",
        ],
    )?;
    let week_ending = date(&params, "week_ending")?
        .ok_or_else(|| invalid("week_ending", "is required: the Sunday the week ends on"))?;
    let at = view_at(&params)?;
    app.wait_for(at.min_position).await;
    let (report, position) = app
        .canptl(
            week_ending,
            at.known_at,
            &trusts(&app, &params)?,
            &principal,
        )
        .await?;
    Ok(Json(with_position(report, position)?).into_response())
}

/// `GET /v1/returns/cwt?period=` (CSV; JSON with `format=json`).
pub async fn get_cwt(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    check_known(
        &params,
        &[
            "period",
            "trust",
            "alliance",
            "as_of",
            "known_at",
            "min_position",
            "format",
        ],
    )?;
    let period = period(&params)?
        .ok_or_else(|| invalid("period", "is required: a month written YYYY-MM"))?;
    let json_wanted = params.get("format").map(String::as_str) == Some("json")
        || (!params.contains_key("format")
            && headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/json")));
    wants_csv(&headers, &params)?;
    let (lines, _) = app
        .cwt(
            &view_at(&params)?,
            period,
            &trusts(&app, &params)?,
            &principal,
        )
        .await?;
    if json_wanted {
        let pieces = app.off_workers(move || cwt_json(period, lines)).await?;
        return Ok(crate::json_rows::response(pieces?));
    }
    Ok(app
        .off_workers(move || csv_response(cwt_csv(lines), &format!("cwt-{period}.csv")))
        .await?)
}

/// A report with the log position it includes.
pub(crate) fn with_position(
    report: impl serde::Serialize,
    position: u64,
) -> Result<serde_json::Value, ApiError> {
    let mut body = serde_json::to_value(report)
        .map_err(|e| ApiError::App(AppError::Internal(Failure::caused_by("a report", e))))?;
    body["position"] = json!(position);
    Ok(body)
}

/// Lines of the CWT submission a core writes at a time.
const CSV_SLICE: usize = 16_384;

/// The monthly CWT data set submission as JSON (`format=json`): `{"period":
/// "YYYY-MM", "rows": [...]}`, a row an object of [`cwt_csv`]'s columns
/// ([`openptl_app::CwtLine`]), as pieces in order
/// ([`crate::json_rows`]: written on one core through one growing buffer,
/// the JSON took most of a past month's view at alliance scale). The lines
/// are freed on a thread of their own once written.
pub fn cwt_json(period: Period, lines: openptl_app::CwtLines) -> Result<Vec<Vec<u8>>, AppError> {
    let started = std::time::Instant::now();
    let failed = |e| AppError::Internal(Failure::caused_by("the CWT rows as JSON", e));
    // Each name quoted once, not on each of hundreds of thousands of rows.
    let row = crate::json_rows::Object::new(openptl_app::CwtLine::names()).map_err(failed)?;
    let names = row.bytes();
    let pieces = crate::json_rows::rows_on_every_core(
        ("period", &period),
        lines.places(),
        CSV_SLICE,
        // Values rarely need escaping.
        |&place| names + lines.at(place).items_len(),
        |out, &place| row.write(out, lines.at(place).items()),
    );
    openptl_app::drop_later(lines);
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "CWT lines written as JSON"
    );
    pieces.map_err(failed)
}

/// The monthly CWT data set submission as CSV (also `openptl export
/// --format cwt`): the national item names as the header. The lines are
/// freed on a thread of their own once written.
pub fn cwt_csv(lines: openptl_app::CwtLines) -> String {
    let started = std::time::Instant::now();
    let header: Vec<&str> = openptl_app::CwtLine::names().collect();
    // About a hundred bytes a line.
    let csv = Csv::on_every_core(&header, lines.places(), CSV_SLICE, 128, |out, &place| {
        out.row(lines.at(place).items());
    });
    openptl_app::drop_later(lines);
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "CWT lines written as CSV"
    );
    csv
}

//! `GET /v1/forecast/{fds|d31|d62}` (issue 24): a standard's projected
//! month-end figure with its 80% interval, overall, by trust and by tumour
//! site, for the trusts asked for and the caller may see. Parameters are
//! the standards view's; a past `as_of` projects with only what was known
//! then. `GET /v1/breach-risks`: running clocks by breach risk (the
//! `likely_to_breach` worklist at 50%, or one pathway's clocks).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openptl_app::breach_risk::{RiskQuery, LIKELY_TO_BREACH_PERCENT, MAX_RISK_ROWS};
use openptl_app::{ApiError, App};
use openptl_rules::{ClockKind, PathwayId};

use crate::auth::Auth;
use crate::views::{check_known, one_site, period, trusts, view_at, with_position, Params};
use crate::{invalid, HttpError};

/// The parameters `GET /v1/forecast/{standard}` takes.
pub(crate) const FORECAST_PARAMS: &[&str] = &[
    "period",
    "trust",
    "alliance",
    "tumour_site",
    "as_of",
    "known_at",
    "min_position",
];

/// `GET /v1/forecast/{fds|d31|d62}?period=YYYY-MM&trust=&tumour_site=`.
pub async fn get_forecast(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    crate::PathText(standard): crate::PathText,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    check_known(&params, FORECAST_PARAMS)?;
    let standard = ClockKind::parse(&standard).ok_or(ApiError::NotFound)?;
    let (projection, position) = app
        .forecast(
            &view_at(&params)?,
            standard,
            period(&params)?,
            &trusts(&app, &params)?,
            one_site(&params)?,
            &principal,
        )
        .await?;
    Ok(Json(with_position(projection, position)?).into_response())
}

/// The parameters `GET /v1/breach-risks` takes.
pub(crate) const RISK_PARAMS: &[&str] = &[
    "trust",
    "alliance",
    "tumour_site",
    "clock",
    "pathway_id",
    "min_risk",
    "include_breached",
    "limit",
    "as_of",
    "known_at",
    "min_position",
];

/// Rows by default.
const DEFAULT_RISK_ROWS: usize = 100;

/// Pathways one request may name (a PTL page's rows).
const MAX_PATHWAYS: usize = 100;

fn risk_query(app: &App, params: &Params) -> Result<RiskQuery, ApiError> {
    check_known(params, RISK_PARAMS)?;
    let pathway_ids = match params.get("pathway_id") {
        None => None,
        Some(v) => {
            let ids = v
                .split(',')
                .map(|id| PathwayId::parse(id).map(|p| p.as_str().to_string()))
                .collect::<Option<std::collections::HashSet<String>>>()
                .filter(|ids| ids.len() <= MAX_PATHWAYS)
                .ok_or_else(|| {
                    invalid(
                        "pathway_id",
                        format!("must be up to {MAX_PATHWAYS} comma-separated pathway ids"),
                    )
                })?;
            Some(ids)
        }
    };
    let clock = match params.get("clock") {
        None => None,
        Some(v) => Some(ClockKind::parse(v).ok_or_else(|| {
            invalid("clock", format!("must be one of {}", ClockKind::expected()))
        })?),
    };
    // Named pathways show all their clocks; the worklist the likely ones.
    let default_min = if pathway_ids.is_some() {
        0.0
    } else {
        LIKELY_TO_BREACH_PERCENT
    };
    let min_risk = crate::views::percent(params, "min_risk")?.unwrap_or(default_min);
    let include_breached = match params.get("include_breached").map(String::as_str) {
        None => pathway_ids.is_some(),
        Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(invalid("include_breached", "must be `true` or `false`")),
    };
    let limit = match params.get("limit") {
        None => DEFAULT_RISK_ROWS,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_RISK_ROWS).contains(n))
            .ok_or_else(|| {
                invalid(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_RISK_ROWS}"),
                )
            })?,
    };
    Ok(RiskQuery {
        at: view_at(params)?,
        trusts: trusts(app, params)?,
        tumour_site: one_site(params)?,
        clock,
        pathway_ids,
        min_risk,
        include_breached,
        limit,
    })
}

/// `GET /v1/breach-risks?min_risk=50&trust=&tumour_site=&clock=&pathway_id=`.
pub async fn get_breach_risks(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    let query = risk_query(&app, &params)?;
    let list = app.breach_risks(&query, &principal).await?;
    Ok(Json(list).into_response())
}

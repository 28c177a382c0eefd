//! `GET /v1/forecast/{fds|d31|d62}` (issue 24): a standard's projected
//! month-end figure with its 80% interval, overall, by trust and by tumour
//! site, for the trusts asked for and the caller may see. Parameters are
//! the standards view's; a past `as_of` projects with only what was known
//! then.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openptl_app::{ApiError, App};
use openptl_rules::ClockKind;

use crate::auth::Auth;
use crate::views::{check_known, one_site, period, trusts, view_at, with_position, Params};
use crate::HttpError;

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
    Path(standard): Path<String>,
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

//! `GET /v1/milestones/pathways` (decision 190): the pathways behind a
//! figure of the milestone view, one tumour site's milestone and status,
//! as JSON or CSV, with the view's filters and moment.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use openptl_app::{App, MilestonePathway, MilestoneQuery, MILESTONE_COLUMNS};
use openptl_rules::MilestoneStatus;
use serde_json::json;

use crate::auth::Auth;
use crate::views::{
    check_known, csv_file_name, one_site, period, trusts, view_at, wants_csv, Params,
};
use crate::{invalid, ApiError, HttpError};

const PARAMS: &[&str] = &[
    "tumour_site",
    "milestone",
    "status",
    "period",
    "trust",
    "alliance",
    "as_of",
    "known_at",
    "min_position",
    "format",
    "offset",
    "limit",
];

fn query(app: &App, params: &Params) -> Result<MilestoneQuery, ApiError> {
    check_known(params, PARAMS)?;
    let tumour_site = one_site(params)?.ok_or_else(|| {
        invalid(
            "tumour_site",
            "is required: milestones are a tumour site's (SPEC 2.9)",
        )
    })?;
    let milestone = params
        .get("milestone")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            invalid(
                "milestone",
                "is required: the name of one of the site's milestones",
            )
        })?
        .clone();
    let status = params
        .get("status")
        .map(|s| {
            MilestoneStatus::parse(s).ok_or_else(|| {
                invalid(
                    "status",
                    format!("must be one of {}", MilestoneStatus::expected()),
                )
            })
        })
        .transpose()?;
    Ok(MilestoneQuery {
        at: view_at(params)?,
        period: period(params)?,
        trusts: trusts(app, params)?,
        tumour_site,
        milestone,
        status,
    })
}

/// `GET /v1/milestones/pathways`.
pub async fn get_milestone_pathways(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    let query = query(&app, &params)?;
    let csv = wants_csv(&headers, &params)?;
    let page = crate::clocks::page(&params)?;
    let (lines, position) = app.milestone_pathways(&query, &principal, page).await?;
    let csv = csv.then(|| (MILESTONE_COLUMNS.to_vec(), file_name(&query, page)));
    let head = serde_json::Map::from_iter([
        ("tumour_site".into(), json!(query.tumour_site)),
        ("milestone".into(), json!(query.milestone)),
        ("status".into(), json!(query.status)),
        ("period".into(), json!(query.period)),
        ("position".into(), json!(position)),
    ]);
    crate::clocks::list_response(&app, lines, page, csv, MilestonePathway::items, head).await
}

/// The CSV file's name: the site, milestone, status, month, trusts and
/// moment, so files of different lists never share a name.
fn file_name(query: &MilestoneQuery, page: openptl_app::Page) -> String {
    let mut parts = vec![query.tumour_site.to_string(), query.milestone.clone()];
    parts.extend(query.status.map(|s| s.to_string()));
    parts.extend(query.period.map(|p| p.to_string()));
    if let Some(trusts) = &query.trusts.0 {
        let mut trusts: Vec<&str> = trusts.iter().map(String::as_str).collect();
        trusts.sort_unstable();
        parts.push(trusts.join("+"));
    }
    parts.extend(query.at.as_of.map(|d| format!("as-of-{d}")));
    parts.extend(
        query
            .at
            .known_at
            .map(|t| format!("known-at-{}", t.format("%Y%m%dT%H%M%SZ"))),
    );
    parts.extend(crate::clocks::lines_part(page));
    csv_file_name(parts, "pathways")
}

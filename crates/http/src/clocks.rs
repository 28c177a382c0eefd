//! `GET /v1/standards/{standard}/clocks` (decision 187): the clocks behind
//! a figure of the standards view, as JSON or CSV. It takes the standards
//! view's parameters, and one per split of its report (`outcome`, and
//! `fds_outcome` for the FDS, `treatment` and `modality` for the 31-day
//! standard), so any figure the report shows has its list.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use openptl_app::{App, AppError, ClockLine, Failure, Page};
use openptl_rules::counted::{ClockFilter, ClockOutcome, FdsOutcome};
use openptl_rules::{ClockKind, ExclusionReason, ModalityGroup, TreatmentGroup};
use serde_json::json;

use crate::auth::Auth;
use crate::csv::Csv;
use crate::views::{
    check_known, csv_file_name, csv_response, one_site, period, trusts, view_at, wants_csv, Params,
};
use crate::{invalid, ApiError, HttpError};

const PARAMS: &[&str] = &[
    "period",
    "trust",
    "alliance",
    "tumour_site",
    "outcome",
    "fds_outcome",
    "treatment",
    "modality",
    "exclusion_reason",
    "as_of",
    "known_at",
    "min_position",
    "format",
    "offset",
    "limit",
];

/// One code of a vocabulary, for a parameter that applies to `applies`
/// standards only (named in `which` when refused).
fn code<T>(
    params: &Params,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
    expected: String,
    standard: ClockKind,
    applies: Option<(ClockKind, &str)>,
) -> Result<Option<T>, ApiError> {
    let Some(value) = params.get(name) else {
        return Ok(None);
    };
    if let Some((only, which)) = applies {
        if standard != only {
            return Err(invalid(name, format!("applies only to {which}")));
        }
    }
    parse(value)
        .map(Some)
        .ok_or_else(|| invalid(name, format!("must be one of {expected}")))
}

fn filter(params: &Params, standard: ClockKind) -> Result<ClockFilter, ApiError> {
    let filter = ClockFilter {
        tumour_site: one_site(params)?,
        outcome: code(
            params,
            "outcome",
            ClockOutcome::parse,
            ClockOutcome::expected(),
            standard,
            None,
        )?,
        fds_outcome: code(
            params,
            "fds_outcome",
            FdsOutcome::parse,
            FdsOutcome::expected(),
            standard,
            Some((ClockKind::Fds, "the FDS (`/v1/standards/fds/clocks`)")),
        )?,
        treatment: code(
            params,
            "treatment",
            TreatmentGroup::parse,
            TreatmentGroup::expected(),
            standard,
            Some((
                ClockKind::D31,
                "the 31-day standard (`/v1/standards/d31/clocks`)",
            )),
        )?,
        modality: code(
            params,
            "modality",
            ModalityGroup::parse,
            ModalityGroup::expected(),
            standard,
            Some((
                ClockKind::D31,
                "the 31-day standard (`/v1/standards/d31/clocks`)",
            )),
        )?,
        exclusion_reason: code(
            params,
            "exclusion_reason",
            ExclusionReason::parse,
            ExclusionReason::expected(),
            standard,
            Some((ClockKind::Fds, "the FDS (`/v1/standards/fds/clocks`)")),
        )?,
    };
    if filter.exclusion_reason.is_some()
        && filter.outcome.is_some_and(|o| o != ClockOutcome::Excluded)
    {
        return Err(invalid(
            "exclusion_reason",
            "lists excluded clocks: leave `outcome` out or set it to `excluded`",
        ));
    }
    if filter.outcome == Some(ClockOutcome::Excluded) && standard != ClockKind::Fds {
        return Err(invalid(
            "outcome",
            "`excluded` applies only to the FDS (`/v1/standards/fds/clocks`): the 31-day and 62-day standards exclude no clock",
        ));
    }
    Ok(filter)
}

/// The name of a list's CSV file: the standard, the month, every filter
/// and the moment, so files of different lists never share a name.
fn file_name(
    standard: ClockKind,
    period: openptl_rules::Period,
    params: &Params,
    page: Page,
) -> String {
    let mut parts = vec![standard.to_string(), period.to_string()];
    // Every filter, in the order of the parameters.
    let filters = PARAMS.iter().filter(|name| {
        !matches!(
            **name,
            "period" | "as_of" | "known_at" | "min_position" | "format" | "offset" | "limit"
        )
    });
    for name in filters {
        if let Some(value) = params.get(*name) {
            parts.push(value.replace(',', "+"));
        }
    }
    if let Some(as_of) = params.get("as_of") {
        parts.push(format!("as-of-{as_of}"));
    }
    if let Some(known_at) = params.get("known_at") {
        parts.push(format!("known-at-{known_at}"));
    }
    parts.extend(lines_part(page));
    csv_file_name(parts, "clocks")
}

/// A page's part of a CSV file's name, `lines-1001-2000` (none for the
/// whole list): a page's file never takes the whole list's name.
pub(crate) fn lines_part(page: Page) -> Option<String> {
    (page != Page::default()).then(|| {
        let last = page
            .limit
            .map_or("end".to_string(), |limit| (page.offset + limit).to_string());
        format!("lines-{}-{last}", page.offset + 1)
    })
}

/// `GET /v1/standards/{standard}/clocks`.
pub async fn get_standard_clocks(
    State(app): State<Arc<App>>,
    Auth(principal): Auth,
    headers: HeaderMap,
    crate::PathText(standard): crate::PathText,
    Query(params): Query<Params>,
) -> Result<Response, HttpError> {
    check_known(&params, PARAMS)?;
    let standard = ClockKind::parse(&standard).ok_or(ApiError::NotFound)?;
    let filter = filter(&params, standard)?;
    let csv = wants_csv(&headers, &params)?;
    let page = page(&params)?;
    let (period, lines, position) = app
        .standard_clocks(
            &view_at(&params)?,
            standard,
            period(&params)?,
            &trusts(&app, &params)?,
            filter,
            &principal,
            page,
        )
        .await?;
    let csv = csv.then(|| {
        (
            ClockLine::columns(standard),
            file_name(standard, period, &params, page),
        )
    });
    // Shares are 0, ½ or 1 (SPEC 2.4): their sum is exact (`+ 0.0`: the
    // sum of no shares is -0.0).
    let share: f64 = lines.iter().map(|l| l.clock.share).sum::<f64>() + 0.0;
    // Why the lines and the figure may differ, over every line (a page
    // shows only some): a transferred pathway's 62-day outcome shared half
    // and half, or charged to one trust only (share 0 to the other).
    let shared = lines
        .iter()
        .filter(|l| l.clock.share > 0.0 && l.clock.share < 1.0)
        .count();
    let charged_elsewhere = lines
        .iter()
        .filter(|l| l.clock.share <= 0.0 && l.clock.outcome() != ClockOutcome::Excluded)
        .count();
    let head = serde_json::Map::from_iter([
        ("standard".into(), json!(standard)),
        ("period".into(), json!(period)),
        ("position".into(), json!(position)),
        ("share".into(), json!(share)),
        ("shared_lines".into(), json!(shared)),
        ("charged_elsewhere_lines".into(), json!(charged_elsewhere)),
    ]);
    list_response(&app, lines, page, csv, ClockLine::items, head).await
}

/// The most a list's `offset` or `limit` may say (a month's list at
/// alliance scale is some 300,000 lines).
const MAX_PAGE: usize = 100_000_000;

/// Which lines of a list a request asks for (decision 214): `offset`
/// lines passed over (default none), then at most `limit` (default all).
pub(crate) fn page(params: &Params) -> Result<Page, ApiError> {
    let number = |name: &str, least: usize| {
        params
            .get(name)
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (least..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            name,
                            format!("must be a whole number from {least} to {MAX_PAGE}"),
                        )
                    })
            })
            .transpose()
    };
    Ok(Page {
        offset: number("offset", 0)?.unwrap_or(0),
        limit: number("limit", 1)?,
    })
}

/// A list behind a figure (decisions 187, 190), written off the async
/// workers (a month's list at alliance scale is thousands of lines), the
/// lines `page` takes of it (the access log counted those): as CSV when
/// `csv` gives its columns and file name, a row a line by `items`; else
/// as JSON, `head`'s fields with `total` (every line of the list),
/// `offset`, `limit` and `rows`.
pub(crate) async fn list_response<L: serde::Serialize + Send + Sync + 'static>(
    app: &App,
    lines: Vec<L>,
    page: Page,
    csv: Option<(Vec<&'static str>, String)>,
    items: fn(&L) -> Vec<String>,
    mut head: serde_json::Map<String, serde_json::Value>,
) -> Result<Response, HttpError> {
    head.insert("total".into(), json!(lines.len()));
    head.insert("offset".into(), json!(page.offset));
    head.insert("limit".into(), json!(page.limit));
    let lines = page.of(lines);
    if let Some((columns, name)) = csv {
        let body = app
            .off_workers(move || {
                let mut csv = Csv::new(&columns);
                for line in &lines {
                    csv.row(items(line));
                }
                csv.finish()
            })
            .await?;
        return Ok(csv_response(body, &name));
    }
    let pieces = app.off_workers(move || list_json(head, lines)).await??;
    Ok(crate::json_rows::response(pieces))
}

/// A list behind a figure as JSON: `head`'s fields (an object), `total`
/// (the lines', unless `head` gives it) and `rows`, as pieces in order,
/// the rows written on every core and sent as they are (`openptl bench
/// --views` times it so). The lines are freed on a thread of their own
/// once written.
pub fn list_json<L: serde::Serialize + Send + Sync + 'static>(
    mut head: serde_json::Map<String, serde_json::Value>,
    lines: Vec<L>,
) -> Result<Vec<Vec<u8>>, AppError> {
    debug_assert!(!head.contains_key("rows"), "the rows follow the head");
    head.entry("total").or_insert_with(|| json!(lines.len()));
    let pieces = crate::json_rows::object_with_rows(&head, &lines, LIST_SLICE);
    openptl_app::drop_later(lines);
    pieces.map_err(|e| AppError::Internal(Failure::caused_by("a list as JSON", e)))
}

/// Lines of a list a core writes at a time.
const LIST_SLICE: usize = 8192;

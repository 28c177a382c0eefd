//! The clocks behind a standards figure (decision 187): `GET
//! /v1/standards/{standard}/clocks` lists, pathway by pathway, what a
//! figure of `GET /v1/standards/{standard}` counts, with the same filters
//! and the same moment (`as_of`, `known_at`), so a cancer manager can open
//! the 40 breaches behind "71.4%" and check each one. The lines come from
//! the contributions the figures add up
//! ([`openptl_rules::counted::counted_clocks`]), through the same states a
//! standards view reads.

use openptl_rules::counted::{counted_clocks, ClockFilter, ClockOutcome, CountedClock};
use openptl_rules::{ClockKind, PathwayState, Period};
use serde::ser::SerializeMap;
use serde::Serialize;

use crate::access::Principal;
use crate::lists::{Indexed, Page, PatientLine};
use crate::past::Shown;
use crate::views::{forbidden, TrustFilter, ViewAt};
use crate::{App, AppError};

/// One clock a figure counts, with its pathway's identifiers (the NHS
/// number masked for roles that may not see it). Its `Debug` leaves the
/// NHS number out, so no log line or panic can print it.
#[derive(Clone)]
pub struct ClockLine {
    pub pathway_id: String,
    pub nhs_number: String,
    pub clock: CountedClock,
}

impl PatientLine for ClockLine {
    /// [`line_order`]'s first keys, then the pathway id's first 16 bytes.
    type Key = (u8, bool, std::cmp::Reverse<i64>, u128);

    fn nhs_number(&mut self) -> &mut String {
        &mut self.nhs_number
    }

    fn key(&self) -> Self::Key {
        let c = &self.clock;
        (
            rank(c.outcome()),
            c.share == 0.0,
            std::cmp::Reverse(c.days),
            crate::fold::leading_bytes(&self.pathway_id),
        )
    }
}

impl std::fmt::Debug for ClockLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockLine")
            .field("pathway_id", &self.pathway_id)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// The columns of every standard's list, then those of the FDS and of the
/// 31-day standard: what [`ClockLine::items`] gives, in order.
const COLUMNS: [&str; 15] = [
    "pathway_id",
    "nhs_number",
    "trust",
    "current_trust",
    "tumour_site",
    "route",
    "referred_on",
    "outcome",
    "share",
    "start",
    "stop",
    "stop_reason",
    "adjustment_days",
    "days",
    "target_days",
];
const FDS_COLUMNS: [&str; 2] = ["fds_outcome", "exclusion_reason"];
const D31_COLUMNS: [&str; 5] = [
    "treatment",
    "modality_group",
    "modality",
    "plan_id",
    "start_reason",
];
const D62_COLUMNS: [&str; 1] = ["allocation"];

impl ClockLine {
    /// The columns every standard's list has.
    pub fn common_columns() -> &'static [&'static str] {
        &COLUMNS
    }

    /// The names of a list's columns for `standard`.
    pub fn columns(standard: ClockKind) -> Vec<&'static str> {
        let extra: &[&str] = match standard {
            ClockKind::Fds => &FDS_COLUMNS,
            ClockKind::D31 => &D31_COLUMNS,
            ClockKind::D62 => &D62_COLUMNS,
        };
        COLUMNS.iter().chain(extra).copied().collect()
    }

    /// Its fields as text, in the order of [`ClockLine::columns`] (an
    /// empty field where it holds nothing).
    pub fn items(&self) -> Vec<String> {
        let c = &self.clock;
        let date = |d: Option<chrono::NaiveDate>| d.map(openptl_rules::date::format);
        let mut items = vec![
            self.pathway_id.clone(),
            self.nhs_number.clone(),
            c.trust().as_str().to_string(),
            c.current_trust.as_str().to_string(),
            c.tumour_site().as_str().to_string(),
            c.route.as_str().to_string(),
            openptl_rules::date::format(c.referred_on),
            c.outcome().as_str().to_string(),
            c.share.to_string(),
            date(c.start).unwrap_or_default(),
            date(c.stop).unwrap_or_default(),
            c.stop_reason.map(|r| r.as_str()).unwrap_or_default().into(),
            c.adjustment_days.to_string(),
            c.days.to_string(),
            c.target_days.to_string(),
        ];
        match c.key.standard {
            ClockKind::Fds => {
                items.push(
                    c.fds_outcome()
                        .map(|o| o.as_str())
                        .unwrap_or_default()
                        .into(),
                );
                items.push(
                    c.exclusion_reason()
                        .map(|r| r.as_str())
                        .unwrap_or_default()
                        .into(),
                );
            }
            ClockKind::D31 => {
                let (group, modality_group) = c.treatment().unzip();
                items.push(group.map(|g| g.as_str()).unwrap_or_default().into());
                items.push(
                    modality_group
                        .map(|g| g.as_str())
                        .unwrap_or_default()
                        .into(),
                );
                items.push(c.modality.map(|m| m.as_str()).unwrap_or_default().into());
                items.push(c.plan_id.as_deref().unwrap_or_default().into());
                items.push(
                    c.start_reason
                        .map(|r| r.as_str())
                        .unwrap_or_default()
                        .into(),
                );
            }
            ClockKind::D62 => items.push(
                c.allocation
                    .iter()
                    .flatten()
                    .map(|a| format!("{} {}", a.trust.as_str(), a.share))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
        items
    }
}

impl Serialize for ClockLine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = &self.clock;
        let date = |d: Option<chrono::NaiveDate>| d.map(openptl_rules::date::format);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("pathway_id", &self.pathway_id)?;
        map.serialize_entry("nhs_number", &self.nhs_number)?;
        map.serialize_entry("trust", c.trust().as_str())?;
        map.serialize_entry("current_trust", c.current_trust.as_str())?;
        map.serialize_entry("tumour_site", &c.tumour_site())?;
        map.serialize_entry("route", &c.route)?;
        map.serialize_entry("referred_on", &openptl_rules::date::format(c.referred_on))?;
        map.serialize_entry("outcome", &c.outcome())?;
        map.serialize_entry("share", &c.share)?;
        map.serialize_entry("start", &date(c.start))?;
        map.serialize_entry("stop", &date(c.stop))?;
        map.serialize_entry("stop_reason", &c.stop_reason)?;
        map.serialize_entry("adjustment_days", &c.adjustment_days)?;
        map.serialize_entry("days", &c.days)?;
        map.serialize_entry("target_days", &c.target_days)?;
        match c.key.standard {
            ClockKind::Fds => {
                map.serialize_entry("fds_outcome", &c.fds_outcome())?;
                map.serialize_entry("exclusion_reason", &c.exclusion_reason())?;
            }
            ClockKind::D31 => {
                let (group, modality_group) = c.treatment().unzip();
                map.serialize_entry("treatment", &group)?;
                map.serialize_entry("modality_group", &modality_group)?;
                map.serialize_entry("modality", &c.modality)?;
                map.serialize_entry("plan_id", &c.plan_id.as_deref())?;
                map.serialize_entry("start_reason", &c.start_reason)?;
            }
            ClockKind::D62 => map.serialize_entry("allocation", &c.allocation)?,
        }
        map.end()
    }
}

/// The order of a list: breaches first, then the clocks within target,
/// then the excluded; the trust's share before a transferred pathway's
/// outcome charged to another trust (share 0); the longest waits first;
/// then by pathway and trust.
fn line_order(a: &ClockLine, b: &ClockLine) -> std::cmp::Ordering {
    let (x, y) = (&a.clock, &b.clock);
    rank(x.outcome())
        .cmp(&rank(y.outcome()))
        .then_with(|| (x.share == 0.0).cmp(&(y.share == 0.0)))
        .then_with(|| y.days.cmp(&x.days))
        .then_with(|| a.pathway_id.cmp(&b.pathway_id))
        .then_with(|| x.key.cmp(&y.key))
        .then_with(|| x.stop.cmp(&y.stop))
        .then_with(|| x.plan_id.cmp(&y.plan_id))
}

/// Where an outcome comes in a list: breaches first, then the clocks
/// within target, then the excluded.
fn rank(outcome: ClockOutcome) -> u8 {
    match outcome {
        ClockOutcome::Breached => 0,
        ClockOutcome::WithinTarget => 1,
        ClockOutcome::Excluded => 2,
    }
}

impl App {
    /// The clocks `standard`'s figures for `period` count (SPEC 4.4's
    /// standards view, decision 187), of the trusts asked for and the
    /// principal's, that `filter` keeps: breaches first, longest waits
    /// first. Lists patients, so a role that may not read them is refused;
    /// the access log records the lines `page` takes of them (the whole
    /// list is returned: its figures are the whole list's).
    #[allow(clippy::too_many_arguments)]
    pub async fn standard_clocks(
        &self,
        at: &ViewAt,
        standard: ClockKind,
        period: Option<Period>,
        trusts: &TrustFilter,
        filter: ClockFilter,
        principal: &Principal,
        page: Page,
    ) -> Result<(Period, Vec<ClockLine>, u64), AppError> {
        if !principal.reads_patients() {
            return Err(forbidden(principal, "the list names patients"));
        }
        let (trusts, as_of) = self.view_scope(at, trusts, principal).await;
        let period = period.unwrap_or_else(|| Period::of(as_of));
        let site = filter.tumour_site;
        let add = move |lines: &mut Vec<ClockLine>, id: &str, state: &PathwayState| {
            counted_clocks(
                state,
                standard,
                period,
                &|t| trusts.allows(t),
                &filter,
                &mut |clock| {
                    lines.push(ClockLine {
                        pathway_id: id.to_string(),
                        nhs_number: state.nhs_number.as_str().to_string(),
                        clock,
                    })
                },
            );
        };
        // Today, this month's and last month's lists read only the
        // pathways with CWT records in the month (every month a pathway
        // counts in a standard holds some); a list of another moment
        // passes over the states without records in it (decision 211),
        // and, of one tumour site, over those of other sites (a clock's
        // site is its pathway's: decision 213).
        let (lines, position) = self
            .patient_list(
                (as_of, at.known_at),
                Shown::period(period),
                Some(Indexed::CwtRecords(period)),
                site,
                principal,
                page,
                "standards_clocks",
                add,
                line_order,
            )
            .await?;
        Ok((period, lines, position))
    }
}

//! The pathways behind a milestone figure (decision 190): `GET
//! /v1/milestones/pathways` lists, for one tumour site's milestone and
//! status, the pathways `GET /v1/milestones` counts there, with the same
//! filters and moment, so a manager can open the 12 missed "diagnosis by
//! day 28" and chase each. The lines come from the rules crate's
//! [`openptl_rules::milestone_list::milestone_line`], through the same
//! states the milestone view reads.

use openptl_rules::milestone_list::{milestone_line, MilestoneFilter, MilestoneLine};
use openptl_rules::{MilestoneStatus, PathwayState, Period, TumourSite};
use serde::ser::SerializeMap;
use serde::Serialize;

use crate::access::Principal;
use crate::lists::{Indexed, Page, PatientLine};
use crate::past::Shown;
use crate::views::{forbidden, TrustFilter, ViewAt};
use crate::{App, AppError};

/// One pathway's milestone, with its identifiers (the NHS number masked
/// for roles that may not see it). Its `Debug` leaves the NHS number out.
#[derive(Clone)]
pub struct MilestonePathway {
    pub pathway_id: String,
    pub nhs_number: String,
    pub line: MilestoneLine,
}

impl PatientLine for MilestonePathway {
    /// [`line_order`]'s keys, the pathway id's first 16 bytes for the id.
    type Key = (std::cmp::Reverse<Option<i64>>, chrono::NaiveDate, u128);

    fn nhs_number(&mut self) -> &mut String {
        &mut self.nhs_number
    }

    fn key(&self) -> Self::Key {
        (
            std::cmp::Reverse(self.line.days_late),
            self.line.milestone.due_date,
            crate::fold::leading_bytes(&self.pathway_id),
        )
    }
}

impl std::fmt::Debug for MilestonePathway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MilestonePathway")
            .field("pathway_id", &self.pathway_id)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

/// The columns of a list, in the order of [`MilestonePathway::items`].
pub const MILESTONE_COLUMNS: [&str; 13] = [
    "pathway_id",
    "nhs_number",
    "trust",
    "tumour_site",
    "route",
    "referred_on",
    "milestone",
    "due_day",
    "due_date",
    "met_on",
    "status",
    "days_late",
    "fds_status",
];

impl MilestonePathway {
    /// Its fields as text, in the order of [`MILESTONE_COLUMNS`].
    pub fn items(&self) -> Vec<String> {
        let l = &self.line;
        let m = &l.milestone;
        vec![
            self.pathway_id.clone(),
            self.nhs_number.clone(),
            l.key.trust.as_str().to_string(),
            l.key.site.as_str().to_string(),
            l.route.as_str().to_string(),
            openptl_rules::date::format(l.referred_on),
            m.name.to_string(),
            m.due_day.to_string(),
            openptl_rules::date::format(m.due_date),
            m.met_on
                .map(openptl_rules::date::format)
                .unwrap_or_default(),
            m.status.as_str().to_string(),
            l.days_late.map(|d| d.to_string()).unwrap_or_default(),
            l.fds_status.as_str().to_string(),
        ]
    }
}

impl Serialize for MilestonePathway {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let l = &self.line;
        let m = &l.milestone;
        let mut map = s.serialize_map(Some(MILESTONE_COLUMNS.len()))?;
        map.serialize_entry("pathway_id", &self.pathway_id)?;
        map.serialize_entry("nhs_number", &self.nhs_number)?;
        map.serialize_entry("trust", l.key.trust.as_str())?;
        map.serialize_entry("tumour_site", &l.key.site)?;
        map.serialize_entry("route", &l.route)?;
        map.serialize_entry("referred_on", &openptl_rules::date::format(l.referred_on))?;
        map.serialize_entry("milestone", &*m.name)?;
        map.serialize_entry("due_day", &m.due_day)?;
        map.serialize_entry("due_date", &openptl_rules::date::format(m.due_date))?;
        map.serialize_entry("met_on", &m.met_on.map(openptl_rules::date::format))?;
        map.serialize_entry("status", &m.status)?;
        map.serialize_entry("days_late", &l.days_late)?;
        map.serialize_entry("fds_status", &l.fds_status)?;
        map.end()
    }
}

/// The order of a list: the latest first (days late, most first), then by
/// due date and pathway.
fn line_order(a: &MilestonePathway, b: &MilestonePathway) -> std::cmp::Ordering {
    let (x, y) = (&a.line, &b.line);
    y.days_late
        .cmp(&x.days_late)
        .then_with(|| x.milestone.due_date.cmp(&y.milestone.due_date))
        .then_with(|| a.pathway_id.cmp(&b.pathway_id))
}

/// What a milestone list shows: a tumour site's milestone (by name), its
/// status if given, pathways referred in `period` (all when `None`).
#[derive(Debug, Clone)]
pub struct MilestoneQuery {
    pub at: ViewAt,
    pub period: Option<Period>,
    pub trusts: TrustFilter,
    pub tumour_site: TumourSite,
    pub milestone: String,
    pub status: Option<MilestoneStatus>,
}

impl App {
    /// The pathways the milestone view counts at `query`'s tumour site,
    /// milestone and status (decision 190), the latest first. Lists
    /// patients, so a role that may not read them is refused; a milestone
    /// the site's template does not have is an invalid query naming it.
    /// The access log records the lines `page` takes of them (the whole
    /// list is returned).
    pub async fn milestone_pathways(
        &self,
        query: &MilestoneQuery,
        principal: &Principal,
        page: Page,
    ) -> Result<(Vec<MilestonePathway>, u64), AppError> {
        if !principal.reads_patients() {
            return Err(forbidden(principal, "the list names patients"));
        }
        let template: Vec<&str> = self
            .config
            .template_for(query.tumour_site)
            .milestone
            .iter()
            .map(|m| &*m.name)
            .collect();
        if !template.contains(&query.milestone.as_str()) {
            return Err(AppError::InvalidQuery {
                field: "milestone".into(),
                problem: format!(
                    "is not a milestone of {}: {}",
                    query.tumour_site,
                    template
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let (trusts, as_of) = self.view_scope(&query.at, &query.trusts, principal).await;
        let shown = query.period.map_or(Shown::All, Shown::period);
        let (config, site, name, status, referred) = (
            self.config.clone(),
            query.tumour_site,
            query.milestone.clone(),
            query.status,
            query.period,
        );
        let add = move |lines: &mut Vec<MilestonePathway>, id: &str, state: &PathwayState| {
            let filter = MilestoneFilter {
                tumour_site: site,
                milestone: &name,
                status,
                referred,
            };
            if let Some(line) = milestone_line(state, &filter, &|t| trusts.allows(t), &config) {
                lines.push(MilestonePathway {
                    pathway_id: id.to_string(),
                    nhs_number: state.nhs_number.as_str().to_string(),
                    line,
                });
            }
        };
        // A pending or overdue milestone is one of a pathway today's
        // aggregates hold undecided (decision 201).
        let undecided = query.status.is_some_and(MilestoneStatus::is_undecided);
        self.patient_list(
            (as_of, query.at.known_at),
            shown,
            undecided.then_some(Indexed::MilestoneUndecided),
            // Lines come only from the site's pathways (`milestone_line`).
            Some(query.tumour_site),
            principal,
            page,
            "milestone_pathways",
            add,
            line_order,
        )
        .await
    }
}

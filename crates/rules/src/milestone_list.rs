//! The pathways behind a milestone figure (decision 190): "Diagnosis by
//! day 28: 12 missed" at a tumour site opens the 12 pathways. A line is a
//! pathway the milestone view counts ([`tally::milestones_contribution`]:
//! its referral month, current trust and tumour site), with the one
//! milestone asked for, so the lines of a status add up to the figure the
//! report shows for that site, milestone and status.

use chrono::NaiveDate;

use crate::codes::*;
use crate::config::RulesConfig;
use crate::pathway::{Milestone, PathwayState};
use crate::report::Period;
use crate::tally::{self, MilestonesKey};

/// One pathway's milestone, as the milestone view counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct MilestoneLine {
    /// Where the pathway is counted: its referral month, current trust and
    /// tumour site.
    pub key: MilestonesKey,
    pub route: Route,
    pub referred_on: NaiveDate,
    pub milestone: Milestone,
    /// How many days after its due date it was met (missed), or is still
    /// not met as of the view's date (overdue); `None` otherwise (a
    /// milestone missed because the FDS clock stopped without it).
    pub days_late: Option<i64>,
    /// The FDS clock's status (a milestone of a stopped clock is settled).
    pub fds_status: ClockStatus,
}

/// Which pathways to list: the milestone (by name) of a tumour site's
/// template, and optionally its status, the referral month, the trusts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MilestoneFilter<'a> {
    pub tumour_site: TumourSite,
    pub milestone: &'a str,
    pub status: Option<MilestoneStatus>,
    /// The referral month (every month when `None`), as the view's `period`.
    pub referred: Option<Period>,
}

/// The line of a pathway for `filter`, if the milestone view counts it
/// there (of the trusts `trust_visible` admits).
pub fn milestone_line(
    state: &PathwayState,
    filter: &MilestoneFilter<'_>,
    trust_visible: &dyn Fn(&str) -> bool,
    config: &RulesConfig,
) -> Option<MilestoneLine> {
    if state.tumour_site != filter.tumour_site || state.milestones.is_empty() {
        return None;
    }
    let (key, tally) = tally::milestones_contribution(state, config)?;
    if tally.pathways == 0
        || filter.referred.is_some_and(|p| key.referred != p)
        || !trust_visible(key.trust.as_str())
    {
        return None;
    }
    let milestone = state
        .milestones
        .iter()
        .find(|m| &*m.name == filter.milestone)?;
    if filter.status.is_some_and(|s| milestone.status != s) {
        return None;
    }
    let late = |until: NaiveDate| (until - milestone.due_date).num_days();
    let days_late = match milestone.status {
        MilestoneStatus::Missed => milestone.met_on.map(late),
        MilestoneStatus::Overdue => Some(late(state.as_of)),
        _ => None,
    };
    Some(MilestoneLine {
        key,
        route: state.route,
        referred_on: state.referred_on,
        milestone: milestone.clone(),
        days_late,
        fds_status: state.clocks.fds.status,
    })
}

//! PTL conventions (SPEC 2.10): the wait band, the RAG colour, and the one
//! row per open pathway that every PTL view (API, CSV, dashboard, weekly
//! return) is built from.

use chrono::NaiveDate;
use serde::Serialize;

use crate::codes::*;
use crate::config::{RagBands, RulesConfig};
use crate::pathway::{Clock, PathwayState};
use crate::period::TreatmentPeriod;

code_enum!(
    /// Wait band on the 62-day clock (SPEC 2.10).
    WaitBand { UpTo28 = "0-28", From29To62 = "29-62", From63To104 = "63-104", From105 = "105+" }
);

code_enum!(
    /// RAG colour of a PTL row, from best to worst (the order matters: `max` is the worst).
    Rag { Green = "green", Amber = "amber", Red = "red", Black = "black" }
);

impl WaitBand {
    /// The band of a wait of `days` days.
    pub fn of_days(days: i64) -> WaitBand {
        match days {
            i64::MIN..=28 => WaitBand::UpTo28,
            29..=62 => WaitBand::From29To62,
            63..=104 => WaitBand::From63To104,
            _ => WaitBand::From105,
        }
    }

    /// Part of the >62-day backlog.
    pub fn is_backlog(self) -> bool {
        matches!(self, WaitBand::From63To104 | WaitBand::From105)
    }
}

impl Rag {
    /// The colour of a wait of `days` days in the given bands.
    pub fn of_days(days: i64, bands: &RagBands) -> Rag {
        if days <= bands.green {
            Rag::Green
        } else if days <= bands.amber {
            Rag::Amber
        } else if days <= bands.red {
            Rag::Red
        } else {
            Rag::Black
        }
    }
}

/// The next milestone of a PTL row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextMilestone {
    pub name: std::sync::Arc<str>,
    #[serde(with = "crate::date")]
    pub due_date: NaiveDate,
    pub status: MilestoneStatus,
}

/// One row of the PTL (SPEC 4.4), derived from a pathway's state. Identifiers
/// (`pathway_id`, NHS number) are added by the caller, who knows who asks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PtlRow {
    pub trust: String,
    pub tumour_site: TumourSite,
    pub route: Route,
    #[serde(with = "crate::date")]
    pub referred_on: NaiveDate,
    pub status: PathwayStatus,
    pub fds_status: ClockStatus,
    /// Days waited on the FDS clock, when it has started (running or stopped).
    pub fds_days: Option<i64>,
    pub d62_status: ClockStatus,
    pub d62_days: Option<i64>,
    pub d31_status: ClockStatus,
    pub d31_days: Option<i64>,
    /// Band of the 62-day wait while that clock runs.
    pub band: Option<WaitBand>,
    pub rag: Rag,
    pub next_milestone: Option<NextMilestone>,
    pub milestone_overdue: bool,
    /// Days waited on the longest-running subsequent treatment period (SPEC 2.12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subsequent_days: Option<i64>,
    /// That period: its plan, modality, status and first breach day. A
    /// pathway waiting for a subsequent treatment is on the
    /// `subsequent_treatment` worklist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subsequent: Option<WaitingPeriod>,
    pub next_breach_clock: Option<ClockKind>,
    /// The subsequent period of the next breach, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_breach_plan_id: Option<String>,
    #[serde(with = "crate::date::option")]
    pub next_breach_date: Option<NaiveDate>,
    pub transferred: bool,
    #[serde(with = "crate::date::option")]
    pub handover_date: Option<NaiveDate>,
    pub decision_to_treat: bool,
    pub fit_band: FitBand,
    /// Lower GI pathways: how far the colonoscopy went (`requested`,
    /// `performed`), for the `fit_below_10` worklist (issue 25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colonoscopy: Option<crate::fit::TestStage>,
    pub last_note: Option<String>,
    pub next_action: Option<String>,
    #[serde(with = "crate::date::option")]
    pub next_action_due: Option<NaiveDate>,
    pub next_action_overdue: bool,
    pub owner: Option<String>,
    pub escalated: bool,
}

/// The subsequent treatment period a PTL row waits for (SPEC 2.12).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitingPeriod {
    pub plan_id: String,
    pub modality: Modality,
    /// `open` or `open_breached`.
    pub status: ClockStatus,
    pub days: i64,
    #[serde(with = "crate::date::option")]
    pub breach_date: Option<NaiveDate>,
    /// Subsequent periods running on the pathway (usually one).
    pub running: usize,
}

impl WaitingPeriod {
    /// The longest-running subsequent period of a pathway (on a tie, the
    /// first to breach, then the first by plan), if any runs.
    pub fn of(state: &PathwayState) -> Option<WaitingPeriod> {
        let running: Vec<&TreatmentPeriod> = state
            .treatment_periods
            .iter()
            .filter(|p| p.treatment == TreatmentKind::Subsequent && p.clock.status.is_running())
            .collect();
        let longest = running.iter().min_by(|a, b| {
            (std::cmp::Reverse(a.clock.days), a.breach_date(), &a.plan_id).cmp(&(
                std::cmp::Reverse(b.clock.days),
                b.breach_date(),
                &b.plan_id,
            ))
        })?;
        Some(WaitingPeriod {
            plan_id: longest.plan_id.as_deref().unwrap_or_default().to_string(),
            modality: longest.modality,
            status: longest.clock.status,
            days: longest.clock.days,
            breach_date: longest.breach_date(),
            running: running.len(),
        })
    }
}

fn running_days(clock: &Clock) -> Option<i64> {
    clock.status.is_running().then_some(clock.days)
}

fn started_days(clock: &Clock) -> Option<i64> {
    clock.start.map(|_| clock.days).filter(|_| {
        !matches!(
            clock.status,
            ClockStatus::Excluded | ClockStatus::NotApplicable | ClockStatus::NotStarted
        )
    })
}

impl PtlRow {
    /// The PTL row of a pathway, or `None` when it is not on the PTL (no
    /// clock running).
    pub fn of(state: &PathwayState, config: &RulesConfig) -> Option<PtlRow> {
        if !state.on_ptl {
            return None;
        }
        let clocks = &state.clocks;
        let rag_bands = &config.rag;
        let subsequent = WaitingPeriod::of(state);
        let subsequent_days = subsequent.as_ref().map(|p| p.days);
        let mut rag = [
            running_days(&clocks.fds).map(|d| Rag::of_days(d, &rag_bands.fds)),
            running_days(&clocks.d62).map(|d| Rag::of_days(d, &rag_bands.d62)),
        ]
        .into_iter()
        .flatten()
        .max()
        // Only 31-day clocks run (ours): colour them by their own bands.
        .or_else(|| {
            [running_days(&clocks.d31), subsequent_days]
                .into_iter()
                .flatten()
                .max()
                .map(|d| Rag::of_days(d, &rag_bands.d31))
        })
        .unwrap_or(Rag::Green);
        let milestone_overdue = state
            .milestones
            .iter()
            .any(|m| m.status == MilestoneStatus::Overdue);
        if milestone_overdue {
            rag = rag.max(Rag::Red);
        }
        let note = state.last_note.as_ref();
        let next_action_due = note.and_then(|n| n.next_action.as_ref().and(n.next_action_due));
        Some(PtlRow {
            trust: state.trust.as_str().to_string(),
            tumour_site: state.tumour_site,
            route: state.route,
            referred_on: state.referred_on,
            status: state.status,
            fds_status: clocks.fds.status,
            fds_days: started_days(&clocks.fds),
            d62_status: clocks.d62.status,
            d62_days: started_days(&clocks.d62),
            d31_status: clocks.d31.status,
            d31_days: started_days(&clocks.d31),
            band: running_days(&clocks.d62).map(WaitBand::of_days),
            rag,
            next_milestone: state.next_milestone().map(|m| NextMilestone {
                name: m.name.clone(),
                due_date: m.due_date,
                status: m.status,
            }),
            milestone_overdue,
            subsequent_days,
            subsequent,
            next_breach_clock: state.next_breach.as_ref().map(|b| b.clock),
            next_breach_plan_id: state
                .next_breach
                .as_ref()
                .and_then(|b| b.plan_id.as_deref().map(str::to_string)),
            next_breach_date: state.next_breach.as_ref().map(|b| b.date),
            transferred: state.transferred,
            handover_date: state.transferred.then_some(state.handover_date).flatten(),
            decision_to_treat: clocks.d31.start.is_some(),
            fit_band: state.fit_band,
            colonoscopy: (state.tumour_site == TumourSite::LowerGi)
                .then(|| state.lower_gi.colonoscopy())
                .flatten(),
            last_note: note.map(|n| n.text.clone()),
            next_action: note.and_then(|n| n.next_action.clone()),
            next_action_due,
            next_action_overdue: next_action_due.is_some_and(|due| due < state.as_of),
            owner: note.and_then(|n| n.owner.clone()),
            escalated: note.is_some_and(|n| n.escalated),
        })
    }

    /// Days waited for sorting "by days waited": the 62-day wait when that
    /// clock runs, else the FDS wait, else the longest 31-day wait (first or
    /// subsequent period).
    pub fn days_waited(&self) -> i64 {
        let running = |status: ClockStatus, days: Option<i64>| days.filter(|_| status.is_running());
        running(self.d62_status, self.d62_days)
            .or(running(self.fds_status, self.fds_days))
            .or(running(self.d31_status, self.d31_days).max(self.subsequent_days))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_split_at_the_spec_boundaries() {
        let cases = [
            (0, "0-28"),
            (28, "0-28"),
            (29, "29-62"),
            (62, "29-62"),
            (63, "63-104"),
            (104, "63-104"),
            (105, "105+"),
            (400, "105+"),
        ];
        for (days, band) in cases {
            assert_eq!(WaitBand::of_days(days).as_str(), band, "{days} days");
        }
        assert!(!WaitBand::of_days(62).is_backlog());
        assert!(WaitBand::of_days(63).is_backlog());
    }

    #[test]
    fn rag_follows_the_configured_bands() {
        let config = RulesConfig::defaults();
        let cases = [
            (7, Rag::Green, Rag::Green),
            (8, Rag::Amber, Rag::Green),
            (14, Rag::Amber, Rag::Green),
            (15, Rag::Red, Rag::Green),
            (20, Rag::Red, Rag::Green),
            (21, Rag::Red, Rag::Amber),
            (28, Rag::Red, Rag::Amber),
            (29, Rag::Black, Rag::Amber),
            (41, Rag::Black, Rag::Red),
            (62, Rag::Black, Rag::Red),
            (63, Rag::Black, Rag::Black),
        ];
        for (days, fds, d62) in cases {
            assert_eq!(Rag::of_days(days, &config.rag.fds), fds, "fds {days}");
            assert_eq!(Rag::of_days(days, &config.rag.d62), d62, "d62 {days}");
        }
    }
}

//! What the clock engine produces: a pathway's state (its clocks, treatment
//! periods, milestones, notes, transfers, status) as the pathway view and
//! every report read it.

use super::*;

/// One clock as the pathway view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Clock {
    pub status: ClockStatus,
    pub start: Option<NaiveDate>,
    pub stop: Option<NaiveDate>,
    pub stop_reason: Option<StopReason>,
    pub adjustment_days: i64,
    pub days: i64,
    pub target_days: i64,
    pub target_date: Option<NaiveDate>,
    pub allocation: Option<Vec<Allocation>>,
}

impl Clock {
    pub(crate) fn bare(status: ClockStatus, target_days: i64) -> Clock {
        Clock {
            status,
            start: None,
            stop: None,
            stop_reason: None,
            adjustment_days: 0,
            days: 0,
            target_days,
            target_date: None,
            allocation: None,
        }
    }

    /// The first day on which the clock is breached, while it runs.
    pub fn breach_date(&self) -> Option<NaiveDate> {
        if self.status.is_running() {
            self.target_date.map(|d| d + Days::new(1))
        } else {
            None
        }
    }
}

impl Serialize for Clock {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("status", &self.status)?;
        match self.status {
            ClockStatus::NotApplicable | ClockStatus::NotStarted => {}
            ClockStatus::Excluded => {
                map.serialize_entry("start", &self.start.map(crate::date::format))?;
                map.serialize_entry("target_days", &self.target_days)?;
            }
            _ => {
                map.serialize_entry("start", &self.start.map(crate::date::format))?;
                map.serialize_entry("stop", &self.stop.map(crate::date::format))?;
                if let Some(reason) = self.stop_reason {
                    map.serialize_entry("stop_reason", &reason)?;
                }
                map.serialize_entry("adjustment_days", &self.adjustment_days)?;
                map.serialize_entry("days", &self.days)?;
                map.serialize_entry("target_days", &self.target_days)?;
                map.serialize_entry("target_date", &self.target_date.map(crate::date::format))?;
                if let Some(allocation) = &self.allocation {
                    map.serialize_entry("allocation", allocation)?;
                }
            }
        }
        map.end()
    }
}

/// The FDS exclusion in effect (SPEC 2.2): the day of the first
/// `fds_excluded` and the reason it gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FdsExclusion {
    #[serde(with = "crate::date")]
    pub date: NaiveDate,
    pub reason: ExclusionReason,
}

/// A trust's share of a transferred pathway's 62-day outcome (SPEC 2.4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Allocation {
    pub trust: OdsCode,
    pub share: f64,
    pub breached: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Clocks {
    pub fds: Clock,
    pub d31: Clock,
    pub d62: Clock,
}

impl Clocks {
    pub fn iter(&self) -> impl Iterator<Item = (ClockKind, &Clock)> {
        [
            (ClockKind::Fds, &self.fds),
            (ClockKind::D31, &self.d31),
            (ClockKind::D62, &self.d62),
        ]
        .into_iter()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Milestone {
    pub name: std::sync::Arc<str>,
    pub due_day: i64,
    #[serde(with = "crate::date")]
    pub due_date: NaiveDate,
    #[serde(with = "crate::date::option")]
    pub met_on: Option<NaiveDate>,
    pub status: MilestoneStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextBreach {
    pub clock: ClockKind,
    /// The subsequent treatment period that breaches (SPEC 2.12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<Arc<str>>,
    #[serde(with = "crate::date")]
    pub date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Note {
    #[serde(with = "crate::date")]
    pub occurred_on: NaiveDate,
    pub text: String,
    pub next_action: Option<String>,
    #[serde(with = "crate::date::option")]
    pub next_action_due: Option<NaiveDate>,
    pub owner: Option<String>,
    pub escalated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transfer {
    #[serde(with = "crate::date")]
    pub occurred_on: NaiveDate,
    pub from_trust: OdsCode,
    pub to_trust: OdsCode,
}

/// The state of one pathway as of a date (SPEC 4.2, without the identifiers
/// the caller adds: `pathway_id` and `version`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathwayState {
    #[serde(skip)]
    pub nhs_number: NhsNumber,
    pub trust: OdsCode,
    pub referring_trust: OdsCode,
    pub tumour_site: TumourSite,
    pub route: Route,
    #[serde(with = "crate::date")]
    pub referred_on: NaiveDate,
    pub status: PathwayStatus,
    pub on_ptl: bool,
    #[serde(with = "crate::date")]
    pub as_of: NaiveDate,
    pub fit_band: FitBand,
    /// Date of the FIT result that set `fit_band` (for the CAN-04 indicator).
    #[serde(skip)]
    pub fit_on: Option<NaiveDate>,
    /// The `fds_excluded` event in effect, if any: its date and reason
    /// (SPEC 2.2: exclusions are audited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fds_exclusion: Option<FdsExclusion>,
    pub clocks: Clocks,
    pub milestones: Vec<Milestone>,
    /// Every treatment period (SPEC 2.12): the first (a copy of `clocks.d31`,
    /// once decided), then the subsequent ones by start date.
    pub treatment_periods: Vec<TreatmentPeriod>,
    pub next_breach: Option<NextBreach>,
    pub transferred: bool,
    pub transfers: Vec<Transfer>,
    /// Day 38 of the 62-day clock (plus first-seen adjustment): when the
    /// investigating trust should have handed a transferred patient over.
    #[serde(with = "crate::date::option")]
    pub handover_date: Option<NaiveDate>,
    pub last_note: Option<Note>,
    /// Date first seen, how and where (SPEC 2.12): the weekly return counts
    /// it, the monthly CWT record carries it. Not part of the pathway view.
    #[serde(skip)]
    pub first_seen: Option<crate::first_seen::SeenAt>,
    /// Items of the national CWT record that the clocks do not carry.
    #[serde(skip)]
    pub record: RecordFacts,
    /// FIT results, triage and lower GI tests, for the FIT report (issue 25).
    #[serde(skip)]
    pub lower_gi: crate::fit::LowerGiFacts,
}

/// What the monthly CWT record needs beyond the clocks (SPEC 4.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFacts {
    /// The referral named its referrer (a GP practice, SPEC 3.2).
    pub referrer_given: bool,
    /// How far the referral's NHS number was traced, when it says.
    pub nhs_number_status: Option<NhsNumberStatus>,
    /// The ICD-10 code of the diagnosis communicated, if given.
    pub primary_diagnosis: Option<String>,
    /// First-seen DNA adjustment days (SPEC 2.3): the FDS clock's on the
    /// three cancer routes, the 62-day clock's after an upgrade.
    pub first_seen_adjustment_days: i64,
    /// The date of the transfer to the trust that gave the first treatment
    /// (SPEC 2.4): the last transfer to it folded before the treatment.
    pub transfer_to_treatment: Option<NaiveDate>,
}

impl PathwayState {
    /// The day the FDS exclusion in effect was recorded for, if any.
    pub fn fds_excluded_on(&self) -> Option<NaiveDate> {
        self.fds_exclusion.map(|e| e.date)
    }

    /// The earliest and the latest of the dates the state holds, every one
    /// but `as_of`. Every report over a period (standards, the extract,
    /// milestones of a referral month) selects a pathway by a date it holds,
    /// so a period outside this span counts nothing of it (property-tested);
    /// views use that to pass over pathways without looking inside them.
    pub fn date_span(&self) -> (NaiveDate, NaiveDate) {
        let PathwayState {
            nhs_number: _,
            trust: _,
            referring_trust: _,
            tumour_site: _,
            route: _,
            referred_on,
            status: _,
            on_ptl: _,
            as_of: _,
            fit_band: _,
            fit_on,
            fds_exclusion,
            clocks,
            milestones,
            treatment_periods,
            next_breach,
            transferred: _,
            transfers,
            handover_date,
            last_note,
            first_seen,
            record: _,
            lower_gi,
        } = self;
        let clock_dates = clocks.iter().flat_map(|(_, c)| {
            let Clock {
                start,
                stop,
                target_date,
                ..
            } = c;
            [*start, *stop, *target_date]
        });
        let period_dates = treatment_periods.iter().flat_map(|p| {
            let Clock {
                start,
                stop,
                target_date,
                ..
            } = &p.clock;
            [*start, *stop, *target_date]
        });
        let milestone_dates = milestones.iter().flat_map(|m| [Some(m.due_date), m.met_on]);
        let note_dates = last_note
            .iter()
            .flat_map(|n| [Some(n.occurred_on), n.next_action_due]);
        let dates = [
            *fit_on,
            fds_exclusion.map(|e| e.date),
            *handover_date,
            first_seen.as_ref().map(|f| f.date),
        ]
        .into_iter()
        .chain(clock_dates)
        .chain(period_dates)
        .chain(milestone_dates)
        .chain(next_breach.iter().map(|b| Some(b.date)))
        .chain(transfers.iter().map(|t| Some(t.occurred_on)))
        .chain(note_dates)
        .flatten()
        .chain(lower_gi.dates());
        dates.fold((*referred_on, *referred_on), |(lo, hi), d| {
            (lo.min(d), hi.max(d))
        })
    }

    /// The first milestone not yet met (pending or overdue), if any.
    pub fn next_milestone(&self) -> Option<&Milestone> {
        self.milestones.iter().find(|m| m.status.is_undecided())
    }
}

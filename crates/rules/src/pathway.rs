//! The clock engine: folds a pathway's effective events, as of a date, into
//! its view (SPEC 2 and 4.2): the FDS, 31-day and 62-day clocks with their
//! adjustments, breach allocation after transfers, BPTP milestones, status.
//!
//! This is the one place where the rules of SPEC 2.1–2.4 and 2.9 live. It is
//! a pure function of (events, as_of, configuration).

use chrono::{Days, NaiveDate};
use serde::Serialize;

use crate::codes::*;
use crate::config::RulesConfig;
use crate::event::{EventData, ReferralReceived, TrackingNoteAdded};
use crate::history::EffectiveEvent;
use crate::ids::{NhsNumber, OdsCode};

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
    fn bare(status: ClockStatus, target_days: i64) -> Clock {
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
    /// Date of the `fds_excluded` event in effect, if any.
    #[serde(skip)]
    pub fds_excluded_on: Option<NaiveDate>,
    pub clocks: Clocks,
    pub milestones: Vec<Milestone>,
    pub next_breach: Option<NextBreach>,
    pub transferred: bool,
    pub transfers: Vec<Transfer>,
    /// Day 38 of the 62-day clock (plus first-seen adjustment): when the
    /// investigating trust should have handed a transferred patient over.
    #[serde(with = "crate::date::option")]
    pub handover_date: Option<NaiveDate>,
    pub last_note: Option<Note>,
}

impl PathwayState {
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
            fds_excluded_on,
            clocks,
            milestones,
            next_breach,
            transferred: _,
            transfers,
            handover_date,
            last_note,
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
        let milestone_dates = milestones.iter().flat_map(|m| [Some(m.due_date), m.met_on]);
        let note_dates = last_note
            .iter()
            .flat_map(|n| [Some(n.occurred_on), n.next_action_due]);
        let dates = [*fit_on, *fds_excluded_on, *handover_date]
            .into_iter()
            .chain(clock_dates)
            .chain(milestone_dates)
            .chain(next_breach.iter().map(|b| Some(b.date)))
            .chain(transfers.iter().map(|t| Some(t.occurred_on)))
            .chain(note_dates)
            .flatten();
        dates.fold((*referred_on, *referred_on), |(lo, hi), d| {
            (lo.min(d), hi.max(d))
        })
    }

    /// The first milestone not yet met (pending or overdue), if any.
    pub fn next_milestone(&self) -> Option<&Milestone> {
        self.milestones.iter().find(|m| {
            matches!(
                m.status,
                MilestoneStatus::Pending | MilestoneStatus::Overdue
            )
        })
    }
}

/// A clock while the fold runs: when it started and how it stopped.
#[derive(Default, Clone, Copy)]
struct Run {
    start: Option<NaiveDate>,
    stop: Option<(NaiveDate, StopReason)>,
    closed: bool,
}

impl Run {
    fn running(&self) -> bool {
        self.start.is_some() && self.stop.is_none()
    }

    fn stop_at(&mut self, date: NaiveDate, reason: StopReason, closed: bool) {
        if self.running() {
            self.stop = Some((date, reason));
            self.closed = closed;
        }
    }

    /// The last day the clock counts: its stop, or `as_of` while it runs.
    fn end(&self, as_of: NaiveDate) -> NaiveDate {
        self.stop.map_or(as_of, |(d, _)| d)
    }
}

fn days_between(from: NaiveDate, to: NaiveDate) -> i64 {
    (to - from).num_days()
}

/// Folds the effective events dated on or before `as_of`. `None` when there
/// is no referral by then (the pathway did not exist yet).
pub fn evaluate(
    events: &[EffectiveEvent],
    as_of: NaiveDate,
    config: &RulesConfig,
) -> Option<PathwayState> {
    let events: Vec<&EffectiveEvent> = events.iter().filter(|e| e.occurred_on <= as_of).collect();
    let mut referral: Option<(NaiveDate, &ReferralReceived)> = None;
    let mut trust: Option<OdsCode> = None;
    let mut tumour_site = TumourSite::Other;
    let mut fds = Run::default();
    let mut d62 = Run::default();
    let mut d31 = Run::default();
    let mut fds_excluded: Option<NaiveDate> = None;
    let mut fit_band = FitBand::None;
    let mut fit_on: Option<NaiveDate> = None;
    let mut seen = false;
    let mut first_seen_dnas: Vec<NaiveDate> = Vec::new();
    let mut declines: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    let mut transfers: Vec<Transfer> = Vec::new();
    let mut treatment: Option<(NaiveDate, OdsCode)> = None;
    let mut ruled_out = false;
    let mut closed = false;
    let mut last_note: Option<(NaiveDate, &TrackingNoteAdded)> = None;

    for event in &events {
        let day = event.occurred_on;
        match &*event.data {
            EventData::ReferralReceived(r) => {
                referral = Some((day, r));
                trust = Some(r.trust);
                tumour_site = r.tumour_site;
                if r.route.is_cancer_route() {
                    fds.start = Some(day);
                    d62.start = Some(day);
                }
            }
            EventData::ConsultantUpgraded(_) => {
                let on_other_route = referral.is_some_and(|(_, r)| r.route == Route::Other);
                if on_other_route && d62.start.is_none() && !closed {
                    d62.start = Some(day);
                }
            }
            EventData::FitResultRecorded(f) => {
                fit_band = f.band();
                fit_on = Some(day);
            }
            EventData::AppointmentAttended(_) => seen = true,
            EventData::AppointmentMissed(m) => {
                if m.reason == MissedReason::DidNotAttend && m.kind.is_first_seen() && !seen {
                    first_seen_dnas.push(day);
                }
            }
            EventData::DiagnosisCommunicated(c) => {
                let reason = match c.outcome {
                    DiagnosisOutcome::CancerDiagnosed => StopReason::CancerDiagnosed,
                    DiagnosisOutcome::CancerRuledOut => StopReason::CancerRuledOut,
                };
                fds.stop_at(day, reason, false);
                if c.outcome == DiagnosisOutcome::CancerRuledOut {
                    d62.stop_at(day, StopReason::CancerRuledOut, true);
                    ruled_out = true;
                }
            }
            EventData::FdsExcluded(_) => {
                fds_excluded.get_or_insert(day);
            }
            EventData::DecisionToTreat(_) => {
                fds.stop_at(day, StopReason::DecisionToTreat, false);
                // A later decision before treatment restarts the 31-day clock (ours).
                if treatment.is_none() && !closed {
                    d31 = Run {
                        start: Some(day),
                        ..Run::default()
                    };
                }
            }
            EventData::TreatmentOfferDeclined(t) => {
                if t.setting == TreatmentSetting::Admitted {
                    declines.push((t.offered_on, t.available_from));
                }
            }
            EventData::TreatmentStarted(_) => {
                fds.stop_at(day, StopReason::TreatmentStarted, false);
                d62.stop_at(day, StopReason::TreatmentStarted, false);
                d31.stop_at(day, StopReason::TreatmentStarted, false);
                if treatment.is_none() {
                    treatment = trust.map(|t| (day, t));
                }
            }
            EventData::PathwayTransferred(t) => {
                if let Some(from) = trust.replace(t.to_trust) {
                    transfers.push(Transfer {
                        occurred_on: day,
                        from_trust: from,
                        to_trust: t.to_trust,
                    });
                }
            }
            EventData::TumourSiteChanged(t) => tumour_site = t.tumour_site,
            EventData::PathwayClosed(_) => {
                for run in [&mut fds, &mut d62, &mut d31] {
                    run.stop_at(day, StopReason::PathwayClosed, true);
                }
                closed = true;
            }
            EventData::TrackingNoteAdded(n) => last_note = Some((day, n)),
            EventData::TriageCompleted(_)
            | EventData::DiagnosticRequested(_)
            | EventData::DiagnosticPerformed(_)
            | EventData::DiagnosticReported(_)
            | EventData::MdtDiscussed(_)
            | EventData::EventCorrected(_)
            | EventData::EventVoided(_) => {}
        }
    }

    let (referred_on, referral) = referral?;
    let trust = trust.expect("a referral sets the trust");
    let targets = &config.targets;

    // First-seen DNA reset (SPEC 2.3): the latest DNA before the patient was
    // first seen, among those within the clock's run. A DNA after the clock
    // stopped cannot reset it, nor cancel the reset of an earlier DNA.
    let dna_adjustment = |run: &Run| -> i64 {
        let Some(start) = run.start else { return 0 };
        let end = run.end(as_of);
        first_seen_dnas
            .iter()
            .filter(|dna| **dna >= start && **dna <= end)
            .max()
            .map_or(0, |dna| days_between(start, *dna))
    };
    // Admitted declines offered on or after the clock start, up to its end, overlaps once.
    let decline_adjustment = |run: &Run, from: NaiveDate| -> i64 {
        let end = run.end(as_of);
        let mut periods: Vec<(NaiveDate, NaiveDate)> = declines
            .iter()
            .filter(|(offered, _)| *offered >= from)
            .map(|(offered, available)| (*offered, (*available).min(end)))
            .filter(|(a, b)| a < b)
            .collect();
        periods.sort();
        let mut total = 0;
        let mut covered_to: Option<NaiveDate> = None;
        for (a, b) in periods {
            let a = covered_to.map_or(a, |c| a.max(c));
            if a < b {
                total += days_between(a, b);
            }
            covered_to = Some(covered_to.map_or(b, |c| c.max(b)));
        }
        total
    };

    let fds_clock = if !referral.route.is_cancer_route() {
        Clock::bare(ClockStatus::NotApplicable, targets.fds_days)
    } else if fds_excluded.is_some() {
        Clock {
            start: fds.start,
            ..Clock::bare(ClockStatus::Excluded, targets.fds_days)
        }
    } else {
        finish(&fds, as_of, targets.fds_days, dna_adjustment(&fds))
    };
    let d62_first_seen = dna_adjustment(&d62);
    let mut d62_clock = match d62.start {
        None => Clock::bare(ClockStatus::NotStarted, targets.d62_days),
        Some(start) => finish(
            &d62,
            as_of,
            targets.d62_days,
            d62_first_seen + decline_adjustment(&d62, start),
        ),
    };
    let d31_clock = match d31.start {
        None => Clock::bare(ClockStatus::NotStarted, targets.d31_days),
        Some(start) => finish(
            &d31,
            as_of,
            targets.d31_days,
            decline_adjustment(&d31, start),
        ),
    };

    // Breach allocation between investigating and treating trusts (SPEC 2.4).
    if let (Some(start), Some((treated_on, treating))) = (d62.start, &treatment) {
        let stopped_by_treatment = d62
            .stop
            .is_some_and(|(d, r)| r == StopReason::TreatmentStarted && d == *treated_on);
        let handover = transfers
            .iter()
            .rev()
            .find(|t| t.occurred_on <= *treated_on && &t.to_trust == treating);
        if let (true, Some(handover)) = (stopped_by_treatment, handover) {
            let transfer_on = handover.occurred_on;
            let within_38 = days_between(start, transfer_on) - d62_first_seen <= 38;
            let treating_adjustment = decline_adjustment(&d62, transfer_on.max(start));
            let within_24 = days_between(transfer_on, *treated_on) - treating_adjustment <= 24;
            let within_62 = d62_clock.status == ClockStatus::Met;
            let (investigating_share, treating_share) =
                allocation_shares(within_62, within_38, within_24);
            let breached = !within_62;
            d62_clock.allocation = Some(if referral.trust == *treating {
                vec![Allocation {
                    trust: *treating,
                    share: 1.0,
                    breached,
                }]
            } else {
                vec![
                    Allocation {
                        trust: referral.trust,
                        share: investigating_share,
                        breached,
                    },
                    Allocation {
                        trust: *treating,
                        share: treating_share,
                        breached,
                    },
                ]
            });
        }
    }

    let milestones = if referral.route.is_cancer_route() {
        milestones(
            config,
            tumour_site,
            &events,
            referred_on,
            &fds_clock,
            fds.stop.map(|(d, _)| d),
            as_of,
        )
    } else {
        Vec::new()
    };

    let clocks = Clocks {
        fds: fds_clock,
        d31: d31_clock,
        d62: d62_clock,
    };
    let on_ptl = clocks.iter().any(|(_, c)| c.status.is_running());
    let next_breach = clocks
        .iter()
        .filter_map(|(kind, c)| c.breach_date().map(|date| NextBreach { clock: kind, date }))
        .min_by_key(|b| b.date);
    let status = if closed {
        PathwayStatus::Closed
    } else if treatment.is_some() {
        PathwayStatus::Treated
    } else if ruled_out {
        PathwayStatus::RuledOut
    } else {
        PathwayStatus::Open
    };
    let handover_date = d62
        .start
        .map(|start| start + Days::new((38 + d62_first_seen) as u64));

    Some(PathwayState {
        nhs_number: referral.nhs_number,
        trust,
        referring_trust: referral.trust,
        tumour_site,
        route: referral.route,
        referred_on,
        status,
        on_ptl,
        as_of,
        fit_band,
        fit_on,
        fds_excluded_on: fds_excluded,
        clocks,
        milestones,
        next_breach,
        transferred: !transfers.is_empty(),
        transfers,
        handover_date,
        last_note: last_note.map(|(day, n)| Note {
            occurred_on: day,
            text: n.text.clone(),
            next_action: n.next_action.clone(),
            next_action_due: n.next_action_due,
            owner: n.owner.clone(),
            escalated: n.escalated.unwrap_or(false),
        }),
    })
}

/// Days, status and target date of a started clock.
fn finish(run: &Run, as_of: NaiveDate, target_days: i64, adjustment_days: i64) -> Clock {
    let start = run.start.expect("finish is only called for started clocks");
    let end = run.end(as_of);
    let days = days_between(start, end) - adjustment_days;
    let within = days <= target_days;
    let status = match (run.stop, run.closed, within) {
        (Some(_), true, _) => ClockStatus::Closed,
        (Some(_), false, true) => ClockStatus::Met,
        (Some(_), false, false) => ClockStatus::Breached,
        (None, _, true) => ClockStatus::Open,
        (None, _, false) => ClockStatus::OpenBreached,
    };
    Clock {
        status,
        start: Some(start),
        stop: run.stop.map(|(d, _)| d),
        stop_reason: run.stop.map(|(_, r)| r),
        adjustment_days,
        days,
        target_days,
        target_date: Some(start + Days::new((target_days + adjustment_days).max(0) as u64)),
        allocation: None,
    }
}

/// The national breach allocation table: (62-day met, 38-day met, 24-day met)
/// → (investigating share, treating share). Combinations the guidance does not
/// list are shared equally (ours).
pub fn allocation_shares(within_62: bool, within_38: bool, within_24: bool) -> (f64, f64) {
    match (within_62, within_38, within_24) {
        (true, false, true) => (0.0, 1.0),
        (false, true, false) => (0.0, 1.0),
        (false, false, true) => (1.0, 0.0),
        _ => (0.5, 0.5),
    }
}

fn milestones(
    config: &RulesConfig,
    site: TumourSite,
    events: &[&EffectiveEvent],
    referred_on: NaiveDate,
    fds: &Clock,
    fds_stop: Option<NaiveDate>,
    as_of: NaiveDate,
) -> Vec<Milestone> {
    let excluded = fds.status == ClockStatus::Excluded;
    let first_seen_adjustment = if excluded { 0 } else { fds.adjustment_days };
    config
        .template_for(site)
        .milestone
        .iter()
        .map(|rule| {
            let due_date = referred_on + Days::new((rule.due_day + first_seen_adjustment) as u64);
            let met_on = events
                .iter()
                .find(|e| rule.met_by.iter().any(|m| m.matches(&e.data)))
                .map(|e| e.occurred_on);
            let status = match (excluded, met_on, fds_stop) {
                (true, _, _) => MilestoneStatus::NotApplicable,
                (false, Some(met), _) if met <= due_date => MilestoneStatus::Met,
                (false, Some(_), _) => MilestoneStatus::Missed,
                (false, None, Some(stop)) if due_date >= stop => MilestoneStatus::NotApplicable,
                (false, None, Some(_)) => MilestoneStatus::Missed,
                (false, None, None) if as_of > due_date => MilestoneStatus::Overdue,
                (false, None, None) => MilestoneStatus::Pending,
            };
            Milestone {
                name: rule.name.clone(),
                due_day: rule.due_day,
                due_date,
                met_on,
                status,
            }
        })
        .collect()
}

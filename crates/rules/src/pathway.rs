//! The clock engine: folds a pathway's effective events, as of a date, into
//! its view (SPEC 2 and 4.2): the FDS, 31-day and 62-day clocks with their
//! adjustments, the treatment periods, breach allocation after transfers,
//! BPTP milestones, status.
//!
//! This is the one place where the rules of SPEC 2.1–2.4, 2.9 and 2.12 live.
//! It is a pure function of (events, as_of, configuration): one [`Fold`]
//! over the effective events, then one `finish` for the date.

use chrono::{Days, NaiveDate};
use serde::Serialize;

use crate::codes::*;
use crate::config::RulesConfig;
use std::sync::Arc;

use crate::event::{
    DecisionToTreat, EventData, ReferralReceived, TrackingNoteAdded, TreatmentStarted,
};
use crate::history::EffectiveEvent;
use crate::ids::{NhsNumber, OdsCode};
use crate::period::{PlanRun, TreatmentPeriod};

mod moved;
mod state;
pub use moved::{Earlier, Settled};
pub use state::*;

/// A clock while the fold runs: when it started and how it stopped.
#[derive(Default, Clone, Copy)]
struct Run {
    start: Option<NaiveDate>,
    stop: Option<(NaiveDate, StopReason)>,
    closed: bool,
}

impl Run {
    fn started(day: NaiveDate) -> Run {
        Run {
            start: Some(day),
            ..Run::default()
        }
    }

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

/// An admitted declined offer (SPEC 2.3): the pause it asks for, and the
/// subsequent plan it belongs to (`None`: the first period and the 62-day clock).
struct Decline<'e> {
    plan_id: Option<&'e str>,
    offered_on: NaiveDate,
    available_from: NaiveDate,
}

/// Days of the declines offered on or after `from`, each clipped to `end`
/// (so a clock never waits fewer than zero days), overlaps counted once.
fn decline_days<'a, 'e: 'a>(
    declines: impl Iterator<Item = &'a Decline<'e>>,
    from: NaiveDate,
    end: NaiveDate,
) -> i64 {
    let mut periods: Vec<(NaiveDate, NaiveDate)> = declines
        .filter(|d| d.offered_on >= from)
        .map(|d| (d.offered_on, d.available_from.min(end)))
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
}

/// Everything the engine learns from a pathway's effective events, in one
/// pass in `occurred_on` order ([`Fold::apply`]); [`Fold::finish`] then
/// turns it into the clocks, periods and milestones of a date.
#[derive(Default)]
struct Fold<'e> {
    referral: Option<(NaiveDate, &'e ReferralReceived)>,
    trust: Option<OdsCode>,
    tumour_site: Option<TumourSite>,
    fds: Run,
    d62: Run,
    /// The first treatment period (SPEC 2.2 and 2.12).
    d31: Run,
    /// The first period's modality: its treatment's once started, else its decision's.
    first_modality: Option<Modality>,
    /// The care setting the first treatment recorded (schema version 2).
    first_care_setting: Option<TreatmentSetting>,
    /// Subsequent periods, in the order their plans were first decided.
    plans: Vec<PlanRun<'e>>,
    /// Names given to the first period by its decisions (decision 86).
    first_plan_ids: Vec<&'e str>,
    fds_excluded: Option<FdsExclusion>,
    fit: Option<(NaiveDate, FitBand)>,
    seen: bool,
    first_seen_dnas: Vec<NaiveDate>,
    declines: Vec<Decline<'e>>,
    transfers: Vec<Transfer>,
    /// The first treatment, as the fold reached it.
    treatment: Option<FirstTreatment<'e>>,
    /// Subsequent treatments folded before any decision of their plan
    /// (a decision of their day recorded after them, decision 192).
    early_plan_treatments: Vec<(&'e str, NaiveDate, &'e TreatmentStarted, Option<OdsCode>)>,
    /// The day cancer was ruled out.
    ruled_out: Option<NaiveDate>,
    closed: bool,
    last_note: Option<(NaiveDate, &'e TrackingNoteAdded)>,
}

/// The first treatment as the fold reached it (SPEC 2.4, 3.2).
#[derive(Clone, Copy)]
struct FirstTreatment<'e> {
    day: NaiveDate,
    /// The trust holding the pathway then: the treating trust.
    trust: OdsCode,
    /// Its event, for a same-day decision folded after it (decision 192).
    event: &'e TreatmentStarted,
    /// How many transfers were folded before it: the handover to the
    /// treating trust is among them.
    transfers_before: usize,
}

impl<'e> Fold<'e> {
    fn apply(&mut self, day: NaiveDate, data: &'e EventData) {
        match data {
            EventData::ReferralReceived(r) => {
                self.referral = Some((day, r));
                self.trust = Some(r.trust);
                self.tumour_site = Some(r.tumour_site);
                if r.route.is_cancer_route() {
                    self.fds = Run::started(day);
                    self.d62 = Run::started(day);
                }
            }
            EventData::ConsultantUpgraded(_) => {
                let on_other_route = self.referral.is_some_and(|(_, r)| r.route == Route::Other);
                if on_other_route && self.d62.start.is_none() && !self.closed {
                    self.upgrade(day);
                }
            }
            EventData::FitResultRecorded(f) => self.fit = Some((day, f.band())),
            EventData::AppointmentAttended(_) => self.seen = true,
            EventData::AppointmentMissed(m) => {
                if m.reason == MissedReason::DidNotAttend && m.kind.is_first_seen() && !self.seen {
                    self.first_seen_dnas.push(day);
                }
            }
            EventData::DiagnosisCommunicated(c) => {
                let reason = match c.outcome {
                    DiagnosisOutcome::CancerDiagnosed => StopReason::CancerDiagnosed,
                    DiagnosisOutcome::CancerRuledOut => StopReason::CancerRuledOut,
                };
                self.fds.stop_at(day, reason, false);
                if c.outcome == DiagnosisOutcome::CancerRuledOut {
                    self.d62.stop_at(day, StopReason::CancerRuledOut, true);
                    self.ruled_out.get_or_insert(day);
                }
            }
            EventData::FdsExcluded(e) => {
                self.fds_excluded.get_or_insert(FdsExclusion {
                    date: day,
                    reason: e.reason,
                });
            }
            EventData::DecisionToTreat(d) => match d.subsequent_plan() {
                None => {
                    if let Some(name) = d.plan_id.as_deref() {
                        self.first_plan_ids.push(name);
                    }
                    self.fds.stop_at(day, StopReason::DecisionToTreat, false);
                    // A later decision before treatment restarts the 31-day clock (ours).
                    if self.treatment.is_none() && !self.closed {
                        self.d31 = Run::started(day);
                        self.first_modality = Some(d.modality);
                    } else if let (None, Some(first)) = (self.d31.start, self.treatment) {
                        // The day's treatment was recorded before its
                        // decision, and no earlier decision stands (SPEC
                        // 2.11 lets them share a date): the period runs
                        // from this decision to that treatment (decision 192).
                        if first.day == day {
                            self.d31 = Run::started(day);
                            self.d31.stop_at(day, StopReason::TreatmentStarted, false);
                            self.first_modality = Some(first.event.modality);
                            self.first_care_setting = first.event.care_setting;
                        }
                    }
                }
                // Subsequent periods never touch the FDS or 62-day clocks (SPEC 2.12).
                Some(plan_id) => self.decide_plan(plan_id, d, day),
            },
            EventData::TreatmentOfferDeclined(t) => {
                if t.setting == TreatmentSetting::Admitted {
                    self.declines.push(Decline {
                        plan_id: t.plan_id.as_deref(),
                        offered_on: t.offered_on,
                        available_from: t.available_from,
                    });
                }
            }
            EventData::TreatmentStarted(t) => match t.subsequent_plan() {
                None => {
                    self.fds.stop_at(day, StopReason::TreatmentStarted, false);
                    self.d62.stop_at(day, StopReason::TreatmentStarted, false);
                    if self.d31.running() {
                        self.first_modality = Some(t.modality);
                        self.first_care_setting = t.care_setting;
                    }
                    self.d31.stop_at(day, StopReason::TreatmentStarted, false);
                    if self.treatment.is_none() {
                        self.treatment = self.trust.map(|trust| FirstTreatment {
                            day,
                            trust,
                            event: t,
                            transfers_before: self.transfers.len(),
                        });
                    }
                }
                Some(plan_id) => {
                    match self
                        .plans
                        .iter_mut()
                        .find(|p| p.plan_id == plan_id && !p.stopped())
                    {
                        Some(plan) => plan.treated(t, day, self.trust),
                        None => self
                            .early_plan_treatments
                            .push((plan_id, day, t, self.trust)),
                    }
                }
            },
            EventData::PathwayTransferred(t) => {
                // To the trust holding it (left so by a void of the transfer
                // before it) is no handover (decisions 186, 198).
                if let Some(from) = self.trust.replace(t.to_trust).filter(|f| *f != t.to_trust) {
                    self.transfers.push(Transfer {
                        occurred_on: day,
                        from_trust: from,
                        to_trust: t.to_trust,
                    });
                }
            }
            EventData::TumourSiteChanged(t) => self.tumour_site = Some(t.tumour_site),
            EventData::PathwayClosed(_) => {
                for run in [&mut self.fds, &mut self.d62, &mut self.d31] {
                    run.stop_at(day, StopReason::PathwayClosed, true);
                }
                for plan in &mut self.plans {
                    plan.stop_at(day, StopReason::PathwayClosed, true);
                }
                self.closed = true;
            }
            EventData::TrackingNoteAdded(n) => self.last_note = Some((day, n)),
            EventData::TriageCompleted(_)
            | EventData::DiagnosticRequested(_)
            | EventData::DiagnosticPerformed(_)
            | EventData::DiagnosticReported(_)
            | EventData::MdtDiscussed(_)
            | EventData::EventCorrected(_)
            | EventData::EventVoided(_) => {}
        }
    }

    /// A consultant upgrade starts the 62-day clock (SPEC 2.1), unless the
    /// first treatment started or cancer was ruled out before it (on an
    /// earlier day, or recorded before it on its day): such an upgrade is
    /// refused (decisions 174, 192) but older logs may hold one, and a
    /// clock nothing could stop would sit on the PTL for ever.
    fn upgrade(&mut self, day: NaiveDate) {
        if self.treatment.is_some() || self.ruled_out.is_some() {
            return;
        }
        self.d62 = Run::started(day);
    }

    /// A subsequent decision opens its plan's period, or replaces the start
    /// of one not yet treated (ours, as SPEC 2.2); once treated, a plan's
    /// period is done and a later decision of it changes nothing.
    fn decide_plan(&mut self, plan_id: &'e str, d: &'e DecisionToTreat, day: NaiveDate) {
        if self.closed {
            return;
        }
        let decided = PlanRun::decided(
            plan_id,
            d.modality,
            day,
            d.earliest_clinically_appropriate_date,
        );
        match self.plans.iter_mut().find(|p| p.plan_id == plan_id) {
            Some(plan) if plan.stopped() => {}
            Some(plan) => *plan = decided,
            None => {
                let mut decided = decided;
                // Its treatment, of this day, was recorded before it
                // (decision 192): the period is treated the day it opens.
                let early = self
                    .early_plan_treatments
                    .iter()
                    .find(|(plan, on, _, _)| *plan == plan_id && *on == day);
                if let Some((_, on, t, trust)) = early {
                    decided.treated(t, *on, *trust);
                }
                self.plans.push(decided)
            }
        }
    }

    fn finish(
        self,
        events: &[&EffectiveEvent],
        as_of: NaiveDate,
        config: &RulesConfig,
    ) -> Option<PathwayState> {
        let (referred_on, referral) = self.referral?;
        let trust = self.trust?;
        let tumour_site = self.tumour_site.unwrap_or(referral.tumour_site);
        let targets = &config.targets;
        let route = referral.route;

        // First-seen DNA reset (SPEC 2.3): the latest DNA before the patient
        // was first seen, among those within the clock's run. A DNA after the
        // clock stopped cannot reset it, nor cancel the reset of an earlier DNA.
        let dna_adjustment = |run: &Run| -> i64 {
            let Some(start) = run.start else { return 0 };
            let end = run.end(as_of);
            self.first_seen_dnas
                .iter()
                .filter(|dna| **dna >= start && **dna <= end)
                .max()
                .map_or(0, |dna| days_between(start, *dna))
        };
        // Declines without a plan, or naming the first period (and no
        // subsequent plan), adjust the first period and the 62-day clock.
        let of_first = |plan: Option<&str>| match plan {
            None => true,
            Some(plan) => {
                self.first_plan_ids.contains(&plan) && !self.plans.iter().any(|p| p.plan_id == plan)
            }
        };
        let unplanned = || self.declines.iter().filter(|d| of_first(d.plan_id));

        let fds_clock = if !route.is_cancer_route() {
            Clock::bare(ClockStatus::NotApplicable, targets.fds_days)
        } else if self.fds_excluded.is_some() {
            Clock {
                start: self.fds.start,
                ..Clock::bare(ClockStatus::Excluded, targets.fds_days)
            }
        } else {
            finish(
                &self.fds,
                as_of,
                targets.fds_days,
                dna_adjustment(&self.fds),
            )
        };
        let d62_first_seen = dna_adjustment(&self.d62);
        let mut d62_clock = match self.d62.start {
            _ if !route.has_d62() => Clock::bare(ClockStatus::NotApplicable, targets.d62_days),
            None => Clock::bare(ClockStatus::NotStarted, targets.d62_days),
            // Declines count from the clock's start as reset by a first-seen
            // DNA (ours): a pause before the reset is inside the days the
            // reset already took off, and counting it again could make the
            // days waited negative.
            Some(start) => finish(
                &self.d62,
                as_of,
                targets.d62_days,
                d62_first_seen
                    + decline_days(
                        unplanned(),
                        start + Days::new(d62_first_seen as u64),
                        self.d62.end(as_of),
                    ),
            ),
        };
        let d31_clock = match self.d31.start {
            None => Clock::bare(ClockStatus::NotStarted, targets.d31_days),
            Some(start) => finish(
                &self.d31,
                as_of,
                targets.d31_days,
                decline_days(unplanned(), start, self.d31.end(as_of)),
            ),
        };

        // The transfer to the treating trust (SPEC 2.4): the last one to
        // it folded before the first treatment (one of the treatment's day
        // recorded after it came after it, decision 192).
        let handover = self.treatment.and_then(|first| {
            self.transfers[..first.transfers_before]
                .iter()
                .rev()
                .find(|t| t.to_trust == first.trust)
        });
        // Breach allocation between investigating and treating trusts (SPEC 2.4).
        if let (
            Some(start),
            Some(FirstTreatment {
                day: treated_on,
                trust: treating,
                ..
            }),
        ) = (self.d62.start, &self.treatment)
        {
            let stopped_by_treatment = self
                .d62
                .stop
                .is_some_and(|(d, r)| r == StopReason::TreatmentStarted && d == *treated_on);
            // Transferred only after its treatment: the trust at referral
            // investigated and treated it, and has the whole outcome, not
            // the trust that holds the pathway now (as the 31-day standard,
            // decision 110).
            if stopped_by_treatment && handover.is_none() && !self.transfers.is_empty() {
                d62_clock.allocation = Some(vec![Allocation {
                    trust: *treating,
                    share: 1.0,
                    breached: d62_clock.status != ClockStatus::Met,
                }]);
            }
            if let (true, Some(handover)) = (stopped_by_treatment, handover) {
                let transfer_on = handover.occurred_on;
                let within_38 = days_between(start, transfer_on) - d62_first_seen <= 38;
                let reset = start + Days::new(d62_first_seen as u64);
                let treating_adjustment =
                    decline_days(unplanned(), transfer_on.max(reset), self.d62.end(as_of));
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

        let milestones = if route.is_cancer_route() {
            milestones(
                config,
                tumour_site,
                events,
                // SPEC 2.9: due days count from the FDS start plus the
                // first-seen DNA adjustment, an excluded FDS clock's too
                // (its milestones are not applicable, their dates shown).
                referred_on + Days::new(dna_adjustment(&self.fds).max(0) as u64),
                &fds_clock,
                self.fds.stop.map(|(d, _)| d),
                as_of,
            )
        } else {
            Vec::new()
        };

        // Treatment periods (SPEC 2.12): the first equals `d31`, then the
        // subsequent ones by start date, then plan.
        let mut treatment_periods: Vec<TreatmentPeriod> = Vec::new();
        if let (Some(modality), true) = (self.first_modality, self.d31.start.is_some()) {
            treatment_periods.push(TreatmentPeriod {
                treatment: TreatmentKind::First,
                plan_id: None,
                modality,
                start_reason: PeriodStartReason::DecisionToTreat,
                care_setting: self.first_care_setting,
                treated_by: self
                    .treatment
                    .filter(|_| d31_clock.stop_reason == Some(StopReason::TreatmentStarted))
                    .map(|first| first.trust),
                clock: d31_clock.clone(),
            });
        }
        let mut subsequent: Vec<TreatmentPeriod> = self
            .plans
            .iter()
            .map(|plan| {
                let clock = if plan.waiting(as_of) {
                    plan.not_started(targets.d31_days)
                } else {
                    let run = Run {
                        start: Some(plan.start),
                        stop: plan.stop,
                        closed: plan.closed,
                    };
                    let own = self
                        .declines
                        .iter()
                        .filter(|d| d.plan_id == Some(plan.plan_id));
                    let adjustment = decline_days(own, plan.start, run.end(as_of));
                    finish(&run, as_of, targets.d31_days, adjustment)
                };
                TreatmentPeriod {
                    treatment: TreatmentKind::Subsequent,
                    plan_id: Some(Arc::from(plan.plan_id)),
                    modality: plan.modality,
                    start_reason: plan.start_reason,
                    care_setting: plan.care_setting,
                    treated_by: plan.treated_by,
                    clock,
                }
            })
            .collect();
        subsequent.sort_by(|a, b| (a.clock.start, &a.plan_id).cmp(&(b.clock.start, &b.plan_id)));
        treatment_periods.extend(subsequent);

        let clocks = Clocks {
            fds: fds_clock,
            d31: d31_clock,
            d62: d62_clock,
        };
        let on_ptl = clocks.iter().any(|(_, c)| c.status.is_running())
            || treatment_periods
                .iter()
                .any(|p| p.clock.status.is_running());
        let next_breach = next_breach(&clocks, &treatment_periods);
        let status = if self.closed {
            PathwayStatus::Closed
        } else if self.treatment.is_some() {
            PathwayStatus::Treated
        } else if self.ruled_out.is_some() {
            PathwayStatus::RuledOut
        } else {
            PathwayStatus::Open
        };
        let handover_date = self
            .d62
            .start
            .map(|start| start + Days::new((38 + d62_first_seen) as u64));
        let first_seen = crate::first_seen::seen_at(events, &referral.trust, &self.transfers);
        let record = RecordFacts {
            referrer_given: referral.referrer.is_some(),
            nhs_number_status: referral.nhs_number_status,
            primary_diagnosis: events.iter().rev().find_map(|e| match &*e.data {
                EventData::DiagnosisCommunicated(d) => d.icd10.clone(),
                _ => None,
            }),
            transfer_to_treatment: handover.map(|t| t.occurred_on),
            first_seen_adjustment_days: if route.is_cancer_route() {
                dna_adjustment(&self.fds)
            } else {
                d62_first_seen
            },
        };

        Some(PathwayState {
            nhs_number: referral.nhs_number,
            trust,
            referring_trust: referral.trust,
            tumour_site,
            route,
            referred_on,
            status,
            on_ptl,
            as_of,
            fit_band: self.fit.map_or(FitBand::None, |(_, band)| band),
            fit_on: self.fit.map(|(day, _)| day),
            // Only where it excludes a clock: routes without an FDS take
            // `fds_excluded` but have nothing to exclude (decision 191).
            fds_exclusion: self
                .fds_excluded
                .filter(|_| clocks.fds.status == ClockStatus::Excluded),
            clocks,
            milestones,
            treatment_periods,
            next_breach,
            transferred: !self.transfers.is_empty(),
            transfers: self.transfers,
            handover_date,
            last_note: self.last_note.map(|(day, n)| Note {
                occurred_on: day,
                text: n.text.clone(),
                next_action: n.next_action.clone(),
                next_action_due: n.next_action_due,
                owner: n.owner.clone(),
                escalated: n.escalated.unwrap_or(false),
            }),
            first_seen,
            record,
            lower_gi: crate::fit::LowerGiFacts::of(events),
        })
    }
}

/// The earliest breach among the running clocks and subsequent periods
/// (the first period is `d31` itself); on a tie the clock comes first.
fn next_breach(clocks: &Clocks, periods: &[TreatmentPeriod]) -> Option<NextBreach> {
    let of_clocks = clocks.iter().filter_map(|(kind, c)| {
        c.breach_date().map(|date| NextBreach {
            clock: kind,
            plan_id: None,
            date,
        })
    });
    let of_periods = periods
        .iter()
        .filter(|p| p.treatment == TreatmentKind::Subsequent)
        .filter_map(|p| {
            p.breach_date().map(|date| NextBreach {
                clock: ClockKind::D31,
                plan_id: p.plan_id.clone(),
                date,
            })
        });
    of_clocks.chain(of_periods).min_by_key(|b| b.date)
}

/// Folds the effective events dated on or before `as_of`. `None` when there
/// is no referral by then (the pathway did not exist yet).
pub fn evaluate(
    events: &[EffectiveEvent],
    as_of: NaiveDate,
    config: &RulesConfig,
) -> Option<PathwayState> {
    let mut events: Vec<&EffectiveEvent> =
        events.iter().filter(|e| e.occurred_on <= as_of).collect();
    // Stable: within a day, the order they were recorded in (SPEC 3.2,
    // decision 192).
    events.sort_by_key(|e| e.occurred_on);
    let mut fold = Fold::default();
    for event in &events {
        fold.apply(event.occurred_on, &event.data);
    }
    fold.finish(&events, as_of, config)
}

/// Days, status and target date of a started clock.
fn finish(run: &Run, as_of: NaiveDate, target_days: i64, adjustment_days: i64) -> Clock {
    let start = run.start.expect("finish is only called for started clocks");
    let end = run.end(as_of);
    // Never negative (SPEC 2.12): a subsequent period treated before its
    // ECAD, or closed before it, waited no days.
    let days = (days_between(start, end) - adjustment_days).max(0);
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

/// A milestone neither met nor ended by the FDS clock, as of `as_of`:
/// overdue once its due date has passed.
fn unmet_status(as_of: NaiveDate, due_date: NaiveDate) -> MilestoneStatus {
    if as_of > due_date {
        MilestoneStatus::Overdue
    } else {
        MilestoneStatus::Pending
    }
}

fn milestones(
    config: &RulesConfig,
    site: TumourSite,
    events: &[&EffectiveEvent],
    due_from: NaiveDate,
    fds: &Clock,
    fds_stop: Option<NaiveDate>,
    as_of: NaiveDate,
) -> Vec<Milestone> {
    let excluded = fds.status == ClockStatus::Excluded;
    config
        .template_for(site)
        .milestone
        .iter()
        .map(|rule| {
            let due_date = due_from + Days::new(rule.due_day as u64);
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
                (false, None, None) => unmet_status(as_of, due_date),
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

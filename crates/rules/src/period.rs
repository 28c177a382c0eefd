//! Treatment periods (SPEC 2.12): since October 2023 every treatment of a
//! cancer has a 31-day clock of its own. The first period is the pathway's
//! `d31` clock; each subsequent period is named by the `plan_id` of the
//! decision that opened it, may start at an earliest clinically appropriate
//! date (ECAD), and is stopped by the treatment of the same plan.
//!
//! This module holds the period as the view shows it and the fold's record
//! of one subsequent plan; the clock arithmetic is `pathway`'s, shared with
//! every other clock.

use std::sync::Arc;

use chrono::{Days, NaiveDate};
use serde::Serialize;

use crate::codes::*;
use crate::event::TreatmentStarted;
use crate::ids::OdsCode;
use crate::pathway::Clock;

/// One treatment period as the pathway view shows it (SPEC 4.2).
#[derive(Debug, Clone, PartialEq)]
pub struct TreatmentPeriod {
    pub treatment: TreatmentKind,
    /// The subsequent period's name (`None` for the first period).
    pub plan_id: Option<Arc<str>>,
    /// The treatment's once started, else the decision's.
    pub modality: Modality,
    pub start_reason: PeriodStartReason,
    /// The care setting its treatment recorded (schema version 2), for the
    /// CWT record; not part of the pathway view.
    pub care_setting: Option<TreatmentSetting>,
    /// The trust holding the pathway when its treatment started, in the
    /// order events fold (SPEC 2.4, 3.2): the trust at the treatment for
    /// the 31-day standard and the CWT record. `None` until treated.
    pub treated_by: Option<OdsCode>,
    /// The 31-day clock of the period; `not_started` while it waits for its ECAD.
    pub clock: Clock,
}

impl TreatmentPeriod {
    /// The first day on which the period is breached, while it runs.
    pub fn breach_date(&self) -> Option<NaiveDate> {
        self.clock.breach_date()
    }
}

impl Serialize for TreatmentPeriod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let clock = &self.clock;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("treatment", &self.treatment)?;
        if let Some(plan) = &self.plan_id {
            map.serialize_entry("plan_id", &**plan)?;
        }
        map.serialize_entry("modality", &self.modality)?;
        map.serialize_entry("status", &clock.status)?;
        map.serialize_entry("start", &clock.start.map(crate::date::format))?;
        map.serialize_entry("start_reason", &self.start_reason)?;
        if clock.status != ClockStatus::NotStarted {
            map.serialize_entry("stop", &clock.stop.map(crate::date::format))?;
            if let Some(reason) = clock.stop_reason {
                map.serialize_entry("stop_reason", &reason)?;
            }
            map.serialize_entry("adjustment_days", &clock.adjustment_days)?;
            map.serialize_entry("days", &clock.days)?;
        }
        map.serialize_entry("target_days", &clock.target_days)?;
        map.serialize_entry("target_date", &clock.target_date.map(crate::date::format))?;
        map.end()
    }
}

/// A subsequent plan while the fold runs: the decision in effect, and how
/// its period stopped.
#[derive(Debug, Clone)]
pub(crate) struct PlanRun<'e> {
    pub plan_id: &'e str,
    pub modality: Modality,
    pub start: NaiveDate,
    pub start_reason: PeriodStartReason,
    pub care_setting: Option<TreatmentSetting>,
    pub stop: Option<(NaiveDate, StopReason)>,
    pub closed: bool,
    /// The trust holding the pathway when its treatment started.
    pub treated_by: Option<OdsCode>,
}

impl<'e> PlanRun<'e> {
    /// The period a subsequent decision dated `day` opens (or restarts).
    pub fn decided(
        plan_id: &'e str,
        modality: Modality,
        day: NaiveDate,
        ecad: Option<NaiveDate>,
    ) -> PlanRun<'e> {
        // An ECAD before its decision is refused on the way in (SPEC 2.12);
        // `max` keeps the fold total whatever it is given.
        let (start, start_reason) = match ecad {
            Some(ecad) if ecad > day => {
                (ecad, PeriodStartReason::EarliestClinicallyAppropriateDate)
            }
            Some(_) => (day, PeriodStartReason::EarliestClinicallyAppropriateDate),
            None => (day, PeriodStartReason::DecisionToTreat),
        };
        PlanRun {
            plan_id,
            modality,
            start,
            start_reason,
            care_setting: None,
            stop: None,
            closed: false,
            treated_by: None,
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.is_some()
    }

    /// Its treatment started on `day` at `trust`: the period stops, taking
    /// the treatment's modality and care setting.
    pub fn treated(&mut self, t: &TreatmentStarted, day: NaiveDate, trust: Option<OdsCode>) {
        if self.stop.is_none() {
            self.modality = t.modality;
            self.care_setting = t.care_setting;
            self.treated_by = trust;
        }
        self.stop_at(day, StopReason::TreatmentStarted, false);
    }

    pub fn stop_at(&mut self, day: NaiveDate, reason: StopReason, closed: bool) {
        if self.stop.is_none() {
            self.stop = Some((day, reason));
            self.closed = closed;
        }
    }

    /// Whether the period waits for its ECAD on `as_of` (not started, not stopped).
    pub fn waiting(&self, as_of: NaiveDate) -> bool {
        self.stop.is_none() && as_of < self.start
    }

    /// The period's clock before its ECAD: the start and target it will have.
    pub fn not_started(&self, target_days: i64) -> Clock {
        Clock {
            start: Some(self.start),
            target_date: Some(self.start + Days::new(target_days.max(0) as u64)),
            ..Clock::bare(ClockStatus::NotStarted, target_days)
        }
    }
}

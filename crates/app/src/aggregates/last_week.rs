//! Last Sunday's weekly return kept with today's aggregates (decision
//! 200): the CANPTL cells (`openptl_rules::report::CanptlCell`) of every
//! pathway as of the latest Sunday before today, as known now, by trust.
//!
//! It is the return every trust submits on a Monday, a past view that
//! otherwise moves every state it can show. Kept, it is summed from a few
//! hundred cells. A pathway's cells as of that Sunday change only with a
//! record that can change its state as of it: one dated on or before the
//! Sunday, or an amendment ([`openptl_rules::history::earliest_date_affected`]);
//! the projection then takes the cells of its history before the record
//! away and adds those of its history after, both evaluated as of the
//! Sunday. Built from every state with today's aggregates (each state
//! moved to the Sunday as a past view of it moves it, the rest read back),
//! and again when the date moves on.
//!
//! The past view of that Sunday (the full re-evaluation when past views
//! read every history) is the oracle it is tested against.

use chrono::{Datelike, Days, NaiveDate};
use foldhash::HashMap;

use openptl_rules::report::{CanptlCell, CanptlReturn};
use openptl_rules::{EffectiveEvent, OdsCode, PathwayState, RecordedEvent, RulesConfig};

use crate::evaluate::effective_or_logged;

/// The cells a pathway adds to one week's return, at its trust.
pub(crate) type Cells = Vec<(OdsCode, CanptlCell)>;

/// The latest Sunday before `today` (a week before, when today is one):
/// the week whose return is submitted this week.
pub(crate) fn last_sunday(today: NaiveDate) -> NaiveDate {
    let back = u64::from(today.weekday().num_days_from_sunday());
    today - Days::new(if back == 0 { 7 } else { back })
}

/// The cells of `state` (as of `week_ending`) in that week's return.
pub(crate) fn cells_of(state: &PathwayState, week_ending: NaiveDate) -> Cells {
    let mut cells = Vec::new();
    CanptlReturn::cells(state, week_ending, |cell| cells.push((state.trust, cell)));
    cells
}

/// The cells of the pathway with `history` (every record known now) in
/// the return of the week ending `week_ending`: its history evaluated as
/// of that Sunday, as a past view reads it back.
pub(crate) fn cells_of_history(
    history: &[RecordedEvent],
    week_ending: NaiveDate,
    config: &RulesConfig,
) -> Cells {
    cells_of_effective(
        &effective_or_logged(history).unwrap_or_default(),
        week_ending,
        config,
    )
}

/// [`cells_of_history`] from the history's effective events (none: a
/// history that no longer fits the rules, which adds nothing).
fn cells_of_effective(
    effective: &[EffectiveEvent],
    week_ending: NaiveDate,
    config: &RulesConfig,
) -> Cells {
    openptl_rules::evaluate(effective, week_ending, config)
        .map(|state| cells_of(&state, week_ending))
        .unwrap_or_default()
}

/// What a refresh changes in last Sunday's cells of a pathway now holding
/// `history` (`effective`: its effective events, as the refresh worked
/// them out): its cells before and after, or `None` when they cannot have
/// changed ([`super::changed_as_of`]). `old` is the record count of the
/// state it replaces (`None`: it had none, so added nothing), evaluated on
/// `evaluated_on`; `now` whether the pathway has a state now (one without
/// adds nothing).
pub(crate) fn change(
    history: (&[RecordedEvent], &[EffectiveEvent]),
    old: Option<u64>,
    now: bool,
    (evaluated_on, today): (NaiveDate, NaiveDate),
    config: &RulesConfig,
) -> Option<(Cells, Cells)> {
    let sundays = (last_sunday(evaluated_on), last_sunday(today));
    super::changed_as_of(history, old, now, sundays, |effective, sunday| {
        cells_of_effective(effective, sunday, config)
    })
}

/// Last Sunday's return, by trust and cell: of the latest Sunday before
/// the projection's `today` (the week is not kept: it moves with `today`,
/// under the same lock).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct LastWeek {
    cells: HashMap<(OdsCode, CanptlCell), i64>,
}

impl LastWeek {
    /// Adds (`sign` 1) or takes away (`sign` -1) a pathway's cells.
    pub(crate) fn apply(&mut self, cells: &Cells, sign: i64) {
        for key in cells {
            super::count(&mut self.cells, *key, sign);
        }
    }

    /// Adds every cell of `other` (partial sums built on several threads).
    pub(crate) fn merge(&mut self, other: LastWeek) {
        for (key, n) in other.cells {
            super::count(&mut self.cells, key, n);
        }
    }

    /// The return of the week ending `week_ending` (the Sunday it is of),
    /// among the pathways whose trust then `trust_visible` allows.
    pub(crate) fn canptl(
        &self,
        week_ending: NaiveDate,
        trust_visible: &dyn Fn(&str) -> bool,
    ) -> CanptlReturn {
        super::return_of(&self.cells, week_ending, trust_visible)
    }

    /// How many cells it keeps.
    pub(crate) fn len(&self) -> usize {
        self.cells.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use openptl_rules::{EventData, EventType};
    use serde_json::json;

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    /// A history of `events` (date, type, data), recorded in that order.
    fn history(events: &[(&str, EventType, serde_json::Value)]) -> Vec<RecordedEvent> {
        events
            .iter()
            .enumerate()
            .map(|(i, (on, ty, data))| RecordedEvent {
                event_id: uuid::Uuid::from_u128(i as u128 + 1),
                version: i as u64 + 1,
                recorded_at: DateTime::<Utc>::MIN_UTC,
                occurred_on: day(on),
                data: EventData::from_json(*ty, data.clone()).unwrap(),
            })
            .collect()
    }

    fn effective(history: &[RecordedEvent]) -> Vec<EffectiveEvent<'_>> {
        effective_or_logged(history).unwrap()
    }

    fn referral(on: &'static str) -> (&'static str, EventType, serde_json::Value) {
        let data = json!({ "nhs_number": "943 476 5919", "trust": "RXH",
                           "tumour_site": "lower_gi", "route": "urgent_suspected_cancer" });
        (on, EventType::ReferralReceived, data)
    }

    fn ruled_out(on: &'static str) -> (&'static str, EventType, serde_json::Value) {
        let data = json!({ "outcome": "cancer_ruled_out" });
        (on, EventType::DiagnosisCommunicated, data)
    }

    /// A record dated on the Sunday changes its cells; one dated after it
    /// does not, unless it is an amendment; a new Sunday moves them all.
    #[test]
    fn a_pathways_cells_change_with_records_that_change_it_as_of_the_sunday() {
        let config = RulesConfig::defaults();
        // Wednesday 3 December 2025: last Sunday is 30 November.
        let wednesday = (day("2025-12-03"), day("2025-12-03"));
        let sunday = day("2025-11-30");
        let waiting = |cells: &Cells| {
            cells
                .iter()
                .any(|(_, cell)| matches!(cell, CanptlCell::Waiting { .. }))
        };
        // Ruled out on the Sunday: off the waiting list at its end.
        let on_it = history(&[referral("2025-11-03"), ruled_out("2025-11-30")]);
        let (before, after) = change(
            (&on_it, &effective(&on_it)),
            Some(1),
            true,
            wednesday,
            &config,
        )
        .unwrap();
        assert!(waiting(&before) && !waiting(&after), "{before:?} {after:?}");
        assert_eq!(after, cells_of_history(&on_it, sunday, &config));
        // Ruled out on the Monday after: the Sunday's cells stand.
        let after_it = history(&[referral("2025-11-03"), ruled_out("2025-12-01")]);
        assert_eq!(
            change(
                (&after_it, &effective(&after_it)),
                Some(1),
                true,
                wednesday,
                &config
            ),
            None
        );
        // A void of the Sunday's diagnosis, made on the Tuesday, puts it back.
        let void =
            json!({ "voids": uuid::Uuid::from_u128(2).to_string(), "reason": "wrong patient" });
        let voided = history(&[
            referral("2025-11-03"),
            ruled_out("2025-11-30"),
            ("2025-12-02", EventType::EventVoided, void),
        ]);
        let (before, after) = change(
            (&voided, &effective(&voided)),
            Some(2),
            true,
            wednesday,
            &config,
        )
        .unwrap();
        assert!(!waiting(&before) && waiting(&after), "{before:?} {after:?}");
        // Nothing recorded, but Monday came: the week referred in is counted.
        let referred = history(&[referral("2025-11-25")]);
        let monday = (day("2025-11-30"), day("2025-12-01"));
        let (before, after) = change(
            (&referred, &effective(&referred)),
            Some(1),
            true,
            monday,
            &config,
        )
        .unwrap();
        assert!(before.is_empty(), "{before:?}");
        assert_eq!(after, cells_of_history(&referred, sunday, &config));
        // A pathway without a state now takes its old cells away.
        let (before, after) = change(
            (&on_it[..1], &effective(&on_it[..1])),
            Some(1),
            false,
            wednesday,
            &config,
        )
        .unwrap();
        assert!(waiting(&before) && after.is_empty());
    }

    #[test]
    fn last_sunday_is_the_latest_sunday_before_today() {
        let day = |d: &str| d.parse::<NaiveDate>().unwrap();
        // Monday 1 Dec 2025 .. Sunday 7 Dec 2025.
        for (today, sunday) in [
            ("2025-12-01", "2025-11-30"),
            ("2025-12-03", "2025-11-30"),
            ("2025-12-06", "2025-11-30"),
            ("2025-12-07", "2025-11-30"),
            ("2025-12-08", "2025-12-07"),
        ] {
            assert_eq!(last_sunday(day(today)), day(sunday), "{today}");
        }
    }
}

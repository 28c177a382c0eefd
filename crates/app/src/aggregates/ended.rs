//! The clocks of the pathways off the PTL, counted for past dates' risk
//! models (decision 158), apart by the week their events are settled by
//! (decision 209).
//!
//! A past PTL page learns its date's model from every clock as of the
//! date. A pathway off the PTL today whose events are settled by the date
//! ([`openptl_rules::pathway::Settled::from`]) adds to it what it adds
//! today, so the view starts from these counts and moves only the other
//! pathways. Counted all together, the counts held every pathway off the
//! PTL, and a view took away today's clocks of each one it moved instead:
//! every pathway closed since its date, some 200,000 a month back at 1.4M
//! pathways, and a sixth of the view's time.
//!
//! Kept apart by the week (Monday to Sunday) of that date, for the week of
//! the day they were last moved on to, the [`WEEKS`] weeks before it and any
//! later week (a declined offer names dates ahead), and together before
//! them, a view as of a date starts
//! from the weeks that end by it and the one it falls in, and takes away
//! only the pathways of that week settled after the date: those settled in
//! later weeks were never counted in what it starts from. A view further
//! back than the weeks kept apart takes away from the counts before them,
//! as before. Pathways whose events are not settled by any date (none
//! kept) are counted in none: every view moves or reads them.
//!
//! Invariant: the counts of each week, and those before, are exactly those
//! of the pathways off the PTL settled in it, however they were added and
//! taken away (equal to the counts built afresh from every state, tested
//! with today's other aggregates).

use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate};
use openptl_rules::forecast::{ModelCounts, Observation};

/// Weeks kept apart before the week of the day the counts were built or
/// last moved on to: a view as of any date in them (35 days back at
/// least, as far as the replaced states past views keep) takes away at
/// most one week's pathways. About a megabyte a week at 1.4M pathways.
pub(crate) const WEEKS: u64 = 5;

/// The clocks of the pathways off the PTL, by the week their events are
/// settled by.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EndedClocks {
    /// The Monday of the first week kept apart.
    since: NaiveDate,
    /// Of the pathways settled before `since`.
    before: ModelCounts,
    /// Of those settled in the week starting on each Monday from `since`
    /// on (no entry for a week that counts no clock).
    weeks: BTreeMap<NaiveDate, ModelCounts>,
}

/// The Monday of the week of `date`.
fn monday(date: NaiveDate) -> NaiveDate {
    let back = u64::from(date.weekday().num_days_from_monday());
    date.checked_sub_days(Days::new(back)).unwrap_or(date)
}

impl EndedClocks {
    /// None counted yet, with the weeks back from that of `today` kept
    /// apart.
    pub(crate) fn new(today: NaiveDate) -> EndedClocks {
        let since = monday(today)
            .checked_sub_days(Days::new(7 * WEEKS))
            .unwrap_or(NaiveDate::MIN);
        EndedClocks {
            since,
            before: ModelCounts::new(),
            weeks: BTreeMap::new(),
        }
    }

    /// Keeps apart the weeks back from that of `today` from now on: the
    /// weeks before them join the counts before. `false` when `today`'s
    /// week is earlier than the one they were kept back from (the counts
    /// before cannot be taken apart again: build them afresh).
    pub(crate) fn new_day(&mut self, today: NaiveDate) -> bool {
        let EndedClocks { since, .. } = EndedClocks::new(today);
        if since < self.since {
            return false;
        }
        let kept = self.weeks.split_off(&since);
        for (_, week) in std::mem::replace(&mut self.weeks, kept) {
            self.before.merge(week);
        }
        self.since = since;
        true
    }

    /// The first day of the counts a pathway settled by `from` is in
    /// (`None`: before the weeks kept apart, as early as any date).
    fn week_of(&self, from: NaiveDate) -> Option<NaiveDate> {
        (from >= self.since).then(|| monday(from))
    }

    /// Counts (`sign` 1) or takes away (`sign` −1) the clocks
    /// `observations` of a pathway off the PTL whose events are settled by
    /// `from` (none: not counted).
    pub(crate) fn apply(
        &mut self,
        from: Option<NaiveDate>,
        observations: &[Observation],
        sign: i32,
    ) {
        let Some(from) = from.filter(|_| !observations.is_empty()) else {
            return;
        };
        let Some(week) = self.week_of(from) else {
            observations
                .iter()
                .for_each(|o| self.before.add_signed(o, sign));
            return;
        };
        let counts = self.weeks.entry(week).or_default();
        observations.iter().for_each(|o| counts.add_signed(o, sign));
        if counts.is_empty() {
            self.weeks.remove(&week);
        }
    }

    /// Adds another's counts, kept apart from the same day (partial sums
    /// of one build).
    pub(crate) fn merge(&mut self, other: EndedClocks) {
        debug_assert_eq!(self.since, other.since, "counts of one build");
        self.before.merge(other.before);
        for (week, counts) in other.weeks {
            let mine = self.weeks.entry(week).or_default();
            mine.merge(counts);
            if mine.is_empty() {
                self.weeks.remove(&week);
            }
        }
    }

    /// The last date a pathway off the PTL may be settled by for what a
    /// view as of `as_of` starts from ([`Self::as_of`]) to count its
    /// clocks: those of the date's week and earlier ones are, so the
    /// Sunday of its week, or the day before the weeks kept apart when
    /// that is later.
    pub(crate) fn counted_to(&self, as_of: NaiveDate) -> NaiveDate {
        let sunday = monday(as_of)
            .checked_add_days(Days::new(6))
            .unwrap_or(NaiveDate::MAX);
        sunday.max(self.since.pred_opt().unwrap_or(NaiveDate::MIN))
    }

    /// What a view as of `as_of` starts from: the counts of the weeks that
    /// start by it, and of those before them.
    pub(crate) fn as_of(&self, as_of: NaiveDate) -> ModelCounts {
        let mut counts = self.before.clone();
        for (_, week) in self.weeks.range(..=as_of) {
            counts.merge(week.clone());
        }
        counts
    }

    /// Gives back what the build's merging grew into and does not use.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.before.shrink_to_fit();
        self.weeks.values_mut().for_each(ModelCounts::shrink_to_fit);
    }

    /// The strata and bytes of all the counts.
    pub(crate) fn size(&self) -> (usize, usize) {
        std::iter::once(&self.before)
            .chain(self.weeks.values())
            .map(ModelCounts::size)
            .fold((0, 0), |(s, b), (strata, bytes)| (s + strata, b + bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("a date")
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-12-07 is a Monday.
        assert_eq!(monday(d("2026-12-07")), d("2026-12-07"));
        assert_eq!(monday(d("2026-12-13")), d("2026-12-07"));
        assert_eq!(monday(d("2026-12-06")), d("2026-11-30"));
        let ended = EndedClocks::new(d("2026-12-09"));
        assert_eq!(ended.since, d("2026-11-02"));
    }

    #[test]
    fn a_new_day_joins_the_weeks_left_behind_to_the_counts_before() {
        let clock = |start: &str, days| Observation {
            kind: openptl_rules::ClockKind::Fds,
            tumour_site: openptl_rules::TumourSite::LowerGi,
            route: openptl_rules::Route::UrgentSuspectedCancer,
            trust: openptl_rules::OdsCode::parse("RXH").expect("a code"),
            start: d(start),
            days,
            target_days: 28,
            outcome: openptl_rules::forecast::Outcome::Stopped,
            mark: None,
        };
        let settled = [
            (d("2026-10-27"), clock("2026-10-01", 19)),
            (d("2026-11-03"), clock("2026-10-02", 25)),
            (d("2026-11-11"), clock("2026-10-09", 26)),
            (d("2026-12-08"), clock("2026-11-20", 18)),
        ];
        let built = |today| {
            let mut ended = EndedClocks::new(today);
            for (from, o) in &settled {
                ended.apply(Some(*from), std::slice::from_ref(o), 1);
            }
            ended
        };
        let mut moved_on = built(d("2026-12-09"));
        assert_eq!(moved_on.weeks.len(), 3);
        assert!(moved_on.new_day(d("2026-12-16")));
        assert_eq!(moved_on, built(d("2026-12-16")));
        assert_eq!(moved_on.weeks.len(), 2);
        assert!(moved_on.new_day(d("2027-03-01")));
        assert_eq!(moved_on, built(d("2027-03-01")));
        assert!(moved_on.weeks.is_empty());
        assert!(!moved_on.new_day(d("2026-12-09")), "back: built afresh");
    }

    #[test]
    fn a_view_counts_the_weeks_that_start_by_its_date() {
        let ended = EndedClocks::new(d("2026-12-09"));
        let counted = |from: &str, as_of: &str| d(from) <= ended.counted_to(d(as_of));
        // Before the weeks kept apart: counted as of any date.
        assert!(counted("2026-11-01", "2020-01-01"));
        // In a week: counted from its Monday on.
        assert!(!counted("2026-11-19", "2026-11-15"));
        assert!(counted("2026-11-19", "2026-11-16"));
        assert!(counted("2026-11-16", "2026-11-16"));
        assert!(counted("2026-11-22", "2026-11-16"));
        assert!(!counted("2026-11-23", "2026-11-22"));
        // Exactly the pathways of the counts a view starts from, for every
        // date settled by and viewed as of over four months.
        let days = || (0..120).map(|n| d("2026-09-01") + Days::new(n));
        for from in days() {
            for as_of in days() {
                let in_sum = ended.week_of(from).is_none_or(|week| week <= as_of);
                assert_eq!(from <= ended.counted_to(as_of), in_sum, "{from} {as_of}");
            }
        }
    }
}

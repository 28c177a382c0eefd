//! The date each recent record is about, by log position (issue 22's views
//! as known at a past moment).
//!
//! A view as known at a moment must read back every pathway with a record
//! after that moment, unless each such record is dated after the view's
//! date: then the pathway as known then equals the pathway as known now,
//! as of that date ([`openptl_rules::history::earliest_date_affected`]),
//! and the view moves the projection's state as it does for a view known
//! now. Records are keyed in days late, so most records after a moment a
//! week ago are dated after that day: without this, a view as known a
//! week ago read back every pathway touched since.
//!
//! Two bytes per record, for the records recorded in the last
//! [`KEEP_DAYS`] days (views further back read their pathways back). A
//! position not kept reads back its pathway: the safe answer. They are
//! read from the log in place after a fold from nothing or a restore
//! ([`record_days_from`]); appends keep them after.

use std::collections::VecDeque;

use chrono::{DateTime, Days, NaiveDate, Utc};
use openptl_rules::history;

use crate::{fold, AppError};

/// Days of records kept, counted back from the latest record's date, and
/// so of the states kept when replaced (`replaced.rs`): a past view of a
/// date up to five weeks back (the end of last month, whatever today)
/// moves the replaced state of a pathway whose records since affect only
/// later dates. At 15 days, a view three weeks back read back some 300,000
/// histories at 1.4M pathways and took 2.7 s; at 35 it reads about 29,000
/// (decision 206). Two bytes a record in memory (about 6.6 MB at 1.4M),
/// and about 12 MiB a day of files.
pub(crate) const KEEP_DAYS: u64 = 35;

/// A record that may affect any date (an amendment, or a date before
/// 1970-01-01).
const ANY_DATE: u16 = 0;

/// The first date [`RecordDays`] can hold: day 1.
const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");

/// The date each kept record affects, from `base` on, without gaps.
#[derive(Debug, Default)]
pub(crate) struct RecordDays {
    /// The position of `days[0]`.
    base: u64,
    days: VecDeque<u16>,
    /// The first position recorded on each date kept, oldest first.
    starts: VecDeque<(NaiveDate, u64)>,
}

/// A date as kept: days from 1970-01-01 plus one, [`ANY_DATE`] for none or
/// before it, at most `u16::MAX` (a date after 2149 stays after any view's
/// date this binary can be asked about).
fn day_of(affected: Option<NaiveDate>) -> u16 {
    match affected {
        Some(date) if date >= EPOCH => {
            u16::try_from((date - EPOCH).num_days() + 1).unwrap_or(u16::MAX)
        }
        _ => ANY_DATE,
    }
}

impl RecordDays {
    /// Keeps the record at `position`, recorded at `recorded_at`, which
    /// affects dates from `affected` on (`None`: any date). A position
    /// that is not the next one starts afresh from it.
    pub(crate) fn push(
        &mut self,
        position: u64,
        recorded_at: DateTime<Utc>,
        affected: Option<NaiveDate>,
    ) {
        if position != self.base + self.days.len() as u64 {
            *self = RecordDays {
                base: position,
                ..RecordDays::default()
            };
        }
        let recorded_on = recorded_at.date_naive();
        if self.starts.back().is_none_or(|(on, _)| *on < recorded_on) {
            self.starts.push_back((recorded_on, position));
            self.trim(recorded_on - Days::new(KEEP_DAYS));
        }
        self.days.push_back(day_of(affected));
    }

    /// Puts `next` (the positions right after these, read apart) after
    /// these; anything else starts afresh from `next`.
    pub(crate) fn append(&mut self, next: RecordDays) {
        if next.days.is_empty() {
            return;
        }
        if self.days.is_empty() || next.base != self.base + self.days.len() as u64 {
            *self = next;
            return;
        }
        self.days.reserve_exact(next.days.len());
        let last_date = self.starts.back().map(|(on, _)| *on);
        self.starts.extend(
            next.starts
                .into_iter()
                .filter(|(on, _)| last_date.is_none_or(|last| *on > last)),
        );
        self.days.extend(next.days);
    }

    /// Lets go of the records recorded before `since`.
    fn trim(&mut self, since: NaiveDate) {
        while self.starts.len() > 1 && self.starts[0].0 < since {
            self.starts.pop_front();
            let keep_from = self.starts[0].1;
            let drop = usize::try_from(keep_from - self.base).unwrap_or(usize::MAX);
            self.days.drain(..drop.min(self.days.len()));
            self.base = keep_from;
        }
    }

    /// Whether the record at a position is kept and affects only dates
    /// after `as_of`, of one date asked of many records: a past view's
    /// split asks it of every pathway it cannot pass over (the date's day
    /// is worked out once; decision 209).
    pub(crate) fn after_date(&self, as_of: NaiveDate) -> impl Fn(u64) -> bool + Copy + '_ {
        let as_of = day_of(Some(as_of));
        move |position| self.after_day(position, as_of)
    }

    fn after_day(&self, position: u64, as_of: u16) -> bool {
        let kept = position
            .checked_sub(self.base)
            .and_then(|i| self.days.get(usize::try_from(i).ok()?));
        kept.is_some_and(|day| *day != ANY_DATE && *day > as_of)
    }

    /// Whether every record from `from` to `to` (inclusive) is kept and
    /// affects only dates after `as_of` (`true` when there are none).
    pub(crate) fn all_after(&self, from: u64, to: u64, as_of: NaiveDate) -> bool {
        if from > to {
            return true;
        }
        let index = |p: u64| {
            p.checked_sub(self.base)
                .and_then(|i| usize::try_from(i).ok())
        };
        let (Some(first), Some(last)) = (index(from), index(to)) else {
            return false;
        };
        if last >= self.days.len() {
            return false;
        }
        let as_of = day_of(Some(as_of));
        self.days
            .range(first..=last)
            .all(|day| *day != ANY_DATE && *day > as_of)
    }

    /// Room for `records` from `position` on.
    pub(crate) fn starting_at(position: u64, records: usize) -> RecordDays {
        RecordDays {
            base: position,
            days: VecDeque::with_capacity(records),
            starts: VecDeque::new(),
        }
    }

    /// Bytes its queues take, as allocated (for the memory figures).
    pub(crate) fn bytes(&self) -> usize {
        self.days.capacity() * std::mem::size_of::<u16>()
            + self.starts.capacity() * std::mem::size_of::<(NaiveDate, u64)>()
    }

    /// Records kept (for the memory figures).
    pub(crate) fn len(&self) -> usize {
        self.days.len()
    }

    /// The first position kept, if any.
    pub(crate) fn first(&self) -> Option<u64> {
        (!self.days.is_empty()).then_some(self.base)
    }
}

/// The earliest date a stored record can change a pathway's state as of
/// ([`history::earliest_date_affected`]); `None` (any date) for one that
/// cannot be read.
pub(super) fn date_affected(record: openptl_log::RecordRef<'_>) -> Option<NaiveDate> {
    let ty = openptl_rules::EventType::parse(record.event_type)?;
    let occurred_on = openptl_rules::event::occurred_on_of_payload(record.payload).ok()?;
    history::earliest_date_affected(ty, occurred_on)
}

/// The [`RecordDays`] of the records recorded in the last
/// [`KEEP_DAYS`] days up to `to`, read from the log in place
/// (after a fold from nothing or a restore; appends keep it after).
pub(super) fn record_days_from(
    reader: &dyn openptl_log::InPlace,
    to: u64,
) -> Result<RecordDays, AppError> {
    let mut days = RecordDays::default();
    if to == 0 {
        return Ok(days);
    }
    let recorded_at = |position: u64| -> Result<Option<DateTime<Utc>>, AppError> {
        let mut at = None;
        reader.visit(position, position, &|_| true, &mut |r| {
            at = Some(r.recorded_at)
        })?;
        Ok(at)
    };
    let Some(last) = recorded_at(to)? else {
        return Ok(days);
    };
    let since = last.date_naive() - chrono::Days::new(KEEP_DAYS);
    // The first position recorded on or after `since` (recorded moments
    // never go back along the log).
    let (mut before, mut from) = (0u64, to);
    while from - before > 1 {
        let mid = before + (from - before) / 2;
        match recorded_at(mid)? {
            Some(at) if at.date_naive() >= since => from = mid,
            _ => before = mid,
        }
    }
    let started = std::time::Instant::now();
    // A range of positions per core, read side by side, then put end to end.
    let threads = fold::cores().max(1) as u64;
    let step = (to - from + 1).div_ceil(threads);
    let ranges: Vec<(u64, u64)> = (0..threads)
        .map(|i| (from + i * step, (from + (i + 1) * step - 1).min(to)))
        .filter(|(first, last)| first <= last)
        .collect();
    let parts = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|(first, last)| {
                scope.spawn(move || {
                    let records = usize::try_from(last - first + 1).unwrap_or(0);
                    let mut part = RecordDays::starting_at(*first, records);
                    reader
                        .visit(*first, *last, &|_| true, &mut |r| {
                            part.push(r.position, r.recorded_at, date_affected(r));
                        })
                        .map(|()| part)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(part) => part.map_err(AppError::from),
                Err(_) => Err(AppError::internal("reading the record dates panicked")),
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    for part in parts {
        days.append(part);
    }
    tracing::info!(
        from = days.first(),
        records = days.len(),
        ms = started.elapsed().as_millis() as u64,
        "the last days' record dates read for past views"
    );
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: &str) -> DateTime<Utc> {
        format!("{day}T10:00:00Z").parse().unwrap()
    }

    fn date(day: &str) -> NaiveDate {
        day.parse().unwrap()
    }

    #[test]
    fn a_kept_record_answers_for_the_dates_it_affects() {
        let mut days = RecordDays::default();
        days.push(7, at("2026-12-01"), Some(date("2026-11-28")));
        days.push(8, at("2026-12-01"), None);
        days.push(9, at("2026-12-02"), Some(date("2026-12-02")));
        assert!(days.after_date(date("2026-11-27"))(7));
        assert!(!days.after_date(date("2026-11-28"))(7), "its own date");
        assert!(
            !days.after_date(date("1999-01-01"))(8),
            "an amendment: any date"
        );
        assert!(days.after_date(date("2026-12-01"))(9));
        assert!(!days.after_date(date("2000-01-01"))(6), "not kept");
        assert!(!days.after_date(date("2000-01-01"))(10), "not yet");
        assert_eq!(days.first(), Some(7));
    }

    #[test]
    fn a_run_of_records_is_after_a_date_when_each_is() {
        let mut days = RecordDays::default();
        days.push(7, at("2026-12-01"), Some(date("2026-11-28")));
        days.push(8, at("2026-12-01"), Some(date("2026-12-01")));
        days.push(9, at("2026-12-02"), None);
        let from_to_after = |from, to, day| {
            let each = (from..=to).all(days.after_date(date(day)));
            assert_eq!(
                days.all_after(from, to, date(day)),
                each,
                "{from}..={to} after {day}"
            );
            each
        };
        assert!(from_to_after(7, 8, "2026-11-27"));
        assert!(!from_to_after(7, 8, "2026-11-28"));
        assert!(from_to_after(8, 8, "2026-11-30"));
        assert!(!from_to_after(8, 9, "2026-11-30"), "an amendment");
        assert!(!from_to_after(6, 7, "2000-01-01"), "not kept");
        assert!(!from_to_after(8, 10, "2000-01-01"), "not yet");
        assert!(days.all_after(9, 8, date("2030-01-01")), "none");
    }

    #[test]
    fn records_older_than_the_kept_days_are_let_go() {
        let first = date("2026-11-01");
        let on = |days: u64| first + Days::new(days);
        let at = |days: u64| on(days).and_hms_opt(12, 0, 0).expect("a time").and_utc();
        let mut days = RecordDays::default();
        days.push(1, at(0), Some(on(0)));
        days.push(2, at(0), Some(on(0)));
        days.push(3, at(9), Some(on(9)));
        days.push(4, at(KEEP_DAYS), Some(on(KEEP_DAYS)));
        assert_eq!(days.first(), Some(1), "{KEEP_DAYS} days back is kept");
        days.push(5, at(KEEP_DAYS + 1), Some(on(KEEP_DAYS + 1)));
        assert_eq!(
            (days.first(), days.len()),
            (Some(3), 3),
            "the first day is {} days back",
            KEEP_DAYS + 1
        );
        assert!(days.after_date(on(8))(3));
        assert!(!days.after_date(date("2000-01-01"))(2));
    }

    #[test]
    fn a_gap_starts_afresh() {
        let mut days = RecordDays::default();
        days.push(1, at("2026-11-01"), Some(date("2026-11-01")));
        days.push(5, at("2026-11-01"), Some(date("2026-11-02")));
        assert_eq!((days.first(), days.len()), (Some(5), 1));
        assert!(!days.after_date(date("2000-01-01"))(1));
        assert!(days.after_date(date("2026-11-01"))(5));
    }

    #[test]
    fn parts_read_apart_join_as_read_together() {
        let records = [
            (3, "2026-11-01", "2026-10-30"),
            (4, "2026-11-01", "2026-11-01"),
            (5, "2026-11-02", "2026-11-02"),
            (6, "2026-11-03", "2026-11-01"),
        ];
        let mut together = RecordDays::default();
        for (position, at_day, about) in records {
            together.push(position, at(at_day), Some(date(about)));
        }
        for split in 0..=records.len() {
            let mut first = RecordDays::default();
            let mut second = RecordDays::default();
            for (n, (position, at_day, about)) in records.into_iter().enumerate() {
                let part = if n < split { &mut first } else { &mut second };
                part.push(position, at(at_day), Some(date(about)));
            }
            first.append(second);
            assert_eq!(
                (first.base, &first.days, &first.starts),
                (together.base, &together.days, &together.starts),
                "split at {split}"
            );
        }
    }

    #[test]
    fn dates_out_of_range_are_safe() {
        assert_eq!(day_of(Some(date("1960-01-01"))), ANY_DATE);
        assert_eq!(day_of(Some(date("2200-01-01"))), u16::MAX);
        assert_eq!(day_of(Some(EPOCH)), 1);
    }
}

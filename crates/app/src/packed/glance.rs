//! What a past view's split asks of every pathway's state, kept beside its
//! packed bytes so that the split need not read them (decision 209): the
//! state's date span, whether it is on the PTL, the date its events are
//! settled by ([`Settled::from`]) and its tumour site (decision 213).
//!
//! A past view walks every pathway under the projection's lock and passes
//! over most of them (a state whose events are settled by the view's date
//! adds to the kept sums what it adds today). Reading the first three facts
//! from the packed head cost a cache miss per pathway, 1.4 million at
//! alliance scale, and the split was memory-bound on them; a list of one
//! site's pathways copied every other site's state to find its site after
//! the head. Kept here in eight bytes, in place of the span's two dates,
//! the packed state stays the size it was (24 bytes beside its bytes); the
//! site takes the byte the others left over.
//!
//! Each date is kept as days from 1 January 1950 in two bytes, which holds
//! every date to 6 June 2129; a state with a date outside says so, and its
//! dates and place on the PTL are read from its head instead (slower, never
//! different). Its site is kept all the same.

use chrono::NaiveDate;
use openptl_rules::TumourSite;

use super::bytes::{date_of_day, day, FIRST_DAY};

/// The facts, as [`Glance::of`] keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Glance {
    earliest: u16,
    latest: u16,
    settled_from: u16,
    flags: u8,
    /// Kept whatever the dates.
    site: TumourSite,
}

/// Every date fits in two bytes: the facts are kept here.
const NEAR: u8 = 1;
/// The state is on the PTL.
const ON_PTL: u8 = 2;
/// Its events' settled dates are known.
const SETTLED: u8 = 4;

/// `date` as days from [`FIRST_DAY`], when it fits in two bytes.
fn near(date: NaiveDate) -> Option<u16> {
    u16::try_from(day(date).checked_sub(FIRST_DAY)?).ok()
}

/// The date of days from [`FIRST_DAY`].
fn date(near: u16) -> NaiveDate {
    // Two bytes of days from 1950 always make a date.
    date_of_day(FIRST_DAY + i32::from(near)).unwrap_or(NaiveDate::MIN)
}

impl Glance {
    /// The facts of a state with this date span, place on the PTL,
    /// settled dates and tumour site.
    pub(super) fn of(
        span: (NaiveDate, NaiveDate),
        on_ptl: bool,
        settled_from: Option<NaiveDate>,
        site: TumourSite,
    ) -> Glance {
        let dates = (
            near(span.0),
            near(span.1),
            settled_from.map_or(Some(0), near),
        );
        let flags = u8::from(on_ptl) * ON_PTL + u8::from(settled_from.is_some()) * SETTLED;
        match dates {
            (Some(earliest), Some(latest), Some(settled_from)) => Glance {
                earliest,
                latest,
                settled_from,
                flags: flags | NEAR,
                site,
            },
            _ => Glance {
                earliest: 0,
                latest: 0,
                settled_from: 0,
                flags,
                site,
            },
        }
    }

    /// Whether the facts are kept here (`false`: read them from the head).
    pub(super) fn near(self) -> bool {
        self.flags & NEAR != 0
    }

    /// The state's date span (meaningless unless [`Glance::near`]).
    pub(super) fn span(self) -> (NaiveDate, NaiveDate) {
        (date(self.earliest), date(self.latest))
    }

    /// The state's tumour site (kept whatever its dates).
    pub(super) fn site(self) -> TumourSite {
        self.site
    }

    /// Whether the state is on the PTL, and the date its events are settled
    /// by when known.
    pub(super) fn on_ptl_settled_from(self) -> (bool, Option<NaiveDate>) {
        let settled = self.flags & SETTLED != 0;
        (
            self.flags & ON_PTL != 0,
            settled.then(|| date(self.settled_from)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("a date")
    }

    #[test]
    fn facts_read_back_as_kept() {
        let cases = [
            (
                (d("2026-01-05"), d("2026-03-01")),
                true,
                Some(d("2026-02-10")),
            ),
            ((d("1950-01-01"), d("2129-01-01")), false, None),
            (
                (d("2026-01-05"), d("2026-01-05")),
                false,
                Some(d("2026-01-05")),
            ),
        ];
        for (span, on_ptl, from) in cases {
            for site in TumourSite::ALL {
                let glance = Glance::of(span, on_ptl, from, *site);
                assert!(glance.near());
                assert_eq!(glance.span(), span);
                assert_eq!(glance.on_ptl_settled_from(), (on_ptl, from));
                assert_eq!(glance.site(), *site);
            }
        }
    }

    #[test]
    fn dates_outside_two_bytes_are_not_kept() {
        let cases = [
            ((d("1949-12-31"), d("2026-01-01")), None),
            ((d("2026-01-01"), d("2130-01-01")), None),
            ((d("2026-01-01"), d("2026-02-01")), Some(d("0001-01-01"))),
        ];
        for (span, from) in cases {
            let glance = Glance::of(span, true, from, TumourSite::Lung);
            assert!(!glance.near());
            // The site is kept all the same.
            assert_eq!(glance.site(), TumourSite::Lung);
        }
    }

    #[test]
    fn kept_in_eight_bytes() {
        assert_eq!(std::mem::size_of::<Glance>(), 8);
        assert_eq!(std::mem::size_of::<super::super::Packed>(), 24);
        assert_eq!(std::mem::size_of::<Option<super::super::Packed>>(), 24);
    }
}

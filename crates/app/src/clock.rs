//! Time as an input. The rules never read the clock; the application asks
//! this trait, so tests can fix "now".

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Europe::London;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock stopped at one moment, for tests.
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// The calendar date in England at `now` (GMT or BST).
pub fn london_today(now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&London).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn london_date_follows_british_summer_time() {
        let at = |s: &str| london_today(s.parse().unwrap()).to_string();
        assert_eq!(at("2025-06-30T23:30:00Z"), "2025-07-01"); // BST: already tomorrow
        assert_eq!(at("2025-12-31T23:30:00Z"), "2025-12-31"); // GMT
    }
}

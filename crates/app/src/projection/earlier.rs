//! The earlier states a pathway keeps for past views (issue 22): which
//! dates they are of, and how they are evaluated when the pathway is.

use chrono::NaiveDate;
use openptl_rules::pathway::Earlier;
use openptl_rules::{PathwayState, RulesConfig};

use crate::aggregates::last_week::last_sunday;

/// How far back past views find earlier states kept (issue 22): a view as
/// of any of the last two weeks (last Sunday's return, a week ago) moves
/// them; an older one reads back the histories of pathways with events
/// since. Longer costs memory: at 1.4M pathways, five weeks and three
/// states kept 534 bytes per open pathway, past SPEC 7's budget.
const EARLIER_DAYS: u64 = 14;

/// Earlier states kept per pathway at most: those covering the dates
/// past views are most asked for ([`asked_dates`]), then its latest.
const EARLIER_MOST: usize = 2;

/// The past dates views are most asked for, first first: last Sunday (the
/// weekly CANPTL return, every trust every Monday) and a week ago (the
/// week-on-week PTL). When the date changes, every pathway that may keep
/// one is evaluated again (only those that keep none on the new day are
/// moved to it, [`keeps_none`]), so the states kept follow these dates.
fn asked_dates(today: NaiveDate) -> [NaiveDate; 2] {
    [last_sunday(today), today - chrono::Days::new(7)]
}

/// The earlier states of a pathway that past views of the last
/// [`EARLIER_DAYS`] can move ([`Earlier`]), each evaluated on its date
/// (none before the referral).
pub(super) fn earlier_states(
    effective: &[openptl_rules::EffectiveEvent],
    today: NaiveDate,
    config: &RulesConfig,
) -> Vec<(Earlier, PathwayState)> {
    let since = today - chrono::Days::new(EARLIER_DAYS);
    Earlier::of(effective, since, EARLIER_MOST, &asked_dates(today))
        .into_iter()
        .filter_map(|e| Some((e, openptl_rules::evaluate(effective, e.on, config)?)))
        .collect()
}

/// Whether a pathway whose events are settled by `from`
/// ([`openptl_rules::pathway::Settled::from`]) keeps no earlier state on
/// `today`: an earlier state's range ends the day before one of its
/// events' dates, so before `from`, and those ending before the last
/// [`EARLIER_DAYS`] are not kept. Such a pathway's state on a new day
/// depends on the date only as [`PathwayState::moved_to`] moves it
/// (decision 219).
pub(super) fn keeps_none(from: NaiveDate, today: NaiveDate) -> bool {
    today
        .checked_sub_days(chrono::Days::new(EARLIER_DAYS))
        .is_some_and(|since| from <= since)
}

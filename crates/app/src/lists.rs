//! What every list behind a figure does (decisions 187, 190): reads the
//! states of the view's moment, as the figure's view does, keeps the lines
//! its filter gives, orders them, masks NHS numbers for roles that may not
//! see them, and writes the read to the access log.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use openptl_rules::{PathwayState, Period, TumourSite};

use crate::access::Principal;
use crate::past::Shown;
use crate::views::mask;
use crate::{App, AppError};

/// Which of today's pathways a list can take its lines from, as today's
/// aggregates index them: the caller's lines must come only from those,
/// and, for [`Indexed::CwtRecords`], only from a pathway whose state as of
/// the list's moment has CWT records in the month (a past list passes over
/// the others, decision 211).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Indexed {
    /// Those with CWT records in this month or the last (decision 149).
    CwtRecords(Period),
    /// Those with a milestone pending or overdue (decision 201).
    MilestoneUndecided,
}

/// The lines of a list a reader asks for (decision 214): `offset` lines
/// passed over, then at most `limit` (`None`: every one). The default is
/// the whole list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub limit: Option<usize>,
}

impl Page {
    /// How many lines of a list of `total` the page holds.
    pub fn len_of(self, total: usize) -> usize {
        total
            .saturating_sub(self.offset)
            .min(self.limit.unwrap_or(usize::MAX))
    }

    /// The page's lines of `lines`, the others freed on a thread of their
    /// own.
    pub fn of<T: Send + 'static>(self, mut lines: Vec<T>) -> Vec<T> {
        if self.offset == 0 && self.limit.is_none_or(|limit| limit >= lines.len()) {
            return lines;
        }
        let mut kept = lines.split_off(self.offset.min(lines.len()));
        kept.truncate(self.limit.unwrap_or(usize::MAX));
        crate::drop_later(lines);
        kept
    }
}

/// A line of a list behind a figure.
pub(crate) trait PatientLine: Send + Sync + 'static {
    /// A summary of the line that the list's order agrees with: a line
    /// whose key is less comes first (`fold::par_order_parts_by`; a list
    /// of every clock of a month at alliance scale is hundreds of
    /// thousands of lines).
    type Key: Ord + Send + Sync;

    /// Its NHS number, to mask.
    fn nhs_number(&mut self) -> &mut String;

    /// Its [`PatientLine::Key`].
    fn key(&self) -> Self::Key;
}

impl App {
    /// The lines `add` gives for each state of the moment `at` (an `as_of`
    /// date and a `known_at`) that `shown` may show, in `order`, masked for
    /// `principal`, audited as `action`; and the log position they show.
    /// A list of today, as known now, with `indexed` reads only the
    /// pathways today's aggregates index so (the CWT records of this month
    /// or the last, the milestones undecided): the caller's lines must
    /// come only from those. A list of another moment with a month's CWT
    /// records passes over the states without records in the month, as the
    /// CWT submission does (decision 211); with a tumour `site`, whose
    /// pathways alone `add` gives lines of, over the states of other sites
    /// (decision 212). The access log records the lines `page` takes of
    /// them, which are all the reader is sent (decision 214).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn patient_list<L: PatientLine>(
        &self,
        at: (NaiveDate, Option<DateTime<Utc>>),
        shown: Shown,
        indexed: Option<Indexed>,
        site: Option<TumourSite>,
        principal: &Principal,
        page: Page,
        action: &'static str,
        add: impl Fn(&mut Vec<L>, &str, &PathwayState) + Send + Sync + 'static,
        order: fn(&L, &L) -> std::cmp::Ordering,
    ) -> Result<(Vec<L>, u64), AppError> {
        let (as_of, known_at) = at;
        let add = Arc::new(add);
        let found = match indexed {
            Some(indexed) => {
                let add = add.clone();
                self.todays_indexed_lines(as_of, known_at, indexed, move |lines, id, state| {
                    add(lines, id, state)
                })
                .await?
            }
            None => None,
        };
        let (parts, position) = match found {
            Some(found) => found,
            None => {
                let split = self.past_split(as_of, known_at, shown).await?;
                // A list of a month's CWT-recorded pathways reads, as of any
                // moment, only those the split finds with records in it
                // (decision 211), as the CWT submission does.
                let split = match indexed {
                    Some(Indexed::CwtRecords(month)) => split.recording(month),
                    _ => split,
                };
                let split = match site {
                    Some(site) => split.of_site(site),
                    None => split,
                };
                // One part per core's fold: merged, not copied.
                self.fold_states(
                    split,
                    Vec::new,
                    move |parts, id, state| add(crate::fold::last_part(parts), id, state),
                    Vec::extend,
                    None,
                )
                .await?
            }
        };
        let nhs_numbers = principal.sees_nhs_numbers();
        let lines = self
            .off_workers(move || {
                let mut lines = crate::fold::par_sort_parts_by(parts, L::key, order);
                // The key agrees with the order (checked in every test that
                // asks for a list).
                debug_assert!(
                    lines.windows(2).all(|w| order(&w[0], &w[1]).is_le()),
                    "a list's key disagrees with its order"
                );
                if !nhs_numbers {
                    for line in &mut lines {
                        let number = line.nhs_number();
                        *number = mask(number);
                    }
                }
                lines
            })
            .await?;
        self.audit(principal, action, None, Some(page.len_of(lines.len())))?;
        Ok((lines, position))
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    /// A page holds the lines it says it holds, in the list's order, and
    /// the pages in turn are the whole list.
    #[test]
    fn pages_hold_what_they_say_and_make_the_whole_list() {
        for total in [0, 1, 2, 7] {
            let whole: Vec<usize> = (0..total).collect();
            assert_eq!(Page::default().of(whole.clone()), whole);
            for limit in [1, 2, 3, 10] {
                let mut read = Vec::new();
                for offset in (0..total + 2).step_by(limit) {
                    let page = Page {
                        offset,
                        limit: Some(limit),
                    };
                    let lines = page.of(whole.clone());
                    assert_eq!(lines.len(), page.len_of(total), "{page:?} of {total}");
                    read.extend(lines);
                }
                assert_eq!(read, whole, "pages of {limit}");
            }
        }
    }
}

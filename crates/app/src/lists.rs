//! What every list behind a figure does (decisions 187, 190): reads the
//! states of the view's moment, as the figure's view does, keeps the lines
//! its filter gives, orders them, masks NHS numbers for roles that may not
//! see them, and writes the read to the access log.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use openptl_rules::{PathwayState, Period};

use crate::access::Principal;
use crate::past::Shown;
use crate::views::mask;
use crate::{App, AppError};

/// A line of a list behind a figure.
pub(crate) trait PatientLine: Send + Sync + 'static {
    /// Its NHS number, to mask.
    fn nhs_number(&mut self) -> &mut String;
}

impl App {
    /// The lines `add` gives for each state of the moment `at` (an `as_of`
    /// date and a `known_at`) that `shown` may show, in `order`, masked for
    /// `principal`, audited as `action`; and the log position they show.
    /// A list of today's `month` (this month or the last) reads only the
    /// pathways today's CWT index holds for it, when `month` is given:
    /// the caller's lines must come only from pathways with CWT records in
    /// the month.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn patient_list<L: PatientLine>(
        &self,
        at: (NaiveDate, Option<DateTime<Utc>>),
        shown: Shown,
        month: Option<Period>,
        principal: &Principal,
        action: &'static str,
        add: impl Fn(&mut Vec<L>, &str, &PathwayState) + Send + Sync + 'static,
        order: fn(&L, &L) -> std::cmp::Ordering,
    ) -> Result<(Vec<L>, u64), AppError> {
        let (as_of, known_at) = at;
        let add = Arc::new(add);
        let indexed = match month {
            Some(month) => {
                let add = add.clone();
                self.todays_month_lines(as_of, known_at, month, move |lines, id, state| {
                    add(lines, id, state)
                })
                .await?
            }
            None => None,
        };
        let (lines, position) = match indexed {
            Some((parts, position)) => (parts.into_iter().flatten().collect(), position),
            None => {
                let split = self.past_split(as_of, known_at, shown).await?;
                self.fold_states(
                    split,
                    Vec::new,
                    move |lines, id, state| add(lines, id, state),
                    Vec::extend,
                    None,
                )
                .await?
            }
        };
        let nhs_numbers = principal.sees_nhs_numbers();
        let lines = self
            .off_workers(move || {
                let mut lines = lines;
                lines.sort_unstable_by(order);
                if !nhs_numbers {
                    for line in &mut lines {
                        let number = line.nhs_number();
                        *number = mask(number);
                    }
                }
                lines
            })
            .await?;
        self.audit(principal, action, None, Some(lines.len()))?;
        Ok((lines, position))
    }
}

//! What every list behind a figure does (decisions 187, 190): reads the
//! states of the view's moment, as the figure's view does, keeps the lines
//! its filter gives, orders them, masks NHS numbers for roles that may not
//! see them, and writes the read to the access log.

use openptl_rules::PathwayState;

use crate::access::Principal;
use crate::past::Split;
use crate::views::mask;
use crate::{App, AppError};

/// A line of a list behind a figure.
pub(crate) trait PatientLine: Send + Sync + 'static {
    /// Its NHS number, to mask.
    fn nhs_number(&mut self) -> &mut String;
}

impl App {
    /// The lines `add` gives for each state of `split`, in `order`, masked
    /// for `principal`, audited as `action`; and the log position they
    /// show.
    pub(crate) async fn patient_list<L: PatientLine>(
        &self,
        split: Split,
        principal: &Principal,
        action: &'static str,
        add: impl Fn(&mut Vec<L>, &str, &PathwayState) + Send + Sync + 'static,
        order: fn(&L, &L) -> std::cmp::Ordering,
    ) -> Result<(Vec<L>, u64), AppError> {
        let (lines, position) = self
            .fold_states(split, Vec::new, add, Vec::extend, None)
            .await?;
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
        self.audit(principal, action, None, Some(lines.len()));
        Ok((lines, position))
    }
}

//! The monthly CWT data set submission (SPEC 4.4): its lines, one per
//! record of a pathway treated or told its outcome in the month, with
//! their identifiers, and their order, worked out on every core.

use openptl_rules::cwt::{self, CwtRecord};
use openptl_rules::{OdsCode, PathwayState, Period};
use serde::Serialize;

use crate::access::Principal;
use crate::lists::Indexed;
use crate::past::Shown;
use crate::views::{mask, TrustFilter, ViewAt};
use crate::{App, AppError};

/// One record of the monthly CWT data set submission, with its
/// identifiers (masked or cleared for roles that may not see them).
///
/// As JSON, one object: the identifiers, then the record's items, each
/// under its national name ([`cwt::IDENTIFIER_COLUMNS`], [`cwt::COLUMNS`]).
///
/// Its `Debug` leaves the NHS number out, so no log line or panic can
/// print it.
#[derive(Clone)]
pub struct CwtLine {
    pub nhs_number: String,
    pub pathway_id: String,
    pub row: CwtRecord,
}

impl std::fmt::Debug for CwtLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CwtLine")
            .field("pathway_id", &self.pathway_id)
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

impl CwtLine {
    /// Its items in the order of the submission's columns: the
    /// identifiers, then the record's.
    pub fn items(&self) -> impl Iterator<Item = &str> + '_ {
        [self.nhs_number.as_str(), self.pathway_id.as_str()]
            .into_iter()
            .chain(self.row.items())
    }

    /// The national names of [`CwtLine::items`], in the same order: the
    /// submission's columns.
    pub fn names() -> impl Iterator<Item = &'static str> + Clone {
        cwt::IDENTIFIER_COLUMNS.iter().chain(&cwt::COLUMNS).copied()
    }

    /// Its items' bytes, together.
    pub fn items_len(&self) -> usize {
        self.nhs_number.len() + self.pathway_id.len() + self.row.items_len()
    }
}

// Written by hand rather than with a flattened record: a flattened map has
// no known length, and a month at alliance scale is hundreds of thousands
// of these.
impl Serialize for CwtLine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(cwt::IDENTIFIER_COLUMNS.len() + cwt::COLUMNS.len()))?;
        for (name, value) in CwtLine::names().zip(self.items()) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// A month's CWT submission lines in their order ([`cwt_order`]), kept in
/// the parts the views' folds made them in, with where each lies: a month
/// at alliance scale is hundreds of thousands of lines of a few hundred
/// bytes, and moving them into one list took a third of their sort.
///
/// As JSON, the list of its lines.
pub struct CwtLines {
    parts: Vec<Vec<CwtLine>>,
    /// Where each line lies, in order.
    order: Vec<CwtPlace>,
}

/// Where a line lies in its [`CwtLines`]: its part and its index there.
#[derive(Clone, Copy, Debug)]
pub struct CwtPlace(usize, usize);

impl CwtLines {
    /// `parts`' lines in [`cwt_order`], worked out on every core.
    fn sorted(parts: Vec<Vec<CwtLine>>) -> CwtLines {
        let order = crate::fold::par_order_parts_by(&parts, cwt_key, cwt_order)
            .into_iter()
            .map(|(p, i)| CwtPlace(p, i))
            .collect();
        let lines = CwtLines { parts, order };
        debug_assert!(
            lines
                .order
                .windows(2)
                .all(|w| cwt_order(lines.at(w[0]), lines.at(w[1])).is_le()),
            "the CWT lines' key disagrees with their order"
        );
        lines
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there is no line.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Where the lines lie, in order: each read with [`CwtLines::at`]
    /// (lines written a slice at a time on every core).
    pub fn places(&self) -> &[CwtPlace] {
        &self.order
    }

    /// The line at `place`, one of [`CwtLines::places`].
    pub fn at(&self, place: CwtPlace) -> &CwtLine {
        &self.parts[place.0][place.1]
    }

    /// The lines, in order.
    fn iter(&self) -> impl Iterator<Item = &CwtLine> {
        self.order.iter().map(|&place| self.at(place))
    }

    /// Every line, in the order they lie (for what does not depend on the
    /// order: masking the identifiers).
    fn each_mut(&mut self) -> impl Iterator<Item = &mut CwtLine> {
        self.parts.iter_mut().flatten()
    }
}

impl Serialize for CwtLines {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl App {
    /// The monthly CWT data set submission for `period` (SPEC 4.4): a
    /// record per pathway and treatment period treated in the month, or
    /// per pathway whose FDS pathway ended in it.
    pub async fn cwt(
        &self,
        at: &ViewAt,
        period: Period,
        trusts: &TrustFilter,
        principal: &Principal,
    ) -> Result<(CwtLines, u64), AppError> {
        let (trusts, as_of) = self.view_scope(at, trusts, principal).await;
        let indexed = {
            let trusts = trusts.clone();
            self.todays_indexed_lines(
                as_of,
                at.known_at,
                Indexed::CwtRecords(period),
                move |lines, id, state| add_cwt_lines(lines, id, state, period, &trusts),
            )
            .await?
        };
        let (parts, position) = match indexed {
            Some(out) => out,
            None => {
                // One part per core's fold, as today's: merged, not copied.
                let (parts, position) = self
                    .fold_states(
                        self.past_split(as_of, at.known_at, Shown::period(period))
                            .await?
                            .recording(period),
                        Vec::new,
                        move |parts, id, state| {
                            let lines = crate::fold::last_part(parts);
                            add_cwt_lines(lines, id, state, period, &trusts);
                        },
                        Vec::extend,
                        None,
                    )
                    .await?;
                (parts, position)
            }
        };
        // Sorted and masked off the async workers, outside the
        // projection's lock.
        let (identifiers, nhs_numbers) =
            (principal.sees_identifiers(), principal.sees_nhs_numbers());
        let lines = self
            .off_workers(move || {
                let started = std::time::Instant::now();
                let mut lines = CwtLines::sorted(parts);
                tracing::debug!(
                    lines = lines.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "CWT lines sorted"
                );
                for line in lines.each_mut() {
                    if !identifiers {
                        line.pathway_id.clear();
                        line.nhs_number.clear();
                    } else if !nhs_numbers {
                        line.nhs_number = mask(&line.nhs_number);
                    }
                }
                lines
            })
            .await?;
        self.audit(principal, "cwt_extract", None, Some(lines.len()))?;
        Ok((lines, position))
    }
}

/// Adds a pathway's CWT submission lines of `period`, for the trusts
/// `trusts` allows.
fn add_cwt_lines(
    lines: &mut Vec<CwtLine>,
    id: &str,
    state: &PathwayState,
    period: Period,
    trusts: &TrustFilter,
) {
    for row in cwt::cwt_records(state, period) {
        if row.trusts().any(|t| trusts.allows(t.as_str())) {
            lines.push(CwtLine {
                pathway_id: id.to_string(),
                nhs_number: state.nhs_number.as_str().to_string(),
                row,
            });
        }
    }
}

/// The order of CWT submission lines: by trust, pathway and items (lines
/// equal in it are equal whole, so an unstable sort is as good).
fn cwt_order(a: &CwtLine, b: &CwtLine) -> std::cmp::Ordering {
    a.row
        .trust
        .cmp(&b.row.trust)
        .then_with(|| a.pathway_id.cmp(&b.pathway_id))
        .then_with(|| a.row.items().cmp(b.row.items()))
}

/// A summary of a line that [`cwt_order`] agrees with: its trust's code
/// and its pathway's first 16 bytes, each read as a big-endian number
/// (zeros after a shorter one), so that numbers compare as the bytes do.
/// Lines of equal keys are told apart by the whole order.
fn cwt_key(line: &CwtLine) -> (u64, u128) {
    prefix_key(&line.row.trust, &line.pathway_id)
}

/// `trust`'s code (at most 6 letters or digits: its number compares
/// exactly as the code does) and the first 16 bytes of `pathway`, as
/// big-endian numbers: if the key of one pair is less than another's, so
/// is the pair ([`cwt_key`]).
fn prefix_key(trust: &OdsCode, pathway: &str) -> (u64, u128) {
    let mut code = [0; 8];
    let n = trust.as_str().len().min(8);
    code[..n].copy_from_slice(&trust.as_str().as_bytes()[..n]);
    (
        u64::from_be_bytes(code),
        crate::fold::leading_bytes(pathway),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The CWT lines' sort key agrees with their order: a pair whose
        /// key is less is less, whatever the pathway ids (longer than the
        /// key, a prefix of the other, ending in a NUL byte).
        #[test]
        fn the_cwt_key_agrees_with_the_order(
            // Few trusts, so that many pairs share one.
            a in ("[AB]{3}[C]{0,1}", "[A-C0\\x00]{0,20}"),
            b in ("[AB]{3}[C]{0,1}", "[A-C0\\x00]{0,20}"),
        ) {
            let trust = |code: &str| OdsCode::parse(code).expect("a trust's code");
            let (ta, tb) = (trust(&a.0), trust(&b.0));
            let (ka, kb) = (prefix_key(&ta, &a.1), prefix_key(&tb, &b.1));
            let (a, b) = ((ta, &a.1), (tb, &b.1));
            if ka < kb {
                proptest::prop_assert!(a < b, "{a:?} {b:?}");
            }
            if ka == kb {
                // Equal keys: one trust, and equal ids, or ids past or
                // padded beyond the key's bytes.
                proptest::prop_assert_eq!(a.0, b.0);
                proptest::prop_assert!(
                    a.1 == b.1
                        || a.1.len().max(b.1.len()) > 16
                        || a.1.contains('\0')
                        || b.1.contains('\0'),
                    "{a:?} {b:?}"
                );
            }
        }
    }
}

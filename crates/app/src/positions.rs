//! A pathway's record positions, packed: the projection keeps them for
//! every pathway (to read its history back from the log), which at 8 bytes
//! a record was a fifth of its memory.
//!
//! Layout: the last position as a LEB128 varint, then the gaps between
//! consecutive positions from the last back to the first, each a varint
//! (the first position's gap is from 0). A pathway's records lie some
//! thousands to millions of records apart, so a gap takes 2–3 bytes; the
//! last position, which the runner asks for most, is read without decoding
//! the rest.

use crate::varint::{self, write};

/// Ascending log positions of one pathway's records.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Positions(Box<[u8]>);

impl std::fmt::Debug for Positions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.to_vec()).finish()
    }
}

impl Positions {
    /// From ascending positions.
    pub fn from_slice(positions: &[u64]) -> Positions {
        let mut out = Vec::with_capacity(positions.len() * 3 + 2);
        if let Some(last) = positions.last() {
            write(&mut out, *last);
            let mut later = *last;
            for p in positions.iter().rev().skip(1) {
                write(&mut out, later - p);
                later = *p;
            }
            write(&mut out, later);
        }
        // An allocation of its own length (as packed states: decision 145).
        Positions(Box::from(&out[..]))
    }

    /// How many positions there are.
    pub fn len(&self) -> usize {
        // One varint ends at each byte without the continuation bit; the
        // first is the last position itself, not a gap.
        self.0
            .iter()
            .filter(|b| **b < 0x80)
            .count()
            .saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Its packed bytes (to touch them ahead of a read).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The last (highest) position.
    pub fn last(&self) -> Option<u64> {
        (!self.0.is_empty()).then(|| read(&self.0).0)
    }

    /// Adds a position after the last.
    pub fn push(&mut self, position: u64) {
        let mut bytes = std::mem::take(&mut self.0).into_vec();
        let mut head = Vec::with_capacity(20);
        write(&mut head, position);
        if bytes.is_empty() {
            // The first: the last position, then its gap from 0.
            write(&mut head, position);
            bytes = head;
        } else {
            let (last, used) = read(&bytes);
            debug_assert!(position > last, "positions only grow");
            write(&mut head, position - last);
            bytes.splice(0..used, head);
        }
        self.0 = bytes.into_boxed_slice();
    }

    /// Every position, ascending.
    pub fn to_vec(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.0.len() / 2 + 1);
        out.extend(self.descending());
        out.reverse();
        out
    }

    /// Every position, from the last (highest) back, decoded as it goes
    /// (the positions after a given one are read without the rest).
    pub fn descending(&self) -> impl Iterator<Item = u64> + '_ {
        let (mut p, mut at) = match self.0.is_empty() {
            true => (0, 0),
            false => read(&self.0),
        };
        std::iter::from_fn(move || {
            let bytes = self.0.get(at..).filter(|rest| !rest.is_empty())?;
            let (gap, used) = read(bytes);
            at += used;
            let this = p;
            p -= gap;
            Some(this)
        })
    }
}

/// The varint at the start of `bytes` and how many bytes it took.
fn read(bytes: &[u8]) -> (u64, usize) {
    // Only this module writes these bytes: every varint in them is whole.
    varint::read(bytes).unwrap_or((0, bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ascending() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(
            prop_oneof![1u64..10, 1u64..5_000_000, 1u64..(1 << 40)],
            0..40,
        )
        .prop_map(|gaps| {
            let mut p = 0u64;
            gaps.into_iter()
                .map(|g| {
                    p += g;
                    p
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn positions_read_back_as_pushed(positions in ascending()) {
            let mut pushed = Positions::default();
            for p in &positions {
                pushed.push(*p);
                prop_assert_eq!(pushed.last(), Some(*p));
            }
            let built = Positions::from_slice(&positions);
            prop_assert_eq!(&pushed, &built);
            prop_assert_eq!(pushed.to_vec(), positions.clone());
            prop_assert_eq!(pushed.len(), positions.len());
            prop_assert_eq!(pushed.is_empty(), positions.is_empty());
            prop_assert_eq!(pushed.last(), positions.last().copied());
            let descending: Vec<u64> = pushed.descending().collect();
            prop_assert_eq!(descending, positions.iter().rev().copied().collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_typical_pathway_takes_about_three_bytes_a_record() {
        let positions: Vec<u64> = (0..8).map(|i| 9_000_000 + i * 400_000).collect();
        let packed = Positions::from_slice(&positions);
        // 3 bytes a gap, 4 for the last and for the first (from 0): 29.
        assert_eq!(packed.0.len(), 4 + 7 * 3 + 4);
    }
}

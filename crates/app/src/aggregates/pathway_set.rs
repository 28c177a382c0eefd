//! A set of pathways by their index in the projection's dense vector
//! (`projection::Pathways`): one bit each, from the lowest word it holds
//! to the highest, so an index of the pathways with CWT records in a month
//! costs at most 175 KB at 1.4M pathways, however many it holds, a partial
//! set built over a slice of the vector only that slice's words, and it
//! iterates in vector order.

/// Pathway indexes, one bit each.
#[derive(Debug, Default, Clone)]
pub(crate) struct PathwaySet {
    /// Bits of indexes from `64 * first` on.
    words: Vec<u64>,
    first: usize,
    len: usize,
}

impl PathwaySet {
    /// Adds `index`; `false` when it was in already.
    pub(crate) fn insert(&mut self, index: usize) -> bool {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.words.is_empty() {
            self.first = word;
        } else if word < self.first {
            let more = self.first - word;
            self.words.splice(0..0, std::iter::repeat_n(0, more));
            self.first = word;
        }
        let at = word - self.first;
        if self.words.len() <= at {
            self.words.resize(at + 1, 0);
        }
        let added = self.words[at] & bit == 0;
        self.words[at] |= bit;
        self.len += usize::from(added);
        added
    }

    /// Takes `index` out; `false` when it was not in.
    pub(crate) fn remove(&mut self, index: usize) -> bool {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        let Some(w) = word
            .checked_sub(self.first)
            .and_then(|at| self.words.get_mut(at))
        else {
            return false;
        };
        let removed = *w & bit != 0;
        *w &= !bit;
        self.len -= usize::from(removed);
        removed
    }

    /// Whether `index` is in.
    pub(crate) fn contains(&self, index: usize) -> bool {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        word.checked_sub(self.first)
            .and_then(|at| self.words.get(at))
            .is_some_and(|w| w & bit != 0)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds every index of `other`.
    pub(crate) fn extend(&mut self, other: &PathwaySet) {
        for index in other.iter() {
            self.insert(index);
        }
    }

    /// The indexes, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let first = self.first;
        self.words.iter().enumerate().flat_map(move |(i, word)| {
            let mut rest = *word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    (first + i) * 64 + bit
                })
            })
        })
    }
}

/// Equal when they hold the same indexes (whatever words they grew).
impl PartialEq for PathwaySet {
    fn eq(&self, other: &PathwaySet) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn a_set_holds_what_a_btree_set_holds(ops in proptest::collection::vec((any::<bool>(), 0usize..1000), 0..200)) {
            let mut set = PathwaySet::default();
            let mut oracle = BTreeSet::new();
            for (add, index) in ops {
                if add {
                    prop_assert_eq!(set.insert(index), oracle.insert(index));
                } else {
                    prop_assert_eq!(set.remove(index), oracle.remove(&index));
                }
                prop_assert_eq!(set.len(), oracle.len());
            }
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), oracle.iter().copied().collect::<Vec<_>>());
            let mut rebuilt = PathwaySet::default();
            rebuilt.extend(&set);
            prop_assert_eq!(&rebuilt, &set);
            prop_assert_eq!(set.is_empty(), oracle.is_empty());
        }
    }

    #[test]
    fn sets_grown_apart_are_equal_when_they_hold_the_same() {
        let mut a = PathwaySet::default();
        let mut b = PathwaySet::default();
        a.insert(3);
        b.insert(3);
        b.insert(1000);
        assert_ne!(a, b);
        b.remove(1000);
        assert_eq!(a, b);
        assert_eq!(b, a);
    }
}

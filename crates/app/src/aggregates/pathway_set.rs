//! A set of pathways by their index in the projection's dense vector
//! (`projection::Pathways`): one bit each, so an index of the pathways
//! with CWT records in a month costs 175 KB at 1.4M pathways, however
//! many it holds, and iterates in vector order.

/// Pathway indexes, one bit each.
#[derive(Debug, Default, Clone)]
pub(crate) struct PathwaySet {
    words: Vec<u64>,
    len: usize,
}

impl PathwaySet {
    /// Adds `index`; `false` when it was in already.
    pub(crate) fn insert(&mut self, index: usize) -> bool {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let added = self.words[word] & bit == 0;
        self.words[word] |= bit;
        self.len += usize::from(added);
        added
    }

    /// Takes `index` out; `false` when it was not in.
    pub(crate) fn remove(&mut self, index: usize) -> bool {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        let Some(w) = self.words.get_mut(word) else {
            return false;
        };
        let removed = *w & bit != 0;
        *w &= !bit;
        self.len -= usize::from(removed);
        removed
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
        self.words.iter().enumerate().flat_map(|(i, word)| {
            let mut rest = *word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    i * 64 + bit
                })
            })
        })
    }
}

/// Equal when they hold the same indexes (whatever words they grew).
impl PartialEq for PathwaySet {
    fn eq(&self, other: &PathwaySet) -> bool {
        let (short, long) = if self.words.len() <= other.words.len() {
            (&self.words, &other.words)
        } else {
            (&other.words, &self.words)
        };
        self.len == other.len
            && long[..short.len()] == short[..]
            && long[short.len()..].iter().all(|w| *w == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn a_set_holds_what_a_btree_set_holds(ops in proptest::collection::vec((any::<bool>(), 0usize..300), 0..200)) {
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

//! Every pathway's [`Trusts`], kept once per combination: a few hundred
//! combinations serve every pathway of an alliance, each entry holding a
//! shared pointer to its own.
//!
//! A combination is found by its codes as given (borrowed from a snapshot,
//! or the strings an evaluation made), so a pathway whose combination is
//! known costs one look-up and one reference count, with nothing allocated
//! and no code interned again (a restore installs 1.4M pathways; decision
//! 216).
//!
//! Invariant: each combination is kept once, and its codes are the
//! interned ones, shared by every combination that names them.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use foldhash::HashSet;
use hashbrown::HashTable;

use super::Trusts;

/// The combinations of trusts, and the codes they share.
#[derive(Debug, Default)]
pub(super) struct TrustSets {
    codes: HashSet<Arc<str>>,
    sets: HashTable<Arc<Trusts>>,
    hasher: foldhash::fast::RandomState,
}

impl TrustSets {
    /// The shared [`Trusts`] of a pathway at trust `now` that has been at
    /// every trust of `ever`, kept on first sight.
    pub(super) fn shared(&mut self, now: &str, ever: &[impl AsRef<str>]) -> Arc<Trusts> {
        let hash = Self::hash(&self.hasher, now, ever.iter().map(AsRef::as_ref));
        let same = |t: &Arc<Trusts>| {
            &*t.current == now
                && t.ever.len() == ever.len()
                && t.ever.iter().zip(ever).all(|(a, b)| &**a == b.as_ref())
        };
        if let Some(found) = self.sets.find(hash, same) {
            return found.clone();
        }
        let trusts = Arc::new(Trusts {
            current: self.code(now),
            ever: ever.iter().map(|t| self.code(t.as_ref())).collect(),
        });
        let (hasher, sets) = (&self.hasher, &mut self.sets);
        sets.insert_unique(hash, trusts.clone(), |t| {
            Self::hash(hasher, &t.current, t.ever.iter().map(|e| &**e))
        });
        trusts
    }

    /// How many combinations are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.sets.len()
    }

    fn code(&mut self, code: &str) -> Arc<str> {
        match self.codes.get(code) {
            Some(c) => c.clone(),
            None => {
                let c: Arc<str> = Arc::from(code);
                self.codes.insert(c.clone());
                c
            }
        }
    }

    /// The same for borrowed and kept codes: each code's text in turn.
    fn hash<'a>(
        hasher: &foldhash::fast::RandomState,
        now: &str,
        ever: impl Iterator<Item = &'a str>,
    ) -> u64 {
        let mut h = hasher.build_hasher();
        now.hash(&mut h);
        for code in ever {
            code.hash(&mut h);
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A combination is kept once, whoever asks and however its codes are
    /// held; combinations that differ anywhere (the trust now, a trust
    /// ever, their order, one more) are kept apart; codes are shared.
    #[test]
    fn each_combination_is_kept_once_and_codes_are_shared() {
        let mut sets = TrustSets::default();
        let a = sets.shared("RX1", &["RX1"]);
        let b = sets.shared("RX1", &[String::from("RX1")]);
        assert!(Arc::ptr_eq(&a, &b));
        let others = [
            sets.shared("RX2", &["RX1"]),
            sets.shared("RX1", &["RX1", "RX2"]),
            sets.shared("RX1", &["RX2", "RX1"]),
            sets.shared("RX1", &["RX1RX2"]),
            sets.shared("RX1", &[] as &[&str]),
        ];
        assert_eq!(sets.len(), 6);
        for (i, t) in others.iter().enumerate() {
            assert!(!Arc::ptr_eq(&a, t), "{i}");
        }
        assert_eq!(&*others[1].ever[1], "RX2");
        assert!(Arc::ptr_eq(&others[0].current, &others[1].ever[1]));
        assert!(Arc::ptr_eq(&a.current, &others[2].ever[1]));
        // Many more pathways: still the same six.
        for _ in 0..1000 {
            assert!(Arc::ptr_eq(
                &sets.shared("RX1", &["RX2", "RX1"]),
                &others[2]
            ));
        }
        assert_eq!(sets.len(), 6);
    }
}

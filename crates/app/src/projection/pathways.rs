//! The projection's pathways by id: each one's id and entry in a dense
//! vector, in the order they first appeared, found through a table of
//! their indexes (decision 146).
//!
//! A hash map of ids to entries holds every entry in its table, which has
//! up to twice the slots it uses: 130 MiB at 1.4M pathways. Here the table
//! holds 4-byte indexes (10 MiB) and the entries lie once, in order, in
//! the vector (96 MiB, ids inline: decision 215), which a view of every
//! pathway also reads in order.
//! A pathway is never taken out (the log only grows; a rebuild or a
//! restore starts a new projection), so an index never moves.

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::PathwayEntry;
pub use crate::pathway_key::PathwayKey;
use crate::ptl_index::PtlIndexEntry;

/// Indexes into a vector whose items each carry an id, found by id: 4
/// bytes a slot, the ids being the items' own (`id_of` gives an index's).
#[derive(Default)]
struct IdTable {
    table: HashTable<u32>,
    hasher: RandomState,
}

impl IdTable {
    fn hash(&self, id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(id)
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn find<'a>(&self, id: &str, id_of: impl Fn(usize) -> &'a str) -> Option<usize> {
        self.table
            .find(self.hash(id), |i| id_of(*i as usize) == id)
            .map(|i| *i as usize)
    }

    /// Adds index `i` (not in the table yet), whose id is `id`.
    fn insert<'a>(&mut self, id: &str, i: usize, id_of: impl Fn(usize) -> &'a str) {
        let i = u32::try_from(i).expect("fewer than 4,294,967,296 items");
        let hash = self.hash(id);
        let hasher = &self.hasher;
        self.table.insert_unique(hash, i, |i| {
            use std::hash::BuildHasher;
            hasher.hash_one(id_of(*i as usize))
        });
    }

    fn reserve<'a>(&mut self, more: usize, id_of: impl Fn(usize) -> &'a str) {
        let hasher = &self.hasher;
        self.table.reserve(more, |i| {
            use std::hash::BuildHasher;
            hasher.hash_one(id_of(*i as usize))
        });
    }

    /// About the bytes its table takes: a 4-byte index and a control byte
    /// a bucket, with an eighth of the buckets always free.
    fn bytes(&self) -> usize {
        self.table.capacity() * 5 * 8 / 7
    }

    /// Takes index `i`, whose id is `id`, out.
    fn remove(&mut self, id: &str, i: usize) {
        if let Ok(found) = self.table.find_entry(self.hash(id), |j| *j as usize == i) {
            found.remove();
        }
    }

    /// Index `from`, whose id is `id`, is now `to`.
    fn moved(&mut self, id: &str, from: usize, to: usize) {
        if let Some(i) = self.table.find_mut(self.hash(id), |i| *i as usize == from) {
            *i = u32::try_from(to).expect("fewer than 4,294,967,296 items");
        }
    }
}

/// Every pathway of the projection, by id.
#[derive(Default)]
pub struct Pathways {
    entries: Vec<(PathwayKey, PathwayEntry)>,
    index: IdTable,
}

impl std::fmt::Debug for Pathways {
    // Never the ids: they name patients' pathways.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pathways({})", self.entries.len())
    }
}

impl Pathways {
    /// Where `id`'s entry is in the vector (its index never changes).
    pub fn find(&self, id: &str) -> Option<usize> {
        let entries = &self.entries;
        self.index.find(id, |i| &entries[i].0)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&PathwayEntry> {
        self.find(id).map(|i| &self.entries[i].1)
    }

    pub fn get_key_value(&self, id: &str) -> Option<(&PathwayKey, &PathwayEntry)> {
        self.find(id).map(|i| {
            let (id, entry) = &self.entries[i];
            (id, entry)
        })
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut PathwayEntry> {
        self.find(id).map(|i| &mut self.entries[i].1)
    }

    /// Puts `entry` in for `id`: in place of the one it has, else after
    /// every other pathway. Gives its index.
    pub fn insert(&mut self, id: PathwayKey, entry: PathwayEntry) -> usize {
        if let Some(i) = self.find(&id) {
            self.entries[i].1 = entry;
            return i;
        }
        self.entries.push((id, entry));
        let entries = &self.entries;
        let last = entries.len() - 1;
        self.index.insert(&entries[last].0, last, |i| &entries[i].0);
        last
    }

    /// The id and entry at `index` ([`Pathways::find`]).
    pub(super) fn at_mut(&mut self, index: usize) -> (&PathwayKey, &mut PathwayEntry) {
        let (id, entry) = &mut self.entries[index];
        (id, entry)
    }

    /// Room for `more` pathways without growing.
    pub fn reserve(&mut self, more: usize) {
        self.entries.reserve(more);
        let entries = &self.entries;
        self.index.reserve(more, |i| &entries[i].0);
    }

    /// Gives back what the vector holds beyond its pathways (it grew by
    /// doubling while a fold put them in).
    pub fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
    }

    /// Bytes the vector of entries and the table of their indexes take.
    pub fn bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(PathwayKey, PathwayEntry)>()
            + self.index.bytes()
    }

    /// Every pathway's id and entry, in the order they first appeared.
    pub fn as_slice(&self) -> &[(PathwayKey, PathwayEntry)] {
        &self.entries
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PathwayKey, &PathwayEntry)> {
        self.entries.iter().map(|(id, entry)| (id, entry))
    }

    pub fn keys(&self) -> impl Iterator<Item = &PathwayKey> {
        self.entries.iter().map(|(id, _)| id)
    }

    pub fn values(&self) -> impl Iterator<Item = &PathwayEntry> {
        self.entries.iter().map(|(_, entry)| entry)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut PathwayEntry> {
        self.entries.iter_mut().map(|(_, entry)| entry)
    }
}

/// Where each pathway on the PTL is in the projection's PTL index, by id:
/// a table of 4-byte slots, the id being the index entry's own (a map of
/// ids to slots took 12 MiB at 334,000 rows).
#[derive(Default)]
pub(super) struct PtlSlots {
    table: IdTable,
}

impl std::fmt::Debug for PtlSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PtlSlots({})", self.table.len())
    }
}

impl PtlSlots {
    /// Bytes `ptl` (as allocated) and this table of its slots take.
    pub(super) fn bytes(&self, ptl: &Vec<PtlIndexEntry>) -> usize {
        ptl.capacity() * std::mem::size_of::<PtlIndexEntry>() + self.table.bytes()
    }

    /// The slot of `id`'s row in `ptl`.
    pub(super) fn get(&self, ptl: &[PtlIndexEntry], id: &str) -> Option<usize> {
        self.table.find(id, |i| &ptl[i].id)
    }

    /// Puts `row` in `ptl`: in place of the pathway's row, else after the
    /// others.
    pub(super) fn put(&mut self, ptl: &mut Vec<PtlIndexEntry>, row: PtlIndexEntry) {
        if let Some(slot) = self.get(ptl, &row.id) {
            ptl[slot] = row;
            return;
        }
        ptl.push(row);
        let ptl = &*ptl;
        let last = ptl.len() - 1;
        self.table.insert(&ptl[last].id, last, |i| &ptl[i].id);
    }

    /// Takes `id`'s row out of `ptl`, if it has one (the last row takes
    /// its slot).
    pub(super) fn take(&mut self, ptl: &mut Vec<PtlIndexEntry>, id: &str) {
        let Some(slot) = self.get(ptl, id) else {
            return;
        };
        self.table.remove(id, slot);
        let last = ptl.len() - 1;
        if slot != last {
            self.table.moved(&ptl[last].id, last, slot);
        }
        ptl.swap_remove(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positions::Positions;

    fn entry(position: u64) -> PathwayEntry {
        PathwayEntry {
            positions: Positions::from_slice(&[position]),
            trusts: None,
            state: None,
        }
    }

    #[test]
    fn pathways_are_found_by_id_and_kept_in_the_order_they_came() {
        let mut pathways = Pathways::default();
        for n in 1..=5000u64 {
            pathways.insert(PathwayKey::from(format!("P{n}")), entry(n));
        }
        // Put in again: in place, not after.
        assert_eq!(pathways.insert(PathwayKey::from("P7"), entry(9999)), 6);
        assert_eq!(pathways.len(), 5000);
        assert_eq!(pathways.get("P7").unwrap().positions.last(), Some(9999));
        assert_eq!(pathways.get("P4321").unwrap().positions.last(), Some(4321));
        assert!(pathways.get("P0").is_none());
        assert!(pathways.get("P5001").is_none());
        let (id, _) = pathways.get_key_value("P12").unwrap();
        assert_eq!(&**id, "P12");
        pathways.get_mut("P1").unwrap().positions.push(10_000);
        assert_eq!(pathways.get("P1").unwrap().positions.len(), 2);
        let order: Vec<&str> = pathways.keys().take(3).map(|k| &**k).collect();
        assert_eq!(order, ["P1", "P2", "P3"]);
    }

    #[test]
    fn ptl_slots_follow_rows_put_in_and_taken_out() {
        use crate::ptl_index::{PtlIndexEntry, PtlKeys};
        let keys = PtlKeys::sample();
        let row = |id: &str| PtlIndexEntry::new(keys, PathwayKey::from(id), 1);
        let mut ptl = Vec::new();
        let mut slots = PtlSlots::default();
        for n in 0..100 {
            slots.put(&mut ptl, row(&format!("P{n}")));
        }
        slots.put(&mut ptl, row("P5"));
        assert_eq!(ptl.len(), 100);
        for n in (0..100).step_by(3) {
            slots.take(&mut ptl, &format!("P{n}"));
        }
        slots.take(&mut ptl, "P-none");
        assert_eq!(ptl.len(), 66);
        for n in 0..100 {
            let id = format!("P{n}");
            match slots.get(&ptl, &id) {
                Some(slot) => assert_eq!(&*ptl[slot].id, id),
                None => assert_eq!(n % 3, 0),
            }
        }
    }
}

//! The first read of a share in [`super::fold_everything`]: where each of
//! the share's pathways has its last record, and whose each record is, read
//! from the stream ids alone.
//!
//! Each record's pathway is looked up in a table of the share's pathways.
//! At alliance scale that table and the pathways' list are tens of MB, so
//! each look-up is a random access to memory, and they took most of this
//! read. The look-ups are therefore made a few records behind the read:
//! each record's slot in the table is asked of memory [`LAG`] records
//! before it is looked up, and the pathway that slot names half as many
//! before, so that the waits overlap instead of following one another.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use openptl_log::InPlace;

use super::{prefetch, prefetch_whole, storage, Found};
use crate::pathway_key::PathwayKey;
use crate::AppError;

/// How many records behind the read each is looked up.
const LAG: usize = 16;

/// The share's pathways in the order first seen, and whose each of its
/// records is (its pathway's index in that list), in the order read.
pub(super) struct Read {
    pub(super) found: Vec<Found>,
    pub(super) whose: Vec<u32>,
}

/// Reads the stream ids of every record up to `to` and notes those `keep`
/// accepts; `pathways` and `records` are the room to make for them at
/// first (either grows).
pub(super) fn first_read(
    reader: &dyn InPlace,
    to: u64,
    keep: &dyn Fn(&[u8]) -> bool,
    (pathways, records): (usize, usize),
) -> Result<Read, AppError> {
    let mut read = Reading {
        found: Vec::with_capacity(pathways),
        whose: Vec::with_capacity(records),
        places: Places::with_capacity(pathways),
        hasher: foldhash::fast::RandomState::default(),
        refused: None,
    };
    let mut waiting: VecDeque<(u64, &[u8], u64)> = VecDeque::with_capacity(LAG + 1);
    reader
        .visit_streams(1, to, &mut |position, stream| {
            if !keep(stream) || read.refused.is_some() {
                return;
            }
            let hash = read.hasher.hash_one(stream);
            read.places.ask_for(hash);
            waiting.push_back((position, stream, hash));
            if let Some(&(_, _, nearer)) = waiting
                .len()
                .checked_sub(LAG / 2 + 1)
                .and_then(|half_way| waiting.get(half_way))
            {
                read.ask_for_pathway(nearer);
            }
            if waiting.len() > LAG {
                if let Some((position, stream, hash)) = waiting.pop_front() {
                    read.note(position, stream, hash);
                }
            }
        })
        .map_err(storage)?;
    for (position, stream, hash) in waiting {
        read.note(position, stream, hash);
    }
    if let Some(position) = read.refused {
        return Err(AppError::internal(format!(
            "the fold's first read of the log stopped at position {position} (a stream id not UTF-8, or more than 4,294,967,295 pathways in one share)"
        )));
    }
    Ok(Read {
        found: read.found,
        whose: read.whose,
    })
}

/// The first read under way.
struct Reading {
    found: Vec<Found>,
    whose: Vec<u32>,
    places: Places,
    hasher: foldhash::fast::RandomState,
    /// Where the read must stop: a stream id not UTF-8 (never written: the
    /// second read would refuse its record), or more than 4,294,967,295
    /// pathways (each slot holds an index plus one in 4 bytes).
    refused: Option<u64>,
}

impl Reading {
    /// Asks for the pathway in the slot where a look-up of `hash` starts
    /// (mostly the one looked up).
    fn ask_for_pathway(&self, hash: u64) {
        if let Some(pathway) = self
            .places
            .first(hash)
            .and_then(|place| self.found.get(place as usize))
        {
            prefetch_whole(pathway);
        }
    }

    /// Notes the record at `position`, of `stream` (whose hash is `hash`).
    fn note(&mut self, position: u64, stream: &[u8], hash: u64) {
        if self.refused.is_some() {
            return;
        }
        if self.places.full() {
            let (found, hasher) = (&self.found, &self.hasher);
            self.places
                .grow(|place| hasher.hash_one(found[place as usize].id.as_bytes()));
        }
        let found = &mut self.found;
        let place = match self
            .places
            .find(hash, |place| found[place as usize].id.as_bytes() == stream)
        {
            Ok(place) => place,
            Err(empty) => {
                let (Some(place), Ok(id)) = (
                    u32::try_from(found.len()).ok().filter(|p| *p < u32::MAX),
                    std::str::from_utf8(stream),
                ) else {
                    self.refused = Some(position);
                    return;
                };
                found.push(Found {
                    id: PathwayKey::from(id),
                    last: position,
                    positions: Vec::new(),
                    history: Some(Vec::new()),
                });
                self.places.put(empty, hash, place);
                place
            }
        };
        found[place as usize].last = position;
        self.whose.push(place);
    }
}

/// A share's pathways by id: open addressing, probed linearly, over a
/// power-of-two table at most half full. Each slot holds the high half of
/// its id's hash and its pathway's index in the share's list plus one (0:
/// empty). Written here rather than taken from hashbrown, whose table
/// cannot say where a look-up will start, so its slots cannot be asked for
/// ahead (docs/benchmarks.md, twenty-ninth session).
struct Places {
    slots: Vec<u64>,
    len: usize,
}

/// The part of a slot that is its id's hash.
const TAG: u64 = !0 << 32;

impl Places {
    /// Room for `pathways` without growing.
    fn with_capacity(pathways: usize) -> Places {
        Places {
            slots: vec![0; (pathways.max(4) * 2).next_power_of_two()],
            len: 0,
        }
    }

    /// The slot where a look-up of `hash` starts.
    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.slots.len() - 1)
    }

    /// Asks for the slot where a look-up of `hash` starts.
    fn ask_for(&self, hash: u64) {
        prefetch(&self.slots[self.home(hash)]);
    }

    /// The pathway in the slot where a look-up of `hash` starts, when that
    /// slot's hash agrees.
    fn first(&self, hash: u64) -> Option<u32> {
        let slot = self.slots[self.home(hash)];
        (slot != 0 && slot & TAG == hash & TAG).then(|| place_of(slot))
    }

    /// The pathway of `hash` that `same` accepts, or the empty slot where
    /// it goes.
    fn find(&self, hash: u64, same: impl Fn(u32) -> bool) -> Result<u32, usize> {
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return Err(at);
            }
            if slot & TAG == hash & TAG && same(place_of(slot)) {
                return Ok(place_of(slot));
            }
            at = (at + 1) & mask;
        }
    }

    /// Puts `place` (of `hash`) in the empty slot `at` that
    /// [`Places::find`] gave.
    fn put(&mut self, at: usize, hash: u64, place: u32) {
        debug_assert_eq!(self.slots[at], 0);
        // Its index plus one must fit in the slot's low half.
        debug_assert!(place < u32::MAX);
        self.slots[at] = (hash & TAG) | (u64::from(place) + 1);
        self.len += 1;
    }

    /// Whether one more would fill it past half.
    fn full(&self) -> bool {
        (self.len + 1) * 2 > self.slots.len()
    }

    /// Twice the slots, each pathway put again by its hash (`hash_of` its
    /// index in the list).
    fn grow(&mut self, hash_of: impl Fn(u32) -> u64) {
        let size = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        let mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|slot| *slot != 0) {
            let mut at = hash_of(place_of(slot)) as usize & mask;
            while self.slots[at] != 0 {
                at = (at + 1) & mask;
            }
            self.slots[at] = slot;
        }
    }
}

/// The index in the list that a full slot holds.
fn place_of(slot: u64) -> u32 {
    (slot as u32) - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use openptl_log::RecordRef;

    /// A log of stream ids only: all the first read looks at.
    struct Streams(Vec<Vec<u8>>);

    impl InPlace for Streams {
        fn head(&self) -> u64 {
            self.0.len() as u64
        }

        fn visit(
            &self,
            _: u64,
            _: u64,
            _: &dyn Fn(&[u8]) -> bool,
            _: &mut dyn FnMut(RecordRef<'_>),
        ) -> Result<(), openptl_log::LogError> {
            unreachable!("the first read reads stream ids only")
        }

        fn visit_streams<'s>(
            &'s self,
            from: u64,
            to: u64,
            visit: &mut dyn FnMut(u64, &'s [u8]),
        ) -> Result<(), openptl_log::LogError> {
            for position in from..=to {
                visit(position, &self.0[position as usize - 1]);
            }
            Ok(())
        }

        fn visit_positions(
            &self,
            _: &[u64],
            _: &mut dyn FnMut(RecordRef<'_>),
        ) -> Result<(), openptl_log::LogError> {
            unreachable!("the first read reads stream ids only")
        }
    }

    /// A stream id that is not UTF-8 stops the read with an error naming
    /// its own position, whether it is met while the walk goes on or
    /// among the records still waiting when it ends, and whatever comes
    /// after it.
    #[test]
    fn a_stream_id_not_utf8_is_refused_at_its_position() {
        for (bad, len) in [(3, 40), (30, 40), (38, 40), (1, 1)] {
            let streams: Vec<Vec<u8>> = (1..=len)
                .map(|position| match position {
                    p if p == bad => b"\xff\xfe".to_vec(),
                    p if p > bad && p % 2 == 0 => b"\xc3".to_vec(),
                    p => format!("P{}", p % 7).into_bytes(),
                })
                .collect();
            let log = Streams(streams);
            let refused = first_read(&log, log.head(), &|_| true, (4, 4))
                .err()
                .expect("refused");
            let message = refused.to_string();
            assert!(
                message.contains(&format!("position {bad} ")),
                "{bad}: {message}"
            );
        }
    }

    /// The last index a slot can hold (`u32::MAX - 1`, kept plus one) is
    /// found again, first and in full.
    #[test]
    fn the_last_index_a_slot_holds_is_found() {
        let mut places = Places::with_capacity(2);
        let (hash, place) = (0xdead_beef_0000_0003, u32::MAX - 1);
        let empty = places.find(hash, |_| true).expect_err("empty");
        places.put(empty, hash, place);
        assert_eq!(places.find(hash, |p| p == place), Ok(place));
        assert_eq!(places.first(hash), Some(place));
        places.grow(|_| hash);
        assert_eq!(places.find(hash, |p| p == place), Ok(place));
    }

    proptest::proptest! {
        /// The first read finds what a plain map finds: the share's
        /// pathways in the order first seen, each with its last record,
        /// and whose each record is, whatever the ids (one a prefix of
        /// another, many of them, few records or more than the room made),
        /// the share, and the room made at first.
        #[test]
        fn the_first_read_agrees_with_a_plain_map(
            ids in proptest::collection::vec("[ab]{0,3}|[a-z]{1,30}", 0..400),
            share in 0usize..3,
            room in 0usize..50,
        ) {
            let log = Streams(ids.iter().map(|id| id.as_bytes().to_vec()).collect());
            let keep = |stream: &[u8]| stream.len() % 3 != share;
            let read = first_read(&log, log.head(), &keep, (room, room))
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let mut order: Vec<&str> = Vec::new();
            let mut last = std::collections::HashMap::new();
            let mut whose = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                if !keep(id.as_bytes()) {
                    continue;
                }
                let place = match order.iter().position(|seen| seen == id) {
                    Some(place) => place,
                    None => {
                        order.push(id);
                        order.len() - 1
                    }
                };
                last.insert(place, i as u64 + 1);
                whose.push(place as u32);
            }
            let found: Vec<(&str, u64)> = read.found.iter().map(|f| (f.id.as_str(), f.last)).collect();
            let expected: Vec<(&str, u64)> =
                order.iter().enumerate().map(|(place, id)| (*id, last[&place])).collect();
            proptest::prop_assert_eq!(found, expected);
            proptest::prop_assert_eq!(read.whose, whose);
        }
    }

    /// Every pathway is found again at its own index, and only there,
    /// whatever the hashes: many share a start and even a whole hash, and
    /// the table grows from its smallest size.
    #[test]
    fn each_pathway_is_found_at_its_own_place() {
        // Hashes of few values: long runs of probes, equal tags.
        let hash = |id: u32| u64::from(id % 7) | (u64::from(id % 3) << 32);
        let mut places = Places::with_capacity(0);
        let mut ids = Vec::new();
        for id in 0..500u32 {
            if places.full() {
                places.grow(|place| hash(ids[place as usize]));
            }
            let empty = places
                .find(hash(id), |place| ids[place as usize] == id)
                .expect_err("not yet in");
            places.put(empty, hash(id), ids.len() as u32);
            ids.push(id);
        }
        assert!(places.slots.len() >= 1000);
        for (place, id) in ids.iter().enumerate() {
            assert_eq!(
                places.find(hash(*id), |p| ids[p as usize] == *id),
                Ok(place as u32)
            );
        }
        assert!(places.find(hash(500), |p| ids[p as usize] == 500).is_err());
    }
}

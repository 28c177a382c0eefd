//! Where each record lies (segment and offset), a dense array in memory:
//! rebuilt by the start-up scan, extended by the writer before the head
//! moves.

/// Where each record is: its offset in its segment and the index of each
/// segment's first record. Offsets lie in blocks of [`BLOCK`] records: the
/// block's first offset in 4 bytes, then each record's distance from it in
/// 2 (records are a few hundred bytes, so a block spans a few KiB), about
/// 2.25 bytes a record; a distance that does not fit (a block that crosses
/// into the next segment, or very large records) is kept whole on the side.
/// Derived like the index: rebuilt by the start-up scan, extended by the
/// writer before the head moves.
#[derive(Default)]
pub(super) struct Locations {
    /// The offset of the first record of each block.
    blocks: Vec<u32>,
    /// `distances[p - 1]`: the offset of the record at position `p` less
    /// its block's first, or [`WHOLE`].
    distances: Vec<u16>,
    /// The offsets of the records whose distance is [`WHOLE`], by index.
    whole: std::collections::HashMap<usize, u32>,
    /// (segment number, index in `distances` of its first record), in order.
    pub(super) segments: Vec<(u32, usize)>,
}

/// Records per block of offsets.
const BLOCK: usize = 16;

/// A distance kept whole on the side.
const WHOLE: u16 = u16::MAX;

impl Locations {
    pub(super) fn with_capacity(records: usize) -> Locations {
        Locations {
            blocks: Vec::with_capacity(records.div_ceil(BLOCK)),
            distances: Vec::with_capacity(records),
            ..Locations::default()
        }
    }

    /// Adds the next record's location.
    pub(super) fn push(&mut self, segment: u32, offset: u64) {
        let i = self.distances.len();
        if self.segments.last().map(|(n, _)| *n) != Some(segment) {
            self.segments.push((segment, i));
        }
        let offset = u32::try_from(offset).expect("segments stay below 4 GiB (MAX_GROUP_BYTES)");
        if i.is_multiple_of(BLOCK) {
            self.blocks.push(offset);
        }
        let first = self.blocks[i / BLOCK];
        match offset
            .checked_sub(first)
            .and_then(|d| u16::try_from(d).ok())
            .filter(|d| *d != WHOLE)
        {
            Some(distance) => self.distances.push(distance),
            None => {
                self.distances.push(WHOLE);
                self.whole.insert(i, offset);
            }
        }
    }

    /// The segment and offset of the record at `position`.
    pub(super) fn get(&self, position: u64) -> Option<(u32, u64)> {
        let i = usize::try_from(position.checked_sub(1)?).ok()?;
        let offset = match *self.distances.get(i)? {
            WHOLE => *self.whole.get(&i)?,
            distance => self.blocks[i / BLOCK] + u32::from(distance),
        };
        let segment = self.segments.partition_point(|(_, first)| *first <= i);
        Some((self.segments[segment - 1].0, u64::from(offset)))
    }
}

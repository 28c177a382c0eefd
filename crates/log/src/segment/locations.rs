//! Where each record lies (segment and offset), a dense array in memory:
//! rebuilt by the start-up scan, extended by the writer before the head
//! moves.

/// Where each record is: its offset in its segment, 4 bytes a record
/// (segments stay below 4 GiB: [`super::MAX_GROUP_BYTES`]), and the index of each
/// segment's first record. Derived like the index: rebuilt by the start-up
/// scan, extended by the writer before the head moves.
#[derive(Default)]
pub(super) struct Locations {
    /// `offsets[p - 1]` is the offset of the record at position `p`.
    pub(super) offsets: Vec<u32>,
    /// (segment number, index in `offsets` of its first record), in order.
    pub(super) segments: Vec<(u32, usize)>,
}

impl Locations {
    pub(super) fn with_capacity(records: usize) -> Locations {
        Locations {
            offsets: Vec::with_capacity(records),
            segments: Vec::new(),
        }
    }

    /// Adds the next record's location.
    pub(super) fn push(&mut self, segment: u32, offset: u64) {
        if self.segments.last().map(|(n, _)| *n) != Some(segment) {
            self.segments.push((segment, self.offsets.len()));
        }
        self.offsets
            .push(u32::try_from(offset).expect("segments stay below 4 GiB (MAX_GROUP_BYTES)"));
    }

    /// The segment and offset of the record at `position`.
    pub(super) fn get(&self, position: u64) -> Option<(u32, u64)> {
        let i = usize::try_from(position.checked_sub(1)?).ok()?;
        let offset = *self.offsets.get(i)?;
        let segment = self.segments.partition_point(|(_, first)| *first <= i);
        Some((self.segments[segment - 1].0, u64::from(offset)))
    }
}

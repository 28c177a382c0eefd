//! Reading records where they lie: a segment file mapped into memory, the
//! walk from one position to another over the mappings ([`EventLog::in_place`]),
//! and single reads of part of a file.

use super::*;

/// Reads up to `buf.len()` bytes at `offset`, fewer at the end of the file.
pub(super) fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// How a mapped segment will be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Every byte, once, in order (the open's scan, the background check):
    /// the page tables are filled as it is mapped, in one go.
    Whole,
    /// Some records here and there, or maybe all of them
    /// ([`EventLog::in_place`]): mapped without filling the page tables,
    /// each page mapped when first read. Filling them for the whole log
    /// took 130–170 ms at 10M records (2 GB), on every past view that
    /// read a single history back.
    Sparse,
}

/// Maps a segment file for reading (`None` when it is empty, which cannot
/// be mapped). Mapped rather than read: scans read each byte once, and
/// copying every segment into a buffer was a fifth of the start-up scan.
///
/// SAFETY (of the mapping): segments are never changed in place; the writer
/// only appends past the mapped length, and a torn tail is cut off only at
/// open, after the open's scan has dropped its mappings. (A mapping being
/// unmapped on a thread of its own, [`Mapped`]'s drop, is never read
/// again.)
pub(super) fn map_segment(path: &Path, access: Access) -> std::io::Result<Option<memmap2::Mmap>> {
    let file = File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(None);
    }
    let mut options = memmap2::MmapOptions::new();
    if access == Access::Whole {
        options.populate();
    }
    // SAFETY: see above.
    unsafe { options.map(&file) }.map(Some)
}

/// The segments holding the records up to a head, mapped for reading in
/// place ([`EventLog::in_place`]); unmapped when dropped.
pub(super) struct Mapped<'a> {
    shared: &'a Shared,
    head: u64,
    maps: HashMap<u32, memmap2::Mmap>,
    /// Set once its reader says which records it will read
    /// ([`InPlace::will_read`]): the mappings are then read here and there
    /// ([`Mapped::read_randomly`]).
    random: std::sync::Once,
}

/// Mappings of at least this many bytes are unmapped on a thread of their
/// own when dropped.
const UNMAP_APART: usize = 64 << 20;

impl Drop for Mapped<'_> {
    /// Unmaps off the caller's thread when the mappings are large: a past
    /// view that read histories across a 2 GB log waited some 50 ms for
    /// the unmapping, after its answer was ready.
    fn drop(&mut self) {
        let maps = std::mem::take(&mut self.maps);
        let mapped: usize = maps.values().map(|map| map.len()).sum();
        // Any, in the tests, so that they take that way.
        if cfg!(test) || mapped >= UNMAP_APART {
            let apart = std::thread::Builder::new()
                .name("openptl-unmap".into())
                .spawn(move || drop(maps));
            // No thread to be had: the mappings went with the refused
            // closure, unmapped here.
            drop(apart);
        }
    }
}

impl<'a> Mapped<'a> {
    pub(super) fn new(shared: &'a Shared, head: u64) -> Result<Mapped<'a>, LogError> {
        let segments: Vec<u32> = {
            let locations = shared.read_locations();
            let last = match head {
                0 => None,
                _ => Some(shared_location(&locations, head)?.0),
            };
            locations
                .segments
                .iter()
                .map(|(number, _)| *number)
                .take_while(|n| last.is_some_and(|last| *n <= last))
                .collect()
        };
        let mut maps = HashMap::with_capacity(segments.len());
        for number in segments {
            let map = map_segment(
                &shared.segments_dir.join(segment_name(number)),
                Access::Sparse,
            )
            .map_err(|e| LogError::Storage(Failure::caused_by(format!("segment {number}"), e)))?;
            if let Some(map) = map {
                maps.insert(number, map);
            }
        }
        Ok(Mapped {
            shared,
            head,
            maps,
            random: std::sync::Once::new(),
        })
    }

    /// The bytes from `offset` of a mapped segment.
    pub(super) fn bytes(&self, segment: u32, offset: u64) -> Result<&[u8], LogError> {
        self.maps
            .get(&segment)
            .and_then(|map| map.get(offset as usize..))
            .filter(|bytes| !bytes.is_empty())
            .ok_or_else(|| {
                LogError::storage(format!("segment {segment} ends before offset {offset}"))
            })
    }

    /// Where each mapping starts (for the tests, which look its flags up).
    #[cfg(test)]
    pub(super) fn addresses(&self) -> Vec<usize> {
        self.maps.values().map(|m| m.as_ptr() as usize).collect()
    }

    /// Whether `position` is one of the records this reader covers.
    fn holds(&self, position: u64) -> bool {
        (1..=self.head).contains(&position)
    }

    pub(super) fn covers(&self, position: u64) -> Result<(), LogError> {
        if !self.holds(position) {
            return Err(LogError::storage(format!(
                "position {position} is not stored (the head is {})",
                self.head
            )));
        }
        Ok(())
    }
}

/// What [`Mapped::walk`] hands each record to: its segment, offset, bytes
/// (from its start) and first fields.
/// The bytes live as long as the reader's borrow `'b` (`'f` is the
/// step's own).
pub(super) type WalkStep<'f, 'b> =
    dyn FnMut(u32, u64, &'b [u8], &record::Head<'b>) -> Result<(), LogError> + 'f;

impl Mapped<'_> {
    /// Hands `step` each record from `from` to `to` in order: its segment,
    /// offset, bytes (from its start) and first fields, its length and
    /// position checked.
    pub(super) fn walk<'b>(
        &'b self,
        from: u64,
        to: u64,
        step: &mut WalkStep<'_, 'b>,
    ) -> Result<(), LogError> {
        let from = from.max(1);
        if from > to {
            return Ok(());
        }
        self.covers(to)?;
        let mut next = from;
        while next <= to {
            let (segment, offset) = self.shared.location(next)?;
            let bytes = self.bytes(segment, offset)?;
            let mut at = 0usize;
            while next <= to && at < bytes.len() {
                // A batch's mark between records (decision 189).
                at += record::mark_len(&bytes[at..]);
                if at >= bytes.len() {
                    break;
                }
                let offset = offset + at as u64;
                let head = record::head(&bytes[at..]).map_err(damaged(segment, offset))?;
                if head.position != next {
                    return Err(misplaced(segment, offset, head.position, next));
                }
                step(segment, offset, &bytes[at..], &head)?;
                at += head.len;
                next += 1;
            }
        }
        Ok(())
    }
}

pub(super) fn shared_location(
    locations: &Locations,
    position: u64,
) -> Result<(u32, u64), LogError> {
    locations
        .get(position)
        .ok_or_else(|| LogError::storage(format!("position {position} is not stored")))
}

pub(super) fn damaged(segment: u32, offset: u64) -> impl Fn(Damage) -> LogError {
    move |d| {
        LogError::storage(format!(
            "segment {segment} offset {offset}: {}",
            d.problem()
        ))
    }
}

pub(super) fn misplaced(segment: u32, offset: u64, found: u64, expected: u64) -> LogError {
    LogError::storage(format!(
        "segment {segment} offset {offset}: position {found} where {expected} was expected"
    ))
}

/// Records whose first page [`Mapped::sample_in_memory`] looks at.
const SAMPLE: usize = 64;

/// The size of a memory page.
fn page_size() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        // SAFETY: sysconf only reads a system setting.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size)
            .ok()
            .filter(|s| *s > 0)
            .unwrap_or(4096)
    })
}

/// Whether the page holding `offset` of `map` is in memory (`false` when
/// the kernel does not say).
fn in_memory(map: &memmap2::Mmap, offset: u64) -> bool {
    let page = page_size();
    let Some(start) = usize::try_from(offset).ok().map(|o| o / page * page) else {
        return false;
    };
    if start >= map.len() {
        return false;
    }
    let mut resident = [0u8; 1];
    // SAFETY: the address is page-aligned and inside the mapping, the
    // length one page; mincore writes one byte per page, into `resident`.
    let asked = unsafe {
        libc::mincore(
            map.as_ptr().add(start) as *mut libc::c_void,
            1,
            resident.as_mut_ptr(),
        )
    };
    asked == 0 && resident[0] & 1 == 1
}

/// Bytes asked for past a record's start when the next record is in
/// another segment (a record's length is not known before it is read).
pub(super) const TAIL_GUESS: u64 = 4096;

/// Pages read ahead of a past view's records are asked for in runs; runs
/// this close (in bytes) are asked for as one: reading a few pages no one
/// asked for costs less than another request. (Joined within 4 KiB
/// instead, the first cold ask was no faster: decision 166.)
pub(super) const RUN_GAP: u64 = 16 << 10;

impl Mapped<'_> {
    /// Tells the kernel that the mappings are read here and there
    /// (`MADV_RANDOM`), once: a page fault then reads its page, and only
    /// it. By default a fault on a file mapping reads the pages around it
    /// too, as far as the disk's read-ahead (8 MiB on the machine measured): a
    /// past view reading thousands of histories from a log the kernel had
    /// dropped read most of the 2 GB log, 8 MiB a fault, for seconds.
    fn read_randomly(&self) {
        self.random.call_once(|| {
            for map in self.maps.values() {
                // A hint: refused, faults read around as before.
                let _ = map.advise(memmap2::Advice::Random);
            }
        });
    }

    /// Whether the first pages of a sample of the records at `positions`
    /// (up to [`SAMPLE`], spread over them) are all in memory.
    pub(super) fn sample_in_memory(&self, positions: &[u64]) -> bool {
        let every = (positions.len() / SAMPLE).max(1);
        let sampled: Vec<(u32, u64)> = {
            let locations = self.shared.read_locations();
            positions
                .iter()
                .step_by(every)
                .filter(|p| self.holds(**p))
                .filter_map(|p| locations.get(*p))
                .collect()
        };
        sampled.iter().all(|(segment, offset)| {
            self.maps
                .get(segment)
                .is_some_and(|map| in_memory(map, *offset))
        })
    }

    /// Where the records at `positions` lie, as (segment, start, end) in
    /// segment order, each run of nearby records (within [`RUN_GAP`])
    /// joined into one.
    pub(super) fn runs(&self, positions: &[u64]) -> Vec<(u32, u64, u64)> {
        let mut spans: Vec<(u32, u64, u64)> = {
            let locations = self.shared.read_locations();
            positions
                .iter()
                .copied()
                .filter(|p| self.holds(*p))
                .filter_map(|p| {
                    let (segment, offset) = locations.get(p)?;
                    // A record ends where the next one starts, in the same
                    // segment.
                    let end = match locations.get(p + 1) {
                        Some((next, start)) if next == segment && start > offset => start,
                        _ => offset + TAIL_GUESS,
                    };
                    Some((segment, offset, end))
                })
                .collect()
        };
        spans.sort_unstable();
        let mut runs: Vec<(u32, u64, u64)> = Vec::new();
        for (segment, start, end) in spans {
            match runs.last_mut() {
                Some((s, _, e)) if *s == segment && start <= e.saturating_add(RUN_GAP) => {
                    *e = (*e).max(end);
                }
                _ => runs.push((segment, start, end)),
            }
        }
        runs
    }
}

impl InPlace for Mapped<'_> {
    fn head(&self) -> u64 {
        self.head
    }

    /// Asks the kernel to read the pages under the records' runs
    /// (`MADV_WILLNEED`): it starts the reads of those not in memory at
    /// once and returns, so a past view reading thousands of histories
    /// from a log whose pages the kernel dropped waits for the disk about
    /// once rather than once per page (a random read here took 70 µs on
    /// its own; 4,000 asked for together, 8 µs each). Pages in memory cost
    /// a look-up each.
    fn will_read(&self, positions: &mut dyn Iterator<Item = u64>) {
        self.read_randomly();
        let positions: Vec<u64> = positions.collect();
        // Asking costs a look-up per page even when every page is in
        // memory (seconds over a view reading every history): asked only
        // when a sample finds a page the kernel dropped.
        if self.sample_in_memory(&positions) {
            return;
        }
        let (mut runs, mut bytes) = (0usize, 0u64);
        for (segment, start, end) in self.runs(&positions) {
            let Some(map) = self.maps.get(&segment) else {
                continue;
            };
            let len = map.len() as u64;
            if start >= len {
                continue;
            }
            // A hint: a refusal only means the pages are read as touched.
            let _ = map.advise_range(
                memmap2::Advice::WillNeed,
                start as usize,
                (end.min(len) - start) as usize,
            );
            runs += 1;
            bytes += end.min(len) - start;
        }
        tracing::debug!(
            records = positions.len(),
            runs,
            kib = bytes >> 10,
            "records' pages asked for"
        );
    }

    fn visit(
        &self,
        from: u64,
        to: u64,
        keep: &dyn Fn(&[u8]) -> bool,
        visit: &mut dyn FnMut(RecordRef<'_>),
    ) -> Result<(), LogError> {
        self.walk(from, to, &mut |segment, offset, bytes, head| {
            if keep(head.stream_id) {
                visit(
                    record::view(bytes)
                        .map_err(damaged(segment, offset))?
                        .record,
                );
            }
            Ok(())
        })
    }

    fn visit_streams<'s>(
        &'s self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &'s [u8]),
    ) -> Result<(), LogError> {
        self.walk(from, to, &mut |_, _, _, head| {
            visit(head.position, head.stream_id);
            Ok(())
        })
    }

    fn visit_positions(
        &self,
        positions: &[u64],
        visit: &mut dyn FnMut(RecordRef<'_>),
    ) -> Result<(), LogError> {
        let located: Vec<(u32, u64)> = {
            let locations = self.shared.read_locations();
            positions
                .iter()
                .map(|p| {
                    self.covers(*p)?;
                    shared_location(&locations, *p)
                })
                .collect::<Result<_, _>>()?
        };
        // Every record's first byte read first, in one tight loop: the
        // reads are independent, so the processor waits for their cache
        // misses together rather than one per record as each is decoded
        // (the first touch of a record was most of the time spent reading
        // histories back).
        let touched = located.iter().fold(0u8, |acc, (segment, offset)| {
            acc ^ self.bytes(*segment, *offset).map_or(0, |bytes| bytes[0])
        });
        std::hint::black_box(touched);
        for (position, (segment, offset)) in positions.iter().zip(located) {
            let bytes = self.bytes(segment, offset)?;
            let viewed = record::view(bytes).map_err(damaged(segment, offset))?;
            if viewed.record.position != *position {
                return Err(misplaced(
                    segment,
                    offset,
                    viewed.record.position,
                    *position,
                ));
            }
            visit(viewed.record);
        }
        Ok(())
    }
}

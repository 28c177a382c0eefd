//! Work over many pathways at once: evaluating every pathway from its
//! history (a start without a snapshot, a new day, a view of a past
//! moment), and spreading work over the cores.
//!
//! The projection knows where each pathway's records are (their log
//! positions). A log that can be read in place ([`EventLog::in_place`]: the
//! segment log, mapped) is read by position on every core, each thread
//! taking blocks of pathways in turn: nothing is copied but what is decoded,
//! and no thread waits on another. Pathways ordered by their first record
//! read the log roughly forwards. Any other log (PostgreSQL) is read once,
//! in order and in pages, gathering each pathway's history until its last
//! record, and the finished pathways are evaluated on every core.
//!
//! A start without a snapshot first learns where every record is by
//! reading the log in place on every core, each thread keeping the streams
//! of its share ([`positions`]).
//!
//! Invariants:
//! - `f` sees each pathway's whole history (every position given), in the
//!   order of the positions, or `None` when a record could not be decoded
//!   (logged without patient data);
//! - results come in the order of the pathways given, however the log was
//!   read and on however many cores.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use foldhash::{HashMap, HashMapExt};
use openptl_log::{EventLog, InPlace, RecordRef};
use openptl_rules::RecordedEvent;
use tokio::runtime::Handle;

use crate::evaluate::decode;
use crate::pathway_key::PathwayKey;
use crate::positions::Positions;
use crate::AppError;

mod first_read;

/// Records read from the log per page when it cannot be read in place.
const PAGE: usize = 8192;

/// Pathways a thread takes at a time.
const BLOCK: usize = 1024;

/// Where the items of `parts` lie, `(part, index)`, in the order `order`
/// sorts them (unstably), worked out on every core without moving the
/// items: a month's CWT submission at alliance scale is hundreds of
/// thousands of items of a few hundred bytes, which a sort would move many
/// times over, and moving each once into a list of its own took a third
/// of the sort.
///
/// `key` is a summary of an item that `order` agrees with: an item whose
/// key is less comes first (`order` tells apart only items of equal keys).
/// Each item's key is worked out once, on every core, and kept beside its
/// place, so most comparisons read neither item: comparing the items
/// themselves, scattered over memory, took two thirds of a 340,000-item
/// sort.
pub(crate) fn par_order_parts_by<T: Sync, K: Ord + Send + Sync>(
    parts: &[Vec<T>],
    key: impl Fn(&T) -> K + Sync,
    order: impl Fn(&T, &T) -> std::cmp::Ordering + Sync,
) -> Vec<(usize, usize)> {
    let places: Vec<(usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(p, items)| (0..items.len()).map(move |i| (p, i)))
        .collect();
    let keyed = par_filter_map(&places, |&(p, i)| Some((key(&parts[p][i]), p, i)));
    drop(places);
    let order = |a: &(K, usize, usize), b: &(K, usize, usize)| {
        a.0.cmp(&b.0)
            .then_with(|| order(&parts[a.1][a.2], &parts[b.1][b.2]))
    };
    sort_on(keyed, order, cores())
        .into_iter()
        .map(|(_, p, i)| (p, i))
        .collect()
}

/// The items of `parts` as one list, in the order of
/// [`par_order_parts_by`] (which see for `key`), each moved into its place
/// after the sort (never during it): for a list its readers take whole.
pub(crate) fn par_sort_parts_by<T: Send + Sync, K: Ord + Send + Sync>(
    parts: Vec<Vec<T>>,
    key: impl Fn(&T) -> K + Sync,
    order: impl Fn(&T, &T) -> std::cmp::Ordering + Sync,
) -> Vec<T> {
    let places = par_order_parts_by(&parts, key, order);
    let mut slots: Vec<Vec<Option<T>>> = parts
        .into_iter()
        .map(|items| items.into_iter().map(Some).collect())
        .collect();
    // Each place is named once (property-tested), so each item is taken
    // once: a place named twice would be a bug of the sort, not of its
    // input.
    places
        .into_iter()
        .map(|(p, i)| slots[p][i].take().expect("each place is named once"))
        .collect()
}

/// The last of `parts`, added when there is none: where a fold that keeps
/// its lines in parts (merged by moving the parts, never the lines) adds
/// its next.
pub(crate) fn last_part<T>(parts: &mut Vec<Vec<T>>) -> &mut Vec<T> {
    if parts.is_empty() {
        parts.push(Vec::new());
    }
    let last = parts.len() - 1;
    &mut parts[last]
}

/// The first 16 bytes of `text` as a big-endian number (zeros after a
/// shorter text): numbers compare as those bytes do, so a sort key can
/// hold a pathway id's start in place of the id.
pub(crate) fn leading_bytes(text: &str) -> u128 {
    let mut bytes = [0; 16];
    let n = text.len().min(16);
    bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
    u128::from_be_bytes(bytes)
}

/// `items` sorted by `order` (unstably) on `threads` threads, a slice on
/// each, the slices then merged.
fn sort_on<T: Send>(
    mut items: Vec<T>,
    order: impl Fn(&T, &T) -> std::cmp::Ordering + Sync,
    threads: usize,
) -> Vec<T> {
    if threads < 2 || items.len() < 2 * SORT_SLICE_LEAST {
        items.sort_unstable_by(&order);
        return items;
    }
    let per = items.len().div_ceil(threads).max(SORT_SLICE_LEAST);
    let total = items.len();
    // Cut from the end: each cut moves only the items it takes.
    let mut slices = Vec::with_capacity(threads);
    while items.len() > per {
        let tail = items.split_off(items.len() - per);
        slices.push(tail);
    }
    slices.push(items);
    // Each slice sorted backwards, so that its least item is its last.
    let order = &order;
    std::thread::scope(|scope| {
        for slice in &mut slices {
            scope.spawn(move || slice.sort_unstable_by(|a, b| order(b, a)));
        }
    });
    let mut sorted = Vec::with_capacity(total);
    loop {
        // The least of the slices' last items (a few slices: a scan beats
        // a heap).
        let mut least: Option<usize> = None;
        for (i, slice) in slices.iter().enumerate() {
            let Some(item) = slice.last() else {
                continue;
            };
            let before = least.is_none_or(|l| {
                slices[l]
                    .last()
                    .is_some_and(|best| order(item, best).is_lt())
            });
            if before {
                least = Some(i);
            }
        }
        match least.and_then(|l| slices[l].pop()) {
            Some(item) => sorted.push(item),
            None => return sorted,
        }
    }
}

/// The fewest items a core sorts on its own in [`sort_on`].
const SORT_SLICE_LEAST: usize = if cfg!(test) { 2 } else { 8192 };

/// Threads for work spread over the cores (at most 8).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
}

/// `f` over every item, on every core when there are many (start-up, a new
/// day, a past view).
pub fn par_filter_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> Option<R> + Sync) -> Vec<R> {
    let threads = cores();
    if items.len() < 2048 || threads < 2 {
        return items.iter().filter_map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let f = &f;
                scope.spawn(move || part.iter().filter_map(f).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("evaluation does not panic"))
            .collect()
    })
}

/// `f` over every batch (a chunk of pathways, each a share of work in
/// itself), on every core from two batches on, each thread taking the next
/// batch left; results in the batches' order. ([`par_filter_map`] counts
/// items, not work: given a few dozen chunks it ran them on one core.)
pub fn par_batches<T: Sync, R: Send>(batches: &[T], f: impl Fn(&T) -> Option<R> + Sync) -> Vec<R> {
    let threads = cores().min(batches.len());
    if threads < 2 {
        return batches.iter().filter_map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (f, next) = (&f, &next);
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(batch) = batches.get(i) else {
                            break;
                        };
                        if let Some(r) = f(batch) {
                            mine.push((i, r));
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("evaluation does not panic"))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// `f` over every batch on every core, as [`par_batches`], handing each
/// result to `take` on the calling thread in the batches' order as soon as
/// it and every one before it are done, so that the caller's work on the
/// results overlaps the rest of `f`'s (a restore installs the pathways of
/// the snapshot's first chunks while the others are still being decoded).
/// An error from `take` ends it: no batch is started once the error is
/// seen (those already started finish), and the error is given back. A
/// panic in `f` stops the other threads likewise, then reaches the caller.
pub fn par_batches_in_order<T: Sync, R: Send, E>(
    batches: &[T],
    f: impl Fn(&T) -> R + Sync,
    mut take: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E> {
    let threads = cores().min(batches.len());
    if threads < 2 {
        return batches.iter().try_for_each(|batch| take(f(batch)));
    }
    /// Stops the other threads when its own unwinds from a panic in `f`.
    struct StopOnPanic<'a>(&'a AtomicBool);
    impl Drop for StopOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.store(true, Ordering::Relaxed);
            }
        }
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (done, results) = std::sync::mpsc::channel::<(usize, R)>();
        for _ in 0..threads {
            let (f, next, stop, done) = (&f, &next, &stop, done.clone());
            scope.spawn(move || {
                let _stop = StopOnPanic(stop);
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(batch) = batches.get(i) else {
                        break;
                    };
                    if done.send((i, f(batch))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done);
        // Results that came before one still being worked on.
        let mut early = std::collections::BTreeMap::new();
        let mut wanted = 0;
        let taken = results.iter().try_for_each(|(i, r)| {
            early.insert(i, r);
            while let Some(r) = early.remove(&wanted) {
                wanted += 1;
                take(r)?;
            }
            Ok(())
        });
        if taken.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        taken
    })
}

/// `fold` of every batch into an accumulator of the core that takes it
/// (made by `new`), on every core from two batches on, each thread taking
/// the next batch left: one accumulator per core, to merge, in no
/// particular order. Where [`par_batches`] keeps every batch's result
/// until the last is done, this keeps one per core: today's aggregates
/// built from 86 batches held 86 partial sums at once, and the memory
/// they left behind (decision 209).
pub fn par_fold<T: Sync, A: Send>(
    batches: &[T],
    new: impl Fn() -> A + Sync,
    fold: impl Fn(&mut A, &T) + Sync,
) -> Vec<A> {
    let threads = cores().min(batches.len());
    if threads < 2 {
        let mut acc = new();
        batches.iter().for_each(|batch| fold(&mut acc, batch));
        return vec![acc];
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (new, fold, next) = (&new, &fold, &next);
                scope.spawn(move || {
                    let mut acc = new();
                    while let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                        fold(&mut acc, batch);
                    }
                    acc
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("evaluation does not panic"))
            .collect()
    })
}

/// A pathway's id and the log positions of its records, in order.
pub type PathwayRecords = (PathwayKey, Vec<u64>);

/// `f` on the history of every pathway of `pathways` (all of whose records
/// are at or before `to`), one result per pathway in the order given.
pub fn fold_pathways<R: Send>(
    log: &dyn EventLog,
    runtime: &Handle,
    to: u64,
    pathways: &[PathwayRecords],
    f: impl Fn(&PathwayKey, Option<&[RecordedEvent]>) -> R + Sync,
) -> Result<Vec<R>, AppError> {
    match log.in_place() {
        Some(reader) => fold_in_place(reader.map_err(storage)?.as_ref(), pathways, f),
        None => fold_in_pages(log, runtime, to, pathways, f),
    }
}

fn storage(e: openptl_log::LogError) -> AppError {
    AppError::from(e)
}

/// Decodes a record onto a history being gathered (`None` once one could
/// not be decoded). Says why, when the record is one this binary cannot
/// read at all ([`crate::evaluate::unreadable`]: written by a newer one),
/// which must stop the fold rather than leave the pathway out.
#[must_use]
fn gather(history: &mut Option<Vec<RecordedEvent>>, record: RecordRef<'_>) -> Option<String> {
    let events = history.as_mut()?;
    match decode(record) {
        Ok(event) => {
            events.push(event);
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "a stored event could not be decoded");
            *history = None;
            crate::evaluate::unreadable(record)
        }
    }
}

/// [`fold_pathways`] reading by position in place (a reader taken once
/// serves many calls).
pub(crate) fn fold_in_place<R: Send>(
    reader: &dyn InPlace,
    pathways: &[PathwayRecords],
    f: impl Fn(&PathwayKey, Option<&[RecordedEvent]>) -> R + Sync,
) -> Result<Vec<R>, AppError> {
    // The disk reads of every history asked for together (pages the
    // kernel has dropped would otherwise be read one fault at a time).
    let started = std::time::Instant::now();
    reader.will_read(
        &mut pathways
            .iter()
            .flat_map(|(_, positions)| positions.iter().copied()),
    );
    tracing::debug!(
        pathways = pathways.len(),
        us = started.elapsed().as_micros() as u64,
        "histories' pages asked for"
    );
    let next = AtomicUsize::new(0);
    let blocks = pathways.len().div_ceil(BLOCK);
    let work = || -> Result<Vec<(usize, Vec<R>)>, AppError> {
        let mut done = Vec::new();
        loop {
            let block = next.fetch_add(1, Ordering::Relaxed);
            if block >= blocks {
                return Ok(done);
            }
            let start = block * BLOCK;
            let part = &pathways[start..(start + BLOCK).min(pathways.len())];
            let mut out = Vec::with_capacity(part.len());
            for (id, positions) in part {
                let mut history = Some(Vec::with_capacity(positions.len()));
                reader
                    .visit_positions(positions, &mut |record| {
                        if record.stream_id == &**id {
                            // Every record here was applied first, which
                            // refuses one this binary cannot read.
                            let _ = gather(&mut history, record);
                        } else if history.take().is_some() {
                            // Positions that disagree with the log: never
                            // another stream's events in a history.
                            tracing::error!(
                                position = record.position,
                                "a pathway's recorded position holds another stream's record"
                            );
                        }
                    })
                    .map_err(|e| {
                        // The other threads stop at their next block.
                        next.store(blocks, Ordering::Relaxed);
                        storage(e)
                    })?;
                out.push(f(id, history.as_deref()));
            }
            done.push((block, out));
        }
    };
    let threads = if blocks > 1 { cores() } else { 1 };
    let mut done: Vec<(usize, Vec<R>)> = on_threads(threads, |_| work())?
        .into_iter()
        .flatten()
        .collect();
    done.sort_unstable_by_key(|(block, _)| *block);
    // Made its full size at once: grown by doubling, the results (a few
    // hundred bytes each, hundreds of thousands on a new day) were copied
    // into fresh pages over and over (an eighth of a new day's samples).
    let mut all = Vec::with_capacity(done.iter().map(|(_, out)| out.len()).sum());
    for (_, out) in done {
        all.extend(out);
    }
    Ok(all)
}

/// [`fold_pathways`] reading the log in pages, in order, up to `to`: each
/// pathway's history is gathered until its last record, and finished
/// pathways are evaluated a batch at a time on every core.
fn fold_in_pages<R: Send>(
    log: &dyn EventLog,
    runtime: &Handle,
    to: u64,
    pathways: &[PathwayRecords],
    f: impl Fn(&PathwayKey, Option<&[RecordedEvent]>) -> R + Sync,
) -> Result<Vec<R>, AppError> {
    let wanted: HashMap<&str, usize> = pathways
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (&**id, i))
        .collect();
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None)
        .take(pathways.len())
        .collect();
    let mut gathering: HashMap<usize, Option<Vec<RecordedEvent>>> = HashMap::new();
    let mut ready: Vec<(usize, Option<Vec<RecordedEvent>>)> = Vec::new();
    let mut evaluate = |ready: &mut Vec<(usize, Option<Vec<RecordedEvent>>)>| {
        let evaluated = par_filter_map(ready, |(i, history)| {
            Some((*i, f(&pathways[*i].0, history.as_deref())))
        });
        for (i, r) in evaluated {
            results[i] = Some(r);
        }
        ready.clear();
    };
    let mut from = 1;
    while from <= to {
        let page = runtime
            .block_on(log.read_all(from, PAGE))
            .map_err(storage)?;
        if page.is_empty() {
            break;
        }
        for record in page.iter().take_while(|r| r.position <= to) {
            from = record.position + 1;
            let Some(&i) = wanted.get(record.stream_id.as_str()) else {
                continue;
            };
            let positions = &pathways[i].1;
            if !positions.contains(&record.position) {
                continue;
            }
            let history = gathering
                .entry(i)
                .or_insert_with(|| Some(Vec::with_capacity(positions.len())));
            // Applied first, which refuses a record this binary cannot read.
            let _ = gather(history, record.as_ref());
            if positions.last() == Some(&record.position) {
                let history = gathering.remove(&i).expect("gathered above");
                ready.push((i, history));
            }
        }
        if ready.len() >= BLOCK {
            evaluate(&mut ready);
        }
        if page.last().is_none_or(|r| r.position >= to) {
            break;
        }
    }
    evaluate(&mut ready);
    results
        .into_iter()
        .map(|r| {
            r.ok_or_else(|| {
                AppError::internal(format!(
                    "the log ended at position {} before every pathway's records were read",
                    from - 1
                ))
            })
        })
        .collect()
}

/// Which of `shares` a stream belongs to (the same for every thread).
fn share_of(stream: &[u8], shares: usize) -> usize {
    if shares < 2 {
        return 0;
    }
    (foldhash::fast::FixedState::with_seed(0).hash_one(stream) % shares as u64) as usize
}

/// A pathway of a share in [`fold_everything`]: where its records are, and
/// its history while it is being gathered.
struct Found {
    /// Its id (its stream's), inline: the look-ups of the first read
    /// compare it in place, and the second read checks each record's.
    id: PathwayKey,
    /// Its last record's position (from the first read).
    last: u64,
    positions: Vec<u64>,
    /// `None` once a record could not be decoded (see [`gather`]).
    history: Option<Vec<RecordedEvent>>,
}

/// How many records ahead the second read of [`fold_everything`] asks
/// for a pathway's place in the list ([`AHEAD`]), and for the ends of its
/// positions and history ([`NEARER`], once its place is at hand).
const AHEAD: usize = 16;
const NEARER: usize = 8;

/// Asks the processor to bring the memory at `at` into its caches: a hint,
/// which changes nothing a program can see.
#[inline(always)]
fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address (one past a
    // vector's end included), and neither reads nor writes what a program
    // sees.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// [`prefetch`] of the first and the last byte of `value`: a pathway of
/// [`fold_everything`] is more than a cache line. Those two are all its
/// lines while it is at most 80 bytes and starts on a 16-byte boundary
/// (a vector's elements, as mimalloc aligns them): it then spans two 64-byte
/// lines at most.
#[inline(always)]
fn prefetch_whole<T>(value: &T) {
    const { assert!(std::mem::size_of::<T>() <= 80, "more than two cache lines") };
    let at: *const T = value;
    prefetch(at);
    prefetch(
        at.cast::<u8>()
            .wrapping_add(std::mem::size_of::<T>().saturating_sub(1)),
    );
}

/// Results a share hands on at a time in [`fold_everything`].
const HANDED_ON: usize = 4096;

/// `f` on the history of every pathway of the log up to the reader's head,
/// each result handed to `done` with the pathway's id and where its records
/// are (how a projection is built from nothing). One thread per core reads
/// the whole log twice, in order, keeping the streams of its share: first
/// where each one's last record is (without checking or decoding the
/// records), then their records, each pathway handed to `f` as soon as its
/// last record is read. Only the first read looks pathways up (in the
/// thread's own table); it notes whose each record is, so the second read
/// takes each record's pathway from that list (checking its id), and only
/// the pathways whose records straddle the point reached hold a history.
/// `done` is called from the share's own thread, a batch at a time, while
/// the other shares go on: putting results in place overlaps the fold. Each
/// share's results come in the order of its pathways' last records.
pub fn fold_everything<R>(
    reader: &dyn InPlace,
    f: impl Fn(&PathwayKey, Option<&[RecordedEvent]>) -> R + Sync,
    done: impl Fn(Vec<(PathwayKey, Positions, R)>) + Sync,
) -> Result<(), AppError> {
    let shares = cores();
    on_threads(shares, |share| fold_share(reader, share, shares, &f, &done))?;
    Ok(())
}

/// One share's part of [`fold_everything`].
fn fold_share<R>(
    reader: &dyn InPlace,
    share: usize,
    shares: usize,
    f: &impl Fn(&PathwayKey, Option<&[RecordedEvent]>) -> R,
    done: &impl Fn(Vec<(PathwayKey, Positions, R)>),
) -> Result<(), AppError> {
    let to = reader.head();
    let keep = |stream: &[u8]| share_of(stream, shares) == share;
    // The share's pathways in the order first seen, and whose each of its
    // records is, in the order read (4 bytes a record). Some seven
    // records a pathway (7.3 in the 1.4M benchmark, which then never grows
    // these).
    let first_read::Read { mut found, whose } = first_read::first_read(
        reader,
        to,
        &keep,
        (
            to as usize / shares / 7,
            to as usize / shares + to as usize / 32 + 1,
        ),
    )?;
    let mut finished = Vec::with_capacity(HANDED_ON);
    let mut unreadable = None;
    // The first record the second read did not meet as the first did
    // (after it, nothing more is gathered), and the last it met.
    let mut astray = None;
    let mut met = 0;
    let mut places = whose.iter();
    // The pathways of the records a little ahead, asked of memory before
    // they are needed: each record's pathway is a random access into the
    // share's list, and then into its history's end.
    let mut ahead = whose.iter().skip(AHEAD);
    let mut nearer = whose.iter().skip(NEARER);
    reader
        .visit(1, to, &keep, &mut |record| {
            if let Some(&place) = ahead.next() {
                prefetch_whole(&found[place as usize]);
            }
            if let Some(&place) = nearer.next() {
                // Only where the push will write: an empty vector's end is
                // no memory, and a full one's moves.
                let pathway = &found[place as usize];
                if pathway.positions.capacity() > pathway.positions.len() {
                    prefetch(pathway.positions.as_ptr_range().end);
                }
                if let Some(history) = pathway.history.as_ref().filter(|h| h.capacity() > h.len()) {
                    prefetch(history.as_ptr_range().end);
                }
            }
            let pathway = match places.next() {
                Some(place) => &mut found[*place as usize],
                None => {
                    astray.get_or_insert(record.position);
                    return;
                }
            };
            // Never another pathway's record in a history, nor its own out
            // of order.
            if astray.is_some()
                || record.position <= met
                || pathway.id.as_bytes() != record.stream_id.as_bytes()
            {
                astray.get_or_insert(record.position);
                return;
            }
            met = record.position;
            pathway.positions.push(record.position);
            if let Some(why) = gather(&mut pathway.history, record) {
                unreadable.get_or_insert(why);
            }
            if pathway.last == record.position {
                let id = pathway.id.clone();
                let r = f(&id, pathway.history.take().as_deref());
                let positions = Positions::from_slice(&std::mem::take(&mut pathway.positions));
                finished.push((id, positions, r));
                if finished.len() == HANDED_ON {
                    done(std::mem::replace(
                        &mut finished,
                        Vec::with_capacity(HANDED_ON),
                    ));
                }
            }
        })
        .map_err(storage)?;
    // What was handed on is thrown away with the error (a rebuild starts
    // again from nothing, in pages).
    if let Some(position) = astray {
        return Err(AppError::internal(format!(
            "the fold's second read of the log did not meet the records of its first (at position {position})"
        )));
    }
    if places.len() > 0 {
        return Err(AppError::internal(format!(
            "the fold's second read of the log did not meet the records of its first ({} not met after position {met})",
            places.len()
        )));
    }
    if let Some(why) = unreadable {
        return Err(AppError::internal(why));
    }
    done(finished);
    Ok(())
}

/// `work(n)` for n in `0..threads`, each on a thread of its own; the
/// results in the order of n, or the first error.
fn on_threads<T: Send>(
    threads: usize,
    work: impl Fn(usize) -> Result<T, AppError> + Sync,
) -> Result<Vec<T>, AppError> {
    let work = &work;
    let outcomes: Vec<Result<T, AppError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|n| scope.spawn(move || work(n))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a fold does not panic"))
            .collect()
    });
    outcomes.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches come back in their order, each once, whichever thread took
    /// it, and those `f` passes over are left out.
    #[test]
    fn batches_keep_their_order_on_every_core() {
        for n in [0usize, 1, 2, 3, 41, 1000] {
            let batches: Vec<usize> = (0..n).collect();
            let out = par_batches(&batches, |b| (b % 7 != 3).then_some(*b * 2));
            let expected: Vec<usize> = (0..n).filter(|b| b % 7 != 3).map(|b| b * 2).collect();
            assert_eq!(out, expected, "{n} batches");
        }
    }

    /// Results are taken in the batches' order, each once, however the
    /// threads finish them (later batches here finish first); an error
    /// from `take` ends it with that error, nothing taken after.
    #[test]
    fn results_are_taken_in_order_until_an_error() {
        for n in [0usize, 1, 2, 3, 41, 300] {
            let batches: Vec<usize> = (0..n).collect();
            let mut taken = Vec::new();
            let slow_first = |b: &usize| {
                if *b < 3 {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                *b * 2
            };
            let ended = par_batches_in_order(&batches, slow_first, |r| {
                taken.push(r);
                Ok::<_, ()>(())
            });
            assert_eq!(ended, Ok(()));
            assert_eq!(taken, (0..n).map(|b| b * 2).collect::<Vec<_>>(), "{n}");

            let mut taken = Vec::new();
            let ended = par_batches_in_order(&batches, slow_first, |r| {
                if r == 2 * 17 {
                    return Err(r);
                }
                taken.push(r);
                Ok(())
            });
            let upto = n.min(17);
            assert_eq!(ended, if n > 17 { Err(34) } else { Ok(()) }, "{n}");
            assert_eq!(taken, (0..upto).map(|b| b * 2).collect::<Vec<_>>(), "{n}");
        }
    }

    /// A panic in `f` reaches the caller (no hang), and the batches after
    /// it are not all worked on.
    #[test]
    fn a_panic_while_working_reaches_the_caller() {
        let batches: Vec<usize> = (0..10_000).collect();
        let worked = AtomicUsize::new(0);
        let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            par_batches_in_order(
                &batches,
                |b| {
                    worked.fetch_add(1, Ordering::Relaxed);
                    assert!(*b != 5, "batch 5");
                    std::thread::sleep(std::time::Duration::from_micros(50));
                },
                |()| Ok::<_, ()>(()),
            )
        }));
        assert!(ended.is_err());
        assert!(worked.load(Ordering::Relaxed) < batches.len());
    }

    /// Which way [`Unfaithful`]'s reads do not meet the same records.
    #[derive(Clone, Copy, Debug)]
    enum Astray {
        /// Both reads meet every record.
        Not,
        /// The second read leaves the record at this position out.
        Skips(u64),
        /// The first read leaves the record at this position out.
        FirstSkips(u64),
        /// The second read meets a share's first two records of two
        /// pathways the other way round.
        SwapsTwo,
        /// The second read meets a share's first two records of one
        /// pathway the other way round.
        SwapsOwn,
    }

    /// A log read in place whose two reads can disagree.
    struct Unfaithful {
        records: Vec<openptl_log::StoredRecord>,
        astray: Astray,
    }

    impl InPlace for Unfaithful {
        fn head(&self) -> u64 {
            self.records.len() as u64
        }

        fn visit(
            &self,
            from: u64,
            to: u64,
            keep: &dyn Fn(&[u8]) -> bool,
            visit: &mut dyn FnMut(RecordRef<'_>),
        ) -> Result<(), openptl_log::LogError> {
            let mut kept: Vec<&openptl_log::StoredRecord> = self.records
                [from as usize - 1..to as usize]
                .iter()
                .filter(|r| {
                    !matches!(self.astray, Astray::Skips(p) if p == r.position)
                        && keep(r.stream_id.as_bytes())
                })
                .collect();
            let own = matches!(self.astray, Astray::SwapsOwn);
            if matches!(self.astray, Astray::SwapsTwo | Astray::SwapsOwn) {
                let second = kept
                    .iter()
                    .skip(1)
                    .position(|r| (r.stream_id == kept[0].stream_id) == own);
                kept.swap(
                    0,
                    second.expect("a share of the test holds two such records") + 1,
                );
            }
            kept.into_iter().for_each(|r| visit(r.as_ref()));
            Ok(())
        }

        fn visit_streams<'s>(
            &'s self,
            from: u64,
            to: u64,
            visit: &mut dyn FnMut(u64, &'s [u8]),
        ) -> Result<(), openptl_log::LogError> {
            for r in &self.records[from as usize - 1..to as usize] {
                if !matches!(self.astray, Astray::FirstSkips(p) if p == r.position) {
                    visit(r.position, r.stream_id.as_bytes());
                }
            }
            Ok(())
        }

        fn visit_positions(
            &self,
            _: &[u64],
            _: &mut dyn FnMut(RecordRef<'_>),
        ) -> Result<(), openptl_log::LogError> {
            unreachable!("the fold reads in order")
        }
    }

    /// The fold hands each pathway every record of its own and no other;
    /// when its second read of the log does not meet the records of the
    /// first, it stops with an error, and no history it handed on held
    /// another pathway's record.
    #[test]
    fn the_fold_never_puts_another_pathways_record_in_a_history() {
        use openptl_rules::{EventData, EventType};
        let note = EventData::from_json(
            EventType::TrackingNoteAdded,
            serde_json::json!({ "text": "chased the report" }),
        )
        .unwrap();
        let on = chrono::NaiveDate::from_ymd_opt(2025, 3, 3).unwrap();
        // Streams interleaved, many pathways: both shares of two cores.
        // Records in pairs: a record left out shifts the next pair's first
        // into the pathway before, whose own last then comes in its place.
        let streams: Vec<String> = (0..400).map(|n| format!("P{}", (n / 2) % 37)).collect();
        let records: Vec<openptl_log::StoredRecord> = streams
            .iter()
            .enumerate()
            .map(|(i, stream)| openptl_log::StoredRecord {
                position: i as u64 + 1,
                stream_id: stream.clone(),
                version: 1,
                event_id: uuid::Uuid::from_u128(i as u128 + 1),
                event_type: note.event_type().as_str().to_string(),
                schema_version: note.schema_version(),
                recorded_at: chrono::Utc::now(),
                actor: "test".to_string(),
                payload: note.encode_payload(on),
            })
            .collect();
        let by_id = |n: usize| -> Vec<u64> {
            (0..400u64)
                .filter(|i| (*i as usize / 2) % 37 == n)
                .map(|i| i + 1)
                .collect()
        };
        let ways = [
            Astray::Not,
            Astray::Skips(1),
            Astray::Skips(200),
            Astray::Skips(400),
            Astray::FirstSkips(1),
            Astray::FirstSkips(200),
            Astray::SwapsTwo,
            Astray::SwapsOwn,
        ];
        for astray in ways {
            let reader = Unfaithful {
                records: records.clone(),
                astray,
            };
            let handed = std::sync::Mutex::new(Vec::new());
            let folded = fold_everything(
                &reader,
                |id, history| {
                    // Each event of a history is one of the pathway's own.
                    let own = by_id(id[1..].parse().unwrap());
                    for event in history.unwrap() {
                        let position = event.event_id.as_u128() as u64;
                        assert!(own.contains(&position), "{id} given {position}");
                    }
                    history.unwrap().len()
                },
                |done| handed.lock().unwrap().extend(done),
            );
            let handed = handed.into_inner().unwrap();
            match astray {
                Astray::Not => {
                    folded.unwrap();
                    assert_eq!(handed.len(), 37);
                    for (id, positions, events) in handed {
                        let own = by_id(id[1..].parse().unwrap());
                        assert_eq!(positions.to_vec(), own, "{id}");
                        assert_eq!(events, own.len());
                    }
                }
                _ => {
                    let e = folded.expect_err(&format!("{astray:?}")).to_string();
                    assert!(e.contains("did not meet"), "{astray:?}: {e}");
                }
            }
        }
    }

    /// Every batch is folded once, into one accumulator per core.
    #[test]
    fn every_batch_is_folded_once() {
        for n in [0usize, 1, 2, 3, 41, 1000] {
            let batches: Vec<usize> = (0..n).collect();
            let folded = par_fold(&batches, Vec::new, |acc: &mut Vec<usize>, b| acc.push(*b));
            assert!(folded.len() <= cores().max(1), "{n} batches");
            let mut all: Vec<usize> = folded.into_iter().flatten().collect();
            all.sort_unstable();
            assert_eq!(all, batches, "{n} batches");
        }
    }

    /// The order the sorts are asked for: by the key only.
    fn by_key(a: &(u8, u16), b: &(u8, u16)) -> std::cmp::Ordering {
        a.0.cmp(&b.0)
    }

    /// `sorted` holds the items of `all`, each once, in key order (ties
    /// told apart by the rest, in any order).
    fn sorted_from(
        sorted: Vec<(u8, u16)>,
        mut all: Vec<(u8, u16)>,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let keys: Vec<u8> = sorted.iter().map(|i| i.0).collect();
        let mut expected_keys: Vec<u8> = all.iter().map(|i| i.0).collect();
        expected_keys.sort_unstable();
        proptest::prop_assert_eq!(keys, expected_keys);
        let mut got = sorted;
        got.sort_unstable();
        all.sort_unstable();
        proptest::prop_assert_eq!(got, all);
        Ok(())
    }

    proptest::proptest! {
        /// Sorted on any number of threads, the items are those given, in
        /// order (ties by the key, told apart by the rest).
        #[test]
        fn sorted_on_every_core_as_on_one(
            items in proptest::collection::vec((0u8..20, proptest::num::u16::ANY), 0..200),
            threads in 1usize..9,
        ) {
            sorted_from(sort_on(items.clone(), by_key, threads), items)?;
        }

        /// Items in parts, ordered where they lie, are the parts' items
        /// as one list, in order, each once, whatever their key tells
        /// apart (the order tells apart the rest).
        #[test]
        fn parts_ordered_as_one_list(
            parts in proptest::collection::vec(
                proptest::collection::vec((0u8..20, proptest::num::u16::ANY), 0..40),
                0..12,
            ),
            coarse in 1u8..30,
        ) {
            let all: Vec<(u8, u16)> = parts.concat();
            let places = par_order_parts_by(&parts, |item| item.0 / coarse, by_key);
            let mut distinct = places.clone();
            distinct.sort_unstable();
            distinct.dedup();
            proptest::prop_assert_eq!(distinct.len(), places.len());
            let sorted: Vec<(u8, u16)> = places.iter().map(|&(p, i)| parts[p][i]).collect();
            sorted_from(sorted, all.clone())?;
            sorted_from(par_sort_parts_by(parts, |item| item.0 / coarse, by_key), all)?;
        }
    }
}

//! The states of a past view ([`PastStates`]): the moved ones, then the
//! histories read back, evaluated a step at a time on every core as the
//! view iterates, with what the view folds or learns of them on the way.

use std::any::Any;
use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use openptl_rules::forecast::{self, ModelCounts};
use openptl_rules::{PtlRow, RulesConfig};

use super::{Kept, Part, Snapshot, TakenAway};
use crate::evaluate::{current_of, Current};
use crate::fold::{fold_pathways, par_batches};
use crate::packed::{ClockFields, Packer};
use crate::projection::PathwayKey;
use crate::AppError;

/// States moved or read per step of [`PastStates`]: enough to keep every
/// core busy, few enough that a step's states (some 9 MB, in lists kept
/// from step to step) are taken before the next step reuses their memory,
/// instead of the whole view's states living at once.
const STEP: usize = if cfg!(test) { 3 } else { 16_384 };

/// What a past view is of.
pub(super) struct At<'a> {
    pub(super) as_of: NaiveDate,
    pub(super) known_at: Option<DateTime<Utc>>,
    pub(super) config: &'a RulesConfig,
    pub(super) packer: &'a Packer,
}

impl At<'_> {
    /// A pathway's state from its history read back, as of the view's date
    /// and as known at its moment (none if it did not exist yet).
    fn evaluate(
        &self,
        id: &PathwayKey,
        history: &[openptl_rules::RecordedEvent],
    ) -> Option<(PathwayKey, Current)> {
        current_of(history, self.as_of, self.known_at, self.config).map(|c| (id.clone(), c))
    }
}

/// The log as a past view reads it: in place, a step at a time, or (a log
/// that cannot be read in place) every history at once, in pages.
enum Source<'a> {
    InPlace(Box<dyn openptl_log::InPlace + 'a>),
    Read(std::vec::IntoIter<(PathwayKey, Current)>),
}

/// The states of a past view, evaluated a step at a time on every core as
/// the iteration goes: first the moved states, then the histories read
/// back. A failure ends the iteration and is kept in `failed`.
pub(crate) struct PastStates<'a> {
    snapshot: &'a Snapshot,
    at: At<'a>,
    /// The pathways to read, in the order of their first records (reads
    /// go forwards).
    read: Vec<crate::fold::PathwayRecords>,
    source: Source<'a>,
    /// The next state to move: its part and its place in it.
    next_moved: (usize, usize),
    next_read: usize,
    /// The states of the current step, a list per core, each reversed
    /// (taken from its end, in order): kept from step to step so that
    /// their memory is used again rather than asked afresh of the system
    /// (and zeroed by it) at every step.
    ready: Vec<Vec<(PathwayKey, Current)>>,
    /// The list `ready` is taken from.
    next_ready: usize,
    pub(super) failed: Option<AppError>,
    /// Time spent moving and reading states so far.
    pub(super) stepping: std::time::Duration,
    /// Set by [`PastStates::learn_clocks`]: the states to pass on.
    learning: Option<fn(&Current) -> bool>,
    /// Set by [`PastStates::fold_on_movers`].
    folding: Option<Folding>,
    /// What each core took of the states it moved or read.
    taken: Vec<Taken>,
    /// The states read back that a fold took something of, kept whole
    /// when it asks, from a log that cannot be read in place (every
    /// history was read at once: [`Source::Read`]). Read in place, they
    /// are read again instead ([`PastStates::again`]).
    read_kept: HashMap<PathwayKey, Current>,
    /// What the view starts from of today's aggregates ([`Counted`]),
    /// until it takes it ([`PastStates::kept_less_away`]).
    kept: Option<Kept>,
    /// Whether a moved state gets its PTL row ([`PastStates::without_rows`]).
    rows: bool,
}

/// What one core took of the states it moved or read, besides those it
/// passed on: their clocks counted for a model of the view's date, when
/// learning, and its accumulator, when folding.
#[derive(Default)]
struct Taken {
    counts: ModelCounts,
    folded: Option<Box<Accumulator>>,
}

/// A fold each core runs over the states it moves or reads, in place of
/// passing them on, into an accumulator of its own.
struct Folding {
    new: Box<dyn Fn() -> Box<Accumulator> + Send + Sync>,
    fold: Box<FoldOne>,
    /// Whether the states read back that the fold took something of are
    /// kept whole.
    keep_read: bool,
}

/// Folds one state into a core's accumulator; whether it took something
/// of it.
type FoldOne = dyn Fn(&mut Accumulator, &PathwayKey, &Current) -> bool + Send + Sync;

/// A core's accumulator when folding, of the type the view folds into.
type Accumulator = dyn Any + Send + Sync;

/// What became of a state a core moved or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    /// Passed on to the view.
    PassOn,
    /// Folded, the fold having taken something of it.
    Folded,
    /// Dropped (counted only, or of no use to the fold).
    Dropped,
}

/// A moved state's pathway, packed bytes and version as known then
/// ([`PastStates::moved_bytes`]).
type MovedBytes<'s> = (&'s PathwayKey, &'s [u8], Option<u64>);

impl<'a> PastStates<'a> {
    pub(super) fn new(
        snapshot: &'a Snapshot,
        log: &'a dyn openptl_log::EventLog,
        runtime: &tokio::runtime::Handle,
        at: At<'a>,
        kept: Option<Kept>,
    ) -> Result<PastStates<'a>, AppError> {
        let mut read: Vec<crate::fold::PathwayRecords> = snapshot
            .parts
            .iter()
            .flat_map(|part| &part.read)
            .map(|(id, positions, _)| (id.clone(), positions.to_vec()))
            .filter(|(_, positions)| !positions.is_empty())
            .collect();
        read.sort_unstable_by_key(|(_, positions)| positions[0]);
        let source = match log.in_place() {
            Some(reader) => Source::InPlace(reader.map_err(AppError::from)?),
            None => {
                let evaluated =
                    fold_pathways(log, runtime, snapshot.position, &read, |id, history| {
                        at.evaluate(id, history?)
                    })?;
                let all: Vec<_> = evaluated.into_iter().flatten().collect();
                read.clear();
                Source::Read(all.into_iter())
            }
        };
        Ok(PastStates {
            snapshot,
            at,
            read,
            source,
            next_moved: (0, 0),
            next_read: 0,
            ready: Vec::new(),
            next_ready: 0,
            failed: None,
            stepping: std::time::Duration::ZERO,
            learning: None,
            folding: None,
            taken: Vec::new(),
            read_kept: HashMap::new(),
            kept,
            rows: true,
        })
    }

    /// From now on makes no PTL row for the states it moves: a view that
    /// counts states only (a report, the weekly return) never reads one,
    /// and a row is a few allocations per state on the PTL.
    pub(crate) fn without_rows(&mut self) {
        self.rows = false;
    }

    /// From now on counts every state's clocks for a model of the view's
    /// date ([`Self::clock_counts`]), on the core that moves or reads it,
    /// and passes on only the states `keep` wants.
    pub(crate) fn learn_clocks(&mut self, keep: fn(&Current) -> bool) {
        self.learning = Some(keep);
    }

    /// From now on passes no state on: the core that moves or reads one
    /// folds it into an accumulator of its own (made by `new`) and drops it
    /// there; [`Self::folded`] gives the accumulators, to merge. `fold`
    /// says whether it took something of the state: with `keep_read`, such
    /// a state read back is kept whole, so that [`Self::again`] can give
    /// it (a past PTL page folds its index and makes its page's rows
    /// again).
    pub(crate) fn fold_on_movers<A: Send + Sync + 'static>(
        &mut self,
        new: impl Fn() -> A + Send + Sync + 'static,
        fold: impl Fn(&mut A, &PathwayKey, &Current) -> bool + Send + Sync + 'static,
        keep_read: bool,
    ) {
        self.folding = Some(Folding {
            new: Box::new(move || Box::new(new())),
            fold: Box::new(move |acc, id, current| {
                acc.downcast_mut::<A>()
                    .is_some_and(|acc| fold(acc, id, current))
            }),
            keep_read,
        });
    }

    /// The accumulators folded into since [`Self::fold_on_movers`] (one
    /// per core that took a state).
    pub(crate) fn folded<A: 'static>(&mut self) -> Vec<A> {
        self.taken
            .iter_mut()
            .filter_map(|t| t.folded.take())
            .filter_map(|acc| acc.downcast::<A>().ok())
            .map(|acc| *acc)
            .collect()
    }

    /// The states of `ids` again, as the view saw them (when folding and
    /// keeping those read): the moved ones moved once more, the ones read
    /// back read and evaluated again (the same records, as of the same
    /// date and moment), or, from a log that cannot be read in place, as
    /// kept.
    pub(crate) fn again(
        &self,
        ids: &[PathwayKey],
    ) -> Result<HashMap<PathwayKey, Current>, AppError> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut wanted = std::collections::HashSet::new();
        for id in ids {
            match self.read_kept.get(id) {
                Some(current) => {
                    found.insert(id.clone(), current.clone());
                }
                None => {
                    wanted.insert(&**id);
                }
            }
        }
        for (p, part) in self.snapshot.parts.iter().enumerate() {
            if wanted.is_empty() {
                break;
            }
            let ids = part.moved.iter().map(|(id, ..)| id);
            for (i, id) in ids.chain(part.taken.iter().map(|(id, ..)| id)).enumerate() {
                if wanted.remove(&**id) {
                    let (id, current) = self.moved(self.at.packer, p, i)?;
                    found.insert(id, current);
                }
            }
        }
        if let (Source::InPlace(reader), false) = (&self.source, wanted.is_empty()) {
            let again: Vec<_> = self
                .read
                .iter()
                .filter(|(id, _)| wanted.contains(&**id))
                .cloned()
                .collect();
            let at = &self.at;
            let read = crate::fold::fold_in_place(reader.as_ref(), &again, |id, history| {
                at.evaluate(id, history?)
            })?;
            found.extend(read.into_iter().flatten());
        }
        Ok(found)
    }

    /// What a core does with a state it moved or read: counts its clocks
    /// when learning, folds it when folding. Whether to pass it on, or
    /// (when folding) whether the fold took something of it.
    fn take_state(&self, taken: &mut Taken, id: &PathwayKey, current: &Current) -> Take {
        if self.learning.is_some() {
            forecast::observations(&current.state).for_each(|o| taken.counts.add(&o));
        }
        if let Some(folding) = &self.folding {
            let acc = taken.folded.get_or_insert_with(|| (folding.new)());
            return match (folding.fold)(acc.as_mut(), id, current) {
                true => Take::Folded,
                false => Take::Dropped,
            };
        }
        match self.learning.is_none_or(|keep| keep(current)) {
            true => Take::PassOn,
            false => Take::Dropped,
        }
    }

    /// About how many states it passes on, to size what keeps them: every
    /// one, or when learning clocks for the PTL those the split found on
    /// it. (Sized for every state, a map of the PTL's states was spread
    /// over a gigabyte at 1.4M pathways, each insert faulting in a page.)
    pub(crate) fn expected_len(&self) -> usize {
        match self.learning {
            Some(_) => self.snapshot.on_ptl_most(),
            None => self.size_hint().1.unwrap_or(0),
        }
    }

    /// The clocks counted since [`Self::learn_clocks`], merged; with the
    /// kept clocks of the pathways the split passed over, less those of
    /// the pathways it did not ([`Counted::ClocksOffPtl`]).
    pub(crate) fn clock_counts(&mut self) -> ModelCounts {
        let mut all = ModelCounts::new();
        for taken in &mut self.taken {
            all.merge(std::mem::take(&mut taken.counts));
        }
        if self.kept.is_some() {
            let started = std::time::Instant::now();
            let take_away = |counts: &mut ModelCounts, fields: &ClockFields| {
                fields
                    .observations()
                    .for_each(|o| counts.add_signed(&o, -1))
            };
            for counts in self.kept_less_away(ModelCounts::new, take_away) {
                all.merge(counts);
            }
            tracing::debug!(
                ms = started.elapsed().as_millis() as u64,
                "kept clocks counted, those of the pathways counted otherwise taken away"
            );
        }
        all
    }

    /// What the view starts from of today's aggregates when its split
    /// passed over the pathways they count ([`Counted`]), then for each
    /// part of the split an accumulator its pathways counted otherwise were
    /// taken away from, to merge; nothing when it did not pass over any.
    pub(crate) fn kept_less_away<A: Send + 'static, T: TakenAway>(
        &mut self,
        new: impl Fn() -> A + Sync,
        take_away: impl Fn(&mut A, &T) + Sync,
    ) -> Vec<A> {
        let Some(kept) = self.kept.take() else {
            return Vec::new();
        };
        let kept = match kept.downcast::<A>() {
            Ok(kept) => *kept,
            Err(_) => {
                self.failed.get_or_insert(AppError::internal(
                    "a past view's kept sums are not of the type it counts",
                ));
                return Vec::new();
            }
        };
        let packer = self.at.packer;
        let away = par_batches(&self.snapshot.parts, |part| {
            Some(part.away(packer, &new, &take_away))
        });
        let mut out = vec![kept];
        for acc in away {
            match acc {
                Ok(acc) => out.push(acc),
                Err(e) => {
                    self.failed.get_or_insert(e);
                }
            }
        }
        out
    }

    /// The next step's states; `false` when there are none left (or a
    /// step failed).
    fn step(&mut self) -> Result<bool, AppError> {
        let parts = &self.snapshot.parts;
        let mut next = Vec::with_capacity(STEP);
        while next.len() < STEP {
            let (part, i) = self.next_moved;
            let Some(moved) = parts.get(part).map(Part::moved_len) else {
                break;
            };
            let to = (i + STEP - next.len()).min(moved);
            next.extend((i..to).map(|i| (part, i)));
            self.next_moved = if to < moved {
                (part, to)
            } else {
                (part + 1, 0)
            };
        }
        let mut ready = std::mem::take(&mut self.ready);
        let cores = crate::fold::cores().max(1);
        ready.resize_with(cores, Vec::new);
        ready.iter_mut().for_each(Vec::clear);
        self.next_ready = 0;
        let mut taken = std::mem::take(&mut self.taken);
        taken.resize_with(cores, Taken::default);
        if !next.is_empty() {
            let chunk = next.len().div_ceil(ready.len());
            let this = &*self;
            let moved = std::thread::scope(|scope| {
                let handles: Vec<_> = ready
                    .iter_mut()
                    .zip(taken.iter_mut())
                    .enumerate()
                    .map(|(t, (list, taken))| {
                        let items = next
                            .get(t * chunk..((t + 1) * chunk).min(next.len()))
                            .unwrap_or(&[]);
                        scope.spawn(move || {
                            let packer = this.at.packer.with_own_names();
                            for (part, i) in items.iter().rev() {
                                if this.of_another_site(&packer, *part, *i) {
                                    continue;
                                }
                                let (id, current) = this.moved(&packer, *part, *i)?;
                                if this.take_state(taken, &id, &current) == Take::PassOn {
                                    list.push((id, current));
                                }
                            }
                            Ok::<(), AppError>(())
                        })
                    })
                    .collect();
                handles.into_iter().try_for_each(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(AppError::internal("moving a state panicked")))
                })
            });
            self.ready = ready;
            self.taken = taken;
            moved?;
            return Ok(true);
        }
        let list = &mut ready[0];
        let more = match &mut self.source {
            Source::Read(all) => {
                list.extend(std::mem::take(all).rev());
                Ok(!list.is_empty())
            }
            Source::InPlace(reader) => {
                if self.next_read >= self.read.len() {
                    self.taken = taken;
                    return Ok(false);
                }
                let from = self.next_read;
                let to = (from + STEP).min(self.read.len());
                self.next_read = to;
                let at = &self.at;
                crate::fold::fold_in_place(reader.as_ref(), &self.read[from..to], |id, history| {
                    at.evaluate(id, history?)
                })
                .map(|evaluated| {
                    list.extend(evaluated.into_iter().flatten().rev());
                    true
                })
            }
        };
        // The histories read back are taken on every core, as the moved
        // ones are (taken on this one, they kept the other core waiting
        // some 20 ms a view at 1.4M pathways: decision 208); each list
        // holds its share last first, so that the lists hand the states out
        // in order. Those a fold took something of are kept whole when it
        // asks and they cannot be read again in place, on this core
        // (decision 204: kept whole, a past PTL page's states read back
        // were most of its time, in the map's growth).
        let keep_read = self.folding.as_ref().is_some_and(|f| f.keep_read)
            && matches!(self.source, Source::Read(_));
        let taking = self.learning.is_some() || self.folding.is_some();
        if taking && keep_read {
            let mut read_kept = std::mem::take(&mut self.read_kept);
            for (id, current) in std::mem::take(list) {
                match self.take_state(&mut taken[0], &id, &current) {
                    Take::PassOn => list.push((id, current)),
                    Take::Folded => {
                        read_kept.insert(id, current);
                    }
                    Take::Dropped => {}
                }
            }
            self.read_kept = read_kept;
        } else if taking {
            let mut read = std::mem::take(&mut ready[0]);
            let chunk = read.len().div_ceil(ready.len()).max(1);
            let this = &*self;
            let took = std::thread::scope(|scope| {
                let handles: Vec<_> = ready
                    .iter_mut()
                    .zip(taken.iter_mut())
                    .map(|(list, taken)| {
                        let mine = read.split_off(read.len().saturating_sub(chunk));
                        scope.spawn(move || {
                            for (id, current) in mine {
                                if this.take_state(taken, &id, &current) == Take::PassOn {
                                    list.push((id, current));
                                }
                            }
                        })
                    })
                    .collect();
                handles.into_iter().all(|h| h.join().is_ok())
            });
            if !took {
                self.ready = ready;
                self.taken = taken;
                return Err(AppError::internal("taking a state read back panicked"));
            }
        }
        self.ready = ready;
        self.taken = taken;
        more
    }

    /// The `i`th moved state of a part: its pathway, packed bytes (its
    /// own, an earlier state's or a replaced one's) and version as known
    /// then, when records came later.
    fn moved_bytes(&self, part: usize, i: usize) -> Result<MovedBytes<'_>, AppError> {
        let part = &self.snapshot.parts[part];
        Ok(match part.moved.get(i) {
            Some((id, end, known)) => {
                let start = if i == 0 { 0 } else { part.moved[i - 1].1 };
                (id, &part.bytes[start..*end], *known)
            }
            None => {
                let (id, found, known) = &part.taken[i - part.moved.len()];
                let (_, _, bytes) = self
                    .snapshot
                    .replaced
                    .state(*found)
                    .ok_or_else(|| AppError::internal("a kept state taken is not found"))?;
                (id, bytes, Some(*known))
            }
        })
    }

    /// Whether the `i`th moved state of a part is of another tumour site
    /// than the one the view reads only ([`super::Split::of_site`]): passed
    /// over unread. (Bytes that do not say are unpacked, and so fail
    /// there.)
    fn of_another_site(&self, packer: &Packer, part: usize, i: usize) -> bool {
        self.snapshot.how.site().is_some_and(|site| {
            self.moved_bytes(part, i)
                .ok()
                .and_then(|(_, bytes, _)| packer.tumour_site_of(bytes).ok())
                .is_some_and(|found| found != site)
        })
    }

    /// The `i`th moved state of a part, unpacked and moved to the view's
    /// date.
    fn moved(
        &self,
        packer: &Packer,
        part: usize,
        i: usize,
    ) -> Result<(PathwayKey, Current), AppError> {
        let (id, bytes, known) = self.moved_bytes(part, i)?;
        let (state, version) = packer
            .unpack_bytes(bytes)
            .map_err(crate::projection::unpack_failed)?;
        // A kept earlier state was evaluated on another date than today's.
        let state = state.into_moved(self.at.as_of);
        let row = match self.rows {
            true => PtlRow::of(&state, self.at.config).map(Box::new),
            false => None,
        };
        Ok((
            id.clone(),
            Current {
                state,
                row,
                version: known.unwrap_or(version),
            },
        ))
    }
}

impl Iterator for PastStates<'_> {
    type Item = (PathwayKey, Current);

    /// At most the states moved and the pathways read.
    fn size_hint(&self) -> (usize, Option<usize>) {
        let (moved, read) = self.snapshot.sizes();
        (0, Some(moved + read))
    }

    fn next(&mut self) -> Option<(PathwayKey, Current)> {
        loop {
            while let Some(list) = self.ready.get_mut(self.next_ready) {
                match list.pop() {
                    Some(next) => return Some(next),
                    None => self.next_ready += 1,
                }
            }
            if self.failed.is_some() {
                return None;
            }
            let started = std::time::Instant::now();
            let stepped = self.step();
            self.stepping += started.elapsed();
            match stepped {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.failed = Some(e);
                    return None;
                }
            }
        }
    }
}

//! Views of a past `as_of` or `known_at`, equal to every pathway evaluated
//! afresh from its history as of that date and as known at that moment
//! (the same pure functions of the same events, so a past view equals what
//! the service showed then), without reading most histories.
//!
//! Which pathways can differ from the projection's state at all: only
//! those with an event dated after the view's date (or naming a later
//! date: a declined offer's, an ECAD), and, for a `known_at`, those with a
//! record after the last position recorded by then that may affect the
//! view's date (one dated on or before it, or an amendment: the dates of
//! the last days' records are kept, [`crate::projection::RecordDays`]; a
//! pathway whose later records are all dated after it is as known now,
//! but for its version). Every other pathway's
//! state is the projection's own moved to the date
//! ([`openptl_rules::PathwayState::moved_to`], exact once its events are
//! settled: [`openptl_rules::pathway::Settled`]), and so is one of the
//! earlier states kept with it when the date falls in its range
//! ([`openptl_rules::pathway::Earlier`]); one whose first event is after
//! the date did not exist yet. Only the rest are read back from the log
//! and evaluated, on every core. A view that shows only some pathways (the PTL, a period's
//! report) moves only those it can show.
//!
//! A view whose sums today's aggregates keep starts from them instead
//! (decision 158, [`Counted`]): what a pathway that moves to the view's
//! date as it is adds to the sums as of that date is what it adds today
//! (a stop, a treatment, a test is dated; a clock off the PTL runs no
//! more; a decided milestone stays decided), so the split passes over
//! those, and the view takes today's contributions of the other pathways
//! counted in the sums away before counting them as of its date.
//!
//! The work runs off the async workers and outside the projection's lock
//! (under it, only the packed states to move are copied), one such view at
//! a time with a bounded queue behind it.

use std::any::Any;
use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};
use openptl_rules::pathway::Settled;
use openptl_rules::{ClockKind, PathwayState, Period, TumourSite};

use crate::fold::par_batches;
use crate::packed::{ClockFields, EarlierState, Packed, Packer};
use crate::positions::Positions;
use crate::projection::PathwayKey;
use crate::projection::{CwtMonths, ProjectionData};
use crate::AppError;

mod running;
mod states;

pub(crate) use states::PastStates;

/// The pathways a past view may show, of those whose states move: a view
/// passes over the others (their moved states would count nothing in it).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shown {
    /// Every pathway.
    All,
    /// Those holding a date in the window (first and last day): a report
    /// over a period inside it counts no other
    /// ([`openptl_rules::PathwayState::date_span`]).
    Holding(NaiveDate, NaiveDate),
    /// Those on the PTL: a moved state runs a clock on the view's date
    /// exactly when it does today.
    OnPtl,
    /// Those on the PTL or holding a date in the window (the weekly return:
    /// the waiting list at the week's end and what happened in the week).
    OnPtlOrHolding(NaiveDate, NaiveDate),
}

impl Shown {
    /// Those the weekly return of the week ending `week_ending` can count:
    /// on the PTL at the week's end, or holding a date in the week (an FDS
    /// clock breached in it passed its target the day before).
    pub(crate) fn week(week_ending: NaiveDate) -> Shown {
        Shown::OnPtlOrHolding(week_ending - chrono::Days::new(7), week_ending)
    }

    /// Those holding a date in `period`.
    pub(crate) fn period(period: openptl_rules::Period) -> Shown {
        Shown::Holding(period.first_day(), period.last_day())
    }

    /// The window today's states are read through (today's view of
    /// [`App::with_states`]).
    pub(crate) fn window(self) -> Option<(NaiveDate, NaiveDate)> {
        match self {
            Shown::Holding(first, last) => Some((first, last)),
            Shown::All | Shown::OnPtl | Shown::OnPtlOrHolding(..) => None,
        }
    }

    fn shows(self, span: (NaiveDate, NaiveDate), on_ptl: bool) -> bool {
        let holds = |first: NaiveDate, last: NaiveDate| {
            let (earliest, latest) = span;
            latest >= first && earliest <= last
        };
        match self {
            Shown::All => true,
            Shown::Holding(first, last) => holds(first, last),
            Shown::OnPtl => on_ptl,
            Shown::OnPtlOrHolding(first, last) => holds(first, last) || on_ptl,
        }
    }
}

/// What a past view takes of the projection under its lock.
pub(crate) struct Snapshot {
    /// As split, a part per chunk of pathways (not copied into one).
    parts: Vec<Part>,
    /// The position the pathways were projected to.
    position: u64,
    /// What the view starts from of today's aggregates, when the split
    /// passed over the pathways those count already ([`Counted`]).
    kept: Option<Kept>,
    /// How it was split.
    how: Split,
    /// The states kept when replaced that it takes, where they lie
    /// ([`Snapshot::take_replaced`]).
    replaced: crate::projection::Found,
}

impl Drop for Snapshot {
    /// The replaced states' files are unmapped on a thread of their own:
    /// a week of them is some 150 MB of mapped pages, whose unmapping the
    /// view's answer need not wait for.
    fn drop(&mut self) {
        if !self.replaced.is_empty() {
            crate::offload::drop_later(std::mem::take(&mut self.replaced));
        }
    }
}

/// How a past view that starts from today's aggregates takes a pathway's
/// contributions as of today away again ([`Counted`]).
pub(crate) type TakeAway<A> = Box<dyn Fn(&mut A, &PathwayState) + Send + Sync>;

/// Sums kept with today's aggregates that a past view starts from: of the
/// type the view counts into ([`crate::aggregates::Aggregates::kept`]).
pub(crate) type Kept = Box<dyn Any + Send + Sync>;

/// What of today's aggregates a past view starts from (decision 158): the
/// sums of today's contributions of some pathways, which are the same as
/// of the view's date for every such pathway that moves to it as it is
/// (every event dated on or before it; as known at a moment, nothing
/// recorded since that changes it). The split passes over those, and
/// lists the others counted in the sums, whose contributions as of today
/// the view takes away before counting them as of its date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    /// Nothing: every pathway shown moves or is read.
    Nothing,
    /// The clocks of the pathways off the PTL, counted for a risk model
    /// (a running clock's days move with the date; no other does).
    ClocksOffPtl,
    /// The cells of one standard's month: a stop, an exclusion or a
    /// treatment is dated, so every pathway's contributions are the same
    /// as of any date its events are settled by.
    Standards(ClockKind, Period),
    /// The FIT cells of one referral month (tests and results are dated).
    Fit(Period),
    /// The standards cells of every standard and month and the FIT cells
    /// of every referral month ([`crate::aggregates::dated::DatedCells`]):
    /// what the projection keeps as of a past date (decision 202).
    Dated,
    /// The milestone cells of the pathways none of whose milestones is
    /// pending or overdue only (one of those turns overdue on its due
    /// date, whatever else happens).
    Milestones,
}

impl Snapshot {
    /// The last log position of the states it holds.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// How many states move and how many histories are read.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        self.parts.iter().fold((0, 0), |(moved, read), part| {
            (moved + part.moved_len(), read + part.read.len())
        })
    }

    /// Moves, instead of reading back, the pathways with records after the
    /// view's moment whose state before the first of those records was
    /// kept when it was replaced (decision 162): that is their state as
    /// known then, evaluated on the day it was replaced, and it moves to
    /// the view's date as today's do (or its earlier state kept does, or
    /// it is read back after all). So does a pathway known whole whose
    /// state before the first of its records after the last that may
    /// affect the view's date was kept: as of that date, it is the
    /// pathway's state (decision 204). Outside the projection's lock.
    fn take_replaced(&mut self, store: &crate::projection::ReplacedStates) {
        let how = self.how;
        if how.read_all {
            return;
        }
        let wanted: Vec<u64> = self
            .parts
            .iter()
            .flat_map(|part| part.read.iter().filter_map(|(_, _, later)| *later))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let found = store.find(&wanted, self.position);
        let found_after = started.elapsed();
        // Each core takes the next part left: the later parts (the newer
        // pathways) hold most of the states kept, and split in halves, one
        // core decided alone for a tenth of a second at 1.4M pathways
        // (decision 208).
        let parts: Vec<std::sync::Mutex<&mut Part>> =
            self.parts.iter_mut().map(std::sync::Mutex::new).collect();
        let used: usize = par_batches(&parts, |part| {
            let mut part = part
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Some(part.take_replaced(&found, &how))
        })
        .into_iter()
        .sum();
        store.count_used(used);
        self.replaced = found;
        tracing::debug!(
            wanted = wanted.len(),
            found = self.replaced.len(),
            used,
            find_ms = found_after.as_millis() as u64,
            ms = started.elapsed().as_millis() as u64,
            "past view took states kept when replaced"
        );
    }

    /// How many of its states are on the PTL, as far as the split knows:
    /// those it moves that were on it then, and every one read.
    fn on_ptl_most(&self) -> usize {
        self.parts
            .iter()
            .map(|part| part.on_ptl + part.read.len())
            .sum()
    }
}

/// What becomes of a kept replaced state in a past view.
enum Moves<'a> {
    /// It moves: these bytes (its own or an earlier state's), on the PTL
    /// or not.
    Yes(std::borrow::Cow<'a, [u8]>, bool),
    /// It did not exist yet as of the view's date, or the view does not
    /// show it.
    NotShown,
    /// It cannot move to the view's date: the history is read back.
    No,
}

/// Whether the state packed in `bytes`, evaluated on `on`, with CWT
/// records in `months` when known, moves to the date of a view split
/// `how`: as the split decides for today's.
fn replaced_moves<'a>(
    bytes: &'a [u8],
    on: NaiveDate,
    months: Option<CwtMonths>,
    how: &Split,
) -> Moves<'a> {
    let Some(head) = crate::packed::head_of(bytes) else {
        return Moves::No;
    };
    // Without records in the month when it was replaced, it has none as
    // of any date it moves to as it is (as the split passes over today's).
    let (on_ptl, settled, span) = head;
    let as_it_is = settled.is_some_and(|settled| settled.covers(on, how.as_of));
    let in_month = how.recorded.and_then(|month| months?.has(month));
    if as_it_is && in_month == Some(false) {
        return Moves::NotShown;
    }
    moves_to(
        bytes,
        (on_ptl, settled.map(|s| s.from), span),
        Some(on),
        how,
    )
}

/// Whether a state packed in `bytes`, whose head says whether it is on
/// the PTL, the date its events are settled by ([`Settled::from`]) and its
/// date span, evaluated on `on`, moves to the date of a view split `how`
/// and shows in it: itself when its events are settled by both dates
/// ([`Settled::covers`]), else an earlier state kept with it whose range
/// holds the date (of a view of one month's CWT records, only one with
/// records in it: decision 171); or it did not exist yet as of the date;
/// or it is read back. The one rule for today's states and the replaced
/// ones (a view of one month's CWT records has passed over those of
/// either without records in it that move as they are: decisions 165 and
/// 173).
fn moves_to<'a>(
    bytes: &'a [u8],
    (on_ptl, settled_from, span): (bool, Option<NaiveDate>, (NaiveDate, NaiveDate)),
    on: Option<NaiveDate>,
    how: &Split,
) -> Moves<'a> {
    let (as_of, shown) = (how.as_of, how.shown);
    let Some(from) = settled_from else {
        return Moves::No;
    };
    // Settled by the date, it existed then (its first event is on or
    // before the date its events are settled by): its bytes are read only
    // when it is not (a split passes over most states without reading
    // them, decision 209).
    if on.is_some_and(|on| Settled::from_covers(from, on, as_of)) {
        return match shown.shows(span, on_ptl) {
            true => Moves::Yes(bytes.into(), on_ptl),
            false => Moves::NotShown,
        };
    }
    let Some((_, Some(settled), _)) = crate::packed::head_of(bytes) else {
        return Moves::No;
    };
    if as_of < settled.first {
        return Moves::NotShown;
    }
    match crate::packed::earlier_of(bytes, as_of, how.recorded) {
        Some(EarlierState::Moves(on_ptl, earlier)) => {
            match shown.shows(crate::packed::span_of(&earlier), on_ptl) {
                true => Moves::Yes(earlier.into(), on_ptl),
                false => Moves::NotShown,
            }
        }
        Some(EarlierState::NoRecordsIn) => Moves::NotShown,
        None => Moves::No,
    }
}

/// A pathway's state as of a past date, known now, as a past view finds
/// it ([`moved_as_of`]).
// Taken apart where it is made, never kept: boxing the state would cost an
// allocation per pathway moved.
#[allow(clippy::large_enum_variant)]
pub(crate) enum AsOf {
    /// Its state packed (or an earlier one kept with it) moved to the date.
    Moved(PathwayState),
    /// It did not exist yet, or the view does not show it.
    NotShown,
    /// It cannot be moved: its history is to be read back.
    Read,
}

/// The state as of `as_of`, known now, of the pathway whose state packed
/// in `packed` (`own`, unpacked) was evaluated on `on`, for a view showing
/// `shown`: the one rule of the split ([`moves_to`]), for one pathway.
pub(crate) fn moved_as_of(
    packed: &crate::packed::Packed,
    on: NaiveDate,
    (as_of, shown): (NaiveDate, Shown),
    packer: &Packer,
    own: &PathwayState,
) -> Result<AsOf, AppError> {
    let how = Split {
        as_of,
        known_at: None,
        known_to: None,
        shown,
        read_all: false,
        counted: Counted::Nothing,
        recorded: None,
        site: None,
    };
    let (on_ptl, settled_from) = packed.on_ptl_settled_from();
    let head = (on_ptl, settled_from, packed.span());
    Ok(match moves_to(packed.as_bytes(), head, Some(on), &how) {
        // Its own state, already unpacked ([`moves_to`] borrows only the
        // state's own bytes; an earlier state's are copied out).
        Moves::Yes(std::borrow::Cow::Borrowed(_), _) => AsOf::Moved(own.moved_to(as_of)),
        // An earlier state kept with it.
        Moves::Yes(std::borrow::Cow::Owned(bytes), _) => {
            let (state, _) = packer
                .unpack_bytes(&bytes)
                .map_err(crate::projection::unpack_failed)?;
            AsOf::Moved(state.into_moved(as_of))
        }
        Moves::NotShown => AsOf::NotShown,
        Moves::No => AsOf::Read,
    })
}

/// Pathways split at a time (a part per step of every core); a few in the
/// tests, so that their views span parts and steps.
const SPLIT: usize = if cfg!(test) { 2 } else { 32_768 };

/// Copies of the packed states a past view moves, and the positions of the
/// pathways it reads back (of some pathways, or of all of them).
#[derive(Default)]
struct Part {
    /// The packed bytes of the states to move, one after another (one
    /// allocation, not one per state).
    bytes: Vec<u8>,
    /// Each state to move: its pathway, where its bytes end, and its
    /// version as known at the view's moment when records of it came
    /// later (all dated after the view's date).
    moved: Vec<(PathwayKey, usize, Option<u64>)>,
    /// Each state to move as it was kept when replaced: its pathway,
    /// which of the snapshot's [`Found`](crate::projection::Found) it is
    /// (its bytes lie there), and its version as known then. Moved after
    /// those of `moved`.
    taken: Vec<(PathwayKey, u32, u64)>,
    /// Pathways to evaluate from their histories, and, for one with
    /// records after the view's moment, the first of those, or for one
    /// known whole, the first of its records after the last that may
    /// affect the view's date (its state before it may be kept:
    /// [`Snapshot::take_replaced`]).
    read: Vec<(PathwayKey, Positions, Option<u64>)>,
    /// How many of the states to move were on the PTL then.
    on_ptl: usize,
    /// The packed states, as of today, of the pathways the kept sums count
    /// ([`Counted`]) that the view counts as of its date itself (they are
    /// taken away from the kept ones), one after another, and where each
    /// ends.
    away_bytes: Vec<u8>,
    away: Vec<usize>,
}

impl Part {
    /// How many states it moves.
    fn moved_len(&self) -> usize {
        self.moved.len() + self.taken.len()
    }

    /// Moves instead of reading back each of its pathways whose state
    /// before its first record after the view's moment is among `found`
    /// and moves to the date of the view split `how`
    /// ([`Snapshot::take_replaced`]); how many of its pathways it so took.
    fn take_replaced(&mut self, found: &crate::projection::Found, how: &Split) -> usize {
        let mut used = 0;
        // Decided first, so that the bytes of the states to move grow once
        // (they hold the part's other moved states already).
        let decided: Vec<_> = std::mem::take(&mut self.read)
            .into_iter()
            .map(|(id, positions, later)| {
                let kept = later.and_then(|p| found.index_of(p));
                let moves = kept.and_then(|i| {
                    let (on, months, bytes) = found.state(i)?;
                    Some((i, replaced_moves(bytes, on, months, how)))
                });
                ((id, positions, later), moves)
            })
            .collect();
        // (A state kept as it is is moved from where it lies; only an
        // earlier state kept with it is copied.)
        let more = decided
            .iter()
            .map(|(_, moves)| match moves {
                Some((_, Moves::Yes(Cow::Owned(bytes), _))) => bytes.len(),
                _ => 0,
            })
            .sum();
        self.bytes.reserve_exact(more);
        for ((id, positions, later), moves) in decided {
            let known = positions.len() as u64;
            match moves {
                Some((i, Moves::Yes(bytes, on_ptl))) => {
                    match bytes {
                        Cow::Borrowed(_) => self.taken.push((id, i, known)),
                        Cow::Owned(bytes) => {
                            self.bytes.extend_from_slice(&bytes);
                            self.moved.push((id, self.bytes.len(), Some(known)));
                        }
                    }
                    self.on_ptl += usize::from(on_ptl);
                    used += 1;
                }
                Some((_, Moves::NotShown)) => used += 1,
                Some((_, Moves::No)) | None => self.read.push((id, positions, later)),
            }
        }
        used
    }

    /// Its pathways to take away from the kept sums, as of today, taken
    /// away from a fresh accumulator.
    fn away<A, T: TakenAway>(
        &self,
        packer: &Packer,
        new: &(impl Fn() -> A + Sync),
        take_away: &(impl Fn(&mut A, &T) + Sync),
    ) -> Result<A, AppError> {
        let mut acc = new();
        let packer = packer.with_own_names();
        let mut start = 0;
        for end in &self.away {
            let state = T::unpack(&packer, &self.away_bytes[start..*end])
                .map_err(crate::projection::unpack_failed)?;
            take_away(&mut acc, &state);
            start = *end;
        }
        Ok(acc)
    }
}

/// What a past view unpacks of a pathway's state today to take it away
/// from the sums it kept ([`PastStates::kept_less_away`]): the whole state,
/// or only what its clocks are observed with ([`ClockFields`]).
pub(crate) trait TakenAway: Sized {
    fn unpack(packer: &Packer, bytes: &[u8]) -> Result<Self, crate::packed::Unreadable>;
}

impl TakenAway for PathwayState {
    fn unpack(packer: &Packer, bytes: &[u8]) -> Result<Self, crate::packed::Unreadable> {
        packer.unpack_bytes(bytes).map(|(state, _)| state)
    }
}

impl TakenAway for ClockFields {
    fn unpack(packer: &Packer, bytes: &[u8]) -> Result<Self, crate::packed::Unreadable> {
        packer.unpack_clock_fields(bytes)
    }
}

/// How a past view splits the projection's pathways: its date and moment
/// (`None`: known now), the last position recorded by that moment, the
/// pathways it shows, and whether every one is read back instead
/// ([`App::set_past_views_read_all`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split {
    as_of: NaiveDate,
    known_at: Option<DateTime<Utc>>,
    known_to: Option<u64>,
    shown: Shown,
    read_all: bool,
    /// What of today's aggregates the view starts from.
    counted: Counted,
    /// The month whose CWT records the view shows, and only those: a
    /// state that moves as it is has records in it then only if it has
    /// them today, which today's aggregates index (decision 165), and an
    /// earlier state kept only if its own record months say so (decision
    /// 171).
    recorded: Option<Period>,
    /// The tumour site whose states the view reads, and only those: a
    /// state that moves as it is, of another site today, is passed over by
    /// the split, its bytes never copied (the site is kept beside them,
    /// decision 213); an earlier or replaced state of another site, where
    /// it is moved, before it is unpacked (decision 212). (Histories read
    /// back are evaluated whole; the view's own filter leaves out those of
    /// other sites.)
    site: Option<TumourSite>,
}

/// A state a split moves: its pathway, packed bytes and version as known
/// then (when records came later).
type ToMove<'a> = (&'a PathwayKey, std::borrow::Cow<'a, [u8]>, Option<u64>);

/// How many pathways ahead the split reads a state's first bytes.
const AHEAD: usize = 8;

/// Splits some pathways as [`Split::snapshot`] says.
// Inlined into each core's closure: outlined (as small unrelated changes
// elsewhere made it), the split under the lock ran 7–11 % slower at 1.4M
// (decision 173).
#[inline]
fn split<'a>(
    (first, entries): (usize, &'a [(PathwayKey, crate::projection::PathwayEntry)]),
    data: &ProjectionData,
    how: Split,
) -> Part {
    let evaluated_on = data.today;
    let aggregates = data.aggregates.as_ref();
    let Split {
        as_of,
        known_to,
        shown,
        counted,
        recorded,
        site,
        ..
    } = how;
    // Whether a record affects only dates after the view's.
    let after = data.record_days.after_date(as_of);
    // The pathways with records in the month today, when the view shows
    // only those and the month is indexed.
    let indexed = recorded.and_then(|month| aggregates?.cwt_indexed(month, evaluated_on?));
    // What to move, found first and copied after into one buffer of its
    // exact size: grown as it went, the buffer was copied again at every
    // doubling, into fresh pages each time.
    let mut kept: Vec<ToMove<'a>> = Vec::new();
    let mut away: Vec<&'a [u8]> = Vec::new();
    let mut part = Part::default();
    // Whether the kept sums count a pathway's state today (given its
    // index, place on the PTL and settled date), when the view shows it.
    let counter = aggregates.map(|a| a.counter(counted, as_of));
    let counts_today = |index: usize, p: &Packed, (on, from): (bool, Option<NaiveDate>)| {
        counter.is_some_and(|counts| counts(index, (on, from)) && shown.shows(p.span(), on))
    };
    // Whether a state moves to the view's date as it is (its events
    // settled by it, so it existed then).
    let settled_by = |from: Option<NaiveDate>| {
        from.is_some_and(|from| {
            evaluated_on.is_some_and(|on| Settled::from_covers(from, on, as_of))
        })
    };
    // Whether the view shows only the pathways with records in its month
    // today, and this one has none.
    let unrecorded =
        |index: usize| indexed.is_some_and(|set| !set.is_some_and(|set| set.contains(index)));
    // Whether the view reads only another tumour site's states (moving a
    // state never changes its site, decision 212; the site is kept beside
    // the bytes, decision 213).
    let other_site = |p: &Packed| site.is_some_and(|site| p.tumour_site() != site);
    // Whether, moving to the view's date as it is, a pathway is passed
    // over without its state read (as the loop below decides from what
    // is kept beside the bytes, [`Packed::on_ptl_settled_from`]): the kept
    // sums count it, or the view shows no record of it in its month, or
    // does not show it, or reads only another site's states.
    let passed_unread = |index: usize, p: &Packed, (on, from): (bool, Option<NaiveDate>)| {
        settled_by(from)
            && (counts_today(index, p, (on, from))
                || unrecorded(index)
                || !shown.shows(p.span(), on)
                || other_site(p))
    };
    // A pathway's state and positions lie apart from its entry, each
    // where it was allocated: their first bytes are read a few pathways
    // ahead, so that the processor waits for several of those reads at
    // once rather than for each in turn. Only what it will read is read
    // ahead: the state of one it does not pass over unread, and the
    // positions of one that does not move as it is (which lead to its
    // replaced state or its history) or, of a view known at a moment, of
    // every one.
    let ahead = |i: usize| {
        entries.get(i + AHEAD).map_or(0, |(_, entry)| {
            let (state, settled) = entry.state.as_ref().map_or((&[][..], false), |p| {
                let glance = p.on_ptl_settled_from();
                match passed_unread(first + i + AHEAD, p, glance) {
                    true => (&[][..], true),
                    false => (p.as_bytes(), settled_by(glance.1)),
                }
            });
            let positions = match known_to.is_some() || !settled {
                true => entry.positions.as_bytes(),
                false => &[],
            };
            state.first().copied().unwrap_or(0) ^ positions.first().copied().unwrap_or(0)
        })
    };
    for (i, (index, (id, entry))) in (first..).zip(entries).enumerate() {
        std::hint::black_box(ahead(i));
        // Whether it is on the PTL and how far it is settled, kept beside
        // its bytes (which are read only when it is not passed over).
        let head = entry.state.as_ref().map(|p| (p, p.on_ptl_settled_from()));
        // Today's state, when the kept sums count it: passed over when it
        // moves to the view's date as it is, else taken away from them
        // (when it counts in what the view shows at all).
        let counted_today = head
            .filter(|(p, glance)| counts_today(index, p, *glance))
            .map(|(p, _)| p);
        let counted_bytes = counted_today.map(|p| p.as_bytes());
        let mut take_away = || away.extend(counted_bytes);
        // The pathway's version as known then, when records of it came
        // later that change nothing as of the view's date. (Its positions
        // are read only for a moment: a view known now passes over them.)
        let mut version = None;
        // The positions of its records known then, when some came later:
        // a history read back stops at them (the later ones are never
        // touched).
        let mut known_positions: Option<Vec<u64>> = None;
        // The first of its records after the moment, when some came later.
        let mut first_later = None;
        let to_read = |known: Option<Vec<u64>>| {
            known.map_or_else(|| entry.positions.clone(), |p| Positions::from_slice(&p))
        };
        let later = |to: &u64| entry.positions.last().is_some_and(|last| last > *to);
        if let Some(to) = known_to.filter(later) {
            let mut positions = entry.positions.to_vec();
            let known = positions.partition_point(|p| *p <= to);
            if known == 0 {
                // Nothing of it known then: it did not exist yet.
                take_away();
                continue;
            }
            let changes_the_date = !positions[known..].iter().all(|p| after(*p));
            first_later = positions.get(known).copied();
            positions.truncate(known);
            if changes_the_date {
                part.read
                    .push((id.clone(), to_read(Some(positions)), first_later));
                take_away();
                continue;
            }
            known_positions = Some(positions);
            version = Some(known as u64);
        }
        let mut keep = |bytes: std::borrow::Cow<'a, [u8]>, on_ptl: bool| {
            kept.push((id, bytes, version));
            part.on_ptl += usize::from(on_ptl);
        };
        // Whether its state moves to the date as it is (its events settled
        // by it, so it existed then).
        let as_it_is = head.is_some_and(|(_, (_, from))| settled_by(from));
        // What it adds as of the date is what it adds today, counted.
        if counted_bytes.is_some() && as_it_is {
            continue;
        }
        // (Nothing when the kept sums do not count it.)
        take_away();
        // Without records in the month today, it has none then; of another
        // site today, it was of that site then (the site its earlier and
        // replaced states say is read where they are moved, decision 212).
        if as_it_is && (unrecorded(index) || head.is_some_and(|(p, _)| other_site(p))) {
            continue;
        }
        let moves = head.map(|(packed, (on_ptl, settled_from))| {
            let head = (on_ptl, settled_from, packed.span());
            moves_to(packed.as_bytes(), head, evaluated_on, &how)
        });
        match moves {
            Some(Moves::Yes(bytes, on_ptl)) => keep(bytes, on_ptl),
            Some(Moves::NotShown) => {}
            Some(Moves::No) | None => {
                // Known whole, its state before the first of its records
                // after the last that may affect the date (decision 204):
                // as of the date, the records from there on change nothing.
                let first_later = first_later.or_else(|| {
                    entry
                        .positions
                        .descending()
                        .take_while(|p| after(*p))
                        .last()
                });
                part.read
                    .push(((*id).clone(), to_read(known_positions), first_later))
            }
        }
    }
    part.away_bytes = away.concat();
    part.away = away
        .iter()
        .scan(0, |end, bytes| {
            *end += bytes.len();
            Some(*end)
        })
        .collect();
    part.bytes = Vec::with_capacity(kept.iter().map(|(_, bytes, _)| bytes.len()).sum());
    part.moved = Vec::with_capacity(kept.len());
    for (id, bytes, version) in kept {
        part.bytes.extend_from_slice(&bytes);
        part.moved.push((id.clone(), part.bytes.len(), version));
    }
    part
}

impl Split {
    /// The view's date.
    pub(crate) fn as_of(&self) -> NaiveDate {
        self.as_of
    }

    /// The view's moment (`None`: known now).
    pub(crate) fn known_at(&self) -> Option<DateTime<Utc>> {
        self.known_at
    }

    /// The pathways it shows.
    pub(crate) fn shown(&self) -> Shown {
        self.shown
    }

    /// The same split of the pathways `shown`.
    pub(crate) fn showing(self, shown: Shown) -> Split {
        Split { shown, ..self }
    }

    /// The same split for a view that starts from what `counted` names of
    /// today's aggregates ([`Counted`]; decision 158). Without kept
    /// aggregates, it moves or reads every pathway shown, as before.
    pub(crate) fn counting(self, counted: Counted) -> Split {
        Split { counted, ..self }
    }

    /// The same split for a view of the CWT records of `month` only
    /// (decision 165): of the states that move as they are, it moves those
    /// today's aggregates index as having records in the month (without
    /// the index, every one shown, as before), and of the earlier states
    /// kept, those whose first and last record month hold it (decision
    /// 171).
    pub(crate) fn recording(self, month: Period) -> Split {
        Split {
            recorded: Some(month),
            ..self
        }
    }

    /// The same split for a view whose lines all come from states of
    /// tumour site `site` (a milestone list, decision 212; the clocks
    /// behind a standards figure of one site, decision 213): the states of
    /// other sites it moves are passed over before they are unpacked.
    pub(crate) fn of_site(self, site: TumourSite) -> Split {
        Split {
            site: Some(site),
            ..self
        }
    }

    /// The tumour site the view reads only, if any ([`Split::of_site`]).
    pub(crate) fn site(&self) -> Option<TumourSite> {
        self.site
    }

    /// Whether this view's states are still those it saw at `position`:
    /// none of the records since is known by its moment, or each affects
    /// only dates after its date (decision 147's rule).
    pub(crate) fn unchanged_since(&self, position: u64, data: &ProjectionData) -> bool {
        self.known_to.is_some_and(|to| to <= position)
            || data
                .record_days
                .all_after(position + 1, data.position, self.as_of)
    }

    /// Splits the projected pathways: each pathway's state moves, is left
    /// out (it did not exist yet, or the view cannot show it), or is read
    /// back. Runs under the projection's read lock, on every core.
    pub(crate) fn snapshot(self, data: &ProjectionData, published: u64) -> Snapshot {
        // Records the runner has applied but not published yet (between
        // `apply` and the end of `refresh`) are not shown: a view known
        // now is then split as known at the published position (the
        // states of the pathways they touched are as of it, or those
        // records change nothing as of the view's date).
        let position = published.min(data.position);
        let cap = (position < data.position).then_some(position);
        let known_to = match self.known_to {
            Some(to) => Some(to.min(position)),
            None => cap,
        };
        let this = Split { known_to, ..self };
        if this.read_all {
            let read = data
                .pathways
                .iter()
                .map(|(id, entry)| {
                    let positions = match cap {
                        Some(to) if entry.positions.last().is_some_and(|l| l > to) => {
                            let mut p = entry.positions.to_vec();
                            p.retain(|p| *p <= to);
                            Positions::from_slice(&p)
                        }
                        _ => entry.positions.clone(),
                    };
                    (id.clone(), positions, None)
                })
                .collect();
            let part = Part {
                read,
                ..Part::default()
            };
            return Snapshot {
                parts: vec![part],
                position,
                kept: None,
                how: this,
                replaced: Default::default(),
            };
        }
        let started = std::time::Instant::now();
        let kept = data
            .aggregates
            .as_ref()
            .and_then(|a| a.kept(this.counted, this.as_of));
        let how = Split {
            counted: match kept {
                Some(_) => this.counted,
                None => Counted::Nothing,
            },
            ..this
        };
        let entries = data.pathways.as_slice();
        let chunks: Vec<_> = (0..).step_by(SPLIT).zip(entries.chunks(SPLIT)).collect();
        let parts = par_batches(&chunks, |chunk| Some(split(*chunk, data, how)));
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "past view split under the projection's lock"
        );
        Snapshot {
            parts,
            position,
            kept,
            how,
            replaced: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests;

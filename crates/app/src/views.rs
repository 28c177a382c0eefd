//! The views of SPEC 4.4 over the projection, and what every view shares:
//! the moment it shows and the trusts it covers, the states it reads
//! (today's, or a past view's), today's aggregates; performance against
//! the standards, BPTP compliance and the weekly PTL return. The single
//! PTL's page is [`crate::ptl_page`], the monthly CWT submission
//! [`crate::cwt_lines`].
//!
//! Views for today, as known now, read the states the projection keeps
//! (unpacking those they need) or today's aggregate cells. Any other
//! `as_of` or `known_at` is a past view ([`crate::past`]): the states that
//! can be are moved to the date, the rest evaluated afresh from their
//! histories, the same function of the same events, so a past view equals
//! what the service showed then.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use openptl_rules::report::{CanptlReturn, MilestonesReport, StandardsReport};
use openptl_rules::tally::StandardsCount;
use openptl_rules::{ClockKind, PathwayState, Period, TumourSite};

use crate::access::{Principal, TrustScope};
use crate::aggregates::dated::DatedCells;
use crate::aggregates::last_week::last_sunday;
use crate::aggregates::milestone_cells::MilestoneCells;
use crate::aggregates::Aggregates;
use crate::evaluate::Current;
use crate::lists::Indexed;
use crate::past::{Counted, Shown, Split, TakeAway};
use crate::projection::PathwayKey;
use crate::projection::ProjectionData;
use crate::ptl_index::pack_trust;
use crate::{App, AppError};

/// Which moment a view shows.
#[derive(Debug, Clone, Default)]
pub struct ViewAt {
    pub as_of: Option<NaiveDate>,
    pub known_at: Option<DateTime<Utc>>,
    pub min_position: Option<u64>,
}

/// Which trusts a view covers: `None` is every trust.
#[derive(Debug, Clone, Default)]
pub struct TrustFilter(pub Option<HashSet<String>>);

impl TrustFilter {
    pub fn allows(&self, trust: &str) -> bool {
        self.0.as_ref().is_none_or(|set| set.contains(trust))
    }

    /// This filter, narrowed to the trusts a principal covers.
    pub fn within(&self, scope: &TrustScope) -> TrustFilter {
        match (scope, &self.0) {
            (TrustScope::All, _) => self.clone(),
            (TrustScope::Only(allowed), None) => {
                TrustFilter(Some(allowed.iter().cloned().collect()))
            }
            (TrustScope::Only(allowed), Some(asked)) => TrustFilter(Some(
                asked
                    .iter()
                    .filter(|t| allowed.contains(*t))
                    .cloned()
                    .collect(),
            )),
        }
    }

    pub(crate) fn packed(&self) -> Option<Vec<u64>> {
        self.0
            .as_ref()
            .map(|set| set.iter().map(|t| pack_trust(t)).collect())
    }
}

/// A pathway as a view sees it (its state unpacked, or evaluated afresh
/// for a past view).
pub(crate) struct Seen<'a> {
    id: SeenId<'a>,
    current: Current,
}

/// A seen pathway's id: the projection's own (today), or the past view's.
enum SeenId<'a> {
    Borrowed(&'a str),
    Shared(PathwayKey),
}

impl Seen<'_> {
    pub(crate) fn state(&self) -> &PathwayState {
        &self.current.state
    }

    pub(crate) fn id(&self) -> &str {
        match &self.id {
            SeenId::Borrowed(id) => id,
            SeenId::Shared(id) => id,
        }
    }
}

impl Borrow<PathwayState> for Seen<'_> {
    fn borrow(&self) -> &PathwayState {
        self.state()
    }
}

impl App {
    /// Where a view of `at` starts: the trusts it covers (those asked,
    /// within `principal`'s) and the date it shows, once the projection
    /// shows the position `at` asks for and, just after midnight, the new
    /// day's states (each waited for at most a bounded time,
    /// [`App::wait_for`], [`App::wait_for_today`]).
    pub(crate) async fn view_scope(
        &self,
        at: &ViewAt,
        trusts: &TrustFilter,
        principal: &Principal,
    ) -> (TrustFilter, NaiveDate) {
        let trusts = trusts.within(&principal.trusts);
        self.wait_for(at.min_position).await;
        let as_of = self.as_of(at.as_of, at.known_at);
        self.wait_for_today(as_of, at.known_at, false).await;
        (trusts, as_of)
    }

    /// Runs `f` over every pathway's state as of `as_of`, known at
    /// `known_at`: the projection's states when those are today and
    /// now, else each state as a full re-evaluation gives it ([`crate::past`]).
    /// Pathways `shown` leaves out may be left out (they would count
    /// nothing). `f` runs off the async workers ([`App::off_workers`]).
    pub(crate) async fn with_states<R: Send + 'static>(
        &self,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        shown: Shown,
        f: impl FnOnce(&mut dyn Iterator<Item = Seen<'_>>) -> R + Send + 'static,
    ) -> Result<(R, u64), AppError> {
        let split = self.past_split(as_of, known_at, shown).await?;
        self.states_then(
            split,
            f,
            |f, seen| f(seen),
            |f, states| f(&mut seen_in(states)),
        )
        .await
    }

    /// [`Self::with_states`] over every pathway, for background work and
    /// exports that visit them all (the forecasts): of today, the read
    /// lock is held only while the packed states are copied, and they are
    /// unpacked outside it, on every core (decision 159; unpacked under
    /// it, a refresh of the forecasts held every append for seconds at
    /// 1.4M pathways). Not through the past views' gate: it is no slower
    /// than the same view under the lock was.
    pub(crate) async fn with_every_state<R: Send + 'static>(
        &self,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        f: impl FnOnce(&mut dyn Iterator<Item = Seen<'_>>) -> R + Send + 'static,
    ) -> Result<(R, u64), AppError> {
        if known_at.is_some() || as_of != self.today() {
            return self.with_states(as_of, known_at, Shown::All, f).await;
        }
        self.wait_for_today(as_of, known_at, false).await;
        let split = self.past_split(as_of, known_at, Shown::All).await?;
        let projection = self.projection.clone();
        let (snapshot, position) = self
            .off_workers(move || {
                let data = projection.read();
                let position = projection.position().min(data.position);
                (split.snapshot(&data, position), position)
            })
            .await?;
        let out = self
            .evaluate_snapshot(snapshot, as_of, known_at, (), move |states| {
                f(&mut seen_in(states))
            })
            .await?;
        Ok((out, position))
    }

    /// [`Self::with_states`] for a view that counts states one at a time
    /// into partial results it can merge: a past view counts them where
    /// they are moved or read, on every core, and drops them there
    /// (decision 157). `from_today`: what of today's aggregates it can
    /// start from, and how it takes a pathway's contributions away again
    /// (decision 158).
    pub(crate) async fn fold_states<A: Send + Sync + 'static>(
        &self,
        split: Split,
        new: impl Fn() -> A + Send + Sync + 'static,
        fold: impl Fn(&mut A, &str, &PathwayState) + Send + Sync + 'static,
        merge: impl Fn(&mut A, A) + Send + 'static,
        from_today: Option<(Counted, TakeAway<A>)>,
    ) -> Result<(A, u64), AppError> {
        let new = Arc::new(new);
        let fold = Arc::new(fold);
        let (split, take_away) = match from_today {
            Some((counted, take_away)) => (split.counting(counted), Some(take_away)),
            None => (split, None),
        };
        self.states_then(
            split,
            (new, fold, merge, take_away),
            |(new, fold, _, _), seen| {
                let mut acc = new();
                seen.for_each(|s| fold(&mut acc, s.id(), s.state()));
                acc
            },
            |(new, fold, merge, take_away), states| {
                // The fold reads states only.
                states.without_rows();
                states.fold_on_movers(
                    {
                        let new = new.clone();
                        move || new()
                    },
                    move |acc, id, current| {
                        fold(acc, id, &current.state);
                        false
                    },
                    false,
                );
                // Every state is taken where it is moved or read.
                states.by_ref().for_each(drop);
                let mut acc = new();
                for part in states.folded() {
                    merge(&mut acc, part);
                }
                if let Some(take_away) = take_away {
                    for part in states.kept_less_away(|| new(), |a, s| take_away(a, s)) {
                        merge(&mut acc, part);
                    }
                }
                acc
            },
        )
        .await
    }

    /// Runs `today` over today's states when the view is of today as
    /// known now, else `past` over the states of the view's date and
    /// moment, off the async workers; `f` goes to the one that runs.
    async fn states_then<F: Send + 'static, R: Send + 'static>(
        &self,
        split: Split,
        f: F,
        today: fn(F, &mut dyn Iterator<Item = Seen<'_>>) -> R,
        past: fn(F, &mut crate::past::PastStates<'_>) -> R,
    ) -> Result<(R, u64), AppError> {
        let projection = self.projection.clone();
        let (as_of, known_at) = (split.as_of(), split.known_at());
        let shown = split.shown();
        let now = self
            .off_workers(move || {
                let data = projection.read();
                let position = projection.position().min(data.position);
                if data.today != Some(as_of) || known_at.is_some() {
                    return Ok::<_, AppError>(Err((split.snapshot(&data, position), position, f)));
                }
                let states = data.states(projection.packer(), shown.window());
                Ok(Ok((run_over(states, |seen| today(f, seen))?, position)))
            })
            .await??;
        let (snapshot, position, f) = match now {
            Ok(done) => return Ok(done),
            Err(then) => then,
        };
        let out = self
            .in_past_view(snapshot, as_of, known_at, move |states| past(f, states))
            .await?;
        Ok((out, position))
    }

    /// The lines `add` gives of the pathways today's aggregates index as
    /// `indexed` says, unsorted, a part per slice of pathways, made from
    /// their states on every core, off the async workers. `None` when the
    /// view is not of today as known now, the index does not cover it (a
    /// month not indexed) or the aggregates are not built yet (the caller
    /// then reads the states it may show). The caller's lines must come
    /// only from the pathways indexed: with CWT records in the month (this
    /// month and the last, decision 149; the CWT submission, and the lists
    /// behind a standards figure, as every month a pathway counts in a
    /// standard holds CWT records: property test
    /// `every_month_counted_in_a_standard_holds_cwt_records`), or with a
    /// milestone undecided (a list of pending or overdue milestones,
    /// decision 201).
    pub(crate) async fn todays_indexed_lines<L: Send + 'static>(
        &self,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        indexed: Indexed,
        add: impl Fn(&mut Vec<L>, &str, &PathwayState) + Send + Sync + 'static,
    ) -> Result<Option<(Vec<Vec<L>>, u64)>, AppError> {
        let projection = self.projection.clone();
        let answered = self
            .with_todays_aggregates(as_of, known_at, move |data, aggregates| {
                let ids: Vec<usize> = match indexed {
                    Indexed::CwtRecords(month) => aggregates.cwt_pathways(month, as_of)?.collect(),
                    Indexed::MilestoneUndecided => aggregates
                        .milestone_undecided(data.pathways.len())
                        .collect(),
                };
                Some(data.fold_states_at(&ids, projection.packer(), Vec::new, add))
            })
            .await?;
        Ok(match answered {
            Some((Some(out), position)) => Some((out?, position)),
            _ => None,
        })
    }

    /// Answers from today's aggregates, off the async workers: `None` when
    /// the view is not of today as known now, or they are not built yet.
    pub(crate) async fn answer_from_aggregates<R: Send + 'static>(
        &self,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        f: impl FnOnce(&Aggregates) -> R + Send + 'static,
    ) -> Result<Option<(R, u64)>, AppError> {
        self.with_todays_aggregates(as_of, known_at, move |_, aggregates| f(aggregates))
            .await
    }

    /// Runs `f` over the projection and today's aggregates, off the async
    /// workers: `None` when the view is not of today as known now, or they
    /// are not built yet.
    async fn with_todays_aggregates<R: Send + 'static>(
        &self,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        f: impl FnOnce(&ProjectionData, &Aggregates) -> R + Send + 'static,
    ) -> Result<Option<(R, u64)>, AppError> {
        if known_at.is_some() {
            return Ok(None);
        }
        self.wait_for_today(as_of, known_at, true).await;
        let projection = self.projection.clone();
        self.off_workers(move || {
            let data = projection.read();
            let position = projection.position().min(data.position);
            if data.today != Some(as_of) {
                return None;
            }
            let aggregates = data.aggregates.as_ref()?;
            Some((f(&data, aggregates), position))
        })
        .await
    }

    /// Performance against one standard for clocks stopped in `period`.
    pub async fn standards(
        &self,
        at: &ViewAt,
        standard: ClockKind,
        period: Option<Period>,
        trusts: &TrustFilter,
        tumour_site: Option<TumourSite>,
        principal: &Principal,
    ) -> Result<(StandardsReport, u64), AppError> {
        let (trusts, as_of) = self.view_scope(at, trusts, principal).await;
        let period = period.unwrap_or_else(|| Period::of(as_of));
        let config = self.config.clone();
        let (visible, rules) = (trusts.clone(), config.clone());
        let report = move |cells: &DatedCells| {
            let visible = |t: &str| visible.allows(t);
            cells.standards(standard, period, tumour_site, &visible, &rules)
        };
        let (of_today, report) = (report.clone(), report);
        let today = self.answer_from_aggregates(as_of, at.known_at, move |aggregates| {
            of_today(aggregates.dated())
        });
        if let Some(done) = today.await? {
            return Ok(done);
        }
        if let Some(done) = self
            .answer_from_kept_day(as_of, at.known_at, report)
            .await?
        {
            return Ok(done);
        }
        let (mut count, position) = self
            .fold_states(
                self.past_split(as_of, at.known_at, Shown::period(period))
                    .await?,
                move || StandardsCount::new(standard, period),
                move |count, _, state| count.add(state),
                StandardsCount::merge,
                Some((
                    Counted::Standards(standard, period),
                    Box::new(|count: &mut StandardsCount, state: &PathwayState| {
                        count.take_away(state)
                    }),
                )),
            )
            .await?;
        // A cell's site is its pathways'.
        count.keep_only(|key| tumour_site.is_none_or(|t| key.site == t));
        Ok((count.report(&|t| trusts.allows(t), &config), position))
    }

    /// BPTP milestone compliance of pathways referred in `period` (all when none).
    pub async fn milestones(
        &self,
        at: &ViewAt,
        period: Option<Period>,
        trusts: &TrustFilter,
        tumour_site: Option<TumourSite>,
        principal: &Principal,
    ) -> Result<(MilestonesReport, u64), AppError> {
        let (trusts, as_of) = self.view_scope(at, trusts, principal).await;
        let config = self.config.clone();
        let (visible, rules) = (trusts.clone(), config.clone());
        // A cell's trust and site are its pathways'.
        let report = move |cells: &MilestoneCells| {
            let visible = |t: &str| visible.allows(t);
            cells.report(period, tumour_site, &visible, &rules)
        };
        let (of_today, of_day, report) = (report.clone(), report.clone(), report);
        let today = self.answer_from_aggregates(as_of, at.known_at, move |aggregates| {
            of_today(aggregates.milestone_cells())
        });
        if let Some(done) = today.await? {
            return Ok(done);
        }
        if let Some(done) = self
            .answer_from_kept_day(as_of, at.known_at, of_day)
            .await?
        {
            return Ok(done);
        }
        let shown = period.map_or(Shown::All, Shown::period);
        let split = self.past_split(as_of, at.known_at, shown).await?;
        let (cells, position) = self.count_cells::<MilestoneCells>(split).await?;
        Ok((report(&cells), position))
    }

    /// The weekly PTL return for the week ending on a Sunday.
    pub async fn canptl(
        &self,
        week_ending: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        trusts: &TrustFilter,
        principal: &Principal,
    ) -> Result<(CanptlReturn, u64), AppError> {
        let trusts = trusts.within(&principal.trusts);
        if week_ending.weekday() != Weekday::Sun {
            return Err(AppError::InvalidQuery {
                field: "week_ending".into(),
                problem: "must be a Sunday (the return is as at 23:59 on the Sunday)".into(),
            });
        }
        if week_ending > self.today() {
            return Err(AppError::InvalidQuery {
                field: "week_ending".into(),
                problem: "is in the future; the return covers a week that has ended".into(),
            });
        }
        // On the Sunday itself, as known now: from today's aggregates.
        let visible = trusts.clone();
        let today = self.answer_from_aggregates(week_ending, known_at, move |aggregates| {
            aggregates.canptl(week_ending, &|t| visible.allows(t))
        });
        if let Some(done) = today.await? {
            return Ok(done);
        }
        // Last Sunday's, as known now: from the cells kept (decision 200),
        // unless past views read every history.
        if known_at.is_none() && !self.past_views_read_all() {
            let (visible, projection) = (trusts.clone(), self.projection.clone());
            let kept = self.off_workers(move || {
                let data = projection.read();
                let position = projection.position().min(data.position);
                let last = data.last_week.as_ref()?;
                (last_sunday(data.today?) == week_ending)
                    .then(|| (last.canptl(week_ending, &|t| visible.allows(t)), position))
            });
            if let Some(done) = kept.await? {
                return Ok(done);
            }
        }
        // The waiting list at the week's end, and what happened in the week.
        self.fold_states(
            self.past_split(week_ending, known_at, Shown::week(week_ending))
                .await?,
            move || CanptlReturn::new(week_ending),
            move |report, _, state| {
                if trusts.allows(state.trust.as_str()) {
                    report.add(state);
                }
            },
            CanptlReturn::merge,
            None,
        )
        .await
    }
}

/// A past view's states as a view sees them.
fn seen_in<'a, 'b>(
    states: &'a mut crate::past::PastStates<'b>,
) -> impl Iterator<Item = Seen<'static>> + use<'a, 'b> {
    states.map(|(id, current)| Seen {
        id: SeenId::Shared(id),
        current,
    })
}

/// Runs `f` over today's `states`; a state that could not be unpacked is
/// passed over and its error returned instead of `f`'s answer.
fn run_over<'a, R>(
    states: impl Iterator<Item = (&'a str, Result<Current, AppError>)>,
    f: impl FnOnce(&mut dyn Iterator<Item = Seen<'a>>) -> R,
) -> Result<R, AppError> {
    let mut failed = None;
    let mut seen = states.filter_map(|(id, current)| match current {
        Ok(current) => Some(Seen {
            id: SeenId::Borrowed(id),
            current,
        }),
        Err(e) => {
            failed.get_or_insert(e);
            None
        }
    });
    let out = f(&mut seen);
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// A refusal of what `principal`'s role may not see: "an analyst may not
/// see this: {why}".
pub(crate) fn forbidden(principal: &Principal, why: &str) -> AppError {
    let role = principal.role.as_str().replace('_', " ");
    let article = if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    AppError::Forbidden {
        index: None,
        reason: format!("{article} {role} may not see this: {why}"),
    }
}

/// An NHS number with all but the last four digits hidden: what every
/// surface shows a role that does not see NHS numbers
/// ([`Principal::sees_nhs_numbers`]).
pub(crate) fn mask(nhs_number: &str) -> String {
    openptl_rules::NhsNumber::parse(nhs_number)
        .map_or_else(|| "*".repeat(nhs_number.len()), |n| n.masked())
}

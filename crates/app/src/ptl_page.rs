//! The single PTL's page (SPEC 4.4): its query (filters, worklists, sort
//! and cursor), its rows, and how it is made. A page of today, as known
//! now, reads the projection's PTL index (its rows' risks scored again
//! where the model changed) and unpacks only its own rows. A page of
//! another `as_of` or `known_at` builds an index of the view's states,
//! moved or evaluated afresh: a short page makes its own rows again, a
//! long one, or one that sorts or filters by risk without a model of its
//! date kept, keeps every row's state (decisions 156, 157).

use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use openptl_rules::forecast::{self, permille, Model, ModelOptions, RowRisk};
use openptl_rules::{ClockKind, PathwayState, PtlRow, Rag, Route, TumourSite, WaitBand};
use serde::Serialize;

use crate::access::Principal;
use crate::breach_risk::{fill_risks, risk_keys, LIKELY_TO_BREACH_PERMILLE};
use crate::evaluate::Current;
use crate::past::{Counted, Shown};
use crate::projection::PathwayKey;
use crate::ptl_index::day_number;
pub use crate::ptl_index::{PtlIndexEntry, PtlKeys, RiskKeys};
use crate::views::{forbidden, mask, TrustFilter, ViewAt};
use crate::{App, AppError};

/// Saved worklists of the PTL (presets of filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worklist {
    /// 62-day wait 63–104 days.
    Band63To104,
    /// 62-day wait of 105 days or more.
    Band105Plus,
    /// 62-day wait over 62 days (the backlog).
    Over62,
    NoNextAction,
    NextActionOverdue,
    Escalated,
    MilestoneOverdue,
    /// Treated patients waiting for a subsequent treatment (SPEC 2.12): a
    /// subsequent treatment period running, breached or not.
    SubsequentTreatment,
    /// For the weekly PTL meeting: the backlog, escalations, overdue next
    /// actions and milestones, and anyone due to breach within 7 days.
    PtlMeeting,
    /// Open lower GI pathways whose latest FIT is below 10 (issue 25): the
    /// safety-netting review; each row says how far its colonoscopy went.
    FitBelow10,
    /// A running clock not yet past its target with a breach risk of 50%
    /// or more (decision 154): the breaches that may still be prevented.
    LikelyToBreach,
}

impl Worklist {
    pub const ALL: &'static [(&'static str, Worklist)] = &[
        ("63-104", Worklist::Band63To104),
        ("105+", Worklist::Band105Plus),
        ("over_62", Worklist::Over62),
        ("no_next_action", Worklist::NoNextAction),
        ("next_action_overdue", Worklist::NextActionOverdue),
        ("escalated", Worklist::Escalated),
        ("milestone_overdue", Worklist::MilestoneOverdue),
        ("subsequent_treatment", Worklist::SubsequentTreatment),
        ("ptl_meeting", Worklist::PtlMeeting),
        ("fit_below_10", Worklist::FitBelow10),
        ("likely_to_breach", Worklist::LikelyToBreach),
    ];

    pub fn parse(code: &str) -> Option<Worklist> {
        Worklist::ALL
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, w)| *w)
    }

    fn includes(self, row: &PtlKeys, risk: RiskKeys, as_of: i32) -> bool {
        let backlog = row.band.is_some_and(WaitBand::is_backlog);
        match self {
            Worklist::Band63To104 => row.band == Some(WaitBand::From63To104),
            Worklist::Band105Plus => row.band == Some(WaitBand::From105),
            Worklist::Over62 => backlog,
            Worklist::NoNextAction => !row.has_next_action,
            Worklist::NextActionOverdue => row.next_action_overdue,
            Worklist::Escalated => row.escalated,
            Worklist::MilestoneOverdue => row.milestone_overdue,
            Worklist::SubsequentTreatment => row.waiting_subsequent,
            Worklist::FitBelow10 => row.fit_below_10,
            Worklist::LikelyToBreach => risk.ahead.is_some_and(|p| p >= LIKELY_TO_BREACH_PERMILLE),
            Worklist::PtlMeeting => {
                backlog
                    || row.escalated
                    || row.next_action_overdue
                    || row.milestone_overdue
                    || row.next_breach.is_some_and(|d| d - as_of <= 7)
            }
        }
    }
}

/// Sort orders of the PTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PtlSort {
    /// Longest wait first (the default).
    #[default]
    DaysWaited,
    /// Soonest breach first; rows with no running clock to breach last.
    NextBreach,
    /// Oldest referral first.
    ReferredOn,
    /// Highest breach risk first, then the longest wait (decision 154);
    /// rows with no running clock to score last.
    BreachRisk,
}

impl PtlSort {
    pub const ALL: &'static [(&'static str, PtlSort)] = &[
        ("days_waited", PtlSort::DaysWaited),
        ("next_breach", PtlSort::NextBreach),
        ("referred_on", PtlSort::ReferredOn),
        ("breach_risk", PtlSort::BreachRisk),
    ];

    pub fn parse(code: &str) -> Option<PtlSort> {
        PtlSort::ALL
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, s)| *s)
    }

    pub fn as_str(self) -> &'static str {
        PtlSort::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map(|(c, _)| *c)
            .expect("every sort is listed")
    }

    /// An ascending key: rows are listed by (key, pathway id).
    fn key(self, row: &PtlKeys, risk: RiskKeys) -> i64 {
        match self {
            PtlSort::DaysWaited => -row.days_waited,
            PtlSort::NextBreach => row.next_breach.map_or(i64::MAX, i64::from),
            PtlSort::ReferredOn => i64::from(row.referred),
            // Among equal risks (many rows past a target share 100%), the
            // longest wait first.
            PtlSort::BreachRisk => risk.highest.map_or(i64::MAX, |p| {
                -((i64::from(p) << 32) | row.days_waited.clamp(0, i64::from(u32::MAX)))
            }),
        }
    }
}

/// Where the previous page ended: (sort, key, pathway id). Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    sort: PtlSort,
    key: i64,
    pathway_id: String,
}

impl Cursor {
    pub fn parse(text: &str) -> Option<Cursor> {
        let mut parts = text.splitn(3, '~');
        let sort = PtlSort::parse(parts.next()?)?;
        let key = parts.next()?.parse().ok()?;
        let pathway_id = parts.next()?.to_string();
        Some(Cursor {
            sort,
            key,
            pathway_id,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}~{}~{}", self.sort.as_str(), self.key, self.pathway_id)
    }
}

/// Filters, order and page of a PTL request (SPEC 4.4). Empty lists mean
/// "any".
#[derive(Debug, Clone, Default)]
pub struct PtlQuery {
    pub at: ViewAt,
    pub trusts: TrustFilter,
    pub tumour_sites: Vec<TumourSite>,
    pub routes: Vec<Route>,
    pub bands: Vec<WaitBand>,
    pub rags: Vec<Rag>,
    pub escalated: Option<bool>,
    pub no_next_action: bool,
    pub next_action_overdue: bool,
    pub milestone_overdue: bool,
    pub worklist: Option<Worklist>,
    /// Percent (0 to 100): only rows whose breach risk is at least this
    /// (rows with no running clock have none, so never pass).
    pub min_breach_risk: Option<f64>,
    pub sort: PtlSort,
    /// Rows per page; `None` returns every matching row (exports).
    pub limit: Option<usize>,
    pub cursor: Option<Cursor>,
}

impl PtlQuery {
    /// Whether the query filters or sorts by breach risk: then every
    /// row's risk keys are needed, not only the page's risks.
    pub fn needs_risk(&self) -> bool {
        self.sort == PtlSort::BreachRisk
            || self.min_breach_risk.is_some()
            || self.worklist == Some(Worklist::LikelyToBreach)
    }

    /// Whether a row passes every filter but the band filter, and the band
    /// filter too.
    fn matches(
        &self,
        row: &PtlKeys,
        risk: RiskKeys,
        trusts: Option<&[u64]>,
        as_of: i32,
    ) -> (bool, bool) {
        let others = trusts.is_none_or(|t| t.contains(&row.trust))
            && (self.tumour_sites.is_empty() || self.tumour_sites.contains(&row.tumour_site))
            && (self.routes.is_empty() || self.routes.contains(&row.route))
            && (self.rags.is_empty() || self.rags.contains(&row.rag))
            && self.escalated.is_none_or(|e| row.escalated == e)
            && (!self.no_next_action || !row.has_next_action)
            && (!self.next_action_overdue || row.next_action_overdue)
            && (!self.milestone_overdue || row.milestone_overdue)
            && self.worklist.is_none_or(|w| w.includes(row, risk, as_of))
            && self
                .min_breach_risk
                .is_none_or(|min| risk.highest.is_some_and(|p| f64::from(p) / 10.0 >= min));
        let band = self.bands.is_empty() || row.band.is_some_and(|b| self.bands.contains(&b));
        (others, others && band)
    }
}

/// One PTL row with the pathway's identifiers. Its `Debug` leaves the
/// NHS number out, so no log line or panic can print it.
#[derive(Clone, Serialize)]
pub struct PtlEntry {
    pub pathway_id: String,
    pub version: u64,
    pub nhs_number: String,
    #[serde(flatten)]
    pub row: PtlRow,
    /// The chance, in percent (one decimal), that the riskiest running
    /// clock breaches its target (100 for one already past it), under the
    /// model of the view's date (decision 154); `null` when no clock runs.
    pub breach_risk: Option<f64>,
    /// That clock (`fds`, `d62` or `d31`).
    pub breach_risk_clock: Option<ClockKind>,
    /// Its treatment period's plan id (a subsequent 31-day period only).
    pub breach_risk_plan_id: Option<String>,
}

/// What a PTL page shows of an index entry: the NHS number, the row and
/// its breach risk.
pub(crate) struct Listed {
    nhs_number: String,
    row: PtlRow,
    risk: Option<RowRisk>,
}

impl Listed {
    fn of(state: &PathwayState, row: PtlRow, model: &Model) -> Listed {
        Listed {
            nhs_number: state.nhs_number.as_str().to_string(),
            row,
            risk: forecast::row_risk(state, model),
        }
    }
}

/// A page of the PTL.
#[derive(Debug, Clone, Serialize)]
pub struct PtlPage {
    #[serde(with = "openptl_rules::date")]
    pub as_of: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_at: Option<DateTime<Utc>>,
    /// The log position the view includes.
    pub position: u64,
    /// Rows matching every filter.
    pub total: usize,
    /// Rows matching every filter but the band filter, by band.
    pub bands: BTreeMap<&'static str, usize>,
    pub rows: Vec<PtlEntry>,
    pub next_cursor: Option<String>,
}

impl std::fmt::Debug for PtlEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtlEntry")
            .field("pathway_id", &self.pathway_id)
            .field("version", &self.version)
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

impl App {
    /// The single PTL (SPEC 4.4).
    pub async fn ptl(&self, query: &PtlQuery, principal: &Principal) -> Result<PtlPage, AppError> {
        if !principal.reads_patients() {
            return Err(forbidden(principal, "the PTL lists patients"));
        }
        let (trusts, as_of) = self.view_scope(&query.at, &query.trusts, principal).await;
        let scoped = PtlQuery {
            trusts,
            ..query.clone()
        };
        let query = &scoped;
        if let Some(cursor) = &query.cursor {
            if cursor.sort != query.sort {
                return Err(AppError::InvalidQuery {
                    field: "cursor".into(),
                    problem: "belongs to another sort order; start again without it".into(),
                });
            }
        }
        // Each row carries its risk under the model of the view's date:
        // today's (learnt once a day), or for any other view one learnt
        // from every pathway as known then (decision 154).
        let today = query.at.known_at.is_none() && as_of == self.today();
        let model = match today {
            true => self.ptl_model(as_of).await?,
            false => None,
        };
        let generation = model
            .as_ref()
            .map(|m| (m.clone(), self.risk_generation(as_of, m)));
        let scored_under = generation.as_ref().map(|(_, (g, _))| *g);
        let projection = self.projection.clone();
        let config = self.config.clone();
        let page_query = query.clone();
        let known_at = query.at.known_at;
        // A past page moves only the PTL's states when a model of its date
        // is kept and still holds; else every state, to learn one from
        // every clock. The full re-evaluation (the oracle) learns its own.
        let kept_model = match self.past_views_read_all() {
            true => None,
            false => self.past_model(as_of, known_at),
        };
        let split = self.past_split(as_of, known_at, Shown::All).await?;
        let fast = self
            .off_workers(move || {
                let query = &page_query;
                let data = projection.read();
                let position = projection.position().min(data.position);
                let today = data.today == Some(as_of) && known_at.is_none();
                let Some((model, (generation, scored))) = generation.filter(|_| today) else {
                    let past_model = kept_model
                        .filter(|(_, learnt_at)| split.unchanged_since(*learnt_at, &data))
                        .map(|(model, _)| model);
                    // Learning the date's model, the clocks of the
                    // pathways off the PTL are counted already (decision 158).
                    let split = match past_model {
                        Some(_) => split.showing(Shown::OnPtl),
                        None => split.counting(Counted::ClocksOffPtl),
                    };
                    let snapshot = split.snapshot(&data, position);
                    return Ok::<_, AppError>(Err((snapshot, position, past_model)));
                };
                let packer = projection.packer();
                let keys_of = |e: &PtlIndexEntry| {
                    let current = data.state_of(&e.id, packer)?;
                    Ok(RiskKeys::of(
                        current
                            .and_then(|c| forecast::row_risk(&c.state, &model))
                            .as_ref(),
                    ))
                };
                // Only rows changed since their keys were computed under
                // this generation are scored again, on every core; the
                // scan for them is skipped when no row has changed since
                // the last one found none.
                let mut scored_now = None;
                if query.needs_risk() && scored != Some(data.ptl_changed) {
                    fill_risks(&data.ptl, generation, keys_of)?;
                    scored_now = Some(data.ptl_changed);
                }
                // Only the page's rows are unpacked.
                let risk_of = |e: &PtlIndexEntry| risk_keys(e, generation, keys_of);
                let page = page_of(&data.ptl, query, as_of, risk_of, |e| {
                    let current = data.state_of(&e.id, packer)?;
                    Ok(current.and_then(|c| {
                        let row = PtlRow::of(&c.state, &config)?;
                        Some(Listed::of(&c.state, row, &model))
                    }))
                })?;
                Ok(Ok((page, position, scored_now)))
            })
            .await??;
        let ((total, bands, mut rows, next_cursor), position) = match fast {
            Ok((page, position, scored_now)) => {
                if let (Some(generation), Some(stamp)) = (scored_under, scored_now) {
                    self.risks_scored(generation, stamp);
                }
                (page, position)
            }
            Err((snapshot, position, past_model)) => {
                let query = query.clone();
                let learnt_at = snapshot.position();
                let (page, learnt) = self
                    .in_past_view(snapshot, as_of, known_at, move |states| {
                        past_page(states, &query, as_of, past_model)
                    })
                    .await??;
                if let Some(model) = learnt {
                    self.keep_past_model(as_of, known_at, (model, learnt_at));
                }
                (page, position)
            }
        };
        if !principal.sees_nhs_numbers() {
            for row in &mut rows {
                row.nhs_number = mask(&row.nhs_number);
            }
        }
        self.audit(principal, "ptl", None, Some(rows.len()))?;
        Ok(PtlPage {
            as_of,
            known_at: query.at.known_at,
            position,
            total,
            bands,
            rows,
            next_cursor,
        })
    }
}

/// A past state's risk keys under its date's model.
fn risk_keys_under(state: &PathwayState, model: &Model) -> RiskKeys {
    RiskKeys::of(forecast::row_risk(state, model).as_ref())
}

/// A past state's PTL row as a page lists it (none off the PTL).
fn listed(current: &Current, model: &Model) -> Option<Listed> {
    let row = current.row.as_deref()?.clone();
    Some(Listed::of(&current.state, row, model))
}

/// The most rows of a past PTL page whose states are made again rather
/// than kept ([`past_page`]): a dashboard's page, not an export.
const SHORT_PAGE_ROWS: usize = 1000;

/// A past PTL page from its view's states, and the model of its date
/// when learnt here (none kept: decision 156).
///
/// Usually only the PTL's index is kept: each core makes the index entry
/// of each state it moves or reads (its risk keys too when the page needs
/// them and the model is known) and drops the state there, and the page's
/// own states are made again once chosen (decision 157). A page that sorts
/// or filters by risk without a kept model needs every row's risk under
/// the model learnt from all of them, so keeps every row's state; so does
/// a long page, which makes most of them anyway.
fn past_page(
    states: &mut crate::past::PastStates<'_>,
    query: &PtlQuery,
    as_of: NaiveDate,
    past_model: Option<Arc<Model>>,
) -> Result<(Page, Option<Arc<Model>>), AppError> {
    // A fresh index: its one generation.
    const PAST: u32 = 1;
    if past_model.is_none() {
        states.learn_clocks(|c| c.row.is_some());
    }
    let learn = |states: &mut crate::past::PastStates<'_>| {
        past_model.is_none().then(|| {
            let started = std::time::Instant::now();
            let model = states.clock_counts().fit(ModelOptions::default());
            tracing::debug!(
                strata = model.strata(),
                ms = started.elapsed().as_millis() as u64,
                "past view's risk model learnt"
            );
            Arc::new(model)
        })
    };
    let needs_risk = query.needs_risk();
    // Every row's state is made anyway for a long page (an export): kept.
    let short = query.limit.is_some_and(|rows| rows <= SHORT_PAGE_ROWS);
    if short && (past_model.is_some() || !needs_risk) {
        let scoring = past_model.clone().filter(|_| needs_risk);
        // Each core's index sized for every row at once: only what is
        // written is touched, where growing copied every row into fresh
        // pages at each doubling (decision 205).
        let most = states.expected_len();
        states.fold_on_movers(
            move || Vec::with_capacity(most),
            move |index: &mut Vec<PtlIndexEntry>, id, current| {
                let Some(row) = &current.row else {
                    return false;
                };
                let entry = PtlIndexEntry::new(PtlKeys::of(row), id.clone(), current.version);
                if let Some(model) = &scoring {
                    entry.risk.set(PAST, risk_keys_under(&current.state, model));
                }
                index.push(entry);
                true
            },
            true,
        );
        // Every state is taken where it is moved or read.
        states.by_ref().for_each(drop);
        // Each core's part read where it is, not copied into one.
        let index = states.folded::<Vec<PtlIndexEntry>>();
        let learnt = learn(states);
        let model = past_model.or(learnt.clone()).expect("kept or learnt");
        let selected = select_page(index.iter().flatten(), query, as_of, |e| {
            risk_keys(e, PAST, |e| {
                let again = states.again(std::slice::from_ref(&e.id))?;
                Ok(again
                    .get(&e.id)
                    .map_or_else(RiskKeys::default, |c| risk_keys_under(&c.state, &model)))
            })
        })?;
        let again = states.again(&selected.ids())?;
        let page = selected.rows(|e| Ok(again.get(&e.id).and_then(|c| listed(c, &model))))?;
        crate::offload::drop_later(index);
        return Ok((page, learnt));
    }
    // Sized for every state at once: growing a map of large states copies
    // each of them again.
    let most = states.expected_len();
    let mut kept = foldhash::HashMap::with_capacity_and_hasher(most, Default::default());
    let mut index = Vec::with_capacity(most);
    for (id, current) in &mut *states {
        if let Some(row) = &current.row {
            index.push(PtlIndexEntry::new(
                PtlKeys::of(row),
                id.clone(),
                current.version,
            ));
            kept.insert(id, current);
        }
    }
    let learnt = learn(states);
    let model = past_model.or(learnt.clone()).expect("kept or learnt");
    let keys_of = |e: &PtlIndexEntry| {
        Ok(kept
            .get(&e.id)
            .map_or_else(RiskKeys::default, |c| risk_keys_under(&c.state, &model)))
    };
    if needs_risk {
        fill_risks(&index, PAST, keys_of)?;
    }
    let risk_of = |e: &PtlIndexEntry| risk_keys(e, PAST, keys_of);
    let page = page_of(&index, query, as_of, risk_of, |e| {
        Ok(kept.get(&e.id).and_then(|c| listed(c, &model)))
    })?;
    // Freeing every state kept is the page's longest step after moving
    // them: done on a thread of its own once the page is answered.
    crate::offload::drop_later((kept, index));
    Ok((page, learnt))
}

type Page = (
    usize,
    BTreeMap<&'static str, usize>,
    Vec<PtlEntry>,
    Option<String>,
);

/// A PTL index row with its sort key, ordered by (key, pathway id): the
/// order of a PTL page and of its cursor.
struct Ranked<'a>(i64, &'a PtlIndexEntry);

impl<'a> Ranked<'a> {
    fn key(&self) -> (i64, &'a str) {
        (self.0, &*self.1.id)
    }
}

impl PartialEq for Ranked<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Ranked<'_> {}

impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// Filters, counts, sorts and pages PTL index rows.
/// `risk_of` gives an entry's risk keys (asked only when the query filters
/// or sorts by them), `row_of` its NHS number, row and risk (`None` if it
/// has none).
fn page_of(
    index: &[PtlIndexEntry],
    query: &PtlQuery,
    as_of: NaiveDate,
    risk_of: impl Fn(&PtlIndexEntry) -> Result<RiskKeys, AppError>,
    row_of: impl Fn(&PtlIndexEntry) -> Result<Option<Listed>, AppError>,
) -> Result<Page, AppError> {
    select_page(index, query, as_of, risk_of)?.rows(row_of)
}

/// A PTL page chosen from the index, before its rows are made: the rows
/// matching, the count in each wait band, the page's entries with their
/// sort keys, and the cursor to the next page.
struct Selected<'a> {
    total: usize,
    bands: BTreeMap<&'static str, usize>,
    matching: Vec<(i64, &'a PtlIndexEntry)>,
    next_cursor: Option<String>,
}

/// [`page_of`]'s choice of rows, without making them.
fn select_page<'a>(
    index: impl IntoIterator<Item = &'a PtlIndexEntry>,
    query: &PtlQuery,
    as_of: NaiveDate,
    risk_of: impl Fn(&PtlIndexEntry) -> Result<RiskKeys, AppError>,
) -> Result<Selected<'a>, AppError> {
    let sort = query.sort;
    let trusts = query.trusts.packed();
    let as_of_day = day_number(as_of);
    let mut bands: BTreeMap<&'static str, usize> =
        WaitBand::ALL.iter().map(|b| (b.as_str(), 0)).collect();
    let mut band_counts = [0usize; 4];
    let limit = query.limit.unwrap_or(usize::MAX);
    let after = query
        .cursor
        .as_ref()
        .map(|c| (c.key, c.pathway_id.as_str()));
    // The page's rows are the `limit` smallest (key, id) after the cursor,
    // kept in a bounded max-heap as the index is read: most rows are turned
    // away on their key alone, where sorting every match compared ids (a
    // cache miss each) among the many rows that share a key.
    let mut best: BinaryHeap<Ranked<'_>> = BinaryHeap::new();
    let mut total = 0;
    let mut beyond_cursor = 0;
    let needs_risk = query.needs_risk();
    for entry in index {
        let risk = if needs_risk {
            risk_of(entry)?
        } else {
            RiskKeys::default()
        };
        let (others, all) = query.matches(&entry.keys, risk, trusts.as_deref(), as_of_day);
        if !others {
            continue;
        }
        if let Some(band) = entry.keys.band {
            band_counts[band as usize] += 1;
        }
        if !all {
            continue;
        }
        total += 1;
        let ranked = Ranked(sort.key(&entry.keys, risk), entry);
        if after.is_some_and(|after| ranked.key() <= after) {
            continue;
        }
        beyond_cursor += 1;
        if best.len() < limit {
            best.push(ranked);
        } else if best.peek().is_some_and(|worst| ranked < *worst) {
            best.pop();
            best.push(ranked);
        }
    }
    for band in WaitBand::ALL {
        bands.insert(band.as_str(), band_counts[*band as usize]);
    }
    let more = beyond_cursor > limit;
    let matching: Vec<(i64, &PtlIndexEntry)> = best
        .into_sorted_vec()
        .into_iter()
        .map(|Ranked(key, e)| (key, e))
        .collect();
    let next_cursor = more.then(|| matching.last()).flatten().map(|(key, e)| {
        Cursor {
            sort,
            key: *key,
            pathway_id: e.id.to_string(),
        }
        .to_string()
    });
    Ok(Selected {
        total,
        bands,
        matching,
        next_cursor,
    })
}

impl Selected<'_> {
    /// The pathways of the page, in its order.
    fn ids(&self) -> Vec<PathwayKey> {
        self.matching.iter().map(|(_, e)| e.id.clone()).collect()
    }

    /// The page, its rows made by `row_of`.
    fn rows(
        self,
        row_of: impl Fn(&PtlIndexEntry) -> Result<Option<Listed>, AppError>,
    ) -> Result<Page, AppError> {
        let Selected {
            total,
            bands,
            matching,
            next_cursor,
        } = self;
        let mut rows = Vec::with_capacity(matching.len());
        for (_, e) in matching {
            if let Some(Listed {
                nhs_number,
                row,
                risk,
            }) = row_of(e)?
            {
                rows.push(PtlEntry {
                    pathway_id: e.id.to_string(),
                    version: e.version,
                    nhs_number,
                    row,
                    breach_risk: risk
                        .as_ref()
                        .map(|r| f64::from(permille(r.probability)) / 10.0),
                    breach_risk_clock: risk.as_ref().map(|r| r.clock),
                    breach_risk_plan_id: risk.and_then(|r| r.plan_id).map(|p| p.to_string()),
                });
            }
        }
        Ok((total, bands, rows, next_cursor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> PtlKeys {
        PtlKeys::sample()
    }

    fn risk(highest: Option<u16>, ahead: Option<u16>) -> RiskKeys {
        RiskKeys { highest, ahead }
    }

    /// Decision 154, as a table: which rows `min_breach_risk` and the
    /// likely-to-breach worklist keep. A row with no risk passes no risk
    /// filter, not even 0; the worklist asks for a clock not yet past its
    /// target (`ahead`) at 50% or more, whatever the row's highest.
    #[test]
    fn risk_filters_and_the_worklist() {
        let cases: &[(RiskKeys, Option<f64>, bool, bool)] = &[
            // (keys, min_breach_risk, passes it, on the worklist)
            (risk(None, None), Some(0.0), false, false),
            (risk(None, None), None, true, false),
            (risk(Some(0), Some(0)), Some(0.0), true, false),
            (risk(Some(499), Some(499)), Some(50.0), false, false),
            (risk(Some(500), Some(500)), Some(50.0), true, true),
            (risk(Some(1000), None), Some(100.0), true, false),
            (risk(Some(1000), Some(620)), Some(62.0), true, true),
            (risk(Some(1000), Some(620)), Some(62.1), true, true),
            (risk(Some(333), Some(333)), Some(33.3), true, false),
            (risk(Some(333), Some(333)), Some(33.35), false, false),
        ];
        for (i, (keys_of_risk, min, passes, listed)) in cases.iter().enumerate() {
            let query = PtlQuery {
                min_breach_risk: *min,
                ..PtlQuery::default()
            };
            assert_eq!(
                query.matches(&keys(), *keys_of_risk, None, 0).1,
                *passes,
                "case {i}"
            );
            let worklist = PtlQuery {
                worklist: Some(Worklist::LikelyToBreach),
                ..PtlQuery::default()
            };
            assert_eq!(
                worklist.matches(&keys(), *keys_of_risk, None, 0).1,
                *listed,
                "case {i}"
            );
            assert!(worklist.needs_risk() && (min.is_none() || query.needs_risk()));
        }
    }

    /// Highest risk first, then the longest wait; no risk after every
    /// risk, 0% included.
    #[test]
    fn the_breach_risk_sort_key() {
        let order = [
            risk(Some(1000), None),
            risk(Some(999), Some(999)),
            risk(Some(1), Some(1)),
            risk(Some(0), Some(0)),
            risk(None, None),
        ];
        let sort_keys: Vec<i64> = order
            .iter()
            .map(|r| PtlSort::BreachRisk.key(&keys(), *r))
            .collect();
        assert!(sort_keys.windows(2).all(|w| w[0] < w[1]), "{sort_keys:?}");
        // Equal risks: the longest wait first (then the pathway id).
        let waited = |days| PtlKeys {
            days_waited: days,
            ..keys()
        };
        let full = risk(Some(1000), None);
        let by_wait: Vec<i64> = [400, 63, 29, 0]
            .iter()
            .map(|d| PtlSort::BreachRisk.key(&waited(*d), full))
            .collect();
        assert!(by_wait.windows(2).all(|w| w[0] < w[1]), "{by_wait:?}");
        assert!(
            PtlSort::BreachRisk.key(&waited(400), risk(Some(999), Some(999)))
                > PtlSort::BreachRisk.key(&waited(0), full)
        );
        assert!(!PtlQuery::default().needs_risk());
    }

    #[test]
    fn a_risk_cell_holds_its_keys_for_its_generation_only() {
        let entry = PtlIndexEntry::new(keys(), PathwayKey::from("P1"), 3);
        assert_eq!(entry.risk.get(1), None);
        for k in [
            risk(None, None),
            risk(Some(1000), None),
            risk(Some(0), Some(0)),
        ] {
            entry.risk.set(7, k);
            assert_eq!(entry.risk.get(7), Some(k));
            assert_eq!(entry.risk.get(8), None);
            assert_eq!(entry.risk.clone().get(7), Some(k));
        }
        assert_eq!(
            PtlIndexEntry::new(keys(), PathwayKey::from("P1"), 4)
                .risk
                .get(7),
            None
        );
    }
}

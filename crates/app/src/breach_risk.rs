//! The breach-risk worklist (issue 24): every running clock of the
//! caller's trusts, not yet past its target, whose chance of breaching it
//! is at least the threshold asked for (50% by default: "likely to
//! breach"), riskiest first, each with its main reason in words; or one pathway's clocks for
//! its page. Patient-level, so scoped and audited like the PTL; it names
//! pathways by id, never by NHS number.

use std::sync::Arc;

use chrono::NaiveDate;
use openptl_rules::forecast::{Observation, Outcome};
use openptl_rules::{ClockKind, Route, TumourSite};
use serde::Serialize;

use crate::access::Principal;
use crate::fold::par_filter_map;
use crate::ptl_index::{PtlIndexEntry, RiskKeys};
use crate::views::{TrustFilter, ViewAt};
use crate::{App, AppError};

/// The threshold of the `likely_to_breach` worklist, in percent.
pub const LIKELY_TO_BREACH_PERCENT: f64 = 50.0;

/// The same, in the PTL's risk keys' tenths of a percent.
pub(crate) const LIKELY_TO_BREACH_PERMILLE: u16 = 500;

/// PTL index entries scored at a time by [`App::warm_ptl_risks`], each
/// batch under the projection's read lock (which appends wait behind).
const WARM_BATCH: usize = 16_384;

/// Rows a list returns at most.
pub const MAX_RISK_ROWS: usize = 1000;

/// Which running clocks a breach-risk list shows.
#[derive(Debug, Clone, Default)]
pub struct RiskQuery {
    pub at: ViewAt,
    pub trusts: TrustFilter,
    pub tumour_site: Option<TumourSite>,
    pub clock: Option<ClockKind>,
    /// Only these pathways' clocks (a pathway's page, a PTL page's rows).
    pub pathway_ids: Option<std::collections::HashSet<String>>,
    /// Percent; only clocks at or above it.
    pub min_risk: f64,
    /// Clocks already past their target too (certain breaches: the PTL
    /// flags them already).
    pub include_breached: bool,
    pub limit: usize,
}

/// One running clock and its risk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskRow {
    pub pathway_id: String,
    pub clock: ClockKind,
    pub trust: String,
    pub tumour_site: TumourSite,
    pub route: Route,
    #[serde(with = "openptl_rules::date")]
    pub start: NaiveDate,
    pub days: i64,
    pub target_days: i64,
    /// Chance of breaching the target, in percent (one decimal).
    pub breach_risk: f64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskList {
    #[serde(with = "openptl_rules::date")]
    pub as_of: NaiveDate,
    pub position: u64,
    pub min_risk: f64,
    /// Clocks at or above the threshold (the rows may be fewer: `limit`).
    pub total: usize,
    pub rows: Vec<RiskRow>,
}

impl App {
    /// The running clocks at or above `query.min_risk`, riskiest first.
    pub async fn breach_risks(
        &self,
        query: &RiskQuery,
        principal: &Principal,
    ) -> Result<RiskList, AppError> {
        if !principal.reads_patients() {
            return Err(crate::views::forbidden(
                principal,
                "breach risks are patient-level",
            ));
        }
        let scoped = ViewAt {
            as_of: query.at.as_of,
            known_at: query.at.known_at,
            min_position: query.at.min_position,
        };
        let visible = TrustFilter(None).within(&principal.trusts);
        let trusts = query.trusts.within(&principal.trusts);
        let as_of = self.as_of(query.at.as_of, query.at.known_at);
        self.wait_for_today(as_of, query.at.known_at, false).await;
        // A page's pathways today (the PTL asks on every redraw), under
        // today's model (learnt once, by whoever asks first or the
        // refresher: decision 220): only their clocks are read. Otherwise
        // every clock the alliance has as known then, to learn from
        // (decision 151); the rows are the caller's trusts' only.
        let todays = match (&query.pathway_ids, query.at.known_at) {
            (Some(_), None) => self.ptl_model(as_of).await?,
            _ => self.todays_model(&scoped, as_of),
        };
        let fast = match (&query.pathway_ids, todays) {
            (Some(ids), Some(model)) => self
                .pathways_observations(ids, as_of, query.at.min_position)
                .await?
                .map(|(all, position)| (all, position, model)),
            _ => None,
        };
        let (all, position, model) = match fast {
            Some(found) => found,
            None => {
                let everyone = Principal::system("breach-risk-model");
                let (all, position) = self.clock_observations(&scoped, &everyone).await?;
                let observations: Arc<Vec<Observation>> =
                    Arc::new(all.iter().map(|(_, o)| o.clone()).collect());
                let model = self.model_for(&scoped, as_of, &observations).await?;
                (all, position, model)
            }
        };
        let wanted = |id: &str, o: &Observation| {
            o.outcome == Outcome::Running
                && (query.include_breached || !o.past_target())
                && visible.allows(o.trust.as_str())
                && trusts.allows(o.trust.as_str())
                && query.tumour_site.is_none_or(|t| o.tumour_site == t)
                && query.clock.is_none_or(|k| o.kind == k)
                && query
                    .pathway_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(id))
        };
        let mut rows: Vec<RiskRow> = all
            .iter()
            .filter(|(id, o)| wanted(id, o))
            .map(|(id, o)| {
                let risk = model.risk(o);
                RiskRow {
                    pathway_id: id.clone(),
                    clock: o.kind,
                    trust: o.trust.as_str().to_string(),
                    tumour_site: o.tumour_site,
                    route: o.route,
                    start: o.start,
                    days: o.days,
                    target_days: o.target_days,
                    breach_risk: (risk.probability * 1000.0).round() / 10.0,
                    reason: risk.reason,
                }
            })
            .filter(|r| r.breach_risk >= query.min_risk)
            .collect();
        rows.sort_by(|a, b| {
            b.breach_risk
                .total_cmp(&a.breach_risk)
                .then_with(|| a.pathway_id.cmp(&b.pathway_id))
                .then_with(|| a.clock.cmp(&b.clock))
                .then_with(|| a.start.cmp(&b.start))
        });
        let total = rows.len();
        rows.truncate(query.limit.clamp(1, MAX_RISK_ROWS));
        let one = query
            .pathway_ids
            .as_ref()
            .filter(|ids| ids.len() == 1)
            .and_then(|ids| ids.iter().next());
        self.audit(
            principal,
            "breach_risks",
            one.map(String::as_str),
            Some(rows.len()),
        )?;
        Ok(RiskList {
            as_of,
            position,
            min_risk: query.min_risk,
            total,
            rows,
        })
    }
}

impl App {
    /// The clocks of `ids` as the projection holds them today (`None` when
    /// its day is not `as_of`: the caller reads every state instead).
    async fn pathways_observations(
        &self,
        ids: &std::collections::HashSet<String>,
        as_of: NaiveDate,
        min_position: Option<u64>,
    ) -> Result<Option<(Vec<(String, Observation)>, u64)>, AppError> {
        self.wait_for(min_position).await;
        let projection = self.projection.clone();
        let ids: Vec<String> = ids.iter().cloned().collect();
        self.off_workers(move || {
            let data = projection.read();
            if data.today != Some(as_of) {
                return Ok(None);
            }
            let position = projection.position().min(data.position);
            let mut found = Vec::new();
            for id in ids {
                if let Some(current) = data.state_of(&id, projection.packer())? {
                    found.extend(
                        openptl_rules::forecast::observations(&current.state)
                            .map(|o| (id.clone(), o)),
                    );
                }
            }
            Ok(Some((found, position)))
        })
        .await?
    }
}

/// An entry's risk keys under `generation`: kept, else computed by
/// `keys_of` and kept.
pub(crate) fn risk_keys(
    entry: &PtlIndexEntry,
    generation: u32,
    keys_of: impl Fn(&PtlIndexEntry) -> Result<RiskKeys, AppError>,
) -> Result<RiskKeys, AppError> {
    if let Some(keys) = entry.risk.get(generation) {
        return Ok(keys);
    }
    let keys = keys_of(entry)?;
    entry.risk.set(generation, keys);
    Ok(keys)
}

/// Computes the risk keys of every entry of `index` not yet computed under
/// `generation` (a new entry, or a new day or model), on every core.
pub(crate) fn fill_risks(
    index: &[PtlIndexEntry],
    generation: u32,
    keys_of: impl Fn(&PtlIndexEntry) -> Result<RiskKeys, AppError> + Sync,
) -> Result<(), AppError> {
    let stale: Vec<&PtlIndexEntry> = index
        .iter()
        .filter(|e| e.risk.get(generation).is_none())
        .collect();
    let failed = par_filter_map(&stale, |e| risk_keys(e, generation, &keys_of).err());
    failed.into_iter().next().map_or(Ok(()), Err)
}

impl App {
    /// Scores every PTL row under today's model ahead of the first view
    /// that sorts or filters by risk, a batch at a time so appends are
    /// never held up for long (decision 154). Rows changed meanwhile are
    /// scored by the view that needs them.
    pub(crate) async fn warm_ptl_risks(&self) -> Result<(), AppError> {
        let as_of = self.today();
        let Some(model) = self.todays_model(&ViewAt::default(), as_of) else {
            return Ok(());
        };
        let (generation, _) = self.risk_generation(as_of, &model);
        let mut from = 0;
        loop {
            let projection = self.projection.clone();
            let model = model.clone();
            let next = self
                .off_workers(move || {
                    let data = projection.read();
                    if data.today != Some(as_of) || from >= data.ptl.len() {
                        return Ok::<_, AppError>(None);
                    }
                    let to = (from + WARM_BATCH).min(data.ptl.len());
                    let packer = projection.packer();
                    fill_risks(&data.ptl[from..to], generation, |e| {
                        let current = data.state_of(&e.id, packer)?;
                        Ok(RiskKeys::of(
                            current
                                .and_then(|c| openptl_rules::forecast::row_risk(&c.state, &model))
                                .as_ref(),
                        ))
                    })?;
                    Ok(Some(to))
                })
                .await??;
            match next {
                Some(to) => from = to,
                None => return Ok(()),
            }
        }
    }
}

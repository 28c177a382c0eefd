//! Breach forecasts over the projection (issue 24): the month-end
//! projection of a standard, scoped to the caller's trusts, for today from
//! the projection's states and for any other `as_of`/`known_at` from every
//! pathway evaluated afresh (only what was known then); and the projected
//! gauges of `/metrics`.
//!
//! The model is learnt from every clock of the alliance as known on the
//! view's date (decision 150) and kept for the day: today's is learnt once
//! a day (or when the service starts) by [`refresh_periodically`], off the
//! async workers, which also keeps the all-trust projections the gauges
//! read. Nothing here writes: a forecast never changes a clock, a standard
//! or a return.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use openptl_rules::forecast::{
    self, Model, ModelOptions, MonthEndOptions, MonthEndProjection, Observation,
};
use openptl_rules::report::{self, StandardsReport};
use openptl_rules::{ClockKind, Period, TumourSite};
use prometheus::{GaugeVec, Opts, Registry};

use crate::access::Principal;
use crate::views::{TrustFilter, ViewAt};
use crate::{App, AppError};

/// How often the all-trust projections behind the gauges are recomputed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(600);

/// The standards forecast, in the gauges' order.
const STANDARDS: [ClockKind; 3] = [ClockKind::Fds, ClockKind::D31, ClockKind::D62];

/// Today's learnt model and the month's projections for every trust.
pub(crate) struct Today {
    /// The day the model was learnt for.
    date: NaiveDate,
    model: Arc<Model>,
    /// The day the projections were made on: until the new day's are
    /// made, some seconds after its model is learnt, the last day's.
    projected_on: Option<NaiveDate>,
    projections: Arc<Vec<MonthEndProjection>>,
}

/// The forecast state an [`App`] keeps: today's model, once learnt.
#[derive(Default)]
pub(crate) struct ForecastCache {
    today: Mutex<Option<Arc<Today>>>,
    /// Held while a view learns today's model for itself, so concurrent
    /// views wait for one model instead of each learning one.
    learning: tokio::sync::Mutex<()>,
    /// The generation of the PTL's risk keys (decision 154).
    ptl_risks: Mutex<RiskGeneration>,
    /// Models of past dates the PTL's past pages learnt, the latest few,
    /// each for the day it was learnt on (as today's is).
    past: Mutex<Vec<(PastKey, PastModel)>>,
}

/// A past PTL page's model and the last log position of the states it was
/// learnt from: it still holds while no later record changes a state as of
/// its date ([`crate::past::Split::unchanged_since`]).
pub(crate) type PastModel = (Arc<Model>, u64);

/// A past PTL page's model: its date, its moment, the day it was learnt.
type PastKey = (NaiveDate, Option<DateTime<Utc>>, NaiveDate);

/// Past models kept at most.
const PAST_MODELS: usize = 8;

/// Which day and model the PTL index's risk keys of `number` were
/// computed under; a new day or model is the next number.
#[derive(Default)]
struct RiskGeneration {
    number: u32,
    of: Option<(NaiveDate, Arc<Model>)>,
    /// The PTL index's change stamp when every entry was last seen scored
    /// under this generation.
    scored: Option<u64>,
}

impl ForecastCache {
    fn get(&self) -> Option<Arc<Today>> {
        self.today
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Keeps `today`, unless a model of a later day is kept already (a
    /// refresh begun before midnight, ending after it).
    fn set(&self, today: Today) {
        let mut kept = self
            .today
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.as_ref().is_none_or(|k| k.date <= today.date) {
            *kept = Some(Arc::new(today));
        }
    }

    /// Keeps `model` as the model of `date`, with the projections made
    /// last until the new ones are (unless a later day's is kept).
    fn set_model(&self, date: NaiveDate, model: Arc<Model>) {
        let (projected_on, projections) = match self.get() {
            Some(t) => (t.projected_on, t.projections.clone()),
            None => (None, Arc::default()),
        };
        self.set(Today {
            date,
            model,
            projected_on,
            projections,
        });
    }

    /// The model kept for `date`, if it is.
    fn model_of(&self, date: NaiveDate) -> Option<Arc<Model>> {
        self.get()
            .filter(|t| t.date == date)
            .map(|t| t.model.clone())
    }
}

/// What one pass over the states gives a forecast: every clock (to learn
/// from and to project) and the standard's report of the month so far.
struct Inputs {
    observations: Vec<Observation>,
    known: Vec<StandardsReport>,
}

impl App {
    /// Every clock as known on `as_of` and each standard's report of
    /// `period` so far, among the trusts and site asked for.
    async fn forecast_inputs(
        &self,
        at: &ViewAt,
        as_of: NaiveDate,
        standards: &[ClockKind],
        period: Period,
        trusts: &TrustFilter,
        tumour_site: Option<TumourSite>,
    ) -> Result<(Inputs, u64), AppError> {
        let standards = standards.to_vec();
        let trusts = trusts.clone();
        let config = self.config.clone();
        self.with_every_state(as_of, at.known_at, move |seen| {
            let mut observations = Vec::new();
            let mut counted = Vec::new();
            for s in seen {
                observations.extend(forecast::observations(s.state()));
                let site_ok = tumour_site.is_none_or(|t| s.state().tumour_site == t);
                if site_ok
                    && standards
                        .iter()
                        .any(|k| report::counts_in_standard(s.state(), *k, period))
                {
                    counted.push(s.state().clone());
                }
            }
            let known = standards
                .iter()
                .map(|k| report::standards(&counted, *k, period, &|t| trusts.allows(t), &config))
                .collect();
            Inputs {
                observations,
                known,
            }
        })
        .await
    }

    /// Learns a model from `observations`, off the async workers.
    async fn learn(observations: Arc<Vec<Observation>>) -> Result<Arc<Model>, AppError> {
        tokio::task::spawn_blocking(move || {
            Arc::new(Model::fit(observations.iter(), ModelOptions::default()))
        })
        .await
        .map_err(|e| AppError::internal(format!("learning the forecast model failed: {e}")))
    }

    /// The date the month ends behind the gauges were last projected on
    /// (`None` before the first refresh).
    pub fn forecasts_projected_on(&self) -> Option<NaiveDate> {
        self.forecasts.get().and_then(|t| t.projected_on)
    }

    /// The model a view of `as_of` uses: today's, learnt once a day, or
    /// one learnt afresh from `observations` (every clock as known then).
    pub(crate) async fn model_for(
        &self,
        at: &ViewAt,
        as_of: NaiveDate,
        observations: &Arc<Vec<Observation>>,
    ) -> Result<Arc<Model>, AppError> {
        let today = at.known_at.is_none() && as_of == self.today();
        match self.forecasts.get().filter(|t| today && t.date == as_of) {
            Some(cached) => Ok(cached.model.clone()),
            None => Self::learn(observations.clone()).await,
        }
    }

    /// The model a past PTL page of `as_of`, known at `known_at`, learnt
    /// today, if kept: the next pages of the same view (and the next
    /// manager's) move only the PTL's states instead of every one, if no
    /// record since has changed a state as of its date.
    pub(crate) fn past_model(
        &self,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
    ) -> Option<PastModel> {
        let key = (as_of, known_at, self.today());
        let past = self
            .forecasts
            .past
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        past.iter().find(|(k, _)| *k == key).map(|(_, m)| m.clone())
    }

    /// Keeps the model a past PTL page learnt (the latest
    /// [`PAST_MODELS`]; those of other days go).
    pub(crate) fn keep_past_model(
        &self,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        model: PastModel,
    ) {
        let today = self.today();
        let mut past = self
            .forecasts
            .past
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        past.retain(|((a, k, on), _)| *on == today && (*a, *k) != (as_of, known_at));
        if past.len() >= PAST_MODELS {
            past.remove(0);
        }
        past.push(((as_of, known_at, today), model));
    }

    /// Today's model, when the view is of today as known now and the
    /// model has been learnt for it.
    pub(crate) fn todays_model(&self, at: &ViewAt, as_of: NaiveDate) -> Option<Arc<Model>> {
        let today = at.known_at.is_none() && as_of == self.today();
        self.forecasts
            .get()
            .filter(|t| today && t.date == as_of)
            .map(|t| t.model.clone())
    }

    /// Today's model for a view of today as known now, learnt now (once,
    /// whoever asks: the refresher or a view) if it has not been learnt
    /// today yet (start-up, just after midnight); `None` when `as_of` is
    /// not today.
    pub(crate) async fn ptl_model(&self, as_of: NaiveDate) -> Result<Option<Arc<Model>>, AppError> {
        if let Some(model) = self.todays_model(&ViewAt::default(), as_of) {
            return Ok(Some(model));
        }
        if as_of != self.today() {
            return Ok(None);
        }
        Ok(Some(self.learn_todays_model(as_of).await?.0))
    }

    /// The model of `as_of` (today), learnt now from every clock unless it
    /// is kept, and kept at once; with the clocks and reports read for it,
    /// when they were. One learns at a time, under the learning turn, and
    /// whoever waited for it finds the model kept: views of the new day
    /// wait for the model alone, not for the month ends (decision 220).
    async fn learn_todays_model(
        &self,
        as_of: NaiveDate,
    ) -> Result<(Arc<Model>, Option<Inputs>), AppError> {
        let _turn = self.forecasts.learning.lock().await;
        if let Some(model) = self.forecasts.model_of(as_of) {
            return Ok((model, None));
        }
        let (inputs, _) = self.todays_inputs(as_of).await?;
        let observations = Arc::new(inputs.observations);
        let model = Self::learn(observations.clone()).await?;
        self.forecasts.set_model(as_of, model.clone());
        // The observations go back with the reports (the model's `Arc` is
        // gone by now, so it is the only owner).
        let observations = Arc::try_unwrap(observations).unwrap_or_else(|o| (*o).clone());
        let inputs = Inputs {
            observations,
            known: inputs.known,
        };
        Ok((model, Some(inputs)))
    }

    /// Every clock as known today and this month's report of each
    /// standard, every trust's: what the refresh learns and projects from.
    async fn todays_inputs(&self, as_of: NaiveDate) -> Result<(Inputs, u64), AppError> {
        self.forecast_inputs(
            &ViewAt::default(),
            as_of,
            &STANDARDS,
            Period::of(as_of),
            &TrustFilter(None),
            None,
        )
        .await
    }

    /// The generation of the PTL's risk keys computed under `model` on
    /// `day` (decision 154): the same as long as both are, then the next;
    /// and the PTL index's change stamp when all of it was last seen scored
    /// under it ([`App::risks_scored`]).
    pub(crate) fn risk_generation(&self, day: NaiveDate, model: &Arc<Model>) -> (u32, Option<u64>) {
        let mut kept = self.risk_generations();
        let same = kept
            .of
            .as_ref()
            .is_some_and(|(d, m)| *d == day && Arc::ptr_eq(m, model));
        if !same {
            kept.number = kept.number.wrapping_add(1).max(1);
            kept.of = Some((day, model.clone()));
            kept.scored = None;
        }
        (kept.number, kept.scored)
    }

    /// Notes that every entry of the PTL index at change stamp `stamp` has
    /// its keys for `generation`, if that is still the current one.
    pub(crate) fn risks_scored(&self, generation: u32, stamp: u64) {
        let mut kept = self.risk_generations();
        if kept.number == generation {
            kept.scored = Some(stamp);
        }
    }

    fn risk_generations(&self) -> std::sync::MutexGuard<'_, RiskGeneration> {
        self.forecasts
            .ptl_risks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The month-end projection of `standard` for `period` (the month of
    /// `as_of` when none), among the trusts asked for and the caller may
    /// see, and one tumour site if asked.
    pub async fn forecast(
        &self,
        at: &ViewAt,
        standard: ClockKind,
        period: Option<Period>,
        trusts: &TrustFilter,
        tumour_site: Option<TumourSite>,
        principal: &Principal,
    ) -> Result<(MonthEndProjection, u64), AppError> {
        let (trusts, as_of) = self.view_scope(at, trusts, principal).await;
        let period = forecast_period(period, as_of)?;
        let (inputs, position) = self
            .forecast_inputs(at, as_of, &[standard], period, &trusts, tumour_site)
            .await?;
        let observations = Arc::new(inputs.observations);
        let model = self.model_for(at, as_of, &observations).await?;
        let known = inputs
            .known
            .into_iter()
            .next()
            .expect("one standard asked for");
        let projection = tokio::task::spawn_blocking(move || {
            let include = |o: &Observation| {
                trusts.allows(o.trust.as_str()) && tumour_site.is_none_or(|t| o.tumour_site == t)
            };
            forecast::project(
                &known,
                &observations,
                &model,
                as_of,
                &include,
                MonthEndOptions::default(),
            )
        })
        .await
        .map_err(|e| AppError::internal(format!("projecting the month end failed: {e}")))?;
        Ok((projection, position))
    }

    /// Every clock the caller may see as known on the view's date, with
    /// its pathway's id (for the backtest, which follows each clock to its
    /// outcome, and for risks by pathway). Patient-level: scoped like the PTL.
    pub async fn clock_observations(
        &self,
        at: &ViewAt,
        principal: &Principal,
    ) -> Result<(Vec<(String, Observation)>, u64), AppError> {
        if !principal.reads_patients() {
            return Err(crate::views::forbidden(
                principal,
                "clocks are patient-level",
            ));
        }
        let (trusts, as_of) = self.view_scope(at, &TrustFilter(None), principal).await;
        self.with_every_state(as_of, at.known_at, move |seen| {
            seen.filter(|s| trusts.allows(s.state().trust.as_str()))
                .flat_map(|s| {
                    let id = s.id().to_string();
                    forecast::observations(s.state())
                        .map(|o| (id.clone(), o))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .await
    }

    /// Learns today's model (when the date has changed) and projects this
    /// month for every trust, for the gauges.
    pub async fn refresh_forecasts(&self) -> Result<(), AppError> {
        let started = std::time::Instant::now();
        let as_of = self.today();
        let (model, inputs) = self.learn_todays_model(as_of).await?;
        let learnt = started.elapsed();
        let inputs = match inputs {
            Some(inputs) => inputs,
            None => self.todays_inputs(as_of).await?.0,
        };
        let read = started.elapsed();
        let model_learnt = model.clone();
        let projections = tokio::task::spawn_blocking(move || {
            inputs
                .known
                .iter()
                .map(|known| {
                    forecast::project(
                        known,
                        &inputs.observations,
                        &model_learnt,
                        as_of,
                        &|_| true,
                        MonthEndOptions::default(),
                    )
                })
                .collect()
        })
        .await
        .map_err(|e| AppError::internal(format!("projecting the month end failed: {e}")))?;
        self.forecasts.set(Today {
            date: as_of,
            model,
            projected_on: Some(as_of),
            projections: Arc::new(projections),
        });
        let projected = started.elapsed();
        self.warm_ptl_risks().await?;
        tracing::info!(
            model_ms = learnt.as_millis() as u64,
            read_ms = (read - learnt).as_millis() as u64,
            project_ms = (projected - read).as_millis() as u64,
            score_ms = (started.elapsed() - projected).as_millis() as u64,
            "breach forecasts refreshed (today's model learnt unless kept, every clock read again if it was, the month ends projected, every PTL row scored)"
        );
        Ok(())
    }
}

/// Refreshes today's forecasts now, then every [`REFRESH_EVERY`] and as
/// soon as the runner has brought the states to a new day (so that the
/// first views after midnight find the day's model learnt, or wait for
/// this one rather than each learning it: decision 220), until the App is
/// dropped. A failure is logged and tried again next time.
pub async fn refresh_periodically(app: Weak<App>) {
    loop {
        let Some(strong) = app.upgrade() else { return };
        // The day this refresh is of: a failed one is tried again at the
        // next tick, not at once.
        let tried_on = strong.today();
        if let Err(e) = strong.refresh_forecasts().await {
            tracing::error!(error = %e, "the breach forecasts were not refreshed");
        }
        drop(strong);
        let due = tokio::time::Instant::now() + REFRESH_EVERY;
        while tokio::time::Instant::now() < due {
            let pause = REFRESHER_DAY_LOOK.min(due - tokio::time::Instant::now());
            tokio::time::sleep(pause).await;
            let Some(strong) = app.upgrade() else { return };
            if strong.settled_on_a_new_day(tried_on) {
                break;
            }
        }
    }
}

/// How often the refresher looks for a new day.
const REFRESHER_DAY_LOOK: Duration = Duration::from_secs(1);

impl App {
    /// Whether the date is no longer `since` and the runner has brought the
    /// states to it and built its aggregates.
    fn settled_on_a_new_day(&self, since: NaiveDate) -> bool {
        let today = self.today();
        // Never waiting for the projection: this runs on an async worker.
        today != since && self.projection.try_day() == Some((Some(today), true))
    }
}

/// The projected gauges: bounded labels only (`clock`, `trust`).
pub(crate) struct ForecastGauges {
    projected: GaugeVec,
}

impl ForecastGauges {
    pub(crate) fn register(registry: &Registry) -> ForecastGauges {
        let projected = GaugeVec::new(
            Opts::new(
                "openptl_projected_performance_percent",
                "This month's projected month-end performance (percent within target) by standard and trust: clocks stopped so far plus the expected stops of running and new clocks (issue 24; docs/forecast.md). Advisory: the standards themselves are openptl_standard_performance_percent.",
            ),
            &["clock", "trust"],
        )
        .expect("metric definitions are valid");
        registry
            .register(Box::new(projected.clone()))
            .expect("each metric is registered once");
        ForecastGauges { projected }
    }

    /// Sets every series from the latest projections (none until the first
    /// refresh; series of trusts that emptied disappear).
    pub(crate) fn set(&self, cache: &ForecastCache) {
        self.projected.reset();
        let Some(today) = cache.get() else { return };
        for projection in today.projections.iter() {
            for line in &projection.by_trust {
                if let Some(percent) = line.figure.percent {
                    self.projected
                        .with_label_values(&[projection.standard.as_str(), &line.trust])
                        .set(percent);
                }
            }
        }
    }
}

/// Months ahead of the view's month a month-end forecast may look. Its
/// cost grows with the square of the days to the month's end (each day
/// asks the chances of the days after it), so a far month is refused
/// rather than left to hold a core for minutes.
pub const FORECAST_MONTHS_AHEAD: i64 = 12;

/// The month a forecast is for: `period`, else the month of `as_of`; at
/// most [`FORECAST_MONTHS_AHEAD`] months after it.
fn forecast_period(period: Option<Period>, as_of: NaiveDate) -> Result<Period, AppError> {
    let this_month = Period::of(as_of);
    let period = period.unwrap_or(this_month);
    if period.number() - this_month.number() > FORECAST_MONTHS_AHEAD {
        return Err(AppError::InvalidQuery {
            field: "period".into(),
            problem: format!(
                "is more than {FORECAST_MONTHS_AHEAD} months after the view's month ({this_month}): \
                 a month-end forecast looks at most a year ahead"
            ),
        });
    }
    Ok(period)
}

//! The standards, FIT and milestone views of a past date, as known now,
//! or of any date as known at a past moment, answered from the cells the
//! projection keeps as of it (decisions 202 and 203,
//! [`crate::aggregates::kept_days`]).
//!
//! The first standards or FIT view of a date counts the cells of every
//! standard and month, and of every FIT month, as of it, the past views'
//! way (today's cells, less today's contributions of the pathways changed
//! since the date, plus theirs as of it: [`crate::past::Counted::Dated`]),
//! and the projection keeps them; the first milestone view of a date
//! does the same for the milestone cells of every referral month
//! ([`crate::past::Counted::Milestones`]). Views of the date asked for
//! together (the standards page asks for eighteen) wait for that one
//! count instead of each making its own; later ones sum the kept cells.
//!
//! A view as known at a moment is one of the records up to the last
//! position recorded by then: its cells are kept under that position
//! and never change (decision 203).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use openptl_rules::PathwayState;

use crate::aggregates::kept_days::{self, DayAt, DayPart};
use crate::past::{Shown, Split};
use crate::{App, AppError};

/// What the kept cells say of a view.
enum Found<R> {
    /// Its answer, and the position it is of.
    Answer(R, u64),
    /// Nothing kept (yet) as of its date.
    Nothing,
    /// Not a view they answer: as known now, not of a past date; or no
    /// aggregates of today to keep them with (a bulk change is under way).
    NotPast,
}

impl<R> Found<R> {
    /// What the view answers without a count: its answer, or `None` (not
    /// a view the kept cells answer); nothing when the date is to be
    /// counted.
    fn answer(self) -> Option<Option<(R, u64)>> {
        match self {
            Found::Answer(answer, position) => Some(Some((answer, position))),
            Found::NotPast => Some(None),
            Found::Nothing => None,
        }
    }
}

impl App {
    /// `f` over the cells of part `P` as of `as_of`, known at `known_at`
    /// (`None`: now), kept or counted now and kept (decisions 202, 203);
    /// `None` when the view is of today as known now, or past views read
    /// every history ([`App::set_past_views_read_all`]).
    pub(crate) async fn answer_from_kept_day<P: DayPart, R: Send + 'static>(
        &self,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        f: impl Fn(&P) -> R + Send + Sync + 'static,
    ) -> Result<Option<(R, u64)>, AppError> {
        if self.past_views_read_all() {
            return Ok(None);
        }
        // As known at a moment: the records up to the last position
        // recorded by then (found once, outside the lock).
        let known_to = self.known_to(known_at).await?;
        let at = DayAt { as_of, known_to };
        let f = Arc::new(f);
        if let Some(done) = self.kept_day(at, f.clone()).await?.answer() {
            return Ok(done);
        }
        // One count at a time: the views of the date asked for with this
        // one find what it kept.
        let _counting = self.counting_kept_day.lock().await;
        if let Some(done) = self.kept_day(at, f.clone()).await?.answer() {
            return Ok(done);
        }
        let split = self.split_known_to(as_of, known_at, known_to, Shown::All);
        let (cells, position) = self.count_cells::<P>(split).await?;
        let projection = self.projection.clone();
        let answer = self
            .off_workers(move || {
                let answer = f(&cells);
                let data = projection.read();
                // Kept only while nothing folded in since the count changes
                // it (each refresh from now on changes it as it goes; as
                // known at a moment, nothing does), and with today's
                // aggregates, which a bulk change drops it with.
                let current = data.aggregates.is_some()
                    && at.kept_on(data.today)
                    && split.unchanged_since(position, &data);
                if current {
                    let mut days = kept_days::lock(&data.kept_days);
                    days.keep(at, cells);
                    let (dates, cells, bytes) = days.size();
                    tracing::debug!(%as_of, ?known_to, dates, cells, kib = bytes / 1024, "cells of a past date kept");
                }
                answer
            })
            .await?;
        Ok(Some((answer, position)))
    }

    /// The cells of part `P` of the pathways a past view split `split`
    /// shows, as of its date and moment, counted from today's (the
    /// pathways that move to the date as they are passed over: `P`'s
    /// [`DayPart::COUNTED`]), and the position they are of.
    pub(crate) async fn count_cells<P: DayPart>(&self, split: Split) -> Result<(P, u64), AppError> {
        let (config, away) = (self.config.clone(), self.config.clone());
        self.fold_states(
            split,
            P::default,
            move |cells: &mut P, _, state| cells.add_state(state, &config, 1),
            P::merge,
            Some((
                P::COUNTED,
                Box::new(move |cells: &mut P, state: &PathwayState| {
                    cells.add_state(state, &away, -1)
                }),
            )),
        )
        .await
    }

    /// `f` over the cells kept at `at`, under the projection's read lock,
    /// off the async workers.
    async fn kept_day<P: DayPart, R: Send + 'static>(
        &self,
        at: DayAt,
        f: Arc<impl Fn(&P) -> R + Send + Sync + 'static>,
    ) -> Result<Found<R>, AppError> {
        let projection = self.projection.clone();
        self.off_workers(move || {
            let data = projection.read();
            let position = projection.position().min(data.position);
            if data.aggregates.is_none() || !at.kept_on(data.today) {
                return Found::NotPast;
            }
            let mut days = kept_days::lock(&data.kept_days);
            match days.get::<P>(at) {
                Some(cells) => Found::Answer(f(cells), position),
                None => Found::Nothing,
            }
        })
        .await
    }
}

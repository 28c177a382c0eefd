//! Today's aggregates and last Sunday's return built from every state,
//! when they are not kept (after a start, a restore or a bulk refresh);
//! appends keep them after ([`super::Projection::refresh`]).

use chrono::NaiveDate;

use super::{data, PathwayEntry, PathwayKey, Projection, UNPACK_SLICE};
use crate::aggregates::last_week::{self, last_sunday, LastWeek};
use crate::aggregates::{Aggregates, Contribution};
use crate::fold;
use crate::packed::Packed;
use crate::past::AsOf;
use crate::AppError;

impl Projection {
    /// Builds today's aggregates from every state when they are not kept
    /// (after a start, a restore or a bulk refresh), on every core; the
    /// runner is the only writer, so the states do not change meanwhile. A
    /// state that cannot be unpacked leaves them unbuilt (views then read
    /// the states and report it; the next refresh tries again).
    pub(super) fn build_aggregates(&self) {
        if self.read().aggregates.is_some() {
            return;
        }
        let started = std::time::Instant::now();
        let built = {
            let data = self.read();
            let today = data.today.unwrap_or_default();
            let sunday = last_sunday(today);
            let packed: Vec<(usize, &PathwayKey, &PathwayEntry, &Packed)> = data
                .pathways
                .as_slice()
                .iter()
                .enumerate()
                .filter_map(|(index, (id, p))| Some((index, id, p, p.state.as_ref()?)))
                .collect();
            let chunks: Vec<_> = packed.chunks(UNPACK_SLICE).collect();
            // One partial sum per core, each chunk added to its core's.
            let new = || {
                let partial = (Aggregates::new(today), LastWeek::default(), Vec::new());
                (partial, None)
            };
            let partials = fold::par_fold(&chunks, new, |(partial, failed), chunk| {
                if failed.is_none() {
                    *failed = self.aggregates_of(partial, chunk, today, sunday).err();
                }
            });
            let mut all = (Aggregates::new(today), LastWeek::default(), Vec::new());
            let mut failed = None;
            for ((aggregates, last, read), error) in partials {
                all.0.merge(aggregates);
                all.1.merge(last);
                all.2.extend(read);
                failed = failed.or(error);
            }
            let (aggregates, mut last, mut read) = all;
            // The pathways whose state cannot be moved to the Sunday, read
            // back as a past view of it reads them.
            read.sort_unstable_by_key(|(_, positions)| positions.first().copied());
            let from_histories = match failed {
                Some(e) => Err(e),
                None => fold::fold_pathways(
                    self.log.as_ref(),
                    &self.runtime,
                    data.position,
                    &read,
                    |_, history| {
                        history
                            .map(|h| last_week::cells_of_history(h, sunday, &self.config))
                            .unwrap_or_default()
                    },
                ),
            };
            from_histories.map(|cells| {
                for cells in &cells {
                    last.apply(cells, 1);
                }
                (aggregates, last, read.len())
            })
        };
        match built {
            Ok((mut aggregates, last, read)) => {
                aggregates.shrink_to_fit();
                let cells = aggregates.cells();
                let (clock_strata, clock_bytes) = aggregates.clocks_kept();
                let last_week_cells = last.len();
                let mut data = self.write();
                data.aggregates = Some(aggregates);
                data.last_week = Some(last);
                drop(data);
                tracing::info!(
                    cells,
                    last_week_cells,
                    last_week_read = read,
                    clock_strata,
                    clock_kib = clock_bytes / 1024,
                    ms = started.elapsed().as_millis() as u64,
                    "today's aggregates built from every state"
                );
            }
            Err(e) => tracing::error!(error = %e, "today's aggregates not built"),
        }
    }

    /// Adds to `partial` today's aggregates and last Sunday's return of
    /// the pathways of `chunk` (index, id, entry, state) evaluated on
    /// `today`, and those whose state cannot be moved to `sunday` (to read
    /// back).
    fn aggregates_of(
        &self,
        (partial, last, read): &mut (Aggregates, LastWeek, Vec<fold::PathwayRecords>),
        chunk: &[(usize, &PathwayKey, &PathwayEntry, &Packed)],
        today: NaiveDate,
        sunday: NaiveDate,
    ) -> Result<(), AppError> {
        let week = (sunday, crate::past::Shown::week(sunday));
        for (index, id, entry, packed) in chunk {
            let current = self.packer.current(packed).map_err(data::unpack_failed)?;
            let from = packed.on_ptl_settled_from().1;
            let contribution = Contribution::of(&current, from, today, &self.config);
            partial.apply(*index, &contribution, 1);
            match crate::past::moved_as_of(packed, today, week, &self.packer, &current.state)? {
                AsOf::Moved(state) => last.apply(&last_week::cells_of(&state, sunday), 1),
                AsOf::NotShown => {}
                AsOf::Read => read.push(((*id).clone(), entry.positions.to_vec())),
            }
        }
        Ok(())
    }
}

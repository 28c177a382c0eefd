//! The projected data behind the projection's lock: pathways, their packed
//! states and PTL keys, and reading states and histories out of it.

use super::*;

/// Pathways a core takes at a time in [`ProjectionData::fold_states_at`].
const FOLD_AT_SLICE: usize = 4096;

/// `items`' packed states unpacked, a slice at a time on every core.
pub(super) fn unpack_all<'a, K: Copy + Send + Sync + 'a>(
    items: Vec<(K, &'a Packed)>,
    packer: &'a Packer,
) -> impl Iterator<Item = (K, Result<Current, AppError>)> + 'a {
    let n = items.len();
    (0..n).step_by(UNPACK_SLICE).flat_map(move |start| {
        let slice = &items[start..(start + UNPACK_SLICE).min(n)];
        par_filter_map(slice, |(key, packed)| {
            Some((*key, packer.current(packed).map_err(unpack_failed)))
        })
    })
}

pub(crate) fn unpack_failed(e: crate::packed::Unreadable) -> AppError {
    AppError::Internal(openptl_log::Failure::caused_by(
        "a projected pathway state",
        e,
    ))
}

/// The next stamp of a PTL index change, process-wide, so a rebuilt or
/// restored projection never repeats one an older one gave.
pub(crate) fn next_ptl_stamp() -> u64 {
    static STAMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    STAMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

impl ProjectionData {
    /// Drops today's aggregates and last Sunday's return with them: they
    /// are built afresh from every state after the refresh.
    pub(super) fn drop_aggregates(&mut self) {
        self.aggregates = None;
        self.last_week = None;
        self.kept_days_mut().clear();
    }

    /// The date the events of the pathway at `index` are settled by, as
    /// its state keeps it ([`Packed::on_ptl_settled_from`]).
    pub(crate) fn settled_from(&self, index: usize) -> Option<NaiveDate> {
        let (_, entry) = self.pathways.as_slice().get(index)?;
        entry.state.as_ref()?.on_ptl_settled_from().1
    }

    /// The cells kept as of past dates, without locking (the write lock
    /// is held).
    pub(super) fn kept_days_mut(&mut self) -> &mut KeptDays {
        kept_days::unpoisoned(&mut self.kept_days)
    }

    /// Every evaluated pathway's id and current state, unpacked a slice at
    /// a time on every core as the iteration goes. With a `window` (first
    /// and last day), states holding no date in it are left out: no report
    /// over a period inside the window counts them
    /// ([`openptl_rules::PathwayState::date_span`]).
    pub fn states<'a>(
        &'a self,
        packer: &'a Packer,
        window: Option<(NaiveDate, NaiveDate)>,
    ) -> impl Iterator<Item = (&'a str, Result<Current, AppError>)> + 'a {
        let inside = move |packed: &Packed| {
            window.is_none_or(|(first, last)| {
                let (earliest, latest) = packed.span();
                latest >= first && earliest <= last
            })
        };
        let packed = self
            .pathways
            .iter()
            .filter_map(|(id, p)| Some((&**id, p.state.as_ref()?)))
            .filter(|(_, packed)| inside(packed))
            .collect();
        unpack_all(packed, packer)
    }

    /// `add` over the states of the pathways at `indexes` (those not
    /// evaluated passed over), a slice at a time on every core: one `A`
    /// per slice, started by `start`, in the order of `indexes`.
    pub fn fold_states_at<A: Send>(
        &self,
        indexes: &[usize],
        packer: &Packer,
        start: impl Fn() -> A + Sync,
        add: impl Fn(&mut A, &str, &PathwayState) + Sync,
    ) -> Result<Vec<A>, AppError> {
        let entries = self.pathways.as_slice();
        let slices: Vec<&[usize]> = indexes.chunks(FOLD_AT_SLICE).collect();
        crate::fold::par_batches(&slices, |slice| {
            let mut acc = start();
            for i in *slice {
                let Some((id, entry)) = entries.get(*i) else {
                    continue;
                };
                let Some(packed) = entry.state.as_ref() else {
                    continue;
                };
                match packer.current(packed) {
                    Ok(current) => add(&mut acc, id, &current.state),
                    Err(e) => return Some(Err(unpack_failed(e))),
                }
            }
            Some(Ok(acc))
        })
        .into_iter()
        .collect()
    }

    /// The pathways on the PTL with their states (unpacked as
    /// [`ProjectionData::states`] does).
    pub fn ptl_states<'a>(
        &'a self,
        packer: &'a Packer,
    ) -> impl Iterator<Item = (&'a PtlIndexEntry, Result<Current, AppError>)> + 'a {
        let packed = self
            .ptl
            .iter()
            .filter_map(|e| Some((e, self.pathways.get(&e.id)?.state.as_ref()?)))
            .collect();
        unpack_all(packed, packer)
    }

    /// A pathway's state and version, unpacked (`None` when not evaluated).
    pub fn state_of(&self, id: &str, packer: &Packer) -> Result<Option<Current>, AppError> {
        let Some(packed) = self.pathways.get(id).and_then(|p| p.state.as_ref()) else {
            return Ok(None);
        };
        packer.current(packed).map(Some).map_err(unpack_failed)
    }

    /// Fresh copies of every packed state, in the order the map yields them,
    /// for [`ProjectionData::lay_out`].
    ///
    /// After a bulk refresh or a restore the packed states lie scattered
    /// among the freed memory of the histories evaluated meanwhile, which
    /// keeps those pages resident; copied afresh and in map order, they sit
    /// together (measured at 1.4M pathways: 180 MB less resident) and a
    /// view of every state reads memory in order.
    pub(super) fn laid_out(&self) -> Vec<Packed> {
        self.pathways
            .values()
            .filter_map(|p| p.state.clone())
            .collect()
    }

    /// Puts `fresh` (from [`ProjectionData::laid_out`] on this map,
    /// unchanged since) in place; gives back the old copies, to be freed
    /// outside the lock.
    pub(super) fn lay_out(&mut self, fresh: Vec<Packed>) -> Vec<Packed> {
        let mut fresh = fresh.into_iter();
        let mut old = Vec::with_capacity(fresh.len());
        for p in self.pathways.values_mut() {
            if let Some(packed) = &mut p.state {
                match fresh.next() {
                    Some(copy) => old.push(std::mem::replace(packed, copy)),
                    None => break,
                }
            }
        }
        old
    }

    /// Refuses a record that is not the next of the log.
    pub(super) fn expect_next(&self, record: &StoredRecord) -> Result<(), AppError> {
        if record.position == self.position + 1 {
            return Ok(());
        }
        Err(AppError::internal(format!(
            "projection expected position {} but the log gave {}",
            self.position + 1,
            record.position
        )))
    }

    /// Folds the next record in: its position joins its pathway (one
    /// look-up for a known pathway), which is marked for re-evaluation.
    pub(super) fn add_position(&mut self, record: &StoredRecord) {
        self.position = record.position;
        let stream = record.stream_id.as_str();
        match self.pathways.get_mut(stream) {
            Some(entry) => {
                entry.positions.push(record.position);
                // A second look-up only for a pathway not yet marked.
                if !self.dirty.contains(stream) {
                    if let Some((id, _)) = self.pathways.get_key_value(stream) {
                        self.dirty.insert(id.clone());
                    }
                }
            }
            None => {
                let id = PathwayKey::from(stream);
                let entry = PathwayEntry {
                    positions: Positions::from_slice(&[record.position]),
                    trusts: None,
                    state: None,
                };
                self.pathways.insert(id.clone(), entry);
                self.dirty.insert(id);
            }
        }
    }

    /// Sets a pathway's evaluated state and trusts and keeps its place in
    /// the PTL index (a refresh's way in; a fold from nothing and a restore
    /// use [`ProjectionData::put_whole`]; both end in `install_at`, the one
    /// place a state is installed).
    pub(super) fn install(
        &mut self,
        id: &PathwayKey,
        current: Option<Kept>,
        trusts: Option<(impl AsRef<str>, Vec<impl AsRef<str>>)>,
    ) {
        if let Some(index) = self.pathways.find(id) {
            self.install_at(index, current, trusts);
        }
    }

    /// Puts a pathway in with its records' positions, its evaluated state
    /// and trusts (a fold from nothing and a restore, which know every
    /// pathway's whole history at once).
    pub(super) fn put_whole(
        &mut self,
        id: PathwayKey,
        positions: Positions,
        current: Option<Kept>,
        trusts: Option<(impl AsRef<str>, Vec<impl AsRef<str>>)>,
    ) {
        let entry = PathwayEntry {
            positions,
            trusts: None,
            state: None,
        };
        let index = self.pathways.insert(id, entry);
        self.install_at(index, current, trusts);
    }

    /// [`ProjectionData::install`] for the pathway at `index` (known from
    /// putting the pathway in, [`ProjectionData::put_whole`]). The trust codes are
    /// interned, so they may be borrowed (a restore's, from the snapshot).
    fn install_at(
        &mut self,
        index: usize,
        current: Option<Kept>,
        trusts: Option<(impl AsRef<str>, Vec<impl AsRef<str>>)>,
    ) {
        let trusts = trusts.map(|(now, ever)| self.trust_sets.shared(now.as_ref(), &ever));
        self.pathways.at_mut(index).1.trusts = trusts;
        self.install_state_at(index, current);
    }

    /// Puts the state of the pathway at `index` in place (and on or off
    /// the PTL), its trusts as they were: a state moved to a new day
    /// (decision 219).
    pub(super) fn install_state_at(&mut self, index: usize, current: Option<Kept>) {
        let (id, entry) = self.pathways.at_mut(index);
        let id = id.clone();
        let (state, on_ptl) = match current {
            Some(Kept { packed, keys }) => {
                let version = packed.version();
                let row = keys.map(|keys| PtlIndexEntry::new(keys, id.clone(), version));
                (Some(packed), row)
            }
            None => (None, None),
        };
        entry.state = state;
        if on_ptl.is_some() {
            self.ptl_changed = next_ptl_stamp();
        }
        match on_ptl {
            Some(row) => self.ptl_slot.put(&mut self.ptl, row),
            None => self.ptl_slot.take(&mut self.ptl, &id),
        }
    }
}

/// A pathway's records read back by position, refused if one belongs to
/// another stream (positions that disagree with the log must never put
/// another patient's events in a history).
pub(super) fn own_records(
    id: &str,
    records: Result<Vec<StoredRecord>, openptl_log::LogError>,
) -> Result<Vec<StoredRecord>, AppError> {
    let records = records.map_err(AppError::from)?;
    match records.iter().find(|r| r.stream_id != id) {
        Some(other) => Err(AppError::internal(format!(
            "position {} holds another stream's record",
            other.position
        ))),
        None => Ok(records),
    }
}

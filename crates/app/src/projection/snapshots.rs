//! Snapshots of the projection: writing one (periodically and at shutdown),
//! reading one ahead at start, and restoring the projection from it.

use super::*;
use crate::snapshot::NotUsed;

impl Projection {
    /// The position a snapshot restored the projection to at start, if one did.
    pub fn restored_at(&self) -> Option<u64> {
        *self
            .restored_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Why the snapshot was not used at start, if it was not.
    pub fn snapshot_refused(&self) -> Option<String> {
        self.snapshot_refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Writes a snapshot of the evaluated states (blocking: call from a
    /// blocking thread). `None` when there is no snapshot path or nothing
    /// settled to write (pathways waiting to be evaluated, or an empty log).
    pub fn write_snapshot(&self) -> Result<Option<SnapshotWritten>, AppError> {
        let Some(path) = &self.snapshot_path else {
            return Ok(None);
        };
        let _turn = self
            .writing_snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Copy out under the read lock (ids, positions, packed states),
        // decode, encode and write outside it.
        type Item = (
            PathwayKey,
            Positions,
            Option<Arc<Trusts>>,
            Option<(Packed, bool)>,
        );
        let (position, today, items) = {
            let data = self.read();
            let Some(today) = data.today else {
                return Ok(None);
            };
            if !data.dirty.is_empty() || data.position == 0 {
                return Ok(None);
            }
            let items: Vec<Item> = data
                .pathways
                .iter()
                .map(|(id, p)| {
                    (
                        id.clone(),
                        p.positions.clone(),
                        p.trusts.clone(),
                        p.state
                            .clone()
                            .map(|s| (s, data.ptl_slot.get(&data.ptl, id).is_some())),
                    )
                })
                .collect();
            (data.position, today, items)
        };
        let stored = self
            .runtime
            .block_on(self.log.read_positions(&[position]))
            .map_err(AppError::from)?;
        let event_id = stored
            .first()
            .map(|r| r.event_id)
            .ok_or_else(|| AppError::internal(format!("position {position} is not stored")))?;
        let header =
            snapshot::Header::new(&self.config, position, event_id, today, items.len() as u64);
        let chunks = items.chunks(snapshot::CHUNK).map(|chunk| {
            chunk
                .iter()
                .map(|(id, positions, trusts, current)| StoredPathway {
                    id: Cow::Borrowed(&**id),
                    positions: positions.to_vec(),
                    trusts: trusts.as_ref().map(|t| {
                        (
                            Cow::Borrowed(&*t.current),
                            t.ever.iter().map(|e| Cow::Borrowed(&**e)).collect(),
                        )
                    }),
                    state: current.as_ref().map(|(packed, on_ptl)| StoredState {
                        on_ptl: *on_ptl,
                        packed: Cow::Borrowed(packed.as_bytes()),
                    }),
                })
                .collect()
        });
        let bytes = snapshot::write(path, &header, chunks).map_err(|e| {
            AppError::storage(format!(
                "writing the projection snapshot {}: {e}",
                path.display()
            ))
        })?;
        if let Some(store) = &self.replaced {
            store.note_snapshot(position, event_id);
        }
        Ok(Some(SnapshotWritten {
            position,
            pathways: items.len(),
            bytes,
        }))
    }

    /// Restores the projection from its snapshot when the snapshot belongs
    /// to this log, binary and rules (blocking). Gives the position restored
    /// to, or why the snapshot was not used. Uses the snapshot read ahead by
    /// a [`SnapshotPreload`] when there is one.
    pub(super) fn restore(&self) -> Result<u64, NotUsed> {
        let path = self.snapshot_path.as_ref().ok_or("no snapshot path")?;
        let started = std::time::Instant::now();
        let preload = self
            .preload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let prepared = match preload {
            Some(preload) => preload
                .0
                .join()
                .map_err(|_| NotUsed::from("reading it panicked"))??,
            None => prepare_snapshot(path, &self.config)?,
        };
        let waited = started.elapsed();
        let PreparedSnapshot {
            header,
            data,
            took,
            decoding,
            installing,
        } = prepared;
        if header.position > self.log.head() {
            return Err("it is ahead of the log".into());
        }
        let stored = self
            .runtime
            .block_on(self.log.read_positions(&[header.position]))?;
        if stored.first().map(|r| *r.event_id.as_bytes()) != Some(header.event_id) {
            return Err("it belongs to another log".into());
        }
        let checked = started.elapsed();
        *self.write() = data;
        // Recorded before publishing: whoever waits for the position may ask.
        *self
            .restored_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(header.position);
        self.published.send_replace(header.position);
        // Serving from here. The packed states, decoded among the garbage
        // of the snapshot's decoding, are copied together afterwards, as
        // after a bulk refresh (see `refresh`).
        let fresh = self.read().laid_out();
        let old = self.write().lay_out(fresh);
        drop(old);
        // Today's cells (views read the states until they are built).
        self.build_aggregates();
        self.read_record_days(header.position);
        tracing::info!(
            prepared_in_ms = took.as_millis() as u64,
            decoding_on_every_core_ms = decoding.as_millis() as u64,
            installed_ms = installing.as_millis() as u64,
            waited_for_it_ms = waited.as_millis() as u64,
            checked_ms = (checked - waited).as_millis() as u64,
            laid_out_after_ms = (started.elapsed() - checked).as_millis() as u64,
            "projection snapshot installed"
        );
        Ok(header.position)
    }
}

/// A pathway as restored from a snapshot: id, positions, trusts (borrowed
/// from the snapshot's bytes until interned), state.
type RestoredPathway<'a> = (
    PathwayKey,
    Vec<u64>,
    Option<snapshot::StoredTrusts<'a>>,
    Option<Kept>,
);

/// A snapshot read, decoded and installed into a projection's data of its
/// own, and found to fit this binary and rules and to hold together; not
/// yet checked against the log (its position and event id), so nothing
/// serves from it until [`Projection::restore`] has.
pub struct PreparedSnapshot {
    header: snapshot::Header,
    data: ProjectionData,
    /// How long reading, decoding and installing it took.
    took: std::time::Duration,
    /// The time its chunks took to decode, summed over the cores.
    decoding: std::time::Duration,
    /// The time its pathways took to install (on the read-ahead thread).
    installing: std::time::Duration,
}

impl PreparedSnapshot {
    /// How many pathways it installed.
    #[cfg(test)]
    pub(super) fn pathways(&self) -> usize {
        self.data.pathways.len()
    }
}

/// A snapshot being read, decoded and installed on a thread of its own,
/// started before the log is opened so that the two overlap at start-up
/// (decision 216).
pub struct SnapshotPreload(std::thread::JoinHandle<Result<PreparedSnapshot, NotUsed>>);

impl SnapshotPreload {
    /// Starts reading the snapshot at `path`, if there is one.
    pub fn start(path: PathBuf, config: RulesConfig) -> Option<SnapshotPreload> {
        if !path.exists() {
            return None;
        }
        std::thread::Builder::new()
            .name("openptl-snapshot-read".into())
            .spawn(move || prepare_snapshot(&path, &config))
            .ok()
            .map(SnapshotPreload)
    }
}

/// Reads a snapshot, checks it was written by this binary under these
/// rules, decodes its pathways (in parallel) and installs them.
pub(super) fn prepare_snapshot(
    path: &Path,
    config: &RulesConfig,
) -> Result<PreparedSnapshot, NotUsed> {
    if !path.exists() {
        return Err("none written yet".into());
    }
    let started = std::time::Instant::now();
    let read = snapshot::read(path)?;
    let header = read.header.clone();
    let expected = snapshot::Header::new(
        config,
        header.position,
        uuid::Uuid::from_bytes(header.event_id),
        header.today().ok_or("its date is out of range")?,
        header.pathways,
    );
    if header.format != expected.format {
        // Newer or older, a snapshot is derived: ignored, and the log folded
        // (decision 92); the next snapshot written replaces it.
        return Err(format!(
            "it has format {} (this binary reads format {})",
            header.format,
            snapshot::FORMAT
        )
        .into());
    }
    if header.binary != expected.binary {
        return Err(format!("it was written by build {}", header.binary).into());
    }
    if header.rules != expected.rules {
        return Err("the rules configuration has changed since".into());
    }
    let packer = Packer::new(config);
    // Each chunk is installed as soon as it and those before it are
    // decoded: the install (this thread) overlaps the decoding (a thread a
    // core) and the log's open.
    let mut installing = Installing::new(&header);
    let (mut decoding, mut installing_took) = (Duration::ZERO, Duration::ZERO);
    crate::fold::par_batches_in_order(
        &read.chunks(),
        |bytes| {
            let started = std::time::Instant::now();
            let chunk = snapshot::decode_chunk(bytes).and_then(|chunk| {
                chunk
                    .into_iter()
                    .map(|p| restored(p, &packer, config))
                    .collect::<Result<Vec<_>, _>>()
            });
            (chunk, started.elapsed())
        },
        |(chunk, took)| {
            decoding += took;
            let started = std::time::Instant::now();
            let added = chunk?.into_iter().try_for_each(|p| installing.add(p));
            installing_took += started.elapsed();
            added
        },
    )?;
    let data = installing.finish()?;
    Ok(PreparedSnapshot {
        header,
        data,
        took: started.elapsed(),
        decoding,
        installing: installing_took,
    })
}

/// A pathway of a snapshot's chunk, its PTL keys made again from its row
/// when it is on the PTL.
fn restored<'a>(
    p: StoredPathway<'a>,
    packer: &Packer,
    config: &RulesConfig,
) -> Result<RestoredPathway<'a>, NotUsed> {
    let current = p
        .state
        .map(|stored| {
            let packed = Packed::from_bytes(&stored.packed)?;
            if !stored.on_ptl {
                return Ok::<_, NotUsed>(Kept { packed, keys: None });
            }
            let (state, _) = packer.unpack(&packed)?;
            let keys = PtlRow::of(&state, config).as_ref().map(PtlKeys::of);
            Ok(Kept { packed, keys })
        })
        .transpose()?;
    Ok((PathwayKey::from(&*p.id), p.positions, p.trusts, current))
}

/// A projection's data being filled with a snapshot's pathways, each
/// checked to hold together: positions in order and none beyond the
/// snapshot's, as many records as the log holds up to it and as many
/// pathways as its header says (an id given twice is one pathway).
struct Installing<'a> {
    header: &'a snapshot::Header,
    data: ProjectionData,
    records: u64,
}

impl<'a> Installing<'a> {
    fn new(header: &'a snapshot::Header) -> Installing<'a> {
        let mut data = ProjectionData {
            position: header.position,
            today: header.today(),
            ..ProjectionData::default()
        };
        data.pathways
            .reserve(usize::try_from(header.pathways).unwrap_or(0).min(1 << 24));
        Installing {
            header,
            data,
            records: 0,
        }
    }

    fn add(&mut self, pathway: RestoredPathway) -> Result<(), NotUsed> {
        let (id, positions, trusts, current) = pathway;
        self.records += positions.len() as u64;
        if positions.last().is_some_and(|p| *p > self.header.position) {
            return Err("a pathway lies beyond its position".into());
        }
        if positions.windows(2).any(|w| w[0] >= w[1]) || positions.first() == Some(&0) {
            return Err("a pathway's positions are out of order".into());
        }
        self.data
            .put_whole(id, Positions::from_slice(&positions), current, trusts);
        Ok(())
    }

    fn finish(self) -> Result<ProjectionData, NotUsed> {
        if self.records != self.header.position
            || self.data.pathways.len() as u64 != self.header.pathways
        {
            return Err("its pathways do not account for every record".into());
        }
        Ok(self.data)
    }
}

//! The writer thread of the segment log: it owns the open segment, takes
//! every queued request at once (group commit), checks and writes the group
//! with one `write`, `fdatasync`s, and only then answers; a failed write is
//! taken back before anyone is answered (decision 72).

use super::*;

/// About how many bytes a request's records take in a segment.
pub(super) fn request_bytes(request: &Request) -> usize {
    request
        .batch
        .iter()
        .map(|r| r.payload.len() + r.stream_id.len() + r.event_type.len() + r.actor.len() + 128)
        .sum()
}

pub(super) struct Request {
    pub(super) batch: Vec<NewRecord>,
    pub(super) reply: oneshot::Sender<Result<Vec<Appended>, LogError>>,
}

/// Records another log stored, to store as they are.
pub(super) struct Verbatim {
    pub(super) records: Vec<StoredRecord>,
    pub(super) reply: oneshot::Sender<Result<(), LogError>>,
}

/// What the writer is asked to do.
pub(super) enum Job {
    Append(Request),
    Verbatim(Verbatim),
}

/// The single writer: owns the open segment, the hash chain and the head.
pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) file: File,
    pub(super) segment: u32,
    pub(super) segment_len: u64,
    pub(super) head: u64,
    pub(super) last_hash: Hash,
    pub(super) last_time: Option<DateTime<Utc>>,
    /// Stream versions of the streams written lately (filled lazily from
    /// the index, cleared when it grows past `CACHED_STREAM_VERSIONS`).
    pub(super) versions: HashMap<String, u64>,
    /// Set when something that only a restart mends went wrong (a failed
    /// write that could not be taken back, a refused index write, damage):
    /// nothing more is accepted.
    pub(super) failed: Option<String>,
    /// Set while writes fail (a full disk, say) and were taken back: each
    /// group still tries, and a probe every [`PROBE_EVERY`] clears it once
    /// the disk takes writes again.
    pub(super) failing: Option<String>,
    pub(super) segment_bytes: u64,
    /// Where each written group's index entries go.
    pub(super) indexer: mpsc::SyncSender<IndexJob>,
}

impl Writer {
    pub(super) fn run(&mut self, jobs: mpsc::Receiver<Job>) {
        loop {
            let first = if self.failing.is_some() {
                match jobs.recv_timeout(PROBE_EVERY) {
                    Ok(job) => job,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.probe();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            };
            let first = match first {
                Job::Append(request) => request,
                Job::Verbatim(job) => {
                    self.store_verbatim(job);
                    continue;
                }
            };
            let mut bytes = request_bytes(&first);
            let mut group = vec![first];
            let mut after = None;
            while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
                match jobs.try_recv() {
                    Ok(Job::Append(r)) => {
                        bytes += request_bytes(&r);
                        group.push(r);
                    }
                    Ok(Job::Verbatim(job)) => {
                        after = Some(job);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit(group);
            if let Some(job) = after {
                self.store_verbatim(job);
            }
        }
    }

    pub(super) fn store_verbatim(&mut self, job: Verbatim) {
        let result = self.write_verbatim(job.records);
        let _ = job.reply.send(result);
    }

    /// Stores records as another log stored them, extending the hash chain.
    pub(super) fn write_verbatim(&mut self, records: Vec<StoredRecord>) -> Result<(), LogError> {
        if let Some(refused) = self.refusal() {
            return Err(refused);
        }
        let Some(last) = records.last() else {
            return Ok(());
        };
        let (head, last_time) = (last.position, last.recorded_at);
        let mut versions: HashMap<String, u64> = HashMap::new();
        for r in &records {
            if !versions.contains_key(&r.stream_id) {
                let v = self.version_of(&r.stream_id)?;
                versions.insert(r.stream_id.clone(), v);
            }
        }
        // A look-up that fails refuses the records (taken for "not stored",
        // an event would be stored twice).
        let mut stored = std::collections::HashSet::new();
        for (index, r) in records.iter().enumerate() {
            if let Some(why) = record::unfit(&r.stream_id, &r.event_type, &r.actor, r.payload.len())
            {
                return Err(LogError::storage(format!(
                    "record {index} cannot be stored: {why}"
                )));
            }
            if self.shared.position_of_event(&r.event_id)?.is_some() {
                stored.insert(r.event_id);
            }
        }
        check_verbatim(
            &records,
            self.head,
            |s| versions.get(s).copied().unwrap_or(0),
            |id| stored.contains(id),
        )?;
        // Stored as one batch: begun with its mark when it holds more than
        // one record (decision 189).
        let mut buffer = Vec::new();
        if records.len() > 1 {
            record::encode_mark(head, &mut buffer);
        }
        let mut hash = self.last_hash;
        let mut new = Vec::with_capacity(records.len());
        for r in records {
            let offset = buffer.len() as u64;
            hash = record::encode(&r, &hash, &mut buffer);
            versions.insert(r.stream_id.clone(), r.version);
            new.push((r, offset));
        }
        self.write_durably(&buffer, &new)?;
        self.head = head;
        self.last_hash = hash;
        self.last_time = Some(self.last_time.map_or(last_time, |t| t.max(last_time)));
        self.versions.extend(versions);
        self.shared.publish(head, hash);
        Ok(())
    }

    pub(super) fn version_of(&mut self, stream: &str) -> Result<u64, LogError> {
        if let Some(v) = self.versions.get(stream) {
            return Ok(*v);
        }
        let v = self.shared.stream_version(stream)?;
        self.versions.insert(stream.to_string(), v);
        Ok(v)
    }

    /// Why no write is accepted any more (a failed segment write, or sled
    /// refusing the indexer), if that is so: the one check of both write paths.
    pub(super) fn refusal(&mut self) -> Option<LogError> {
        if self.failed.is_none() {
            if let Some(reason) = self
                .shared
                .index_failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
            {
                self.failed = Some(format!("the index could not be written: {reason}"));
            } else if let Some(damage) = self.shared.damage() {
                self.failed = Some(format!("the log is damaged: {damage}"));
            }
        }
        self.failed
            .as_ref()
            .map(|reason| LogError::storage(format!("the log stopped accepting writes: {reason}")))
    }

    pub(super) fn commit(&mut self, group: Vec<Request>) {
        if let Some(refused) = self.refusal() {
            for request in group {
                let _ = request.reply.send(Err(refused.clone()));
            }
            return;
        }
        // Stored with microsecond precision: answer with exactly what is stored.
        let now = DateTime::<Utc>::from_timestamp_micros(Utc::now().timestamp_micros())
            .expect("now is in range");
        let recorded_at = self.last_time.map_or(now, |t| now.max(t));
        let mut buffer: Vec<u8> = Vec::new();
        let mut hash = self.last_hash;
        let mut head = self.head;
        let mut group_versions: HashMap<String, u64> = HashMap::new();
        // Event id → index in `new_records`, for look-ups within the group.
        let mut group_events: HashMap<Uuid, usize> = HashMap::new();
        // Each record and its offset in `buffer`.
        let mut new_records: Vec<(StoredRecord, u64)> = Vec::new();
        // Each request's reply channel and its outcome.
        type Reply = Result<Vec<Appended>, LogError>;
        let mut results: Vec<(oneshot::Sender<Reply>, Reply)> = Vec::with_capacity(group.len());
        for request in group {
            // Look-ups see the committed log plus earlier requests of this group.
            let mut lookup_error = None;
            let streams: Vec<String> = request.batch.iter().map(|r| r.stream_id.clone()).collect();
            for stream in streams {
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    group_versions.entry(stream)
                {
                    match self.version_of(slot.key()) {
                        Ok(v) => {
                            slot.insert(v);
                        }
                        Err(e) => lookup_error = Some(e),
                    }
                }
            }
            // The records of its event ids already stored, looked up before
            // planning: a look-up that fails fails the request (taken for
            // "not stored", the event would be stored twice).
            let mut stored = HashMap::new();
            for (index, r) in request.batch.iter().enumerate() {
                if let Some(why) =
                    record::unfit(&r.stream_id, &r.event_type, &r.actor, r.payload.len())
                {
                    lookup_error = Some(LogError::storage(format!(
                        "record {index} of the batch cannot be stored: {why}"
                    )));
                }
            }
            for id in request.batch.iter().map(|r| r.event_id) {
                if lookup_error.is_some() || group_events.contains_key(&id) {
                    continue;
                }
                match self.shared.stored_event(&id) {
                    Ok(Some(record)) => {
                        stored.insert(id, record);
                    }
                    Ok(None) => {}
                    Err(e) => lookup_error = Some(e),
                }
            }
            let plan = match lookup_error {
                Some(e) => Err(e),
                None => plan_batch(
                    &request.batch,
                    |stream| group_versions.get(stream).copied().unwrap_or(0),
                    |id| match group_events.get(id) {
                        Some(i) => Some(new_records[*i].0.clone()),
                        None => stored.get(id).cloned(),
                    },
                ),
            };
            let plan = match plan {
                Ok(plan) => plan,
                Err(e) => {
                    results.push((request.reply, Err(e)));
                    continue;
                }
            };
            // A batch of more than one new record begins with its mark,
            // naming the position its last record will have (decision
            // 189); one of a single record needs none: it is whole or torn.
            let new = plan
                .iter()
                .filter(|p| matches!(p, Planned::New { .. }))
                .count() as u64;
            if new > 1 {
                record::encode_mark(head + new, &mut buffer);
            }
            let out = apply_plan(request.batch, plan, &mut head, recorded_at, |stored| {
                let offset = buffer.len() as u64;
                hash = record::encode(&stored, &hash, &mut buffer);
                group_versions.insert(stored.stream_id.clone(), stored.version);
                group_events.insert(stored.event_id, new_records.len());
                new_records.push((stored, offset));
            });
            results.push((request.reply, Ok(out)));
        }

        if !new_records.is_empty() {
            if let Err(e) = self.write_durably(&buffer, &new_records) {
                for (reply, _) in results {
                    let _ = reply.send(Err(e.clone()));
                }
                return;
            }
            self.head = head;
            self.last_hash = hash;
            self.last_time = Some(recorded_at);
            // A cache of the streams written lately, not of every stream.
            if self.versions.len() > CACHED_STREAM_VERSIONS {
                self.versions.clear();
            }
            self.versions.extend(group_versions);
            self.shared.publish(head, hash);
        }
        for (reply, result) in results {
            let _ = reply.send(result);
        }
    }

    /// Writes the group, fdatasyncs, then indexes it. Only after this returns
    /// Ok may any request of the group be answered. A write that fails is
    /// taken back before the error is returned ([`Writer::take_back`]): a
    /// group that was not acknowledged leaves nothing behind.
    pub(super) fn write_durably(
        &mut self,
        buffer: &[u8],
        records: &[(StoredRecord, u64)],
    ) -> Result<(), LogError> {
        if self.segment_len > 0 && self.segment_len + buffer.len() as u64 > self.segment_bytes {
            self.roll_over().map_err(|e| self.failing(e))?;
        }
        if self.segment_len + buffer.len() as u64 > u64::from(u32::MAX) {
            // Unreachable with bounded groups (MAX_GROUP_BYTES); refused
            // before anything is written rather than unindexable.
            return Err(LogError::storage(format!(
                "a write of {} bytes would take segment {} past 4 GiB",
                buffer.len(),
                self.segment
            )));
        }
        let written = self
            .file
            .write_all(buffer)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            return Err(self.take_back(e));
        }
        if self.failing.take().is_some() {
            tracing::info!("the event log takes appends again");
            self.set_not_writing(None);
        }
        // Where each record lies, before anything can name its position (a
        // look-up finding a position whose location is not known yet failed
        // with "position N is not stored" while the indexer's queue was full).
        {
            let mut locations = self
                .shared
                .locations
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for (_, offset) in records {
                locations.push(self.segment, self.segment_len + offset);
            }
        }
        // Index entries wait in memory (look-ups see them) until the
        // indexer has written them to sled.
        let mut entries = Vec::with_capacity(records.len());
        {
            let mut unindexed = self.shared.unindexed();
            for (record, _) in records {
                self.shared.ids.insert(&record.event_id);
                unindexed.events.insert(record.event_id, record.position);
                unindexed
                    .streams
                    .entry(record.stream_id.clone())
                    .or_default()
                    .push((record.version, record.position));
                entries.push((
                    record.stream_id.clone(),
                    record.version,
                    record.event_id,
                    record.position,
                ));
            }
        }
        self.indexer.send(IndexJob { entries }).map_err(|_| {
            // The group is on disk, but will not be found by id: stop, and
            // let the callers retry after a restart (ids are idempotent).
            self.failed = Some("the indexer has stopped".to_string());
            LogError::outcome_unknown("the indexer has stopped".to_string())
        })?;
        self.segment_len += buffer.len() as u64;
        Ok(())
    }
}

impl Writer {
    /// Starts the next segment. Nothing changes unless the new file exists
    /// and the directory entry is synced: records acknowledged in a file
    /// whose entry a crash could lose would be lost with it.
    pub(super) fn roll_over(&mut self) -> std::io::Result<()> {
        let next = self.segment + 1;
        let path = self.shared.segments_dir.join(segment_name(next));
        // Not `create_new`: an empty file left by an earlier attempt whose
        // directory sync failed is taken as it is.
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if file.metadata()?.len() != 0 {
            return Err(std::io::Error::other(format!(
                "{} exists and is not empty",
                path.display()
            )));
        }
        sync_dir(&self.shared.segments_dir)?;
        self.file = file;
        self.segment = next;
        self.segment_len = 0;
        Ok(())
    }

    /// After a failed write or sync: cuts the segment back to the end of
    /// the last acknowledged group and syncs the cut, so that nothing of
    /// the refused group is there after a restart (complete records of it
    /// would pass their CRCs). What was acknowledged was synced before, so
    /// the cut keeps all of it. The writer then goes on trying each group
    /// and probing the disk (`failing`, `/readyz` fails meanwhile).
    ///
    /// If even the cut fails, whether the group is on disk is unknown: the
    /// writer stops for good ([`Writer::failed`]), and the callers are told
    /// that retrying with the same event ids is safe (they are recorded once).
    pub(super) fn take_back(&mut self, e: std::io::Error) -> LogError {
        let problem = format!("writing segment {}: {e}", self.segment);
        let end = self.segment_len;
        match self.file.set_len(end).and_then(|()| self.file.sync_all()) {
            Ok(()) => {
                tracing::error!(
                    segment = self.segment,
                    problem = %problem,
                    "writing to the event log failed; nothing of the refused batch was kept. Free space on the data directory's disk (or mend it): appends resume by themselves"
                );
                self.failing(e)
            }
            Err(e) => {
                let reason = format!("{problem}; taking it back failed too: {e}");
                tracing::error!(
                    segment = self.segment,
                    reason = %reason,
                    "writing to the event log failed and could not be taken back; appends are refused until restart. Free space on the data directory's disk, then restart the service"
                );
                self.failed = Some(reason.clone());
                self.set_not_writing(Some(format!("the log stopped accepting writes: {reason}")));
                LogError::outcome_unknown(reason)
            }
        }
    }

    /// Notes that writes fail for now, and the error for the callers.
    pub(super) fn failing(&mut self, e: std::io::Error) -> LogError {
        let problem = format!("writing segment {}: {e}", self.segment);
        self.set_not_writing(Some(format!("appends fail: {problem}")));
        self.failing = Some(problem);
        LogError::Storage(Failure::caused_by(
            format!(
                "writing segment {} failed (nothing of this batch was kept)",
                self.segment
            ),
            e,
        ))
    }

    pub(super) fn set_not_writing(&self, why: Option<String>) {
        *self
            .shared
            .not_writing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = why;
    }

    /// While writes fail: whether the data directory's disk takes a write
    /// of [`PROBE_BYTES`] again (written, synced and removed beside the
    /// segments), so that `/readyz` recovers without waiting for an append
    /// (a balancer sends none to a node that is not ready).
    pub(super) fn probe(&mut self) {
        if self.failed.is_some() {
            return;
        }
        // Beside the segments: their folder may be a mount of its own.
        let path = self.shared.segments_dir.join("write-probe");
        let probed = File::create(&path).and_then(|mut f| {
            f.write_all(&vec![0u8; PROBE_BYTES])?;
            f.sync_all()
        });
        let _ = fs::remove_file(&path);
        if probed.is_ok() {
            tracing::info!("the data directory's disk takes writes again; appends resume");
            self.failing = None;
            self.set_not_writing(None);
        }
    }
}

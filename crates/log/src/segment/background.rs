//! The segment log's background threads: the indexer (sled, many groups at
//! a time), the catch-up indexing at start, and the check of the sealed
//! segments' hash chain after the start (decision 67) with its `DAMAGED` mark.

use super::*;

/// Records indexed per write by [`index_from`]: bounds the memory a large
/// catch-up takes (about 40 bytes a record) while gathering each stream's
/// and each bucket's entries into one write. Tests use tiny runs, so
/// re-indexing crosses runs.
pub(super) const INDEX_RUN: usize = if cfg!(test) { 7 } else { 4_000_000 };

/// Indexes every record after position `after`, given the start-up scan of
/// the segments (its end and the records' locations). Used at start-up and
/// by `rebuild_index`.
///
/// Records are indexed in runs of [`INDEX_RUN`], each written to sled in key
/// order, one merge per stream and per bucket ([`index::Entries`]): sled
/// 0.34 loading keys in log order (random ids, streams interleaved) grew to
/// gigabytes of memory and of index files per million records. The last
/// indexed position is recorded after each run, so an interrupted catch-up
/// resumes where it stopped.
pub(super) fn index_from(
    index: &sled::Db,
    segments_dir: &Path,
    after: u64,
    (end, locations): &(ScanEnd, Locations),
) -> Result<(), OpenError> {
    let written = |e: sled::Error| io("writing the index", e);
    if end.head > after {
        tracing::info!(
            from = after + 1,
            to = end.head,
            "indexing records missing from the index"
        );
        let mut run = index::Entries::default();
        let mut segment: Option<(u32, Option<memmap2::Mmap>)> = None;
        for position in after + 1..=end.head {
            let (number, offset) = locations
                .get(position)
                .expect("the scan located every record up to its end");
            if segment.as_ref().map(|(n, _)| *n) != Some(number) {
                let path = segments_dir.join(segment_name(number));
                let map = map_segment(&path, Access::Whole)
                    .map_err(|e| io(&format!("reading {}", path.display()), e))?;
                segment = Some((number, map));
            }
            let bytes = segment
                .as_ref()
                .and_then(|(_, map)| map.as_deref())
                .unwrap_or_default();
            let decoded = record::decode(bytes.get(offset as usize..).unwrap_or_default())
                .map_err(|d| {
                    OpenError::Io(crate::Failure::new(format!(
                        "indexing: segment {number} offset {offset} changed while opening: {d:?}"
                    )))
                })?;
            let r = decoded.record;
            run.add(&r.stream_id, r.version, &r.event_id, r.position);
            if run.len() >= INDEX_RUN {
                run.write(index).map_err(written)?;
            }
        }
        run.write(index).map_err(written)?;
    }
    Ok(())
}

/// The name of the mark a broken hash chain leaves in the data directory:
/// while it is there the log refuses to open (decision 67).
pub(super) const DAMAGED: &str = "DAMAGED";

/// The background half of the start-up check (decision 67), at a low
/// priority: reads every segment stored at open once, checks the hash chain
/// inside each sealed segment (the start-up scan checked every CRC, every
/// link between segments and the chain of the last one), and puts every
/// event id into the id filter. `verified` advances segment by segment.
///
/// A broken chain is what an edit of history with its CRC made good looks
/// like. As EventStoreDB does with a chunk whose hash fails its background
/// check, the log then stops: it refuses appends, reports the damage
/// ([`EventLog::damage`]; the service stops on it), and leaves a mark in
/// the data directory so that every later start refuses until `openptl
/// verify` finds the log whole again.
pub(super) fn check_in_background(shared: &Shared, head: u64, last_segment: u32) {
    // SAFETY: as in `run_indexer`.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, ID_FILTER_NICE);
    }
    {
        let (done, notified) = &shared.start_up_done;
        let done = done.lock().unwrap_or_else(PoisonError::into_inner);
        drop(
            notified
                .wait_timeout_while(done, CHECK_AT_THE_LATEST, |done| {
                    !*done && !shared.closing.load(std::sync::atomic::Ordering::Acquire)
                })
                .unwrap_or_else(PoisonError::into_inner),
        );
    }
    let started = std::time::Instant::now();
    let Ok(segments) = list_segments(&shared.segments_dir) else {
        return;
    };
    // The next position expected: every record up to `head` must be seen,
    // in order, or the filter would miss ids (and a duplicate id pass).
    let mut expected = 1u64;
    let mut last_path = None;
    for (number, path) in segments {
        if number > last_segment || expected > head {
            break; // segments begun after the open hold nothing to check
        }
        if shared.closing.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        // The same check as at open, with the chain (the last segment's was
        // checked at open), stopping at the head the open saw.
        let chain = number < last_segment;
        let checked = check_segment(number, &path, chain, head, |record| {
            shared.ids.insert(&record.event_id);
            // A record is vouched for by the next one's link to it.
            shared
                .verified
                .fetch_max(record.position - 1, std::sync::atomic::Ordering::Release);
        });
        let Ok(c) = checked else {
            tracing::warn!(file = %path.display(), "could not read a segment for the background check; ids are looked up in the index");
            return;
        };
        // Everything here passed the open's checks: damage now means the
        // file changed since.
        if let Some((offset, found)) = &c.damage {
            found_damage(shared, &c.path, *offset, found.problem());
            return;
        }
        if let Some((first, _)) = c.first {
            if first != expected {
                let problem = format!("position {first} follows {}", expected - 1);
                found_damage(shared, &c.path, 0, &problem);
                return;
            }
            expected = c.last_position + 1;
        }
        // The segment's last record: linked to the next segment at open.
        shared
            .verified
            .fetch_max(expected - 1, std::sync::atomic::Ordering::Release);
        last_path = Some(path);
    }
    if expected <= head {
        let path = last_path.unwrap_or_else(|| shared.segments_dir.clone());
        let problem = format!("records {expected} to {head} are missing");
        found_damage(shared, &path, 0, &problem);
        return;
    }
    shared
        .ids_ready
        .store(true, std::sync::atomic::Ordering::Release);
    tracing::info!(
        records = head,
        ms = started.elapsed().as_millis() as u64,
        "hash chain checked and event-id filter ready"
    );
}

/// Records damage the background check found: appends stop, and the mark
/// keeps later starts from opening the log.
pub(super) fn found_damage(shared: &Shared, file: &Path, offset: u64, problem: &str) {
    let message = format!("{} at offset {offset}: {problem}", file.display());
    tracing::error!(file = %file.display(), offset, problem, "the log is damaged: appends are refused and the service stops; restore the segments from a backup, then run `openptl verify`");
    let mark = shared.data_dir.join(DAMAGED);
    let written = File::create(&mark)
        .and_then(|mut f| {
            f.write_all(format!("{}\n{offset}\n{problem}\n", file.display()).as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| sync_dir(&shared.data_dir));
    if let Err(e) = written {
        tracing::error!(error = %e, mark = %mark.display(), "could not leave the damage mark");
    }
    *shared.damage.lock().unwrap_or_else(PoisonError::into_inner) = Some(message);
}

/// The damage an earlier background check recorded in `dir`, if any.
pub(super) fn recorded_damage(dir: &Path) -> Option<OpenError> {
    let text = fs::read_to_string(dir.join(DAMAGED)).ok()?;
    let mut lines = text.lines();
    let file = lines.next().unwrap_or_default().to_string();
    let offset = lines.next().and_then(|o| o.parse().ok()).unwrap_or(0);
    let problem = lines.next().unwrap_or("damage recorded").to_string();
    Some(OpenError::Corrupt {
        file,
        offset,
        problem: format!("{problem} (found by the check after an earlier start; {} stays until `openptl verify` finds the log whole)", dir.join(DAMAGED).display()),
    })
}

/// The indexer: writes the writer's index entries to sled, many groups at a
/// time, then drops them from the entries waiting in memory.
pub(super) fn run_indexer(shared: &Shared, jobs: mpsc::Receiver<IndexJob>) {
    // Indexing is catch-up work: requests come first. A lower priority keeps
    // sled's bursts from delaying answers; when the indexer falls behind,
    // the writer's bounded queue slows appends down to its pace.
    // SAFETY: setpriority on the calling thread (tid 0 = this thread on
    // Linux) only changes its scheduling weight.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, INDEXER_NICE);
    }
    let mut since_reopened = 0u64;
    while let Ok(first) = jobs.recv() {
        let mut entries = first.entries;
        while entries.len() < INDEX_BATCH {
            match jobs.try_recv() {
                Ok(more) => entries.extend(more.entries),
                Err(_) => break,
            }
        }
        if shared
            .index_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
        {
            // Entries stay waiting in memory; appends have stopped.
            continue;
        }
        #[cfg(test)]
        let _paused = shared.index_paused.lock();
        // One merge per stream and per bucket, the mark last.
        let mut gathered = index::Entries::default();
        for (stream, version, event_id, position) in &entries {
            gathered.add(stream, *version, event_id, *position);
        }
        let written = shared.with_index(|index| gathered.write(index));
        if let Err(e) = written {
            shared.index_failing(&e);
            continue;
        }
        let mut unindexed = shared.unindexed();
        for (stream, version, event_id, _) in &entries {
            unindexed.events.remove(event_id);
            if let Some(waiting) = unindexed.streams.get_mut(stream) {
                waiting.retain(|(v, _)| v > version);
                if waiting.is_empty() {
                    unindexed.streams.remove(stream);
                }
            }
        }
        drop(unindexed);
        since_reopened += entries.len() as u64;
        if since_reopened >= REOPEN_INDEX_AFTER {
            since_reopened = 0;
            reopen_index(shared);
        }
    }
}

/// Closes and reopens the sled index, so that it checkpoints.
///
/// sled 0.34 writes its page table to disk only when it opens, and on every
/// open replays everything it wrote since the last one: a log that took 10M
/// records in one run spent 12.9 s of its next start in sled's open (5 GB
/// replayed) against 1.6 s after a short run. Reopening every
/// [`REOPEN_INDEX_AFTER`] records bounds that replay, whenever the process
/// stops. Index look-ups wait meanwhile (the writer needs one only for a new
/// stream or an event-id filter hit); entries stay waiting in memory, so
/// nothing is missed. If sled cannot be reopened, appends are refused until
/// a restart, as for any failed index write.
pub(super) fn reopen_index(shared: &Shared) {
    let started = std::time::Instant::now();
    let mut slot = shared.index.write().unwrap_or_else(PoisonError::into_inner);
    let reopened = match slot.take() {
        Some(old) => reopen(old, &shared.index_dir),
        None => open_index_patiently(&shared.index_dir),
    };
    let failure = match reopened {
        Ok(db) => {
            *slot = Some(db);
            shared
                .index_reopenings
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                "index reopened (sled checkpoints when it opens)"
            );
            return;
        }
        Err(e) => e.to_string(),
    };
    tracing::error!(error = %failure, "reopening the index failed; appends are refused until restart");
    *shared
        .index_failed
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(format!("reopening the index: {failure}"));
}

//! Reading segments back whole: the start-up scan (every CRC, the links
//! between segments, the chain of the last), the torn-tail rule (decision
//! 71), and `verify`, which re-reads everything and checks the index.

use super::*;

/// One record found by a scan, where it lives.
pub struct Located<'a> {
    pub record: &'a StoredRecord,
    pub segment: u32,
    pub offset: u64,
}

/// The end state of a scan.
pub struct ScanEnd {
    pub head: u64,
    pub last_hash: Hash,
    pub last_recorded_at: Option<DateTime<Utc>>,
    pub segment: u32,
    pub segment_len: u64,
}

/// Reads every segment in order, checking magic, CRC, positions and the hash
/// chain. A damaged tail of the last segment is cut off when `repair` is set
/// (reported otherwise); damage anywhere else is an error naming file and offset.
pub fn scan(
    segments_dir: &Path,
    repair: bool,
    mut visit: impl FnMut(Located<'_>),
) -> Result<ScanEnd, OpenError> {
    let segments = list_segments(segments_dir)?;
    let mut end = ScanEnd {
        head: 0,
        last_hash: [0; 32],
        last_recorded_at: None,
        segment: 1,
        segment_len: 0,
    };
    for (i, (number, path)) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let bytes = fs::read(path).map_err(|e| io(&format!("reading {}", path.display()), e))?;
        let corrupt = |offset: usize, problem: String| OpenError::Corrupt {
            file: path.display().to_string(),
            offset: offset as u64,
            problem,
        };
        let mut at = 0usize;
        // The chain as read, records of a write under way included.
        let (mut chain_head, mut chain_hash) = (end.head, end.last_hash);
        // The batch under way (decision 189): its mark's offset and last
        // position, and its records read so far (visited once it finishes).
        let mut open: Option<(usize, u64)> = None;
        let mut pending: Vec<(StoredRecord, usize)> = Vec::new();
        let mut torn: Option<(usize, String)> = None;
        while at < bytes.len() {
            let damage = match record::mark(&bytes[at..]) {
                Ok(Some(to)) => {
                    if let Some((_, unfinished)) = open {
                        return Err(corrupt(
                            at,
                            format!("a batch mark while the batch to position {unfinished} is unfinished"),
                        ));
                    }
                    if to <= chain_head {
                        return Err(corrupt(
                            at,
                            format!("a batch mark to position {to} after position {chain_head}"),
                        ));
                    }
                    open = Some((at, to));
                    at += record::MARK_LEN;
                    continue;
                }
                Ok(None) => match record::decode(&bytes[at..]) {
                    Ok(decoded) => {
                        let position = decoded.record.position;
                        if position != chain_head + 1 {
                            return Err(corrupt(
                                at,
                                format!("position {position} follows {chain_head}"),
                            ));
                        }
                        if decoded.prev_hash != chain_hash {
                            return Err(corrupt(
                                at,
                                "hash chain broken: the previous record was altered".into(),
                            ));
                        }
                        if let Some((_, to)) = open.filter(|(_, to)| position > *to) {
                            return Err(corrupt(
                                at,
                                format!(
                                    "position {position} in a batch that ends at position {to}"
                                ),
                            ));
                        }
                        chain_head = position;
                        chain_hash = record::hash(&bytes[at..at + decoded.len]);
                        pending.push((decoded.record, at));
                        at += decoded.len;
                        if open.is_none_or(|(_, to)| to == position) {
                            open = None;
                            for (record, offset) in pending.drain(..) {
                                visit(Located {
                                    record: &record,
                                    segment: *number,
                                    offset: offset as u64,
                                });
                                end.last_recorded_at = Some(record.recorded_at);
                            }
                            (end.head, end.last_hash) = (chain_head, chain_hash);
                        }
                        continue;
                    }
                    Err(damage) => damage,
                },
                Err(damage) => damage,
            };
            let (problem, tear) = match torn_tail(&bytes, at, &damage, chain_head) {
                Ok(()) => (damage.problem(), true),
                Err(Found::Newer(problem)) => {
                    return Err(OpenError::Newer(format!(
                        "{} at offset {at}: {problem}",
                        path.display()
                    )))
                }
                Err(found) => (found.problem().to_string(), false),
            };
            if !(last && tear) {
                return Err(corrupt(at, problem));
            }
            torn = Some((at, problem));
            break;
        }
        // A batch that never finished ends the log at its mark, a torn
        // record at itself: never acknowledged, so safe to drop (start-up
        // cuts them off). Only the last segment may end so.
        let cut = match open {
            Some((mark, to)) if last => Some((
                mark,
                format!(
                    "a batch to position {to} that never finished ({} of its records whole)",
                    pending.len()
                ),
            )),
            Some((mark, to)) => {
                return Err(corrupt(
                    mark,
                    format!("a batch to position {to} that never finished, in a segment that is not the last"),
                ))
            }
            None => torn,
        };
        end.segment = *number;
        end.segment_len = at as u64;
        if let Some((offset, problem)) = cut {
            if repair {
                tracing::warn!(file = %path.display(), offset, bytes = bytes.len() - offset, %problem, "cutting off a torn write at the tail of the log");
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| io("opening segment", e))?;
                file.set_len(offset as u64)
                    .map_err(|e| io("truncating torn tail", e))?;
                file.sync_all().map_err(|e| io("syncing truncation", e))?;
            } else {
                tracing::warn!(file = %path.display(), offset, %problem, "a torn write at the tail (start-up will cut it off)");
            }
            end.segment_len = offset as u64;
        }
    }
    Ok(end)
}

/// What damage found in a segment is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    /// A write torn by a crash, if the segment is the last: never
    /// acknowledged, so it may be cut off (unless the index shows
    /// otherwise, [`scan_for_open`]).
    Torn(String),
    /// Damage in the log: the start is refused, naming file and offset.
    Damaged(String),
    /// A record of a newer format version: the start is refused, for a
    /// newer OpenPTL to read it.
    Newer(String),
}

impl Found {
    pub(super) fn problem(&self) -> &str {
        match self {
            Found::Torn(p) | Found::Damaged(p) | Found::Newer(p) => p,
        }
    }
}

/// What damage found at `at` in a segment is: a write torn by a crash at
/// the tail of the log (`Ok`: safe to cut off, it was never acknowledged),
/// or damage that must refuse the start (`Err`: what to tell the operator).
///
/// A torn write is only ever the last thing in the file: a record that runs
/// past its end, or bytes (zeros, garbage) after which no valid record
/// follows. So the rest of the segment is searched for a record with the
/// magic, a CRC that matches and a position after `after` (the last good
/// one), or a record of a newer format version (its CRC cannot be checked
/// here): if there is one, the damage is in the middle of acknowledged
/// records, and cutting there would drop them. A record of a newer format
/// version is never torn: a downgrade must not truncate the log.
pub(super) fn torn_tail(bytes: &[u8], at: usize, damage: &Damage, after: u64) -> Result<(), Found> {
    let problem = damage.problem();
    if matches!(damage, Damage::Newer(_)) {
        return Err(Found::Newer(problem));
    }
    let mut from = at + 1;
    while let Some(found) = memchr::memmem::find(&bytes[from.min(bytes.len())..], record::MAGIC) {
        let k = from + found;
        // A batch mark counts as following only when a record of its batch
        // follows it (21 bytes and a CRC are easy to find in a note's
        // payload; a whole record after them is as hard as one alone).
        if let Ok(Some(last)) = record::mark(&bytes[k..]) {
            let framed = bytes
                .get(k + record::MARK_LEN..)
                .is_some_and(|rest| record::check(rest).is_ok_and(|r| r.position > after));
            if last > after && framed {
                return Err(Found::Damaged(format!(
                    "{problem}; a batch mark (to position {last}) follows at offset {k}, so this is damage in the middle of the log, not a write torn by a crash"
                )));
            }
        }
        match record::check(&bytes[k..]) {
            Ok(valid) if valid.position > after => {
                return Err(Found::Damaged(format!(
                    "{problem}; a valid record (position {}) follows at offset {k}, so this is damage in the middle of the log, not a write torn by a crash",
                    valid.position
                )));
            }
            Err(Damage::Newer(v)) if newer_record_fits(&bytes[k..]) => {
                return Err(Found::Damaged(format!(
                    "{problem}; a record of the newer format version {v} follows at offset {k}, so this is damage in the middle of the log, not a write torn by a crash (run the newer OpenPTL that wrote it, then `openptl verify`)"
                )));
            }
            _ => from = k + 1,
        }
    }
    Ok(())
}

/// What damage at `at` is, as [`torn_tail`] tells it.
fn found(bytes: &[u8], at: usize, damage: &Damage, after: u64) -> Found {
    match torn_tail(bytes, at, damage, after) {
        Ok(()) => Found::Torn(damage.problem()),
        Err(found) => found,
    }
}

/// Whether the bytes at the start of `rest`, the header of a record of a
/// newer format version (whose CRC this binary cannot check), frame a
/// record: the length its prefix claims (the prefix, magic, version and
/// length, is the same in every format) ends exactly at the end of the
/// segment or at the magic of the next record. The same bytes inside an
/// event's payload (a note may hold anything) seldom do.
fn newer_record_fits(rest: &[u8]) -> bool {
    let Some(len) = rest
        .get(5..record::PREFIX)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    else {
        return false;
    };
    len >= record::PREFIX
        && (len == rest.len()
            || rest.get(len..len + record::MAGIC.len()) == Some(&record::MAGIC[..]))
}

/// One segment checked on its own (CRCs, positions and hash chain within
/// it); [`scan_for_open`] then checks the links between segments.
pub(super) struct SegmentCheck {
    pub(super) number: u32,
    pub(super) path: PathBuf,
    /// Position and `prev_hash` of its first record.
    pub(super) first: Option<(u64, Hash)>,
    pub(super) last_position: u64,
    pub(super) last_hash: Hash,
    pub(super) last_recorded_at_micros: Option<i64>,
    /// Bytes of whole records before any damage.
    pub(super) len: u64,
    pub(super) offsets: Vec<u64>,
    /// Where the first damage is, and what it is ([`torn_tail`]).
    pub(super) damage: Option<(u64, Found)>,
}

/// Checks one segment: every record's framing, CRC and position, and, when
/// `chain` is set, the hash chain inside it. The hash of its last record is
/// computed either way (the next segment's first record links to it).
///
/// Records after position `up_to` are left alone (the background check
/// reads the open segment while the writer appends to it), and `visit`
/// sees every record that passed.
pub(super) fn check_segment(
    number: u32,
    path: &Path,
    chain: bool,
    up_to: u64,
    mut visit: impl FnMut(&record::Checked),
) -> Result<SegmentCheck, OpenError> {
    let reading = |e| io(&format!("reading {}", path.display()), e);
    let map = map_segment(path, Access::Whole).map_err(reading)?;
    let bytes = map.as_deref().unwrap_or_default();
    let mut out = SegmentCheck {
        number,
        path: path.to_path_buf(),
        first: None,
        last_position: 0,
        last_hash: [0; 32],
        last_recorded_at_micros: None,
        len: 0,
        offsets: Vec::with_capacity(bytes.len() / 160),
        damage: None,
    };
    let mut at = 0usize;
    let mut last_record = 0..0;
    // The batch under way (decision 189): where its mark is, the position
    // its last record will have, and what the check had found before it.
    let mut open: Option<OpenWrite> = None;
    let mut stopped_at_up_to = false;
    while at < bytes.len() {
        if out.first.is_some() && out.last_position >= up_to {
            stopped_at_up_to = true;
            break;
        }
        let after = if out.first.is_some() {
            out.last_position
        } else {
            0
        };
        match record::mark(&bytes[at..]) {
            Ok(Some(last)) => {
                let problem = if let Some(write) = &open {
                    Some(format!(
                        "a batch mark while the batch to position {} is unfinished",
                        write.last
                    ))
                } else if out.first.is_some() && last <= out.last_position {
                    Some(format!(
                        "a batch mark to position {last} after position {}",
                        out.last_position
                    ))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    out.damage = Some((at as u64, Found::Damaged(problem)));
                    break;
                }
                open = Some(OpenWrite {
                    mark: at,
                    last,
                    records: out.offsets.len(),
                    last_position: out.last_position,
                    last_recorded_at_micros: out.last_recorded_at_micros,
                    last_record: last_record.clone(),
                    first: out.first,
                });
                at += record::MARK_LEN;
                continue;
            }
            Ok(None) => {}
            Err(damage) => {
                out.damage = Some((at as u64, found(bytes, at, &damage, after)));
                break;
            }
        }
        let checked = match record::check(&bytes[at..]) {
            Ok(c) => c,
            Err(damage) => {
                out.damage = Some((at as u64, found(bytes, at, &damage, after)));
                break;
            }
        };
        match out.first {
            None => out.first = Some((checked.position, checked.prev_hash)),
            Some(_) => {
                let problem = if checked.position != out.last_position + 1 {
                    Some(format!(
                        "position {} follows {}",
                        checked.position, out.last_position
                    ))
                } else if chain && checked.prev_hash != record::hash(&bytes[last_record.clone()]) {
                    Some("hash chain broken: the previous record was altered".to_string())
                } else {
                    None
                };
                if let Some(problem) = problem {
                    out.damage = Some((at as u64, Found::Damaged(problem)));
                    break;
                }
            }
        }
        if u32::try_from(at).is_err() {
            out.damage = Some((
                at as u64,
                Found::Damaged("segment longer than 4 GiB".into()),
            ));
            break;
        }
        if let Some(write) = &open {
            if checked.position > write.last {
                out.damage = Some((
                    at as u64,
                    Found::Damaged(format!(
                        "position {} in a batch that ends at position {}",
                        checked.position, write.last
                    )),
                ));
                break;
            }
        }
        visit(&checked);
        out.offsets.push(at as u64);
        out.last_position = checked.position;
        out.last_recorded_at_micros = Some(checked.recorded_at_micros);
        last_record = at..at + checked.len;
        at += checked.len;
        if open.as_ref().is_some_and(|w| w.last == checked.position) {
            open = None;
        }
        if open.is_none() {
            out.len = at as u64;
        }
    }
    // A batch that never reached its last record: a crash in the middle of
    // its write. It was not acknowledged, so the segment ends at its mark
    // (decision 189); damage found inside it is that crash's tear. The
    // background check stops at the head, always the end of a write.
    if let Some(write) = open.filter(|_| !stopped_at_up_to) {
        let inside = matches!(&out.damage, None | Some((_, Found::Torn(_))));
        if inside {
            let cut = out.offsets.len() - write.records;
            out.offsets.truncate(write.records);
            out.last_position = write.last_position;
            out.last_recorded_at_micros = write.last_recorded_at_micros;
            out.first = write.first;
            last_record = write.last_record;
            out.len = write.mark as u64;
            out.damage = Some((
                write.mark as u64,
                Found::Torn(format!(
                    "a batch to position {} that never finished ({cut} of its records whole)",
                    write.last
                )),
            ));
        }
    }
    if !last_record.is_empty() {
        out.last_hash = record::hash(&bytes[last_record]);
    }
    Ok(out)
}

/// A batch whose mark [`check_segment`] has met and whose last record it
/// has not yet: where its mark is, its last record's position, and the
/// check's state before it, to go back to if it never finishes.
struct OpenWrite {
    mark: usize,
    last: u64,
    records: usize,
    last_position: u64,
    last_recorded_at_micros: Option<i64>,
    last_record: std::ops::Range<usize>,
    first: Option<(u64, Hash)>,
}

/// The start-up scan: checks every record's framing, CRC and position, the
/// links between segments and the hash chain inside the last one, segments
/// in parallel and without decoding fields; cuts off a torn tail; returns
/// where each record is. The chain inside the earlier (sealed) segments is
/// checked after the open, in the background ([`check_in_background`],
/// decision 67): hashing every record took most of a 10M-record start.
///
/// `acknowledged` is a position the log is known to have acknowledged (the
/// index's "indexed up to" mark: the index is written only after a record
/// is synced and answered; 0 when nothing is known). A tail that would
/// leave the log short of it is damage, never a torn write, and segments
/// that end before it have lost acknowledged records: both refuse the start.
pub(super) fn scan_for_open(
    segments_dir: &Path,
    acknowledged: u64,
) -> Result<(ScanEnd, Locations), OpenError> {
    let segments = list_segments(segments_dir)?;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(segments.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut checks: Vec<Option<Result<SegmentCheck, OpenError>>> =
        (0..segments.len()).map(|_| None).collect();
    let done = Mutex::new(&mut checks);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((number, path)) = segments.get(i) else {
                    break;
                };
                let chain = i + 1 == segments.len();
                let checked = check_segment(*number, path, chain, u64::MAX, |_| {});
                done.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(checked);
            });
        }
    });
    let mut end = ScanEnd {
        head: 0,
        last_hash: [0; 32],
        last_recorded_at: None,
        segment: 1,
        segment_len: 0,
    };
    // Room for every record up front: growing 80 MB at 10M records copies.
    let mut locations = Locations::with_capacity(
        checks
            .iter()
            .map(|c| {
                c.as_ref()
                    .map_or(0, |c| c.as_ref().map_or(0, |c| c.offsets.len()))
            })
            .sum(),
    );
    let count = checks.len();
    for (i, checked) in checks.into_iter().enumerate() {
        let c = checked.expect("every segment was checked")?;
        let last = i + 1 == count;
        let corrupt = |offset: u64, problem: String| OpenError::Corrupt {
            file: c.path.display().to_string(),
            offset,
            problem,
        };
        if let Some((position, prev_hash)) = c.first {
            if position != end.head + 1 {
                return Err(corrupt(
                    0,
                    format!("position {position} follows {}", end.head),
                ));
            }
            if prev_hash != end.last_hash {
                return Err(corrupt(
                    0,
                    "hash chain broken: the previous record was altered".into(),
                ));
            }
        }
        if let Some((offset, found)) = &c.damage {
            let before = if c.first.is_some() {
                c.last_position
            } else {
                end.head
            };
            match found {
                Found::Torn(_) if last && before >= acknowledged => {}
                Found::Torn(problem) if last => {
                    return Err(corrupt(
                        *offset,
                        format!(
                            "{problem} after position {before}, but the index shows records up to position {acknowledged} were acknowledged, so this is damage, not a write torn by a crash; {RESTORE}"
                        ),
                    ))
                }
                Found::Newer(problem) => {
                    return Err(OpenError::Newer(format!(
                        "{} at offset {offset}: {problem}",
                        c.path.display()
                    )))
                }
                Found::Torn(problem) => {
                    return Err(corrupt(
                        *offset,
                        format!("{problem}, in a segment that is not the last: damage, not a write torn by a crash"),
                    ))
                }
                other => return Err(corrupt(*offset, other.problem().to_string())),
            }
            let problem = found.problem();
            // A write torn by a crash: never acknowledged, so it is safe to drop.
            tracing::warn!(file = %c.path.display(), offset, %problem, "cutting off a torn write at the tail of the log");
            let file = OpenOptions::new()
                .write(true)
                .open(&c.path)
                .map_err(|e| io("opening segment", e))?;
            file.set_len(*offset)
                .map_err(|e| io("truncating torn tail", e))?;
            file.sync_all().map_err(|e| io("syncing truncation", e))?;
        }
        for offset in &c.offsets {
            locations.push(c.number, *offset);
        }
        if c.first.is_some() {
            end.head = c.last_position;
            end.last_hash = c.last_hash;
            end.last_recorded_at = c
                .last_recorded_at_micros
                .and_then(DateTime::<Utc>::from_timestamp_micros);
        }
        end.segment = c.number;
        end.segment_len = c.len;
    }
    if end.head < acknowledged {
        let last = segments_dir.join(segment_name(end.segment));
        return Err(OpenError::Corrupt {
            file: last.display().to_string(),
            offset: end.segment_len,
            problem: format!(
                "the segments end at position {}, but the index shows records up to position {acknowledged} were acknowledged: a segment file is missing or was replaced by an older copy; {RESTORE}",
                end.head
            ),
        });
    }
    Ok((end, locations))
}

/// What to do about acknowledged records missing from the segments.
const RESTORE: &str = "restore the data directory from a backup (docs/operations.md); only if these segments were put back on purpose, `openptl rebuild-index` makes the index match them";

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub records: u64,
    pub segments: usize,
    pub streams: usize,
    pub problems: Vec<String>,
    /// Whether a damage mark (left by a background check) was removed
    /// because the whole log now checks out.
    pub damage_mark_cleared: bool,
}

/// Re-reads every segment (CRCs, positions, hash chain), checks stream
/// versions are contiguous and that the index agrees. Changes nothing but
/// the damage mark of an earlier background check, which it removes when
/// the whole log checks out.
pub fn verify(dir: &Path) -> Result<VerifyReport, OpenError> {
    let segments_dir = dir.join("segments");
    let mut report = VerifyReport {
        segments: list_segments(&segments_dir)?.len(),
        ..Default::default()
    };
    // A backup holds no index (the first start builds it): nothing to
    // compare, and none is created.
    let index = if dir.join("index").exists() {
        Some(
            open_index_patiently(&dir.join("index"))
                .map_err(|e| io("opening the index (is the service running?)", e))?,
        )
    } else {
        None
    };
    let read = |e: sled::Error| io("reading the index", e);
    let indexed = match &index {
        None => 0,
        Some(index) if index::is_current(index).map_err(read)? => {
            index::indexed(index).map_err(read)?
        }
        Some(index) if let Some(layout) = index::newer(index).map_err(read)? => {
            report.problems.push(index::newer_message(layout));
            0
        }
        Some(_) => {
            report.problems.push(
                "the index is of an earlier layout (the next start rebuilds it, or run `openptl rebuild-index`)".into(),
            );
            0
        }
    };
    if let Some(why) = super::backup::unfinished_copy(dir) {
        report.problems.push(why);
    }
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut problems = Vec::new();
    let end = scan(&segments_dir, false, |found| {
        let r = found.record;
        let expected = versions.get(&r.stream_id).copied().unwrap_or(0) + 1;
        if r.version != expected {
            problems.push(format!(
                "position {}: stream {} version {} (expected {expected})",
                r.position, r.stream_id, r.version
            ));
        }
        versions.insert(r.stream_id.clone(), r.version);
        if let Some(index) = index.as_ref().filter(|_| r.position <= indexed) {
            let by_event = index::event_position(index, &r.event_id).ok().flatten();
            let by_stream = index::stream_positions(index, &r.stream_id)
                .ok()
                .and_then(|p| {
                    p.get(usize::try_from(r.version).ok()?.checked_sub(1)?)
                        .copied()
                });
            if by_event != Some(r.position) || by_stream != Some(r.position) {
                problems.push(format!("position {}: the index disagrees with the segments (run `openptl rebuild-index`)", r.position));
            }
        }
    })?;
    if indexed > end.head {
        problems.push(format!(
            "the index claims {indexed} records but the segments hold {}",
            end.head
        ));
    }
    report.records = end.head;
    report.streams = versions.len();
    report.problems.extend(problems);
    let mark = dir.join(DAMAGED);
    if report.problems.is_empty() && mark.exists() {
        fs::remove_file(&mark).map_err(|e| io(&format!("removing {}", mark.display()), e))?;
        report.damage_mark_cleared = true;
    }
    Ok(report)
}

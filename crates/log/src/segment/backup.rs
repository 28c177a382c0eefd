//! Online backup of a segment log's data directory (issue 27): a copy that
//! the service can be started on, taken while the service runs and appends,
//! without its lock and without ever stopping its writer.
//!
//! Why it is consistent without the writer's help:
//! - sealed segments never change, and the open one only grows (a failed
//!   write is cut back to where it was, decision 72): a copy is a prefix;
//! - before the open segment is read, its length is taken and the file is
//!   `fdatasync`'d, so every byte copied is one a crash of the service would
//!   keep too; a record still being written is cut off the copy as a torn
//!   tail, exactly as a start after a crash would;
//! - the copy is then checked as a start checks a log (every CRC, the links
//!   between segments, the hash chain of the last), and ends at a position
//!   and head hash that the original log holds;
//! - the projection snapshot is copied before the segments, so its position
//!   is never after the copy's head (a restart checks it against the log);
//!   the side files are copied as they are ([`SIDE_FILES`]: whole files
//!   renamed into place, or logs appended line by line).
//!
//! The sled index is not copied (it is derived: the first start on the copy
//! rebuilds it from the segments). A second backup into the same directory
//! copies only what is new: segments of the same length are left alone, a
//! longer one gets only its new bytes. A backup directory whose copy is not
//! a prefix of the log (it holds more, or other bytes: the log was restored
//! from an older backup since, or a write it copied was cut back) is
//! refused before anything in it changes: it may be the only copy of
//! records the log no longer holds.
//!
//! A copy is marked [`INCOMPLETE`] from its first write until its manifest
//! is written: a backup or restore that failed half-way (a full disk, a
//! kill) leaves a directory that `restore` refuses to restore from, and
//! that neither a start nor `verify` takes for a log. Backups and restores
//! into one directory take its lock, so two never interleave.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{
    io, list_segments, lock_data_dir, record, recorded_damage, scan_for_open, segment_name,
    sync_dir,
};
use super::{Hash, OpenError};
use crate::Failure;

/// The files of a data directory a backup copies besides the segments: the
/// snapshot, tokens and import key (each written whole and renamed into
/// place by the service), the anchors and the access log (appended line by
/// line: a copy may end in a torn line, which their readers pass over).
const SIDE_FILES: &[&str] = &[
    "projection.snapshot",
    "tokens.json",
    "anchors.jsonl",
    "import.key",
    "access.log",
];

/// The mark of a copy in progress (a backup, or a restore), removed once
/// the copy is whole and checked; it names what was being copied.
pub const INCOMPLETE: &str = "INCOMPLETE";

/// The manifest a backup leaves: what it holds, for the operator.
pub const MANIFEST: &str = "backup.json";

/// What a backup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The last position the copy holds.
    pub position: u64,
    /// The hash of the record at `position` (the next record's `prev_hash`).
    pub head_hash: Hash,
    /// Segments copied or extended by this run (not those already whole).
    pub segments_copied: usize,
    /// Segments in the copy.
    pub segments: usize,
    /// Bytes of segments copied by this run.
    pub bytes_copied: u64,
    /// The side files copied (snapshot, tokens, anchors).
    pub files: Vec<String>,
}

/// A step of a backup, for a progress line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Segment `number` (`index` of `of`) is being copied from `offset` to `len`.
    Segment {
        number: u32,
        index: usize,
        of: usize,
        offset: u64,
        len: u64,
    },
    /// The copy is checked as a start checks a log.
    Checking,
}

/// Backs up the data directory `from` into `to` (created if need be), while
/// a service may be running on `from`. See the module docs.
pub fn backup(
    from: &Path,
    to: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<BackupReport, OpenError> {
    if let Some(damage) = recorded_damage(from) {
        return Err(damage);
    }
    if inside(to, from) {
        return Err(OpenError::Io(Failure::new(format!(
            "{} is {} or inside it: a backup goes to another directory, on another disk if you can",
            to.display(),
            from.display()
        ))));
    }
    let from_segments = from.join("segments");
    let to_segments = to.join("segments");
    if !from_segments.is_dir() {
        return Err(OpenError::Io(Failure::new(format!(
            "{} holds no event log (no segments folder)",
            from.display()
        ))));
    }
    fs::create_dir_all(&to_segments).map_err(|e| io("creating the backup directory", e))?;
    let _lock = lock_data_dir(to).map_err(|e| match e {
        OpenError::InUse { dir } => OpenError::Io(Failure::new(format!(
            "{dir} is in use: another backup or restore into it is running, or a service runs on it"
        ))),
        other => other,
    })?;
    same_log(&from_segments, &to_segments)?;
    copy_is_prefix(&from_segments, &to_segments, to)?;
    mark_incomplete(to, from)?;
    let mut files = Vec::new();
    for name in SIDE_FILES {
        if copy_whole(&from.join(name), &to.join(name))? {
            files.push(name.to_string());
        }
    }
    let segments = list_segments(&from_segments)?;
    let mut report = BackupReport {
        position: 0,
        head_hash: [0; 32],
        segments_copied: 0,
        segments: segments.len(),
        bytes_copied: 0,
        files,
    };
    for (i, (number, path)) in segments.iter().enumerate() {
        let target = to_segments.join(segment_name(*number));
        let copied = copy_segment(path, &target, &mut |offset, len| {
            progress(Progress::Segment {
                number: *number,
                index: i + 1,
                of: segments.len(),
                offset,
                len,
            })
        })?;
        if copied > 0 {
            report.segments_copied += 1;
            report.bytes_copied += copied;
        }
    }
    sync_dir(&to_segments).map_err(|e| io("syncing the backup's segments", e))?;
    progress(Progress::Checking);
    let (end, _) = scan_for_open(&to_segments, 0)?;
    report.position = end.head;
    report.head_hash = end.last_hash;
    write_manifest(to, from, &report)?;
    remove_mark(to)?;
    Ok(report)
}

/// Marks `to` as a copy in progress (and takes its old manifest away: it
/// no longer says what the directory holds).
fn mark_incomplete(to: &Path, from: &Path) -> Result<(), OpenError> {
    let mark = to.join(INCOMPLETE);
    let writing = |e| io(&format!("writing {}", mark.display()), e);
    let text = format!(
        "a copy of {} started at {} that did not finish\n",
        from.display(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let mut file = File::create(&mark).map_err(writing)?;
    file.write_all(text.as_bytes()).map_err(writing)?;
    file.sync_all().map_err(writing)?;
    match fs::remove_file(to.join(MANIFEST)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(writing(e)),
    }
    sync_dir(to).map_err(writing)
}

fn remove_mark(to: &Path) -> Result<(), OpenError> {
    let mark = to.join(INCOMPLETE);
    fs::remove_file(&mark).map_err(|e| io(&format!("removing {}", mark.display()), e))?;
    sync_dir(to).map_err(|e| io(&format!("syncing {}", to.display()), e))
}

/// Why `dir` holds a copy that did not finish, if it does.
pub fn unfinished_copy(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join(INCOMPLETE)).ok()?;
    Some(format!(
        "{} holds {} ({}): restore again into an empty directory, or take the backup again",
        dir.display(),
        text.trim(),
        dir.join(INCOMPLETE).display()
    ))
}

/// Refuses a backup directory whose segments are not a prefix of the log's:
/// a segment the log does not have, a copy longer than its segment, or one
/// whose last bytes differ. Checked before anything is written: such a
/// backup may hold records the log no longer does (the log was restored
/// from an older backup since), and copying over it would destroy them.
fn copy_is_prefix(from: &Path, to: &Path, dir: &Path) -> Result<(), OpenError> {
    for (number, target) in list_segments(to)? {
        let source = from.join(segment_name(number));
        let have = fs::metadata(&target).map_or(0, |m| m.len());
        let len = fs::metadata(&source).map_or(0, |m| m.len());
        let same = have <= len
            && match File::open(&source) {
                Ok(mut file) => same_tail(&mut file, &target, have)?,
                Err(_) => false,
            };
        if !same {
            return Err(not_a_prefix(dir, number, have, len));
        }
    }
    Ok(())
}

fn not_a_prefix(dir: &Path, number: u32, have: u64, len: u64) -> OpenError {
    OpenError::Io(Failure::new(format!(
        "{} holds a copy of segment {number} ({have} bytes) that is not the start of the log's ({len} bytes): the log was restored from an older backup since, or a write this backup copied was cut back. The backup was left as it is (it may hold records the log does not); back up into a new directory",
        dir.display()
    )))
}

/// Whether `path` is `dir` or lies inside it, after resolving links (a
/// path not made yet is resolved through the nearest part that exists).
fn inside(path: &Path, dir: &Path) -> bool {
    fn resolved(path: &Path) -> Option<std::path::PathBuf> {
        // `..` and `.` taken out first, so a path that ends in them (or
        // passes through a folder not made yet) still resolves.
        let mut at = std::path::PathBuf::new();
        for part in std::path::absolute(path).ok()?.components() {
            match part {
                std::path::Component::ParentDir => {
                    at.pop();
                }
                std::path::Component::CurDir => {}
                other => at.push(other),
            }
        }
        let mut rest = Vec::new();
        loop {
            if let Ok(real) = at.canonicalize() {
                return Some(rest.iter().rev().fold(real, |p, part| p.join(part)));
            }
            rest.push(at.file_name()?.to_os_string());
            at = match at.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => std::env::current_dir().ok()?,
            };
        }
    }
    match (resolved(path), resolved(dir)) {
        (Some(path), Some(dir)) => path.starts_with(dir),
        _ => false,
    }
}

/// Restores the backup `from` into `to`, which must not hold a log yet:
/// the same copy, in the other direction, then checked whole. Only a
/// finished backup is restored (its manifest written, no [`INCOMPLETE`]
/// mark), and only whole: the copy must end where its manifest says.
pub fn restore(from: &Path, to: &Path) -> Result<BackupReport, OpenError> {
    if to.join("segments").is_dir() && !list_segments(&to.join("segments"))?.is_empty() {
        return Err(OpenError::Io(Failure::new(format!(
            "{} already holds an event log: restore into a new or empty directory (a restore that did not finish leaves its directory behind: remove it and restore again)",
            to.display()
        ))));
    }
    // Nothing there may be overwritten (a tokens file, say); a freshly
    // made file system's `lost+found` is no data.
    let held = fs::read_dir(to).ok().and_then(|mut entries| {
        entries.find(|e| e.as_ref().map_or(true, |e| e.file_name() != "lost+found"))
    });
    if let Some(held) = held {
        let name = held.map_or_else(|_| "files".into(), |e| e.file_name());
        return Err(OpenError::Io(Failure::new(format!(
            "{} is not empty (it holds {}): restore into a new or empty directory, so that nothing there is overwritten",
            to.display(),
            name.to_string_lossy()
        ))));
    }
    if let Some(why) = unfinished_copy(from) {
        return Err(OpenError::Io(Failure::new(format!("not restored: {why}"))));
    }
    let manifest = read_manifest(from)?;
    let report = backup(from, to, &mut |_| {})?;
    let _ = fs::remove_file(to.join(MANIFEST));
    if (report.position, hex(&report.head_hash)) != manifest {
        mark_incomplete(to, from)?;
        return Err(OpenError::Io(Failure::new(format!(
            "{} holds the log up to position {}, but its {MANIFEST} says {}: the backup changed since it was taken; not restored",
            from.display(),
            report.position,
            manifest.0
        ))));
    }
    Ok(report)
}

/// The position and head hash a finished backup's manifest says it holds.
fn read_manifest(dir: &Path) -> Result<(u64, String), OpenError> {
    let path = dir.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|e| {
        OpenError::Io(Failure::caused_by(
            format!(
                "{} is not a finished backup (no {MANIFEST}: the backup that wrote it did not finish, or it is not a backup); not restored",
                dir.display()
            ),
            e,
        ))
    })?;
    let manifest: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| io(&format!("reading {}", path.display()), e))?;
    match (
        manifest["position"].as_u64(),
        manifest["head_hash"].as_str(),
    ) {
        (Some(position), Some(hash)) => Ok((position, hash.to_string())),
        _ => Err(OpenError::Io(Failure::new(format!(
            "{} has no position and head hash",
            path.display()
        )))),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses a backup directory that holds the segments of another log: its
/// first record must be the source's first record.
fn same_log(from: &Path, to: &Path) -> Result<(), OpenError> {
    let first = |dir: &Path| -> Result<Option<Vec<u8>>, OpenError> {
        let Some((_, path)) = list_segments(dir)?.into_iter().next() else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|f| f.take(record::MAX_RECORD as u64).read_to_end(&mut bytes))
            .map_err(|e| io(&format!("reading {}", path.display()), e))?;
        // Its first batch may begin with a mark (decision 189).
        let first = bytes.get(record::mark_len(&bytes)..).unwrap_or_default();
        Ok(record::check(first)
            .ok()
            .map(|c| c.event_id.as_bytes().to_vec()))
    };
    match (first(from)?, first(to)?) {
        (Some(a), Some(b)) if a != b => Err(OpenError::Io(Failure::new(format!(
            "{} holds the backup of another event log: back up into a new directory",
            to.parent().unwrap_or(to).display()
        )))),
        _ => Ok(()),
    }
}

/// Copies the bytes of segment `source` that `target` does not have yet:
/// all of it, or the new bytes of a segment that grew since (segments only
/// grow). The source's length is taken, then the file is synced, so every
/// byte copied is durable in the source too. Returns the bytes copied.
fn copy_segment(
    source: &Path,
    target: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, OpenError> {
    let reading = |e| io(&format!("reading {}", source.display()), e);
    let writing = |e| io(&format!("writing {}", target.display()), e);
    let mut from = File::open(source).map_err(reading)?;
    let len = from.metadata().map_err(reading)?.len();
    from.sync_data().map_err(reading)?;
    let have = fs::metadata(target).map_or(0, |m| m.len());
    if have == len && same_tail(&mut from, target, len)? {
        return Ok(0);
    }
    if !(have < len && same_tail(&mut from, target, have)?) {
        // Checked before the copy began: changed since (a write cut back).
        let (dir, number) = (
            target.parent().and_then(Path::parent).unwrap_or(target),
            target
                .file_stem()
                .and_then(|n| n.to_str()?.parse().ok())
                .unwrap_or(0),
        );
        return Err(not_a_prefix(dir, number, have, len));
    }
    let mut to = OpenOptions::new()
        .create(true)
        .append(true)
        .open(target)
        .map_err(writing)?;
    let offset = have;
    progress(offset, len);
    from.seek(SeekFrom::Start(offset)).map_err(reading)?;
    let copied = std::io::copy(&mut from.take(len - offset), &mut to).map_err(writing)?;
    to.sync_all().map_err(writing)?;
    Ok(copied)
}

/// Bytes compared at the end of what a segment's copy already holds.
const TAIL: u64 = 64 * 1024;

/// Whether the last [`TAIL`] bytes of the first `len` of `source` and of
/// `target` agree: a copy made earlier is still a prefix of the segment
/// (it is not if the service cut back a failed write that the earlier
/// backup had copied, and wrote other records there since).
fn same_tail(source: &mut File, target: &Path, len: u64) -> Result<bool, OpenError> {
    if len == 0 {
        return Ok(true);
    }
    let from = len.saturating_sub(TAIL);
    let n = (len - from) as usize;
    let read = |file: &mut File, what: &Path| -> Result<Vec<u8>, OpenError> {
        let mut bytes = vec![0u8; n];
        file.seek(SeekFrom::Start(from))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| io(&format!("reading {}", what.display()), e))?;
        Ok(bytes)
    };
    let ours = read(source, Path::new("the segment"))?;
    let mut copy =
        File::open(target).map_err(|e| io(&format!("reading {}", target.display()), e))?;
    Ok(read(&mut copy, target)? == ours)
}

/// Copies a side file whole (through a temporary file, synced and renamed),
/// if it exists; whether it did.
fn copy_whole(source: &Path, target: &Path) -> Result<bool, OpenError> {
    let mut from = match File::open(source) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(&format!("reading {}", source.display()), e)),
    };
    let tmp = temporary(target);
    let writing = |e| io(&format!("writing {}", target.display()), e);
    let mut to = File::create(&tmp).map_err(writing)?;
    // The source's permissions (tokens.json is readable by its owner only).
    let permissions = from
        .metadata()
        .map_err(|e| io(&format!("reading {}", source.display()), e))?
        .permissions();
    to.set_permissions(permissions).map_err(writing)?;
    if let Err(e) = std::io::copy(&mut from, &mut to) {
        // A full disk: the partial copy does not keep the space.
        drop(to);
        let _ = fs::remove_file(&tmp);
        return Err(writing(e));
    }
    to.sync_all().map_err(writing)?;
    fs::rename(&tmp, target).map_err(writing)?;
    Ok(true)
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Writes the manifest: what the backup holds and where it came from.
fn write_manifest(to: &Path, from: &Path, report: &BackupReport) -> Result<(), OpenError> {
    let hash = hex(&report.head_hash);
    let manifest = serde_json::json!({
        "format": 1,
        "position": report.position,
        "head_hash": hash,
        "segments": report.segments,
        "files": report.files,
        "source": from.display().to_string(),
        "finished_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    let text = format!("{manifest}\n");
    let target = to.join(MANIFEST);
    let tmp = temporary(&target);
    let writing = |e| io(&format!("writing {}", target.display()), e);
    let mut file = File::create(&tmp).map_err(writing)?;
    file.write_all(text.as_bytes()).map_err(writing)?;
    file.sync_all().map_err(writing)?;
    fs::rename(&tmp, &target).map_err(writing)?;
    sync_dir(to).map_err(writing)?;
    Ok(())
}

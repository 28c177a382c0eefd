//! The data directory's files: segment names and listing, the directory's
//! lock, the sled index (open, reopen, recreate, rebuild) and the id filter,
//! and what goes wrong opening them ([`OpenError`]).

use super::*;

/// Why the log could not be opened. The message names the file and offset.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{file} at offset {offset}: {problem}; the log is damaged and was not opened (run `openptl verify`)")]
    Corrupt {
        file: String,
        offset: u64,
        problem: String,
    },
    #[error("the data directory {dir} is in use by another openptl process (it holds {dir}/LOCK); stop that one first")]
    InUse { dir: String },
    /// Something on disk was written by a newer OpenPTL (decision 91).
    #[error("{0}")]
    Newer(String),
    #[error("{0}")]
    Io(#[source] Failure),
}

/// A failure reading or writing the data directory's files, its cause kept.
pub(super) fn io(context: &str, e: impl std::error::Error + Send + Sync + 'static) -> OpenError {
    OpenError::Io(Failure::caused_by(context, e))
}

pub(super) fn segment_name(n: u32) -> String {
    format!("{n:08}.seg")
}

pub(super) fn list_segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>, OpenError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io("listing segments", e))? {
        let path = entry.map_err(|e| io("listing segments", e))?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(n) = number {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Takes the data directory's lock (`LOCK`, held while the returned file is
/// open): one process at a time may write a log or rebuild its index.
pub(super) fn lock_data_dir(dir: &Path) -> Result<File, OpenError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io(&format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::InUse {
            dir: dir.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&format!("locking {}", path.display()), e)),
    }
}

/// An event-id filter for a log of `segment_bytes`: room for twice the
/// records such a log holds (at 200 bytes a record; demo records average
/// about 260), and never fewer than a million.
pub(super) fn id_filter(segment_bytes: u64) -> fastbloom::AtomicBloomFilter {
    let expected = (segment_bytes / 200 * 2).max(1_000_000) as usize;
    fastbloom::AtomicBloomFilter::with_false_pos(ID_FILTER_FALSE_POSITIVES).expected_items(expected)
}

/// Opens (or creates) the sled index at `path`.
pub(super) fn open_index(path: &Path) -> sled::Result<sled::Db> {
    index::open(path, INDEX_CACHE_BYTES)
}

/// Deletes the index and creates an empty one in its place: far quicker
/// than emptying it in place (sled 0.34's `clear` took 16 minutes over a
/// 20M-item index, and left its page table as large).
pub(super) fn recreate_index(index: sled::Db, dir: &Path) -> Result<sled::Db, OpenError> {
    drop(index);
    fs::remove_dir_all(dir).map_err(|e| io("removing the index", e))?;
    open_index_patiently(dir).map_err(|e| io("creating the index", e))
}

/// Closes `index` and opens it again, which makes sled 0.34 checkpoint: it
/// writes its page table only when it opens, and otherwise replays at its
/// next open everything written since the last (decision 63). Dropping the
/// last handle stops sled's threads and frees its lock, but its flusher
/// thread may hold the lock a moment longer (more so on a busy machine), so
/// the open is tried for up to 5 s.
pub(super) fn reopen(index: sled::Db, dir: &Path) -> sled::Result<sled::Db> {
    index.flush()?;
    drop(index);
    open_index_patiently(dir)
}

/// [`open_index`], tried again every 100 ms for up to 5 s while sled's
/// lock is held: it may outlive the last handle by a moment, and the data
/// directory's own lock (taken first) rules out another process.
pub(super) fn open_index_patiently(dir: &Path) -> sled::Result<sled::Db> {
    let mut attempts = 1;
    loop {
        match open_index(dir) {
            Err(e) if lock_held(&e) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            opened => return opened,
        }
    }
}

/// Whether sled refused to open because its lock file is held. sled 0.34
/// reports that as an `Other` I/O error naming the lock (config.rs), with
/// the OS's "would block" only inside the message.
pub(super) fn lock_held(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(e) => {
            e.kind() == std::io::ErrorKind::WouldBlock
                || e.to_string().starts_with("could not acquire lock")
        }
        _ => false,
    }
}

/// Deletes the sled index of the log in `dir` and rebuilds it from the
/// segments (`openptl rebuild-index`). The log must not be open.
pub fn rebuild_index(dir: &Path) -> Result<u64, OpenError> {
    let _lock = lock_data_dir(dir)?;
    let index_dir = dir.join("index");
    if index_dir.exists() {
        fs::remove_dir_all(&index_dir).map_err(|e| io("removing the index", e))?;
    }
    let index = open_index(&index_dir).map_err(|e| io("creating the index", e))?;
    // Nothing acknowledged to hold the segments to: the index is gone.
    let scanned = scan_for_open(&dir.join("segments"), 0)?;
    index_from(&index, &dir.join("segments"), 0, &scanned)?;
    // Checkpoint here rather than replay the whole rebuild at the next start.
    drop(reopen(index, &index_dir).map_err(|e| io("reopening the index", e))?);
    Ok(scanned.0.head)
}

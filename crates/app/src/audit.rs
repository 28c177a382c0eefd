//! The access log (issue 7): who read which patient-level data, when. Every
//! stored event already names its actor; this records reads. Entries name
//! the pathway (its id), never an NHS number, and go to `access.log` in the
//! data directory as JSON lines, with the most recent kept in memory for
//! `GET /v1/audit`. Rotate it by moving it away and sending the service
//! SIGHUP, which reopens it ([`AccessLog::reopen`]), or with `copytruncate`.
//!
//! A line the file cannot take (a full disk) waits in memory and is written,
//! in order, once it can; past [`MAX_PENDING`] bytes waiting, reads of
//! patient data are refused (decision 194): never shown without a trace.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::PoisonError;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Entries kept in memory for `GET /v1/audit`.
const RECENT: usize = 20_000;

/// One read of patient-level data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: String,
    /// `pathway`, `pathway_events`, `ptl`, `ptl_csv`, `cwt_extract`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pathway_id: Option<String>,
    /// Rows returned by a list or extract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
}

pub struct AccessLog {
    /// The file, and the bytes of lines not written to it yet.
    out: Option<Mutex<Out>>,
    /// Where the file was opened, to reopen it after a rotation.
    path: Option<std::path::PathBuf>,
    /// How many bytes of unwritten lines may wait in memory.
    max_pending: usize,
    recent: Mutex<VecDeque<AccessEntry>>,
}

/// The access log's file and what could not be written to it yet.
struct Out {
    file: Box<dyn Write + Send>,
    /// Whole lines a failed write left, in order: written before the next
    /// line, so no line is ever missing.
    pending: Vec<u8>,
    /// How much of the first pending line the file took before it failed
    /// (a line torn by a full disk): its end follows it there, or after a
    /// rotation the whole line goes to the new file.
    written: usize,
}

/// Bytes of unwritten lines kept in memory while the access log cannot be
/// written (a full disk): some 60,000 reads.
pub const MAX_PENDING: usize = 16 << 20;

impl Out {
    /// Writes `pending` out, as far as the file takes it; whole lines
    /// written leave it.
    fn flush(&mut self) -> std::io::Result<()> {
        let result = loop {
            if self.written == self.pending.len() {
                break Ok(());
            }
            match self.file.write(&self.pending[self.written..]) {
                Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        // Drop every line written whole; keep a torn one whole.
        let done = self.pending[..self.written]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |at| at + 1);
        self.pending.drain(..done);
        self.written -= done;
        result
    }

    /// Bytes of lines not written yet.
    fn waiting(&self) -> usize {
        self.pending.len() - self.written
    }
}

/// What became of a read's line.
#[derive(Debug)]
pub enum Recorded {
    /// Written to the file (with any that waited before it).
    Written,
    /// The file could not take it: it waits in memory, after the others
    /// (`pending` bytes in all), and is written when the file takes writes
    /// again. The read may be answered. `first`: no line waited before it
    /// (the service logs the start of a wait once, not every read).
    Waiting {
        pending: usize,
        first: bool,
        error: std::io::Error,
    },
}

/// Opens the access log at `path` for appending, owner-only.
fn open_for_append(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

impl AccessLog {
    /// An access log appended to `path` (its recent tail loaded).
    pub fn open(path: &Path) -> std::io::Result<AccessLog> {
        let mut recent = VecDeque::new();
        if let Ok(file) = std::fs::File::open(path) {
            for line in std::io::BufReader::new(file).lines() {
                if let Ok(entry) = serde_json::from_str::<AccessEntry>(&line?) {
                    if recent.len() == RECENT {
                        recent.pop_front();
                    }
                    recent.push_back(entry);
                }
            }
        }
        let mut log = AccessLog::writing_to(Box::new(open_for_append(path)?), MAX_PENDING);
        log.path = Some(path.to_path_buf());
        log.recent = Mutex::new(recent);
        Ok(log)
    }

    /// An access log writing to `file`, already open, keeping up to
    /// `max_pending` bytes of lines it cannot write (tests hand it
    /// `/dev/full`, a disk that is always full, or a writer that fails for
    /// a while); it cannot be reopened.
    pub fn writing_to(file: Box<dyn Write + Send>, max_pending: usize) -> AccessLog {
        AccessLog {
            out: Some(Mutex::new(Out {
                file,
                pending: Vec::new(),
                written: 0,
            })),
            path: None,
            max_pending,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    pub fn in_memory() -> AccessLog {
        AccessLog {
            out: None,
            path: None,
            max_pending: 0,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Writes `entry`'s line before the read it records is answered. A
    /// line the file cannot take (a full disk) waits in memory, up to the
    /// limit, and is written with the next line the file takes; beyond the
    /// limit it is an error and nothing may be shown (decision 194).
    pub fn record(&self, entry: AccessEntry) -> std::io::Result<Recorded> {
        let mut recorded = Recorded::Written;
        if let Some(out) = &self.out {
            let mut line = serde_json::to_vec(&entry).expect("entries serialise");
            line.push(b'\n');
            let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
            let first = out.waiting() == 0;
            out.pending.extend_from_slice(&line);
            if let Err(error) = out.flush() {
                let pending = out.waiting();
                // Still all of this line waits (none of it reached the
                // file), and it would take the wait past the limit: refused.
                if pending > self.max_pending && pending >= line.len() {
                    let kept = out.pending.len() - line.len();
                    out.pending.truncate(kept);
                    return Err(error);
                }
                recorded = Recorded::Waiting {
                    pending,
                    first,
                    error,
                };
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(entry);
        Ok(recorded)
    }

    /// Bytes of lines waiting to be written.
    pub fn pending_bytes(&self) -> usize {
        self.out.as_ref().map_or(0, |out| {
            out.lock().unwrap_or_else(PoisonError::into_inner).waiting()
        })
    }

    /// Writes the lines waiting, if the file takes them now (the service
    /// asks every few seconds, and at its stop): what is still waiting, in
    /// bytes.
    pub fn write_waiting(&self) -> usize {
        let Some(out) = &self.out else {
            return 0;
        };
        let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
        if out.waiting() > 0 {
            let _ = out.flush();
        }
        out.waiting()
    }

    /// Opens the file at its path again (after a rotation moved it away):
    /// later lines, and any waiting, go to a new `access.log`. The old file
    /// keeps what it had; nothing is lost between the two.
    pub fn reopen(&self) -> std::io::Result<()> {
        let (Some(out), Some(path)) = (&self.out, &self.path) else {
            return Ok(());
        };
        let _ = out;
        self.replace_file(Box::new(open_for_append(path)?));
        Ok(())
    }

    /// Writes from now on to `file` (a rotation's new file).
    fn replace_file(&self, file: Box<dyn Write + Send>) {
        let Some(out) = &self.out else {
            return;
        };
        let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
        out.file = file;
        // A line the old file holds torn is written whole to the new one
        // (the old file keeps its torn start, which no reader takes for a
        // line); what waited goes after it, if the file takes it now.
        out.written = 0;
        let _ = out.flush();
    }

    /// The most recent entries first, optionally for one actor or pathway.
    pub fn recent(
        &self,
        actor: Option<&str>,
        pathway_id: Option<&str>,
        limit: usize,
    ) -> Vec<AccessEntry> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent
            .iter()
            .rev()
            .filter(|e| actor.is_none_or(|a| e.actor == a))
            .filter(|e| pathway_id.is_none_or(|p| e.pathway_id.as_deref() == Some(p)))
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A disk that takes `room` bytes at a time, then is full until more
    /// room is given; what it took is kept to read back.
    #[derive(Clone, Default)]
    struct Disk {
        room: Arc<AtomicUsize>,
        bytes: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let room = self.room.load(Ordering::SeqCst);
            if room == 0 {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = buf.len().min(room);
            self.room.fetch_sub(n, Ordering::SeqCst);
            self.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn entry(i: usize) -> AccessEntry {
        AccessEntry {
            at: "2025-04-07T12:00:00Z".parse().unwrap(),
            actor: format!("user-{i}"),
            role: "coordinator".into(),
            action: "pathway".into(),
            pathway_id: Some(format!("P{i}")),
            rows: None,
        }
    }

    /// Lines the disk cannot take wait, in order, a line torn by the disk
    /// filling up midway included; past the limit a line is refused and
    /// not kept; once there is room every line waiting is written, whole
    /// and in order, and nothing refused is.
    #[test]
    fn lines_wait_while_the_disk_is_full_and_are_written_in_order() {
        let disk = Disk::default();
        disk.room.store(150, Ordering::SeqCst);
        let line = serde_json::to_vec(&entry(0)).unwrap().len() + 1;
        let log = AccessLog::writing_to(Box::new(disk.clone()), 3 * line);
        let mut recorded = Vec::new();
        let mut refused = Vec::new();
        for i in 0..8 {
            match log.record(entry(i)) {
                Ok(_) => recorded.push(i),
                Err(_) => refused.push(i),
            }
        }
        assert!(!refused.is_empty(), "the limit was never reached");
        assert!(log.pending_bytes() <= 3 * line + line);
        disk.room.store(usize::MAX / 2, Ordering::SeqCst);
        log.record(entry(99)).unwrap();
        recorded.push(99);
        assert_eq!(log.pending_bytes(), 0);
        let text = String::from_utf8(disk.bytes.lock().unwrap().clone()).unwrap();
        let written: Vec<usize> = text
            .lines()
            .map(|l| {
                let e: AccessEntry = serde_json::from_str(l).expect("every line whole");
                e.actor.trim_start_matches("user-").parse().unwrap()
            })
            .collect();
        assert_eq!(written, recorded);
    }

    /// A line a full disk tore is whole in the next file after a rotation,
    /// and what waited follows it there; a line that waited is written by
    /// the service's own asking, without another read.
    #[test]
    fn a_torn_line_is_whole_in_the_file_after_a_rotation() {
        let old = Disk::default();
        old.room.store(10, Ordering::SeqCst);
        let log = AccessLog::writing_to(Box::new(old.clone()), MAX_PENDING);
        log.record(entry(1)).unwrap();
        log.record(entry(2)).unwrap();
        assert_eq!(old.bytes.lock().unwrap().len(), 10, "torn after 10 bytes");
        let new = Disk::default();
        log.replace_file(Box::new(new.clone()));
        assert!(log.pending_bytes() > 0, "the new disk is full too");
        new.room.store(usize::MAX / 2, Ordering::SeqCst);
        assert_eq!(log.write_waiting(), 0);
        let text = String::from_utf8(new.bytes.lock().unwrap().clone()).unwrap();
        let actors: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<AccessEntry>(l).unwrap().actor)
            .collect();
        assert_eq!(actors, ["user-1", "user-2"]);
    }
}

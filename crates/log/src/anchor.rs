//! Anchors of the hash chain (issue 27): the head position and the hash of
//! the record there, published outside the log so that a rewrite of the
//! log's tail with a recomputed chain is found.
//!
//! The hash chain alone proves only that the records follow one another:
//! someone who rewrites the tail can rewrite the chain with it, and `verify`
//! passes. An anchor kept where the service cannot rewrite it (a WORM share,
//! a log shipper's input) pins the chain up to its position:
//! `openptl verify --anchors FILE` then checks every anchor against the log
//! (`segment::verify_anchors`).
//!
//! The anchors file holds one JSON object per line, appended and fsync'd,
//! never rewritten:
//!
//! ```text
//! {"v":1,"position":1234,"hash":"<64 hex digits>","at":"2026-12-04T00:10:00Z"}
//! ```
//!
//! `v` is the line's format version ([`ANCHOR_FORMAT`]); a line of a newer
//! one is refused by name rather than misread. `hash` is the SHA-256 of the
//! record at `position` as the segment log stores it ([`crate::segment::record_hash`]):
//! the `prev_hash` the next record will carry.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::segment::Hash;

/// The format version of an anchors file line this binary writes and reads.
pub const ANCHOR_FORMAT: u32 = 1;

/// The head of the hash chain: a position and the hash of the record there
/// (what the next record's `prev_hash` will be). Always a pair that belongs
/// together: never a hash of another position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub position: u64,
    pub hash: Hash,
}

/// One line of the anchors file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The line's format version ([`ANCHOR_FORMAT`]).
    pub v: u32,
    pub position: u64,
    /// The record's hash, 64 lowercase hex digits.
    pub hash: String,
    /// When the anchor was taken.
    pub at: DateTime<Utc>,
}

impl Anchor {
    /// An anchor of `head` taken at `at`.
    pub fn of(head: ChainHead, at: DateTime<Utc>) -> Anchor {
        Anchor {
            v: ANCHOR_FORMAT,
            position: head.position,
            hash: hex(&head.hash),
            at,
        }
    }

    /// The hash as bytes (`None` if the text is not 64 hex digits).
    pub fn hash_bytes(&self) -> Option<Hash> {
        let text = self.hash.as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            let digits = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(digits, 16).ok()?;
        }
        Some(out)
    }
}

/// Lowercase hex of a hash.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why an anchors file could not be used, or why the log does not match it.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("{path} line {line}: anchor format version {version}, written by a newer OpenPTL (this binary reads version {ANCHOR_FORMAT}): verify with that version or a later one")]
    Newer {
        path: PathBuf,
        line: usize,
        version: u32,
    },
    #[error("{path} line {line}: not an anchor ({problem})")]
    Malformed {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("anchor {number} (position {position}, taken {at}) no longer matches: the record there hashes to {found}, the anchor says {anchored}; the history up to that position was rewritten after the anchor was taken")]
    Mismatch {
        number: usize,
        position: u64,
        at: DateTime<Utc>,
        anchored: String,
        found: String,
    },
    #[error("anchor {number} (position {position}, taken {at}) no longer matches: the log ends at position {head}, so records anchored then were cut off")]
    Missing {
        number: usize,
        position: u64,
        at: DateTime<Utc>,
        head: u64,
    },
    #[error("reading the log: {0}")]
    Log(String),
}

/// Appends one anchor to the file at `path` (created if absent) as a JSON
/// line, and fsyncs it before returning (the directory too when the file
/// was created). Opened in append mode: nothing before is rewritten.
pub fn append(path: &Path, anchor: &Anchor) -> std::io::Result<()> {
    let created = !path.exists();
    let mut line = serde_json::to_vec(anchor).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(&line)?;
    file.sync_data()?;
    if created {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

/// Every anchor in the file at `path`, in the order written. Blank lines are
/// passed over; a torn last line (no newline: a crash while appending) is
/// passed over with a warning; any other line that is not an anchor, or is
/// one of a newer format version, is an error naming the line.
pub fn read(path: &Path) -> Result<Vec<Anchor>, AnchorError> {
    let text = std::fs::read_to_string(path).map_err(|e| AnchorError::File {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |problem: String| AnchorError::Malformed {
            path: path.to_path_buf(),
            line: number,
            problem,
        };
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if number == lines.len() && !complete => {
                tracing::warn!(file = %path.display(), line = number, "the last anchor line is torn (a crash while appending); passed over");
                continue;
            }
            Err(e) => return Err(malformed(e.to_string())),
        };
        let version = value.get("v").and_then(|v| v.as_u64()).unwrap_or(0);
        if version > u64::from(ANCHOR_FORMAT) {
            return Err(AnchorError::Newer {
                path: path.to_path_buf(),
                line: number,
                version: u32::try_from(version).unwrap_or(u32::MAX),
            });
        }
        let anchor: Anchor = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
        if anchor.v != ANCHOR_FORMAT {
            return Err(malformed(format!("format version {}", anchor.v)));
        }
        if anchor.hash_bytes().is_none() {
            return Err(malformed("the hash is not 64 hex digits".into()));
        }
        out.push(anchor);
    }
    Ok(out)
}

/// The last anchor in the file at `path`, if it can be read (for the
/// service's start: no need to anchor a head already anchored).
pub fn last(path: &Path) -> Option<Anchor> {
    read(path).ok()?.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(position: u64) -> Anchor {
        Anchor::of(
            ChainHead {
                position,
                hash: [position as u8; 32],
            },
            "2026-12-04T00:10:00Z".parse().unwrap(),
        )
    }

    #[test]
    fn anchors_append_and_read_back_and_newer_lines_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchors.jsonl");
        append(&path, &anchor(3)).unwrap();
        append(&path, &anchor(7)).unwrap();
        let read_back = read(&path).unwrap();
        assert_eq!(read_back, vec![anchor(3), anchor(7)]);
        assert_eq!(read_back[1].hash_bytes(), Some([7; 32]));
        assert_eq!(last(&path), Some(anchor(7)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(r#"{"v":1,"position":3,"hash":"0303"#),
            "{text}"
        );

        // A torn last line is passed over.
        std::fs::write(&path, format!("{text}{{\"v\":1,\"posi")).unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);

        // A line of a newer format is refused by name.
        std::fs::write(&path, format!("{text}{{\"v\":2,\"whatever\":true}}\n")).unwrap();
        let refused = read(&path).unwrap_err().to_string();
        assert!(
            refused.contains("line 3") && refused.contains("newer OpenPTL"),
            "{refused}"
        );

        // Garbage in the middle is refused.
        std::fs::write(&path, format!("nonsense\n{text}")).unwrap();
        assert!(matches!(
            read(&path),
            Err(AnchorError::Malformed { line: 1, .. })
        ));
    }
}

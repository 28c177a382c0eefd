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
/// was created). Opened in append mode: nothing before is rewritten. A
/// line torn by an earlier crash (the file does not end with a newline) is
/// ended first, so the new anchor is a line of its own; a write that fails
/// (a full disk) is cut back, so it leaves no torn line behind.
pub fn append(path: &Path, anchor: &Anchor) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    let before = file.metadata()?.len();
    let mut line = Vec::with_capacity(160);
    if before > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(before - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            line.push(b'\n');
        }
    }
    serde_json::to_writer(&mut line, anchor).map_err(std::io::Error::other)?;
    line.push(b'\n');
    if let Err(e) = file.write_all(&line).and_then(|()| file.sync_data()) {
        // Best effort: the error is what the caller hears either way.
        let _ = file.set_len(before).and_then(|()| file.sync_data());
        return Err(e);
    }
    if before == 0 {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

/// An anchors file read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnchorsFile {
    /// Every anchor, in the order written.
    pub anchors: Vec<Anchor>,
    /// Lines that are not JSON at all (a write torn by a crash), by number:
    /// passed over, and reported by `verify`. They anchor nothing.
    pub torn: Vec<usize>,
}

/// Every anchor in the file at `path`, in the order written. Blank lines
/// and lines that are not JSON (torn writes) are passed over; a JSON line
/// that is not an anchor, or is one of a newer format version, is an error
/// naming the line.
pub fn read(path: &Path) -> Result<AnchorsFile, AnchorError> {
    let text = std::fs::read_to_string(path).map_err(|e| AnchorError::File {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    let mut out = AnchorsFile::default();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |problem: String| AnchorError::Malformed {
            path: path.to_path_buf(),
            line: number,
            problem,
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            tracing::warn!(file = %path.display(), line = number, "an anchors file line is not JSON (a write torn by a crash?); passed over");
            out.torn.push(number);
            continue;
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
        out.anchors.push(anchor);
    }
    Ok(out)
}

/// Checks every anchor against `found` (each anchored position → the hash
/// of the record there, `None` when the log no longer holds it) of a log
/// whose head is `head`. Fails naming the first anchor, in the file's
/// order, that no longer matches; gives how many were checked.
pub fn check(
    anchors: &[Anchor],
    found: &std::collections::BTreeMap<u64, Option<Hash>>,
    head: u64,
) -> Result<usize, AnchorError> {
    for (i, anchor) in anchors.iter().enumerate() {
        let number = i + 1;
        let anchored = anchor.hash_bytes().ok_or_else(|| AnchorError::Malformed {
            path: Default::default(),
            line: number,
            problem: "the hash is not 64 hex digits".into(),
        })?;
        let actual = match anchor.position {
            0 => Some([0u8; 32]),
            p => found.get(&p).copied().flatten(),
        };
        match actual {
            None => {
                return Err(AnchorError::Missing {
                    number,
                    position: anchor.position,
                    at: anchor.at,
                    head,
                })
            }
            Some(hash) if hash != anchored => {
                return Err(AnchorError::Mismatch {
                    number,
                    position: anchor.position,
                    at: anchor.at,
                    anchored: anchor.hash.clone(),
                    found: hex(&hash),
                })
            }
            Some(_) => {}
        }
    }
    Ok(anchors.len())
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
        assert_eq!(read_back.anchors, vec![anchor(3), anchor(7)]);
        assert!(read_back.torn.is_empty());
        assert_eq!(read_back.anchors[1].hash_bytes(), Some([7; 32]));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(r#"{"v":1,"position":3,"hash":"0303"#),
            "{text}"
        );

        // A line torn by a crash is ended by the next append and passed over.
        std::fs::write(&path, format!("{text}{{\"v\":1,\"posi")).unwrap();
        append(&path, &anchor(9)).unwrap();
        let read_back = read(&path).unwrap();
        assert_eq!(read_back.anchors, vec![anchor(3), anchor(7), anchor(9)]);
        assert_eq!(read_back.torn, vec![3]);

        // A line of a newer format is refused by name.
        std::fs::write(&path, format!("{text}{{\"v\":2,\"whatever\":true}}\n")).unwrap();
        let refused = read(&path).unwrap_err().to_string();
        assert!(
            refused.contains("line 3") && refused.contains("newer OpenPTL"),
            "{refused}"
        );

        // A JSON line that is not an anchor is refused.
        std::fs::write(&path, format!("{{\"v\":1}}\n{text}")).unwrap();
        assert!(matches!(
            read(&path),
            Err(AnchorError::Malformed { line: 1, .. })
        ));
    }
}

//! The access log (issue 7): who read which patient-level data, when. Every
//! stored event already names its actor; this records reads. Entries name
//! the pathway (its id), never an NHS number, and go to `access.log` in the
//! data directory as JSON lines (rotate it with `copytruncate`), with the
//! most recent kept in memory for `GET /v1/audit`.

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
    file: Option<Mutex<std::fs::File>>,
    recent: Mutex<VecDeque<AccessEntry>>,
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
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        Ok(AccessLog {
            file: Some(Mutex::new(options.open(path)?)),
            recent: Mutex::new(recent),
        })
    }

    pub fn in_memory() -> AccessLog {
        AccessLog {
            file: None,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    pub fn record(&self, entry: AccessEntry) {
        if let Some(file) = &self.file {
            let mut line = serde_json::to_vec(&entry).expect("entries serialise");
            line.push(b'\n');
            let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = file.write_all(&line) {
                tracing::error!(error = %e, "the access log could not be written");
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(entry);
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

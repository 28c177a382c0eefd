//! Anchoring the log's hash chain (issue 27): the service publishes the
//! chain's head (position and hash, [`openptl_log::anchor`]) outside the
//! log, so that rewriting the tail, chain and all, is found by `openptl
//! verify --anchors`.
//!
//! An anchor is written once the projection has caught up at start-up,
//! then every [`DEFAULT_ANCHOR_EVERY`] (configurable) while the head moves,
//! and at a clean shutdown: a JSON line appended to the anchors file and
//! fsync'd, a log line (position and hash; no event content) and the gauge
//! `openptl_log_anchored_position`. A head already anchored is not anchored
//! again. Failing to write an anchor is logged and tried again at the next
//! tick; it never stops appends (anchors vouch for the log, they are not
//! part of it).

use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openptl_log::anchor::{self, Anchor};
use openptl_log::{ChainHead, LogError};
use tokio::sync::watch;

use crate::App;

/// How often the head is anchored while it moves, by default.
pub const DEFAULT_ANCHOR_EVERY: Duration = Duration::from_secs(600);

/// The anchors file's name in the data directory, by default.
pub const ANCHORS_FILE: &str = "anchors.jsonl";

/// Why an anchor was not written.
#[derive(Debug, thiserror::Error)]
pub enum AnchoringError {
    #[error("reading the log's chain head: {0}")]
    Log(#[from] LogError),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Writes anchors of one log to one file.
pub struct Anchorer {
    path: PathBuf,
    /// The last head anchored (by this process, or the file's last line).
    last: Mutex<Option<ChainHead>>,
}

impl Anchorer {
    /// Anchors to the file at `path`; its last anchor (if it can be read)
    /// is taken as anchored already.
    pub fn new(path: &Path) -> Anchorer {
        let last = if path.exists() {
            match anchor::read(path) {
                Ok(file) => file.anchors.last().and_then(|a| {
                    Some(ChainHead {
                        position: a.position,
                        hash: a.hash_bytes()?,
                    })
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "the anchors file could not be read; anchors are appended to it all the same");
                    None
                }
            }
        } else {
            None
        };
        Anchorer {
            path: path.to_path_buf(),
            last: Mutex::new(last),
        }
    }

    /// The anchors file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Anchors the log's head now, unless it is empty, keeps no chain head
    /// (`None`), was anchored already, or is damaged.
    pub async fn anchor(&self, app: &App) -> Result<Option<Anchor>, AnchoringError> {
        if app.log.damage().is_some() {
            // Never vouch for a history the log itself found altered.
            return Ok(None);
        }
        let Some(head) = app.log.chain_head().await? else {
            return Ok(None);
        };
        let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = last {
            app.metrics.log_anchored.set(last.position as i64);
            if last == head {
                return Ok(None);
            }
            if last.position == head.position {
                // The file's last anchor names this position with another
                // hash: the log was rewritten (or the file belongs to
                // another log). `verify --anchors` says which anchor; no
                // anchor vouches for this history meanwhile.
                tracing::error!(
                    position = head.position,
                    anchored = %anchor::hex(&last.hash),
                    found = %anchor::hex(&head.hash),
                    "the log's head does not match the last anchor, so it is not anchored: run `openptl verify --anchors` on the stopped service"
                );
                return Ok(None);
            }
            if head.position < last.position {
                // Behind the file's last anchor: a restore of an older
                // backup, or a log cut short. An anchor here would sit
                // below one it contradicts (it once did, with a line at
                // INFO); the operator starts a new anchors file after a
                // restore made on purpose.
                tracing::error!(
                    head = head.position,
                    anchored = last.position,
                    file = %self.path.display(),
                    "the log ends before the last anchor, so it is not anchored: if it was restored from a backup on purpose, start with a new anchors file (docs/operations.md); else run `openptl verify --anchors`"
                );
                return Ok(None);
            }
        }
        if head.position == 0 {
            return Ok(None);
        }
        let taken = Anchor::of(head, chrono::Utc::now());
        let path = self.path.clone();
        let line = taken.clone();
        tokio::task::spawn_blocking(move || anchor::append(&path, &line))
            .await
            .map_err(|e| AnchoringError::Write {
                path: self.path.display().to_string(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(|source| AnchoringError::Write {
                path: self.path.display().to_string(),
                source,
            })?;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(head);
        app.metrics.log_anchored.set(head.position as i64);
        tracing::info!(position = taken.position, hash = %taken.hash, file = %self.path.display(), "log anchored");
        Ok(Some(taken))
    }

    /// [`Anchorer::anchor`], its failure logged.
    pub async fn anchor_logged(&self, app: &App) {
        if let Err(e) = self.anchor(app).await {
            tracing::error!(error = %e, "the log's head could not be anchored; trying again at the next interval");
        }
    }
}

/// Anchors the head now (call it once caught up), then every `every` while
/// it moves, until `stop` turns true. The anchor at shutdown is the
/// caller's, after the last append ([`Anchorer::anchor`]).
pub async fn run(
    app: Arc<App>,
    anchorer: Arc<Anchorer>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => anchorer.anchor_logged(&app).await,
            () = async { drop(stop.wait_for(|stopped| *stopped).await) } => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FixedClock;
    use openptl_log::suite::record;
    use openptl_log::{EventLog, MemoryLog};

    #[tokio::test]
    async fn the_head_is_anchored_once_each_time_it_moves() {
        let log = Arc::new(MemoryLog::new());
        let clock = Arc::new(FixedClock("2026-01-05T12:00:00Z".parse().unwrap()));
        let app = App::new(log.clone(), openptl_rules::RulesConfig::defaults(), clock);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ANCHORS_FILE);
        let anchorer = Anchorer::new(&path);
        // An empty log is not anchored.
        assert!(anchorer.anchor(&app).await.unwrap().is_none());
        log.append(vec![record("a", None, b"1"), record("b", None, b"2")])
            .await
            .unwrap();
        let first = anchorer.anchor(&app).await.unwrap().unwrap();
        assert_eq!(first.position, 2);
        assert!(anchorer.anchor(&app).await.unwrap().is_none());
        log.append(vec![record("a", None, b"3")]).await.unwrap();
        assert_eq!(anchorer.anchor(&app).await.unwrap().unwrap().position, 3);
        assert_eq!(
            openptl_log::anchor::read(&path)
                .unwrap()
                .anchors
                .iter()
                .map(|a| a.position)
                .collect::<Vec<_>>(),
            [2, 3]
        );
        assert!(app
            .render_metrics()
            .contains("openptl_log_anchored_position 3"));
        // A new process takes the file's last anchor as done.
        let again = Anchorer::new(&path);
        assert!(again.anchor(&app).await.unwrap().is_none());
        // A log behind the last anchor (an older backup restored) or at its
        // position with another history is not anchored: no line is added.
        for records in [1, 3] {
            let other = Arc::new(MemoryLog::new());
            for i in 0..records {
                other.append(vec![record("x", None, &[i])]).await.unwrap();
            }
            let clock = Arc::new(FixedClock("2026-01-06T12:00:00Z".parse().unwrap()));
            let app = App::new(other, openptl_rules::RulesConfig::defaults(), clock);
            assert!(Anchorer::new(&path).anchor(&app).await.unwrap().is_none());
        }
        assert_eq!(openptl_log::anchor::read(&path).unwrap().anchors.len(), 2);
    }
}

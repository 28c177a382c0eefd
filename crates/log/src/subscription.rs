//! Catch-up subscriptions: read every record from a global position, then
//! follow the log live, in order, with no gaps and no duplicates — how
//! projections (and, later, gRPC subscribers) follow the log. Resuming from
//! a checkpoint is `Subscription::from(log, checkpoint + 1)`.

use std::sync::Arc;

use tokio::sync::watch;

use crate::{EventLog, LogError, StoredRecord};

/// A page of the log being read on a task of its own.
type PageRead = tokio::task::JoinHandle<Result<Vec<StoredRecord>, LogError>>;

/// A cursor over the log: catch-up reads, then live.
pub struct Subscription {
    log: Arc<dyn EventLog>,
    next: u64,
    head: watch::Receiver<u64>,
    page: usize,
    /// The page being read from `next`: started ahead while the caller
    /// works on the last one (catching up: reading and folding overlap),
    /// or by a call to [`Subscription::next`] that its caller stopped
    /// waiting for. Kept here, so a caller that waits in turns (a
    /// `select!` with a timer) is given the read it started, however long
    /// one read takes, rather than starting it again each turn.
    read: Option<(u64, PageRead)>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some((_, read)) = self.read.take() {
            read.abort();
        }
    }
}

/// One step of a subscription.
pub struct Batch {
    pub records: Vec<StoredRecord>,
    /// More records were already stored when this batch was read (still
    /// catching up): a follower may postpone expensive work until false.
    pub more: bool,
}

impl Subscription {
    /// Follows `log` from global position `from` (1 for everything), reading
    /// at most `page` records per step.
    pub fn from(log: Arc<dyn EventLog>, from: u64, page: usize) -> Subscription {
        let head = log.watch_head();
        Subscription {
            log,
            next: from.max(1),
            head,
            page: page.max(1),
            read: None,
        }
    }

    /// The position the next record will have.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next records, waiting for new appends when caught up. `Ok(None)`
    /// when the log has shut down. Cancel-safe: a call dropped while it
    /// reads leaves the read running for the next call.
    pub async fn next(&mut self) -> Result<Option<Batch>, LogError> {
        loop {
            if self.log.head() >= self.next {
                let read = match self.read.take() {
                    Some((from, read)) if from == self.next => read,
                    other => {
                        if let Some((_, stale)) = other {
                            stale.abort();
                        }
                        self.spawn_read()
                    }
                };
                let read = &mut self.read.insert((self.next, read)).1;
                let outcome = read.await;
                self.read = None;
                let records = outcome
                    .map_err(|e| LogError::storage(format!("reading the log stopped: {e}")))??;
                if records.first().map(|r| r.position) == Some(self.next) {
                    let last = records.last().map_or(self.next, |r| r.position);
                    self.next = last + 1;
                    let more = self.log.head() >= self.next;
                    if more {
                        let ahead = self.spawn_read();
                        self.read = Some((self.next, ahead));
                    }
                    return Ok(Some(Batch { records, more }));
                }
            }
            if self.head.changed().await.is_err() {
                return Ok(None);
            }
        }
    }

    /// Starts reading a page from `next` on a task of its own.
    fn spawn_read(&self) -> PageRead {
        let (log, from, page) = (self.log.clone(), self.next, self.page);
        tokio::spawn(async move { log.read_all(from, page).await })
    }
}

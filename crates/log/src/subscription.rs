//! Catch-up subscriptions: read every record from a global position, then
//! follow the log live, in order, with no gaps and no duplicates — how
//! projections (and, later, gRPC subscribers) follow the log. Resuming from
//! a checkpoint is `Subscription::from(log, checkpoint + 1)`.

use std::sync::Arc;

use tokio::sync::watch;

use crate::{EventLog, LogError, StoredRecord};

/// A cursor over the log: catch-up reads, then live.
pub struct Subscription {
    log: Arc<dyn EventLog>,
    next: u64,
    head: watch::Receiver<u64>,
    page: usize,
    /// The next page, being read while the caller works on the last one
    /// (only while catching up): reading and folding overlap.
    prefetch: Option<tokio::task::JoinHandle<Result<Vec<StoredRecord>, LogError>>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(read) = self.prefetch.take() {
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
            prefetch: None,
        }
    }

    /// The position the next record will have.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next records, waiting for new appends when caught up. `Ok(None)`
    /// when the log has shut down.
    pub async fn next(&mut self) -> Result<Option<Batch>, LogError> {
        loop {
            if self.log.head() >= self.next {
                let records = match self.prefetch.take() {
                    // A page read ahead from `next` (failed or cut short:
                    // read again below).
                    Some(read) => match read.await {
                        Ok(Ok(records)) => records,
                        _ => Vec::new(),
                    },
                    None => Vec::new(),
                };
                let records = if records.first().map(|r| r.position) == Some(self.next) {
                    records
                } else {
                    self.log.read_all(self.next, self.page).await?
                };
                if let Some(last) = records.last() {
                    self.next = last.position + 1;
                    let more = self.log.head() >= self.next;
                    if more {
                        let (log, from, page) = (self.log.clone(), self.next, self.page);
                        self.prefetch =
                            Some(tokio::spawn(async move { log.read_all(from, page).await }));
                    }
                    return Ok(Some(Batch { records, more }));
                }
            }
            if self.head.changed().await.is_err() {
                return Ok(None);
            }
        }
    }
}

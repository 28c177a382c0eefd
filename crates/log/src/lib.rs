//! The event log: the only source of truth. One trait, [`EventLog`], with
//! interchangeable implementations (in memory for tests today; segment files
//! with a sled index, and PostgreSQL, behind the same trait).
//!
//! The log knows streams, versions, positions, event ids and opaque payload
//! bytes; it knows nothing of pathways or clocks. It enforces two things
//! atomically for a whole batch: optimistic concurrency (expected stream
//! version) and event-id uniqueness forever (an identical re-append is a
//! replay, a different one a conflict).

pub mod anchor;
mod failure;
mod memory;
pub mod postgres;
pub mod segment;
mod subscription;
pub mod suite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

pub use anchor::{Anchor, ChainHead};
pub use failure::Failure;
pub use memory::{apply_plan, check_verbatim, plan_batch, MemoryLog, Planned, Stamp};
pub use postgres::PgLog;
pub use segment::SegmentLog;
pub use subscription::{Batch, Subscription};

/// The user this process runs as (its effective uid), to compare with the
/// owner of a data directory before writing into it.
#[cfg(unix)]
pub fn effective_uid() -> u32 {
    // SAFETY: `geteuid` cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Makes every file and directory this process creates from now on
/// readable by its owner alone (umask 077), whatever umask it was started
/// with. The data directory, its backups and snapshots hold patient data
/// (NHS numbers) and secrets (the import key, the tokens): a backup run from
/// an operator's shell or cron, where the umask is usually 022, must not
/// leave them readable by every user of the host. The systemd unit's
/// `UMask=0077` says the same for the service; this holds for every command.
pub fn private_files() {
    // SAFETY: `umask` only sets the process's file-mode mask; it cannot
    // fail and touches no memory.
    #[cfg(unix)]
    unsafe {
        libc::umask(0o077);
    }
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub stream_id: String,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    pub actor: String,
    pub payload: Vec<u8>,
    /// The stream version this record must follow (0: the stream must not
    /// exist yet); `None` appends whatever the version is.
    pub expected_version: Option<u64>,
}

/// A stored record with the metadata the log assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Global position, 1 for the first record of the log, without gaps.
    pub position: u64,
    pub stream_id: String,
    /// Version within the stream, 1 for its first record, without gaps.
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    /// When the log stored it; never earlier than the record before it.
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub payload: Vec<u8>,
}

impl StoredRecord {
    /// Whether `new` carries the same content (the idempotency test of SPEC 3.1).
    pub fn same_content(&self, new: &NewRecord) -> bool {
        self.stream_id == new.stream_id
            && self.event_type == new.event_type
            && self.schema_version == new.schema_version
            && self.payload == new.payload
    }

    /// The record, borrowed.
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            position: self.position,
            stream_id: &self.stream_id,
            version: self.version,
            event_id: self.event_id,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            recorded_at: self.recorded_at,
            actor: &self.actor,
            payload: &self.payload,
        }
    }
}

/// A stored record read in place: the fields of a [`StoredRecord`] borrowed
/// from the log's own buffers, so a fold over the whole log copies nothing
/// it does not keep ([`EventLog::in_place`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub position: u64,
    pub stream_id: &'a str,
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: u16,
    pub recorded_at: DateTime<Utc>,
    pub actor: &'a str,
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// The record, owned.
    pub fn to_stored(&self) -> StoredRecord {
        StoredRecord {
            position: self.position,
            stream_id: self.stream_id.to_string(),
            version: self.version,
            event_id: self.event_id,
            event_type: self.event_type.to_string(),
            schema_version: self.schema_version,
            recorded_at: self.recorded_at,
            actor: self.actor.to_string(),
            payload: self.payload.to_vec(),
        }
    }
}

/// Stored records read in place ([`EventLog::in_place`]), from several
/// threads at once. Blocking: use it off the async runtime.
pub trait InPlace: Send + Sync {
    /// The last position this reader covers.
    fn head(&self) -> u64;

    /// Hands `visit` every record from `from` to `to` (inclusive, both
    /// covered) whose stream `keep` accepts (it sees the stream id's UTF-8
    /// bytes), in order. Records of other
    /// streams are passed over: the segment log reads only their stream id
    /// and length, and checks the CRC only of those kept (the start-up scan
    /// checked every CRC).
    fn visit(
        &self,
        from: u64,
        to: u64,
        keep: &dyn Fn(&[u8]) -> bool,
        visit: &mut dyn FnMut(RecordRef<'_>),
    ) -> Result<(), LogError>;

    /// Hands `visit` the position and stream id (its UTF-8 bytes, not
    /// checked) of every record from `from` to `to` (inclusive, both
    /// covered), in order: where each stream's records are, read without
    /// checking or decoding the records. The ids are borrowed from the
    /// reader, so `visit` may keep them while it holds the reader (to look
    /// a few up together).
    fn visit_streams<'s>(
        &'s self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &'s [u8]),
    ) -> Result<(), LogError>;

    /// Hands `visit` the records at `positions` (each covered), in the
    /// order given: one stream read back from where its records are.
    fn visit_positions(
        &self,
        positions: &[u64],
        visit: &mut dyn FnMut(RecordRef<'_>),
    ) -> Result<(), LogError>;

    /// A hint that the records at `positions` will be read soon: the
    /// segment log asks the kernel for the pages they lie on all at once
    /// (when a sample of them finds one not in memory), so that those not
    /// in memory are read from disk together rather than one page fault
    /// at a time; and that the reader reads here and there, so that a page
    /// fault reads its page alone, not the pages around it too. Positions
    /// not held are passed over; nothing is read or checked here.
    fn will_read(&self, positions: &mut dyn Iterator<Item = u64>) {
        let _ = positions;
    }
}

/// What an append did with one record of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub event_id: Uuid,
    pub stream_id: String,
    pub version: u64,
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
    /// True when the record was already stored with the same content.
    pub replayed: bool,
}

impl Appended {
    fn of(record: &StoredRecord, replayed: bool) -> Appended {
        Appended {
            event_id: record.event_id,
            stream_id: record.stream_id.clone(),
            version: record.version,
            position: record.position,
            recorded_at: record.recorded_at,
            replayed,
        }
    }
}

/// Why an append or read failed. Conflicts are the caller's to resolve;
/// storage errors are the operator's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error(
        "record {index} of the batch expected stream version {expected}, the stream is at {actual}"
    )]
    VersionConflict {
        index: usize,
        stream_id: String,
        expected: u64,
        actual: u64,
    },
    #[error("record {index} of the batch reuses event id {event_id} with different content")]
    DuplicateEventId { index: usize, event_id: Uuid },
    #[error("storage failure: {0}")]
    Storage(#[source] Failure),
    /// The write failed in a way that leaves unknown whether the batch was
    /// stored (a cut that failed, a commit whose answer was lost): retrying
    /// with the same event ids is safe, they are recorded once.
    #[error("storage failure, outcome unknown: {0}")]
    OutcomeUnknown(#[source] Failure),
}

impl LogError {
    /// A storage failure (`what`, and its cause if it is a [`Failure`]
    /// made with one).
    pub fn storage(what: impl Into<Failure>) -> LogError {
        LogError::Storage(what.into())
    }

    /// A write whose outcome is unknown.
    pub fn outcome_unknown(what: impl Into<Failure>) -> LogError {
        LogError::OutcomeUnknown(what.into())
    }
}

/// Sizes for metrics; `None` where a backend cannot tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Bytes of stored records (segment files).
    pub bytes_on_disk: Option<u64>,
    /// Bytes of the derived index (sled).
    pub index_bytes: Option<u64>,
    /// The last position up to which checksums and the hash chain are
    /// verified: the segment log checks every CRC when it opens and the
    /// chain of older segments just after, in the background (decision 67).
    pub verified_position: Option<u64>,
}

/// The one way anything touches stored events.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends a batch atomically: every record or none. Returns one entry
    /// per record, in order, after the batch is durable.
    async fn append(&self, batch: Vec<NewRecord>) -> Result<Vec<Appended>, LogError>;

    /// Stores records exactly as another log stored them (positions,
    /// versions, event ids, `recorded_at`, actor, payload), so a log moves
    /// between backends with its order and hash chain (`openptl copy`). The
    /// first must follow the head, each stream's versions must follow on,
    /// and every event id must be new; otherwise nothing is stored.
    async fn append_verbatim(&self, records: Vec<StoredRecord>) -> Result<(), LogError>;

    /// Every record of a stream, in version order (empty if none).
    async fn read_stream(&self, stream_id: &str) -> Result<Vec<StoredRecord>, LogError>;

    /// The records at `positions` (each stored, any order), in the order
    /// given: how a projection that keeps only where a stream's records are
    /// reads the stream back.
    async fn read_positions(&self, positions: &[u64]) -> Result<Vec<StoredRecord>, LogError>;

    /// Up to `max` records from global position `from` (inclusive).
    async fn read_all(&self, from: u64, max: usize) -> Result<Vec<StoredRecord>, LogError>;

    /// The log's records up to the head, readable in place: how folds over
    /// many pathways read without copying every record. The segment log
    /// maps its segments (resident while the reader lives, so drop it once
    /// done). `None` when this log cannot; it is then read with
    /// [`EventLog::read_all`].
    fn in_place(&self) -> Option<Result<Box<dyn InPlace + '_>, LogError>> {
        None
    }

    /// The record stored under an event id, if any.
    async fn find_event(&self, event_id: Uuid) -> Result<Option<StoredRecord>, LogError>;

    /// The position of the last record (0 for an empty log).
    fn head(&self) -> u64;

    /// Notified with the new head after every append: the live half of a
    /// catch-up subscription (read_all up to the head, then wait here).
    fn watch_head(&self) -> watch::Receiver<u64>;

    /// Storage sizes, for `/metrics`.
    fn stats(&self) -> LogStats {
        LogStats::default()
    }

    /// Told once the service has finished starting (its projection caught
    /// up): background work the log deferred so as not to slow the start
    /// (the segment log's hash-chain check) begins now.
    fn start_up_done(&self) {}

    /// Damage found in stored history since the log opened (the segment
    /// log's background hash-chain check): appends are then refused, and
    /// the service stops rather than serve an altered history.
    fn damage(&self) -> Option<String> {
        None
    }

    /// Why appends cannot be taken now, while that lasts: the segment
    /// log's writer after a failed write (a full disk, say) until it finds
    /// it can write again, PostgreSQL while it cannot be reached. Reads may
    /// still work. `/readyz` fails meanwhile; it clears by itself.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// Backs the log up into the directory `to` while it runs (issue 27;
    /// [`segment::backup`]). Blocking: call it off the async runtime. `None`
    /// when this log cannot (PostgreSQL: the database's own backups do it).
    fn backup(
        &self,
        _to: &std::path::Path,
        _progress: &mut dyn FnMut(segment::Progress),
    ) -> Option<Result<segment::BackupReport, LogError>> {
        None
    }

    /// The head of the hash chain: the last position and the hash of the
    /// record there, read together so the hash always belongs to the
    /// position (what an anchor publishes, [`crate::anchor`]). `None` when
    /// this log keeps no chain it can vouch for; the default.
    async fn chain_head(&self) -> Result<Option<ChainHead>, LogError> {
        Ok(None)
    }
}

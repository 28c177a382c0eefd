//! `openptl verify --store postgres://…`: the PostgreSQL log checked whole,
//! as `verify` checks a data directory, beside running nodes (read only, in
//! one REPEATABLE READ snapshot, so appends meanwhile neither disturb nor
//! wait for it).
//!
//! What it proves: positions run from 1 without a gap; each stream's
//! versions run from 1 without a gap; every record's stored `prev_hash` is
//! the hash of the record before it (the segment log's chain,
//! [`crate::segment::record_hash`]), so no record was changed, removed or
//! inserted without rewriting the chain after it; the head row names the
//! last record and its hash. With anchors ([`crate::anchor`]), also that
//! the chain was not rewritten: each anchored record still hashes to what
//! was published while the service ran. Event ids are unique by the table's
//! own constraint.

use std::collections::{BTreeMap, HashMap};

use super::connect::{storage, PgConnector};
use super::valid_schema;
use crate::anchor::{Anchor, AnchorError};
use crate::segment::{record_hash, Hash};
use crate::{LogError, StoredRecord};

/// Rows read at a time.
const PAGE: i64 = 5_000;

/// What `verify` found.
#[derive(Debug)]
pub struct PgVerifyReport {
    pub records: u64,
    pub streams: usize,
    /// Each problem in words, naming the position (never a payload).
    pub problems: Vec<String>,
    /// With anchors: how many were checked, or the first that no longer
    /// matches.
    pub anchors: Option<Result<usize, AnchorError>>,
}

/// Checks the log in `schema` of the database at `url`; `anchors` may be
/// empty. Changes nothing.
pub async fn verify(
    url: &str,
    schema: &str,
    anchors: &[Anchor],
) -> Result<PgVerifyReport, LogError> {
    if !valid_schema(schema) {
        return Err(LogError::storage(format!(
            "schema `{schema}`: use lower-case letters, digits and _"
        )));
    }
    let mut client = PgConnector::parse(url)?.client().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(storage)?;
    let select = format!(
        "SELECT position, stream_id, version, event_id, event_type, schema_version, recorded_at, actor, payload, prev_hash
         FROM {schema}.openptl_events WHERE position > $1 ORDER BY position LIMIT $2"
    );
    let mut chain = Chain::new(anchors);
    loop {
        let rows = tx
            .query(&select, &[&(chain.last as i64), &PAGE])
            .await
            .map_err(storage)?;
        for row in &rows {
            let record = super::record_of(row);
            let stored_prev: Vec<u8> = row.get(9);
            chain.follow(&record, &stored_prev);
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    let head = tx
        .query_one(
            &format!("SELECT position, last_hash FROM {schema}.openptl_head"),
            &[],
        )
        .await
        .map_err(storage)?;
    let (head_position, head_hash) = (head.get::<_, i64>(0) as u64, head.get::<_, Vec<u8>>(1));
    tx.commit().await.map_err(storage)?;
    Ok(chain.finish(head_position, &head_hash, anchors))
}

/// The running checks over records in position order.
struct Chain {
    last: u64,
    /// The hash of the last record, as the chain computes it.
    hash: Hash,
    versions: HashMap<String, u64>,
    problems: Vec<String>,
    /// Anchored positions → the hash of the record there, once read.
    anchored: BTreeMap<u64, Option<Hash>>,
}

impl Chain {
    fn new(anchors: &[Anchor]) -> Chain {
        Chain {
            last: 0,
            hash: [0; 32],
            versions: HashMap::new(),
            problems: Vec::new(),
            anchored: anchors
                .iter()
                .filter(|a| a.position > 0)
                .map(|a| (a.position, None))
                .collect(),
        }
    }

    fn follow(&mut self, record: &StoredRecord, stored_prev: &[u8]) {
        let position = record.position;
        if position != self.last + 1 {
            self.problems.push(format!(
                "position {position} follows position {}: records {}..{} are missing",
                self.last,
                self.last + 1,
                position - 1
            ));
        }
        if stored_prev != self.hash.as_slice() {
            self.problems.push(format!(
                "position {position}: its prev_hash is not the hash of the record before it (position {}): that record was changed, or this one was put in its place",
                self.last
            ));
        }
        let version = self.versions.entry(record.stream_id.clone()).or_insert(0);
        if record.version != *version + 1 {
            self.problems.push(format!(
                "position {position}: stream version {} follows version {} of its stream",
                record.version, *version
            ));
        }
        *version = record.version;
        // Each link is checked from the stored prev_hash on, so one changed
        // record is one problem, not one for every record after it.
        let prev: Hash = stored_prev.try_into().unwrap_or(self.hash);
        self.hash = record_hash(record, &prev);
        if let Some(slot) = self.anchored.get_mut(&position) {
            *slot = Some(self.hash);
        }
        self.last = position;
    }

    fn finish(mut self, head: u64, head_hash: &[u8], anchors: &[Anchor]) -> PgVerifyReport {
        if head != self.last {
            self.problems.push(format!(
                "the head row says position {head}, the last record is at position {}",
                self.last
            ));
        } else if head_hash != self.hash.as_slice() {
            self.problems.push(format!(
                "the head row's hash is not the hash of the last record (position {head})"
            ));
        }
        PgVerifyReport {
            records: self.last,
            streams: self.versions.len(),
            anchors: (!anchors.is_empty())
                .then(|| crate::anchor::check(anchors, &self.anchored, self.last)),
            problems: self.problems,
        }
    }
}

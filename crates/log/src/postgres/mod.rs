//! The PostgreSQL log (SPEC 9, issue 8): several stateless OpenPTL nodes
//! share one `openptl_events` table; high availability is PostgreSQL's.
//!
//! One append is one short transaction (`synchronous_commit = on`) that
//! first locks the single row of `openptl_head` (`SELECT … FOR UPDATE`).
//! Appends from every node therefore commit one after another, each taking
//! the positions after the last committed one, so:
//! - positions are gap-free and commit in position order: a reader that sees
//!   position n has seen every position before it. Global reads are plain
//!   `position` order, with no transaction-id watermark needed (the
//!   documented alternative to `pg_snapshot_xmin` that issue 8 allows);
//! - the hash chain is the segment log's, byte for byte (`record_hash` of
//!   the same record encoding), so a log moved between backends keeps it.
//!
//! `(stream_id, version)` and `event_id` are unique constraints as well, a
//! second line behind the checks made under the lock. Every node follows the
//! head by polling `openptl_head` (LISTEN/NOTIFY `openptl_appended` only
//! wakes it early).
//!
//! The node outlives the database going away (decision 80): every
//! connection (the writer's, the head follower's, the readers') is opened
//! again with bounded exponential backoff; `unavailable()` says why while
//! the writer or the follower has none; an append meanwhile fails at once
//! (or after one bounded connection attempt) having recorded nothing; an
//! unanswered COMMIT is settled by committing the same group again
//! (idempotent event ids: found stored, or stored now). Every session sets
//! lock, statement and idle-in-transaction timeouts. TLS is rustls
//! ([`PgConnector`], decision 81), `sslmode` as libpq reads it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{AsyncMessage, Client, Row};
use uuid::Uuid;

mod connect;
mod verify;
mod writer;

pub use connect::{PgConnector, SslMode};
pub use verify::{verify, PgVerifyReport};

use crate::segment::{record_hash, Hash};
use crate::{
    apply_plan, plan_batch, Appended, EventLog, LogError, LogStats, NewRecord, StoredRecord,
};
use connect::{describe, storage, Backoff, Link, PgConnection};
use writer::{write_groups, Writer};

/// How often a node looks for appends of other nodes (NOTIFY wakes it sooner).
const HEAD_POLL: Duration = Duration::from_millis(200);
/// How often an idle writer looks whether its connection still stands.
const WRITER_CHECK: Duration = Duration::from_secs(1);

/// The longest an idle writer's round trip may take before its connection
/// is given up.
const WRITER_PING: Duration = Duration::from_secs(5);

/// The longest a group commit may take as the writer sees it: a connection
/// that hangs without closing (a half-open TCP) is given up after this.
const COMMIT_CEILING: Duration = Duration::from_secs(60);

/// The longest an append whose COMMIT went unanswered keeps trying to learn
/// its outcome (decision 80).
const SETTLE_WINDOW: Duration = Duration::from_secs(10);

/// The longest a read of the head may take before its connection is given up.
const HEAD_READ_CEILING: Duration = Duration::from_secs(5);

/// The schema migrations, in order; each runs once, in a transaction.
const MIGRATIONS: &[&str] = &[
    // 1: the log and its head.
    "CREATE TABLE {s}.openptl_events (
        position BIGINT PRIMARY KEY,
        stream_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        event_id UUID NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL,
        actor TEXT NOT NULL,
        payload BYTEA NOT NULL,
        prev_hash BYTEA NOT NULL,
        UNIQUE (stream_id, version)
    );
    CREATE TABLE {s}.openptl_head (
        singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
        position BIGINT NOT NULL,
        last_hash BYTEA NOT NULL,
        last_recorded_at TIMESTAMPTZ
    );
    INSERT INTO {s}.openptl_head (position, last_hash) VALUES (0, '\\x0000000000000000000000000000000000000000000000000000000000000000');",
];

const COLUMNS: &str =
    "position, stream_id, version, event_id, event_type, schema_version, recorded_at, actor, payload";

/// What the head follower, the writer and the log share.
struct Shared {
    head: watch::Sender<u64>,
    /// Why the writer has no connection, while it has none.
    writer_down: Mutex<Option<String>>,
    /// Why the head follower cannot read the head, while it cannot.
    follower_down: Mutex<Option<String>>,
    /// Set, for good, when the log's head was found lower than one this
    /// node had already seen: the database was restored or failed over to
    /// a standby behind it, and what this node projected is not the log.
    went_back: Mutex<Option<String>>,
}

impl Shared {
    fn went_back(&self, seen: u64, head: u64) {
        let mut went_back = self
            .went_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if went_back.is_none() {
            let why = format!(
                "the log's head went back from position {seen} to {head} (the database was restored, or failed over to a standby behind this node): this node takes no appends and is not ready until it is restarted"
            );
            tracing::error!(seen, head, "{why}");
            *went_back = Some(why);
        }
    }

    fn publish(&self, head: u64) {
        self.head.send_if_modified(|h| {
            let moved = head > *h;
            if moved {
                *h = head;
            }
            moved
        });
    }
}

/// Sets (or clears, with `None`) one of the shared "down" reasons.
fn set_down(
    shared: &Weak<Shared>,
    which: fn(&Shared) -> &Mutex<Option<String>>,
    why: Option<String>,
) {
    if let Some(shared) = shared.upgrade() {
        *which(&shared)
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = why;
    }
}

/// One append waiting for the writer.
struct Request {
    batch: Vec<NewRecord>,
    reply: oneshot::Sender<Result<Vec<Appended>, LogError>>,
}

/// What the writer is asked to do.
enum Job {
    Append(Request),
    /// Records another log stored, to store as they are.
    Verbatim(Vec<StoredRecord>, oneshot::Sender<Result<(), LogError>>),
}

/// Most appends committed in one transaction.
const MAX_GROUP: usize = 256;

/// The PostgreSQL log.
pub struct PgLog {
    /// Appends go to one writer task per node, which commits every append
    /// waiting in one transaction (group commit: one WAL flush for many).
    requests: mpsc::UnboundedSender<Job>,
    /// Reads: tokio-postgres pipelines concurrent queries on one connection.
    reader: Link,
    shared: Arc<Shared>,
    schema: String,
}

/// A schema name we create tables in: letters, digits and `_` only.
fn valid_schema(schema: &str) -> bool {
    !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit()
}

impl PgLog {
    /// Connects to `url` (`postgres://user@host:port/db`) and runs the
    /// migrations in schema `public`.
    pub async fn open(url: &str) -> Result<PgLog, LogError> {
        PgLog::open_in_schema(url, "public").await
    }

    /// As [`PgLog::open`], with the tables in `schema` (created if absent):
    /// several logs in one database (tests, or one per alliance). The
    /// database must be reachable now; afterwards the log outlives outages.
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<PgLog, LogError> {
        if !valid_schema(schema) {
            return Err(LogError::storage(format!(
                "schema `{schema}`: use lower-case letters, digits and _"
            )));
        }
        let connector = Arc::new(PgConnector::parse(url)?);
        // An append answers only once its commit is durable, whatever the
        // server's default.
        let writer = connector.connect_with(WRITER_SETUP).await?;
        migrate(&writer, schema).await?;
        let reader = connector.client().await?;
        let head = read_head(&reader, schema).await?;
        let shared = Arc::new(Shared {
            head: watch::channel(head).0,
            writer_down: Mutex::new(None),
            follower_down: Mutex::new(None),
            went_back: Mutex::new(None),
        });
        tokio::spawn(follow_head(
            connector.clone(),
            schema.to_string(),
            Arc::downgrade(&shared),
        ));
        tracing::info!(head, schema, ssl_mode = ?connector.ssl_mode(), "PostgreSQL event log open");
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_groups(
            Writer {
                connector: connector.clone(),
                schema: schema.to_string(),
                client: Some(writer),
                backoff: Backoff::new(),
                last_error: String::new(),
                shared: Arc::downgrade(&shared),
            },
            queue,
        ));
        Ok(PgLog {
            requests,
            reader: Link::new(connector, reader),
            shared,
            schema: schema.to_string(),
        })
    }

    fn went_back(&self) -> Option<String> {
        self.shared
            .went_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn sql(&self, template: &str) -> String {
        template.replace("{s}", &self.schema)
    }

    /// Drops `schema` and everything in it (benchmarks and tests start clean).
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), LogError> {
        if !valid_schema(schema) || schema == "public" {
            return Err(LogError::storage(format!(
                "will not drop schema `{schema}`"
            )));
        }
        let client = PgConnector::parse(url)?.client().await?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .map_err(storage)
    }

    /// Bytes of the log's table and indexes.
    pub async fn size(&self) -> Result<u64, LogError> {
        let row = self
            .reader
            .client()
            .await?
            .query_one(
                &self.sql("SELECT pg_total_relation_size('{s}.openptl_events')::BIGINT"),
                &[],
            )
            .await
            .map_err(storage)?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

/// Run on the writer's connections after the session settings.
const WRITER_SETUP: &str = "SET synchronous_commit = on;";

/// Runs the migrations not yet applied, under an advisory lock (nodes may
/// start together).
async fn migrate(client: &Client, schema: &str) -> Result<(), LogError> {
    let sql = |t: &str| t.replace("{s}", schema);
    client
        .batch_execute(&sql(
            "CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {s}.openptl_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());",
        ))
        .await
        .or_else(|e| {
            // Two nodes creating the schema at once: the loser's error is harmless.
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(storage)?;
    client
        .batch_execute(&format!(
            "SELECT pg_advisory_lock(hashtext('openptl-migrations-{schema}'))"
        ))
        .await
        .map_err(storage)?;
    let result = async {
        let applied: i32 = client
            .query_one(
                &sql("SELECT coalesce(max(version), 0) FROM {s}.openptl_migrations"),
                &[],
            )
            .await?
            .get(0);
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            let version = i as i32 + 1;
            if version <= applied {
                continue;
            }
            client
                .batch_execute(&format!(
                    "BEGIN; {} INSERT INTO {schema}.openptl_migrations (version) VALUES ({version}); COMMIT;",
                    sql(migration)
                ))
                .await?;
            tracing::info!(version, schema, "PostgreSQL migration applied");
        }
        Ok::<_, tokio_postgres::Error>(())
    }
    .await;
    let unlock = client
        .batch_execute(&format!(
            "SELECT pg_advisory_unlock(hashtext('openptl-migrations-{schema}'))"
        ))
        .await;
    result.map_err(storage)?;
    unlock.map_err(storage)
}

async fn read_head(client: &Client, schema: &str) -> Result<u64, LogError> {
    let row = client
        .query_one(&format!("SELECT position FROM {schema}.openptl_head"), &[])
        .await
        .map_err(storage)?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Follows the head of the shared log: LISTEN for a hint, poll for the
/// truth. Its connection comes back after an outage (with backoff); while
/// it cannot read the head the log reports itself unavailable.
async fn follow_head(connector: Arc<PgConnector>, schema: String, shared: Weak<Shared>) {
    let down = |why: Option<String>| set_down(&shared, |s| &s.follower_down, why);
    let mut backoff = Backoff::new();
    let mut link: Option<(Client, mpsc::UnboundedReceiver<()>)> = None;
    loop {
        if shared.strong_count() == 0 {
            return;
        }
        let Some((client, hints)) = link.as_mut() else {
            tokio::time::sleep(backoff.wait()).await;
            match listen(&connector).await {
                Ok(listening) => {
                    link = Some(listening);
                    backoff.succeeded();
                }
                Err(e) => {
                    backoff.failed();
                    down(Some(e.to_string()));
                }
            }
            continue;
        };
        let open = tokio::select! {
            hint = hints.recv() => hint.is_some(),
            () = tokio::time::sleep(HEAD_POLL) => true,
        };
        if !open {
            tracing::warn!("the PostgreSQL head connection was lost; reconnecting");
            down(Some("the connection following the head was lost".into()));
            link = None;
            continue;
        }
        let Some(shared_now) = shared.upgrade() else {
            return;
        };
        // Every head published before the read began was committed before
        // its snapshot: a lower one read means the log went back.
        let seen = *shared_now.head.borrow();
        match tokio::time::timeout(HEAD_READ_CEILING, read_head(client, &schema)).await {
            Ok(Ok(head)) if head < seen => shared_now.went_back(seen, head),
            Ok(Ok(head)) => {
                shared_now.publish(head);
                down(None);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the PostgreSQL log head failed");
                let lost = client.is_closed();
                down(Some(e.to_string()));
                if lost {
                    link = None;
                }
            }
            Err(_) => {
                tracing::warn!("reading the PostgreSQL log head took too long; reconnecting");
                down(Some("reading the head took too long".into()));
                link = None;
            }
        }
    }
}

/// A connection that LISTENs for `openptl_appended`, and its hints; the
/// hints end when the connection does.
async fn listen(
    connector: &PgConnector,
) -> Result<(Client, mpsc::UnboundedReceiver<()>), LogError> {
    let (hint_tx, hint_rx) = mpsc::unbounded_channel::<()>();
    let drive = move |mut connection: PgConnection| {
        tokio::spawn(async move {
            loop {
                let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                match message {
                    Some(Ok(AsyncMessage::Notification(_))) => {
                        if hint_tx.send(()).is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %describe(&e), "the PostgreSQL head connection ended");
                        return;
                    }
                    None => return,
                }
            }
        });
    };
    let client = connector
        .connect_driving(drive, "LISTEN openptl_appended;")
        .await?;
    Ok((client, hint_rx))
}

fn record_of(row: &Row) -> StoredRecord {
    StoredRecord {
        position: row.get::<_, i64>(0) as u64,
        stream_id: row.get(1),
        version: row.get::<_, i64>(2) as u64,
        event_id: row.get(3),
        event_type: row.get(4),
        schema_version: row.get::<_, i32>(5) as u16,
        recorded_at: row.get(6),
        actor: row.get(7),
        payload: row.get(8),
    }
}

#[async_trait]
impl EventLog for PgLog {
    async fn append(&self, batch: Vec<NewRecord>) -> Result<Vec<Appended>, LogError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(why) = self.went_back() {
            return Err(LogError::storage(format!("nothing was recorded: {why}")));
        }
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Job::Append(Request { batch, reply }))
            .map_err(|_| LogError::storage("the PostgreSQL writer has stopped"))?;
        answer
            .await
            .map_err(|_| LogError::storage("the PostgreSQL writer has stopped"))?
    }

    async fn append_verbatim(&self, records: Vec<StoredRecord>) -> Result<(), LogError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Job::Verbatim(records, reply))
            .map_err(|_| LogError::storage("the PostgreSQL writer has stopped"))?;
        answer
            .await
            .map_err(|_| LogError::storage("the PostgreSQL writer has stopped"))?
    }

    async fn read_stream(&self, stream_id: &str) -> Result<Vec<StoredRecord>, LogError> {
        let client = self.reader.client().await?;
        let sql = self.sql(&format!(
            "SELECT {COLUMNS} FROM {{s}}.openptl_events WHERE stream_id = $1 ORDER BY version"
        ));
        let rows = self
            .reader
            .read(&client, client.query(&sql, &[&stream_id]))
            .await?;
        Ok(rows.iter().map(record_of).collect())
    }

    async fn read_positions(&self, positions: &[u64]) -> Result<Vec<StoredRecord>, LogError> {
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<i64> = positions.iter().map(|p| *p as i64).collect();
        let client = self.reader.client().await?;
        let sql = self.sql(&format!(
            "SELECT {COLUMNS} FROM {{s}}.openptl_events WHERE position = ANY($1)"
        ));
        let rows = self
            .reader
            .read(&client, client.query(&sql, &[&wanted]))
            .await?;
        // Rows come in any order; answer in the order asked.
        let by_position: HashMap<u64, StoredRecord> = rows
            .iter()
            .map(|row| {
                let r = record_of(row);
                (r.position, r)
            })
            .collect();
        positions
            .iter()
            .map(|p| {
                by_position
                    .get(p)
                    .cloned()
                    .ok_or_else(|| LogError::storage(format!("position {p} is not stored")))
            })
            .collect()
    }

    async fn read_all(&self, from: u64, max: usize) -> Result<Vec<StoredRecord>, LogError> {
        let client = self.reader.client().await?;
        let sql = self.sql(&format!("SELECT {COLUMNS} FROM {{s}}.openptl_events WHERE position >= $1 ORDER BY position LIMIT $2"));
        let (from, max) = (from.max(1) as i64, max as i64);
        let rows = self
            .reader
            .read(&client, client.query(&sql, &[&from, &max]))
            .await?;
        Ok(rows.iter().map(record_of).collect())
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<StoredRecord>, LogError> {
        let client = self.reader.client().await?;
        let sql = self.sql(&format!(
            "SELECT {COLUMNS} FROM {{s}}.openptl_events WHERE event_id = $1"
        ));
        let row = self
            .reader
            .read(&client, client.query_opt(&sql, &[&event_id]))
            .await?;
        Ok(row.as_ref().map(record_of))
    }

    /// The head row holds the position and its record's hash together,
    /// updated in the transaction of every append.
    async fn chain_head(&self) -> Result<Option<crate::ChainHead>, LogError> {
        let client = self.reader.client().await?;
        let sql = self.sql("SELECT position, last_hash FROM {s}.openptl_head");
        let row = self
            .reader
            .read(&client, client.query_one(&sql, &[]))
            .await?;
        let hash: Vec<u8> = row.get(1);
        let hash = Hash::try_from(hash.as_slice()).map_err(|_| {
            LogError::storage(format!(
                "openptl_head.last_hash holds {} bytes, not 32",
                hash.len()
            ))
        })?;
        Ok(Some(crate::ChainHead {
            position: row.get::<_, i64>(0) as u64,
            hash,
        }))
    }

    fn head(&self) -> u64 {
        *self.shared.head.borrow()
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe()
    }

    fn stats(&self) -> LogStats {
        LogStats::default()
    }

    /// While the writer has no connection or the head cannot be read: both
    /// come back by themselves (with backoff) once PostgreSQL answers again.
    fn unavailable(&self) -> Option<String> {
        let read =
            |m: &Mutex<Option<String>>| m.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(why) = read(&self.shared.went_back) {
            return Some(why);
        }
        read(&self.shared.writer_down)
            .or_else(|| read(&self.shared.follower_down))
            .map(|why| format!("PostgreSQL unreachable: {why}"))
    }
}

//! The writer task of the PostgreSQL log: it takes queued appends in groups,
//! commits each group in one transaction under the head row's lock, keeps
//! its connection (opened again with backoff while PostgreSQL is away), and
//! settles a COMMIT that got no answer by committing the same group again
//! (decision 80).

use super::*;

/// Why a transaction failed.
pub(super) enum TxError {
    /// Before its COMMIT was sent, or refused by the server: nothing was
    /// recorded.
    Failed(LogError),
    /// At the COMMIT, with no answer (the connection broke, or no answer
    /// within [`COMMIT_CEILING`]): it may or may not have committed.
    Unanswered(String),
}

impl From<LogError> for TxError {
    fn from(e: LogError) -> TxError {
        TxError::Failed(e)
    }
}

/// The writer task's state: its connection (none while PostgreSQL cannot
/// be reached), the backoff between attempts, and where it says so.
pub(super) struct Writer {
    pub(super) connector: Arc<PgConnector>,
    pub(super) schema: String,
    pub(super) client: Option<Client>,
    pub(super) backoff: Backoff,
    pub(super) last_error: String,
    pub(super) shared: Weak<Shared>,
}

impl Writer {
    fn down(&self, why: Option<String>) {
        set_down(&self.shared, |s| &s.writer_down, why);
    }

    fn publish(&self, head: u64) {
        if let Some(shared) = self.shared.upgrade() {
            shared.publish(head);
        }
    }

    /// Forgets a connection that broke.
    fn forget_if_lost(&mut self) {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.lost("the writer's connection to PostgreSQL was lost".into());
        }
    }

    fn lost(&mut self, why: String) {
        tracing::warn!(reason = %why, "PostgreSQL writer connection gone; reconnecting");
        self.client = None;
        self.last_error = why.clone();
        self.down(Some(why));
    }

    async fn try_connect(&mut self) -> Result<(), LogError> {
        match self.connector.connect_with(WRITER_SETUP).await {
            Ok(client) => {
                self.client = Some(client);
                self.backoff.succeeded();
                if self.last_error.is_empty() {
                    tracing::info!("PostgreSQL writer connected");
                } else {
                    tracing::info!("PostgreSQL writer connected again");
                }
                self.last_error.clear();
                self.down(None);
                Ok(())
            }
            Err(e) => {
                self.backoff.failed();
                self.last_error = e.to_string();
                self.down(Some(e.to_string()));
                Err(e)
            }
        }
    }

    /// The connection to write on: the one standing, else a new one if an
    /// attempt is due (at most the connector's attempt ceiling), else an
    /// error at once.
    async fn client(&mut self) -> Result<&mut Client, LogError> {
        self.forget_if_lost();
        if self.client.is_none() {
            if !self.backoff.due() {
                return Err(LogError::storage(format!(
                    "PostgreSQL is unreachable, nothing was recorded (next attempt in {} ms): {}",
                    self.backoff.wait().as_millis(),
                    self.last_error
                )));
            }
            self.try_connect().await.map_err(|e| {
                LogError::storage(format!(
                    "PostgreSQL is unreachable, nothing was recorded: {e}"
                ))
            })?;
        }
        self.client
            .as_mut()
            .ok_or_else(|| LogError::storage("PostgreSQL: no writer connection"))
    }

    /// While no append comes: notices a lost connection, or one gone silent
    /// (a round trip unanswered within [`WRITER_PING`]: a half-open TCP
    /// was found only by the next append, after [`COMMIT_CEILING`], while
    /// the node said it was ready), and reconnects when due.
    async fn idle(&mut self) {
        self.forget_if_lost();
        if let Some(client) = &self.client {
            match tokio::time::timeout(WRITER_PING, client.simple_query("SELECT 1")).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    self.lost(format!("the writer's connection failed: {}", describe(&e)))
                }
                Err(_) => self.lost(format!(
                    "the writer's connection gave no answer within {} s",
                    WRITER_PING.as_secs()
                )),
            }
        }
        if self.client.is_none() && self.backoff.due() {
            let _ = self.try_connect().await;
        }
    }

    /// How long to wait for an append before [`Writer::idle`].
    fn idle_wait(&self) -> Duration {
        if self.client.is_some() {
            WRITER_CHECK
        } else {
            self.backoff.wait().max(Duration::from_millis(10))
        }
    }

    /// One attempt at a group commit within [`COMMIT_CEILING`].
    async fn attempt_group(
        &mut self,
        batches: Vec<Vec<NewRecord>>,
    ) -> Result<(Vec<Result<Vec<Appended>, LogError>>, u64), TxError> {
        let schema = self.schema.clone();
        let client = self.client().await?;
        let result = tokio::time::timeout(COMMIT_CEILING, commit_group(client, &schema, batches))
            .await
            .unwrap_or_else(|_| {
                Err(TxError::Unanswered(format!(
                    "no answer within {} s",
                    COMMIT_CEILING.as_secs()
                )))
            });
        match &result {
            Ok(_) => {}
            Err(TxError::Failed(_)) => self.forget_if_lost(),
            Err(TxError::Unanswered(why)) => self.lost(why.clone()),
        }
        result
    }

    /// Commits a group of appends, each answered on its own.
    async fn append_group(&mut self, group: Vec<Request>) {
        let (batches, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|r| (r.batch, r.reply)).unzip();
        let results = match self.attempt_group(batches.clone()).await {
            Ok((results, head)) => {
                self.publish(head);
                results
            }
            Err(TxError::Failed(e)) => replies.iter().map(|_| Err(e.clone())).collect(),
            Err(TxError::Unanswered(why)) => self.settle(batches, why, replies.len()).await,
        };
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }

    /// A group whose COMMIT went unanswered (decision 80): the same group is
    /// committed again on a new connection, under the head lock, which waits
    /// for the first transaction to end. Event ids are idempotent, so if the
    /// first committed, every record of it is found stored and answered as a
    /// replay (same positions); if it did not, the records are stored now.
    /// Nothing is stored twice and no position is skipped. Only if no answer
    /// comes within [`SETTLE_WINDOW`] is the outcome reported unknown.
    async fn settle(
        &mut self,
        batches: Vec<Vec<NewRecord>>,
        first: String,
        replies: usize,
    ) -> Vec<Result<Vec<Appended>, LogError>> {
        tracing::warn!(reason = %first, "a PostgreSQL COMMIT went unanswered; learning its outcome");
        let deadline = Instant::now() + SETTLE_WINDOW;
        let mut last = first;
        while Instant::now() < deadline {
            tokio::time::sleep(
                self.backoff
                    .wait()
                    .min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
            if !self.backoff.due() {
                continue;
            }
            match self.attempt_group(batches.clone()).await {
                Ok((results, head)) => {
                    tracing::info!("the outcome of an unanswered PostgreSQL COMMIT is settled");
                    self.publish(head);
                    return results;
                }
                Err(TxError::Failed(e)) => last = e.to_string(),
                Err(TxError::Unanswered(why)) => last = why,
            }
        }
        let e = LogError::outcome_unknown(format!(
            "PostgreSQL did not answer a COMMIT ({last}): whether these events were recorded is \
             unknown; sending them again with the same event ids is safe (stored ones answer as replays)"
        ));
        (0..replies).map(|_| Err(e.clone())).collect()
    }

    /// Stores records as another log stored them. Not retried: an unanswered
    /// COMMIT is reported as such (the copy checks the head before going on).
    async fn verbatim(&mut self, records: Vec<StoredRecord>) -> Result<(), LogError> {
        let schema = self.schema.clone();
        let client = self.client().await?;
        let result =
            tokio::time::timeout(COMMIT_CEILING, commit_verbatim(client, &schema, records))
                .await
                .unwrap_or_else(|_| Err(TxError::Unanswered("no answer".into())));
        match result {
            Ok(head) => {
                self.publish(head);
                Ok(())
            }
            Err(TxError::Failed(e)) => {
                self.forget_if_lost();
                Err(e)
            }
            Err(TxError::Unanswered(why)) => {
                self.lost(why.clone());
                Err(LogError::outcome_unknown(format!(
                    "PostgreSQL did not answer a COMMIT ({why}): whether these records were stored is unknown; read the head before copying again"
                )))
            }
        }
    }
}

/// The writer task: takes every append waiting and commits them together.
pub(super) async fn write_groups(mut writer: Writer, mut queue: mpsc::UnboundedReceiver<Job>) {
    loop {
        let first = tokio::select! {
            job = queue.recv() => match job {
                Some(job) => job,
                None => return,
            },
            () = tokio::time::sleep(writer.idle_wait()) => {
                writer.idle().await;
                continue;
            }
        };
        let first = match first {
            Job::Append(request) => request,
            Job::Verbatim(records, reply) => {
                let _ = reply.send(writer.verbatim(records).await);
                continue;
            }
        };
        let mut group = vec![first];
        let mut after = None;
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(Job::Append(request)) => group.push(request),
                Ok(job @ Job::Verbatim(..)) => {
                    after = Some(job);
                    break;
                }
                Err(_) => break,
            }
        }
        writer.append_group(group).await;
        if let Some(Job::Verbatim(records, reply)) = after {
            let _ = reply.send(writer.verbatim(records).await);
        }
    }
}

/// Stores records as another log stored them, extending the hash chain;
/// gives the new head.
pub(super) async fn commit_verbatim(
    client: &mut Client,
    schema: &str,
    records: Vec<StoredRecord>,
) -> Result<u64, TxError> {
    let sql = |t: &str| t.replace("{s}", schema);
    let tx = client.transaction().await.map_err(storage)?;
    let (head, mut hash, last_time) = lock_head(&tx, schema).await?;
    let Some(last) = records.last() else {
        return Ok(head);
    };
    let (new_head, newest) = (last.position, last.recorded_at);
    let streams: Vec<&str> = records.iter().map(|r| r.stream_id.as_str()).collect();
    let versions: HashMap<String, u64> = tx
        .query(
            &sql("SELECT stream_id, max(version) FROM {s}.openptl_events WHERE stream_id = ANY($1) GROUP BY stream_id"),
            &[&streams],
        )
        .await
        .map_err(storage)?
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64))
        .collect();
    let ids: Vec<Uuid> = records.iter().map(|r| r.event_id).collect();
    let stored: std::collections::HashSet<Uuid> = tx
        .query(
            &sql("SELECT event_id FROM {s}.openptl_events WHERE event_id = ANY($1)"),
            &[&ids],
        )
        .await
        .map_err(storage)?
        .iter()
        .map(|row| row.get::<_, Uuid>(0))
        .collect();
    crate::check_verbatim(
        &records,
        head,
        |s| versions.get(s).copied().unwrap_or(0),
        |id| stored.contains(id),
    )?;
    let mut new = Vec::with_capacity(records.len());
    for r in records {
        let prev = hash;
        hash = record_hash(&r, &prev);
        new.push((r, prev));
    }
    let recorded_at = last_time.map_or(newest, |t| t.max(newest));
    finish(tx, schema, &new, new_head, &hash, recorded_at).await?;
    Ok(new_head)
}

/// Takes the lock every append of every node takes (held until commit):
/// the head's position, hash and newest `recorded_at`.
pub(super) async fn lock_head(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
) -> Result<(u64, Hash, Option<DateTime<Utc>>), LogError> {
    let row = tx
        .query_one(
            &format!("SELECT position, last_hash, last_recorded_at FROM {schema}.openptl_head FOR UPDATE"),
            &[],
        )
        .await
        .map_err(storage)?;
    let hash: Hash = row
        .get::<_, Vec<u8>>(1)
        .try_into()
        .map_err(|_| LogError::storage("the stored head hash is not 32 bytes"))?;
    Ok((row.get::<_, i64>(0) as u64, hash, row.get(2)))
}

/// Inserts the new records, moves the head, wakes the other nodes, commits.
pub(super) async fn finish(
    tx: tokio_postgres::Transaction<'_>,
    schema: &str,
    new: &[(StoredRecord, Hash)],
    head: u64,
    hash: &Hash,
    recorded_at: DateTime<Utc>,
) -> Result<(), TxError> {
    insert_records(&tx, schema, new).await?;
    tx.execute(
        &format!(
            "UPDATE {schema}.openptl_head SET position = $1, last_hash = $2, last_recorded_at = $3"
        ),
        &[&(head as i64), &hash.as_slice(), &recorded_at],
    )
    .await
    .map_err(storage)?;
    tx.execute("SELECT pg_notify('openptl_appended', '')", &[])
        .await
        .map_err(storage)?;
    tx.commit().await.map_err(commit_error)
}

/// Inserts records with their `prev_hash`es in one statement.
pub(super) async fn insert_records(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
    new: &[(StoredRecord, Hash)],
) -> Result<(), LogError> {
    let positions: Vec<i64> = new.iter().map(|(r, _)| r.position as i64).collect();
    let stream_ids: Vec<&str> = new.iter().map(|(r, _)| r.stream_id.as_str()).collect();
    let record_versions: Vec<i64> = new.iter().map(|(r, _)| r.version as i64).collect();
    let event_ids: Vec<Uuid> = new.iter().map(|(r, _)| r.event_id).collect();
    let types: Vec<&str> = new.iter().map(|(r, _)| r.event_type.as_str()).collect();
    let schema_versions: Vec<i32> = new
        .iter()
        .map(|(r, _)| i32::from(r.schema_version))
        .collect();
    let times: Vec<DateTime<Utc>> = new.iter().map(|(r, _)| r.recorded_at).collect();
    let actors: Vec<&str> = new.iter().map(|(r, _)| r.actor.as_str()).collect();
    let payloads: Vec<&[u8]> = new.iter().map(|(r, _)| r.payload.as_slice()).collect();
    let prev_hashes: Vec<&[u8]> = new.iter().map(|(_, h)| h.as_slice()).collect();
    tx.execute(
        &format!(
            "INSERT INTO {schema}.openptl_events
             (position, stream_id, version, event_id, event_type, schema_version, recorded_at, actor, payload, prev_hash)
             SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::UUID[], $5::TEXT[], $6::INTEGER[], $7::TIMESTAMPTZ[], $8::TEXT[], $9::BYTEA[], $10::BYTEA[])"
        ),
        &[
            &positions,
            &stream_ids,
            &record_versions,
            &event_ids,
            &types,
            &schema_versions,
            &times,
            &actors,
            &payloads,
            &prev_hashes,
        ],
    )
    .await
    .map_err(storage)?;
    Ok(())
}

/// Commits a group of appends in one transaction under the head-row lock:
/// each append is all-or-nothing on its own (one that conflicts is refused,
/// the others go on). Gives each append's result and the new head.
pub(super) async fn commit_group(
    client: &mut Client,
    schema: &str,
    batches: Vec<Vec<NewRecord>>,
) -> Result<(Vec<Result<Vec<Appended>, LogError>>, u64), TxError> {
    let sql = |t: &str| t.replace("{s}", schema);
    let tx = client.transaction().await.map_err(storage)?;
    let (mut head, mut hash, last_time) = lock_head(&tx, schema).await?;

    let streams: Vec<&str> = {
        let mut s: Vec<&str> = batches
            .iter()
            .flatten()
            .map(|r| r.stream_id.as_str())
            .collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    let mut versions: HashMap<String, u64> = tx
        .query(
            &sql("SELECT stream_id, max(version) FROM {s}.openptl_events WHERE stream_id = ANY($1) GROUP BY stream_id"),
            &[&streams],
        )
        .await
        .map_err(storage)?
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64))
        .collect();
    let ids: Vec<Uuid> = batches.iter().flatten().map(|r| r.event_id).collect();
    let mut existing: HashMap<Uuid, StoredRecord> = tx
        .query(
            &sql(&format!(
                "SELECT {COLUMNS} FROM {{s}}.openptl_events WHERE event_id = ANY($1)"
            )),
            &[&ids],
        )
        .await
        .map_err(storage)?
        .iter()
        .map(|row| {
            let r = record_of(row);
            (r.event_id, r)
        })
        .collect();
    // Stored with microsecond precision, never before the last record.
    let now = DateTime::<Utc>::from_timestamp_micros(Utc::now().timestamp_micros())
        .expect("now is in range");
    let recorded_at = last_time.map_or(now, |t| now.max(t));
    let mut new: Vec<(StoredRecord, Hash)> = Vec::new();
    let mut results = Vec::with_capacity(batches.len());
    for batch in batches {
        // Checked against the log plus the appends before it in the group.
        let plan = plan_batch(
            &batch,
            |stream| versions.get(stream).copied().unwrap_or(0),
            |id| existing.get(id).cloned(),
        );
        let plan = match plan {
            Ok(plan) => plan,
            Err(e) => {
                results.push(Err(e));
                continue;
            }
        };
        let out = apply_plan(batch, plan, &mut head, recorded_at, |stored| {
            let prev = hash;
            hash = record_hash(&stored, &prev);
            versions.insert(stored.stream_id.clone(), stored.version);
            existing.insert(stored.event_id, stored.clone());
            new.push((stored, prev));
        });
        results.push(Ok(out));
    }
    if new.is_empty() {
        // Replays and refusals only: nothing new, yet a real write and its
        // COMMIT. A replay answers "stored", and with a synchronous standby
        // only a commit that wrote waits until the records it found are
        // replicated: one committed locally by a backend killed while it
        // waited for the standby (decision 80) is already visible here.
        tx.execute(
            &format!("UPDATE {schema}.openptl_head SET position = position"),
            &[],
        )
        .await
        .map_err(storage)?;
        tx.commit().await.map_err(commit_error)?;
        return Ok((results, head));
    }
    finish(tx, schema, &new, head, &hash, recorded_at).await?;
    Ok((results, head))
}

/// What a failed COMMIT means. An ERROR answer is a refusal: the
/// transaction was rolled back. Anything else (the connection gone; a
/// FATAL, which a backend terminated while waiting for a synchronous
/// standby sends after committing locally) leaves the outcome open.
pub(super) fn commit_error(e: tokio_postgres::Error) -> TxError {
    if e.as_db_error().is_some_and(|db| db.severity() == "ERROR") {
        TxError::Failed(storage(e))
    } else {
        TxError::Unanswered(describe(&e))
    }
}

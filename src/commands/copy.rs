//! `openptl copy`: a log copied record by record, as stored (event ids,
//! positions, recorded_at, actors and so the hash chain kept), between the
//! embedded store and PostgreSQL, resuming where the destination ends.

use anyhow::Context;
use openptl_log::EventLog;

use crate::open::open_store;

/// Copies the log at `from` (a data directory or a postgres:// URL) to `to`.
pub async fn run(from: &str, to: &str, from_schema: &str, to_schema: &str) -> anyhow::Result<()> {
    let source = open_store(from, from_schema).await?;
    let destination = open_store(to, to_schema).await?;
    let copied = copy_log(source.as_ref(), destination.as_ref()).await?;
    println!(
        "copied {copied} records; the destination now holds {}",
        destination.head()
    );
    Ok(())
}

/// Copies every record of `source` after the destination's head, as stored.
async fn copy_log(source: &dyn EventLog, destination: &dyn EventLog) -> anyhow::Result<u64> {
    let mut from = destination.head() + 1;
    let mut copied = 0u64;
    loop {
        let page = source.read_all(from, 5_000).await?;
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        copied += page.len() as u64;
        destination
            .append_verbatim(page)
            .await
            .context("the destination refused the records (does it hold another log?)")?;
        if copied % 100_000 < 5_000 {
            tracing::info!(copied, "copying");
        }
    }
    Ok(copied)
}

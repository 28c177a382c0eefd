//! Opening a data directory's log (or a PostgreSQL one) and the application
//! on it, for `serve` and the command-line tools.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use openptl_app::{App, SystemClock};
use openptl_log::segment::SegmentLog;
use openptl_log::EventLog;
use openptl_rules::RulesConfig;

/// The projection snapshot, in the data directory (derived, safe to delete).
pub const SNAPSHOT_FILE: &str = "projection.snapshot";

/// Folds the whole log into the projection before serving, so no view is
/// ever answered from half the data.
pub async fn catch_up(app: &App) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let head = app.log().head();
    loop {
        if app.caught_up(std::time::Duration::from_secs(5)).await {
            break;
        }
        if let Some(failure) = app.projection().failure() {
            anyhow::bail!("the projection cannot follow the log: {failure}");
        }
        tracing::info!(
            projected = app.projection().position(),
            head,
            "still building the projection"
        );
    }
    tracing::info!(
        events = head,
        millis = started.elapsed().as_millis() as u64,
        "projection built"
    );
    Ok(())
}

/// A log named by a data directory or a `postgres://` URL.
pub async fn open_store(place: &str, schema: &str) -> anyhow::Result<Arc<dyn EventLog>> {
    if place.starts_with("postgres://") || place.starts_with("postgresql://") {
        Ok(Arc::new(
            openptl_log::PgLog::open_in_schema(place, schema)
                .await
                .context("opening the PostgreSQL log")?,
        ))
    } else {
        open_log(Path::new(place))
    }
}

/// Opens the durable log on `data_dir` for a command-line tool.
pub fn open_log(data_dir: &Path) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(Arc::new(SegmentLog::open(data_dir).with_context(|| {
        format!(
            "opening the event log in {} (is the service running?)",
            data_dir.display()
        )
    })?))
}

/// Opens the log and the application (projection built) for a command-line tool.
pub async fn open_app(config: RulesConfig, data_dir: &Path) -> anyhow::Result<Arc<App>> {
    let app = Arc::new(App::open(
        open_log(data_dir)?,
        config,
        Arc::new(SystemClock),
        Some(data_dir.join(SNAPSHOT_FILE)),
    ));
    catch_up(&app).await?;
    Ok(app)
}

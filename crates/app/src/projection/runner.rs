//! The runner: the one task that follows the log into the projection, and
//! the periodic snapshot writer.

use super::*;

/// Follows the log into the projection until the projection is dropped.
pub(crate) async fn run(
    projection: Weak<Projection>,
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
) {
    if let Some(p) = projection.upgrade() {
        if p.snapshot_path.is_some() {
            let started = std::time::Instant::now();
            let step = p.clone();
            match tokio::task::spawn_blocking(move || step.restore()).await {
                Ok(Ok(position)) => tracing::info!(
                    position,
                    ms = started.elapsed().as_millis() as u64,
                    "projection restored from its snapshot"
                ),
                Ok(Err(why)) => {
                    tracing::info!(
                        reason = %why,
                        "projection snapshot not used; folding the log from the start"
                    );
                    *p.snapshot_refused
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(why.to_string());
                }
                Err(e) => not_finished("restoring the projection snapshot", e),
            }
        }
    }
    if let Some(p) = projection.upgrade() {
        let step = p.clone();
        let today = london_today(clock.now());
        match tokio::task::spawn_blocking(move || step.rebuild_in_place(today)).await {
            Ok(Ok(_)) => {}
            // The runner folds the log in pages instead.
            Ok(Err(e)) => fail(&p, e.to_string()),
            Err(e) => fail(&p, format!("projection rebuild panicked: {e}")),
        }
    }
    let Some(start) = projection.upgrade().map(|p| p.read().position + 1) else {
        return;
    };
    let mut subscription = Subscription::from(log.clone(), start, CHUNK);
    loop {
        let Some(p) = projection.upgrade() else {
            return;
        };
        if log.head() < subscription.position() {
            // Caught up: publish, and bring every state to the new date when it changed.
            let today = london_today(clock.now());
            let stale = p.read().today != Some(today) || p.position() < p.read().position;
            let refreshed = !stale || {
                let step = p.clone();
                match tokio::task::spawn_blocking(move || step.refresh(today)).await {
                    Ok(Ok(())) => {
                        p.set_failure(None);
                        true
                    }
                    Ok(Err(e)) => {
                        fail(&p, e.to_string());
                        false
                    }
                    Err(e) => {
                        fail(&p, format!("projection step panicked: {e}"));
                        false
                    }
                }
            };
            if refreshed
                && !p
                    .caught_up_once
                    .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                // Serving now: the log's background work may have the CPU.
                p.log.start_up_done();
                // The replaced states found at start checked before anything
                // more is folded in (decision 162).
                let step = p.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || step.prepare_replaced()).await {
                    not_finished("checking the replaced states", e);
                }
            }
        }
        // Never hold the projection while waiting, so dropping the App ends this task.
        drop(p);
        let step = tokio::select! {
            step = subscription.next() => step,
            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
        };
        let Some(p) = projection.upgrade() else {
            return;
        };
        let failure = match step {
            Ok(None) => return,
            Ok(Some(batch)) => {
                p.set_behind_since(batch.records.first().map(|r| r.recorded_at));
                let more = batch.more;
                let today = london_today(clock.now());
                let step = p.clone();
                let outcome = tokio::task::spawn_blocking(move || {
                    step.apply(batch.records)?;
                    // While catching up, evaluate once at the end.
                    if !more {
                        step.refresh(today)?;
                    }
                    Ok::<_, AppError>(())
                })
                .await;
                match outcome {
                    Ok(Ok(())) => {
                        p.set_failure(None);
                        if !more {
                            p.set_behind_since(None);
                        }
                        None
                    }
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(format!("projection step panicked: {e}")),
                }
            }
            Err(e) => {
                let mut since = p
                    .behind_since
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                since.get_or_insert_with(Utc::now);
                drop(since);
                Some(e.to_string())
            }
        };
        if let Some(message) = failure {
            fail(&p, message);
            // Read again from what was really folded in.
            subscription = Subscription::from(log.clone(), p.read().position + 1, CHUNK);
            drop(p);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Rewrites the snapshot every `every` while the log moves on, until the
/// projection is dropped.
pub(crate) async fn snapshot_periodically(projection: Weak<Projection>, every: Duration) {
    let mut written = 0u64;
    loop {
        tokio::time::sleep(every).await;
        let Some(p) = projection.upgrade() else {
            return;
        };
        if p.position() == written || !p.has_caught_up() {
            continue;
        }
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || p.write_snapshot()).await {
            Ok(Ok(Some(done))) => {
                written = done.position;
                tracing::info!(
                    position = done.position,
                    pathways = done.pathways,
                    bytes = done.bytes,
                    ms = started.elapsed().as_millis() as u64,
                    "projection snapshot written"
                );
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the projection snapshot was not written"),
            Err(e) => not_finished("writing the projection snapshot", e),
        }
    }
}

/// Logs a blocking task of the runner's that did not finish: cancelled
/// when the runtime shut down under it (a service stopped as it ran, which
/// is no fault: the next start does it again), else it panicked.
fn not_finished(what: &str, e: tokio::task::JoinError) {
    if e.is_cancelled() {
        tracing::debug!("{what}: cancelled as the service stopped");
    } else {
        tracing::warn!(error = %e, "{what} panicked");
    }
}

pub(super) fn fail(p: &Projection, message: String) {
    tracing::error!(error = %message, "the projection could not follow the log; retrying");
    p.set_failure(Some(message));
}

//! The benchmarks' events: tracking notes and referrals posted through the
//! API, and the synthetic alliance (`demo.rs`) written straight into a log.

use std::path::Path;
use std::time::Instant;

use chrono::NaiveDate;
use openptl_log::{EventLog, NewRecord, SegmentLog};
use openptl_rules::NewEvent;
use serde_json::json;

/// The `n`th note, on pathway `BENCH-{pathway}`.
pub fn note(pathway: usize, n: usize) -> serde_json::Value {
    json!({
        "pathway_id": format!("BENCH-{pathway:06}"), "type": "tracking_note_added", "occurred_on": "2025-03-10",
        "data": { "text": format!("Benchmark note {n}: awaiting histology"), "next_action": "Chase pathology", "owner": "MDT coordinator" }
    })
}

/// One referral per pathway `BENCH-000000…`, as request bodies of
/// `batch_events` events each.
pub fn referral_batches(pathways: usize, batch_events: usize) -> Vec<String> {
    (0..pathways)
        .collect::<Vec<_>>()
        .chunks(batch_events.max(1))
        .map(|chunk| {
            let events: Vec<_> = chunk
                .iter()
                .map(|p| json!({
                    "pathway_id": format!("BENCH-{p:06}"), "type": "referral_received", "occurred_on": "2025-03-03",
                    "data": { "nhs_number": "9434765919", "trust": "RXH", "tumour_site": "lower_gi", "route": "urgent_suspected_cancer" }
                }))
                .collect();
            json!({ "events": events }).to_string()
        })
        .collect()
}

/// Writes the synthetic alliance of `pathways` pathways (referrals spread
/// over `referral_days` up to `today`) into a fresh log in `dir`, a slice
/// of pathways at a time: valid by construction, so the write skips the
/// rules to save time.
pub async fn write_alliance(
    dir: &Path,
    pathways: usize,
    seed: u64,
    today: NaiveDate,
    referral_days: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let log = SegmentLog::open(dir)?;
    const SLICE: usize = 20_000;
    let mut first = 0;
    while first < pathways {
        let end = (first + SLICE).min(pathways);
        let events = crate::demo::generate_range_over(first..end, seed, today, referral_days);
        let records: Vec<NewRecord> = events
            .into_iter()
            .map(|envelope| {
                let event = NewEvent::from_json(envelope).map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(NewRecord {
                    stream_id: event.pathway_id.as_str().to_string(),
                    event_id: event.event_id.unwrap_or_else(uuid::Uuid::new_v4),
                    event_type: event.data.event_type().as_str().to_string(),
                    schema_version: event.data.schema_version(),
                    actor: "bench-loader".to_string(),
                    payload: event.data.encode_payload(event.occurred_on),
                    expected_version: None,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        for chunk in records.chunks(5000) {
            log.append(chunk.to_vec()).await?;
        }
        first = end;
    }
    println!(
        "written: {} events in {:.1}s ({:.0} events/s straight into the log)",
        log.head(),
        started.elapsed().as_secs_f64(),
        log.head() as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

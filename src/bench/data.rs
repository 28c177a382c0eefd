//! The benchmarks' events: tracking notes and referrals posted through the
//! API, and the synthetic alliance (`demo.rs`) written straight into a log.

use std::path::Path;
use std::time::Instant;

use chrono::NaiveDate;
use openptl_log::{EventLog, SegmentLog, StoredRecord};
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
/// over `referral_days` up to `today`) into a fresh log in `dir`, in the
/// order a live alliance records it: each event recorded on the day it
/// occurred or up to a few days after (coordinators key in arrears), never
/// after now, the log's positions following those moments. Valid by
/// construction, so the write skips the rules to save time; the moments
/// are stored as such (`append_verbatim`), so a view as known at a past
/// moment sees what had been keyed in by then.
pub async fn write_alliance(
    dir: &Path,
    pathways: usize,
    seed: u64,
    today: NaiveDate,
    referral_days: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let log = SegmentLog::open(dir)?;
    let now = chrono::Utc::now();
    const SLICE: usize = 20_000;
    let mut all: Vec<Keyed> = Vec::new();
    let mut first = 0;
    while first < pathways {
        let end = (first + SLICE).min(pathways);
        let events = crate::demo::generate_range_over(first..end, seed, today, referral_days);
        // Per pathway, moments never go back: a later event is keyed in no
        // earlier than the one before it.
        let mut latest: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>> =
            std::collections::HashMap::new();
        for envelope in events {
            let event = NewEvent::from_json(envelope).map_err(|e| anyhow::anyhow!("{e}"))?;
            let stream_id = event.pathway_id.as_str().to_string();
            let event_id = event.event_id.unwrap_or_else(uuid::Uuid::new_v4);
            let recorded_at = keyed_at(event.occurred_on, event_id, now);
            let recorded_at = match latest.get(&stream_id) {
                Some(before) => recorded_at.max(*before),
                None => recorded_at,
            };
            latest.insert(stream_id.clone(), recorded_at);
            all.push(Keyed {
                recorded_at,
                stream_id,
                event_id,
                event_type: event.data.event_type().as_str(),
                schema_version: event.data.schema_version(),
                payload: event.data.encode_payload(event.occurred_on),
            });
        }
        first = end;
    }
    // Stable: a pathway's events keep their order at the same moment.
    all.sort_by_key(|k| k.recorded_at);
    let mut versions: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut batch = Vec::with_capacity(5000);
    for (position, keyed) in (1..).zip(all) {
        let version = versions.entry(keyed.stream_id.clone()).or_insert(0);
        *version += 1;
        batch.push(StoredRecord {
            position,
            stream_id: keyed.stream_id,
            version: *version,
            event_id: keyed.event_id,
            event_type: keyed.event_type.to_string(),
            schema_version: keyed.schema_version,
            recorded_at: keyed.recorded_at,
            actor: "bench-loader".to_string(),
            payload: keyed.payload,
        });
        if batch.len() == 5000 {
            log.append_verbatim(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        log.append_verbatim(batch).await?;
    }
    println!(
        "written: {} events in {:.1}s ({:.0} events/s straight into the log, in recorded order)",
        log.head(),
        started.elapsed().as_secs_f64(),
        log.head() as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// An event of the synthetic alliance with the moment it is keyed in.
struct Keyed {
    recorded_at: chrono::DateTime<chrono::Utc>,
    stream_id: String,
    event_id: uuid::Uuid,
    event_type: &'static str,
    schema_version: u16,
    payload: Vec<u8>,
}

/// When an event that occurred on `day` is keyed in: that day (half the
/// events) or up to four days later, in working hours, never after `now`
/// (drawn from the event id, so the same alliance is keyed in the same way).
fn keyed_at(
    day: NaiveDate,
    event_id: uuid::Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    let draw = event_id.as_u128() as u64;
    let late = match draw % 8 {
        0..=3 => 0,
        4 | 5 => 1,
        6 => 2,
        _ => 4,
    };
    let seconds = 8 * 3600 + (draw >> 8) % (9 * 3600);
    let at = (day + chrono::Days::new(late))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        + chrono::Duration::seconds(seconds as i64);
    at.min(now)
}

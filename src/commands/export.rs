//! `openptl export`: the whole log as NDJSON (one event with its metadata
//! per line), or the monthly CWT data set submission as CSV, to stdout.

use std::path::Path;

use anyhow::Context;
use openptl_rules::RulesConfig;

use crate::open::{open_app, open_log};

/// Writes the log (`format` `ndjson`) or the CWT submission of `period`
/// (`cwt`) to stdout.
pub async fn run(
    config: RulesConfig,
    data_dir: &Path,
    format: &str,
    period: Option<&str>,
) -> anyhow::Result<()> {
    match format {
        "ndjson" => export(data_dir).await,
        "cwt" => {
            let period = period
                .and_then(openptl_rules::Period::parse)
                .context("--format cwt needs --period YYYY-MM")?;
            let app = open_app(config, data_dir).await?;
            let (lines, _) = app
                .cwt(
                    &openptl_app::ViewAt::default(),
                    period,
                    &openptl_app::TrustFilter::default(),
                    &openptl_app::access::Principal::system("export"),
                )
                .await?;
            print!("{}", openptl_http::cwt_csv(lines));
            Ok(())
        }
        other => anyhow::bail!("--format {other}: use ndjson or cwt"),
    }
}

/// The whole log as NDJSON.
async fn export(data_dir: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let log = open_log(data_dir)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut from = 1;
    loop {
        let page = log.read_all(from, 10_000).await?;
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        for record in page {
            // The one record decoder (the projection's and gRPC's too).
            let event = openptl_app::decode(record.as_ref())?;
            let line = serde_json::json!({
                "position": record.position,
                "event_id": record.event_id,
                "pathway_id": record.stream_id,
                "version": record.version,
                "type": record.event_type,
                "schema_version": record.schema_version,
                "occurred_on": openptl_rules::date::format(event.occurred_on),
                "data": event.data.to_json(),
                "recorded_at": record.recorded_at,
                "actor": record.actor,
            });
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

//! `openptl generate`: the seeded synthetic alliance (`demo.rs`) as NDJSON
//! event envelopes on stdout.

use anyhow::Context;

use crate::demo;

/// Writes `pathways` synthetic pathways of `seed`, ending on `as_of`
/// (YYYY-MM-DD; default today).
pub fn run(pathways: usize, seed: u64, as_of: Option<&str>) -> anyhow::Result<()> {
    let as_of = match as_of {
        Some(d) => openptl_rules::date::parse(d).context("--as-of must be YYYY-MM-DD")?,
        None => openptl_app::london_today(chrono::Utc::now()),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for event in demo::generate(pathways, seed, as_of) {
        use std::io::Write;
        serde_json::to_writer(&mut out, &event)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

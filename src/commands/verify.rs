//! `openptl verify` and `openptl rebuild-index`: checking a data
//! directory's segment log offline (CRCs, positions, versions, hash chain,
//! anchors), and rebuilding its sled index from the segments.

use std::path::{Path, PathBuf};

use anyhow::Context;
use openptl_log::segment;

/// Re-reads every segment (and, with `anchors`, checks every anchor); an
/// error when any problem is found.
pub fn run(data_dir: &Path, anchors: Option<PathBuf>) -> anyhow::Result<()> {
    let report = segment::verify(data_dir)?;
    println!(
        "{} records in {} segments, {} pathways; CRCs, positions, versions and hash chain checked",
        report.records, report.segments, report.streams
    );
    for problem in &report.problems {
        println!("PROBLEM: {problem}");
    }
    if report.damage_mark_cleared {
        println!("The damage mark of an earlier check was removed: the log checks out, and the service will start again.");
    }
    let anchored = verify_anchors(data_dir, anchors.as_deref());
    match (report.problems.is_empty(), anchored) {
        (true, Ok(())) => {
            println!("OK");
            Ok(())
        }
        (true, Err(e)) => Err(e),
        (false, anchored) => {
            let mut problems = report.problems.len();
            if let Err(e) = anchored {
                println!("PROBLEM: {e:#}");
                problems += 1;
            }
            anyhow::bail!("{problems} problems found")
        }
    }
}

/// Deletes the sled index and rebuilds it from the segments.
pub fn rebuild_index(data_dir: &Path) -> anyhow::Result<()> {
    let records = segment::rebuild_index(data_dir)?;
    println!("index rebuilt: {records} records");
    Ok(())
}

/// `openptl verify --anchors FILE`: every anchor in FILE against the log.
fn verify_anchors(data_dir: &Path, anchors: Option<&Path>) -> anyhow::Result<()> {
    let Some(file) = anchors else {
        return Ok(());
    };
    let read = openptl_log::anchor::read(file)?;
    for line in &read.torn {
        println!(
            "NOTE: line {line} of {} is not JSON (a write torn by a crash?); passed over",
            file.display()
        );
    }
    let checked = segment::verify_anchors(data_dir, &read.anchors)
        .with_context(|| format!("checking the anchors of {}", file.display()))?;
    println!(
        "{checked} anchors of {} checked: every anchored record is there with its hash",
        file.display()
    );
    Ok(())
}

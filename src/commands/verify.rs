//! `openptl verify` and `openptl rebuild-index`: checking a data
//! directory's segment log offline (CRCs, positions, versions, hash chain,
//! anchors) or the PostgreSQL log beside running nodes, and rebuilding the
//! segment log's sled index from the segments.

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
            anyhow::bail!("{}", problems_found(problems))
        }
    }
}

/// `openptl verify --store postgres://…`: the PostgreSQL log checked whole
/// (and, with `anchors`, against every anchor); an error when any problem
/// is found.
pub async fn run_postgres(url: &str, schema: &str, anchors: Option<PathBuf>) -> anyhow::Result<()> {
    let anchors = match &anchors {
        Some(file) => {
            let read = openptl_log::anchor::read(file)?;
            for line in &read.torn {
                println!(
                    "NOTE: line {line} of {} is not JSON (a write torn by a crash?); passed over",
                    file.display()
                );
            }
            read.anchors
        }
        None => Vec::new(),
    };
    let report = openptl_log::postgres::verify(url, schema, &anchors)
        .await
        .context("reading the PostgreSQL log")?;
    println!(
        "{} records, {} pathways in PostgreSQL (schema {schema}); positions, versions, hash chain and head checked",
        report.records, report.streams
    );
    for problem in &report.problems {
        println!("PROBLEM: {problem}");
    }
    let mut problems = report.problems.len();
    match report.anchors {
        Some(Ok(checked)) => {
            println!("{checked} anchors checked: every anchored record is there with its hash")
        }
        Some(Err(e)) => {
            println!("PROBLEM: {e}");
            problems += 1;
        }
        None => {}
    }
    if problems > 0 {
        anyhow::bail!("{}", problems_found(problems));
    }
    println!("OK");
    Ok(())
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

/// "1 problem found", "3 problems found".
fn problems_found(n: usize) -> String {
    format!("{n} problem{} found", if n == 1 { "" } else { "s" })
}

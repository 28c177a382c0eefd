//! `openptl backup` and `openptl restore`: a data directory copied beside
//! the running service, and a backup restored (and verified) into a new one.

use std::path::Path;

use openptl_log::segment;

/// Backs `data_dir` up into `to`, printing each segment's progress.
pub fn backup(data_dir: &Path, to: &Path) -> anyhow::Result<()> {
    let report = segment::backup(data_dir, to, &mut |step| match step {
        segment::Progress::Segment {
            number,
            index,
            of,
            offset,
            len,
        } => {
            eprintln!("segment {number} ({index} of {of}): copying bytes {offset} to {len}")
        }
        segment::Progress::Checking => eprintln!("checking the copy"),
    })?;
    println!(
        "backup of {} in {}: position {}, head hash {} ({} of {} segments copied, {} bytes; {})",
        data_dir.display(),
        to.display(),
        report.position,
        hex(&report.head_hash),
        report.segments_copied,
        report.segments,
        report.bytes_copied,
        if report.files.is_empty() {
            "no other files".to_string()
        } else {
            report.files.join(", ")
        },
    );
    Ok(())
}

/// Restores the backup `from` into the new data directory `to` and
/// verifies it.
pub fn restore(from: &Path, to: &Path) -> anyhow::Result<()> {
    let report = segment::restore(from, to)?;
    let verified = segment::verify(to)?;
    if !verified.problems.is_empty() {
        anyhow::bail!(
            "the restored log has problems: {}",
            verified.problems.join("; ")
        );
    }
    println!(
        "restored {} into {}: position {}, head hash {}; verified. Start the service with --data-dir {}",
        from.display(),
        to.display(),
        report.position,
        hex(&report.head_hash),
        to.display()
    );
    Ok(())
}

/// Bytes as lower-case hex (hashes for the operator).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

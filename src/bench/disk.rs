//! The disk's own limit, for comparison with the log's appends: sequential
//! writes of one size, one fdatasync each.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// The disk's limit: `writes` sequential writes of `bytes` each, one fdatasync per write.
pub fn raw_fdatasync(dir: &Path, writes: usize, bytes: usize) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("raw-fdatasync.bin");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let buffer = vec![0x5au8; bytes];
    let started = Instant::now();
    for _ in 0..writes {
        file.write_all(&buffer)?;
        file.sync_data()?;
    }
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok((writes as f64 / secs, (writes * bytes) as f64 / secs / 1e6))
}

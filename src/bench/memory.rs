//! Resident memory of this process, and returning freed heap pages to the
//! system first, so that `bench --views` reports what the projection and
//! the log keep live.
//!
//! Trimming is mimalloc's `mi_collect` ([`crate::allocator`]): without it
//! the memory figures would include pages the allocator merely keeps for
//! reuse.

/// Hands freed heap pages back to the system (the allocator keeps them a while),
/// so resident memory shows what is live rather than what was once used.
pub fn trim_heap() {
    crate::allocator::return_freed_memory();
}

/// Resident memory of this process in bytes (Linux; 0 elsewhere).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

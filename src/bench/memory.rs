//! Resident memory of this process, and returning freed heap pages to the
//! system first, so that `bench --views` reports what the projection and
//! the log keep live.
//!
//! Trimming needs mimalloc's `mi_collect`, which the `mimalloc` crate does
//! not wrap (its `libmimalloc-sys` declares it only under a feature that
//! pulls in another crate): one declaration below, the only `unsafe` of the
//! benchmarks. Without it the memory figures would include pages the
//! allocator merely keeps for reuse.

// The global allocator (main.rs), linked wherever this module is.
use mimalloc as _;

// SAFETY: this is mimalloc's own declaration, `void mi_collect(bool force)`
// (mimalloc.h, v2 and v3), and the function only returns free pages to the
// system, so it is safe to call at any time from any thread.
unsafe extern "C" {
    safe fn mi_collect(force: bool);
}

/// Hands freed heap pages back to the system (the allocator keeps them a while),
/// so resident memory shows what is live rather than what was once used.
pub fn trim_heap() {
    mi_collect(true);
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

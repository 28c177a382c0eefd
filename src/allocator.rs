//! The allocator's settings, and the only declarations of mimalloc's C
//! functions that the `mimalloc` crate does not wrap (its `libmimalloc-sys`
//! declares them only under a feature that pulls in another crate, and
//! without the option's name: decisions 121 and 206).
//!
//! mimalloc is the global allocator of the `openptl` binary (`main.rs`).
//! It keeps memory a view freed for [`KEEP_FREED_MS`] before giving it back
//! to the system, so that the next view (a manager clicking through dates)
//! reuses those pages instead of faulting in fresh ones, which the kernel
//! must zero first: with mimalloc's default of one second, zeroing fresh
//! pages was an eighth of the first PTL page of a past date at 1.4M
//! pathways (docs/benchmarks.md, twentieth session).

// The global allocator (main.rs), linked wherever this module is.
use mimalloc as _;

/// How long freed memory is kept for reuse before it is given back, in
/// milliseconds (mimalloc's `purge_delay`; its arenas keep theirs ten
/// times as long, `arena_purge_mult`). The peak a view reaches is the
/// same; only what stays resident in the half minute after it differs.
pub const KEEP_FREED_MS: i64 = 30_000;

/// `mi_option_purge_delay`: its index in `mi_option_t` (mimalloc.h of the
/// mimalloc v2 and v3 that `libmimalloc-sys` 0.1.49 builds; Cargo.lock
/// pins it).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

// SAFETY: these are mimalloc's own declarations (mimalloc.h, v2 and v3):
// `void mi_collect(bool force)`, `void mi_option_set_default(mi_option_t,
// long)` and `long mi_option_get(mi_option_t)`, where `mi_option_t` is a C
// enum (an `int`). Each only reads or sets the allocator's options, or
// returns free pages to the system, and ignores an option out of range, so
// they are safe to call at any time from any thread.
unsafe extern "C" {
    safe fn mi_collect(force: bool);
    safe fn mi_option_set_default(option: std::ffi::c_int, value: std::ffi::c_long);
    safe fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
}

/// Keeps freed memory [`KEEP_FREED_MS`] before giving it back, unless the
/// environment set mimalloc's option (`MIMALLOC_PURGE_DELAY`, which wins).
/// The binary calls it first thing (`main.rs`).
pub fn keep_freed_memory() {
    mi_option_set_default(MI_OPTION_PURGE_DELAY, KEEP_FREED_MS as std::ffi::c_long);
}

/// How long freed memory is kept before it is given back, in milliseconds
/// (mimalloc's `purge_delay` as it stands).
pub fn keeps_freed_ms() -> i64 {
    mi_option_get(MI_OPTION_PURGE_DELAY) as i64
}

/// Hands freed heap pages back to the system now, whatever the delay, so
/// resident memory shows what is live rather than what was once used.
pub fn return_freed_memory() {
    mi_collect(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index is `purge_delay`'s: before it is set, the option there
    /// holds mimalloc v3's default for it, one second (its neighbours
    /// hold 1 and 0); once set, the delay set is the one read back.
    #[test]
    fn freed_memory_is_kept_for_the_delay_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            // The environment's value wins, by design.
            openptl_testkit::skip("MIMALLOC_PURGE_DELAY is set in this environment");
            return;
        }
        assert_eq!(
            keeps_freed_ms(),
            1000,
            "mimalloc's default purge delay: if mimalloc was upgraded, check the \
             option's index in its mimalloc.h"
        );
        keep_freed_memory();
        assert_eq!(keeps_freed_ms(), KEEP_FREED_MS);
        return_freed_memory();
    }
}

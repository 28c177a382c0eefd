//! What the test suites of every crate share: how a test that needs
//! something outside Rust (PostgreSQL, Chromium, schemathesis, the shared
//! conformance cases, root for a tmpfs) says that it did not run.
//!
//! A skip must never look like a pass. Under `CI=true` (`.ci/run` sets it,
//! and installs or starts everything) a missing dependency fails the test.
//! Elsewhere the skip is written straight to the process's standard error,
//! past the test harness's output capture, so a person running
//! `cargo test` sees it beside the green line.

use std::io::Write;

/// Whether this run must have every external dependency: `CI` is `true`
/// (or `1`), as `.ci/run` and most CI systems set it.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// A test cannot run because `what` is missing (say what, and what is
/// therefore not tested). Under CI this panics; elsewhere it says SKIPPED
/// where the person running the tests sees it, and the caller returns.
#[track_caller]
pub fn skip(what: &str) {
    if required() {
        panic!("{what}; CI=true requires it (.ci/run installs or starts it)");
    }
    shout("SKIPPED", what);
}

/// A part of a test that this machine cannot exercise although nothing is
/// missing (a certificate that names another host, say). Never fails: it
/// says NOT TESTED where it is seen.
pub fn not_tested(what: &str) {
    shout("NOT TESTED", what);
}

fn shout(label: &str, what: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    // `std::io::stderr()` is not captured by the test harness (only the
    // `eprint!` family is), so this reaches the terminal.
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!! {label} ({test}): {what} !!!\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_fails_under_ci_and_passes_elsewhere() {
        // One process-wide variable: both cases in one test, in order.
        std::env::set_var("CI", "true");
        assert!(required());
        let caught = std::panic::catch_unwind(|| skip("PostgreSQL is not running"));
        assert!(caught.is_err(), "a missing dependency passed under CI");
        std::env::set_var("CI", "false");
        assert!(!required());
        skip("nothing: this is the skip's own test");
        not_tested("nothing: this is the skip's own test");
        std::env::remove_var("CI");
    }
}

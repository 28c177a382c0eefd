//! `openptl bench`: measures durable appends through the real HTTP API on
//! this machine, beside the disk's own limit (sequential writes with one
//! fdatasync each), and reading the whole log back; with `--views`, the
//! projection and views (restart, memory, PTL pages, pathway and aggregate
//! views). Prints figures; asserts nothing (SPEC 7: performance is
//! measured, not asserted in tests). docs/benchmarks.md quotes its output.
//!
//! With `--forecast`, the breach forecasts' backtest (issue 24,
//! `forecast.rs`); with `--views --new-day`, the date's change at midnight
//! (`new_day.rs`).
//!
//! `appends.rs` and `views.rs` are the two benchmarks; `data.rs` makes
//! their events, `client.rs` drives the HTTP API, `disk.rs` measures the
//! disk, `memory.rs` resident memory, `report.rs` prints latencies.

mod appends;
mod client;
mod data;
mod disk;
mod forecast;
mod memory;
mod new_day;
mod report;
mod views;

pub use appends::run;
pub use forecast::forecast;
pub use views::views;

/// The shape of the append benchmark (`openptl bench`'s flags).
pub struct BenchOptions {
    pub pathways: usize,
    pub batch_events: usize,
    pub batch_requests: usize,
    pub single_requests: usize,
    pub clients: usize,
}

//! Latency figures: percentiles of sorted timings, and the line each view
//! benchmark prints.

use std::time::Duration;

/// The `p` quantile (0 to 1) of `sorted` (zero when empty).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Prints `label` with the runs, p50, p99 and max of `times`.
pub fn report(label: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{label}: {} runs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

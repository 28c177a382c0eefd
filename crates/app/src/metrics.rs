//! Prometheus metrics (SPEC 6). Every metric is declared here, once, with
//! its labels. Labels are bounded vocabularies only — trust (ODS code),
//! tumour site, clock, band, event type, route template, status — never a
//! pathway id, NHS number, event id, user or free text.
//!
//! Counters and histograms are updated where things happen (appends, HTTP
//! requests). Gauges of the PTL are computed from the projection at scrape
//! time, so they can never drift from what the views show.

use std::collections::BTreeMap;
use std::time::Duration;

use openptl_rules::report::Period;
use openptl_rules::ClockKind;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

use crate::aggregates::gauges::PtlGauges;
use crate::aggregates::Aggregates;
use crate::App;

/// Latency buckets in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Every metric of the service.
pub struct Metrics {
    pub registry: Registry,
    pub events_appended: IntCounterVec,
    pub append_duration: HistogramVec,
    pub append_errors: IntCounterVec,
    /// Reads of patient data whose access log line could not be written
    /// (decision 194).
    pub access_log_errors: IntCounter,
    access_log_pending: IntGauge,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    open_pathways: GaugeVec,
    due_to_breach: GaugeVec,
    open_breached: GaugeVec,
    overdue_milestones: GaugeVec,
    performance: GaugeVec,
    clocks_stopped: GaugeVec,
    target: GaugeVec,
    projection_position: IntGauge,
    log_head: IntGauge,
    projection_lag_events: IntGauge,
    projection_lag_seconds: Gauge,
    log_size: IntGauge,
    log_bytes_per_event: Gauge,
    index_size: IntGauge,
    verified: IntGauge,
    writable: IntGauge,
    /// The last position anchored (set by [`crate::anchoring`]).
    pub log_anchored: IntGauge,
    /// This month's FIT measures by trust (issue 25).
    fit: crate::fit::FitGauges,
    /// This month's projected performance by standard and trust (issue 24).
    forecast: crate::forecast::ForecastGauges,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        macro_rules! register {
            ($metric:expr) => {{
                let metric = $metric.expect("metric definitions are valid");
                registry
                    .register(Box::new(metric.clone()))
                    .expect("each metric is registered once");
                metric
            }};
        }
        let histogram = |name: &str, help: &str| {
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
        };
        let metrics = Metrics {
            events_appended: register!(IntCounterVec::new(
                opts("openptl_events_appended_total", "Events appended to the log, by event type."),
                &["type"]
            )),
            append_duration: register!(HistogramVec::new(
                histogram(
                    "openptl_append_duration_seconds",
                    "Time to check, durably append and project a request's events."
                ),
                &["status"]
            )),
            append_errors: register!(IntCounterVec::new(
                opts(
                    "openptl_append_errors_total",
                    "Appends refused or failed, by error code (user errors and service errors)."
                ),
                &["status"]
            )),
            access_log_errors: register!(IntCounter::new(
                "openptl_access_log_write_errors_total",
                "Reads of patient data whose access log line could not be written (a full disk): it waits in memory, or past the limit the read is refused."
            )),
            access_log_pending: register!(IntGauge::new(
                "openptl_access_log_pending_bytes",
                "Bytes of access log lines waiting in memory for the file to take writes again (a full disk); reads of patient data are refused past 16 MiB."
            )),
            http_requests: register!(IntCounterVec::new(
                opts("openptl_http_requests_total", "HTTP requests by route template and status."),
                &["route", "status"]
            )),
            http_duration: register!(HistogramVec::new(
                histogram("openptl_http_request_duration_seconds", "HTTP request latency by route template."),
                &["route"]
            )),
            open_pathways: register!(GaugeVec::new(
                opts(
                    "openptl_open_pathways",
                    "Pathways on the PTL by current trust, tumour site and 62-day wait band (`none`: no 62-day clock running)."
                ),
                &["trust", "tumour_site", "band"]
            )),
            due_to_breach: register!(GaugeVec::new(
                opts(
                    "openptl_clocks_due_to_breach_within_7_days",
                    "Running clocks not yet breached whose first breach day is within the next 7 days (`d31_subsequent`: subsequent treatment periods)."
                ),
                &["trust", "tumour_site", "clock"]
            )),
            open_breached: register!(GaugeVec::new(
                opts(
                    "openptl_open_breached_clocks",
                    "Running clocks already past their target (`d31_subsequent`: subsequent treatment periods)."
                ),
                &["trust", "tumour_site", "clock"]
            )),
            overdue_milestones: register!(GaugeVec::new(
                opts("openptl_overdue_milestones", "BPTP milestones overdue on open pathways."),
                &["trust", "tumour_site"]
            )),
            performance: register!(GaugeVec::new(
                opts(
                    "openptl_standard_performance_percent",
                    "Share of clocks stopped this month within target, by trust (62-day: allocation shares; 31-day: every treatment period, first and subsequent, under the trust at treatment)."
                ),
                &["clock", "trust"]
            )),
            clocks_stopped: register!(GaugeVec::new(
                opts(
                    "openptl_standard_clocks_stopped",
                    "Clocks stopped this month by trust and status (met or breached; 62-day: allocation shares)."
                ),
                &["clock", "trust", "status"]
            )),
            target: register!(GaugeVec::new(
                opts(
                    "openptl_standard_target_percent",
                    "The operational target of each standard (the national standard where there is none), from configuration."
                ),
                &["clock"]
            )),
            projection_position: register!(IntGauge::with_opts(opts(
                "openptl_projection_position",
                "Last log position every view shows."
            ))),
            log_head: register!(IntGauge::with_opts(opts(
                "openptl_log_head_position",
                "Last position stored in the log."
            ))),
            projection_lag_events: register!(IntGauge::with_opts(opts(
                "openptl_projection_lag_events",
                "Events stored but not yet in the views."
            ))),
            projection_lag_seconds: register!(Gauge::with_opts(opts(
                "openptl_projection_lag_seconds",
                "How long the views have been behind the log (0 when caught up)."
            ))),
            log_size: register!(IntGauge::with_opts(opts(
                "openptl_log_size_bytes",
                "Bytes of segment files on disk."
            ))),
            log_bytes_per_event: register!(Gauge::with_opts(opts(
                "openptl_log_bytes_per_event",
                "Average bytes on disk per stored event."
            ))),
            index_size: register!(IntGauge::with_opts(opts(
                "openptl_index_size_bytes",
                "Bytes of the sled index on disk."
            ))),
            verified: register!(IntGauge::with_opts(opts(
                "openptl_log_verified_position",
                "The last position up to which the log's CRCs and SHA-256 hash chain are verified: every CRC at start-up, the chain of older segments by a background check just after (the service stops on a broken chain; `openptl verify` re-checks it all)."
            ))),
            writable: register!(IntGauge::with_opts(opts(
                "openptl_log_writable",
                "1 while the log takes appends; 0 while it cannot (a full disk, PostgreSQL unreachable, damage): appends are answered 503 and /readyz fails until it recovers."
            ))),
            log_anchored: register!(IntGauge::with_opts(opts(
                "openptl_log_anchored_position",
                "The last log position whose hash-chain head was published to the anchors file (issue 27; `openptl verify --anchors` checks the log against them). 0 until the first anchor."
            ))),
            fit: crate::fit::FitGauges::register(&registry),
            forecast: crate::forecast::ForecastGauges::register(&registry),
            registry,
        };
        // The service-side append errors the alert watches exist from the
        // start at 0: `rate()` needs a sample before the first error to see
        // it at all.
        for status in ["unavailable", "internal"] {
            metrics.append_errors.with_label_values(&[status]);
        }
        metrics
    }

    /// Records one append request's latency (errors are counted by code
    /// where the code is decided: the HTTP error table).
    pub fn observe_append(&self, elapsed: Duration, ok: bool) {
        let status = if ok { "ok" } else { "error" };
        self.append_duration
            .with_label_values(&[status])
            .observe(elapsed.as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl App {
    /// [`App::render_metrics`] in a view slot, off the async workers (it
    /// reads the projection), so scrapes are bounded like every view.
    pub async fn metrics_text(self: &std::sync::Arc<Self>) -> Result<String, crate::AppError> {
        // Just after midnight, once the states are on the new day, the
        // seconds its aggregates take are waited for rather than every
        // state counted afresh (decision 220); before that, the gauges
        // show the last day's cells.
        let today = self.today();
        if self
            .projection
            .try_day()
            .is_none_or(|(on, _)| on == Some(today))
        {
            self.wait_for_today(today, None, true).await;
        }
        let app = self.clone();
        self.off_workers(move || app.render_metrics()).await
    }

    /// Brings every gauge up to date and renders the registry as Prometheus text.
    pub fn render_metrics(&self) -> String {
        self.refresh_gauges();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.metrics.registry.gather(), &mut out)
            .expect("text encoding of valid metrics cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    fn refresh_gauges(&self) {
        let m = &self.metrics;
        let head = self.log.head();
        let position = self.projection.position();
        m.log_head.set(head as i64);
        m.projection_position.set(position as i64);
        m.projection_lag_events
            .set(head.saturating_sub(position) as i64);
        m.projection_lag_seconds
            .set(self.projection.behind_for().as_secs_f64());
        let stats = self.log.stats();
        if let Some(bytes) = stats.bytes_on_disk {
            m.log_size.set(bytes as i64);
            m.log_bytes_per_event.set(if head == 0 {
                0.0
            } else {
                bytes as f64 / head as f64
            });
        }
        if let Some(bytes) = stats.index_bytes {
            m.index_size.set(bytes as i64);
        }
        if let Some(position) = stats.verified_position {
            m.verified.set(position as i64);
        }
        m.access_log_pending
            .set(self.access_log.pending_bytes() as i64);
        let writable = self.log.unavailable().is_none() && self.log.damage().is_none();
        m.writable.set(i64::from(writable));
        let thresholds = &self.config.thresholds;
        m.target
            .with_label_values(&["fds"])
            .set(thresholds.fds_operational);
        m.target
            .with_label_values(&["d31"])
            .set(thresholds.d31_standard);
        m.target
            .with_label_values(&["d62"])
            .set(thresholds.d62_operational);

        let today = self.today();
        let Some((ptl, fit_report, standards)) = ({
            let data = self.projection.read();
            // This month's performance counts clocks stopped this month.
            let on = data.today.unwrap_or(today);
            let period = Period::of(on);
            let config = &self.config;
            let everyone = |_: &str| true;
            let from_cells = |kept: &Aggregates| {
                let standards = ClockKind::ALL
                    .iter()
                    .map(|clock| {
                        kept.dated()
                            .standards(*clock, period, None, &everyone, config)
                    })
                    .collect::<Vec<_>>();
                (
                    kept.ptl_gauges(),
                    kept.dated().fit(period, &everyone, config),
                    standards,
                )
            };
            match &data.aggregates {
                // Today's, or the last day's until the runner has brought
                // the states to the new one (seconds).
                Some(kept) => Some(from_cells(kept)),
                // The new day's being built (the wait above ran out, or the
                // runner put the states in place since): the pathway gauges
                // keep their values for the seconds it takes.
                None if self.projection.settling() => None,
                // Not kept (being built, or their build failed): every
                // state afresh.
                _ => {
                    let packer = self.projection.packer();
                    let states: Vec<_> = data
                        .states(packer, None)
                        .filter_map(|(id, current)| match current {
                            Ok(current) => Some((data.pathways.find(id)?, current)),
                            Err(e) => {
                                tracing::error!(error = %e, "a pathway left out of the metrics");
                                None
                            }
                        })
                        .collect();
                    let states = states
                        .iter()
                        .map(|(index, current)| (*index, data.settled_from(*index), current));
                    Some(from_cells(&Aggregates::of(states, on, config)))
                }
            }
        }) else {
            return;
        };
        let PtlGauges {
            open,
            due,
            breached,
            overdue,
        } = ptl;
        // Reset, then set: label sets that emptied disappear rather than go stale.
        replace_all(&m.open_pathways, open);
        replace_all(&m.due_to_breach, due);
        replace_all(&m.open_breached, breached);
        replace_all(&m.overdue_milestones, overdue);
        m.fit.set(&fit_report);
        m.forecast.set(&self.forecasts);
        m.performance.reset();
        m.clocks_stopped.reset();
        for report in standards {
            let clock = report.standard.as_str();
            for line in report.by_trust {
                let p = &line.performance;
                if let Some(percent) = p.percent {
                    m.performance
                        .with_label_values(&[clock, &line.trust])
                        .set(percent);
                }
                if p.total > 0.0 {
                    m.clocks_stopped
                        .with_label_values(&[clock, &line.trust, "met"])
                        .set(p.within_target);
                    m.clocks_stopped
                        .with_label_values(&[clock, &line.trust, "breached"])
                        .set(p.breached);
                }
            }
        }
    }
}

/// Replaces every series of a gauge with `values` (label values → value).
fn replace_all<const N: usize>(gauge: &GaugeVec, values: BTreeMap<[String; N], f64>) {
    gauge.reset();
    for (labels, value) in values {
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        gauge.with_label_values(&labels).set(value);
    }
}

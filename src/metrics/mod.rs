//! Metrics of the running pipeline, served on `--metrics-addr` for Prometheus
//! (`serve.rs`).
//!
//! The counters live in one process-wide [`Metrics`] of atomics, counted where the
//! pipeline's own events happen, never derived from the journal at scrape time:
//! fetched pages, their bytes and fetch times, and failed fetch attempts by the
//! fetch committer once the group that holds them is flushed (`pipeline.rs`); requests
//! in flight around each page fetch (`schedule.rs`); parsed pages by the parse
//! committer after its flush (`parse/stage.rs`); synced pages by the sync stage after
//! MySQL committed their batch (`sync/mod.rs`). Counting is an atomic add, so a
//! process that serves no metrics pays nothing worth measuring. Only the journal's
//! gauges (its size on disk, its frontier, its pages pending sync) are sampled when
//! scraped: a read of a few counters and the sizes of the directory's files.
//!
//! Nothing here carries a URL, a header or a MySQL target: labels are error kinds only.

mod serve;

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::journal::ErrorKind;

pub use serve::{bind, parse_addr, serve, MetricsError, Serving, DEFAULT_PORT};

/// The label of a failed fetch: its [`ErrorKind`], as `status` names it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// The pipeline's counters, process-wide.
pub struct Metrics {
    pub pages_fetched: Counter,
    pub fetch_errors: Family<KindLabel, Counter>,
    pub response_bytes: Counter,
    pub pages_parsed: Counter,
    pub pages_synced: Counter,
    pub requests_in_flight: Gauge,
    pub fetch_duration: Histogram,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    pages_fetched: Counter::default(),
    fetch_errors: Family::default(),
    response_bytes: Counter::default(),
    pages_parsed: Counter::default(),
    pages_synced: Counter::default(),
    requests_in_flight: Gauge::default(),
    // 5 ms to about 82 s.
    fetch_duration: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
});

/// This process's counters.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// A fetch attempt that ended without a usable response (retried ones too).
    pub fn fetch_failed(&self, kind: ErrorKind) {
        self.fetch_errors
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
    }
}

/// A page fetch under way, counted in `webspool_requests_in_flight` until dropped.
pub struct InFlight(());

impl InFlight {
    pub fn start() -> InFlight {
        metrics().requests_in_flight.inc();
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics().requests_in_flight.dec();
    }
}

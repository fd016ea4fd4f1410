//! The `/metrics` endpoint: hyper's HTTP/1 server on a tokio task, for as long as the
//! command runs.
//!
//! Bounded like everything else: at most [`MAX_CONNECTIONS`] connections at once (more
//! are closed at once), each given [`HEADER_DEADLINE`] to send its request head and
//! [`CONNECTION_DEADLINE`] in all; requests have no body worth reading. The format is
//! negotiated as Prometheus' own clients do: an `Accept` that names
//! `application/openmetrics-text` gets OpenMetrics 1.0, anything else the text format
//! 0.0.4, which every Prometheus reads.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::metrics;
use crate::journal::Journal;

/// The port `--metrics-addr` listens on when given an address without one.
pub const DEFAULT_PORT: u16 = 9184;
/// Connections served at once; Prometheus needs one.
const MAX_CONNECTIONS: usize = 8;
/// Longest wait for a request's head.
const HEADER_DEADLINE: Duration = Duration::from_secs(10);
/// Longest life of one connection.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(60);
/// OpenMetrics' media type, as the encoder writes it.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Not a `source`: `{:#}` would print its reason twice.
    #[error("--metrics-addr {addr}: cannot listen there: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// `--metrics-addr`'s value: `HOST:PORT`, `HOST` (port [`DEFAULT_PORT`]), or `PORT`
/// alone, which is on loopback. Only a host given explicitly binds elsewhere.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(ip) = text.trim_start_matches('[').trim_end_matches(']').parse() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    Err("expected IP:PORT, IP or PORT (e.g. 127.0.0.1:9184)".into())
}

/// Binds `addr`: before the command does any work, so that a port in use is one clear
/// error at the start.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| MetricsError::Bind { addr, error })
}

/// The endpoint being served; dropping it stops serving.
pub struct Serving {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The gauges sampled from the journal at each scrape.
struct Sampled {
    journal: Arc<Journal>,
    disk_bytes: Gauge,
    frontier: Gauge,
    sync_pending: Gauge,
}

impl Sampled {
    fn sample(&self) {
        // A read error leaves the last values: the counters still serve.
        if let Ok(status) = self.journal.status() {
            self.frontier.set(gauge_value(status.pending_fetch));
            self.sync_pending.set(gauge_value(status.pending_sync));
        }
        self.disk_bytes
            .set(gauge_value(disk_bytes(self.journal.path(), 2)));
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The bytes of the files under `dir`, `depth` levels of directories down (the journal
/// keeps its segments and sled's blobs one level down).
fn disk_bytes(dir: &Path, depth: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() && depth > 0 => disk_bytes(&entry.path(), depth - 1),
            Ok(meta) if meta.is_file() => meta.len(),
            _ => 0,
        })
        .sum()
}

/// Serves `/metrics` on `listener` with the counters and `journal`'s gauges, until the
/// result is dropped.
pub fn serve(listener: TcpListener, journal: Arc<Journal>) -> Serving {
    let sampled = Sampled {
        journal,
        disk_bytes: Gauge::default(),
        frontier: Gauge::default(),
        sync_pending: Gauge::default(),
    };
    let registry = Arc::new(registry(&sampled));
    let sampled = Arc::new(sampled);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Over the cap: closed at once.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let (registry, sampled) = (registry.clone(), sampled.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (registry, sampled) = (registry.clone(), sampled.clone());
                    async move { Ok::<_, Infallible>(answer(req, &registry, sampled).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_DEADLINE)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
                drop(slot);
            });
        }
    });
    Serving { task }
}

fn registry(sampled: &Sampled) -> Registry {
    let m = metrics();
    let mut registry = Registry::with_prefix("webspool");
    registry.register(
        "pages_fetched",
        "Pages whose response is recorded in the journal (durable)",
        m.pages_fetched.clone(),
    );
    registry.register(
        "fetch_errors",
        "Fetch attempts that ended without a usable response, retried ones included",
        m.fetch_errors.clone(),
    );
    registry.register_with_unit(
        "response",
        "Bytes of the recorded responses' bodies after content-decoding",
        Unit::Bytes,
        m.response_bytes.clone(),
    );
    registry.register(
        "pages_parsed",
        "Pages annotated and recorded in the journal",
        m.pages_parsed.clone(),
    );
    registry.register(
        "pages_synced",
        "Pages written to MySQL in committed batches",
        m.pages_synced.clone(),
    );
    registry.register(
        "requests_in_flight",
        "Page fetches under way",
        m.requests_in_flight.clone(),
    );
    registry.register_with_unit(
        "fetch_duration",
        "Time each recorded fetch took, redirects included",
        Unit::Seconds,
        m.fetch_duration.clone(),
    );
    registry.register_with_unit(
        "journal_disk",
        "Size of the journal directory's files",
        Unit::Bytes,
        sampled.disk_bytes.clone(),
    );
    registry.register(
        "frontier_urls",
        "URLs waiting to be fetched (frontier and retry queue)",
        sampled.frontier.clone(),
    );
    registry.register(
        "sync_pending_pages",
        "Pages whose latest state is not in MySQL yet (the sync lag)",
        sampled.sync_pending.clone(),
    );
    registry
}

async fn answer(
    req: Request<Incoming>,
    registry: &Registry,
    sampled: Arc<Sampled>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "only /metrics is served here\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    let openmetrics = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let _ = tokio::task::spawn_blocking(move || sampled.sample()).await;
    let mut text = String::new();
    let (encoded, content_type) = if openmetrics {
        (
            prometheus_client::encoding::text::encode(&mut text, registry),
            OPENMETRICS,
        )
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut text, registry),
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    };
    if encoded.is_err() {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n");
    }
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_loopback_and_the_default_port() {
        assert_eq!(
            parse_addr("9000").unwrap(),
            "127.0.0.1:9000".parse().unwrap()
        );
        assert_eq!(
            parse_addr("0.0.0.0").unwrap(),
            "0.0.0.0:9184".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]").unwrap(), "[::1]:9184".parse().unwrap());
        assert_eq!(parse_addr("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert!(parse_addr("localhost:9184").is_err());
    }
}

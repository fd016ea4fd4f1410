//! Builds the shared HTTP clients: hyper-util's pooled client over hyper-rustls. Bodies
//! are content-decoded by the fetcher (`decode.rs`), not here.
//!
//! Two clients serve the whole crawl so that connections are pooled per host: one for
//! the URLs the user gave, one with the SSRF guard for discovered links (the same one
//! with `--allow-private`). They never share pooled connections, so a connection made
//! for a trusted URL cannot carry a discovered one past the guard. No client is ever
//! built with more than one rustls crypto provider: the provider is passed explicitly
//! (ring) instead of relying on a process default.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;

use super::guard::{Guarded, Resolver};
use super::{FetchConfig, FetchError};

type Connector = HttpsConnector<Guarded<HttpConnector<Resolver>>>;
pub(crate) type HttpClient = Client<Connector, Empty<Bytes>>;

/// The client for URLs the user gave and the one for discovered links.
pub(crate) struct Clients {
    pub(crate) given: HttpClient,
    pub(crate) discovered: HttpClient,
}

/// Response headers larger than this end the fetch with a protocol error.
const MAX_HEADER_BYTES: usize = 256 * 1024;
const MAX_HEADERS: usize = 256;

pub(crate) fn build(config: &FetchConfig) -> Result<Clients, FetchError> {
    let tls = tls_config(&config.extra_roots)?;
    let given = client(config, tls.clone(), false);
    let discovered = match config.allow_private {
        true => given.clone(),
        false => client(config, tls, true),
    };
    Ok(Clients { given, discovered })
}

fn client(config: &FetchConfig, tls: rustls::ClientConfig, guard: bool) -> HttpClient {
    let mut http = HttpConnector::new_with_resolver(Resolver::new(guard));
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(Guarded::new(http, guard));
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(config.per_host)
        .http1_max_buf_size(MAX_HEADER_BYTES)
        .http1_max_headers(MAX_HEADERS)
        .http2_max_header_list_size(MAX_HEADER_BYTES as u32)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_timeout(config.idle_timeout)
        .build(https)
}

/// Server certificates are checked against the webpki roots, the system's roots and any
/// extra roots given (tests use the latter for their self-signed authority).
fn tls_config(extra_roots: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, FetchError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // The system store is a supplement: a missing or partly unreadable one is not fatal.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for cert in extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| FetchError::Tls(format!("extra root certificate rejected: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Reads PEM certificates (for `--tls-extra-root`).
pub fn load_pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, FetchError> {
    let data = std::fs::read(path)
        .map_err(|e| FetchError::Tls(format!("cannot read {}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FetchError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(FetchError::Tls(format!(
            "{}: no PEM certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

//! Builds the shared HTTP clients: hyper-util's pooled client over hyper-rustls. Bodies
//! are content-decoded by the fetcher (`decode.rs`), not here.
//!
//! Two clients serve the whole crawl so that connections are pooled per host: one for
//! the URLs the user gave, one with the SSRF guard for discovered links (the same one
//! with `--allow-private`). They never share pooled connections, so a connection made
//! for a trusted URL cannot carry a discovered one past the guard. Each proxy has two
//! such clients of its own ([`Route`]), so a connection made through one proxy is never
//! used for a request meant for another, or for a direct one. No client is ever
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
use super::proxy::{EnvRoutes, Matcher, Proxy, ProxyChoice, Route, Routes, ViaProxy};
use super::{FetchConfig, FetchError};

type Connector = HttpsConnector<Guarded<HttpConnector<Resolver>>>;
pub(crate) type HttpClient = Client<Connector, Empty<Bytes>>;

/// The client for URLs the user gave and the one for discovered links, and the
/// proxies' clients.
pub(crate) struct Clients {
    pub(crate) given: HttpClient,
    pub(crate) discovered: HttpClient,
    pub(crate) routes: Routes,
}

/// Response headers larger than this end the fetch with a protocol error.
const MAX_HEADER_BYTES: usize = 256 * 1024;
const MAX_HEADERS: usize = 256;

pub(crate) fn build(config: &FetchConfig) -> Result<Clients, FetchError> {
    let tls = tls_config(&config.extra_roots)?;
    let given = client(config, tls.clone(), false);
    let discovered = match config.allow_private {
        true => given.clone(),
        false => client(config, tls.clone(), true),
    };
    let routes = match &config.proxy {
        ProxyChoice::Off => Routes::Direct,
        ProxyChoice::Pool(proxies) => Routes::Pool(
            proxies
                .iter()
                .map(|proxy| Arc::new(route(config, &tls, proxy.clone())))
                .collect(),
        ),
        ProxyChoice::Env => {
            let config = config.clone();
            Routes::Env(Box::new(EnvRoutes {
                matcher: Matcher::from_env(),
                slots: Default::default(),
                make: Box::new(move |proxy| route(&config, &tls, proxy)),
            }))
        }
    };
    Ok(Clients {
        given,
        discovered,
        routes,
    })
}

fn client(config: &FetchConfig, tls: rustls::ClientConfig, guard: bool) -> HttpClient {
    let http = tcp(config, Resolver::new(guard));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(Guarded::new(http, guard));
    builder(config).build(https)
}

/// The clients through `proxy`. The proxy's own address is not guarded (the user gave
/// it); the sites' addresses are, for discovered links, in [`ViaProxy`].
fn route(config: &FetchConfig, tls: &rustls::ClientConfig, proxy: Proxy) -> Route {
    let stats = Arc::new(Default::default());
    let via = |guard: bool| {
        // HTTP/1.1 to the proxy, whatever its TLS could negotiate: CONNECT and
        // absolute-form requests are HTTP/1.1.
        let to_proxy = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp(config, Resolver::new(false)));
        let via = ViaProxy::new(
            proxy.clone(),
            to_proxy,
            guard.then(|| Resolver::new(true)),
            Resolver::new(false),
            Arc::clone(&stats),
            config.connect_timeout,
        );
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(via);
        builder(config).build(https)
    };
    let given = via(false);
    let discovered = match config.allow_private {
        true => given.clone(),
        false => via(true),
    };
    Route {
        proxy,
        given,
        discovered,
        stats,
    }
}

fn tcp(config: &FetchConfig, resolver: Resolver) -> HttpConnector<Resolver> {
    let mut http = HttpConnector::new_with_resolver(resolver);
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http
}

/// The settings every client shares: pool, header caps, HTTP/2 keep-alive.
fn builder(config: &FetchConfig) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(config.per_host)
        .http1_max_buf_size(MAX_HEADER_BYTES)
        .http1_max_headers(MAX_HEADERS)
        .http2_max_header_list_size(MAX_HEADER_BYTES as u32)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_timeout(config.idle_timeout);
    builder
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

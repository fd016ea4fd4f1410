//! The fetch stage's HTTP side: one [`Fetcher`] turns a URL into a [`Fetched`] page or a
//! recorded error, within a deadline and a size cap, and never panics or hangs on what a
//! server sends.
//!
//! Every request has three clocks: the connect timeout (TCP), the idle timeout (the
//! response headers, all of them, must arrive within it, and then no body frame may
//! take longer) and the total deadline (everything, redirects included). The body is
//! content-decoded as it arrives (`decode.rs`), and the size cap counts the decoded
//! bytes, so a gzip bomb is stopped at the cap, and a page over the cap is recorded as
//! `too_large`, never stored truncated.
//!
//! URLs are fetched with a [`Trust`]: links discovered on pages may not reach private
//! or loopback addresses (see `guard.rs`); URLs the user gave may. Each result carries
//! retry hints ([`Fetched::transient`], [`Fetched::retry_after`]) for the scheduler.
//!
//! Beside the client: the [`schedule`]r, which picks the next URL host by host, and
//! [`robots`], robots.txt policy.

mod classify;
mod client;
pub(crate) mod decode;
mod guard;
mod headers;
mod proxy;
mod retry;
pub mod robots;
pub mod schedule;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use rustls::pki_types::CertificateDer;
use url::Url;

pub use client::load_pem_certs;
pub use headers::UserHeader;
pub use proxy::{read_proxy_file, Proxy, ProxyChoice, ProxyKind, ProxyParseError};

use crate::journal::{
    now_ms, ErrorKind, Grants, KeptHeaders, Outcome, PageMeta, Redirect, Validators,
};
use crate::urls::redact;
use classify::Failure;
use decode::{DecodeError, Decoder, ACCEPT_ENCODING};

/// Settings of the HTTP client and of each request.
#[derive(Clone, Debug)]
pub struct FetchConfig {
    pub concurrency: usize,
    pub per_host: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_body: u64,
    pub max_redirects: usize,
    pub user_agent: String,
    /// Extra trusted root certificates, on top of the webpki and system roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Let discovered links reach private, loopback and other non-public addresses.
    pub allow_private: bool,
    /// Sent with every request to an origin the user gave URLs of (credential headers
    /// to the fetched URL's origin only). `Debug` shows their names, never their values.
    pub headers: Vec<UserHeader>,
    /// Send `headers` to every origin, not only to those the user gave URLs of
    /// (`--header-all-origins`).
    pub headers_to_all_origins: bool,
    /// Through which proxies, if any (`--proxy`, `--no-proxy`, or the environment).
    pub proxy: ProxyChoice,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            concurrency: 64,
            per_host: 8,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15),
            max_body: 10 * 1024 * 1024,
            max_redirects: 10,
            user_agent: default_user_agent(),
            extra_roots: Vec::new(),
            allow_private: false,
            headers: Vec::new(),
            headers_to_all_origins: false,
            proxy: ProxyChoice::Env,
        }
    }
}

pub fn default_user_agent() -> String {
    format!("webspool/{}", env!("CARGO_PKG_VERSION"))
}

/// Errors that stop the fetch stage from starting. Errors of single pages are never
/// returned: they are recorded on the page.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("the user agent has characters not allowed in an HTTP header")]
    UserAgent,
}

/// Where a URL came from, which decides the addresses it may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Given by the user (URL list, MySQL seed): fetched wherever it points, as are the
    /// redirects it leads to.
    Given,
    /// Found on a fetched page: it and every redirect hop from it are refused (error
    /// kind `blocked`) on non-public addresses, unless `allow_private`.
    Discovered,
}

/// A fetched page: its record, for responses the decoded body, and retry hints.
#[derive(Debug)]
pub struct Fetched {
    pub meta: PageMeta,
    pub body: Option<Vec<u8>>,
    /// Worth fetching again later: a timeout, a connection failure, a transfer cut
    /// short, a temporary DNS failure, or a response with status 408, 429, 500, 502,
    /// 503 or 504.
    pub transient: bool,
    /// How long the server asked to wait (`Retry-After` on the final response).
    pub retry_after: Option<Duration>,
}

pub struct Fetcher {
    clients: client::Clients,
    user_agent: HeaderValue,
    config: FetchConfig,
    /// Which origins get the user's headers, and URL credentials.
    grants: Arc<Grants>,
}

struct Response {
    status: u16,
    version: Version,
    final_url: Url,
    headers: KeptHeaders,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

impl Fetcher {
    pub fn new(config: FetchConfig, grants: Arc<Grants>) -> Result<Fetcher, FetchError> {
        Ok(Fetcher {
            clients: client::build(&config)?,
            user_agent: HeaderValue::from_str(&config.user_agent)
                .map_err(|_| FetchError::UserAgent)?,
            config,
            grants,
        })
    }

    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// What each proxy used so far carried in this process (none without proxies).
    pub fn proxy_counts(&self) -> Vec<crate::journal::ProxyCount> {
        self.clients.routes.counts()
    }

    /// Fetches `url`, following redirects. Never fails: errors become the outcome.
    pub async fn fetch(&self, url: &Url, trust: Trust) -> Fetched {
        self.fetch_if_changed(url, trust, None).await
    }

    /// [`Fetcher::fetch`] of a stored page: the first request carries its
    /// `validators` (`If-None-Match`, `If-Modified-Since`), so an unchanged page may be
    /// answered with a 304 and no body.
    pub async fn fetch_if_changed(
        &self,
        url: &Url,
        trust: Trust,
        validators: Option<&Validators>,
    ) -> Fetched {
        let started = Instant::now();
        let fetched_at_ms = now_ms();
        let mut redirects = Vec::new();
        let following = self.follow(trust, url, validators, &mut redirects);
        let result = tokio::time::timeout(self.config.timeout, following)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::new(
                    ErrorKind::Timeout,
                    format!(
                        "no complete response within the {}s deadline",
                        self.config.timeout.as_secs_f64()
                    ),
                ))
            });
        let (outcome, body, transient, retry_after) = match result {
            Ok(r) => (
                Outcome::Response {
                    status: r.status,
                    version: version_text(r.version).to_string(),
                    final_url: without_credentials(&r.final_url),
                    headers: r.headers,
                    body_len: r.body.len() as u64,
                },
                Some(r.body),
                retry::transient_status(r.status),
                r.retry_after,
            ),
            Err(f) => {
                let outcome = Outcome::Error {
                    kind: f.kind,
                    message: f.message,
                };
                (outcome, None, f.transient, None)
            }
        };
        Fetched {
            meta: PageMeta {
                fetched_at_ms,
                duration_ms: started.elapsed().as_millis() as u64,
                redirects,
                outcome,
            },
            body,
            transient,
            retry_after,
        }
    }

    async fn follow(
        &self,
        trust: Trust,
        url: &Url,
        validators: Option<&Validators>,
        redirects: &mut Vec<Redirect>,
    ) -> Result<Response, Failure> {
        let mut current = url.clone();
        loop {
            let response = self
                .send(trust, url, &current, validators, redirects)
                .await?;
            let status = response.status();
            if let Some(location) = redirect_target(status, response.headers()) {
                if redirects.len() >= self.config.max_redirects {
                    return Err(Failure::new(
                        ErrorKind::TooManyRedirects,
                        format!("more than {} redirects", self.config.max_redirects),
                    ));
                }
                let next = follow_location(&current, location)?;
                redirects.push(Redirect {
                    status: status.as_u16(),
                    location: without_credentials(&next),
                });
                current = next;
                continue;
            }
            let version = response.version();
            let mut decoder = Decoder::new(response.headers(), self.config.max_body);
            let headers = kept_headers(response.headers(), decoder.identity());
            let retry_after = retry::retry_after(response.headers(), SystemTime::now());
            let length = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            // The length of an encoded body says little about its decoded size.
            let declared = length.filter(|_| decoder.identity());
            if let Some(len) = declared.filter(|len| *len > self.config.max_body) {
                return Err(self.too_large(Some(len)));
            }
            let capacity = length.unwrap_or(0).min(1024 * 1024) as usize;
            let mut body = Vec::with_capacity(capacity);
            let mut incoming = response.into_body();
            while let Some(frame) = self.idle(incoming.frame(), "body data").await? {
                let frame = frame.map_err(|e| classify::classify(&e))?;
                if let Ok(data) = frame.into_data() {
                    decoder
                        .push(&data, &mut body)
                        .map_err(|e| self.undecodable(e))?;
                }
            }
            decoder.finish(&mut body).map_err(|e| self.undecodable(e))?;
            return Ok(Response {
                status: status.as_u16(),
                version,
                final_url: current,
                headers,
                retry_after,
                body,
            });
        }
    }

    /// Sends the request for one hop (`current`, reached from `url`) directly or
    /// through its proxy, and waits for the response headers. A proxy that fails to
    /// connect is rested by the pool, and the hop is tried through the next one, once
    /// per proxy at most.
    async fn send(
        &self,
        trust: Trust,
        url: &Url,
        current: &Url,
        validators: Option<&Validators>,
        redirects: &[Redirect],
    ) -> Result<http::Response<hyper::body::Incoming>, Failure> {
        let mut tries = 0;
        loop {
            let mut request = Request::get(request_uri(current)?)
                .body(Empty::<Bytes>::new())
                .map_err(|e| {
                    Failure::new(ErrorKind::Protocol, format!("cannot build request: {e}"))
                })?;
            let user = headers::User {
                headers: &self.config.headers,
                all_origins: self.config.headers_to_all_origins,
            };
            let mut sent = headers::for_hop(&self.user_agent, &user, &self.grants, url, current);
            let accept = HeaderValue::from_static(ACCEPT_ENCODING);
            sent.insert(header::ACCEPT_ENCODING, accept);
            if let Some(validators) = validators.filter(|_| redirects.is_empty()) {
                headers::conditional(&mut sent, validators);
            }
            let route = match self.clients.routes.pick(current) {
                proxy::Pick::Direct => None,
                proxy::Pick::Via(route) => Some(route),
                proxy::Pick::Resting { proxies, until_ms } => {
                    let wait = until_ms.saturating_sub(now_ms()) as f64 / 1000.0;
                    let message = match proxies {
                        1 => format!("the proxy is resting after failed connects, for {wait:.1}s more"),
                        n => format!("all {n} proxies are resting after failed connects, the first for {wait:.1}s more"),
                    };
                    return Err(Failure::new(ErrorKind::Proxy, message));
                }
            };
            // A plain request in absolute form is the only one an HTTP proxy reads.
            let absolute = route
                .as_ref()
                .filter(|r| r.proxy.kind().is_http() && current.scheme() == "http");
            if let Some(auth) = absolute.and_then(|r| r.proxy.basic()) {
                sent.insert(header::PROXY_AUTHORIZATION, auth);
            }
            *request.headers_mut() = sent;
            let pending = match (&route, trust) {
                (None, Trust::Given) => self.clients.given.request(request),
                (None, Trust::Discovered) => self.clients.discovered.request(request),
                (Some(r), Trust::Given) => r.given.request(request),
                (Some(r), Trust::Discovered) => r.discovered.request(request),
            };
            if let Some(route) = &route {
                route.stats.requested();
            }
            let failure = match self.idle(pending, "response headers").await? {
                Ok(response) => match absolute {
                    Some(route)
                        if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED =>
                    {
                        let what = "answered 407 Proxy Authentication Required (credentials missing or refused)";
                        let failed = proxy::ProxyFailure::counted(
                            &route.proxy,
                            &route.stats,
                            what.into(),
                            true,
                        );
                        Failure::new(ErrorKind::Proxy, failed.to_string())
                    }
                    _ => return Ok(response),
                },
                Err(e) => classify::classify(&e),
            };
            tries += 1;
            if failure.kind != ErrorKind::Proxy || tries >= self.clients.routes.len() {
                return Err(failure);
            }
            let next = self.clients.routes.pick(current);
            let moved = match (&route, &next) {
                (Some(r), proxy::Pick::Via(n)) => !Arc::ptr_eq(r, n),
                _ => false,
            };
            if !moved {
                return Err(failure);
            }
            tracing::debug!(
                "{}; trying {} through another proxy",
                failure.message,
                redact(current)
            );
        }
    }

    /// Waits for one step of the exchange (`awaited`: the response headers, or the
    /// next piece of body data), failing if it takes longer than the idle timeout.
    async fn idle<F: std::future::Future>(
        &self,
        step: F,
        awaited: &str,
    ) -> Result<F::Output, Failure> {
        tokio::time::timeout(self.config.idle_timeout, step)
            .await
            .map_err(|_| {
                let secs = self.config.idle_timeout.as_secs_f64();
                Failure::new(ErrorKind::Timeout, format!("no {awaited} within {secs}s"))
            })
    }

    fn too_large(&self, declared: Option<u64>) -> Failure {
        let cap = self.config.max_body;
        let message = match declared {
            Some(len) => format!("Content-Length {len} exceeds the {cap}-byte cap"),
            None => format!("body exceeds the {cap}-byte cap after decoding"),
        };
        Failure::new(ErrorKind::TooLarge, message)
    }

    fn undecodable(&self, error: DecodeError) -> Failure {
        match error {
            DecodeError::TooLarge => self.too_large(None),
            DecodeError::Invalid(message) => Failure::new(ErrorKind::Protocol, message),
        }
    }
}

fn redirect_target(status: StatusCode, headers: &HeaderMap) -> Option<&http::HeaderValue> {
    match status.as_u16() {
        301 | 302 | 303 | 307 | 308 => headers.get(header::LOCATION),
        _ => None,
    }
}

fn follow_location(current: &Url, location: &http::HeaderValue) -> Result<Url, Failure> {
    let text = String::from_utf8_lossy(location.as_bytes());
    let mut next = current.join(text.trim()).map_err(|e| {
        Failure::new(
            ErrorKind::Protocol,
            format!("redirect to an invalid Location: {e}"),
        )
    })?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(Failure::new(
            ErrorKind::Protocol,
            format!("redirect to unsupported scheme `{}` refused", next.scheme()),
        ));
    }
    next.set_fragment(None);
    Ok(next)
}

/// A URL to record: relative redirects keep the userinfo of the URL they came from
/// (`Url::join`), and credentials are kept only in the URL the user gave.
fn without_credentials(url: &Url) -> String {
    let mut bare = url.clone();
    // Both fail only for URLs that cannot have credentials, which have none to remove.
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    bare.to_string()
}

/// The URI to put on the wire: no userinfo, no fragment.
fn request_uri(url: &Url) -> Result<http::Uri, Failure> {
    let mut bare = url.clone();
    bare.set_fragment(None);
    http::Uri::try_from(without_credentials(&bare).as_str()).map_err(|e| {
        Failure::new(
            ErrorKind::Protocol,
            format!("cannot request {}: {e}", redact(url)),
        )
    })
}

/// The headers stored with the page. `Content-Length` only when the body is stored as
/// sent: the length of an encoded body is not the length of the stored one.
fn kept_headers(headers: &HeaderMap, identity: bool) -> KeptHeaders {
    let get = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    KeptHeaders {
        content_type: get(header::CONTENT_TYPE),
        content_length: get(header::CONTENT_LENGTH).filter(|_| identity),
        etag: get(header::ETAG),
        last_modified: get(header::LAST_MODIFIED),
        date: get(header::DATE),
    }
}

/// The HTTP version as stored and synced: "HTTP/1.1", "HTTP/2.0", ... (the words
/// journals have always held).
fn version_text(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_fragments_leave_the_uri() {
        let url = Url::parse("http://al%40ice:p%3Ass@example.com/x#frag").unwrap();
        assert_eq!(
            request_uri(&url).unwrap().to_string(),
            "http://example.com/x"
        );
    }

    #[test]
    fn redirects_only_to_http_and_https() {
        let base = Url::parse("http://example.com/a/b").unwrap();
        let file = http::HeaderValue::from_static("file:///etc/passwd");
        assert_eq!(
            follow_location(&base, &file).unwrap_err().kind,
            ErrorKind::Protocol
        );
        let rel = http::HeaderValue::from_static("../c#top");
        assert_eq!(
            follow_location(&base, &rel).unwrap().as_str(),
            "http://example.com/c"
        );
    }
}

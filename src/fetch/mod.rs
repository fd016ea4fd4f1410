//! The fetch stage's HTTP side: one [`Fetcher`] turns a URL into a [`Fetched`] page or a
//! recorded error, within a deadline and a size cap, and never panics or hangs on what a
//! server sends.
//!
//! Every request has three clocks: the connect timeout (TCP), the idle timeout (no
//! bytes for that long while waiting for headers or body) and the total deadline
//! (everything, redirects included). The size cap counts body bytes after
//! content-decoding, so a gzip bomb is stopped at the cap, and a page over the cap is
//! recorded as `too_large`, never stored truncated.

mod classify;
mod client;

use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use rustls::pki_types::CertificateDer;
use tower::ServiceExt;
use url::Url;

pub use client::load_pem_certs;

use crate::journal::{now_ms, ErrorKind, KeptHeaders, Outcome, PageMeta, Redirect};
use crate::urls::redact;

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
}

/// A fetched page: its record and, for responses, the decoded body.
#[derive(Debug)]
pub struct Fetched {
    pub meta: PageMeta,
    pub body: Option<Vec<u8>>,
}

pub struct Fetcher {
    client: client::HttpClient,
    config: FetchConfig,
}

type Failure = (ErrorKind, String);

struct Response {
    status: u16,
    version: Version,
    final_url: Url,
    headers: KeptHeaders,
    body: Vec<u8>,
}

impl Fetcher {
    pub fn new(config: FetchConfig) -> Result<Fetcher, FetchError> {
        Ok(Fetcher {
            client: client::build(&config)?,
            config,
        })
    }

    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Fetches `url`, following redirects. Never fails: errors become the outcome.
    pub async fn fetch(&self, url: &Url) -> Fetched {
        let started = Instant::now();
        let fetched_at_ms = now_ms();
        let mut redirects = Vec::new();
        let result = tokio::time::timeout(self.config.timeout, self.follow(url, &mut redirects))
            .await
            .unwrap_or_else(|_| {
                Err((
                    ErrorKind::Timeout,
                    format!(
                        "no complete response within the {}s deadline",
                        self.config.timeout.as_secs_f64()
                    ),
                ))
            });
        let (outcome, body) = match result {
            Ok(r) => (
                Outcome::Response {
                    status: r.status,
                    version: format!("{:?}", r.version),
                    final_url: without_credentials(&r.final_url),
                    headers: r.headers,
                    body_len: r.body.len() as u64,
                },
                Some(r.body),
            ),
            Err((kind, message)) => (Outcome::Error { kind, message }, None),
        };
        Fetched {
            meta: PageMeta {
                fetched_at_ms,
                duration_ms: started.elapsed().as_millis() as u64,
                redirects,
                outcome,
            },
            body,
        }
    }

    async fn follow(&self, url: &Url, redirects: &mut Vec<Redirect>) -> Result<Response, Failure> {
        // Credentials in the URL become a Basic header, sent to the URL's own origin only.
        let auth = basic_auth(url);
        let origin = url.origin();
        let mut current = url.clone();
        loop {
            let mut request = Request::get(request_uri(&current)?)
                .header(header::USER_AGENT, &self.config.user_agent)
                .header(header::ACCEPT, "*/*");
            if let Some(auth) = auth.as_ref().filter(|_| current.origin() == origin) {
                request = request.header(header::AUTHORIZATION, auth);
            }
            let request = request
                .body(Empty::<Bytes>::new())
                .map_err(|e| (ErrorKind::Protocol, format!("cannot build request: {e}")))?;
            let response = self.idle(self.client.clone().oneshot(request)).await?;
            let response = response.map_err(|e| classify::classify(&e))?;
            let status = response.status();
            if let Some(location) = redirect_target(status, response.headers()) {
                if redirects.len() >= self.config.max_redirects {
                    return Err((
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
            let headers = kept_headers(response.headers());
            let declared = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(len) = declared.filter(|len| *len > self.config.max_body) {
                return Err(self.too_large(Some(len)));
            }
            let capacity = declared.unwrap_or(0).min(1024 * 1024) as usize;
            let mut body = Vec::with_capacity(capacity);
            let mut incoming = response.into_body();
            while let Some(frame) = self.idle(incoming.frame()).await? {
                let frame = frame.map_err(|e| classify::classify(&*e))?;
                if let Ok(data) = frame.into_data() {
                    if (body.len() + data.len()) as u64 > self.config.max_body {
                        return Err(self.too_large(None));
                    }
                    body.extend_from_slice(&data);
                }
            }
            return Ok(Response {
                status: status.as_u16(),
                version,
                final_url: current,
                headers,
                body,
            });
        }
    }

    /// Waits for one step of the exchange, failing if the server stays silent too long.
    async fn idle<F: std::future::Future>(&self, step: F) -> Result<F::Output, Failure> {
        tokio::time::timeout(self.config.idle_timeout, step)
            .await
            .map_err(|_| {
                (
                    ErrorKind::Timeout,
                    format!(
                        "the server sent nothing for {}s",
                        self.config.idle_timeout.as_secs_f64()
                    ),
                )
            })
    }

    fn too_large(&self, declared: Option<u64>) -> Failure {
        let cap = self.config.max_body;
        let message = match declared {
            Some(len) => format!("Content-Length {len} exceeds the {cap}-byte cap"),
            None => format!("body exceeds the {cap}-byte cap after decoding"),
        };
        (ErrorKind::TooLarge, message)
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
        (
            ErrorKind::Protocol,
            format!("redirect to an invalid Location: {e}"),
        )
    })?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err((
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
        (
            ErrorKind::Protocol,
            format!("cannot request {}: {e}", redact(url)),
        )
    })
}

fn basic_auth(url: &Url) -> Option<String> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pair = format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or(""))
    );
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

fn kept_headers(headers: &HeaderMap) -> KeptHeaders {
    let get = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    KeptHeaders {
        content_type: get(header::CONTENT_TYPE),
        content_length: get(header::CONTENT_LENGTH),
        etag: get(header::ETAG),
        last_modified: get(header::LAST_MODIFIED),
        date: get(header::DATE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_basic_auth_and_leave_the_uri() {
        let url = Url::parse("http://al%40ice:p%3Ass@example.com/x#frag").unwrap();
        assert_eq!(
            basic_auth(&url).unwrap(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("al@ice:p:ss")
            )
        );
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
            follow_location(&base, &file).unwrap_err().0,
            ErrorKind::Protocol
        );
        let rel = http::HeaderValue::from_static("../c#top");
        assert_eq!(
            follow_location(&base, &rel).unwrap().as_str(),
            "http://example.com/c"
        );
    }
}

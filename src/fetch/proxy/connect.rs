//! The connector through one proxy, under hyper-rustls's `HttpsConnector` (which adds
//! the TLS to the site, so HTTPS through a proxy is end to end).
//!
//! - An `http://` URL through an HTTP(S) proxy: a connection to the proxy, marked
//!   proxied, so hyper-util sends the request in absolute form (the fetcher adds
//!   `Proxy-Authorization`).
//! - An `https://` URL through an HTTP(S) proxy: hyper-util's `Tunnel` (`CONNECT`).
//! - Any URL through SOCKS5: hyper-util's `SocksV5`, given an address resolved here
//!   (`socks5://`) or the name (`socks5h://`).
//!
//! For discovered links the SSRF guard runs first, here, before anything is sent to
//! the proxy: an IP literal is checked, a name is resolved with the guarded resolver
//! and refused when every address is non-public. The proxy may resolve the name again
//! (`http://`, `socks5h://`); see ARCHITECTURE.md, "Threats".
//!
//! Everything up to a usable connection to the proxy, tunnel included, has the connect
//! timeout as its deadline. Failures are [`ProxyFailure`]s (error kind `proxy`); those
//! of the proxy itself (unreachable, TLS, credentials refused, a broken handshake) rest
//! it in the pool, a refusal to reach one site does not.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

use super::pool::Stats;
use super::{Proxy, ProxyKind};
use crate::fetch::classify;
use crate::fetch::guard::{literal_refused, Resolver};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The connection to the proxy itself: TCP, or TLS for an `https://` proxy.
pub(crate) type ProxyTcp = HttpsConnector<HttpConnector<Resolver>>;
type ProxyIo = MaybeHttpsStream<TokioIo<TcpStream>>;

/// A request that the proxy could not carry. Shown as `proxy http://host:port: ...`,
/// never with the proxy's credentials.
#[derive(Debug)]
pub(crate) struct ProxyFailure {
    proxy: String,
    what: String,
}

impl fmt::Display for ProxyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proxy {}: {}", self.proxy, self.what)
    }
}

impl std::error::Error for ProxyFailure {}

impl ProxyFailure {
    /// Counts the failure on the proxy (resting it when `rest`) and returns it.
    pub(crate) fn counted(proxy: &Proxy, stats: &Stats, what: String, rest: bool) -> ProxyFailure {
        let failure = ProxyFailure {
            proxy: proxy.to_string(),
            what,
        };
        stats.failed(&failure.to_string(), rest);
        failure
    }
}

/// A name the guard could not resolve: shown as hyper-util shows its own DNS errors, so
/// that it is classified the same way (error kind `dns`).
#[derive(Debug)]
struct LocalDns(std::io::Error);

impl fmt::Display for LocalDns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dns error")
    }
}

impl std::error::Error for LocalDns {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Connects through one proxy. `guard`: the guarded resolver, for discovered links.
#[derive(Clone)]
pub(crate) struct ViaProxy {
    proxy: Arc<Proxy>,
    tcp: ProxyTcp,
    guard: Option<Resolver>,
    lookup: Resolver,
    stats: Arc<Stats>,
    timeout: Duration,
}

impl ViaProxy {
    pub(crate) fn new(
        proxy: Proxy,
        tcp: ProxyTcp,
        guard: Option<Resolver>,
        lookup: Resolver,
        stats: Arc<Stats>,
        timeout: Duration,
    ) -> ViaProxy {
        ViaProxy {
            proxy: Arc::new(proxy),
            tcp,
            guard,
            lookup,
            stats,
            timeout,
        }
    }

    async fn connect(self, dst: Uri) -> Result<ProxyStream, BoxError> {
        let host = dst.host().ok_or("no host in the URL")?.to_string();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = dst
            .port_u16()
            .unwrap_or(if dst.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let kind = self.proxy.kind();
        let absolute = kind.is_http() && dst.scheme_str() == Some("http");
        let mut addr: Option<IpAddr> = bare.parse().ok();
        if self.guard.is_some() {
            if let Some(blocked) = literal_refused(&dst) {
                return Err(blocked.into());
            }
        }
        if addr.is_none() && (self.guard.is_some() || kind == ProxyKind::Socks5) {
            addr = Some(self.resolve(bare).await?);
        }
        let target_host = match (kind, addr) {
            (ProxyKind::Socks5, Some(IpAddr::V6(ip))) => format!("[{ip}]"),
            (ProxyKind::Socks5, Some(ip)) => ip.to_string(),
            _ => host.clone(),
        };
        let target: Uri = format!("http://{target_host}:{port}/").parse()?;
        let proxy_uri = self.proxy.connect_uri()?;
        let connecting = async {
            // The connection to the proxy first, so that its failure is told apart
            // from the handshake's (hyper-util's handshake errors keep no source).
            let io = oneshot(self.tcp.clone(), proxy_uri.clone())
                .await
                .map_err(|e| (unreachable(&*e), true))?;
            match kind {
                ProxyKind::Http | ProxyKind::Https if absolute => Ok(io),
                ProxyKind::Http | ProxyKind::Https => {
                    let mut tunnel = Tunnel::new(proxy_uri, Opened(Some(io)));
                    if let Some(auth) = self.proxy.basic() {
                        tunnel = tunnel.with_auth(auth);
                    }
                    let tunneled = oneshot(tunnel, target).await;
                    tunneled.map_err(|e| tunnel_failure(&e, &host, port))
                }
                ProxyKind::Socks5 | ProxyKind::Socks5h => {
                    let mut socks = SocksV5::new(proxy_uri, Opened(Some(io)));
                    if let Some((user, pass)) = self.proxy.user_pass() {
                        socks = socks.with_auth(user, pass);
                    }
                    let tunneled = oneshot(socks, target).await;
                    tunneled.map_err(|e| socks_failure(&e, &host, port))
                }
            }
        };
        let (what, rest) = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(io)) => {
                self.stats.connected();
                return Ok(ProxyStream { io, absolute });
            }
            Ok(Err(failed)) => failed,
            Err(_) => (
                format!("no connection within {}s", self.timeout.as_secs_f64()),
                true,
            ),
        };
        Err(ProxyFailure::counted(&self.proxy, &self.stats, what, rest).into())
    }

    /// The first address of `host` that the guard allows (all of them without it).
    async fn resolve(&self, host: &str) -> Result<IpAddr, BoxError> {
        let resolver = self.guard.clone().unwrap_or_else(|| self.lookup.clone());
        let name = Name::from_str(host).map_err(|e| LocalDns(std::io::Error::other(e)))?;
        let mut addrs = match oneshot(resolver, name).await {
            Ok(addrs) => addrs,
            // A refusal of the guard stays one (error kind `blocked`).
            Err(e)
                if e.get_ref()
                    .is_some_and(|inner| inner.is::<crate::fetch::guard::Blocked>()) =>
            {
                return Err(e.into())
            }
            Err(e) => return Err(LocalDns(e).into()),
        };
        addrs
            .next()
            .map(|addr| addr.ip())
            .ok_or_else(|| LocalDns(std::io::Error::other("no address")).into())
    }
}

impl Service<Uri> for ViaProxy {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        Box::pin(self.clone().connect(dst))
    }
}

/// Waits for `service` to be ready, then calls it once (tower's `oneshot`, without
/// its `util` feature).
async fn oneshot<S: Service<R>, R>(mut service: S, request: R) -> Result<S::Response, S::Error> {
    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
    service.call(request).await
}

fn unreachable(error: &(dyn std::error::Error + 'static)) -> String {
    format!("cannot connect: {}", classify::classify(error).message)
}

/// hyper-util's handshake errors are not exported: they are told apart by what they
/// say (`tests/proxy.rs` meets each text this reads).
const TUNNEL_407: &str = "proxy authorization required";
const TUNNEL_REFUSED: &str = "tunnel error: unsuccessful";
/// SOCKS5 replies that refuse one destination (RFC 1928 section 6), not the client.
const SOCKS_REFUSALS: [&str; 8] = [
    "general server failure",
    "connection not allowed",
    "network unreachable",
    "host unreachable",
    "connection refused",
    "ttl expired",
    "command not supported",
    "address type not supported",
];

/// What a `CONNECT` failure says, and whether the proxy itself failed.
fn tunnel_failure(
    error: &(dyn std::error::Error + 'static),
    host: &str,
    port: u16,
) -> (String, bool) {
    let text = error.to_string();
    if text.contains(TUNNEL_407) {
        let what = "answered 407 Proxy Authentication Required (credentials missing or refused)";
        (what.into(), true)
    } else if text == TUNNEL_REFUSED {
        (format!("refused to open a tunnel to {host}:{port}"), false)
    } else {
        (
            format!("CONNECT failed: {}", classify::classify(error).message),
            true,
        )
    }
}

/// What a SOCKS5 failure says, and whether the proxy itself failed.
fn socks_failure(
    error: &(dyn std::error::Error + 'static),
    host: &str,
    port: u16,
) -> (String, bool) {
    let text = error.to_string();
    let status = text.strip_prefix("SOCKS error: ").unwrap_or(&text);
    if SOCKS_REFUSALS.contains(&status) {
        (
            format!("could not connect to {host}:{port}: {status}"),
            false,
        )
    } else {
        (format!("SOCKS5 handshake failed: {status}"), true)
    }
}

/// A connector that hands out one connection already open (to the proxy), for
/// hyper-util's handshakes to run over.
struct Opened(Option<ProxyIo>);

impl Service<Uri> for Opened {
    type Response = ProxyIo;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<ProxyIo, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        std::future::ready(
            self.0
                .take()
                .ok_or_else(|| std::io::Error::other("connection used")),
        )
    }
}

/// A connection through a proxy; `absolute`: to an HTTP proxy, for a plain `http://`
/// request, which hyper-util then sends in absolute form.
pub(crate) struct ProxyStream {
    io: ProxyIo,
    absolute: bool,
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        // Never what the proxy's TLS negotiated: the site's TLS, above, says that.
        Connected::new().proxy(self.absolute)
    }
}

impl Read for ProxyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for ProxyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

//! A real HTTP/1.1 + HTTP/2 server on 127.0.0.1:0 whose answers the test decides,
//! with a count of requests per path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub type Body = BoxBody<Bytes, std::io::Error>;
pub type Reply = Response<Body>;
type Handler =
    Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

/// A plain response with a body.
pub fn reply(status: u16, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).expect("valid status");
    r
}

/// A redirect to `location`.
pub fn redirect(status: u16, location: &str) -> Reply {
    let mut r = reply(status, "");
    r.headers_mut().insert(
        http::header::LOCATION,
        location.parse().expect("header value"),
    );
    r
}

pub struct TestServer {
    pub addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Serves plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge) with `handler`.
    pub async fn start<F, Fut>(handler: F) -> TestServer
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        Self::start_with(handler, |stream| async move { Some(stream) }).await
    }

    /// Like [`TestServer::start`], with the handler told the server's own base URL
    /// (`http://127.0.0.1:port`), for pages that name the server's URLs absolutely, as
    /// sitemaps do.
    pub async fn start_knowing_base<F, Fut>(handler: F) -> TestServer
    where
        F: Fn(String, Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        let base = Arc::new(Mutex::new(String::new()));
        let known = base.clone();
        let server = Self::start(move |req| {
            let base = known.lock().expect("base lock").clone();
            handler(base, req)
        })
        .await;
        *base.lock().expect("base lock") = format!("http://{}", server.addr);
        server
    }

    /// Like [`TestServer::start`], with each accepted connection passed through `wrap`
    /// first (for TLS).
    pub async fn start_with<F, Fut, W, WFut, S>(handler: F, wrap: W) -> TestServer
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
        W: Fn(tokio::net::TcpStream) -> WFut + Send + Sync + 'static,
        WFut: Future<Output = Option<S>> + Send + 'static,
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let hits: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        let wrap = Arc::new(wrap);
        let counted = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let hits = counted.clone();
                let wrap = wrap.clone();
                tokio::spawn(async move {
                    let Some(stream) = wrap(stream).await else {
                        return;
                    };
                    let service = service_fn(move |req: Request<Incoming>| {
                        let path = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        *hits.lock().expect("hits lock").entry(path).or_default() += 1;
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer { addr, hits, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests received for `path` (with query).
    pub fn hits(&self, path: &str) -> u64 {
        self.hits
            .lock()
            .expect("hits lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Requests received per path.
    pub fn all_hits(&self) -> HashMap<String, u64> {
        self.hits.lock().expect("hits lock").clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A streamed body without Content-Length: `next(i)` gives the i-th chunk and how long
/// to wait before sending it; `None` ends the body.
pub fn streamed<F>(next: F) -> Body
where
    F: FnMut(usize) -> Option<(std::time::Duration, Bytes)> + Send + Sync + Unpin + 'static,
{
    Streamed {
        next,
        index: 0,
        waiting: None,
    }
    .boxed()
}

struct Streamed<F> {
    next: F,
    index: usize,
    waiting: Option<(Pin<Box<tokio::time::Sleep>>, Bytes)>,
}

impl<F> http_body::Body for Streamed<F>
where
    F: FnMut(usize) -> Option<(std::time::Duration, Bytes)> + Unpin,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if let Some((sleep, _)) = &mut this.waiting {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let (_, chunk) = this.waiting.take().expect("waiting chunk");
            return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
        }
        let Some((delay, chunk)) = (this.next)(this.index) else {
            return Poll::Ready(None);
        };
        this.index += 1;
        if delay.is_zero() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
        }
        this.waiting = Some((Box::pin(tokio::time::sleep(delay)), chunk));
        Pin::new(this).poll_frame(cx)
    }
}

/// A loopback port with nothing listening on it (bound, then released).
pub fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

/// `r` with the given headers added.
pub fn with_headers(mut r: Reply, headers: &[(&'static str, &str)]) -> Reply {
    for (name, value) in headers {
        r.headers_mut()
            .insert(*name, value.parse().expect("header value"));
    }
    r
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// `deflate` as RFC 9110 has it: zlib-wrapped.
pub fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("zlib");
    enc.finish().expect("zlib")
}

/// `deflate` as some servers send it: raw, without the zlib wrapper.
pub fn raw_deflate(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("deflate");
    enc.finish().expect("deflate")
}

pub fn brotli(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
    enc.write_all(data).expect("brotli");
    enc.into_inner()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).expect("zstd")
}

/// `n` chunks of `size` bytes, streamed without Content-Length.
pub fn chunks(n: usize, size: usize) -> Body {
    streamed(move |i| (i < n).then(|| (std::time::Duration::ZERO, Bytes::from(vec![b'c'; size]))))
}

/// A gzip stream of zeros that never ends, in two parts: the header and 1 MiB
/// compressed, then one compressed 1 MiB block (about 1 KiB) to send again and again.
/// Repeating it is valid deflate: the block starts and ends on a byte boundary (sync
/// flush) and only refers back to zeros. Compressing on the fly instead would keep the
/// test's own runtime busy compressing, starving the client under test.
fn endless_gzip_zeros() -> (Bytes, Bytes) {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1024 * 1024];
    let mut block = || {
        enc.write_all(&zeros).expect("gzip");
        enc.flush().expect("gzip");
        Bytes::from(std::mem::take(enc.get_mut()))
    };
    (block(), block())
}

/// An endless gzip stream of zeros, as a `Content-Encoding: gzip` response.
pub fn gzip_bomb() -> Reply {
    let (first, again) = endless_gzip_zeros();
    let body = streamed(move |i| {
        let block = if i == 0 { &first } else { &again };
        Some((std::time::Duration::ZERO, block.clone()))
    });
    with_headers(Response::new(body), &[("content-encoding", "gzip")])
}

/// gzip of a gzip of 65 MiB of zeros (the inner stream left unfinished), a few KiB on
/// the wire, as a `Content-Encoding: gzip, gzip` response.
pub fn stacked_gzip_bomb() -> Reply {
    let (first, again) = endless_gzip_zeros();
    let mut inner = first.to_vec();
    for _ in 0..64 {
        inner.extend_from_slice(&again);
    }
    let outer = gzip(&inner);
    assert!(outer.len() < 16 * 1024, "{} bytes", outer.len());
    with_headers(reply(200, outer), &[("content-encoding", "gzip, gzip")])
}

/// A request header as text.
pub fn header(req: &http::Request<hyper::body::Incoming>, name: &str) -> Option<String> {
    let value = req.headers().get(name)?;
    Some(value.to_str().expect("ascii header").to_string())
}

/// Requests in flight now, and the most seen at once.
pub type Gauge = Arc<(
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicUsize,
)>;

/// A server taking 100 ms per request, counting requests in flight on every gauge.
pub async fn slow_server(gauges: [Gauge; 2]) -> TestServer {
    use std::sync::atomic::Ordering::SeqCst;
    TestServer::start(move |_req| {
        let gauges = gauges.clone();
        async move {
            for g in &gauges {
                let now = g.0.fetch_add(1, SeqCst) + 1;
                g.1.fetch_max(now, SeqCst);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            for g in &gauges {
                g.0.fetch_sub(1, SeqCst);
            }
            reply(200, "slow")
        }
    })
    .await
}

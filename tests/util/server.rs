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
type Handler = Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e: Infallible| match e {}).boxed()
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
    r.headers_mut()
        .insert(http::header::LOCATION, location.parse().expect("header value"));
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
        self.hits.lock().expect("hits lock").get(path).copied().unwrap_or(0)
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

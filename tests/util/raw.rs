//! A raw TCP server on 127.0.0.1:0 for answers no HTTP library would send: it reads the
//! request head, then hands the request path and the socket to the test, which writes
//! whatever bytes it likes (or nothing, or resets the connection).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

pub struct RawServer {
    pub addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RawServer {
    /// Serves every connection with `handler(path, socket)` once its request head is in.
    /// I/O errors end that connection only (a client that hung up is the usual one).
    pub async fn start<F, Fut>(handler: F) -> RawServer
    where
        F: Fn(String, TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, SeqCst);
                let handler = handler.clone();
                tokio::spawn(async move {
                    if let Some(path) = read_head(&mut stream).await {
                        let _ = handler(path, stream).await;
                    }
                });
            }
        });
        RawServer {
            addr,
            accepted,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads up to the end of the request head (64 KiB at most) and returns the path of
/// its request line.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1).map(str::to_string)
}

/// Resets the connection (RST, not FIN): SO_LINGER 0, then close.
pub fn reset(stream: TcpStream) -> std::io::Result<()> {
    stream.set_zero_linger()?;
    drop(stream);
    Ok(())
}

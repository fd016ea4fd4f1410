//! A small HTTP forward proxy on 127.0.0.1:0, as tinyproxy or squid would be: `CONNECT`
//! tunnels and plain requests in absolute form (`GET http://host:port/path`), one
//! request per connection for the latter (sent on with `Connection: close`). It can
//! require credentials (407 without them), send every destination to one upstream
//! address (so URLs may name hosts that no DNS knows, as the proxy resolves them), and
//! it logs what it was asked for.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Default)]
pub struct ProxyOptions {
    /// `user:password` the proxy requires as `Proxy-Authorization: Basic`.
    pub credentials: Option<String>,
    /// Where every destination goes, whatever its host and port.
    pub upstream: Option<SocketAddr>,
}

/// Each request's line (`CONNECT host:port`, `GET http://...`) and its
/// `Proxy-Authorization`.
type Log = Mutex<Vec<(String, Option<String>)>>;

pub struct HttpProxy {
    pub addr: SocketAddr,
    /// What each request asked for: `CONNECT host:port` or `GET http://...`, and the
    /// `Proxy-Authorization` it carried.
    log: Arc<Log>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpProxy {
    pub async fn start(options: ProxyOptions) -> HttpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (options, seen) = (options.clone(), seen.clone());
                tokio::spawn(async move {
                    let _ = serve(client, &options, &seen).await;
                });
            }
        });
        HttpProxy { addr, log, task }
    }

    /// `http://127.0.0.1:port`, optionally with `user:password@`.
    pub fn url(&self, credentials: Option<&str>) -> String {
        match credentials {
            Some(c) => format!("http://{c}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// The request lines seen so far.
    pub fn requests(&self) -> Vec<String> {
        let log = self.log.lock().expect("proxy log");
        log.iter().map(|(line, _)| line.clone()).collect()
    }

    /// The `Proxy-Authorization` values seen so far.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        let log = self.log.lock().expect("proxy log");
        log.iter().map(|(_, auth)| auth.clone()).collect()
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream, options: &ProxyOptions, log: &Log) -> std::io::Result<()> {
    let head = read_head(&mut client).await?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    let mut auth = None;
    let mut kept = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "proxy-authorization" => auth = Some(value.trim().to_string()),
            "proxy-connection" | "connection" => {}
            _ => kept.push(line.to_string()),
        }
    }
    let mut words = request_line.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let logged = format!("{method} {target}");
    log.lock().expect("proxy log").push((logged, auth.clone()));
    if let Some(credentials) = &options.credentials {
        let want = base64::engine::general_purpose::STANDARD.encode(credentials);
        if auth.as_deref() != Some(&format!("Basic {want}")) {
            let refusal = "HTTP/1.1 407 Proxy Authentication Required\r\n\
                           Proxy-Authenticate: Basic realm=\"test\"\r\ncontent-length: 0\r\n\
                           connection: close\r\n\r\n";
            return client.write_all(refusal.as_bytes()).await;
        }
    }
    if method == "CONNECT" {
        let Ok(mut server) = connect(target, options).await else {
            return client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await;
        };
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        tokio::io::copy_bidirectional(&mut client, &mut server).await?;
        return Ok(());
    }
    let Some(rest) = target.strip_prefix("http://") else {
        return client
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut server = connect(authority, options).await?;
    let mut forwarded = format!("{method} {path} HTTP/1.1\r\n");
    for line in kept {
        forwarded.push_str(&line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("connection: close\r\n\r\n");
    server.write_all(forwarded.as_bytes()).await?;
    tokio::io::copy(&mut server, &mut client).await?;
    client.shutdown().await
}

async fn connect(authority: &str, options: &ProxyOptions) -> std::io::Result<TcpStream> {
    match options.upstream {
        Some(addr) => TcpStream::connect(addr).await,
        None => TcpStream::connect(authority).await,
    }
}

/// The request head, up to its blank line (16 KiB at most).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(head)
}

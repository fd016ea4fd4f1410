//! Hostile servers, one misbehaviour each: silence, trickles, endless and huge bodies, a
//! gzip bomb and one through stacked codings, redirect loops and chains, monstrous and
//! malformed heads, resets, cut and garbled bodies, garbage. Every case is crawled on its own with tight deadlines and
//! must be recorded with its expected outcome (and retry hint) within its deadline.
//! `binary.rs` runs them all through the real binary among normal pages under a memory
//! bound; `ssrf.rs` checks the guard against discovered links and where user headers go.

mod binary;
mod ssrf;

use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use url::Url;
use webspool::fetch::{FetchConfig, Trust};
use webspool::journal::{ErrorKind, ErrorKind::*, Journal};
use Want::{Fails, Stored};

use crate::util::raw::RawServer;
use crate::util::server::{gzip_bomb, redirect, reply, stacked_gzip_bomb, streamed, with_headers};
use crate::util::{self, body_of, kind_of, no_body, page_of, status_of, Reply, TestServer};

/// What a case must end as.
#[derive(Clone, Copy, Debug)]
pub enum Want {
    Fails(ErrorKind),
    /// A response stored with this status and body.
    Stored(u16, fn() -> Vec<u8>),
}

/// A hostile server, served at `/` + its name with `-` for `_`.
pub struct Case {
    pub name: &'static str,
    /// Served by the raw TCP server (else by the hyper test server).
    pub raw: bool,
    pub want: Want,
    /// The retry hint expected from the fetcher.
    pub transient: bool,
}

const fn case(name: &'static str, raw: bool, want: Want, transient: bool) -> Case {
    Case {
        name,
        raw,
        want,
        transient,
    }
}

pub const CASES: [Case; 19] = [
    case("silent", true, Fails(Timeout), true),
    case("trickle_headers", true, Fails(Timeout), true),
    case("trickle_body", false, Fails(Timeout), true),
    case("stall", false, Fails(Timeout), true),
    case("endless_chunked", false, Fails(TooLarge), false),
    case("huge_length", true, Fails(TooLarge), false),
    case("gzip_bomb", false, Fails(TooLarge), false),
    case("stacked_gzip_bomb", false, Fails(TooLarge), false),
    case("redirect_loop", false, Fails(TooManyRedirects), false),
    case("redirect_chain", false, Fails(TooManyRedirects), false),
    case("redirect_to_file", false, Fails(Protocol), false),
    case("huge_head", true, Fails(Protocol), false),
    case("many_headers", true, Fails(Protocol), false),
    case("bad_status_line", true, Fails(Protocol), false),
    case("reset", true, Fails(Connect), true),
    case("short_body", true, Fails(Protocol), true),
    case("bad_chunks", true, Fails(Protocol), false),
    case("garbage_html", false, Stored(200, garbage), false),
    case("unavailable", false, Stored(503, later), true),
];

/// The deadline of every case (`--timeout`): a case must end well within it + 5 s.
pub const DEADLINE: Duration = Duration::from_secs(3);
pub const IDLE: Duration = Duration::from_millis(1500);
pub const MAX_BODY: u64 = 1024 * 1024;

pub fn config() -> FetchConfig {
    FetchConfig {
        timeout: DEADLINE,
        idle_timeout: IDLE,
        connect_timeout: Duration::from_secs(1),
        max_body: MAX_BODY,
        ..util::quick_fetch()
    }
}

/// 64 KiB of deterministic binary noise (NULs, invalid UTF-8), served as text/html.
fn garbage() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn later() -> Vec<u8> {
    b"come back later".to_vec()
}

/// Both hostile servers: one speaking HTTP through hyper, one writing raw bytes.
pub struct Site {
    http: TestServer,
    raw: RawServer,
}

impl Site {
    pub async fn start() -> Site {
        Site {
            http: TestServer::start(serve_http).await,
            raw: RawServer::start(serve_raw).await,
        }
    }

    pub fn url(&self, case: &Case) -> String {
        let path = format!("/{}", case.name.replace('_', "-"));
        match case.raw {
            true => self.raw.url(&path),
            false => self.http.url(&path),
        }
    }
}

async fn serve_http(req: http::Request<hyper::body::Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    if let Some(n) = path.strip_prefix("/chain/") {
        let n: u32 = n.parse().unwrap_or(0);
        return match n < 50 {
            true => redirect(302, &format!("/chain/{}", n + 1)),
            false => reply(200, "end of the chain"),
        };
    }
    let html = [("content-type", "text/html")];
    match path.as_str() {
        // A byte every 300 ms forever: never idle, never done.
        "/trickle-body" => Reply::new(streamed(|_| {
            Some((Duration::from_millis(300), Bytes::from_static(b".")))
        })),
        // Headers, a first chunk, then nothing for a minute.
        "/stall" => Reply::new(streamed(|i| match i {
            0 => Some((Duration::ZERO, Bytes::from_static(b"partial"))),
            1 => Some((Duration::from_secs(60), Bytes::from_static(b"rest"))),
            _ => None,
        })),
        "/endless-chunked" => Reply::new(streamed(|_| {
            Some((Duration::ZERO, Bytes::from(vec![b'x'; 64 * 1024])))
        })),
        "/gzip-bomb" => gzip_bomb(),
        "/stacked-gzip-bomb" => stacked_gzip_bomb(),
        "/redirect-loop" => redirect(301, "/redirect-loop"),
        "/redirect-chain" => redirect(302, "/chain/1"),
        "/redirect-to-file" => redirect(302, "file:///etc/passwd"),
        "/garbage-html" => with_headers(reply(200, garbage()), &html),
        "/unavailable" => with_headers(reply(503, later()), &[("retry-after", "7")]),
        _ => reply(404, ""),
    }
}

async fn serve_raw(path: String, mut s: TcpStream) -> io::Result<()> {
    match path.as_str() {
        "/silent" => std::future::pending().await,
        // The status line, then a header value growing by a byte every 300 ms.
        "/trickle-headers" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ").await?;
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                s.write_all(b"z").await?;
            }
        }
        // Claims 10 GB, and would send them.
        "/huge-length" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10737418240\r\n\r\n")
                .await?;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..(10u64 << 30) / chunk.len() as u64 {
                s.write_all(&chunk).await?;
            }
            Ok(())
        }
        // 4 MiB of headers.
        "/huge-head" => {
            let value = "v".repeat(1000);
            let lines: String = (0..4096)
                .map(|i| format!("X-Big-{i}: {value}\r\n"))
                .collect();
            s.write_all(format!("HTTP/1.1 200 OK\r\n{lines}\r\n").as_bytes())
                .await
        }
        // 20,000 tiny headers (100 KB: under the head size cap, over the count cap).
        "/many-headers" => {
            let lines = "a: b\r\n".repeat(20_000);
            let head = format!("HTTP/1.1 200 OK\r\n{lines}Content-Length: 2\r\n\r\nok");
            s.write_all(head.as_bytes()).await
        }
        "/bad-status-line" => {
            s.write_all(b"HTTP/1.1 two hundred OK\r\nContent-Length: 2\r\n\r\nok")
                .await
        }
        "/reset" => util::raw::reset(s),
        // Promises 1000 bytes, sends 10, closes.
        "/short-body" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                .await
        }
        "/bad-chunks" => {
            let body =
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
            s.write_all(body.as_bytes()).await
        }
        // robots.txt among them. The connection closes after it, so say so: a client
        // may not reuse it.
        _ => {
            s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await
        }
    }
}

impl Case {
    /// Asserts the page recorded for `url` is what this case must end as.
    pub fn assert_recorded(&self, journal: &Journal, url: &str) {
        let meta = page_of(journal, url);
        let most = DEADLINE.as_millis() as u64 + 1000;
        assert!(meta.duration_ms < most, "{}: took {meta:?}", self.name);
        match self.want {
            Fails(kind) => {
                assert_eq!(kind_of(journal, url), kind, "{}: {meta:?}", self.name);
                assert!(no_body(journal, url), "{}: no body stored", self.name);
            }
            Stored(status, body) => {
                assert_eq!(status_of(&meta), status, "{}", self.name);
                assert!(
                    body_of(journal, url) == body(),
                    "{}: stored body differs",
                    self.name
                );
            }
        }
    }
}

/// Crawls one case (and fetches it directly, at the same time, for its retry hint).
async fn check(name: &str) {
    let case = CASES.iter().find(|c| c.name == name).expect("known case");
    let site = Site::start().await;
    let url = site.url(case);
    let (_grants, fetcher) = util::fetcher(config());
    let parsed = Url::parse(&url).expect("url");
    let started = Instant::now();
    // A task of its own: the crawl blocks this one at times (opening the journal).
    let direct = tokio::spawn(async move { fetcher.fetch(&parsed, Trust::Given).await });
    let (_dir, journal, summary) = util::crawl_lines(std::slice::from_ref(&url), config()).await;
    let direct = direct.await.expect("direct fetch");
    util::took(started, DEADLINE.as_secs() + 5);
    case.assert_recorded(&journal, &url);
    let failed = matches!(case.want, Fails(_));
    assert_eq!(summary.failed, u64::from(failed), "{name}");
    assert_eq!(
        direct.meta.error_kind(),
        page_of(&journal, &url).error_kind()
    );
    assert_eq!(
        direct.transient, case.transient,
        "{name}: {:?}",
        direct.meta
    );
    let retry_after = (name == "unavailable").then(|| Duration::from_secs(7));
    assert_eq!(direct.retry_after, retry_after, "{name}");
}

/// One test per case, named after it, in a module of their own (case names would
/// clash with helpers).
macro_rules! hostile_cases {
    ($($name:ident)*) => {
        mod cases {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::check(stringify!($name)).await;
                }
            )*

            #[test]
            fn every_case_has_its_test() {
                let tested = [$(stringify!($name)),*];
                let cases: Vec<&str> = super::CASES.iter().map(|c| c.name).collect();
                assert_eq!(tested.as_slice(), cases.as_slice());
            }
        }
    };
}

hostile_cases! {
    silent trickle_headers trickle_body stall endless_chunked huge_length gzip_bomb
    stacked_gzip_bomb redirect_loop redirect_chain redirect_to_file huge_head many_headers bad_status_line
    reset short_body bad_chunks garbage_html unavailable
}

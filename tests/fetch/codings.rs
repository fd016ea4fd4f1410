//! Content codings through the real binary, from a raw server that writes each
//! `Content-Encoding` byte for byte: every valid spelling and stack is stored as the
//! page the server meant (and parsed: its title is found), the rest are `protocol`
//! errors naming the reason.

use std::process::Command;

use tokio::io::AsyncWriteExt;
use webspool::journal::{ErrorKind::Protocol, Journal, Outcome};

use crate::util::raw::RawServer;
use crate::util::server::{brotli, gzip, raw_deflate, zlib, zstd};
use crate::util::{self, body_of, error_of, page_of, response_of, status_of};

/// A page served with these `Content-Encoding` lines, its body encoded by `encode`.
struct Coded {
    path: &'static str,
    lines: &'static [&'static str],
    encode: fn(&[u8]) -> Vec<u8>,
}

const fn coded(
    path: &'static str,
    lines: &'static [&'static str],
    encode: fn(&[u8]) -> Vec<u8>,
) -> Coded {
    Coded {
        path,
        lines,
        encode,
    }
}

fn identity(page: &[u8]) -> Vec<u8> {
    page.to_vec()
}

fn gzip_gzip(page: &[u8]) -> Vec<u8> {
    gzip(&gzip(page))
}

/// Two gzip members in a row (RFC 1952: a gzip file is a series of members).
fn gzip_members(page: &[u8]) -> Vec<u8> {
    let (a, b) = page.split_at(page.len() / 3);
    [gzip(a), gzip(b)].concat()
}

const STORED: [Coded; 15] = [
    coded("/x-gzip", &["x-gzip"], gzip),
    coded("/upper", &["GZIP"], gzip),
    coded("/capital", &["Gzip"], gzip),
    coded("/gzip-gzip", &["gzip, gzip"], gzip_gzip),
    coded("/two-lines", &["gzip", "gzip"], gzip_gzip),
    coded("/spaced", &[" \tgzip , identity\t"], gzip),
    coded("/zlib", &["deflate"], zlib),
    coded("/raw-deflate", &["deflate"], raw_deflate),
    coded("/br", &["br"], brotli),
    coded("/zstd", &["zstd"], zstd),
    coded("/deflate-gzip", &["deflate, gzip"], |p| gzip(&zlib(p))),
    coded("/br-zstd", &["BR", "identity", "Zstd"], |p| {
        zstd(&brotli(p))
    }),
    coded("/members", &["gzip"], gzip_members),
    coded("/identity", &["identity"], identity),
    coded("/none", &[], identity),
];

/// Pages whose codings are refused, and what the error must say.
const REFUSED: [(Coded, &str); 3] = [
    (
        coded("/six", &["gzip, gzip, gzip", "gzip, gzip, gzip"], gzip),
        "more than 5 content codings",
    ),
    (
        coded("/compress", &["compress"], identity),
        "unsupported content coding `compress`",
    ),
    (
        coded("/x-deflate", &["x-deflate"], raw_deflate),
        "unsupported content coding `x-deflate`",
    ),
];

/// The page at `path`: HTML with its own title, over 64 KiB once decoded.
fn page(path: &str) -> Vec<u8> {
    let text = format!("<p>{path}: words and more words</p>\n").repeat(2500);
    format!(
        "<!DOCTYPE html><html><head><title>Page {path}</title></head><body>{text}</body></html>"
    )
    .into_bytes()
}

fn all() -> impl Iterator<Item = &'static Coded> {
    STORED.iter().chain(REFUSED.iter().map(|(c, _)| c))
}

async fn serve(path: String, mut s: tokio::net::TcpStream) -> std::io::Result<()> {
    let (lines, body) = match all().find(|c| c.path == path) {
        Some(c) => (c.lines, (c.encode)(&page(&path))),
        // An empty gzip body (as on a 204) is an empty page.
        None if path == "/empty" => (&["gzip"][..], Vec::new()),
        None => (&[][..], Vec::new()),
    };
    let status = match path.as_str() {
        "/robots.txt" => "404 Not Found",
        _ => "200 OK",
    };
    let codings: String = lines
        .iter()
        .map(|l| format!("Content-Encoding: {l}\r\n"))
        .collect();
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\n{codings}Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(&[head.into_bytes(), body].concat()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_codings_are_stored_decoded_and_the_rest_refused_by_name() {
    let server = RawServer::start(serve).await;
    let mut urls: Vec<String> = all().map(|c| server.url(c.path)).collect();
    urls.push(server.url("/empty"));
    let dir = tempfile::tempdir().unwrap();
    let list = util::url_file(&dir, &urls);
    let journal = dir.path().join("journal");
    let mut crawl = Command::new(util::bin());
    crawl
        .args(["crawl", "--quiet", "--retries", "0", "--urls"])
        .arg(&list)
        .arg("--journal")
        .arg(&journal);
    let out = tokio::task::spawn_blocking(move || crawl.output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {log}", out.status);

    let journal = Journal::open(&journal).unwrap();
    for (coded, url) in STORED.iter().zip(&urls) {
        let page = page(coded.path);
        let meta = page_of(&journal, url);
        assert_eq!(status_of(&meta), 200, "{url}");
        assert_eq!(response_of(&meta).2, page.len() as u64, "{url}");
        assert!(body_of(&journal, url) == page, "{url}: stored body differs");
        let id = journal.find(url).unwrap().unwrap();
        let title = journal.annotation(id).unwrap().and_then(|a| a.title);
        assert_eq!(title, Some(format!("Page {}", coded.path)), "{url}");
        // Content-Length is kept only where it counts the stored bytes.
        let Outcome::Response { headers, .. } = &meta.outcome else {
            unreachable!()
        };
        let sent_as_is = (coded.encode)(&page) == page;
        let length = sent_as_is.then(|| page.len().to_string());
        assert_eq!(headers.content_length, length, "{url}");
    }
    for ((coded, why), url) in REFUSED.iter().zip(&urls[STORED.len()..]) {
        let (kind, message) = error_of(&journal, url);
        assert_eq!(kind, Protocol, "{}: {message}", coded.path);
        assert!(message.contains(why), "{}: {message}", coded.path);
    }
    let empty = urls.last().unwrap();
    assert_eq!(status_of(&page_of(&journal, empty)), 200);
    assert_eq!(body_of(&journal, empty), b"");
    let s = journal.status().unwrap();
    let stored = STORED.len() as u64 + 1;
    assert_eq!((s.fetched, s.failed), (stored, REFUSED.len() as u64));
    assert_eq!(
        s.errors,
        util::errors(&[("protocol", REFUSED.len() as u64)])
    );
}

/// Apache serves a `.xml.gz` as `Content-Type: application/x-gzip` with
/// `Content-Encoding: x-gzip`: decoded on the wire, it must still be read as the sitemap
/// it is, and its pages crawled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzipped_sitemap_sent_with_a_content_coding_is_followed() {
    use crate::util::server::{reply, with_headers};
    let server = util::TestServer::start_knowing_base(|root, req| {
        async move {
            match req.uri().path() {
                "/sitemap.xml.gz" => {
                    let xml = format!(
                        "<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\
                         <url><loc>{root}/listed</loc></url></urlset>"
                    );
                    with_headers(
                        reply(200, gzip(xml.as_bytes())),
                        &[
                            ("content-type", "application/x-gzip"),
                            ("content-encoding", "x-gzip"),
                        ],
                    )
                }
                _ => reply(200, "<title>listed</title>"),
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut crawl = Command::new(util::bin());
    crawl
        .args([
            "crawl",
            "--quiet",
            "--ignore-robots",
            "--allow-private",
            "--sitemap",
        ])
        .arg(server.url("/sitemap.xml.gz"))
        .arg("--journal")
        .arg(dir.path().join("j"));
    let out = tokio::task::spawn_blocking(move || crawl.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.hits("/listed"), 1, "{:?}", server.all_hits());
}
